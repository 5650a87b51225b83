import { afterEach, describe, expect, it } from 'vitest';
import { freePorts, LocalCluster } from '../../src/cli/local-cluster.js';
import { Consistency } from '../../src/gen/replikit/v1/kv_service.js';
import { BUILT } from '../support/cli.js';
import { retryUnavailable, statusOf, TestKvClient } from '../support/kv-client.js';
import { sample, scrape } from '../support/ops.js';
import { status, waitFor } from '../support/status-client.js';

let cluster: LocalCluster | undefined;
const clients: TestKvClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await cluster?.stop();
  cluster = undefined;
});

async function startCluster(): Promise<{ cluster: LocalCluster; client: (id: string) => TestKvClient }> {
  cluster = await LocalCluster.create({ size: 3 });
  await cluster.startAll();
  const byId = new Map<string, TestKvClient>();
  const c = cluster;
  return {
    cluster: c,
    client: (id) => {
      let client = byId.get(id);
      if (client === undefined) {
        client = new TestKvClient(c.address(id));
        byId.set(id, client);
        clients.push(client);
      }
      return client;
    },
  };
}

describe.skipIf(!BUILT)('3 real serve processes, CP keyspace', () => {
  it('survives kill -9 of one node, refuses fast without a majority, and keeps every acknowledged write', async () => {
    const { cluster, client } = await startCluster();
    const acknowledged = new Map<string, string>();
    for (let i = 0; i < 20; i++) {
      await client(cluster.ids[i % 3]!).put(`before-${i}`, `v${i}`);
      acknowledged.set(`before-${i}`, `v${i}`);
    }

    await cluster.kill('n3', 'SIGKILL');
    // When n3 led, the first puts wait out an election (UNAVAILABLE: nothing happened, retry), or
    // learn that n3 died holding them (outcome unknown): putting the same value again is harmless.
    for (let i = 0; i < 20; i++) {
      await retryUnavailable(() =>
        client(i % 2 === 0 ? 'n1' : 'n2')
          .put(`one-down-${i}`, `w${i}`)
          .catch((err: unknown) => {
            throw statusOf(err) === 'DEADLINE_EXCEEDED' ? Object.assign(new Error('outcome unknown'), { code: 14 }) : err;
          }),
      );
      acknowledged.set(`one-down-${i}`, `w${i}`);
    }
    expect((await client('n2').get('one-down-0')).value.toString()).toBe('w0');
    expect((await client('n1').get('before-5')).value.toString()).toBe('v5');

    await cluster.kill('n2', 'SIGKILL');
    // Once n1 knows it has no majority it refuses at once. (In the instant after the kill it may
    // not know yet: a write accepted then ends DEADLINE_EXCEEDED, outcome unknown, which is right
    // too; a loaded CI machine once got there first.)
    await waitFor(async () => (await status(cluster.address('n1'))).keyspaces.find((k) => k.name === 'default')?.quorumReachable === false, 10_000, 'n1 sees its quorum lost');
    const t0 = performance.now();
    const err = await client('n1').put('no-majority', 'x').catch((e: unknown) => e);
    const elapsedMs = performance.now() - t0;
    expect(statusOf(err), String((err as Error).message)).toBe('UNAVAILABLE');
    expect(String((err as Error).message)).toMatch(/quorum needs 2/);
    expect(elapsedMs).toBeLessThan(1000);

    await Promise.all([cluster.start('n2'), cluster.start('n3')]);
    for (const id of cluster.ids) {
      for (const [key, value] of acknowledged) {
        const res = await retryUnavailable(() => client(id).get(key));
        expect(res.found, `${key} through ${id}`).toBe(true);
        expect(res.value.toString(), `${key} through ${id}`).toBe(value);
      }
    }
  });

  it('loses nothing it acknowledged when the coordinator is killed mid-stream', async () => {
    const { cluster, client } = await startCluster();
    const acknowledged = new Map<string, string>();
    let next = 0;
    let stop = false;
    let killed = false;
    const writer = async () => {
      while (!stop) {
        const n = next++;
        try {
          await client('n1').put(`stream-${n}`, `value-${n}`, { timeoutMs: 2_000 });
          acknowledged.set(`stream-${n}`, `value-${n}`);
        } catch (err: unknown) {
          // Before the kill, UNAVAILABLE means "nothing happened, retry" (a loaded machine can
          // briefly suspect a peer); after it, the coordinator is gone and so is this writer.
          if (killed || statusOf(err) !== 'UNAVAILABLE') return;
        }
      }
    };
    const writers = Array.from({ length: 16 }, writer);
    const deadline = performance.now() + 30_000;
    while (acknowledged.size < 300 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(acknowledged.size, 'acknowledged writes before the kill').toBeGreaterThanOrEqual(300);
    killed = true;
    await cluster.kill('n1', 'SIGKILL');
    stop = true;
    await Promise.all(writers);

    await cluster.start('n1');
    for (const id of cluster.ids) {
      for (const [key, value] of acknowledged) {
        const res = await retryUnavailable(() => client(id).get(key));
        expect(res.value.toString(), `${key} through ${id}`).toBe(value);
      }
    }
  });

  it('catches a follower up that missed more than the log keeps, with the state streamed from disk in pieces', async () => {
    const { cluster, client } = await startCluster();
    await retryUnavailable(() => client('n1').put('warm-up', 'x'));
    await cluster.kill('n3', 'SIGKILL');
    // While n3 is down: more writes than the log keeps after a compaction (5,000 entries), a few
    // of them of 1 MiB (the value limit), so the snapshot n3 needs takes several pieces.
    const values = new Map<string, string>();
    const started = performance.now();
    const WRITES = 5_100;
    const CALLERS = 64;
    const putSurely = (id: string, key: string, value: string) =>
      retryUnavailable(() =>
        client(id)
          .put(key, value, { timeoutMs: 20_000 })
          // Outcome unknown (a busy machine) is retried too: putting the same value again is harmless.
          .catch((err: unknown) => {
            throw statusOf(err) === 'DEADLINE_EXCEEDED' ? Object.assign(new Error('outcome unknown'), { code: 14 }) : err;
          }),
      );
    await Promise.all(
      Array.from({ length: CALLERS }, async (_, c) => {
        for (let i = c; i < WRITES; i += CALLERS) {
          const big = i % 1_000 === 0;
          const value = big ? `${i}:`.padEnd(1024 * 1024 - 1, String.fromCharCode(97 + (i % 26))) : `v${i}`;
          await putSurely(i % 2 === 0 ? 'n1' : 'n2', `k${i}`, value);
          values.set(`k${i}`, value);
        }
      }),
    );
    const [metricsPort] = await freePorts(1);
    const metrics = `127.0.0.1:${metricsPort}`;
    await cluster.start('n3', ['--metrics-listen', metrics]);
    const written = performance.now();
    // n3's own replica (serializable reads answer from it) ends holding every value.
    const deadline = Date.now() + 60_000;
    const keys = [...values.keys()];
    await Promise.all(
      Array.from({ length: CALLERS }, async (_, c) => {
        for (let i = c; i < keys.length; i += CALLERS) {
          const key = keys[i]!;
          for (;;) {
            const res = await client('n3').get(key, { consistency: Consistency.CONSISTENCY_SERIALIZABLE, timeoutMs: 10_000 }).catch(() => undefined);
            if (res?.found === true) {
              expect(res.value.toString(), key).toBe(values.get(key));
              break;
            }
            expect(Date.now(), `${key} never reached n3's replica`).toBeLessThan(deadline);
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      }),
    );
    console.log(`snapshot catch-up: ${WRITES} writes in ${Math.round(written - started)} ms while n3 was down; n3 held all ${keys.length} ${Math.round(performance.now() - written)} ms after its restart`);
    const body = (await scrape(metrics)).body;
    expect(sample(body, 'replikit_raft_snapshots_installed', { keyspace: 'default' })).toBeGreaterThanOrEqual(1);
    // And it still takes part: a write through n3 is read back on n3.
    await retryUnavailable(() => client('n3').put('after-catch-up', 'y'));
    expect((await client('n3').get('after-catch-up')).value.toString()).toBe('y');
  }, 180_000);
});
