import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT } from '../support/cli.js';
import { TestKvClient } from '../support/kv-client.js';
import { waitFor } from '../support/status-client.js';

let cluster: LocalCluster | undefined;
const clients: TestKvClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await cluster?.stop();
  cluster = undefined;
});

function client(c: LocalCluster, id: string): TestKvClient {
  const k = new TestKvClient(c.address(id));
  clients.push(k);
  return k;
}

/** True once `id` holds every key of `expected` with its value (AP reads are local). */
async function holdsAll(kv: TestKvClient, expected: Map<string, string>): Promise<boolean> {
  const results = await Promise.all([...expected.keys()].map((key) => kv.get(key, { timeoutMs: 2_000 })));
  return results.every((r, i) => r.found && r.value.toString() === [...expected.values()][i]);
}

describe.skipIf(!BUILT)('3 real serve processes, AP keyspace (--policy ap)', () => {
  it('answers puts without waiting for a stopped node, and the stopped node converges after SIGCONT', async () => {
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', 'ap'] });
    await cluster.startAll();
    const n1 = client(cluster, 'n1');
    await n1.put('warm-up', 'x');
    await cluster.kill('n3', 'SIGSTOP');
    const expected = new Map<string, string>();
    const latencies: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      await client(cluster, i % 2 === 0 ? 'n1' : 'n2').put(`stopped-${i}`, `v${i}`);
      latencies.push(performance.now() - t0);
      expected.set(`stopped-${i}`, `v${i}`);
    }
    latencies.sort((a, b) => a - b);
    console.log(`AP put with n3 stopped: p50 ${latencies[100]!.toFixed(2)} ms, max ${latencies[199]!.toFixed(2)} ms`);
    // Waiting for n3 would take the whole request timeout (3 s) or an RPC deadline (1 s); a put
    // that answers well within either did not wait. Not a speed claim (the benchmark makes those):
    // on a loaded 2-core machine the slowest of 200 was once 98 ms.
    expect(latencies[100]).toBeLessThan(50);
    expect(latencies[latencies.length - 1]).toBeLessThan(500);

    await cluster.kill('n3', 'SIGCONT');
    const n3 = client(cluster, 'n3');
    const tookMs = await waitFor(() => holdsAll(n3, expected), 10_000, 'n3 converges after SIGCONT');
    console.log(`n3 converged ${tookMs.toFixed(0)} ms after SIGCONT`);
  });

  it('a node killed with -9 holds all 1,000 keys written elsewhere within 5 s of its restart', async () => {
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', 'ap'] });
    await cluster.startAll();
    await cluster.kill('n3', 'SIGKILL');
    const expected = new Map<string, string>();
    const writers = [client(cluster, 'n1'), client(cluster, 'n2')];
    for (let i = 0; i < 1_000; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => {
          const n = i + j;
          expected.set(`key-${n}`, `value-${n}`);
          return writers[n % 2]!.put(`key-${n}`, `value-${n}`);
        }),
      );
    }
    await cluster.start('n3');
    const n3 = client(cluster, 'n3');
    const tookMs = await waitFor(() => holdsAll(n3, expected), 5_000, 'restarted n3 holds all 1,000 keys');
    console.log(`restarted n3 held all 1,000 keys after ${tookMs.toFixed(0)} ms`);
  });
});
