import { describe, expect, it } from 'vitest';
import { causal, type CausalKeyspace, type CausalOptions } from '../../src/policy/causal/causal.js';
import type { ConsistencyPolicy } from '../../src/policy/policy.js';
import { MemoryStore } from '../../src/storage/memory-store.js';

import { KS, Cluster, eventsOf, brief, watchPrefix, failure, keys, allPages, lmdbStore } from '../support/range-watch-nodes.js';

function causalPolicy(options: CausalOptions = {}): () => ConsistencyPolicy {
  return () => causal({ callTimeoutMs: 50, ...options });
}

describe('causal keyspaces: Range', () => {
  for (const [name, newStore] of [
    ['MemoryStore', () => new MemoryStore()],
    ['LmdbStore', lmdbStore],
  ] as const) {
    it(`reads the local replica (${name}): a key, a range, a prefix, pages, descending, keys only, count only; deleted keys never appear`, async () => {
      const c = await Cluster.start(['n1', 'n2'], causalPolicy(), newStore);
      const n1 = c.node('n1');
      let token: Uint8Array | undefined;
      for (const k of ['a/1', 'a/2', 'a/3', 'a/4', 'a/5', 'b/1', 'c']) {
        token = (await c.put('n1', k, `v-${k}`, token)).sessionToken;
        // Acknowledged by this node, so in its range at once.
        expect(keys(await n1.range(KS, { key: Buffer.from(k) }, { sessionToken: token }))).toEqual([k]);
      }
      await n1.delete(KS, Buffer.from('a/3'), { sessionToken: token });

      const prefix = await n1.range(KS, { key: Buffer.from('a/'), prefix: true });
      expect(keys(prefix)).toEqual(['a/1', 'a/2', 'a/4', 'a/5']);
      expect(prefix.kvs.map((kv) => kv.value.toString())).toEqual(['v-a/1', 'v-a/2', 'v-a/4', 'v-a/5']);
      expect([prefix.count, prefix.more, prefix.revision, prefix.possiblyStale]).toEqual([4, false, 0, false]);
      expect(prefix.sessionToken.byteLength).toBeGreaterThan(0);

      expect(keys(await n1.range(KS, { key: Buffer.from('a/2'), rangeEnd: Buffer.from('b/1') }))).toEqual(['a/2', 'a/4', 'a/5']);
      expect(keys(await n1.range(KS, { key: Buffer.from('c') }))).toEqual(['c']);
      const deleted = await n1.range(KS, { key: Buffer.from('a/3') });
      expect([keys(deleted), deleted.count]).toEqual([[], 0]);
      expect(await allPages(n1, { key: Buffer.from(''), prefix: true, limit: 2 })).toEqual([['a/1', 'a/2'], ['a/4', 'a/5'], ['b/1', 'c']]);
      expect(await allPages(n1, { key: Buffer.from('a/'), prefix: true, limit: 3, descending: true })).toEqual([['a/5', 'a/4', 'a/2'], ['a/1']]);
      const keysOnly = await n1.range(KS, { key: Buffer.from('a/'), prefix: true, keysOnly: true });
      expect([keys(keysOnly), keysOnly.kvs.every((kv) => kv.value.byteLength === 0)]).toEqual([['a/1', 'a/2', 'a/4', 'a/5'], true]);
      const countOnly = await n1.range(KS, { key: Buffer.from(''), prefix: true, countOnly: true });
      expect([countOnly.kvs.length, countOnly.count]).toEqual([0, 6]);
    });
  }

  it('honours the session token as get does: waits for the session, fails BEHIND_SESSION at the deadline, and answers a token covering what it read', async () => {
    const c = await Cluster.start(['n1', 'n2', 'n3'], causalPolicy());
    c.network.partition([['n1'], ['n2', 'n3']]);
    const written = await c.put('n2', 's/1', 'from-n2');
    await c.scheduler.advance(20);
    // n1 has not got the write: a range with the session waits, then gives up.
    const waiting = c.node('n1').range(KS, { key: Buffer.from('s/'), prefix: true }, { sessionToken: written.sessionToken, timeoutMs: 200 });
    const refused = failure(waiting);
    await c.scheduler.advance(300);
    const error = await refused;
    expect([error.kind, error.reason]).toEqual(['unavailable', 'BEHIND_SESSION']);
    expect(c.policyOf<CausalKeyspace>('n1').stats().sessionWaits).toBe(1);
    // Without the session, n1 answers what it has.
    expect(keys(await c.node('n1').range(KS, { key: Buffer.from('s/'), prefix: true }))).toEqual([]);

    // n3 has it: its range's token carries the write, so n1 (once healed) must show it too.
    await c.scheduler.advance(100);
    const onN3 = await c.node('n3').range(KS, { key: Buffer.from('s/'), prefix: true });
    expect(keys(onN3)).toEqual(['s/1']);
    const pending = c.node('n1').range(KS, { key: Buffer.from('s/'), prefix: true }, { sessionToken: onN3.sessionToken, timeoutMs: 5_000 });
    await c.scheduler.advance(50);
    c.network.heal();
    await c.scheduler.advance(2_000);
    const healed = await pending;
    expect(keys(healed)).toEqual(['s/1']);
    expect(healed.kvs[0]!.stamp.nodeId).toBe('n2');
    // The answer's token is at least the session's: a get with it on n1 sees the write at once.
    const got = await c.node('n1').get(KS, Buffer.from('s/1'), { sessionToken: healed.sessionToken, timeoutMs: 1 });
    expect(Buffer.from(got.value!).toString()).toBe('from-n2');
  });
});

