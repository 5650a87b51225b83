import { expect } from 'vitest';
import { addStats, runSeed, type SimPolicy } from '../../src/sim/seed-check.js';

/**
 * Runs `seeds` of one policy's disk-fault simulation, failing on the first violation with its
 * seed, explanation and replay command; returns the totals of completions and faults landed.
 */
export async function runSeeds(policy: SimPolicy, seeds: readonly number[]): Promise<Record<string, number>> {
  const totals: Record<string, number> = {};
  for (const seed of seeds) {
    const result = await runSeed(policy, seed);
    addStats(totals, result.stats);
    if (result.violation !== undefined) {
      throw new Error(`seed ${seed}: ${result.violation.kind}\n${result.violation.explanation}\nreplay: npm run sim -- --policy ${policy} --seeds 1 --from ${seed}`);
    }
  }
  console.log(`${policy} simulation totals over ${seeds.length} seeds: ${JSON.stringify(totals)}`);
  return totals;
}

/**
 * The fault kinds every policy's simulation must have landed, many times, over a test's seeds:
 * a run that never crashed inside a commit, wiped a disk or stepped a clock proves nothing about
 * them. `atLeast` is per seed (e.g. 0.05: once in twenty seeds), far below what the runs show
 * (over 2,000 CP seeds: 0.38 crashes with writes in flight per seed, 0.6 wiped disks, 2.5 clock
 * steps back, 0.34 failed syncs, 1 slow disk, 0.5 power losses).
 */
export function expectFaultsLanded(totals: Record<string, number>, seeds: number, atLeast = 0.05): void {
  for (const kind of ['crashes', 'crashesWithWritesInFlight', 'amnesia', 'recoveries', 'clockStepsBack', 'clockStepsForward', 'syncFailures', 'slowDisks', 'powerLosses', 'partitions']) {
    expect(totals[kind] ?? 0, `${kind} over ${seeds} seeds`).toBeGreaterThan(seeds * atLeast);
  }
  // Every wiped replica recovered and served again by the end of its run.
  expect(totals.recoveries).toBe(totals.amnesia);
}
