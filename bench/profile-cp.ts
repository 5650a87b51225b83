/**
 * `npm run bench:profile`: where a replikit CP put spends its CPU. Starts three `replikit serve`
 * processes under `node --cpu-prof` (its own spawn code: LocalCluster cannot add Node flags),
 * drives them with the benchmark's load generator (64 callers, 100-byte puts, round-robin over
 * the nodes), stops them with SIGTERM so that V8 writes the profiles, and prints the top
 * self-time functions and areas per node and over all three.
 *
 * Output: bench/results/profile-POLICY-OP-xCALLERS.md (profile-cp-put-x64.md by default); the raw profiles stay in bench/results/profile/ for
 * Chrome DevTools (Performance → Load profile).
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePorts } from '../src/cli/local-cluster.js';
import { sampleMetric } from '../src/ops/metrics-text.js';
import { Reaper, spawnReady, type ReadyChild } from './children.js';
import { renderProfileSummary, summarizeProfiles, type CpuProfile } from './cpu-profile.js';
import { runLoad } from './load.js';
import { replikitDriver } from './systems.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'replikit.js');
/** How long a profiled node may take to write its profile after SIGTERM. */
const EXIT_TIMEOUT_MS = 20_000;

const { values: flags } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '64' },
    op: { type: 'string', default: 'put' },
    policy: { type: 'string', default: 'cp' },
    out: { type: 'string', default: join(ROOT, 'bench', 'results') },
    'no-cpu-prof': { type: 'boolean', default: false },
  },
  strict: true,
});
const DURATION_MS = Number(flags['duration-ms']);
const CONCURRENCY = Number(flags.concurrency);
const OP = flags.op;
/** Without the profiler (--no-cpu-prof) only the CP phase table is written: timings undisturbed by it. */
const PROFILE = !flags['no-cpu-prof'];
if (!(DURATION_MS > 0) || !(CONCURRENCY >= 1) || (OP !== 'put' && OP !== 'get')) {
  process.stderr.write('usage: npm run bench:profile -- [--duration-ms N] [--concurrency N] [--op put|get] [--policy cp|ap|causal] [--no-cpu-prof]\n');
  process.exit(2);
}

const reaper = new Reaper();
process.on('exit', () => reaper.killAllNow());
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nprofile: ${signal}: stopping every node\n`);
    reaper.killAllNow();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  process.stderr.write('profile: watchdog: no result in time; stopping every node\n');
  reaper.killAllNow();
  process.exit(124);
}, DURATION_MS + 120_000);

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'replikit-profile-'));
  reaper.trackDir(root);
  const profileDir = join(flags.out, 'profile');
  rmSync(profileDir, { recursive: true, force: true });
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(6);
  const metricsPorts = ports.slice(3);
  const nodes: ReadyChild[] = await Promise.all(
    ids.map((id, i) => {
      const peers = ids.filter((p) => p !== id).map((p) => `${p}=127.0.0.1:${ports[ids.indexOf(p)]}`).join(',');
      const args = [
        ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, id)}`] : []),
        BIN, 'serve', '--id', id, '--listen', `127.0.0.1:${ports[i]}`, '--peers', peers,
        '--data-dir', join(root, id), '--policy', flags.policy, '--log-level', 'warn',
        '--metrics-listen', `127.0.0.1:${metricsPorts[i]}`,
      ];
      return spawnReady(reaper, process.execPath, args, / ready on /, 20_000, { cwd: ROOT });
    }),
  );
  const driver = replikitDriver(ports.slice(0, 3).map((p) => `127.0.0.1:${p}`), `replikit-${flags.policy}`);
  const scrapeAll = () => Promise.all(metricsPorts.map((port) => scrapePhases(`127.0.0.1:${port}`)));
  let phasesBefore: PhaseCounters[] = [];
  let phasesAfter: PhaseCounters[] = [];
  process.stderr.write(`profile: 3 nodes up under --cpu-prof; filling keys, then ${OP} ×${CONCURRENCY} for ${DURATION_MS} ms\n`);
  await driver.prefill();
  // The measured window on the profiles' clock (CLOCK_MONOTONIC in µs, as process.hrtime).
  const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);
  const window = { fromUs: 0, toUs: 0 };
  const result = await runLoad(driver.ops[OP as 'put' | 'get'], {
    concurrency: CONCURRENCY,
    durationMs: DURATION_MS,
    warmupMs: 1_000,
    onWindowStart: () => {
      window.fromUs = monotonicUs();
      void scrapeAll().then((p) => (phasesBefore = p));
    },
    onWindowEnd: () => {
      window.toUs = monotonicUs();
      void scrapeAll().then((p) => (phasesAfter = p));
    },
  });
  // Both scrapes were started inside the run; give the last one a moment to land.
  for (let i = 0; i < 50 && phasesAfter.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  driver.close();
  process.stderr.write(`profile: ${result.opsPerSec.toFixed(0)} ops/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, ${result.errors} errors; stopping nodes\n`);
  await Promise.all(
    nodes.map(
      (n) =>
        new Promise<void>((resolve) => {
          if (n.child.exitCode !== null) return resolve();
          const timer = setTimeout(() => {
            n.child.kill('SIGKILL');
            resolve();
          }, EXIT_TIMEOUT_MS);
          n.child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          n.child.kill('SIGTERM');
        }),
    ),
  );
  const perNode = (PROFILE ? ids : []).map((id) => {
    const dir = join(profileDir, id);
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    if (files.length === 0) throw new Error(`${id} wrote no profile to ${dir}`);
    return { id, profile: JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as CpuProfile };
  });
  const sections = [
    `# Where a replikit ${flags.policy.toUpperCase()} ${OP} spends its CPU`,
    '',
    `${new Date().toISOString()}: 3 \`replikit serve --policy ${flags.policy}\` processes ${PROFILE ? 'under `node --cpu-prof`' : '(no profiler: --no-cpu-prof)'}, LmdbStore (fsync on), ` +
      `${OP} ×${CONCURRENCY} callers round-robin over the nodes for ${DURATION_MS / 1000} s after 1 s warm-up, 100-byte values. ` +
      `Measured${PROFILE ? ' under the profiler' : ''}: ${result.opsPerSec.toFixed(0)} ops/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms. ` +
      (PROFILE
        ? 'Only samples inside the measured window count (not start-up, prefill or shutdown). Shares are of busy (non-idle) time; ' +
          '"busy" is the share of the window each node\'s main thread was not idle (lmdb\'s write thread and libuv\'s are not sampled).'
        : ''),
    '',
    ...(flags.policy === 'cp' ? [renderPhases(ids, phasesBefore, phasesAfter), ''] : []),
    ...(PROFILE ? [renderProfileSummary('All three nodes', summarizeProfiles(perNode.map((n) => n.profile), window), 15)] : []),
    ...perNode.map((n) => renderProfileSummary(`Node ${n.id}`, summarizeProfiles([n.profile], window), 10)),
  ];
  const markdown = sections.join('\n');
  mkdirSync(flags.out, { recursive: true });
  const outFile = join(flags.out, `profile-${flags.policy}-${OP}-x${CONCURRENCY}${PROFILE ? '' : '-phases'}.md`);
  writeFileSync(outFile, markdown);
  process.stdout.write(`${markdown}\nprofile: wrote ${outFile}${PROFILE ? `; raw profiles in ${profileDir}` : ""}\n`);
}

