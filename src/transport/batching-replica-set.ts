import type { CompactResult } from '../policy/policy.js';
import type { RaftMessage } from '../raft/types.js';
import type { LeaseAnswer, LeaseCall } from '../gen/replikit/v1/replica_service.js';
import type { TxnRequest, TxnResponse } from '../gen/replikit/v1/kv_service.js';
import { raftMessageBytes } from './raft-wire.js';
import type { Scheduler } from '../clock/index.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import { entryBytes } from '../storage/entry-size.js';
import type { BatchLimits } from '../policy/policy.js';
import { PeerCallError, type DigestAnswer, type MemberProgress, type ProbeAnswer, type ReplicaSet, type SnapshotPage } from './replica-set.js';

interface Pending<I, O> {
  readonly items: readonly I[];
  readonly timeoutMs: number;
  readonly resolve: (out: O[]) => void;
  readonly reject: (err: unknown) => void;
}

interface Queue<I, O> {
  pending: Pending<I, O>[];
  size: number;
  bytes: number;
  scheduled: boolean;
}

/** A key's bytes as a Map key. */
function keyId(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

/**
 * Coalesces the calls that policies make to one peer in the same turn into one Replicate or one
 * Read per (peer, keyspace): under load, 64 concurrent quorum operations cost a few calls per
 * peer instead of 128. Each caller still gets exactly its own results, and a failure of the
 * shared call fails each of them (the semantics of a call to a peer are unchanged: order-free and
 * idempotent).
 *
 * Limits: a batch holds at most `maxBatchEntries` items and `maxBatchBytes` bytes of entries (a
 * Replicate's entries; a Read's keys), and is split, never merged past them: one call larger than
 * the byte budget travels alone. A Read asks for each key once, however many callers want it, and
 * when the replica answers only a prefix (its answer would exceed its own byte budget, see
 * NodeCore.read) the rest is asked for again, so callers always get every key.
 *
 * The shared call gets the longest timeout among its callers, so none is cut short; callers with
 * shorter deadlines give up on their own.
 */
export class BatchingReplicaSet implements ReplicaSet {
  readonly selfId: string;

  readonly #inner: ReplicaSet;
  readonly #scheduler: Scheduler;
  readonly #limits: BatchLimits;
  readonly #replicates = new Map<string, Queue<Entry, ApplyOutcome>>();
  readonly #reads = new Map<string, Queue<Uint8Array, Entry | undefined>>();
  /** Calls made to peers, and items carried, for tests and benchmarks. */
  readonly stats = { calls: 0, items: 0 };

  constructor(inner: ReplicaSet, scheduler: Scheduler, limits: BatchLimits) {
    this.selfId = inner.selfId;
    this.#inner = inner;
    this.#scheduler = scheduler;
    this.#limits = limits;
  }

  get peerIds(): readonly string[] {
    return this.#inner.peerIds;
  }

  setPeers(peers: readonly { readonly id: string; readonly address: string }[]): void {
    this.#inner.setPeers?.(peers);
  }

  replicate(peer: string, keyspace: string, entries: readonly Entry[], timeoutMs: number): Promise<ApplyOutcome[]> {
    return this.#enqueue(this.#replicates, peer, keyspace, entries, entryBytes, timeoutMs, (items, t) => this.#inner.replicate(peer, keyspace, items, t));
  }

  read(peer: string, keyspace: string, keys: readonly Uint8Array[], timeoutMs: number): Promise<(Entry | undefined)[]> {
    return this.#enqueue(this.#reads, peer, keyspace, keys, (key) => key.byteLength, timeoutMs, (items, t) => this.#readEach(peer, keyspace, items, t));
  }

  syncDigests(peer: string, keyspace: string, bucketHashes: readonly bigint[], timeoutMs: number): Promise<DigestAnswer> {
    return this.#inner.syncDigests(peer, keyspace, bucketHashes, timeoutMs);
  }

  progress(peer: string, timeoutMs: number): Promise<MemberProgress> {
    if (this.#inner.progress === undefined) return Promise.reject(new PeerCallError(peer, 'rejected', 'this transport cannot ask a member how far it caught up'));
    return this.#inner.progress(peer, timeoutMs);
  }

  probe(peer: string, timeoutMs: number): Promise<ProbeAnswer> {
    return this.#inner.probe(peer, timeoutMs);
  }

  snapshot(peer: string, keyspace: string, afterKey: Uint8Array | undefined, maxEntries: number, timeoutMs: number): Promise<SnapshotPage> {
    return this.#inner.snapshot(peer, keyspace, afterKey, maxEntries, timeoutMs);
  }

  /**
   * Raft messages travel in calls of at most `maxBatchBytes` (one larger message, a snapshot or a
   * large entry, alone), so that no call nears the message limit and fails the stream it shares.
   */
  async raft(peer: string, keyspace: string, messages: readonly RaftMessage[], timeoutMs: number): Promise<void> {
    const send = this.#inner.raft;
    if (send === undefined) throw new PeerCallError(peer, 'rejected', 'this transport carries no Raft messages');
    let chunk: RaftMessage[] = [];
    let bytes = 0;
    const calls: Promise<void>[] = [];
    for (const m of messages) {
      const size = raftMessageBytes(m);
      if (chunk.length > 0 && bytes + size > this.#limits.maxBatchBytes) {
        calls.push(send.call(this.#inner, peer, keyspace, chunk, timeoutMs));
        chunk = [];
        bytes = 0;
      }
      chunk.push(m);
      bytes += size;
    }
    if (chunk.length > 0) calls.push(send.call(this.#inner, peer, keyspace, chunk, timeoutMs));
    this.stats.calls += calls.length;
    await Promise.all(calls);
  }

  isConnected(peer: string): boolean | undefined {
    return this.#inner.isConnected?.(peer);
  }

  forwardCompact(peer: string, keyspace: string, revision: number, timeoutMs: number): Promise<CompactResult> {
    const forward = this.#inner.forwardCompact;
    if (forward === undefined) return Promise.reject(new PeerCallError(peer, 'rejected', 'this transport cannot forward calls'));
    return forward.call(this.#inner, peer, keyspace, revision, timeoutMs);
  }

  forwardLease(peer: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer> {
    const forward = this.#inner.forwardLease;
    if (forward === undefined) return Promise.reject(new PeerCallError(peer, 'rejected', 'this transport cannot forward calls'));
    return forward.call(this.#inner, peer, call, timeoutMs);
  }

  forward(peer: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse> {
    const forward = this.#inner.forward;
    if (forward === undefined) return Promise.reject(new PeerCallError(peer, 'rejected', 'this transport cannot forward calls'));
    return forward.call(this.#inner, peer, request, timeoutMs);
  }

  /**
   * Reads `keys` from `peer`, each distinct key once, asking again for what a short answer left
   * out (a replica answers a prefix when the whole answer would exceed its byte budget).
   */
  async #readEach(peer: string, keyspace: string, keys: Uint8Array[], timeoutMs: number): Promise<(Entry | undefined)[]> {
    const distinct = new Map<string, Uint8Array>();
    for (const key of keys) distinct.set(keyId(key), key);
    const wanted = [...distinct.values()];
    const found = new Map<string, Entry | undefined>();
    const started = this.#scheduler.nowMs();
    while (found.size < wanted.length) {
      const rest = wanted.slice(found.size);
      const remainingMs = Math.max(1, timeoutMs - (this.#scheduler.nowMs() - started));
      const answer = await this.#inner.read(peer, keyspace, rest, remainingMs);
      if (answer.length === 0) throw new Error(`${peer} answered a Read of ${rest.length} keys with none`);
      answer.forEach((entry, i) => found.set(keyId(rest[i]!), entry));
    }
    return keys.map((key) => found.get(keyId(key)));
  }

  #enqueue<I, O>(
    queues: Map<string, Queue<I, O>>,
    peer: string,
    keyspace: string,
    items: readonly I[],
    sizeOf: (item: I) => number,
    timeoutMs: number,
    send: (items: I[], timeoutMs: number) => Promise<O[]>,
  ): Promise<O[]> {
    let bytes = 0;
    for (const item of items) bytes += sizeOf(item);
    // A call that fills a batch by itself gains nothing from waiting.
    if (items.length >= this.#limits.maxBatchEntries || bytes >= this.#limits.maxBatchBytes) {
      this.stats.calls++;
      this.stats.items += items.length;
      return send([...items], timeoutMs);
    }
    const id = `${peer}\u0000${keyspace}`;
    let queue = queues.get(id);
    if (queue === undefined) queues.set(id, (queue = { pending: [], size: 0, bytes: 0, scheduled: false }));
    return new Promise<O[]>((resolve, reject) => {
      // Split, never merge past the limits: what is queued leaves first when this call would
      // take the batch over either of them.
      if (queue.size + items.length > this.#limits.maxBatchEntries || queue.bytes + bytes > this.#limits.maxBatchBytes) this.#flush(queue, send);
      queue.pending.push({ items, timeoutMs, resolve, reject });
      queue.size += items.length;
      queue.bytes += bytes;
      if (queue.size >= this.#limits.maxBatchEntries || queue.bytes >= this.#limits.maxBatchBytes) {
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
    queue.bytes = 0;
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
