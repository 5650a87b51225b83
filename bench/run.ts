/**
 * `npm run bench [-- --quick]`: replikit against etcd 3.4 and raw grpc-js, side by side in one run.
 *
 * Systems: bare grpc-js unary echo (the ceiling), echo with replikit's clock interceptors, replikit
 * CP / AP / causal put and get (3 `replikit serve` processes each, LmdbStore, fsync on; a policy
 * that `serve` refuses is reported as not available in this build), CP compare-and-set
 * (KvService.Txn), the same CP put, get and compare-and-set through the embedding API inside one
 * node's own process (bench/embedded.ts), and etcd 3.4 (3 members, installed from Debian when
 * missing): Put, linearizable Range and Txn. One grpc-js load generator drives them all (the
 * embedded system drives itself, with the same load loop) with 100-byte values over 1,000 keys
 * (compare-and-set: 16 keys owned by each caller) at 1 and 64 callers, plus 8 and 256 for CP put
 * and etcd Put (the plot).
 * The full mode runs 3 rounds, the systems alternating within each, and reports medians. The
 * systems not being measured are paused (SIGSTOP), and each phase also records the CPU the
 * servers spent per call (from /proc), which a shared machine disturbs far less than throughput.
 *
 * Then the Range and Watch rows (bench/watch-range.ts, issue #16), on a replikit CP cluster and an
 * etcd cluster of their own: event latency from acknowledged put to delivery under 64 callers,
 * 1,000 watchers on one node (event latency and the node's memory), a 10,000-key prefix Range.
 * `--no-watch-range` leaves them out, `--watch-range-only` runs them alone.
 *
 * Then the lock and lease rows (bench/coordination.ts), on clusters of their own again: Lock +
 * Unlock pairs per second with 8 and 64 contenders on one lock name (acquire p50 / p99, server CPU
 * per pair), and the cost of keeping 10,000 leases alive (server CPU, bytes, renewals per second,
 * no lease lost). `--no-coordination` leaves them out, `--coordination-only` runs them alone.
 *
 * Then a new node catching up (bench/catch-up.ts): a 3-node cluster holding 100,000 CP and 20,000
 * AP keys (quick: 20,000 and 5,000), a fourth node joining with `serve --join`, how long until it
 * serves and until it is promoted, and the bytes sent. `--no-catch-up` leaves it out,
 * `--catch-up-only` runs it alone.
 *
 * Then the security rows (bench/security.ts, issue #19): the same replikit 3-node CP cluster run
 * plaintext and with mutual TLS + `--authz`, CP put and get at 1 and 64 callers, the two measured
 * back to back in every round; ratios secure / plaintext. `--no-security` leaves them out,
 * `--security-only` runs them alone.
 *
 * Output: the table on stdout, a progress bar on stderr, and under bench/results/ a Markdown and a
 * JSON report per run, latest.md / latest.json, and cp-vs-etcd.svg.
 *
 * Every process started is killed on every exit path (the end, an error, Ctrl-C, the watchdog).
 */
import { mkdirSync, readdirSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Reaper } from './children.js';
import { startEmbeddedCp } from './embedded.js';
import { findOrInstallEtcd, type EtcdAvailability } from './etcd.js';
import { ProgressBar, formatDuration } from './progress.js';
import {
  OP_ORDER,
  SYSTEM_ORDER,
  aggregate,
  evaluateTargets,
  renderMarkdown,
  toJson,
  type BenchReport,
  type CoordinationReport,
  type OpName,
  type Sample,
  type SystemName,
  type Unavailable,
} from './report.js';
import { renderThroughputSvg } from './svg-plot.js';
import { coordinationPlan, runCoordination } from './coordination.js';
import { runCatchUp, type CatchUpReport } from './catch-up.js';
import { runSecurity, securityPlan } from './security.js';
import type { SecurityReport } from './security-report.js';
import { runWatchRange, watchRangePlan } from './watch-range.js';
import type { RangeWatchReport } from './watch-report.js';
import { CALL_DEADLINE_MS, KEY_COUNT, VALUE_BYTES, startEcho, startEtcd, startReplikit, type BenchSystem, type ReplikitCalls, type StartResult } from './systems.js';
import { resume, signalAll } from './pausing.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Callers for every system and op: one (latency) and 64 (throughput), as the targets name them. */
const MAIN_CONCURRENCIES = [1, 64] as const;
/** Extra callers for the plot, CP put and etcd Put only. */
const SWEEP_CONCURRENCIES = [8, 256] as const;
const SWEEP_SYSTEMS: readonly SystemName[] = ['replikit-cp', 'etcd'];
/** Starting every system (the replikit clusters one after another) and filling its keys, on 2 busy cores. */
const STARTUP_BUDGET_MS = 180_000;

