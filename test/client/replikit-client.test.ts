import { afterEach, describe, expect, it } from 'vitest';
import { MAX_QUEUED, ReplikitClient, WatchError, type WatchEvent } from '../../src/client/index.js';
import type { ReplicaNode } from '../../src/node/replica-node.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';

const started: ReplicaNode[] = [];
const clients: ReplikitClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(started.splice(0).map((n) => n.close(100)));
});

async function cluster(): Promise<{ nodes: ReplicaNode[]; client: ReplikitClient }> {
  const nodes = await startInProcessCluster(3);
  started.push(...nodes);
  const client = await ReplikitClient.connect({ endpoints: nodes.map((n) => n.address!) });
  clients.push(client);
  return { nodes, client };
}

/** Takes events from a watch until `count` have arrived (or the deadline passes). */
async function take(events: AsyncIterableIterator<WatchEvent>, count: number, ms = 10_000): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  const deadline = Date.now() + ms;
  while (out.length < count) {
    const next = await Promise.race([events.next(), new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), Math.max(1, deadline - Date.now())))]);
    if (next === 'timeout') throw new Error(`timed out after ${out.length} of ${count} events: ${JSON.stringify(out.map(describeEvent))}`);
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

function describeEvent(e: WatchEvent): string {
  return `${e.type} ${e.key.toString()} ${e.value.toString()} @${e.revision}`;
}

