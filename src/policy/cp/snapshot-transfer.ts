/**
 * A CP keyspace's snapshot on its way to a follower that fell behind the leader's compacted log,
 * in pieces: the state is on disk and may be far larger than a message (or than memory), so the
 * leader reads it from a point-in-time view of its store a chunk at a time, and sends the next
 * chunk only once the follower has stored the last (stop-and-wait: one chunk in flight per
 * follower bounds the memory both sides spend on it, as hashicorp/raft's InstallSnapshot stream
 * and etcd's snapshot sender bound theirs). The follower stages the chunks in its state's spare
 * generation (kv-state-store.ts) and, after the last, steps the snapshot into its Raft core, whose
 * Ready then installs it: the switch of generations commits with the log's snapshot record.
 *
 * A lost chunk or acknowledgement ends the transfer (the leader's core asks again after its
 * snapshot retry interval, and a new transfer starts from the first chunk); so does a change of
 * term. Nothing here decides anything Raft relies on: the core accepts or refuses the snapshot.
 */
import { snapshotMeta, type Membership } from '../../raft/membership.js';
import type { Scheduler, TimerHandle } from '../../clock/index.js';
import type { RaftMessage, RaftNodeId, RaftSnapshot } from '../../raft/types.js';
import { decodeChunk, type KvSnapshotReader, type KvStateMeta, type KvStateStore } from './kv-state-store.js';

/**
 * Bytes of keys and values per chunk: 512 KiB, the Raft appends' byte budget, well under the
 * peer message limit; a single larger key travels alone.
 */
export const SNAPSHOT_CHUNK_BYTES = 512 * 1024;

const EMPTY = new Uint8Array(0);

type Chunk = Extract<RaftMessage, { type: 'snapshotChunk' }>;
type ChunkAck = Extract<RaftMessage, { type: 'snapshotChunkAck' }>;

interface Outgoing {
  readonly id: number;
  readonly term: number;
  readonly reader: KvSnapshotReader;
  readonly meta: RaftSnapshot['meta'];
  chunk: number;
  last: boolean;
  timer: TimerHandle | undefined;
}

interface Incoming {
  readonly from: RaftNodeId;
  readonly transfer: number;
  readonly term: number;
  readonly meta: RaftSnapshot['meta'];
  stateMeta: KvStateMeta | undefined;
  nextChunk: number;
  complete: boolean;
}

export interface SnapshotTransferOptions {
  readonly selfId: RaftNodeId;
  /** The group's membership as of a log index (a snapshot carries the one of its index). */
  readonly membershipAt: (index: number) => Membership;
  readonly state: KvStateStore;
  readonly scheduler: Scheduler;
  /** Bytes of keys and values per chunk ({@link SNAPSHOT_CHUNK_BYTES}; the simulation uses tiny ones). */
  readonly chunkBytes: number;
  /** How long the leader waits for a chunk's acknowledgement before giving the transfer up. */
  readonly ackTimeoutMs: number;
  readonly send: (peer: RaftNodeId, messages: readonly RaftMessage[]) => void;
  /** The group's current term (a transfer of an older term is dropped). */
  readonly term: () => number;
  /**
   * A complete snapshot for the core: the group steps it, kicks its Ready loop, and answers
   * whether the core took it (it refuses one it does not need, or of an older term).
   */
  readonly deliver: (message: Extract<RaftMessage, { type: 'snapshot' }>) => boolean;
  readonly onError: (error: unknown) => void;
}

/** What transfers have done since the group opened, for metrics and tests. */
export interface SnapshotTransferStats {
  transfersStarted: number;
  transfersCompleted: number;
  transfersAbandoned: number;
  chunksSent: number;
  chunksReceived: number;
}

export class SnapshotTransfers {
  readonly #o: SnapshotTransferOptions;
  readonly #outgoing = new Map<RaftNodeId, Outgoing>();
  #incoming: Incoming | undefined;
  /** Incoming chunks are stored one after another. */
  #incomingTail: Promise<void> = Promise.resolve();
  #nextId = 1;
  #closed = false;
  readonly stats: SnapshotTransferStats = { transfersStarted: 0, transfersCompleted: 0, transfersAbandoned: 0, chunksSent: 0, chunksReceived: 0 };

  constructor(options: SnapshotTransferOptions) {
    this.#o = options;
  }

