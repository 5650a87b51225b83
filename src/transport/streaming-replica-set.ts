import type { CompactResult } from '../policy/policy.js';
import { Metadata, status, type ClientDuplexStream } from '@grpc/grpc-js';
import type { LeaseAnswer, LeaseCall } from '../gen/replikit/v1/replica_service.js';
import type { HybridLogicalClock, Scheduler, TimerHandle } from '../clock/index.js';
import type { ExchangeRequest, ExchangeResponse } from '../gen/replikit/v1/replica_service.js';
import { observeRemoteHlc } from '../interceptors/remote-hlc.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import type { GrpcReplicaSet } from './grpc-replica-set.js';
import { PeerCallError, type DigestAnswer, type MemberProgress, type ProbeAnswer, type SnapshotPage, type ReplicaSet } from './replica-set.js';
import { raftMessageToWire } from './raft-wire.js';
import { fromExchangeError } from './status.js';
import type { RaftMessage } from '../raft/types.js';
import type { TxnRequest, TxnResponse } from '../gen/replikit/v1/kv_service.js';
import { asBuffer, entryToWire, hlcFromWire, hlcToWire, optionalEntryFromWire, outcomeFromWire } from './wire.js';

/**
 * Calls one peer stream may have waiting for answers; beyond it calls fail at once as
 * unreachable. With batching a coordinator sends one message per peer per turn, so this only
 * bounds memory when a peer stops answering under load.
 */
export const MAX_PENDING_CALLS_PER_PEER = 4096;

interface Pending {
  readonly resolve: (response: ExchangeResponse) => void;
  readonly reject: (err: PeerCallError) => void;
  readonly timer: TimerHandle;
  readonly keepErrors: boolean;
}

interface PeerStream {
  readonly stream: ClientDuplexStream<ExchangeRequest, ExchangeResponse>;
  readonly pending: Map<bigint, Pending>;
}

export interface StreamingReplicaSetOptions {
  readonly unary: GrpcReplicaSet;
  readonly clock: HybridLogicalClock;
  readonly scheduler: Scheduler;
  readonly maxClockOffsetMs: number;
  /** As GrpcReplicaSetOptions.waitForReady: wait for the channel of a peer believed alive. */
  readonly waitForReady: (peer: string) => boolean;
  /** An answer arrived from `peer`: evidence of life. */
  readonly onAnswer?: (peer: string) => void;
}

/**
 * Replicate and Read over one long-lived Exchange stream per peer: a message per batch instead of
 * a unary call (HTTP/2 stream, headers and interceptors) per batch. Answers are matched by call
 * id; each call has its own timeout; a stream that breaks fails its pending calls as unreachable
 * and the next call opens a new one. SyncDigests, heartbeats and ClockSync stay on their own RPCs.
 */
export class StreamingReplicaSet implements ReplicaSet {
  readonly selfId: string;
  readonly #o: StreamingReplicaSetOptions;
  readonly #streams = new Map<string, PeerStream>();
  #nextCallId = 1n;
  #closed = false;

  constructor(options: StreamingReplicaSetOptions) {
    this.#o = options;
    this.selfId = options.unary.selfId;
  }

  get peerIds(): readonly string[] {
    return this.#o.unary.peerIds;
  }