describe('ReplikitClient', () => {
  it('pages through a prefix of 250 keys 100 at a time at one revision', async () => {
    const { client } = await cluster();
    const ks = client.keyspace('default');
    const keys = Array.from({ length: 250 }, (_, i) => `page/${String(i).padStart(3, '0')}`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => ks.put(k, `v-${k}`)));
    await ks.put('pagf', 'outside the prefix');
    await ks.put('pag', 'outside too');

    const first = await ks.range('page/', { prefix: true, limit: 100 });
    expect(first.kvs).toHaveLength(100);
    expect(first.count).toBe(250);
    expect(first.more).toBe(true);
    expect(first.continuation).toBeDefined();
    const second = await ks.range('page/', { prefix: true, limit: 100, continuation: first.continuation });
    expect(second.revision).toBe(first.revision);
    expect(second.kvs[0]!.key.toString()).toBe('page/100');

    // A write between pages does not show: every page is read at the first page's revision.
    const pages: string[] = [];
    const seen: string[] = [];
    let continuation: Uint8Array | undefined;
    let revision = 0;
    do {
      const page = await ks.range('page/', { prefix: true, limit: 100, ...(continuation ? { continuation } : {}) });
      if (revision === 0) {
        revision = page.revision;
        await ks.put('page/000', 'changed after the first page');
        await ks.put('page/999', 'added after the first page');
      }
      expect(page.revision).toBe(revision);
      pages.push(`${page.kvs.length}`);
      seen.push(...page.kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}`));
      continuation = page.more ? page.continuation : undefined;
    } while (continuation !== undefined);
    expect(pages).toEqual(['100', '100', '50']);
    expect(seen).toEqual(keys.map((k) => `${k}=v-${k}`));

    // rangeAll pages on its own, in order, and sees the writes made since.
    const all: string[] = [];
    for await (const kv of ks.rangeAll('page/', { prefix: true, limit: 100 })) all.push(kv.key.toString());
    expect(all).toEqual([...keys, 'page/999']);
    const latest = await ks.range('page/000');
    expect(latest.kvs[0]!.value.toString()).toBe('changed after the first page');

    const descending = await ks.range('page/', { prefix: true, limit: 3, descending: true, keysOnly: true });
    expect(descending.kvs.map((kv) => kv.key.toString())).toEqual(['page/999', 'page/249', 'page/248']);
    expect(descending.kvs.every((kv) => kv.value.byteLength === 0)).toBe(true);
    expect((await ks.range('page/', { prefix: true, countOnly: true })).count).toBe(251);
    // The state at an earlier revision: before the late writes.
    const past = await ks.range('page/', { prefix: true, revision, countOnly: true });
    expect(past.count).toBe(250);
    const ranged = await ks.range('page/010', { end: 'page/013' });
    expect(ranged.kvs.map((kv) => kv.key.toString())).toEqual(['page/010', 'page/011', 'page/012']);
  });

  it('watches puts and deletes on a prefix in revision order, with previous values', async () => {
    const { client } = await cluster();
    const ks = client.keyspace('default');
    const before = await ks.put('w/a', '0');
    const watch = ks.watch('w/', { prefix: true, fromRevision: before.revision + 1, prevKv: true });
    const events = watch.events();
    const revisions: number[] = [];
    revisions.push((await ks.put('w/a', '1')).revision);
    revisions.push((await ks.put('x/outside', 'not watched')).revision);
    revisions.push((await ks.put('w/b', '2')).revision);
    revisions.push((await ks.delete('w/a')).revision);
    revisions.push((await ks.put('w/a', '3')).revision);
    const got = await take(events, 4);
    expect(got.map(describeEvent)).toEqual([`put w/a 1 @${revisions[0]}`, `put w/b 2 @${revisions[2]}`, `delete w/a  @${revisions[3]}`, `put w/a 3 @${revisions[4]}`]);
    expect(got[0]!.prevValue?.toString()).toBe('0');
    expect(got[0]!.version).toBe(2);
    expect(got[2]!.prevValue?.toString()).toBe('1');
    expect(got[3]!.createRevision).toBe(revisions[4]);
    expect(got[3]!.version).toBe(1);
    expect(watch.completeRevision).toBeGreaterThanOrEqual(revisions[4]!);
    await events.return?.();
    // Ended by the consumer: the iterator is done.
    expect((await watch.next()).done).toBe(true);
  });

  it('yields progress notifications when asked, and ends with compactRevision on a compacted start', async () => {
    const { client } = await cluster();
    const ks = client.keyspace('default');
    const first = await ks.put('c/a', '1');
    await ks.put('c/a', '2');
    const third = await ks.put('c/a', '3');

    const watch = ks.watch('c/', { prefix: true, progressIntervalMs: 100, progressNotify: true });
    const item = await watch.next();
    expect(item.done).toBe(false);
    expect(item.value).toEqual({ kind: 'progress', revision: expect.any(Number) });
    watch.cancel();

    const compacted = await ks.compact(third.revision - 1);
    expect(compacted.compactRevision).toBe(third.revision - 1);
    await expect(ks.range('c/', { prefix: true, revision: first.revision })).rejects.toMatchObject({ kind: 'out-of-range' });
    const late = ks.watch('c/', { prefix: true, fromRevision: first.revision });
    const error = await late.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WatchError);
    expect((error as WatchError).kind).toBe('out-of-range');
    expect((error as WatchError).compactRevision).toBe(third.revision - 1);
    expect((error as WatchError).message).toContain('compacted');
    // From the revision after the compaction, the watch replays what is kept.
    const kept = ks.watch('c/', { prefix: true, fromRevision: third.revision });
    const [event] = await take(kept.events(), 1);
    expect(event!.value.toString()).toBe('3');
  });

  it('holds at most a small queue for a consumer that does not pull, and resumes after the node cuts it off', async () => {
    const { client } = await cluster();
    const ks = client.keyspace('default');
    const start = (await ks.put('q/start', 's')).revision;
    const resumes: string[] = [];
    const watch = ks.watch('q/', { prefix: true, fromRevision: start + 1, onResume: (info) => resumes.push(`${info.error.kind} ${info.from} -> ${info.to} from ${info.fromRevision}`) });
    // Nobody pulls while 600 values of 10 KB (6 MB) are written: more than the streams buffer
    // and the node keeps for a watcher (4 MiB), so the node cuts the stream off
    // (RESOURCE_EXHAUSTED); the client held a few messages only.
    const value = 'v'.repeat(10_000);
    const written: number[] = [];
    for (let i = 0; i < 600; i += 50) written.push(...(await Promise.all(Array.from({ length: 50 }, (_, j) => ks.put(`q/${String(i + j).padStart(3, '0')}`, value)))).map((r) => r.revision));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(watch.queued).toBeLessThanOrEqual(MAX_QUEUED);
    const got = await take(watch.events(), 600, 20_000);
    expect(got.map((e) => e.revision)).toEqual([...written].sort((a, b) => a - b));
    expect(got.every((e) => e.value.byteLength === 10_000)).toBe(true);
    expect(resumes.length, 'the node cut the slow watcher off and the client resumed').toBeGreaterThanOrEqual(1);
    expect(resumes[0]).toMatch(/^resource-exhausted /);
  });

  it('refuses what it cannot send, and says which endpoint is unreachable', async () => {
    await expect(ReplikitClient.connect({ endpoints: [] })).rejects.toMatchObject({ kind: 'invalid-argument' });
    await expect(ReplikitClient.connect({ endpoints: ['nope'] })).rejects.toThrow(/host:port/);
    await expect(ReplikitClient.connect({ endpoints: ['127.0.0.1:1'], timeoutMs: 300 })).rejects.toThrow(/127\.0\.0\.1:1/);
  });
});
