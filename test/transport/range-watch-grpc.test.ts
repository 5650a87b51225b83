import { credentials, Metadata, status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { EventType, KvServiceClient, SortOrder, type RangeRequest, type RangeResponse, type WatchRequest, type WatchResponse } from '../../src/gen/replikit/v1/kv_service.js';
import type { ReplicaNode } from '../../src/node/replica-node.js';
import { cpQuorum } from '../../src/policy/index.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';

const started: ReplicaNode[] = [];
const clients: KvServiceClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(started.splice(0).map((n) => n.close(100)));
});

async function cluster(extra?: Parameters<typeof startInProcessCluster>[1]): Promise<{ nodes: ReplicaNode[]; client: (i: number) => KvServiceClient }> {
  const nodes = await startInProcessCluster(3, extra);
  started.push(...nodes);
  return {
    nodes,
    client: (i) => {
      const c = new KvServiceClient(nodes[i]!.address!, credentials.createInsecure());
      clients.push(c);
      return c;
    },
  };
}

function range(c: KvServiceClient, request: Partial<RangeRequest>): Promise<RangeResponse> {
  const full: RangeRequest = { keyspace: 'default', key: Buffer.alloc(0), rangeEnd: Buffer.alloc(0), prefix: false, limit: 0n as unknown as RangeRequest['limit'], keysOnly: false, countOnly: false, sortOrder: SortOrder.SORT_ORDER_UNSPECIFIED, revision: 0n, consistency: 0, sessionToken: Buffer.alloc(0), continuation: Buffer.alloc(0), ...request };
  return new Promise((resolve, reject) => c.range(full, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(res))));
}

function put(c: KvServiceClient, key: string, value: string): Promise<number> {
  return new Promise((resolve, reject) =>
    c.put({ keyspace: 'default', key: Buffer.from(key), value: Buffer.from(value), sessionToken: Buffer.alloc(0), ack: 0, lease: 0n }, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(Number(res.revision)))),
  );
}

function del(c: KvServiceClient, key: string): Promise<number> {
  return new Promise((resolve, reject) =>
    c.delete({ keyspace: 'default', key: Buffer.from(key), sessionToken: Buffer.alloc(0), ack: 0 }, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(Number(res.revision)))),
  );
}

/** Opens a watch and collects its responses; `next()` waits for the next one. */
function watch(c: KvServiceClient, create: Partial<NonNullable<WatchRequest['create']>>) {
  const stream: ClientDuplexStream<WatchRequest, WatchResponse> = c.watch();
  const received: WatchResponse[] = [];
  let waiting: (() => void) | undefined;
  let ended: ServiceError | 'ok' | undefined;
  stream.on('data', (r: WatchResponse) => (received.push(r), waiting?.()));
  stream.on('error', (e: ServiceError) => ((ended = e), waiting?.()));
  stream.on('end', () => ((ended ??= 'ok'), waiting?.()));
  stream.write({ create: { keyspace: 'default', key: Buffer.alloc(0), rangeEnd: Buffer.alloc(0), prefix: false, startRevision: 0n, prevKv: false, progressIntervalMs: 0, ...create } });
  return {
    stream,
    received,
    get ended() {
      return ended;
    },
    async until(done: () => boolean, ms = 5_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`timed out; received ${JSON.stringify(received.map((r) => ({ rev: Number(r.revision), n: r.events.length, c: r.created, p: r.progressNotify, x: r.canceled })))}`);
        await new Promise<void>((resolve) => {
          waiting = resolve;
          setTimeout(resolve, 50);
        });
      }
    },
    events: () => received.flatMap((r) => r.events.map((e) => ({ type: e.type, key: Buffer.from(e.kv!.key).toString(), value: Buffer.from(e.kv!.value).toString(), revision: Number(e.kv!.modRevision), prev: e.prevKv === undefined ? undefined : Buffer.from(e.prevKv.value).toString() }))),
  };
}