/** The command line, or exit status 2 with the reason for a flag it does not know. */
function parseFlags() {
  try {
    return parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        'duration-ms': { type: 'string' },
        'warmup-ms': { type: 'string' },
        'etcd-bin': { type: 'string', default: 'etcd' },
        'no-install': { type: 'boolean', default: false },
        'no-etcd': { type: 'boolean', default: false },
        'etcd-reads': { type: 'string', default: 'leader' },
        'replikit-calls': { type: 'string', default: 'spread' },
        'no-pause': { type: 'boolean', default: false },
        'serve-arg': { type: 'string', multiple: true },
        systems: { type: 'string' },
        'no-watch-range': { type: 'boolean', default: false },
        'watch-range-only': { type: 'boolean', default: false },
        'no-coordination': { type: 'boolean', default: false },
        'coordination-only': { type: 'boolean', default: false },
        'no-catch-up': { type: 'boolean', default: false },
        'catch-up-only': { type: 'boolean', default: false },
        'no-security': { type: 'boolean', default: false },
        'security-only': { type: 'boolean', default: false },
        out: { type: 'string', default: join(ROOT, 'bench', 'results') },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }).values;
  } catch (err: unknown) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)} (see npm run bench -- --help)\n`);
    process.exit(2);
  }
}
const flags = parseFlags();

if (flags.help) {
  process.stdout.write(`usage: npm run bench -- [--quick] [--rounds N] [--duration-ms N] [--warmup-ms N]
                         [--systems LIST] [--etcd-bin PATH] [--no-install] [--no-etcd]
                         [--etcd-reads leader|spread] [--replikit-calls spread|pinned]
                         [--serve-arg FLAG]... [--no-pause] [--out DIR]
                         [--no-watch-range | --watch-range-only]
                         [--no-coordination | --coordination-only] [--no-catch-up | --catch-up-only]
                         [--no-security | --security-only]
  --quick        one round of 1 s phases (lock phases 2 s, keep-alive 5 s): a smoke check
  --rounds N     rounds, systems alternating within each; medians reported (full: 3)
  --etcd-bin     the etcd binary (default: etcd on PATH, installed from Debian when missing)
  --no-install   never run apt-get; without etcd the report compares against echo only
  --no-etcd      leave etcd out altogether
  --etcd-reads   leader (default) or spread: where etcd's linearizable Range goes
  --replikit-calls  spread (default: round-robin over the 3 nodes) or pinned (every call to
                 n1, as etcd's go to its leader)
  --systems LIST only these, e.g. echo,etcd,replikit-cp,replikit-cp-embedded (default: all)
  --serve-arg A  an extra flag for every \`replikit serve\` (repeat it), e.g.
                 --serve-arg=--heartbeat-interval-ms=1000; the report's notes name them
                 (the embedded node cannot take them: with any, it is left out)
  --no-pause     keep every system running; by default the ones not being measured are
                 paused (SIGSTOP), so their background work takes no CPU from the one measured
  --no-watch-range   leave out the Range and Watch rows (replikit CP and etcd: watch event
                 latency under 64 putting callers, 1,000 watchers on one node, a 10,000-key
                 prefix Range; on clusters of their own, after the other rows)
  --watch-range-only only the Range and Watch rows (--systems still picks replikit-cp / etcd)
  --no-coordination  leave out the lock and lease rows (replikit CP and etcd: Lock + Unlock
                 pairs/s with 8 and 64 contenders on one name, 10 s a round; keeping 10,000
                 leases alive for 20 s; on clusters of their own, after the other rows;
                 --quick: 2 s and 5 s)
  --coordination-only only the lock and lease rows (--systems still picks replikit-cp / etcd)
  --no-catch-up      leave out the row of a new node catching up (100,000 CP keys; quick: 20,000)
  --catch-up-only    only that row
  --no-security      leave out the security rows (the same replikit CP cluster plaintext and with
                 mutual TLS + --authz, CP put and get at 1 and 64 callers, side by side)
  --security-only    only the security rows
`);
  process.exit(0);
}

