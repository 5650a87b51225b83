import { describe, expect, it } from 'vitest';
import { ReplikitError, outOfRange } from '../../src/errors.js';
import type { StoredKey } from '../../src/policy/cp/kv-state-machine.js';
import type { ChangeBatch, ChangeSource } from '../../src/policy/watch/change.js';
import { prefixRange, singleKey } from '../../src/policy/watch/key-range.js';
import { WATCH_DEFAULTS, WatchHub, type WatchMessage, type Watcher } from '../../src/policy/watch/watch-hub.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';

/** A source over an in-memory list, as the CP history is over its store: the head moves, then the hub publishes. */
class ListSource implements ChangeSource {
  readonly batches: ChangeBatch[] = [];
  floor = 0;
  get head(): number {
    return this.batches.length === 0 ? this.floor : this.batches[this.batches.length - 1]!.revision;
  }
  read(from: number, maxBytes: number): ChangeBatch[] {
    if (from <= this.floor) throw this.floorError(from);
    const out: ChangeBatch[] = [];
    let bytes = 0;
    for (const b of this.batches) {
      if (b.revision < from) continue;
      if (out.length > 0 && bytes >= maxBytes) break;
      out.push(b);
      bytes += 200;
    }
    return out;
  }
  floorError(revision: number): Error {
    return outOfRange('REVISION_COMPACTED', `revision ${revision} is compacted`, { compact_revision: String(this.floor) });
  }
  add(hub: WatchHub, keys: string[]): ChangeBatch {
    const revision = this.head + 1;
    const batch = { revision, events: keys.map((k) => ({ type: 'put' as const, kv: record(k, `v${revision}`, revision) })) };
    this.batches.push(batch);
    hub.publish(batch);
    return batch;
  }
}

function record(key: string, value: string, revision: number): StoredKey {
  return { key: Buffer.from(key), value: Buffer.from(value), createRevision: revision, modRevision: revision, version: 1, stamp: { hlc: { wallMs: revision, logical: 0 }, nodeId: 'n1' } };
}