async function expectStatus(p: Promise<unknown>, code: status, field?: string): Promise<ServiceError> {
  const err = (await p.then(() => undefined, (e: unknown) => e)) as ServiceError | undefined;
  expect(err, 'the call should have failed').toBeDefined();
  expect(status[err!.code]).toBe(status[code]);
  if (field !== undefined) expect(err!.metadata.get('replikit-detail-field')[0]).toBe(field);
  return err!;
}

describe('KvService.Range and Watch on a CP keyspace, over real gRPC', () => {
  it('ranges a prefix at the current and at past revisions, pages with a continuation, and counts', async () => {
    const { client } = await cluster();
    const c = client(0);
    const revs: number[] = [];
    for (let i = 0; i < 25; i++) revs.push(await put(client(i % 3), `app/${String(i).padStart(2, '0')}`, `v${i}`));
    await put(c, 'other', 'x');
    const deletedAt = await del(c, 'app/03');
    const all = await range(client(1), { key: Buffer.from('app/'), prefix: true });
    expect(all.kvs.map((kv) => Buffer.from(kv.key).toString())).toEqual([...Array(25).keys()].filter((i) => i !== 3).map((i) => `app/${String(i).padStart(2, '0')}`));
    expect(Number(all.count)).toBe(24);
    expect(Number(all.revision)).toBe(deletedAt);
    // At the revision of the 10th put: ten keys, app/03 still there.
    const then = await range(client(2), { key: Buffer.from('app/'), prefix: true, revision: BigInt(revs[9]!) });
    expect(then.kvs.map((kv) => Buffer.from(kv.value).toString())).toEqual([...Array(10).keys()].map((i) => `v${i}`));
    // Paging by 7, descending, keys only.
    const seen: string[] = [];
    let continuation = Buffer.alloc(0);
    for (let page = 0; page < 10; page++) {
      const r = await range(client(page % 3), { key: Buffer.from('app/'), prefix: true, limit: 7n as unknown as RangeRequest['limit'], sortOrder: SortOrder.SORT_ORDER_DESCENDING, keysOnly: true, continuation });
      seen.push(...r.kvs.map((kv) => Buffer.from(kv.key).toString()));
      for (const kv of r.kvs) expect(kv.value.byteLength).toBe(0);
      if (!r.more) break;
      continuation = Buffer.from(r.continuation);
    }
    expect(seen).toEqual(all.kvs.map((kv) => Buffer.from(kv.key).toString()).reverse());
    // [app/05, app/08)
    const part = await range(c, { key: Buffer.from('app/05'), rangeEnd: Buffer.from('app/08'), countOnly: true });
    expect(Number(part.count)).toBe(3);
    expect(part.kvs).toEqual([]);
  });

  it('watches a prefix from a past revision on a follower: history, then live events, a transaction together, progress on request', async () => {
    const { client } = await cluster();
    const first = await put(client(0), 'cfg/a', '1');
    await put(client(0), 'cfg/b', '1');
    await put(client(0), 'zzz', 'not in range');
    const w = watch(client(2), { key: Buffer.from('cfg/'), prefix: true, startRevision: BigInt(first), prevKv: true });
    await w.until(() => w.events().length >= 2);
    await put(client(1), 'cfg/a', '2');
    const txn = await new Promise<number>((resolve, reject) =>
      client(1).txn({ keyspace: 'default', compares: [], success: [{ put: { key: Buffer.from('cfg/c'), value: Buffer.from('t'), lease: 0n } }, { delete: { key: Buffer.from('cfg/b') } }], failure: [] }, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(Number(res.revision)))),
    );
    await w.until(() => w.events().length >= 5);
    expect(w.received[0]!.created).toBe(true);
    expect(Number(w.received[0]!.revision)).toBe(first - 1);
    expect(w.events().map((e) => [e.type === EventType.EVENT_TYPE_PUT ? 'put' : 'delete', e.key, e.value, e.prev])).toEqual([
      ['put', 'cfg/a', '1', undefined],
      ['put', 'cfg/b', '1', undefined],
      ['put', 'cfg/a', '2', '1'],
      ['put', 'cfg/c', 't', undefined],
      ['delete', 'cfg/b', '', '1'],
    ]);
    // The transaction's two events arrived in one response.
    const txnResponse = w.received.find((r) => r.events.some((e) => Number(e.kv!.modRevision) === txn))!;
    expect(txnResponse.events.length).toBe(2);
    w.stream.write({ progress: {} });
    await w.until(() => w.received.some((r) => r.progressNotify));
    expect(Number(w.received.find((r) => r.progressNotify)!.revision)).toBe(txn);
    w.stream.write({ cancel: {} });
    await w.until(() => w.ended !== undefined);
    expect(w.received[w.received.length - 1]!.canceled).toBe(true);
  });

  it('compacts through the log: Range below and a watch from at or below the compaction fail with OUT_OF_RANGE naming it', async () => {
    const { client } = await cluster();
    const revs: number[] = [];
    for (let i = 0; i < 6; i++) revs.push(await put(client(0), `k${i}`, `v${i}`));
    const compacted = await new Promise<{ compactRevision: bigint }>((resolve, reject) =>
      client(1).compact({ keyspace: 'default', revision: BigInt(revs[3]!) }, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(res))),
    );
    expect(Number(compacted.compactRevision)).toBe(revs[3]);
    const err = await expectStatus(range(client(2), { key: Buffer.from('k'), prefix: true, revision: BigInt(revs[1]!) }), status.OUT_OF_RANGE);
    expect(err.metadata.get('replikit-detail-compact_revision')[0]).toBe(String(revs[3]));
    // The state at the compaction revision itself can still be read.
    expect((await range(client(2), { key: Buffer.from('k'), prefix: true, revision: BigInt(revs[3]!) })).kvs.length).toBe(4);
    const w = watch(client(2), { key: Buffer.from('k'), prefix: true, startRevision: BigInt(revs[2]!) });
    await w.until(() => w.ended !== undefined);
    expect((w.ended as ServiceError).code).toBe(status.OUT_OF_RANGE);
    const last = w.received[w.received.length - 1]!;
    expect(last.canceled).toBe(true);
    expect(Number(last.compactRevision)).toBe(revs[3]);
    // From just after the compaction: the rest, in order.
    const w2 = watch(client(0), { key: Buffer.from('k'), prefix: true, startRevision: BigInt(revs[3]! + 1) });
    await w2.until(() => w2.events().length >= 2);
    expect(w2.events().map((e) => e.key)).toEqual(['k4', 'k5']);
    w2.stream.cancel();
  });

  it('cancels a watcher whose client stops reading, with RESOURCE_EXHAUSTED and the revision to resume from, holding at most its limit', async () => {
    const maxPendingBytes = 256 * 1024;
    const { nodes, client } = await cluster(() => ({ keyspaces: { default: cpQuorum({ watchLimits: { maxPendingBytes } }) } }));
    const w = watch(client(0), { key: Buffer.from('big/'), prefix: true });
    await w.until(() => w.received.length >= 1);
    w.stream.pause();
    const value = 'x'.repeat(32 * 1024);
    const stats = () => nodes[0]!.core.policyOf('default') as unknown as { stats(): Record<string, number> };
    let maxPending = 0;
    let revision = 0;
    for (let i = 0; i < 400 && stats().stats()['watchSlowCancellations'] === 0; i++) {
      revision = await put(client(1), `big/${i % 50}`, value);
      maxPending = Math.max(maxPending, stats().stats()['watchBytesPending']!);
    }
    expect(stats().stats()['watchSlowCancellations']).toBe(1);
    expect(maxPending).toBeLessThanOrEqual(maxPendingBytes);
    expect(stats().stats()['watchers']).toBe(0);
    // What metrics export.
    const scraped = await nodes[0]!.metrics.scrape();
    expect(scraped).toMatch(/^replikit_watch_slow_cancellations\{keyspace="default",node="n1"\} 1$/m);
    expect(scraped).toMatch(/^replikit_watchers\{keyspace="default",node="n1"\} 0$/m);
    expect(scraped).toMatch(/^replikit_watch_events_pending\{keyspace="default",node="n1"\} 0$/m);
    w.stream.resume();
    await w.until(() => w.ended !== undefined, 10_000);
    expect((w.ended as ServiceError).code).toBe(status.RESOURCE_EXHAUSTED);
    const last = w.received[w.received.length - 1]!;
    expect(last.canceled).toBe(true);
    // It got everything before the resume revision, and nothing after.
    const resume = Number(last.resumeRevision);
    expect(resume).toBeGreaterThan(1);
    expect(Math.max(...w.events().map((e) => e.revision))).toBe(resume - 1);
    // Watching again from there misses nothing.
    const again = watch(client(2), { key: Buffer.from('big/'), prefix: true, startRevision: BigInt(resume) });
    await again.until(() => again.events().some((e) => e.revision === revision));
    expect(again.events()[0]!.revision).toBe(resume);
    again.stream.cancel();
  });

  it('pages a Range whose values exceed one message, and delivers an event whose value and previous value are near the value limit', async () => {
    const { client } = await cluster();
    const big = (c: string) => c.repeat(1_000_000);
    for (const k of ['v/a', 'v/b', 'v/c']) await put(client(0), k, big(k.slice(-1)));
    const w = watch(client(2), { key: Buffer.from('v/'), prefix: true, prevKv: true });
    await w.until(() => w.received.length >= 1);
    const keys: string[] = [];
    let continuation = Buffer.alloc(0);
    for (let page = 0; page < 5; page++) {
      const r = await range(client(1), { key: Buffer.from('v/'), prefix: true, continuation });
      keys.push(...r.kvs.map((kv) => Buffer.from(kv.key).toString()));
      expect(Number(r.count)).toBe(3);
      if (!r.more) break;
      continuation = Buffer.from(r.continuation);
    }
    expect(keys).toEqual(['v/a', 'v/b', 'v/c']);
    await put(client(1), 'v/a', big('z'));
    await w.until(() => w.events().length >= 1);
    expect(w.events()[0]!.value.length).toBe(1_000_000);
    expect(w.events()[0]!.prev?.slice(0, 3)).toBe('aaa');
    w.stream.cancel();
  });

  it('refuses bad input, naming the field', async () => {
    const { client } = await cluster();
    const c = client(0);
    await put(c, 'a', '1');
    await expectStatus(range(c, { key: Buffer.from('b'), rangeEnd: Buffer.from('a') }), status.INVALID_ARGUMENT, 'range_end');
    await expectStatus(range(c, { key: Buffer.from('a'), limit: -1n as unknown as RangeRequest['limit'] }), status.INVALID_ARGUMENT, 'limit');
    await expectStatus(range(c, { key: Buffer.from('a'), revision: 1_000n }), status.INVALID_ARGUMENT, 'revision');
    await expectStatus(range(c, { key: Buffer.from('a'), continuation: Buffer.from('junk') }), status.INVALID_ARGUMENT, 'continuation');
    await expectStatus(range(c, { keyspace: 'nope', key: Buffer.from('a') }), status.NOT_FOUND);
    await expectStatus(range(c, { key: Buffer.from('a'), prefix: true, rangeEnd: Buffer.from('b') }), status.INVALID_ARGUMENT, 'range_end');
    const future = watch(c, { key: Buffer.from('a'), startRevision: 1_000n });
    await future.until(() => future.ended !== undefined);
    expect((future.ended as ServiceError).code).toBe(status.INVALID_ARGUMENT);
    expect((future.ended as ServiceError).metadata.get('replikit-detail-field')[0]).toBe('start_revision');
    const unknown = watch(c, { keyspace: 'nope', key: Buffer.from('a') });
    await unknown.until(() => unknown.ended !== undefined);
    expect((unknown.ended as ServiceError).code).toBe(status.NOT_FOUND);
    const interval = watch(c, { key: Buffer.from('a'), progressIntervalMs: 5 });
    await interval.until(() => interval.ended !== undefined);
    expect((interval.ended as ServiceError).metadata.get('replikit-detail-field')[0]).toBe('progress_interval_ms');
  });
});
