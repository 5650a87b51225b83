import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT } from '../support/cli.js';
import { healthCheck } from '../support/ops.js';
import { retryUnavailable, statusOf, TestKvClient } from '../support/kv-client.js';
import { status } from '../support/status-client.js';

let cluster: LocalCluster | undefined;
const clients: TestKvClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await cluster?.stop();
  cluster = undefined;
});

interface Observed {
  readonly newValue: number;
  readonly oldValue: number;
  readonly unavailable: number;
  readonly other: string[];
  /** The messages of the UNAVAILABLE answers, one of each kind. */
  readonly refusals: Set<string>;
}

/**
 * An acknowledged overwrite, then the two replicas that do not hold it — one that missed it, one
 * whose data directory was wiped — are all that runs: they must answer the new value or refuse,
 * never the old one. (With Raft: the wiped one forgot its votes and never votes again, so the
 * stale one cannot be elected with its help; switched off, it is, and serves the old value.) Returns what reads through both answered meanwhile, and after the third
 * replica (which holds the new value) is back.
 */
async function wipedAndStaleTogether(env: NodeJS.ProcessEnv = {}): Promise<{ during: Observed; after: Observed; statusWhileRecovering: string[]; healthWhileRecovering: string }> {
  cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100'] });
  const c = cluster;
  await c.startAll();
  const client = (id: string) => {
    const made = new TestKvClient(c.address(id));
    clients.push(made);
    return made;
  };
  const n1 = client('n1');
  await n1.put('k', 'old');
  // Every replica holds the old value before n3 goes away.
  for (const id of c.ids) expect((await retryUnavailable(() => client(id).get('k'))).value.toString()).toBe('old');

  await c.kill('n3', 'SIGKILL');
  // When n3 led, the put waits out an election; an outcome-unknown answer (the put was handed to
  // n3 as it died) is retried too: putting the same value again is harmless.
  await retryUnavailable(() =>
    n1.put('k', 'new').catch((err: unknown) => {
      throw statusOf(err) === 'DEADLINE_EXCEEDED' ? Object.assign(new Error('outcome unknown'), { code: 14 }) : err;
    }),
  );
  // The overwrite is acknowledged by n1 and n2. Both go down; n1 comes back with an empty disk,
  // n3 with the old value.
  await c.kill('n1', 'SIGKILL');
  await c.kill('n2', 'SIGKILL');
  rmSync(c.dataDir('n1'), { recursive: true, force: true });
  await Promise.all([c.start('n1', [], { until: 'listening', env }), c.start('n3', [], { until: 'listening', env })]);

  const readAll = async (ids: string[], forMs: number): Promise<Observed> => {
    const seen: Observed = { newValue: 0, oldValue: 0, unavailable: 0, other: [], refusals: new Set() };
    const readers = ids.map((id) => ({ id, kv: client(id) }));
    const deadline = performance.now() + forMs;
    while (performance.now() < deadline) {
      await Promise.all(
        readers.map(async ({ kv }) => {
          try {
            const value = (await kv.get('k', { timeoutMs: 300 })).value.toString();
            if (value === 'new') (seen as { newValue: number }).newValue++;
            else if (value === 'old') (seen as { oldValue: number }).oldValue++;
            else seen.other.push(`value ${JSON.stringify(value)}`);
          } catch (err: unknown) {
            // A deadline is "outcome unknown": no value was returned, old or new.
            if (statusOf(err) === 'DEADLINE_EXCEEDED') return;
            if (statusOf(err) === 'UNAVAILABLE') {
              (seen as { unavailable: number }).unavailable++;
              seen.refusals.add(String((err as Error).message).replace(/\d+(\.\d+)? ms/g, 'N ms').slice(0, 300));
            } else seen.other.push(`${statusOf(err)}: ${(err as Error).message}`);
          }
        }),
      );
    }
    return seen;
  };
  const during = await readAll(['n1', 'n3'], 3_000);
  const statusWhileRecovering = (await status(c.address('n1'))).keyspaces.filter((k) => k.name === 'default').map((k) => k.raft?.leader ?? 'no raft status');
  const healthWhileRecovering = await healthCheck(c.address('n1'));

  await c.start('n2');
  // n1 recovers from n2 and n3 and serves again; then every node answers the new value.
  // With the guard switched off the acknowledged write is gone for good (the stale node led
  // with the wiped one's vote and overwrote it): there is no recovery to wait for.
  if (env.REPLIKIT_UNSAFE_SKIP_RECOVERY === undefined) {
    // (A read that hits its deadline while the nodes elect a leader had no effect: asked again.)
    await retryUnavailable(async () => {
      const res = await client('n1').get('k', { timeoutMs: 500 }).catch((err: unknown) => {
        throw statusOf(err) === 'DEADLINE_EXCEEDED' ? Object.assign(new Error('deadline'), { code: 14 }) : err;
      });
      const value = res.value.toString();
      if (value !== 'new') throw Object.assign(new Error(`n1 answered ${value}`), { code: 14 });
    }, 15_000);
  }
  const after = await readAll(['n1', 'n2', 'n3'], 500);
  return { during, after, statusWhileRecovering, healthWhileRecovering };
}

