import { expect } from 'vitest';

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
