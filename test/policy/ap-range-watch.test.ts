import { describe, expect, it } from 'vitest';
import { apAsync, type ApAsyncKeyspace, type ApAsyncOptions } from '../../src/policy/ap/ap-async.js';
import type { ConsistencyPolicy } from '../../src/policy/policy.js';
import { FEED_EPOCH_SPAN, FEED_EPOCHS, FeedRecorder, LocalFeed } from '../../src/policy/watch/local-feed.js';
import type { ChangeEvent } from '../../src/policy/watch/change.js';
import type { ApplyOutcome, Entry } from '../../src/storage/entry.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { Store } from '../../src/storage/store.js';

import { KS, Cluster, eventsOf, brief, watchPrefix, failure, keys, allPages, lmdbStore } from '../support/range-watch-nodes.js';

function ap(options: ApAsyncOptions = {}): () => ConsistencyPolicy {
  return () => apAsync({ antiEntropyIntervalMs: 200, callTimeoutMs: 50, hintReplayIntervalMs: 50, ...options });
}

describe('AP keyspaces: Range', () => {
  for (const [name, newStore] of [
    ['MemoryStore', () => new MemoryStore()],
    ['LmdbStore', lmdbStore],
  ] as const) {
    it(`reads the local replica (${name}): a key, a range, a prefix, pages, descending, keys only, count only; deleted keys never appear`, async () => {
      const c = await Cluster.start(['n1', 'n2'], ap(), newStore);
      const n1 = c.node('n1');
      for (const k of ['a/1', 'a/2', 'a/3', 'a/4', 'a/5', 'b/1', 'c']) {
        await c.put('n1', k, `v-${k}`);
        // Acknowledged by this node, so in its range at once.
        expect(keys(await n1.range(KS, { key: Buffer.from(k) }))).toEqual([k]);
      }
      await n1.delete(KS, Buffer.from('a/3'));

      const prefix = await n1.range(KS, { key: Buffer.from('a/'), prefix: true });
      expect(keys(prefix)).toEqual(['a/1', 'a/2', 'a/4', 'a/5']);
      expect(prefix.kvs.map((kv) => kv.value.toString())).toEqual(['v-a/1', 'v-a/2', 'v-a/4', 'v-a/5']);
      expect(prefix.count).toBe(4);
      expect(prefix.more).toBe(false);
      expect(prefix.revision).toBe(0);
      expect(prefix.possiblyStale).toBe(true);
      expect(prefix.kvs[0]!.stamp.nodeId).toBe('n1');
      expect([prefix.kvs[0]!.createRevision, prefix.kvs[0]!.modRevision, prefix.kvs[0]!.version]).toEqual([0, 0, 0]);

      expect(keys(await n1.range(KS, { key: Buffer.from('a/2'), rangeEnd: Buffer.from('b/1') }))).toEqual(['a/2', 'a/4', 'a/5']);
      expect(keys(await n1.range(KS, { key: Buffer.from('a/2'), rangeEnd: Buffer.from('b/2') }))).toEqual(['a/2', 'a/4', 'a/5', 'b/1']);
      expect(keys(await n1.range(KS, { key: Buffer.from('c') }))).toEqual(['c']);
      const deleted = await n1.range(KS, { key: Buffer.from('a/3') });
      expect([keys(deleted), deleted.count]).toEqual([[], 0]);
      expect((await n1.range(KS, { key: Buffer.from(''), prefix: true })).count).toBe(6);

      expect(await allPages(n1, { key: Buffer.from(''), prefix: true, limit: 2 })).toEqual([['a/1', 'a/2'], ['a/4', 'a/5'], ['b/1', 'c']]);
      expect(await allPages(n1, { key: Buffer.from('a/'), prefix: true, limit: 3, descending: true })).toEqual([['a/5', 'a/4', 'a/2'], ['a/1']]);
      const firstPage = await n1.range(KS, { key: Buffer.from(''), prefix: true, limit: 4 });
      expect([keys(firstPage), firstPage.count, firstPage.more]).toEqual([['a/1', 'a/2', 'a/4', 'a/5'], 6, true]);

      const keysOnly = await n1.range(KS, { key: Buffer.from('a/'), prefix: true, keysOnly: true });
      expect(keys(keysOnly)).toEqual(['a/1', 'a/2', 'a/4', 'a/5']);
      expect(keysOnly.kvs.every((kv) => kv.value.byteLength === 0)).toBe(true);
      const countOnly = await n1.range(KS, { key: Buffer.from('a/'), prefix: true, countOnly: true });
      expect([countOnly.kvs.length, countOnly.count]).toEqual([0, 4]);

      // The other replica shows what replicated to it, and not the deleted key.
      const everything = async () => keys(await c.node('n2').range(KS, { key: Buffer.from(''), prefix: true }));
      // LMDB commits on real time: let virtual time and real time both run until it lands.
      for (let i = 0; i < 200 && (await everything()).length < 6; i++) {
        await c.scheduler.advance(20);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(await everything()).toEqual(['a/1', 'a/2', 'a/4', 'a/5', 'b/1', 'c']);
      // A key deleted and written again is back.
      await c.put('n1', 'a/3', 'again');
      expect(keys(await n1.range(KS, { key: Buffer.from('a/'), prefix: true }))).toEqual(['a/1', 'a/2', 'a/3', 'a/4', 'a/5']);
    });
  }
});

describe('AP keyspaces: Watch (the change feed of the local replica)', () => {
  it("delivers local writes and writes replicated from a peer in this node's apply order, with rising positions", async () => {
    const c = await Cluster.start(['n1', 'n2', 'n3'], ap());
    const n1 = c.node('n1');
    await c.put('n1', 'other', 'x');
    const head = c.policyOf<ApAsyncKeyspace>('n1').stats().feedPosition;
    const w = await watchPrefix(n1, 'k/', 0, true);
    const created = await w.available();
    expect(created).toEqual([{ kind: 'created', revision: head }]);

    await c.put('n1', 'k/1', 'one');
    await c.put('n1', 'k/2', 'two');
    await c.put('n2', 'k/3', 'three');
    await c.put('n1', 'other', 'y'); // out of range
    await c.scheduler.advance(50);
    await c.put('n3', 'k/1', 'uno');
    await c.scheduler.advance(50);
    await n1.delete(KS, Buffer.from('k/2'));
    await n1.delete(KS, Buffer.from('k/never')); // nothing was there: no change to see
    await c.scheduler.advance(50);

    const seen = eventsOf(await w.available());
    expect(brief(seen)).toEqual(['put k/1=one', 'put k/2=two', 'put k/3=three', 'put k/1=uno', 'delete k/2=']);
    expect(seen.map((e) => e.node)).toEqual(['n1', 'n1', 'n2', 'n3', 'n1']);
    expect(seen.map((e) => e.prev)).toEqual([undefined, undefined, undefined, 'one', 'two']);
    const positions = seen.map((e) => e.position);
    for (let i = 1; i < positions.length; i++) expect(positions[i]).toBeGreaterThan(positions[i - 1]!);
    expect(positions[0]).toBeGreaterThan(head);
    expect(c.policyOf<ApAsyncKeyspace>('n1').watchStats().eventsDelivered).toBeGreaterThanOrEqual(5);

    // n2's feed has the same writes in its own order: its own first, then n1's and n3's as they arrived.
    const w2 = await watchPrefix(c.node('n2'), 'k/');
    await w2.available();
    await c.put('n3', 'k/9', 'nine');
    await c.scheduler.advance(50);
    expect(brief(eventsOf(await w2.available()))).toEqual(['put k/9=nine']);
  });

  it('delivers what reaches it through hints and anti-entropy after a partition heals', async () => {
    const c = await Cluster.start(['n1', 'n2', 'n3'], ap({ hintAfterFailures: 1 }));
    const w = await watchPrefix(c.node('n1'), 'p/');
    await w.available();
    c.network.partition([['n1'], ['n2', 'n3']]);
    for (let i = 0; i < 5; i++) await c.put('n2', `p/${i}`, `v${i}`);
    await c.scheduler.advance(300);
    expect(await w.available()).toEqual([]);
    c.network.heal();
    await c.scheduler.advance(1_000);
    expect(brief(eventsOf(await w.available())).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `put p/${i}=v${i}`));
  });

  it('resumes from a position: exactly the changes from there on; refuses a position past the head + 1', async () => {
    const c = await Cluster.start(['n1', 'n2'], ap());
    const n1 = c.node('n1');
    const w = await watchPrefix(n1, 'r/');
    await w.available();
    for (let i = 0; i < 6; i++) await c.put(i % 2 === 0 ? 'n1' : 'n2', `r/${i}`, `v${i}`);
    await c.scheduler.advance(50);
    const all = eventsOf(await w.available());
    expect(all).toHaveLength(6);

    const lastTaken = all[2]!.position;
    const resumed = await watchPrefix(n1, 'r/', lastTaken + 1);
    const rest = await resumed.available();
    expect(rest[0]).toEqual({ kind: 'created', revision: lastTaken });
    expect(eventsOf(rest)).toEqual(all.slice(3));
    // From the head + 1: nothing old, then what comes.
    const head = all[5]!.position;
    const fromHead = await watchPrefix(n1, 'r/', head + 1);
    expect(eventsOf(await fromHead.available())).toEqual([]);
    await c.put('n1', 'r/x', 'new');
    expect(brief(eventsOf(await fromHead.available()))).toEqual(['put r/x=new']);

    const future = await failure(n1.watch(KS, { key: Buffer.from('r/'), prefix: true, startRevision: head + 10 }));
    expect([future.kind, future.reason, future.details['field']]).toEqual(['invalid-argument', 'START_REVISION_IN_FUTURE', 'start_revision']);
  });

  it('keeps a bounded feed: a position below its floor fails with OUT_OF_RANGE naming the floor, also for a watcher left behind', async () => {
    const c = await Cluster.start(['n1'], ap({ feedBytes: 4_000 }));
    const n1 = c.node('n1');
    await c.put('n1', 'f/first', 'x');
    const first = c.policyOf<ApAsyncKeyspace>('n1').stats().feedPosition;
    const behind = await watchPrefix(n1, 'f/', first); // opened, never read while the feed moves on
    for (let i = 0; i < 100; i++) await c.put('n1', `f/${i}`, 'v'.repeat(100));
    const stats = c.policyOf<ApAsyncKeyspace>('n1').stats();
    expect(stats.feedBytes).toBeLessThanOrEqual(4_000);

    const gone = await failure(n1.watch(KS, { key: Buffer.from('f/'), prefix: true, startRevision: first }));
    expect([gone.kind, gone.reason]).toEqual(['out-of-range', 'FEED_POSITION_GONE']);
    expect(gone.message).toMatch(/Range the keys again and watch from now/);
    const floor = Number(gone.details['compact_revision']);
    expect(floor).toBeGreaterThan(first);
    expect(floor).toBeLessThan(stats.feedPosition);
    // The floor itself is gone; the position after it is kept.
    expect((await failure(n1.watch(KS, { key: Buffer.from('f/'), prefix: true, startRevision: floor }))).reason).toBe('FEED_POSITION_GONE');
    const kept = eventsOf(await (await watchPrefix(n1, 'f/', floor + 1)).available());
    expect(kept[0]!.position).toBe(floor + 1);
    expect(kept[kept.length - 1]!.position).toBe(stats.feedPosition);
    expect(kept.map((e) => e.key)).toEqual([...Array(100).keys()].slice(100 - kept.length).map((i) => `f/${i}`));

    const left = await failure(behind.available());
    expect([left.kind, left.reason, left.details['compact_revision']]).toEqual(['out-of-range', 'FEED_POSITION_GONE', String(floor)]);
  });

  it('never takes a position of an earlier start for one of this start: after a restart it is gone', async () => {
    const c = await Cluster.start(['n1'], ap());
    await c.put('n1', 's/1', 'a');
    const before = c.policyOf<ApAsyncKeyspace>('n1').stats().feedPosition;
    await c.stop('n1');
    await c.start('n1');
    const after = c.policyOf<ApAsyncKeyspace>('n1').stats().feedPosition;
    // A new epoch: the node's incarnation (stored by nextIncarnation) modulo 2^21.
    const incarnation = Number(Buffer.from(c.stores.get('n1')!.getMeta('incarnation')!).readBigUInt64BE(0));
    expect(after).toBe((incarnation % FEED_EPOCHS) * FEED_EPOCH_SPAN);
    expect(Math.floor(before / FEED_EPOCH_SPAN)).not.toBe(Math.floor(after / FEED_EPOCH_SPAN));
    const gone = await failure(c.node('n1').watch(KS, { key: Buffer.from('s/'), prefix: true, startRevision: before }));
    expect([gone.kind, gone.reason]).toEqual(['out-of-range', 'FEED_POSITION_GONE']);
    const w = await watchPrefix(c.node('n1'), 's/');
    await w.available();
    await c.put('n1', 's/2', 'b');
    expect(eventsOf(await w.available()).map((e) => e.position)).toEqual([after + 1]);
  });

  it('cancels a watcher that stops reading with RESOURCE_EXHAUSTED once its buffer passes maxPendingBytes', async () => {
    const c = await Cluster.start(['n1'], ap({ watchLimits: { maxPendingBytes: 4_000 } }));
    const n1 = c.node('n1');
    const slow = await watchPrefix(n1, 'z/');
    await slow.available(); // created; in step from here, then never read again
    const reading = await watchPrefix(n1, 'z/');
    await reading.available();
    let delivered = 0;
    for (let i = 0; i < 60; i++) {
      await c.put('n1', `z/${i}`, 'v'.repeat(100));
      delivered += eventsOf(await reading.available()).length;
    }
    expect(delivered).toBe(60); // a watcher that reads keeps up
    const stats = c.policyOf<ApAsyncKeyspace>('n1').watchStats();
    expect(stats.slowCancellations).toBe(1);
    expect(c.policyOf<ApAsyncKeyspace>('n1').stats().watchSlowCancellations).toBe(1);
    expect(stats.watchers).toBe(1);
    const error = await failure(slow.available());
    expect([error.kind, error.reason]).toEqual(['resource-exhausted', 'WATCH_TOO_SLOW']);
    expect(Number(error.details['resume_revision'])).toBeGreaterThan(0);
  });

  it('ends its watchers with UNAVAILABLE when the node stops', async () => {
    const c = await Cluster.start(['n1'], ap());
    const w = await watchPrefix(c.node('n1'), 'q/');
    await w.available();
    await c.stop('n1');
    const error = await failure(w.available());
    expect([error.kind, error.reason]).toEqual(['unavailable', 'NODE_STOPPING']);
  });
});

