/**
 * `npm run leader-kill [-- --kills N] [--systems replikit,etcd]`: the leader-failover campaign.
 *
 * For replikit (three `replikit serve` processes, LmdbStore, fsync on, keyspace "default" CP on
 * Raft) and then for etcd 3.4 (three members, installed from Debian when missing; reported as not
 * available when it cannot be had): 16 callers and a probe every 20 ms write distinct keys throughout; N times (20 by
 * default) the leader is found (ClusterService Status / Maintenance Status), SIGKILLed, the time
 * until a write sent after the kill is acknowledged is measured at the client, and the member is
 * restarted from its data and waited for until it has caught up. Then every write is read back
 * linearizably (bench/failover-campaign.ts says how outcomes are told apart).
 *
 * Prints the table (system, kills, recovery p50 / max, acknowledged, lost, unknown, refused) and
 * writes leader-kill-latest.md / .json under bench/results/ (or --out). Exit status: 0 passed;
 * 1 an acknowledged write was lost or unreadable, a kill was not recovered from within 30 s, the
 * campaign stopped early, a system failed to start, or replikit applied a write it had refused
 * (the node logs are then written to leader-kill-latest.log); 2 bad flags or no dist/.
 *
 * Every process started is killed on every exit path (the end, an error, a signal, the watchdog).
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Reaper } from './children.js';
import { findOrInstallEtcd } from './etcd.js';
import { CALL_DEADLINE_MS, PROBE_INTERVAL_MS, RECOVERY_BOUND_MS, RESTART_BOUND_MS, SETTLE_MS, runCampaign, type CampaignResult, type FailoverSystem, type SystemKind } from './failover-campaign.js';
import { startEtcdFailover } from './failover-etcd.js';
import { renderMarkdown, renderTerminal, toJson, verdict, type LeaderKillReport } from './failover-report.js';
import { startReplikitFailover } from './failover-replikit.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SYSTEMS: readonly SystemKind[] = ['replikit', 'etcd'];
/** Per kill at most: settle, leader, recovery, restart and catch-up bounds, with room. */
const WATCHDOG_PER_KILL_MS = SETTLE_MS + 2 * RECOVERY_BOUND_MS + 2 * RESTART_BOUND_MS;
/** Per system: starting it, the read-back of a large run and closing it. */
const WATCHDOG_PER_SYSTEM_MS = 600_000;

function fail(message: string): never {
  process.stderr.write(`leader-kill: ${message} (see npm run leader-kill -- --help)\n`);
  process.exit(2);
}