/** The Raft counters one node exports for keyspace "default" (see src/ops/metrics.ts). */
interface PhaseCounters {
  readonly syncs: number;
  readonly syncSeconds: number;
  readonly entries: number;
  readonly commits: number;
  readonly commitSeconds: number;
}

/**
 * A node busy under the profiler may answer /metrics with an older snapshot (the endpoint answers
 * from its worker thread with the freshest text it has, and says how old in
 * `x-replikit-metrics-age-ms`): as old as start-up, before the Raft group existed, which printed
 * NaN for that node. Such an answer is asked again, for up to this long.
 */
const PHASE_SCRAPE_PATIENCE_MS = 2_000;
/** An answer older than this is stale for a window of a second or more. */
const PHASE_SCRAPE_MAX_AGE_MS = 300;

async function scrapePhases(address: string): Promise<PhaseCounters> {
  const giveUpAt = performance.now() + PHASE_SCRAPE_PATIENCE_MS;
  for (;;) {
    const res = await fetch(`http://${address}/metrics`);
    const body = await res.text();
    const ageMs = Number(res.headers.get('x-replikit-metrics-age-ms') ?? 0);
    if (ageMs <= PHASE_SCRAPE_MAX_AGE_MS || performance.now() > giveUpAt) {
      const value = (name: string): number => sampleMetric(body, name, { keyspace: 'default' }) ?? Number.NaN;
      return {
        syncs: value('replikit_raft_syncs'),
        syncSeconds: value('replikit_raft_sync_seconds_sum'),
        entries: value('replikit_raft_entries_persisted'),
        commits: value('replikit_raft_commits'),
        commitSeconds: value('replikit_raft_commit_seconds_sum'),
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Each node's log syncs and (on the leader) commits over the measured window, from its metrics. */
function renderPhases(ids: readonly string[], before: readonly PhaseCounters[], after: readonly PhaseCounters[]): string {
  if (before.length !== ids.length || after.length !== ids.length) return '_(the nodes\' Raft metrics could not be scraped)_';
  const rows = ids.map((id, i) => {
    const [b, a] = [before[i]!, after[i]!];
    const syncs = a.syncs - b.syncs;
    const entries = a.entries - b.entries;
    const commits = a.commits - b.commits;
    const mean = (seconds: number, count: number) => (count > 0 ? ((seconds * 1000) / count).toFixed(3) : '—');
    return `| ${id} | ${syncs} | ${mean(a.syncSeconds - b.syncSeconds, syncs)} | ${entries} | ${syncs > 0 ? (entries / syncs).toFixed(1) : '—'} | ${commits} | ${mean(a.commitSeconds - b.commitSeconds, commits)} |`;
  });
  return [
    '### Raft log syncs and commits, as each node timed them (its metrics, over the measured window)',
    '',
    'Every node makes the log entries it receives durable in syncs (group commit: every append that arrived meanwhile shares one); the leader times each of its proposals from proposal to applied (a commit: its own sync, the followers\' syncs and the round trip). The rest of a call\'s latency is the client\'s unary call, forwarding from a follower, and the KvService around the policy.',
    '',
    '| node | syncs | mean sync ms | entries | entries per sync | commits (leader) | mean commit ms |',
    '|---|--:|--:|--:|--:|--:|--:|',
    ...rows,
  ].join('\n');
}

main()
  .then(() => {
    clearTimeout(watchdog);
    reaper.killAllNow();
    process.exit(0);
  })
  .catch((err: unknown) => {
    process.stderr.write(`profile failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    reaper.killAllNow();
    process.exit(1);
  });