  setPeers(peers: readonly { readonly id: string; readonly address: string }[]): void {
    const before = new Map(this.#o.unary.peerIds.map((id) => [id, this.#o.unary.addressOf(id)]));
    this.#o.unary.setPeers(peers);
    // A stream to a peer that left or moved ends with its calls; the next call opens a new one.
    for (const [id, address] of before) if (this.#o.unary.addressOf(id) !== address) this.abandonCalls(id, `${id} left or moved`);
  }

  async replicate(peer: string, keyspace: string, entries: readonly Entry[], timeoutMs: number): Promise<ApplyOutcome[]> {
    const response = await this.#call(peer, timeoutMs, { replicate: { keyspace, entries: entries.map(entryToWire) } });
    if (response.replicate === undefined || response.replicate.outcomes.length !== entries.length) {
      throw new PeerCallError(peer, 'rejected', `answered a Replicate of ${entries.length} entries with something else`);
    }
    return response.replicate.outcomes.map(outcomeFromWire);
  }

  async read(peer: string, keyspace: string, keys: readonly Uint8Array[], timeoutMs: number): Promise<(Entry | undefined)[]> {
    const response = await this.#call(peer, timeoutMs, { read: { keyspace, keys: keys.map(asBuffer) } });
    // A replica may answer a prefix of the keys, when all of them would exceed its byte budget.
    if (response.read === undefined || response.read.entries.length > keys.length || (keys.length > 0 && response.read.entries.length === 0)) {
      throw new PeerCallError(peer, 'rejected', `answered a Read of ${keys.length} keys with something else`);
    }
    try {
      return response.read.entries.map((e, i) => optionalEntryFromWire(e, `${peer}'s entry ${i}`));
    } catch (err: unknown) {
      throw new PeerCallError(peer, 'rejected', String(err), { cause: err });
    }
  }

  /** The unary client of one peer (heartbeats, ClockSync). */
  async raft(peer: string, keyspace: string, messages: readonly RaftMessage[], timeoutMs: number): Promise<void> {
    const response = await this.#call(peer, timeoutMs, { raft: { keyspace, messages: messages.map(raftMessageToWire) } });
    if (response.raft === undefined) throw new PeerCallError(peer, 'rejected', 'answered Raft messages with something else');
  }

  /** See ReplicaSet.forward: the leader's own error comes back as the same ReplikitError. */
  async forward(peer: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse> {
    const response = await this.#call(peer, timeoutMs, { forward: { txn: request, lease: undefined, compact: undefined, timeoutMs: Math.max(1, Math.round(timeoutMs)) } }, true);
    if (response.error !== undefined) throw fromExchangeError(response.error);
    if (response.forward === undefined) throw new PeerCallError(peer, 'rejected', 'answered a forwarded transaction with something else');
    return response.forward;
  }

  async forwardCompact(peer: string, keyspace: string, revision: number, timeoutMs: number): Promise<CompactResult> {
    const response = await this.#call(peer, timeoutMs, { forward: { txn: undefined, compact: { keyspace, revision: BigInt(revision) }, lease: undefined, timeoutMs: Math.max(1, Math.round(timeoutMs)) } }, true);
    if (response.error !== undefined) throw fromExchangeError(response.error);
    if (response.compact === undefined) throw new PeerCallError(peer, 'rejected', 'answered a forwarded Compact with something else');
    return { compactRevision: Number(response.compact.compactRevision), revision: Number(response.compact.revision) };
  }

  async forwardLease(peer: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer> {
    const response = await this.#call(peer, timeoutMs, { forward: { txn: undefined, compact: undefined, lease: call, timeoutMs: Math.max(1, Math.round(timeoutMs)) } }, true);
    if (response.error !== undefined) throw fromExchangeError(response.error);
    if (response.lease === undefined) throw new PeerCallError(peer, 'rejected', 'answered a forwarded lease call with something else');
    return response.lease;
  }

  isConnected(peer: string): boolean | undefined {
    return this.#o.unary.isConnected(peer);
  }

  client(peer: string) {
    return this.#o.unary.client(peer);
  }

  syncDigests(peer: string, keyspace: string, bucketHashes: readonly bigint[], timeoutMs: number): Promise<DigestAnswer> {
    return this.#o.unary.syncDigests(peer, keyspace, bucketHashes, timeoutMs);
  }

  progress(peer: string, timeoutMs: number): Promise<MemberProgress> {
    return this.#o.unary.progress(peer, timeoutMs);
  }

  probe(peer: string, timeoutMs: number): Promise<ProbeAnswer> {
    return this.#o.unary.probe(peer, timeoutMs);
  }

  snapshot(peer: string, keyspace: string, afterKey: Uint8Array | undefined, maxEntries: number, timeoutMs: number): Promise<SnapshotPage> {
    return this.#o.unary.snapshot(peer, keyspace, afterKey, maxEntries, timeoutMs);
  }

  /** Fails every call in flight to `peer` (and those on the unary client) and drops its stream. */
  abandonCalls(peer: string, why: string): void {
    this.#o.unary.abandonCalls(peer, why);
    const s = this.#streams.get(peer);
    if (s === undefined) return;
    this.#streams.delete(peer);
    this.#failAll(peer, s, why);
    s.stream.cancel();
  }

  close(): void {
    this.#closed = true;
    for (const [peer, s] of this.#streams) {
      this.#failAll(peer, s, 'the node is closing');
      s.stream.cancel();
    }
    this.#streams.clear();
  }

  /** `keepErrors`: an ExchangeError resolves (the caller reads it) instead of rejecting. */
  #call(peer: string, timeoutMs: number, body: Pick<ExchangeRequest, 'replicate' | 'read' | 'raft' | 'forward'>, keepErrors = false): Promise<ExchangeResponse> {
    if (this.#closed) return Promise.reject(new PeerCallError(peer, 'unreachable', 'the node is closing'));
    const s = this.#streamTo(peer);
    if (s.pending.size >= MAX_PENDING_CALLS_PER_PEER) {
      return Promise.reject(new PeerCallError(peer, 'unreachable', `${s.pending.size} calls already wait for this peer`));
    }
    // A call whose message would pass the limit fails alone: sent, it would fail the stream and
    // every call it carries. (Batches are kept far below it; this is the last guard.)
    const bytes = requestBytes(body);
    if (bytes > this.#o.unary.maxMessageBytes) {
      return Promise.reject(new PeerCallError(peer, 'rejected', `a message of about ${bytes} bytes is over the peer message limit (${this.#o.unary.maxMessageBytes})`));
    }
    const callId = this.#nextCallId++;
    return new Promise<ExchangeResponse>((resolve, reject) => {
      const timer = this.#o.scheduler.setTimer(timeoutMs, () => {
        if (s.pending.delete(callId)) reject(new PeerCallError(peer, 'timeout', `no answer within ${timeoutMs} ms`));
      });
      s.pending.set(callId, { resolve, reject, timer, keepErrors });
      try {
        s.stream.write({ callId, hlc: hlcToWire(this.#o.clock.now()), ...body });
      } catch (err: unknown) {
        s.pending.delete(callId);
        timer.cancel();
        reject(new PeerCallError(peer, 'unreachable', String(err), { cause: err }));
      }
    });
  }

  #streamTo(peer: string): PeerStream {
    const existing = this.#streams.get(peer);
    if (existing !== undefined) return existing;
    const stream = this.#o.unary.client(peer).exchange(new Metadata({ waitForReady: this.#o.waitForReady(peer) }));
    const s: PeerStream = { stream, pending: new Map() };
    this.#streams.set(peer, s);
    stream.on('data', (response: ExchangeResponse) => {
      const waiting = s.pending.get(response.callId);
      this.#observe(response);
      this.#o.onAnswer?.(peer);
      if (waiting === undefined) return; // timed out meanwhile
      s.pending.delete(response.callId);
      waiting.timer.cancel();
      if (response.error !== undefined && !waiting.keepErrors) {
        waiting.reject(new PeerCallError(peer, 'rejected', `${status[response.error.code] ?? response.error.code}: ${response.error.message}`));
      } else {
        waiting.resolve(response);
      }
    });
    // Until the peer's response headers arrive, a stream that fails never reached it when the
    // connection itself was refused: its calls were not delivered.
    let reached = false;
    stream.once('metadata', () => (reached = true));
    const broken = (why: string, delivered: boolean) => {
      if (this.#streams.get(peer) === s) this.#streams.delete(peer);
      this.#failAll(peer, s, why, delivered);
    };
    stream.on('error', (err: Error & { code?: number }) => broken(err.message, reached || !(err.code === status.UNAVAILABLE && /ECONNREFUSED|No connection established/i.test(err.message))));
    stream.on('end', () => broken('the peer ended the stream', true));
    return s;
  }

  #observe(response: ExchangeResponse): void {
    if (response.hlc === undefined) return;
    try {
      observeRemoteHlc(hlcFromWire(response.hlc, 'an Exchange answer'), this.#o.clock, { maxClockOffsetMs: this.#o.maxClockOffsetMs });
    } catch {
      // A malformed HLC is ignored, as the interceptors ignore one in metadata.
    }
  }

  /** `delivered`: the calls may have reached the peer (the stream was up, or broke for another reason). */
  #failAll(peer: string, s: PeerStream, why: string, delivered = true): void {
    for (const [, waiting] of s.pending) {
      waiting.timer.cancel();
      waiting.reject(new PeerCallError(peer, delivered ? 'lost' : 'unreachable', why));
    }
    s.pending.clear();
  }
}

/** A request's size on the wire, near enough to keep it under the message limit. */
function requestBytes(body: Pick<ExchangeRequest, 'replicate' | 'read' | 'raft' | 'forward'>): number {
  let bytes = 64;
  for (const m of body.raft?.messages ?? []) {
    bytes += 64 + (m.snapshot?.data.byteLength ?? 0);
    for (const e of m.entries) bytes += e.data.byteLength + 24;
  }
  const txn = body.forward?.txn;
  for (const op of txn === undefined ? [] : [...txn.success, ...txn.failure]) bytes += (op.put?.key ?? op.get?.key ?? op.delete?.key)!.byteLength + (op.put?.value.byteLength ?? 0) + 16;
  for (const c of txn?.compares ?? []) bytes += c.key.byteLength + c.value.byteLength + 16;
  for (const e of body.replicate?.entries ?? []) bytes += e.key.byteLength + e.value.byteLength + 48 + Object.keys(e.dependencies?.counters ?? {}).length * 24;
  for (const key of body.read?.keys ?? []) bytes += key.byteLength + 4;
  return bytes;
}