async function take(w: Watcher, n: number): Promise<WatchMessage[]> {
  const out: WatchMessage[] = [];
  for (let i = 0; i < n; i++) {
    const r = await w.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

const revisionsOf = (messages: WatchMessage[]) => messages.flatMap((m) => (m.kind === 'events' ? m.events.map((e) => e.revision) : []));

describe('WatchHub', () => {
  it('catches a watcher up from the source, then pushes it each new revision in range, with no gap and no duplicate whatever the interleaving', async () => {
    const source = new ListSource();
    const hub = new WatchHub(source, new VirtualScheduler(), { ...WATCH_DEFAULTS, maxMessageBytes: 1_000 });
    for (let i = 0; i < 30; i++) source.add(hub, [`p/${i % 4}`, ...(i % 3 === 0 ? ['q'] : [])]);
    const w = hub.open({ range: prefixRange(Buffer.from('p/')), startRevision: 5, prevKv: false, progressIntervalMs: 60_000 });
    const seen: number[] = [];
    const first = await take(w, 3);
    expect(first[0]).toEqual({ kind: 'created', revision: 4 });
    seen.push(...revisionsOf(first));
    // Writes arrive while the watcher is still catching up, and after.
    for (let i = 0; i < 20; i++) {
      source.add(hub, [`p/${i}`]);
      if (i % 5 === 0) seen.push(...revisionsOf(await take(w, 1)));
    }
    while (seen[seen.length - 1] !== source.head) seen.push(...revisionsOf(await take(w, 1)));
    expect(seen).toEqual([...Array(source.head - 4).keys()].map((i) => i + 5));
    expect(hub.stats.watchers).toBe(1);
    w.cancel();
    expect((await w.next()).done).toBe(true);
    expect(hub.stats.watchers).toBe(0);
  });

  it('keeps the events of one revision in one message, and a single-key watch sees only its key', async () => {
    const source = new ListSource();
    const hub = new WatchHub(source, new VirtualScheduler());
    const all = hub.open({ range: prefixRange(Buffer.from('')), startRevision: 1, prevKv: false, progressIntervalMs: 60_000 });
    const one = hub.open({ range: singleKey(Buffer.from('b')), startRevision: 1, prevKv: false, progressIntervalMs: 60_000 });
    await take(all, 1);
    await take(one, 1);
    source.add(hub, ['a', 'b', 'c']);
    source.add(hub, ['a']);
    const [m] = await take(all, 1);
    expect(m!.kind === 'events' && m!.events.map((e) => [e.revision, e.event.kv.key.toString()])).toEqual([[1, 'a'], [1, 'b'], [1, 'c'], [2, 'a']]);
    const [n] = await take(one, 1);
    expect(n!.kind === 'events' && n!.events.map((e) => e.event.kv.key.toString())).toEqual(['b']);
    one.requestProgress();
    expect((await take(one, 1))[0]).toEqual({ kind: 'progress', revision: 2 });
  });

  it('cuts off an in-step watcher whose consumer stops reading once its buffer passes the limit, naming the revision to resume from', async () => {
    const source = new ListSource();
    const hub = new WatchHub(source, new VirtualScheduler(), { ...WATCH_DEFAULTS, maxPendingBytes: 2_000 });
    const w = hub.open({ range: prefixRange(Buffer.from('k')), startRevision: 1, prevKv: false, progressIntervalMs: 60_000 });
    await take(w, 1);
    source.add(hub, ['k1']);
    await take(w, 1); // delivered through revision 1
    for (let i = 0; i < 40 && hub.stats.slowCancellations === 0; i++) source.add(hub, ['k' + 'x'.repeat(100)]);
    expect(hub.stats.slowCancellations).toBe(1);
    expect(hub.stats.pendingBytes).toBe(0);
    expect(hub.stats.watchers).toBe(0);
    const error = await w.next().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(ReplikitError);
    expect((error as ReplikitError).kind).toBe('resource-exhausted');
    expect((error as ReplikitError).details['resume_revision']).toBe('2');
  });

  it('ends a watcher that needs a revision at or below the floor with the source\'s error, and says where it stood', async () => {
    const source = new ListSource();
    const hub = new WatchHub(source, new VirtualScheduler());
    for (let i = 0; i < 10; i++) source.add(hub, ['k']);
    source.floor = 6;
    source.batches.splice(0, 6);
    const w = hub.open({ range: singleKey(Buffer.from('k')), startRevision: 3, prevKv: false, progressIntervalMs: 60_000 });
    await take(w, 1);
    const error = (await w.next().then(() => undefined, (e: unknown) => e)) as ReplikitError;
    expect(error.kind).toBe('out-of-range');
    expect(error.details['compact_revision']).toBe('6');
    expect(error.details['resume_revision']).toBe('3');
  });

  it('ends an in-step watcher when the source jumps past revisions it never published (a snapshot taken in), naming where to resume', async () => {
    const source = new ListSource();
    const hub = new WatchHub(source, new VirtualScheduler());
    source.add(hub, ['k']);
    const w = hub.open({ range: singleKey(Buffer.from('k')), startRevision: 1, prevKv: false, progressIntervalMs: 60_000 });
    await take(w, 2);
    // The head jumps from 1 to 9 without publishing 2..9, as a snapshot install does.
    source.batches.length = 0;
    source.floor = 9;
    hub.reset();
    const error = (await w.next().then(() => undefined, (e: unknown) => e)) as ReplikitError;
    expect(error).toBeInstanceOf(ReplikitError);
    expect(error.details['resume_revision']).toBe('2');
  });

  it('sends progress notifications while idle, at the interval asked for, never going back', async () => {
    const source = new ListSource();
    const scheduler = new VirtualScheduler();
    const hub = new WatchHub(source, scheduler);
    source.add(hub, ['a']);
    const w = hub.open({ range: singleKey(Buffer.from('zz')), startRevision: 2, prevKv: false, progressIntervalMs: 1_000 });
    await take(w, 1);
    const got: WatchMessage[] = [];
    void (async () => {
      for await (const m of w) got.push(m);
    })();
    await scheduler.runUntil(3_500);
    source.add(hub, ['b']);
    await scheduler.runUntil(6_000);
    const progress = got.filter((m) => m.kind === 'progress').map((m) => m.revision);
    expect(progress.length).toBeGreaterThanOrEqual(4);
    expect(progress[0]).toBe(1);
    expect(progress[progress.length - 1]).toBe(2);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThanOrEqual(progress[i - 1]!);
    w.cancel();
  });

  it('refuses a watcher past the limit of watchers', () => {
    const source = new ListSource();
    const hub = new WatchHub(source, new VirtualScheduler(), { ...WATCH_DEFAULTS, maxWatchers: 2 });
    hub.open({ range: singleKey(Buffer.from('a')), startRevision: 1, prevKv: false, progressIntervalMs: 1_000 });
    hub.open({ range: singleKey(Buffer.from('a')), startRevision: 1, prevKv: false, progressIntervalMs: 1_000 });
    expect(() => hub.open({ range: singleKey(Buffer.from('a')), startRevision: 1, prevKv: false, progressIntervalMs: 1_000 })).toThrow(/2 watchers/);
  });
});
