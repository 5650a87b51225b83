import { afterAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT, cli } from '../support/cli.js';

const clusters: LocalCluster[] = [];
afterAll(async () => {
  for (const c of clusters) await c.stop();
});

const WORKERS = 32;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Compare-and-set from the command line, as scripts would use it: 32 concurrent workers, each a
 * loop of `replikit get` then `replikit put --if-value CURRENT counter CURRENT+1` (a new CLI
 * process each time, through any of the three nodes), retrying after a random backoff when the
 * compare fails (exit 4), until it has made one increment. Linearizable compare-and-set means no increment is lost or
 * doubled: the counter ends equal to the number of successful swaps.
 */
describe.skipIf(!BUILT)('compare-and-set counter from 32 concurrent CLI processes', () => {
  it('ends with the counter equal to the number of successful swaps', async () => {
    const cluster = await LocalCluster.create({ size: 3 });
    clusters.push(cluster);
    await cluster.startAll();
    const target = (i: number) => `--target=${cluster.address(cluster.ids[i % 3]!)}`;
    expect((await cli(['put', target(0), '--if-absent', 'counter', '0'])).code).toBe(0);

    let swaps = 0;
    let compareFailures = 0;
    let unknown = 0;
    let processes = 1;
    const worker = async (w: number) => {
      // A failed compare says what the key holds now: the next attempt swaps from that, without
      // another read (a script would do the same; it also halves the processes this test starts).
      let current: number | undefined;
      let failures = 0;
      for (let attempt = 0; attempt < 200; attempt++) {
        if (current === undefined) {
          const read = await cli(['get', target(w + attempt), 'counter']);
          processes++;
          if (read.code !== 0) continue;
          current = Number(read.stdout.trim());
        }
        const swap = await cli(['put', target(w + attempt + 1), '--if-value', String(current), 'counter', String(current + 1)]);
        processes++;
        if (swap.code === 0) {
          swaps++;
          return;
        }
        current = undefined;
        if (swap.code === 4) {
          const held = /compare failed: counter is at version \d+ \(mod revision \d+\), holding "(\d+)"/.exec(swap.stderr);
          expect(held, swap.stderr).not.toBeNull();
          current = Number(held![1]);
          compareFailures++;
          // Back off before the next attempt, for a random time that doubles with each failure
          // (to 8 s), as a script sharing a counter with 31 others should: without it every
          // worker retries at once, each round of 32 contenders lets one through, and the test
          // started about 530 CLI processes (173 s on a loaded 2-core machine).
          failures++;
          await sleep(Math.random() * 250 * 2 ** Math.min(failures, 5));
          continue;
        }
        // DEADLINE_EXCEEDED: the swap may have happened; this worker stops counting on it.
        if (/DEADLINE_EXCEEDED/.test(swap.stderr)) {
          unknown++;
          return;
        }
      }
      throw new Error(`worker ${w} made no increment in 200 attempts`);
    };
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));

    const final = await cli(['get', target(0), 'counter']);
    const counter = Number(final.stdout.trim());
    console.log(`CAS counter: ${swaps} swaps, ${compareFailures} failed compares, ${unknown} outcomes unknown, ${processes} CLI processes; counter ${counter}`);
    expect(compareFailures).toBeGreaterThan(0); // the workers really raced
    expect(counter).toBeGreaterThanOrEqual(swaps);
    expect(counter).toBeLessThanOrEqual(swaps + unknown);
    if (unknown === 0) expect(counter).toBe(WORKERS);
  }, 240_000);
});