function parseFlags() {
  try {
    return parseArgs({
      options: {
        kills: { type: 'string', default: '20' },
        writers: { type: 'string', default: '16' },
        systems: { type: 'string', default: SYSTEMS.join(',') },
        out: { type: 'string', default: join(ROOT, 'bench', 'results') },
        'etcd-bin': { type: 'string', default: 'etcd' },
        'no-install': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err: unknown) {
    fail(err instanceof Error ? err.message : String(err));
  }
}
const flags = parseFlags();
if (flags.help) {
  process.stdout.write(`usage: npm run leader-kill -- [--kills N] [--systems replikit,etcd] [--writers N]
                               [--etcd-bin PATH] [--no-install] [--out DIR]
  --kills N      leader kills per system (default 20)
  --systems LIST replikit, etcd or both (default: both); etcd is installed from Debian when
                 missing, and reported as not available when it cannot be had
  --writers N    callers writing throughout (default 16)
  --etcd-bin     the etcd binary (default: etcd on PATH)
  --no-install   never run apt-get for etcd
  --out DIR      where leader-kill-latest.md/.json go (default bench/results)
`);
  process.exit(0);
}

function positiveInt(name: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < 1) fail(`--${name} must be a positive integer, not ${JSON.stringify(text)}`);
  return value;
}
const KILLS = positiveInt('kills', flags.kills);
const WRITERS = positiveInt('writers', flags.writers);
const wanted = flags.systems.split(',').map((s) => s.trim());
for (const name of wanted) {
  if (!(SYSTEMS as readonly string[]).includes(name)) fail(`--systems: unknown system ${JSON.stringify(name)}; known: ${SYSTEMS.join(', ')}`);
}
const ONLY = SYSTEMS.filter((s) => wanted.includes(s));
if (ONLY.length === 0) fail('--systems names no system');
if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) fail('dist/ is missing: run `npm run build` first');
if (process.env.REPLIKIT_UNSAFE_NO_SYNC !== undefined) fail('REPLIKIT_UNSAFE_NO_SYNC is set: this campaign measures durable writes; unset it');

/**
 * When dist/ was last built: every `serve` (a restarted one too) runs dist/, so a build during the
 * run (on a shared working tree) would mix two versions in one cluster. The report says so.
 */
const distBuiltAt = () => statSync(join(ROOT, 'dist', 'cli', 'main.js')).mtime.toISOString();
const DIST_BUILT_AT = distBuiltAt();

const reaper = new Reaper();
const log = (line: string) => process.stderr.write(`${line}\n`);
process.on('exit', () => reaper.killAllNow());
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nleader-kill: ${signal}: stopping every process it started, then exiting\n`);
    reaper.killAllNow();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}
const watchdogMs = ONLY.length * (WATCHDOG_PER_SYSTEM_MS + KILLS * WATCHDOG_PER_KILL_MS);
const watchdog = setTimeout(() => {
  process.stderr.write(`leader-kill: watchdog: the run took longer than ${Math.round(watchdogMs / 1000)} s; stopping every process it started\n`);
  reaper.killAllNow();
  process.exit(1);
}, watchdogMs);
watchdog.unref();

const startedAt = new Date();
const started = performance.now();
const results: CampaignResult[] = [];
const unavailable: { system: SystemKind; reason: string }[] = [];
const errors: { system: SystemKind; error: string }[] = [];
const evidence: string[] = [];

for (const kind of ONLY) {
  let system: FailoverSystem;
  try {
    if (kind === 'replikit') {
      system = await startReplikitFailover(reaper);
    } else {
      const etcd = findOrInstallEtcd(flags['etcd-bin'], !flags['no-install'], log);
      if (!etcd.ok) {
        log(`etcd: not available: ${etcd.reason}`);
        unavailable.push({ system: 'etcd', reason: etcd.reason });
        continue;
      }
      system = await startEtcdFailover(reaper, etcd.binary, etcd.version);
    }
  } catch (err: unknown) {
    const message = err instanceof Error ? err.message : String(err);
    log(`${kind}: failed to start: ${message}`);
    errors.push({ system: kind, error: `failed to start: ${message.slice(0, 600)}` });
    continue;
  }
  log(`${kind}: started; ${KILLS} leader kills under ${WRITERS} writers`);
  try {
    const result = await runCampaign(system, { kills: KILLS, writers: WRITERS, log });
    results.push(result);
    if (result.readBack.lost > 0 || result.readBack.unreadable > 0 || result.stoppedEarly !== null || (kind === 'replikit' && result.readBack.refusedApplied > 0)) {
      evidence.push(`=== ${kind}: the last lines each member logged\n${system.logTail()}`);
    }
  } catch (err: unknown) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    errors.push({ system: kind, error: `the campaign failed: ${message.slice(0, 600)}` });
    evidence.push(`=== ${kind}: the campaign failed: ${message}\n${system.logTail()}`);
  } finally {
    await system.close();
  }
}
clearTimeout(watchdog);

const notes: string[] = [];
if (distBuiltAt() !== DIST_BUILT_AT) {
  notes.push(`dist/ was rebuilt during the run (${DIST_BUILT_AT}, then ${distBuiltAt()}): members restarted after that ran another build than the ones started first`);
}
const cpu = cpus();
const report: LeaderKillReport = {
  startedAt: startedAt.toISOString(),
  wallClockSeconds: Math.round((performance.now() - started) / 100) / 10,
  machine: `${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown'}), Linux ${release()}, Node ${process.version}`,
  command: `npm run leader-kill -- ${process.argv.slice(2).join(' ')}`.trim().replace(/ --$/, ''),
  settings: { kills: KILLS, writers: WRITERS, callDeadlineMs: CALL_DEADLINE_MS, recoveryBoundMs: RECOVERY_BOUND_MS, settleMs: SETTLE_MS, probeIntervalMs: PROBE_INTERVAL_MS },
  results,
  unavailable,
  errors,
  notes,
};
mkdirSync(flags.out, { recursive: true });
const mdPath = join(flags.out, 'leader-kill-latest.md');
const jsonPath = join(flags.out, 'leader-kill-latest.json');
writeFileSync(mdPath, renderMarkdown(report));
writeFileSync(jsonPath, toJson(report));
const problems = verdict(report);
if (evidence.length > 0) {
  const logPath = join(flags.out, 'leader-kill-latest.log');
  writeFileSync(logPath, `${evidence.join('\n\n')}\n`);
  log(`evidence: ${relative(process.cwd(), logPath) || logPath}`);
}
process.stdout.write(renderTerminal(report));
log(`report: ${relative(process.cwd(), mdPath) || mdPath}, ${relative(process.cwd(), jsonPath) || jsonPath}`);
process.exit(problems.length === 0 ? 0 : 1);