  /** The core wants `to` to have its snapshot: starts a transfer unless one of this term is under way. */
  send(to: RaftNodeId, term: number): void {
    if (this.#closed) return;
    const current = this.#outgoing.get(to);
    if (current !== undefined && current.term === term) return;
    if (current !== undefined) this.#abandon(to, current);
    let reader: KvSnapshotReader;
    try {
      reader = this.#o.state.openSnapshot();
    } catch (error) {
      this.#o.onError(error);
      return;
    }
    const meta = snapshotMeta(reader.meta.appliedIndex, reader.meta.appliedTerm, this.#o.membershipAt(reader.meta.appliedIndex));
    const transfer: Outgoing = { id: this.#nextId++, term, reader, meta, chunk: -1, last: false, timer: undefined };
    this.#outgoing.set(to, transfer);
    this.stats.transfersStarted++;
    this.#sendNext(to, transfer);
  }

  /** Handles a chunk or an acknowledgement from a peer. */
  step(m: Chunk | ChunkAck): void {
    if (this.#closed) return;
    if (m.type === 'snapshotChunkAck') this.#acknowledged(m);
    else this.#incomingTail = this.#incomingTail.then(() => this.#receive(m)).catch((error: unknown) => this.#o.onError(error));
  }

  /**
   * The staged snapshot the core handed out in a Ready, when it is the one staged here: its state
   * metadata, to install. Undefined otherwise (a bug: the core only takes snapshots stepped from here).
   */
  staged(meta: RaftSnapshot['meta']): KvStateMeta | undefined {
    const incoming = this.#incoming;
    if (incoming === undefined || !incoming.complete || incoming.meta.index !== meta.index || incoming.meta.term !== meta.term) return undefined;
    return incoming.stateMeta;
  }

  /** The staged snapshot was installed (or refused): forget it. */
  finished(): void {
    this.#incoming = undefined;
  }

  /** Leadership lost or the group closing: outgoing transfers stop. */
  stopSending(): void {
    for (const [to, transfer] of this.#outgoing) this.#abandon(to, transfer);
  }

  close(): void {
    this.#closed = true;
    this.stopSending();
  }

  #sendNext(to: RaftNodeId, transfer: Outgoing): void {
    let piece: { readonly data: Uint8Array; readonly last: boolean } | undefined;
    try {
      piece = transfer.reader.next(this.#o.chunkBytes);
    } catch (error) {
      this.#abandon(to, transfer);
      this.#o.onError(error);
      return;
    }
    if (piece === undefined) return;
    transfer.chunk++;
    transfer.last = piece.last;
    this.stats.chunksSent++;
    this.#o.send(to, [{ type: 'snapshotChunk', from: this.#o.selfId, to, term: transfer.term, transfer: transfer.id, chunk: transfer.chunk, last: piece.last, snapshot: { meta: transfer.meta, data: piece.data } }]);
    transfer.timer?.cancel();
    transfer.timer = this.#o.scheduler.setTimer(this.#o.ackTimeoutMs, () => this.#abandon(to, transfer));
  }

  #acknowledged(m: ChunkAck): void {
    const transfer = this.#outgoing.get(m.from);
    if (transfer === undefined || transfer.id !== m.transfer || transfer.chunk !== m.chunk) return;
    if (m.reject || this.#o.term() !== transfer.term) {
      this.#abandon(m.from, transfer);
      return;
    }
    if (!transfer.last) {
      this.#sendNext(m.from, transfer);
      return;
    }
    transfer.timer?.cancel();
    transfer.reader.close();
    this.#outgoing.delete(m.from);
    this.stats.transfersCompleted++;
  }

  #abandon(to: RaftNodeId, transfer: Outgoing): void {
    transfer.timer?.cancel();
    transfer.reader.close();
    if (this.#outgoing.get(to) === transfer) this.#outgoing.delete(to);
    this.stats.transfersAbandoned++;
  }

  async #receive(m: Chunk): Promise<void> {
    const ack = (reject: boolean) => this.#o.send(m.from, [{ type: 'snapshotChunkAck', from: this.#o.selfId, to: m.from, term: this.#o.term(), transfer: m.transfer, chunk: m.chunk, reject }]);
    if (this.#closed) return;
    if (m.term < this.#o.term()) return ack(true);
    // A snapshot the core took is waiting for its Ready to install it from the staging area: no
    // other transfer may touch that area until then (the leader retries later).
    if (this.#incoming?.complete === true) return ack(true);
    let incoming = this.#incoming;
    if (m.chunk === 0) {
      // A new transfer replaces whatever was being staged (a retry, or another leader's).
      incoming = { from: m.from, transfer: m.transfer, term: m.term, meta: m.snapshot.meta, stateMeta: undefined, nextChunk: 0, complete: false };
      this.#incoming = incoming;
      await this.#o.state.beginInstall();
    }
    if (incoming === undefined || this.#incoming !== incoming || incoming.from !== m.from || incoming.transfer !== m.transfer || incoming.nextChunk !== m.chunk || incoming.complete) {
      return ack(true);
    }
    let decoded: ReturnType<typeof decodeChunk>;
    try {
      decoded = decodeChunk(m.snapshot.data);
    } catch {
      this.#incoming = undefined;
      return ack(true);
    }
    if (m.chunk === 0) {
      if (decoded.meta === undefined || decoded.meta.appliedIndex !== m.snapshot.meta.index || decoded.meta.appliedTerm !== m.snapshot.meta.term) {
        this.#incoming = undefined;
        return ack(true);
      }
      incoming.stateMeta = decoded.meta;
    }
    await this.#o.state.stage(decoded.records);
    if (this.#closed || this.#incoming !== incoming) return;
    incoming.nextChunk++;
    this.stats.chunksReceived++;
    ack(false);
    if (!m.last) return;
    incoming.complete = true;
    const taken = this.#o.deliver({ type: 'snapshot', from: m.from, to: this.#o.selfId, term: m.term, snapshot: { meta: m.snapshot.meta, data: EMPTY } });
    if (!taken) this.#incoming = undefined;
  }
}