function intOption(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) {
    process.stderr.write(`bench: --${name} must be a whole number ≥ ${min}, not ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return value;
}

const QUICK = flags.quick;
const ROUNDS = intOption('rounds', flags.rounds, QUICK ? 1 : 3, 1);
const DURATION_MS = intOption('duration-ms', flags['duration-ms'], QUICK ? 1_000 : 5_000, 100);
const WARMUP_MS = intOption('warmup-ms', flags['warmup-ms'], QUICK ? 250 : 1_000, 0);
const OUT_DIR = flags.out;
if (flags['etcd-reads'] !== 'leader' && flags['etcd-reads'] !== 'spread') {
  process.stderr.write(`bench: --etcd-reads must be leader or spread, not ${JSON.stringify(flags['etcd-reads'])}\n`);
  process.exit(2);
}
const ETCD_READS: 'leader' | 'spread' = flags['etcd-reads'];
if (flags['replikit-calls'] !== 'spread' && flags['replikit-calls'] !== 'pinned') {
  process.stderr.write(`bench: --replikit-calls must be spread or pinned, not ${JSON.stringify(flags['replikit-calls'])}\n`);
  process.exit(2);
}
const REPLIKIT_CALLS: ReplikitCalls = flags['replikit-calls'];
const ONLY = flags.systems === undefined ? undefined : new Set(flags.systems.split(',').map((s) => s.trim()));
for (const name of ONLY ?? []) {
  if (!(SYSTEM_ORDER as readonly string[]).includes(name)) {
    process.stderr.write(`bench: --systems: unknown system ${JSON.stringify(name)}; known: ${SYSTEM_ORDER.join(', ')}\n`);
    process.exit(2);
  }
}
const SERVE_ARGS: readonly string[] = flags['serve-arg'] ?? [];
/** Whether a system is part of this run (--systems). */
const wanted = (name: SystemName) => ONLY === undefined || ONLY.has(name);
if (flags['no-watch-range'] && flags['watch-range-only']) {
  process.stderr.write('bench: --no-watch-range and --watch-range-only exclude each other\n');
  process.exit(2);
}
const WATCH_RANGE_ONLY = flags['watch-range-only'];
if (flags['no-coordination'] && flags['coordination-only']) {
  process.stderr.write('bench: --no-coordination and --coordination-only exclude each other\n');
  process.exit(2);
}
if (flags['watch-range-only'] && flags['coordination-only']) {
  process.stderr.write('bench: --watch-range-only and --coordination-only exclude each other\n');
  process.exit(2);
}
const CATCH_UP_ONLY = flags['catch-up-only'];
if (flags['no-catch-up'] && CATCH_UP_ONLY) {
  process.stderr.write('bench: --no-catch-up and --catch-up-only exclude each other\n');
  process.exit(2);
}
if (CATCH_UP_ONLY && (flags['watch-range-only'] || flags['coordination-only'])) {
  process.stderr.write('bench: --catch-up-only excludes --watch-range-only and --coordination-only\n');
  process.exit(2);
}
const COORDINATION_ONLY = flags['coordination-only'];
const SECURITY_ONLY = flags['security-only'];
if (flags['no-security'] && SECURITY_ONLY) {
  process.stderr.write('bench: --no-security and --security-only exclude each other\n');
  process.exit(2);
}
if (SECURITY_ONLY && (flags['watch-range-only'] || COORDINATION_ONLY || CATCH_UP_ONLY)) {
  process.stderr.write('bench: --security-only excludes --watch-range-only, --coordination-only and --catch-up-only\n');
  process.exit(2);
}
/** Whether a system is measured in the put / get / cas rows (all but --watch-range-only / --coordination-only). */
const inMainRows = (name: SystemName) => !WATCH_RANGE_ONLY && !COORDINATION_ONLY && !CATCH_UP_ONLY && !SECURITY_ONLY && wanted(name);
/** Range / watch rows: replikit CP and etcd, when wanted. */
const WATCH_RANGE = !flags['no-watch-range'] && !COORDINATION_ONLY && !CATCH_UP_ONLY && !SECURITY_ONLY && (wanted('replikit-cp') || wanted('etcd'));
/** Lock and lease rows: replikit CP and etcd, when wanted. */
const COORDINATION = !flags['no-coordination'] && !WATCH_RANGE_ONLY && !CATCH_UP_ONLY && !SECURITY_ONLY && (wanted('replikit-cp') || wanted('etcd'));
/** The catch-up row: replikit only. */
const CATCH_UP = !flags['no-catch-up'] && !WATCH_RANGE_ONLY && !COORDINATION_ONLY && !SECURITY_ONLY && wanted('replikit-cp');
/** The security rows: replikit CP only. */
const SECURITY = !flags['no-security'] && !WATCH_RANGE_ONLY && !COORDINATION_ONLY && !CATCH_UP_ONLY && wanted('replikit-cp');
/** Measured time of a lock phase, and of the keep-alive phase, per round. */
const LOCK_MS = QUICK ? 2_000 : 10_000;
const KEEPALIVE_MS = QUICK ? 5_000 : 20_000;
/** How long the idle cluster's CPU is read before each round's lock and lease phases. */
const IDLE_MS = QUICK ? 1_000 : 2_000;
/** How to run this report again. */
const COMMAND = ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
/** Range runs per round: enough for a p99 over the full mode's 3 rounds. */
const RANGE_RUNS = QUICK ? 5 : 10;

const reaper = new Reaper();
let progress: ProgressBar | undefined;
const log = (line: string) => (progress ? progress.note(line) : process.stderr.write(`${line}\n`));

// Every exit path stops every child: 'exit' covers the normal end, errors and process.exit().
process.on('exit', () => reaper.killAllNow());
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    progress?.finish();
    process.stderr.write(`\nbench: ${signal}: stopping every process it started, then exiting\n`);
    reaper.killAllNow();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}


interface Phase {
  readonly system: BenchSystem;
  readonly op: OpName;
  readonly concurrency: number;
  readonly round: number;
}

/** The phases of all rounds: per (concurrency, op) every system in turn, the order reversed in odd rounds. */
function plan(systems: readonly BenchSystem[]): Phase[] {
  const phases: Phase[] = [];
  const concurrencies = [...MAIN_CONCURRENCIES, ...SWEEP_CONCURRENCIES].sort((a, b) => a - b);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const concurrency of concurrencies) {
      const sweep = !(MAIN_CONCURRENCIES as readonly number[]).includes(concurrency);
      for (const op of OP_ORDER) {
        let group = systems.filter((s) => s.ops.includes(op) && (!sweep || (op === 'put' && SWEEP_SYSTEMS.includes(s.name))));
        if (round % 2 === 0) group = [...group].reverse();
        for (const system of group) phases.push({ system, op, concurrency, round });
      }
    }
  }
  return phases;
}

/** A note when some compiled file in dist/ is older than its source: the serve processes run dist/. */
function staleBuildNote(): string | undefined {
  const stale: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        const built = join(ROOT, 'dist', relative(join(ROOT, 'src'), path)).replace(/\.ts$/, '.js');
        let builtMs = 0;
        try {
          builtMs = statSync(built).mtimeMs;
        } catch {
          // Not built at all: stale too.
        }
        if (builtMs < statSync(path).mtimeMs) stale.push(relative(ROOT, path));
      }
    }
  };
  walk(join(ROOT, 'src'));
  if (stale.length === 0) return undefined;
  return `dist/ is older than ${stale.length} source file(s) (${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ', …' : ''}): the serve processes ran the last build; run \`npm run build\` first to measure the current code.`;
}

/** Names the file system of the data directories, and warns if fsync would be a no-op there. */
function fileSystemNote(): string {
  const types: Record<number, string> = { 0xef53: 'ext4', 0x01021994: 'tmpfs', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x794c7630: 'overlayfs' };
  const type = statfsSync(tmpdir()).type;
  const name = types[type] ?? `file system type 0x${type.toString(16)}`;
  return name === 'tmpfs'
    ? `data directories are under ${tmpdir()} on tmpfs: fsync is a no-op there, so neither side's numbers are durable ones`
    : `data directories of both sides under ${tmpdir()} (${name}), where fsync reaches the disk`;
}

function grpcJsVersion(): string {
  try {
    return (createRequire(import.meta.url)('@grpc/grpc-js/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<number> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const notes: string[] = [];
  const unavailable: Unavailable[] = [];
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  notes.push(`load average at start ${load}: the machine is shared, so only numbers from the same run are compared`);
  notes.push('the load generator is this one Node process (one grpc-js channel per server), on the same cores as the servers');
  const stale = staleBuildNote();
  if (stale !== undefined) {
    notes.push(stale);
    log(`warning: ${stale}`);
  }
  notes.push(fileSystemNote());
  if (SERVE_ARGS.length > 0) {
    notes.push(`every \`replikit serve\` ran with the extra flags ${SERVE_ARGS.join(' ')}`);
  }

  let etcd: EtcdAvailability;
  if (SECURITY_ONLY) etcd = { ok: false, reason: 'not used by --security-only' };
  else if (flags['no-etcd'] || !wanted('etcd')) etcd = { ok: false, reason: flags['no-etcd'] ? 'left out (--no-etcd)' : 'left out (--systems)' };
  else etcd = findOrInstallEtcd(flags['etcd-bin'], !flags['no-install'], log);
  if (!etcd.ok && !SECURITY_ONLY) {
    unavailable.push({ system: 'etcd', reason: etcd.reason });
    notes.push(`etcd is not part of this run (${etcd.reason}): everything is compared against echo only`);
    log(`etcd not available: ${etcd.reason}; comparing against echo only`);
  }

  // The watchdog: whatever hangs, the run ends with a message and every process stopped. Armed
  // for starting and filling first, then again for the phases planned.
  let watchdog: NodeJS.Timeout | undefined;
  const armWatchdog = (ms: number, what: string) => {
    if (watchdog !== undefined) clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      progress?.finish();
      process.stderr.write(`bench: watchdog: ${what} took longer than ${formatDuration(ms)}; stopping every process it started\n`);
      reaper.killAllNow();
      process.exit(124);
    }, ms);
  };
  armWatchdog(STARTUP_BUDGET_MS, 'starting the systems and filling the key space');

  log(`bench ${QUICK ? 'quick' : 'full'}: ${ROUNDS} round(s), ${DURATION_MS} ms per phase after ${WARMUP_MS} ms warm-up; starting systems`);
  const lightStarts: Promise<StartResult[]> = Promise.all([
    ...(inMainRows('echo') ? [startEcho(reaper, false)] : []),
    ...(inMainRows('echo-interceptors') ? [startEcho(reaper, true)] : []),
    ...(etcd.ok && !WATCH_RANGE_ONLY && !COORDINATION_ONLY && !CATCH_UP_ONLY && !SECURITY_ONLY ? [startEtcd(reaper, etcd.binary, ETCD_READS)] : []),
  ]);
  // The replikit clusters start one after another: every node must print its ready line within
  // LocalCluster's 20 s, and twelve node processes loading at once on two busy cores missed that.
  const clusterStarts: (() => Promise<StartResult>)[] = [
    ...(['cp', 'ap', 'causal'] as const).filter((p) => inMainRows(`replikit-${p}`)).map((p) => () => startReplikit(reaper, p, SERVE_ARGS, REPLIKIT_CALLS)),
    ...(inMainRows('replikit-cp-embedded') ? [() => startEmbeddedCp(reaper, SERVE_ARGS)] : []),
  ];
  const clusterResults: StartResult[] = [];
  for (const start of clusterStarts) clusterResults.push(await start());
  const results = [...(await lightStarts), ...clusterResults];
  const systems: BenchSystem[] = [];
  for (const r of results) {
    if (r.ok) systems.push(r.system);
    else {
      unavailable.push({ system: r.system, reason: r.reason });
      log(`${r.system}: ${r.reason}`);
    }
  }
  log(`started ${systems.map((s) => s.name).join(', ')} in ${((performance.now() - started) / 1000).toFixed(1)} s; filling ${KEY_COUNT} keys`);
  for (const system of [...systems]) {
    try {
      await system.prefill();
    } catch (err: unknown) {
      const reason = `prefill failed: ${err instanceof Error ? err.message : String(err)}`;
      unavailable.push({ system: system.name, reason });
      log(`${system.name}: ${reason}`);
      systems.splice(systems.indexOf(system), 1);
      await system.close();
    }
  }
  systems.sort((a, b) => SYSTEM_ORDER.indexOf(a.name) - SYSTEM_ORDER.indexOf(b.name));
  for (const s of systems) notes.push(`${s.name}: ${s.description}`);

  const phases = plan(systems);
  // A phase can overrun its plan by at most one call deadline (the last calls in flight).
  armWatchdog(phases.length * (DURATION_MS + WARMUP_MS + CALL_DEADLINE_MS) + STARTUP_BUDGET_MS, 'the measuring phases');
  progress = new ProgressBar(phases.length * (DURATION_MS + WARMUP_MS), phases.length);
  const samples: Sample[] = [];
  const pausing = !flags['no-pause'];
  if (pausing) {
    for (const s of systems) signalAll(s, 'SIGSTOP');
    notes.push(
      'the systems not being measured are paused (SIGSTOP) and continued before their turn, so their background work ' +
        '(replikit heartbeats, clock sync, anti-entropy; etcd raft ticks) takes no CPU from the one measured',
    );
  }
  let active: BenchSystem | undefined;
  for (const phase of phases) {
    const { system, op, concurrency, round } = phase;
    progress.phase(`${system.name} ${op} ×${concurrency} (round ${round}/${ROUNDS})`, DURATION_MS + WARMUP_MS);
    if (pausing && active !== system) {
      if (active !== undefined) signalAll(active, 'SIGSTOP');
      active = system;
      try {
        await resume(system, system.name);
      } catch (err: unknown) {
        // Measured anyway: its failed calls go into the report's errors, not into silence.
        const message = err instanceof Error ? err.message : String(err);
        log(message);
        notes.push(message);
      }
    }
    // CPU of the servers (and of the load generator) over the measured window only, after the warm-up.
    const { result, ...cpu } = await system.measure(op, { concurrency, durationMs: DURATION_MS, warmupMs: WARMUP_MS });
    samples.push({ system: system.name, op, concurrency, round, result, ...cpu });
    if (result.errors > 0) log(`${system.name} ${op} ×${concurrency}: ${result.errors} errors, first: ${result.firstError}`);
    if ((result.failedCompares ?? 0) > 0) log(`${system.name} ${op} ×${concurrency}: ${result.failedCompares} failed compares`);
  }
  progress.finish();
  for (const s of systems) notes.push(...(s.notes?.() ?? []));
  for (const s of systems) signalAll(s, 'SIGCONT');
  await Promise.all(systems.map((s) => s.close()));
  clearTimeout(watchdog);

  let rangeWatch: RangeWatchReport | undefined;
  if (WATCH_RANGE && (wanted('replikit-cp') || etcd.ok)) {
    const sectionOptions = {
      rounds: ROUNDS,
      durationMs: DURATION_MS,
      warmupMs: WARMUP_MS,
      replikit: wanted('replikit-cp'),
      etcdBinary: etcd.ok ? etcd.binary : undefined,
    };
    const sectionPlan = watchRangePlan(sectionOptions);
    // Starting two clusters and loading 10,000 keys into each, then every step with its settling
    // time and watch creation on a busy machine.
    armWatchdog(STARTUP_BUDGET_MS + sectionPlan.steps * 60_000 + sectionPlan.plannedMs, 'the Range and Watch rows');
    progress = new ProgressBar(sectionPlan.plannedMs, sectionPlan.steps);
    const bar = progress;
    log('range/watch: starting a replikit CP cluster and an etcd cluster of their own');
    rangeWatch = await runWatchRange({
      ...sectionOptions,
      reaper,
      quick: QUICK,
      rangeRuns: RANGE_RUNS,
      serveArgs: SERVE_ARGS,
      replikitCalls: REPLIKIT_CALLS,
      etcdReads: ETCD_READS,
      pause: pausing,
      log,
      phase: (label, plannedMs) => bar.phase(label, plannedMs),
    });
    progress.finish();
    clearTimeout(watchdog);
  }

  let coordination: CoordinationReport | undefined;
  if (COORDINATION && (wanted('replikit-cp') || etcd.ok)) {
    const sectionOptions = {
      rounds: ROUNDS,
      lockDurationMs: LOCK_MS,
      keepAliveDurationMs: KEEPALIVE_MS,
      warmupMs: WARMUP_MS,
      idleMs: IDLE_MS,
      replikit: wanted('replikit-cp'),
      etcdBinary: etcd.ok ? etcd.binary : undefined,
    };
    const sectionPlan = coordinationPlan(sectionOptions);
    // Starting two clusters, then every step with its grants, checks and revokes on a busy machine.
    armWatchdog(STARTUP_BUDGET_MS + sectionPlan.steps * 60_000 + sectionPlan.plannedMs, 'the lock and lease rows');
    progress = new ProgressBar(sectionPlan.plannedMs, sectionPlan.steps);
    const bar = progress;
    log('locks/leases: starting a replikit CP cluster and an etcd cluster of their own');
    coordination = await runCoordination({
      ...sectionOptions,
      reaper,
      serveArgs: SERVE_ARGS,
      replikitCalls: REPLIKIT_CALLS,
      pause: pausing,
      command: COMMAND,
      log,
      phase: (label, plannedMs) => bar.phase(label, plannedMs),
    });
    progress.finish();
    clearTimeout(watchdog);
  }

  let catchUp: CatchUpReport | undefined;
  if (CATCH_UP) {
    // Loading the keys (a minute or two on a loaded machine), then the join.
    armWatchdog(STARTUP_BUDGET_MS + 10 * 60_000, 'the catch-up row');
    log('catch-up: starting a replikit cluster of its own and loading it');
    catchUp = await runCatchUp({ cpKeys: QUICK ? 20_000 : 100_000, apKeys: QUICK ? 5_000 : 20_000, log });
    clearTimeout(watchdog);
  }

  let security: SecurityReport | undefined;
  if (SECURITY) {
    const sectionOptions = { rounds: ROUNDS, durationMs: DURATION_MS, warmupMs: WARMUP_MS };
    const sectionPlan = securityPlan(sectionOptions);
    // Making the certificates, starting two clusters and filling them, then every phase with its resume.
    armWatchdog(STARTUP_BUDGET_MS + sectionPlan.steps * (CALL_DEADLINE_MS + 15_000) + sectionPlan.plannedMs, 'the security rows');
    progress = new ProgressBar(sectionPlan.plannedMs, sectionPlan.steps);
    const bar = progress;
    log('security: starting a replikit CP cluster plaintext and one with mutual TLS + --authz');
    security = await runSecurity({
      ...sectionOptions,
      reaper,
      pause: pausing,
      serveArgs: SERVE_ARGS,
      command: COMMAND,
      log,
      phase: (label, plannedMs) => bar.phase(label, plannedMs),
    });
    progress.finish();
    clearTimeout(watchdog);
  }

  const rows = aggregate(samples);
  const report: BenchReport = {
    meta: {
      mode: QUICK ? 'quick' : 'full',
      startedAt,
      wallSeconds: (performance.now() - started) / 1000,
      rounds: ROUNDS,
      durationMs: DURATION_MS,
      warmupMs: WARMUP_MS,
      valueBytes: VALUE_BYTES,
      keys: KEY_COUNT,
      machine:
        `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown cpu'}), Linux ${release()}, Node ${process.version}, ` +
        `grpc-js ${grpcJsVersion()}, etcd ${etcd.ok ? etcd.version : 'not available'}`,
      durability:
        'both sides fsync before they acknowledge. replikit: every node keeps its data in LMDB (LmdbStore, synchronous commits, ' +
        'writes batched into shared transactions), and a CP put is acknowledged once a majority has committed it. etcd 3.4: default ' +
        'settings, a Put is acknowledged once a majority has fsynced it to its write-ahead log (3.4 has no switch to turn fsync off).',
      notes,
      command: COMMAND,
    },
    rows,
    unavailable,
    targets: evaluateTargets(rows, unavailable),
    ...(rangeWatch === undefined ? {} : { rangeWatch }),
    ...(coordination === undefined ? {} : { coordination }),
    ...(catchUp === undefined ? {} : { catchUp }),
    ...(security === undefined ? {} : { security }),
  };
  const markdown = renderMarkdown(report);
  const json = toJson(report);
  const svg = renderThroughputSvg({
    title: 'Put throughput against concurrency: replikit CP and etcd 3.4',
    subtitle: `3 replicas each on loopback, fsync on, ${VALUE_BYTES}-byte values, ${ROUNDS > 1 ? `medians of ${ROUNDS} rounds` : '1 round (quick)'}`,
    xLabel: 'concurrent callers (log scale)',
    yLabel: 'puts per second',
    series: (['replikit-cp', 'etcd'] as const).map((system) => ({
      label: system === 'etcd' ? 'etcd 3.4 Put (to leader)' : 'replikit CP put',
      color: system === 'etcd' ? '#d62728' : '#1f77b4',
      points: rows.filter((r) => r.system === system && r.op === 'put').map((r) => ({ x: r.concurrency, y: r.opsPerSec })),
    })),
  });
  mkdirSync(OUT_DIR, { recursive: true });
  const stamp = `run-${startedAt.replace(/[:.]/g, '-')}-${QUICK ? 'quick' : 'full'}`;
  writeFileSync(join(OUT_DIR, `${stamp}.md`), markdown);
  writeFileSync(join(OUT_DIR, `${stamp}.json`), json);
  writeFileSync(join(OUT_DIR, 'latest.md'), markdown);
  writeFileSync(join(OUT_DIR, 'latest.json'), json);
  writeFileSync(join(OUT_DIR, 'cp-vs-etcd.svg'), svg);
  process.stdout.write(`\n${markdown}\n`);
  process.stderr.write(
    `bench: done in ${formatDuration(performance.now() - started)}; wrote ${relative(process.cwd(), join(OUT_DIR, `${stamp}.{md,json}`))}, latest.{md,json}, cp-vs-etcd.svg\n`,
  );
  return 0;
}

main()
  .then((code) => {
    reaper.killAllNow();
    process.exit(code);
  })
  .catch((err: unknown) => {
    progress?.finish();
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    reaper.killAllNow();
    process.exit(1);
  });