describe('causal keyspaces: Watch (the change feed of the local replica)', () => {
  it("delivers local writes and writes replicated from a peer in this node's apply order, with rising positions", async () => {
    const c = await Cluster.start(['n1', 'n2', 'n3'], causalPolicy());
    const n1 = c.node('n1');
    const w = await watchPrefix(n1, 'k/', 0, true);
    expect(await w.available()).toEqual([{ kind: 'created', revision: c.policyOf<CausalKeyspace>('n1').stats().feedPosition }]);

    const one = await c.put('n1', 'k/1', 'one');
    await c.put('n2', 'k/2', 'two');
    await c.scheduler.advance(50);
    // Depends on n1's k/1 (through the session): applied after it everywhere.
    await c.put('n3', 'k/1', 'uno', one.sessionToken);
    await c.scheduler.advance(50);
    await n1.delete(KS, Buffer.from('k/2'));
    await c.put('n1', 'other', 'x'); // out of range

    const seen = eventsOf(await w.available());
    expect(brief(seen)).toEqual(['put k/1=one', 'put k/2=two', 'put k/1=uno', 'delete k/2=']);
    expect(seen.map((e) => e.node)).toEqual(['n1', 'n2', 'n3', 'n1']);
    expect(seen.map((e) => e.prev)).toEqual([undefined, undefined, 'one', 'two']);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.position).toBeGreaterThan(seen[i - 1]!.position);
    expect(c.policyOf<CausalKeyspace>('n1').watchStats().eventsDelivered).toBeGreaterThanOrEqual(4);
    expect(c.policyOf<CausalKeyspace>('n1').stats().watchers).toBe(1);
  });

  it('resumes from a position with exactly the rest; bounds the feed (OUT_OF_RANGE naming the floor)', async () => {
    const c = await Cluster.start(['n1', 'n2'], causalPolicy({ feedBytes: 4_000 }));
    const n1 = c.node('n1');
    const w = await watchPrefix(n1, 'r/');
    await w.available();
    for (let i = 0; i < 6; i++) await c.put(i % 2 === 0 ? 'n1' : 'n2', `r/${i}`, `v${i}`);
    await c.scheduler.advance(50);
    const all = eventsOf(await w.available());
    expect(all.map((e) => e.key).sort()).toEqual([0, 1, 2, 3, 4, 5].map((i) => `r/${i}`));
    const resumed = await watchPrefix(n1, 'r/', all[1]!.position + 1);
    expect(eventsOf(await resumed.available())).toEqual(all.slice(2));

    for (let i = 0; i < 100; i++) await c.put('n1', `f/${i}`, 'v'.repeat(100));
    const gone = await failure(n1.watch(KS, { key: Buffer.from('r/'), prefix: true, startRevision: all[0]!.position }));
    expect([gone.kind, gone.reason]).toEqual(['out-of-range', 'FEED_POSITION_GONE']);
    const floor = Number(gone.details['compact_revision']);
    expect(floor).toBeGreaterThan(all[5]!.position);
    expect(eventsOf(await (await watchPrefix(n1, 'f/', floor + 1)).available())[0]!.position).toBe(floor + 1);
    const future = await failure(n1.watch(KS, { key: Buffer.from('r/'), prefix: true, startRevision: c.policyOf<CausalKeyspace>('n1').stats().feedPosition + 2 }));
    expect(future.reason).toBe('START_REVISION_IN_FUTURE');
  });

  it('waits for the session before it starts, as get does', async () => {
    const c = await Cluster.start(['n1', 'n2'], causalPolicy());
    c.network.partition([['n1'], ['n2']]);
    const written = await c.put('n2', 'w/1', 'x');
    const refused = failure(c.node('n1').watch(KS, { key: Buffer.from('w/'), prefix: true }, { sessionToken: written.sessionToken, timeoutMs: 100 }));
    await c.scheduler.advance(200);
    expect((await refused).reason).toBe('BEHIND_SESSION');
  });

  it('cancels a watcher that stops reading with RESOURCE_EXHAUSTED once its buffer passes maxPendingBytes, and ends watchers when the node stops', async () => {
    const c = await Cluster.start(['n1'], causalPolicy({ watchLimits: { maxPendingBytes: 4_000 } }));
    const n1 = c.node('n1');
    const slow = await watchPrefix(n1, 'z/');
    await slow.available();
    const reading = await watchPrefix(n1, 'z/');
    await reading.available();
    let delivered = 0;
    for (let i = 0; i < 60; i++) {
      await c.put('n1', `z/${i}`, 'v'.repeat(100));
      delivered += eventsOf(await reading.available()).length;
    }
    expect(delivered).toBe(60);
    expect(c.policyOf<CausalKeyspace>('n1').watchStats().slowCancellations).toBe(1);
    const error = await failure(slow.available());
    expect([error.kind, error.reason]).toEqual(['resource-exhausted', 'WATCH_TOO_SLOW']);
    await c.stop('n1');
    const stopped = await failure(reading.available());
    expect([stopped.kind, stopped.reason]).toEqual(['unavailable', 'NODE_STOPPING']);
  });
});
