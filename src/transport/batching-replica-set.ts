import type { Scheduler } from '../clock/index.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import type { DigestAnswer, ProbeAnswer, ReplicaSet, SnapshotPage } from './replica-set.js';

interface Pending<I, O> {
  readonly items: readonly I[];
  readonly timeoutMs: number;
  readonly resolve: (out: O[]) => void;
  readonly reject: (err: unknown) => void;
}

interface Queue<I, O> {
  pending: Pending<I, O>[];
  size: number;
  scheduled: boolean;
}

/**
 * Coalesces the calls that policies make to one peer in the same turn into one Replicate or one
 * Read per (peer, keyspace): under load, 64 concurrent quorum operations cost a few calls per
 * peer instead of 128. Each caller still gets exactly its own results, and a failure of the
 * shared call fails each of them (the semantics of a call to a peer are unchanged: order-free and
 * idempotent). A batch holds at most `maxBatchEntries` items; larger demand goes in several calls.
 * The shared call gets the longest timeout among its callers, so none is cut short; callers with
 * shorter deadlines give up on their own (callQuorum's timer).
 */
export class BatchingReplicaSet implements ReplicaSet {
  readonly selfId: string;
  readonly peerIds: readonly string[];
  readonly #inner: ReplicaSet;
  readonly #scheduler: Scheduler;
  readonly #maxBatchEntries: number;
  readonly #replicates = new Map<string, Queue<Entry, ApplyOutcome>>();
  readonly #reads = new Map<string, Queue<Uint8Array, Entry | undefined>>();
  /** Calls made to peers, and items carried, for tests and benchmarks. */
  readonly stats = { calls: 0, items: 0 };

  constructor(inner: ReplicaSet, scheduler: Scheduler, maxBatchEntries: number) {
    this.selfId = inner.selfId;
    this.peerIds = inner.peerIds;
    this.#inner = inner;
    this.#scheduler = scheduler;
    this.#maxBatchEntries = maxBatchEntries;
  }

  replicate(peer: string, keyspace: string, entries: readonly Entry[], timeoutMs: number): Promise<ApplyOutcome[]> {
    return this.#enqueue(this.#replicates, peer, keyspace, entries, timeoutMs, (items, t) => this.#inner.replicate(peer, keyspace, items, t));
  }

  read(peer: string, keyspace: string, keys: readonly Uint8Array[], timeoutMs: number): Promise<(Entry | undefined)[]> {
    return this.#enqueue(this.#reads, peer, keyspace, keys, timeoutMs, (items, t) => this.#inner.read(peer, keyspace, items, t));
  }

  syncDigests(peer: string, keyspace: string, bucketHashes: readonly bigint[], timeoutMs: number): Promise<DigestAnswer> {
    return this.#inner.syncDigests(peer, keyspace, bucketHashes, timeoutMs);
  }

  probe(peer: string, timeoutMs: number): Promise<ProbeAnswer> {
    return this.#inner.probe(peer, timeoutMs);
  }

  snapshot(peer: string, keyspace: string, afterKey: Uint8Array | undefined, maxEntries: number, timeoutMs: number): Promise<SnapshotPage> {
    return this.#inner.snapshot(peer, keyspace, afterKey, maxEntries, timeoutMs);
  }

  #enqueue<I, O>(
    queues: Map<string, Queue<I, O>>,
    peer: string,
    keyspace: string,
    items: readonly I[],
    timeoutMs: number,
    send: (items: I[], timeoutMs: number) => Promise<O[]>,
  ): Promise<O[]> {
    // A call that fills a batch by itself gains nothing from waiting.
    if (items.length >= this.#maxBatchEntries) {
      this.stats.calls++;
      this.stats.items += items.length;
      return send([...items], timeoutMs);
    }
    const id = `${peer}\u0000${keyspace}`;
    let queue = queues.get(id);
    if (queue === undefined) queues.set(id, (queue = { pending: [], size: 0, scheduled: false }));
    return new Promise<O[]>((resolve, reject) => {
      // Split, never merge past the limit: what is queued leaves first when this call would
      // take the batch over it.
      if (queue.size + items.length > this.#maxBatchEntries) this.#flush(queue, send);
      queue.pending.push({ items, timeoutMs, resolve, reject });
      queue.size += items.length;
      if (queue.size >= this.#maxBatchEntries) {
        this.#flush(queue, send);
      } else if (!queue.scheduled) {
        queue.scheduled = true;
        // Everything the policies issue in this turn joins the batch; it leaves on the next.
        this.#scheduler.runSoon(() => this.#flush(queue, send));
      }
    });
  }

  #flush<I, O>(queue: Queue<I, O>, send: (items: I[], timeoutMs: number) => Promise<O[]>): void {
    const batch = queue.pending;
    queue.pending = [];
    queue.size = 0;
    queue.scheduled = false;
    if (batch.length === 0) return;
    const items: I[] = [];
    let timeoutMs = 0;
    for (const p of batch) {
      items.push(...p.items);
      timeoutMs = Math.max(timeoutMs, p.timeoutMs);
    }
    this.stats.calls++;
    this.stats.items += items.length;
    send(items, timeoutMs).then(
      (results) => {
        let at = 0;
        for (const p of batch) {
          p.resolve(results.slice(at, at + p.items.length));
          at += p.items.length;
        }
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
  }
}
