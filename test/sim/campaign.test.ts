import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCampaign } from '../../src/sim/campaign.js';
import { historyWindow, shortestWindow } from '../../src/sim/history-window.js';
import type { SeedViolation } from '../../src/sim/seed-check.js';
import type { Operation, OpFunction, Outcome, Value } from '../../src/testing/history.js';
import { checkLinearizability } from '../../src/testing/linearizability.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A campaign script, as its package script runs it. */
function script(path: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `npm run sim -- …`. */
const sim = (...args: string[]) => script('scripts/sim.ts', args);
/** `npm run sim:watch -- …` and `npm run sim:lock -- …`. */
const simWatch = (...args: string[]) => script('scripts/sim-checked.ts', ['watch', ...args]);
const simLock = (...args: string[]) => script('scripts/sim-checked.ts', ['lock', ...args]);

describe('npm run sim:watch', () => {
  it('runs seeds of the watch simulation and says what they did; catches the broken resume; refuses a bad flag', async () => {
    const run = await simWatch('--seeds', '8', '--from', '301');
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/watch campaign: 8 seeds \(301\.\.308\) in [\d.]+ s, 0 violations; watchesOpened [1-9]\d*, watchResumes \d+, watchEvents [1-9]\d*/);
    const broken = await simWatch('--seeds', '40', '--broken', 'drop-event-on-resume');
    expect(broken.code, broken.stdout + broken.stderr).toBe(0);
    expect(broken.stdout).toMatch(/the broken variant was caught on seed \d+: /);
    const bad = await simWatch('--seeds', 'x');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('usage: npm run sim:watch');
  });
});

describe('npm run sim:lock', () => {
  it('runs seeds of the lock simulation and says what they did; catches expiry by a follower clock; refuses a bad flag', async () => {
    const run = await simLock('--seeds', '6', '--from', '1001');
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/lock campaign: 6 seeds \(1001\.\.1006\) in [\d.]+ s, 0 violations; acquisitions [1-9]\d*, holderDeaths \d+/);
    const broken = await simLock('--seeds', '20', '--broken', 'expire-by-follower-clock');
    expect(broken.code, broken.stdout + broken.stderr).toBe(0);
    expect(broken.stdout).toMatch(/the broken variant was caught on seed \d+: lock\n(overlap|token-order): /);
    const bad = await simLock('--broken', 'drop-event-on-resume');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('usage: npm run sim:lock');
  });
});

