import { describe, expect, it } from 'vitest';
import { cpQuorum } from '../../src/policy/cp-quorum.js';
import { runRegisterWorkload } from '../../src/sim/register-workload.js';
import { pairOperations } from '../../src/testing/history.js';
import { checkLinearizability } from '../../src/testing/linearizability.js';

/**
 * The CP policy's proof: seeded simulations under partitions, crash-restarts, drops, duplicates
 * and delays, each history checked for linearizability. A failing seed prints itself; rerun it
 * alone with REPLIKIT_SEED=<seed> to replay it exactly.
 */
const SEEDS = process.env.REPLIKIT_SEED ? [Number(process.env.REPLIKIT_SEED)] : Array.from({ length: 200 }, (_, i) => i + 1);

describe('CP quorum under faults', () => {
  it(`is linearizable on every one of ${SEEDS.length} seeds`, async () => {
    const totals: Record<string, number> = {};
    for (const seed of SEEDS) {
      const run = await runRegisterWorkload({ seed, policy: cpQuorum() });
      for (const [k, v] of Object.entries(run.stats)) totals[k] = (totals[k] ?? 0) + v;
      const result = checkLinearizability(pairOperations(run.events), { timeoutMs: 10_000 });
      if (result.verdict !== 'linearizable') {
        throw new Error(
          `seed ${seed}: ${result.verdict}\n${result.explanation ?? ''}\nreplay: REPLIKIT_SEED=${seed} npx vitest run test/sim/cp-linearizability.test.ts`,
        );
      }
    }
    // The runs must have exercised the faults and completed real work, or they prove nothing.
    expect(totals.ok).toBeGreaterThan(SEEDS.length * 100);
    expect(totals.info! + totals.fail!).toBeGreaterThan(0);
    if (SEEDS.length > 10) {
      expect(totals.crashes).toBeGreaterThan(SEEDS.length);
      expect(totals.partitions).toBeGreaterThan(SEEDS.length);
    }
    console.log(`CP simulation totals over ${SEEDS.length} seeds: ${JSON.stringify(totals)}`);
  }, 300_000);

  it('is linearizable with thrifty reads off too (every replica asked), on 40 seeds', async () => {
    for (const seed of SEEDS.slice(0, 40)) {
      const run = await runRegisterWorkload({ seed, policy: cpQuorum({ thriftyReads: false }) });
      const result = checkLinearizability(pairOperations(run.events), { timeoutMs: 10_000 });
      expect(result.verdict, `seed ${seed}: ${result.explanation ?? ''}`).toBe('linearizable');
    }
  }, 120_000);

  it('replays a seed exactly', async () => {
    const a = await runRegisterWorkload({ seed: 42, policy: cpQuorum() });
    const b = await runRegisterWorkload({ seed: 42, policy: cpQuorum() });
    expect(b.events).toEqual(a.events);
  });

  it('catches the deliberately weakened variant (reads from a single replica)', async () => {
    let caught = 0;
    let firstExplanation = '';
    for (let seed = 1; seed <= 20; seed++) {
      const run = await runRegisterWorkload({ seed, policy: cpQuorum({ unsafeSingleReplicaReads: true }) });
      const result = checkLinearizability(pairOperations(run.events), { timeoutMs: 10_000 });
      if (result.verdict === 'not-linearizable') {
        caught++;
        firstExplanation ||= result.explanation ?? '';
      }
    }
    expect(caught).toBeGreaterThan(10);
    expect(firstExplanation).toMatch(/read/);
  }, 120_000);
});