describe('LocalFeed and FeedRecorder', () => {
  const entry = (key: string, value: string, wallMs: number, tombstone = false): Entry => ({ key: Buffer.from(key), value: Buffer.from(value), version: { hlc: { wallMs, logical: 0 }, nodeId: 'n1' }, tombstone });

  it("hands the feed each apply's changes in the order the store applied them, even when their commits settle out of order", async () => {
    const inner = new MemoryStore();
    const held: (() => void)[] = [];
    // The first apply's answer is held back until the second has settled.
    const store = Object.create(inner) as Store;
    let calls = 0;
    store.apply = (keyspace, entries, resolve) => {
      const applying = inner.apply(keyspace, entries, resolve);
      if (calls++ > 0) return applying;
      return new Promise<ApplyOutcome[]>((done) => held.push(() => void applying.then(done)));
    };
    const batches: ChangeEvent[][] = [];
    const recorder = new FeedRecorder(store, KS, (events) => batches.push(events));
    const first = recorder.apply([entry('k', 'one', 1), entry('gone', '', 1, true)]);
    const second = recorder.apply([entry('k', 'two', 2), entry('old', 'x', 0)]);
    await second;
    expect(batches).toEqual([]);
    held.shift()!();
    await first;
    expect(batches.map((b) => b.map((e) => `${e.type} ${e.kv.key}=${e.kv.value}${e.prev === undefined ? '' : ` (was ${e.prev.value})`}`))).toEqual([['put k=one'], ['put k=two (was one)', 'put old=x']]);
    // Nothing applied (superseded), nothing recorded.
    await recorder.apply([entry('k', 'stale', 1)]);
    expect(batches).toHaveLength(2);
  });

  it('keeps positions of one epoch; a position of another epoch is gone, not in the future', () => {
    const feed = new LocalFeed(3, { keyspace: KS, maxBytes: 1_000 });
    expect([feed.head, feed.floor]).toEqual([3 * FEED_EPOCH_SPAN, 3 * FEED_EPOCH_SPAN]);
    const put = (k: string): ChangeEvent => ({ type: 'put', kv: { key: Buffer.from(k), value: Buffer.alloc(100), createRevision: 0, modRevision: 0, version: 0, stamp: { hlc: { wallMs: 1, logical: 0 }, nodeId: 'n1' } } });
    for (let i = 0; i < 20; i++) expect(feed.append([put(`k${i}`)]).revision).toBe(3 * FEED_EPOCH_SPAN + i + 1);
    expect(feed.bytes).toBeLessThanOrEqual(1_000);
    expect(feed.read(feed.floor + 1, 1 << 20).map((b) => b.revision)).toEqual([...Array(feed.head - feed.floor).keys()].map((i) => feed.floor + 1 + i));
    expect(() => feed.read(feed.floor, 1 << 20)).toThrow(/no longer kept/);
    expect(feed.startPosition(0)).toBe(feed.head + 1);
    expect(feed.startPosition(feed.head + 1)).toBe(feed.head + 1);
    expect(() => feed.startPosition(feed.head + 2)).toThrow(expect.objectContaining({ reason: 'START_REVISION_IN_FUTURE' }));
    expect(() => feed.startPosition(4 * FEED_EPOCH_SPAN + 1)).toThrow(expect.objectContaining({ reason: 'FEED_POSITION_GONE' }));
    expect(() => feed.startPosition(2 * FEED_EPOCH_SPAN + 5)).toThrow(expect.objectContaining({ reason: 'FEED_POSITION_GONE' }));
  });
});
