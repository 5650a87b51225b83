import { describe, expect, it } from 'vitest';
import type { ApplyOutcome, Entry } from '../../src/storage/entry.js';
import { BatchingReplicaSet } from '../../src/transport/batching-replica-set.js';
import { PeerCallError, type ReplicaSet } from '../../src/transport/replica-set.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';

const entry = (key: string): Entry => ({
  key: Buffer.from(key),
  value: Buffer.from('v'),
  version: { hlc: { wallMs: 1, logical: 0 }, nodeId: 'n1' },
  tombstone: false,
});

function recordingPeers(fail = false) {
  const calls: { peer: string; keys: string[] }[] = [];
  const inner: ReplicaSet = {
    selfId: 'n1',
    peerIds: ['n2', 'n3'],
    async replicate(peer, _ks, entries) {
      calls.push({ peer, keys: entries.map((e) => e.key.toString()) });
      if (fail) throw new PeerCallError(peer, 'unreachable', 'down');
      return entries.map((e): ApplyOutcome => (e.key.toString().startsWith('old') ? 'superseded' : 'applied'));
    },
    async read(peer, _ks, keys) {
      calls.push({ peer, keys: keys.map((k) => Buffer.from(k).toString()) });
      return keys.map((k) => (Buffer.from(k).toString() === 'missing' ? undefined : entry(Buffer.from(k).toString())));
    },
    syncDigests: async () => ({ differingBuckets: [], entries: [], truncated: false }),
    probe: async () => 'member',
    snapshot: async () => ({ entries: [], more: false }),
  };
  return { inner, calls };
}

describe('BatchingReplicaSet', () => {
  it('splits batches by bytes too: large entries travel alone or a few at a time, never past the byte budget', async () => {
    const scheduler = new VirtualScheduler();
    const { inner, calls } = recordingPeers();
    const batching = new BatchingReplicaSet(inner, scheduler, { maxBatchEntries: 1024, maxBatchBytes: 1000 });
    const big = (key: string, size: number): Entry => ({ ...entry(key), value: new Uint8Array(size) });
    const writes = [big('a', 400), big('b', 400), big('c', 400), big('d', 2000), big('e', 10)].map((e) => batching.replicate('n2', 'ks', [e], 100));
    await scheduler.advance(1);
    await Promise.all(writes);
    // a+b fit (2 × (400 + 49)); c would pass 1000; d alone is over the budget and goes alone; e follows.
    expect(calls.map((c) => c.keys)).toEqual([['a', 'b'], ['d'], ['c', 'e']]);
  });

  it('reads each key once however many callers ask, and asks again for what a short answer left out', async () => {
    const scheduler = new VirtualScheduler();
    const asked: string[][] = [];
    const inner: ReplicaSet = {
      ...recordingPeers().inner,
      // A replica whose answers carry at most two entries (its byte budget), as NodeCore.read does.
      async read(_peer, _ks, keys) {
        asked.push(keys.map((k) => Buffer.from(k).toString()));
        return keys.slice(0, 2).map((k) => entry(Buffer.from(k).toString()));
      },
    };
    const batching = new BatchingReplicaSet(inner, scheduler, { maxBatchEntries: 1024, maxBatchBytes: 512 * 1024 });
    const reads = ['x', 'y', 'x', 'z', 'w', 'x'].map((k) => batching.read('n2', 'ks', [Buffer.from(k)], 100));
    await scheduler.advance(1);
    const results = await Promise.all(reads);
    expect(results.map(([e]) => Buffer.from(e!.key).toString())).toEqual(['x', 'y', 'x', 'z', 'w', 'x']);
    expect(asked).toEqual([['x', 'y', 'z', 'w'], ['z', 'w']]);
  });

  it('never sends a batch over its limit: two 256-entry calls under a 300 limit travel apart', async () => {
    const scheduler = new VirtualScheduler();
    const { inner, calls } = recordingPeers();
    const batching = new BatchingReplicaSet(inner, scheduler, { maxBatchEntries: 300, maxBatchBytes: 512 * 1024 });
    const many = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => entry(`${prefix}${i}`));
    const a = batching.replicate('n2', 'ks', many('a', 256), 100);
    const b = batching.replicate('n2', 'ks', many('b', 256), 100);
    const c = batching.replicate('n2', 'ks', many('c', 40), 100);
    await scheduler.advance(1);
    const [ra, rb, rc] = await Promise.all([a, b, c]);
    expect(calls.map((call) => call.keys.length)).toEqual([256, 296]);
    expect(Math.max(...calls.map((call) => call.keys.length))).toBeLessThanOrEqual(300);
    expect([ra.length, rb.length, rc.length]).toEqual([256, 256, 40]);
  });

  it('sends the calls of one turn to a peer as one call and gives each caller its own results', async () => {
    const scheduler = new VirtualScheduler();
    const { inner, calls } = recordingPeers();
    const batching = new BatchingReplicaSet(inner, scheduler, { maxBatchEntries: 1024, maxBatchBytes: 512 * 1024 });
    const a = batching.replicate('n2', 'ks', [entry('a')], 100);
    const b = batching.replicate('n2', 'ks', [entry('old-b'), entry('c')], 100);
    const c = batching.replicate('n3', 'ks', [entry('d')], 100);
    const r = batching.read('n2', 'ks', [Buffer.from('missing'), Buffer.from('x')], 100);
    await scheduler.advance(1);
    expect(await a).toEqual(['applied']);
    expect(await b).toEqual(['superseded', 'applied']);
    expect(await c).toEqual(['applied']);
    const [missing, x] = await r;
    expect(missing).toBeUndefined();
    expect(x!.key.toString()).toBe('x');
    expect(calls).toEqual([
      { peer: 'n2', keys: ['a', 'old-b', 'c'] },
      { peer: 'n3', keys: ['d'] },
      { peer: 'n2', keys: ['missing', 'x'] },
    ]);
    expect(batching.stats).toEqual({ calls: 3, items: 6 });
  });

  it('fails every caller of a failed batch', async () => {
    const scheduler = new VirtualScheduler();
    const batching = new BatchingReplicaSet(recordingPeers(true).inner, scheduler, { maxBatchEntries: 1024, maxBatchBytes: 512 * 1024 });
    const a = batching.replicate('n2', 'ks', [entry('a')], 100);
    const b = batching.replicate('n2', 'ks', [entry('b')], 100);
    a.catch(() => {});
    b.catch(() => {});
    await scheduler.advance(1);
    await expect(a).rejects.toThrow(/down/);
    await expect(b).rejects.toThrow(/down/);
  });

  it('never sends more than the batch limit in one call', async () => {
    const scheduler = new VirtualScheduler();
    const { inner, calls } = recordingPeers();
    const batching = new BatchingReplicaSet(inner, scheduler, { maxBatchEntries: 3, maxBatchBytes: 512 * 1024 });
    const all = Array.from({ length: 7 }, (_, i) => batching.replicate('n2', 'ks', [entry(`k${i}`)], 100));
    await scheduler.advance(1);
    await Promise.all(all);
    expect(calls.map((c) => c.keys.length)).toEqual([3, 3, 1]);
  });
});
