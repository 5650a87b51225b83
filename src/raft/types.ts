/**
 * The Raft contract shared by the consensus core (`raft-core.ts`), the log storage
 * (`storage/raft-log-store.ts`) and the node layer that drives them (`policy/cp/`).
 *
 * The core is a step function in the manner of etcd-io/raft: messages, ticks and proposals go in;
 * a {@link Ready} comes out saying what to persist, what to send and what is committed. The node
 * layer does the I/O in that order — persist the Ready's hard state, entries and snapshot; then
 * send its messages; then apply its committed entries — and calls `advance(ready)`. Nothing in the
 * core reads a clock, does I/O or awaits: a simulation drives it step by step and a seed replays
 * exactly.
 *
 * Terms and indexes are JavaScript numbers: safe integers up to 2^53, far past any log's life.
 */

export type RaftNodeId = string;

export type EntryKind =
  /** An application command: `data` is opaque to Raft. */
  | 'command'
  /** The empty entry a new leader appends to commit its predecessors' entries (§5.4.2, §8). */
  | 'noop'
  /** A new membership (see membership.ts): `data` is its encoding, which the core reads. */
  | 'config';

export interface LogEntry {
  readonly term: number;
  readonly index: number;
  readonly kind: EntryKind;
  readonly data: Uint8Array;
}

/** What must be durable before any message that depends on it is sent (Figure 2, "persistent state"). */
export interface HardState {
  readonly term: number;
  /** The candidate voted for in `term`, or undefined. */
  readonly vote: RaftNodeId | undefined;
  /** The highest index known committed (persisted so a restart re-applies no less than before). */
  readonly commit: number;
}

export interface SnapshotMeta {
  /** The last index the snapshot covers, and that entry's term. */
  readonly index: number;
  readonly term: number;
  /** The voters as of `index`. */
  readonly voters: readonly RaftNodeId[];
  /** The learners as of `index` (absent in snapshots of builds before membership changes: none). */
  readonly learners?: readonly RaftNodeId[];
  /** The membership's node-layer data as of `index` (see Membership.context). */
  readonly context?: string;
}

export interface RaftSnapshot {
  readonly meta: SnapshotMeta;
  /** The application's state machine as of `meta.index`, in its own encoding. */
  readonly data: Uint8Array;
}

interface Addressed {
  readonly from: RaftNodeId;
  readonly to: RaftNodeId;
  /** The sender's term (a pre-vote request carries the term it would campaign in). */
  readonly term: number;
}

export type RaftMessage =
  /** A (pre-)candidate asks for a vote. `transfer`: leadership is being handed over (ignore leases / check-quorum). */
  | (Addressed & { readonly type: 'preVote' | 'vote'; readonly lastLogIndex: number; readonly lastLogTerm: number; readonly transfer: boolean })
  | (Addressed & { readonly type: 'preVoteResponse' | 'voteResponse'; readonly reject: boolean })
  /** AppendEntries. An empty `entries` still carries `commit`. */
  | (Addressed & {
      readonly type: 'append';
      readonly prevIndex: number;
      readonly prevTerm: number;
      readonly entries: readonly LogEntry[];
      readonly commit: number;
    })
  /**
   * Accepted: `index` is the follower's last index matching the leader's log. Rejected: `index` is
   * the `prevIndex` that did not match and `hint` the highest index where the follower's log could
   * still match, to skip back faster: its last index, or lower while its entries there are of
   * terms newer than `prevTerm` (which cannot match the leader's). `hint === index` says it holds
   * an entry at `index` of a term older than `prevTerm`.
   */
  | (Addressed & { readonly type: 'appendResponse'; readonly reject: boolean; readonly index: number; readonly hint: number })
  /** Leader → follower liveness and commit; `context` echoes a ReadIndex round (0 when none). */
  | (Addressed & { readonly type: 'heartbeat'; readonly commit: number; readonly context: number })
  | (Addressed & { readonly type: 'heartbeatResponse'; readonly context: number })
  /** The leader sends its snapshot to a follower whose next entry it has compacted away. */
  | (Addressed & { readonly type: 'snapshot'; readonly snapshot: RaftSnapshot })
  /** Leadership transfer: the target campaigns at once, past pre-vote and leases. */
  | (Addressed & { readonly type: 'timeoutNow' })
  /**
   * A piece of a snapshot on its way to a follower. The core never makes or takes these: the node
   * layer streams an application's snapshot in pieces (policy/cp/snapshot-transfer.ts) and steps
   * the whole `snapshot` message into the follower's core once every piece is stored. `snapshot`
   * carries the meta and this piece's bytes.
   */
  | (Addressed & { readonly type: 'snapshotChunk'; readonly transfer: number; readonly chunk: number; readonly last: boolean; readonly snapshot: RaftSnapshot })
  /** The follower stored piece `chunk` of `transfer` (or, `reject`, dropped the transfer). */
  | (Addressed & { readonly type: 'snapshotChunkAck'; readonly transfer: number; readonly chunk: number; readonly reject: boolean });

export type RaftMessageType = RaftMessage['type'];

export type RaftRole = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** A ReadIndex round that completed: reads may be answered once `index` is applied. */
export interface ReadState {
  readonly requestId: number;
  readonly index: number;
}

/** What the node layer must do next, in this order: persist, send, apply; then `advance`. */
export interface Ready {
  /** Set when term, vote or commit changed since the last Ready; persist before sending. */
  readonly hardState: HardState | undefined;
  /**
   * Entries to append durably. They may overwrite a suffix: everything at or after
   * `entries[0].index` that is stored must be replaced (truncated) by these.
   */
  readonly entries: readonly LogEntry[];
  /** A snapshot received from the leader: persist it (replacing the log up to its index), then restore the state machine from it. */
  readonly snapshot: RaftSnapshot | undefined;
  /** To send once the above is durable. */
  readonly messages: readonly RaftMessage[];
  /** Newly committed entries, in order, to apply to the state machine once the above is durable. */
  readonly committed: readonly LogEntry[];
  readonly readStates: readonly ReadState[];
  /** Set when role or leader changed. */
  readonly softState: { readonly role: RaftRole; readonly leader: RaftNodeId | undefined; readonly term: number } | undefined;
}

/** The durable state a core starts from (what the log store recovered). */
export interface RaftRestoredState {
  readonly hardState: HardState;
  /** The latest snapshot, or undefined when the log was never compacted. */
  readonly snapshot: SnapshotMeta | undefined;
  /** Every entry after the snapshot (or from index 1), contiguous, in order. */
  readonly entries: readonly LogEntry[];
  /**
   * The application state `snapshot` describes, so that a restarted leader can send it to a
   * follower that needs compacted entries. Without it, the core sends no snapshot until the
   * application calls `compact` again.
   */
  readonly snapshotData?: Uint8Array;
}