describe.skipIf(!BUILT)('a wiped replica and a stale one, together, on real serve processes (LMDB)', () => {
  it('never answer the overwritten value: they refuse (the wiped replica never votes again, so no leader can be elected), until the replica holding the latest is back', async () => {
    const { during, after, statusWhileRecovering } = await wipedAndStaleTogether();
    console.log(
      `wiped n1 + stale n3: ${during.newValue} new, ${during.oldValue} old, ${during.unavailable} UNAVAILABLE, e.g. ${[...during.refusals].slice(0, 2).join(' | ')}; ` +
        `after n2 returned: ${after.newValue} new, ${after.oldValue} old, ${after.unavailable} UNAVAILABLE`,
    );
    expect(during.oldValue).toBe(0);
    expect(during.other).toEqual([]);
    expect(during.unavailable).toBeGreaterThan(0);
    expect([...during.refusals].some((m) => /no leader|quorum needs/.test(m))).toBe(true);
    expect(after.oldValue).toBe(0);
    expect(after.newValue).toBeGreaterThan(0);
    // Status shows the CP keyspace without a leader meanwhile (or not open yet, while n1 starts).
    expect(['', 'no raft status']).toContain(statusWhileRecovering[0]);
  }, 60_000);

  it('a --memory node restarted (an empty store every time) recovers its peers\' state before it serves, then holds every acknowledged write', async () => {
    cluster = await LocalCluster.create({ size: 3, memory: true, serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap'] });
    const c = cluster;
    await c.startAll();
    const kv = (id: string) => {
      const made = new TestKvClient(c.address(id));
      clients.push(made);
      return made;
    };
    const n1 = kv('n1');
    for (let i = 0; i < 50; i++) await retryUnavailable(() => n1.put(`k${i}`, `v${i}`, { keyspace: 'a' }));
    await c.kill('n3', 'SIGKILL');
    for (let i = 50; i < 100; i++) await retryUnavailable(() => n1.put(`k${i}`, `v${i}`, { keyspace: 'a' }));
    // The AP writes reach n2 in the background; wait until it holds them all.
    const n2 = kv('n2');
    await retryUnavailable(async () => {
      for (let i = 0; i < 100; i++) if ((await n2.get(`k${i}`, { keyspace: 'a' })).value.toString() !== `v${i}`) throw Object.assign(new Error(`n2 lacks k${i}`), { code: 14 });
    }, 10_000);
    const t0 = performance.now();
    await c.start('n3'); // its ready line comes once it has recovered
    console.log(`--memory n3 recovered and served ${(performance.now() - t0).toFixed(0)} ms after its restart`);
    // An AP read is answered by the local replica alone: n3 holds every write, the 50 it missed included.
    const n3 = kv('n3');
    for (let i = 0; i < 100; i++) expect((await n3.get(`k${i}`, { keyspace: 'a' })).value.toString(), `k${i} through n3`).toBe(`v${i}`);
  }, 60_000);

  it('does answer the overwritten value with recovery switched off (REPLIKIT_UNSAFE_SKIP_RECOVERY=1), so the test above can fail', async () => {
    const { during } = await wipedAndStaleTogether({ REPLIKIT_UNSAFE_SKIP_RECOVERY: '1' });
    console.log(`recovery off: ${during.newValue} new, ${during.oldValue} old, ${during.unavailable} UNAVAILABLE`);
    expect(during.oldValue).toBeGreaterThan(0);
  }, 60_000);
});
