import { describe, expect, it } from 'vitest';
import { cpQuorum } from '../../src/policy/cp/cp-quorum.js';
import { runRegisterWorkload } from '../../src/sim/register-workload.js';
import { runSeed, SIM_RAFT_TIMING } from '../../src/sim/seed-check.js';
import { expectFaultsLanded, runSeeds } from './sim-support.js';

/**
 * The CP policy's proof: seeded simulations of Raft-backed CP keyspaces on simulated disks under
 * partitions, crashes (inside commits, two nodes at once), wiped disks, clock steps, slow disks,
 * failed syncs, drops, duplicates and delays. Each history (reads, writes, deletes and
 * compare-and-sets) is checked for linearizability against the cas register model, each node's
 * versions for order, and the nodes' durable Raft logs for agreement (log matching, and the same
 * entry at every index both know committed). Raft's invariants at every step are asserted by the
 * pure core's own harness (test/raft/raft-simulation.test.ts). A failing seed prints itself; `npm run sim -- --policy cp --seeds 1 --from SEED` replays
 * it with its fault schedule, or REPLIKIT_SEED=SEED reruns this file on it alone.
 */
const SEED_COUNT = 500;
/** Completed operations per seed, on average, well below what the runs show (see the campaign's totals). */
const OK_PER_SEED = 40;
/**
 * The full simulation must catch a leader that commits on its own copy alone (4 to 5 of the first
 * 30–40 seeds when this was written). Variants it catches too rarely to gate `npm test` on (reads
 * without a confirmed leader: 1 seed in 600; a wiped node voting again: none in 600) are held to
 * by the pure core's own harness, test/raft/raft-simulation.test.ts, which checks Raft's
 * invariants at every step and catches each within a few hundred seeds.
 */
const COMMIT_WITHOUT_MAJORITY_SEEDS = 40;
const SEEDS = process.env.REPLIKIT_SEED ? [Number(process.env.REPLIKIT_SEED)] : Array.from({ length: SEED_COUNT }, (_, i) => i + 1);

describe('CP keyspaces on Raft under disk, clock, crash and network faults', () => {
  it(`are linearizable (reads, writes, deletes and compare-and-sets) on every one of ${SEEDS.length} seeds, the nodes' logs agree, and every fault kind lands many times`, async () => {
    const totals = await runSeeds('cp', SEEDS);
    if (SEEDS.length < SEED_COUNT) return;
    // The runs must have completed real work and exercised every fault, or they prove nothing.
    expect(totals.ok).toBeGreaterThan(SEEDS.length * OK_PER_SEED);
    expect(totals.info! + totals.fail!).toBeGreaterThan(0);
    expectFaultsLanded(totals, SEEDS.length);
    // Followers that fell behind the compacted log got the state as a snapshot, in many pieces,
    // and installed it: the transfer and install paths ran under the same faults, not just once.
    expect(totals.snapshotsTaken!).toBeGreaterThan(SEEDS.length);
    expect(totals.snapshotsInstalled!).toBeGreaterThan(SEEDS.length / 5);
    expect(totals.chunksSent!).toBeGreaterThan(1.5 * totals.transfersCompleted!);
  }, 400_000);

  it('replays a seed exactly, faults and all', async () => {
    const a = await runRegisterWorkload({ seed: 42, policy: cpQuorum({ timing: SIM_RAFT_TIMING }), casRate: 0.15 });
    const b = await runRegisterWorkload({ seed: 42, policy: cpQuorum({ timing: SIM_RAFT_TIMING }), casRate: 0.15 });
    expect(b.events).toEqual(a.events);
    expect(b.schedule).toEqual(a.schedule);
    expect(a.events.some((e) => e.f === 'cas')).toBe(true);
  });

  it('runs compare-and-sets that succeed and ones whose compare fails', async () => {
    const seen = { ok: 0, fail: 0 };
    for (let seed = 1; seed <= 10; seed++) {
      const run = await runRegisterWorkload({ seed, policy: cpQuorum({ timing: SIM_RAFT_TIMING }), casRate: 0.15 });
      for (const e of run.events) if (e.f === 'cas' && (e.type === 'ok' || e.type === 'fail')) seen[e.type]++;
    }
    expect(seen.ok).toBeGreaterThan(5);
    expect(seen.fail).toBeGreaterThan(5);
  }, 60_000);

  it('catches the deliberately broken variant: the leader commits on its own copy alone', async () => {
    const caught: string[] = [];
    for (let seed = 1; seed <= COMMIT_WITHOUT_MAJORITY_SEEDS; seed++) {
      const result = await runSeed('cp', seed, { commitWithoutMajority: true });
      if (result.violation !== undefined && result.violation.kind !== 'run') caught.push(`${seed} (${result.violation.kind})`);
    }
    console.log(`commit-without-majority caught on seeds ${caught.join(', ')}`);
    expect(caught.length).toBeGreaterThanOrEqual(2);
  }, 120_000);
});
