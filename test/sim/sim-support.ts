import { expect, it } from 'vitest';
import { MEMBERSHIP_STATS } from '../../src/sim/membership-nemesis.js';
import { addStats, runSeed, type BrokenVariant, type SeedResult, type SimPolicy } from '../../src/sim/seed-check.js';

/**
 * Runs `seeds` of one policy's disk-fault simulation, failing on the first violation with its
 * seed, explanation and replay command; returns the totals of completions and faults landed.
 */
export async function runSeeds(policy: SimPolicy, seeds: readonly number[], variant: BrokenVariant = {}, quiet = false): Promise<Record<string, number>> {
  const totals: Record<string, number> = {};
  for (const seed of seeds) {
    const result = await runSeed(policy, seed, variant);
    addStats(totals, result.stats);
    if (result.violation !== undefined) {
      const replay = Object.keys(variant).length === 0 ? `npm run sim -- --policy ${policy} --seeds 1 --from ${seed}` : `runSeed('${policy}', ${seed}, ${JSON.stringify(variant)})`;
      throw new Error(`seed ${seed}: ${result.violation.kind}\n${result.violation.explanation}\nreplay: ${replay}\nschedule:\n${result.schedule.map((e) => `  ${e.atMs} ${e.action}`).join('\n')}`);
    }
  }
  if (!quiet) console.log(`${policy} simulation totals over ${seeds.length} seeds: ${JSON.stringify(totals)}`);
  return totals;
}

/**
 * Runs seeds `from`, `from + 1`, … of a deliberately broken variant until one is caught (any
 * violation but a crash of the harness itself), at most `limit` seeds; returns the first caught.
 */
export async function firstCaught(policy: SimPolicy, variant: BrokenVariant, limit: number, from = 1): Promise<SeedResult | undefined> {
  for (let seed = from; seed < from + limit; seed++) {
    const result = await runSeed(policy, seed, variant);
    if (result.violation !== undefined && result.violation.kind !== 'run') return result;
  }
  return undefined;
}

/**
 * The membership changes a run of `seeds` membership seeds must have landed: at least `perSeed`
 * times the seeds of each (per seed: 1 is once a seed on average), far below what the runs show
 * (see the measurements in the test files).
 */
export function expectMembershipLanded(totals: Record<string, number>, seeds: number, perSeed: Partial<Record<(typeof MEMBERSHIP_STATS)[number], number>>): void {
  for (const [kind, rate] of Object.entries(perSeed)) {
    expect(totals[kind] ?? 0, `${kind} over ${seeds} seeds`).toBeGreaterThanOrEqual(Math.ceil(seeds * rate));
  }
  // Every node removed was retired (stopped for good, its disk gone) by the end of its run.
  expect(totals.membershipRetirements).toBe(totals.membershipRemovals);
}

/** Seeds 1 … count in chunks of `size`, as [first, last] pairs (it.each's rows). */
export function seedChunks(count: number, size: number): [number, number][] {
  const chunks: [number, number][] = [];
  for (let from = 1; from <= count; from += size) chunks.push([from, Math.min(count, from + size - 1)]);
  return chunks;
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

/** What one policy's membership simulation test (membership*.test.ts) runs and asserts. */
export interface MembershipSimulation {
  readonly policy: SimPolicy;
  /** The first test's name, after "seeds %i..%i" is appended. */
  readonly checks: string;
  /** Successful operations the runs must have had, per seed. */
  readonly okPerSeed: number;
  /** Fault kinds that must have landed (more than once in fifty seeds each). */
  readonly faults: readonly string[];
  /** The deliberately broken build the same harness must catch, within `limit` seeds from seed 1. */
  readonly broken: { readonly name: string; readonly variant: BrokenVariant; readonly limit: number; readonly kinds: readonly string[] };
}

const MEMBERSHIP_SEEDS = 300;
const MEMBERSHIP_CHUNK = 50;

/**
 * The tests of one policy's membership simulation: 300 seeds in chunks of 50 (each its own test:
 * a failing chunk names its seed and prints its schedule; `runSeed(policy, SEED, {
 * membershipChanges: true })` or `npm run sim -- --policy P --membership --seeds 1 --from SEED`
 * replays it), the membership changes and faults that must have landed over them, and the broken
 * build caught. Measured over these seeds when this was written, per seed and policy: about 2.5–3.2
 * adds, 1.6–2.4 promotions, 4.6–7.9 promotions refused as behind, 1.5–2.4 removals (each retired),
 * 1.1–1.7 replacements; the floors are well under half of that.
 */
export function describeMembershipSimulation(spec: MembershipSimulation): void {
  const { policy } = spec;
  const totals: Record<string, number> = {};
  let chunksRun = 0;

  it.each(seedChunks(MEMBERSHIP_SEEDS, MEMBERSHIP_CHUNK))(`${spec.checks}: seeds %i..%i`, async (from, to) => {
    const seeds = Array.from({ length: to - from + 1 }, (_, i) => from + i);
    addStats(totals, await runSeeds(policy, seeds, { membershipChanges: true }, true));
    chunksRun++;
  }, 120_000);

  it(`landed every kind of membership change many times over the ${MEMBERSHIP_SEEDS} seeds`, () => {
    if (chunksRun < MEMBERSHIP_SEEDS / MEMBERSHIP_CHUNK) return; // a chunk was filtered out or failed
    console.log(`${policy} membership simulation totals over ${MEMBERSHIP_SEEDS} seeds: ${JSON.stringify(totals)}`);
    expectMembershipLanded(totals, MEMBERSHIP_SEEDS, {
      membershipAdds: 1,
      membershipPromotions: 0.6,
      membershipPromotionsBehind: 1,
      membershipRemovals: 0.6,
      membershipReplacements: 0.3,
      membershipRetirements: 0.6,
    });
    expect(totals.ok).toBeGreaterThan(MEMBERSHIP_SEEDS * spec.okPerSeed);
    for (const kind of spec.faults) expect(totals[kind] ?? 0, kind).toBeGreaterThan(MEMBERSHIP_SEEDS * 0.02);
  });

  it(`catches the deliberately broken build ${spec.broken.name}`, async () => {
    const caught = await firstCaught(policy, spec.broken.variant, spec.broken.limit);
    expect(caught, `no violation in ${spec.broken.limit} seeds`).toBeDefined();
    console.log(`${spec.broken.name}: caught on seed ${caught!.seed}: ${caught!.violation!.kind}: ${caught!.violation!.explanation.split('\n')[0]!.slice(0, 300)}`);
    expect(spec.broken.kinds).toContain(caught!.violation!.kind);
  }, 120_000);
}