describe('npm run sim', () => {
  it('runs a cp campaign on two workers and prints the summary and the fault totals', async () => {
    const run = await sim('--policy', 'cp', '--seeds', '40', '--workers', '2');
    expect(run.stderr).toContain('40/40 seeds'); // the progress line (not a TTY: one line per 10 %)
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/summary \(cp\): 40 seeds run, 0 violations, [\d.]+ s elapsed, [\d.]+ seeds\/s/);
    const faults = /faults: (.*)/.exec(run.stdout)?.[1] ?? '';
    const counts = Object.fromEntries([...faults.matchAll(/(\w+) (\d+)/g)].map((m) => [m[1], Number(m[2])]));
    for (const k of ['crashes', 'crashesWithWritesInFlight', 'amnesia', 'clockStepsBack', 'clockStepsForward', 'syncFailures', 'slowDisks', 'powerLosses', 'partitions', 'recoveries']) {
      expect(counts[k], k).toBeTypeOf('number');
    }
    expect(counts.crashes).toBeGreaterThan(0);
    expect(counts.partitions).toBeGreaterThan(0);
    expect(run.stdout).toMatch(/operations: ok [1-9]\d*, fail \d+, info \d+/);
  });

  it('catches the broken commit-without-majority variant of cp, with the seed, its fault schedule and the replay command', async () => {
    const run = await sim('--policy', 'cp', '--broken', 'commit-without-majority', '--seeds', '30', '--from', '1', '--workers', '2');
    expect(run.code, run.stdout + run.stderr).toBe(0); // with --broken, 0 means it was caught
    expect(run.stdout).toMatch(/summary \(cp\): 30 seeds run, [1-9]\d* violations?/);
    const first = run.stdout.slice(run.stdout.indexOf('violation 1 of'));
    const seed = /^violation 1 of \d+: policy cp, seed (\d+), (raft-agreement|linearizability)/.exec(first)?.[1];
    expect(seed, first.slice(0, 300)).toBeDefined();
    expect(first).toMatch(/fault schedule \(\d+ actions, virtual ms\):\n\s+[\d.]+ {2}\S/);
    expect(first).toContain(`replay: npm run sim -- --policy cp --seeds 1 --from ${seed} --broken commit-without-majority`);
    expect(run.stdout).toContain('broken variant commit-without-majority caught for cp');
  });

  it('shows a history window for a linearizability violation (the causal checker\'s broken variant aside, CP\'s reads without a confirmed leader)', async () => {
    const run = await sim('--policy', 'cp', '--broken', 'commit-without-majority', '--seeds', '60', '--from', '1', '--workers', '2');
    const at = run.stdout.search(/violation \d+ of \d+: policy cp, seed \d+, linearizability/);
    if (at < 0) return; // every violation in this range was caught as log disagreement first
    const shown = run.stdout.slice(at);
    expect(shown).toMatch(/history window \(\d+ operations of the run's \d+\)/);
  });

  it('runs seeds with membership changes (--membership), counting them; catches a removed voter still counted (--broken count-removed)', async () => {
    const [run, broken] = await Promise.all([
      sim('--policy', 'ap', '--membership', '--seeds', '12', '--workers', '1'),
      // Seeds 10..29: the variant was caught on 13, 20 and 28 when this was written.
      sim('--policy', 'ap', '--broken', 'count-removed', '--seeds', '20', '--from', '10', '--workers', '1'),
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('== ap: seeds 1..12 on 1 worker, with membership changes');
    expect(run.stdout).toMatch(/summary \(ap\): 12 seeds run, 0 violations/);
    const also = /also: (.*)/.exec(run.stdout)?.[1] ?? '';
    expect(Number(/membershipAdds (\d+)/.exec(also)?.[1] ?? 0), also).toBeGreaterThan(0);
    expect(Number(/membershipRemovals (\d+)/.exec(also)?.[1] ?? 0), also).toBeGreaterThan(0);
    expect(broken.code, broken.stdout + broken.stderr).toBe(0);
    expect(broken.stdout).toMatch(/violation 1 of \d+: policy ap, seed \d+, ack-promise/);
    expect(broken.stdout).toMatch(/replay: npm run sim -- --policy ap --seeds 1 --from \d+ --broken count-removed/);
    const misplaced = await sim('--policy', 'cp', '--broken', 'count-removed');
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toContain('--broken count-removed applies to --policy ap only');
  });

  it('exits 2 naming the flag on a bad command line', async () => {
    const [seeds, policy] = await Promise.all([sim('--policy', 'cp', '--seeds', '-3'), sim('--policy', 'sideways')]);
    expect(seeds.code).toBe(2);
    expect(seeds.stderr).toContain('--seeds must be a positive integer');
    expect(policy.code).toBe(2);
    expect(policy.stderr).toContain('--policy must be cp, ap, causal or all');
  });
});

describe('runCampaign', () => {
  it('runs seeds on worker threads from a process not started with tsx, and adds up their stats', async () => {
    const seen: number[] = [];
    const result = await runCampaign({ policy: 'ap', seeds: 4, from: 7, workers: 2, onProgress: (p) => seen.push(p.done) });
    expect(result.seedsRun).toBe(4);
    expect(result.workers).toBe(2);
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(result.violations).toEqual([]);
    expect(result.totals.ok).toBeGreaterThan(0);
  });
});

describe('shortestWindow', () => {
  let id = 0;
  const op = (process: number, f: OpFunction, value: Value, call: number, ret: number, outcome: Outcome = 'ok', key = 'x'): Operation => ({
    id: id++,
    process,
    f,
    key,
    value,
    call,
    return: ret,
    outcome,
  });
  // Key x: a stale read at [8, 9] returns 1 after 2 was written and read. Key y is fine.
  const history = [
    op(0, 'write', 1, 0, 1),
    op(1, 'read', 1, 2, 3),
    op(9, 'write', 'y1', 2.5, 3.5, 'ok', 'y'),
    op(0, 'write', 2, 4, 5),
    op(1, 'read', 2, 6, 7),
    op(2, 'write', 9, 7.5, 20), // still running when the stale read returns
    op(3, 'write', 5, 7.6, 7.7, 'fail'),
    op(1, 'read', 1, 8, 9), // the stale read
    op(0, 'write', 3, 10, 11),
    op(1, 'read', 3, 12, 13),
    op(9, 'read', 'y1', 14, 15, 'ok', 'y'),
  ];
  const violation: SeedViolation = { kind: 'linearizability', explanation: 'test', operations: history, key: 'x' };

  it('is the key\'s history as of the first completion that makes it non-linearizable, as the checker saw it', () => {
    expect(checkLinearizability(history).verdict).toBe('not-linearizable');
    const window = shortestWindow(violation);
    // Key x's operations invoked by 9, without the failed write; the write still running at 9 as unknown.
    expect(window.map((o) => o.id)).toEqual([0, 1, 3, 4, 5, 7]);
    expect(window.find((o) => o.id === 5)).toMatchObject({ outcome: 'info', return: Infinity });
    expect(checkLinearizability(window).verdict).toBe('not-linearizable');
    // One completion earlier (as of 7) the history passes: the window is the shortest prefix.
    expect(checkLinearizability(window.filter((o) => o.id !== 7)).verdict).toBe('linearizable');
  });

  it('shows the last operations of that prefix when it is longer than the window, marking the one that completed last', () => {
    const window = historyWindow(violation, 2);
    expect(window.operations.map((o) => o.id)).toEqual([5, 7]);
    expect(window.named).toContain(7);
    expect(window.description).toContain('as of 9 ms is the shortest prefix the checker rejects');
    expect(window.description).toContain('the last 2 of them by invocation (the 4 before set');
  });
});
