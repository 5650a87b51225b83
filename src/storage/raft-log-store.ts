import type { HardState, LogEntry, RaftRestoredState, RaftSnapshot } from '../raft/types.js';

/** One atomic write: any of the three parts, applied together or not at all. */
export interface RaftLogWrite {
  /** Replaces the stored hard state. */
  readonly hardState?: HardState;
  /**
   * Appended after deleting every stored entry with index ≥ `entries[0].index` (a suffix
   * overwritten by a new leader's entries). Contiguous, indexes rising by one.
   */
  readonly entries?: readonly LogEntry[];
  /** A snapshot received from the leader: installed before `entries` (see {@link RaftLogStore.save}). */
  readonly snapshot?: RaftSnapshot;
}

/**
 * The durable state of one Raft group on one node: hard state, latest snapshot and the log
 * after it. One per (node, keyspace), created from the node's storage
 * ({@link MemoryRaftLogStore}, `LmdbRaftLogStore.open(lmdbStore, keyspace)`,
 * `SimulatedDisk.openRaftLog(keyspace)`). Modelled on etcd raft's storage.go, like store.ts:
 * every method states what it guarantees.
 *
 * Concurrency: one process, one instance per group; calls may overlap (a `save` issued while
 * another is in flight) and take effect as if they ran one after another in call order.
 *
 * Errors and fail-stop: `save` and `compact` reject for operating failures of the medium (a
 * failed fsync, a full disk); such an error means the write may or may not be durable. From the
 * first one on, every call fails with that same error: the saves already issued and not yet
 * resolved (even if their own commit went through) and every later call, reads included. After a
 * failed fsync the kernel may have dropped dirty pages and cleared the error, so a later
 * "successful" sync would prove nothing (PostgreSQL's fsyncgate, as FailStopStore explains): the
 * node must stop and restart from what the disk really holds. Arguments that break the rules
 * below are programmer errors: they reject with `RangeError`, write nothing and do not stop the
 * store. Calls after `close()` throw (or reject with) `StoreClosedError` (store.ts). A record
 * found corrupt where nothing can be cut off (the hard state, the snapshot) throws
 * {@link RaftLogCorruptionError}.
 *
 * Ownership: the store copies the bytes it is given, so callers may reuse their buffers once a
 * call returns. What it returns shares no memory with the store and is frozen (a Uint8Array's
 * bytes cannot be, but must not be modified either).
 *
 * Validation, each a Raft invariant whose breach would lose or invent committed state (etcd's
 * raft panics on the same ones):
 * - a hard state's term never goes down, and within one term the vote, once cast, never changes;
 * - entries are contiguous and start above the snapshot's index and at most one past the last
 *   entry (no gap); at or below the stored commit index they may only rewrite the entries held,
 *   with the same terms (a committed entry is never replaced);
 * - an entry's term is at least the term of the entry before it;
 * - a snapshot is never older than the one stored; `compact` covers entries the log holds, with
 *   the term the log holds at its index.
 */
export interface RaftLogStore {
  /**
   * What survived: the hard state (term 0, no vote, commit 0 when none was ever saved), the
   * latest snapshot's meta, and the entries after it (or from index 1), contiguous and in order.
   * A record found corrupt or missing cuts the log there: it and everything after it are left
   * out, never returned, and deleted by the next write; they were never acknowledged, or the
   * medium lost them. Reflects every save and compact that has resolved; throws `Error` while one
   * is in flight (a recovery reads a log nobody is writing). Synchronous: it runs at start-up.
   */
  load(): RaftRestoredState;

  /**
   * The latest snapshot with its data, or undefined when none was stored. Reflects every save
   * and compact that has resolved, and may reflect one still in flight (for sending to a
   * follower while appends go on).
   */
  loadSnapshot(): RaftSnapshot | undefined;

  /**
   * Makes `write` durable, atomically: after a crash either all of it is there or none of it.
   * Applied in this order:
   * 1. `snapshot` replaces the stored snapshot and deletes every entry up to its index. Entries
   *    after it are kept when the log holds the snapshot's last entry (same index and term), and
   *    deleted otherwise: they belong to another history (Raft §7, "discard the entire log").
   * 2. `entries` delete every stored entry with index ≥ `entries[0].index`, then are appended.
   * 3. `hardState` replaces the stored one.
   *
   * Resolves only once the write is durable (fsynced): a crash after that loses none of it.
   * Calls issued in the same event-loop turn share one commit and one fsync (group commit), and
   * the promises of all calls, `compact` included, resolve in call order: one never resolves
   * before an earlier one, and when one fails every later one fails. An empty write changes
   * nothing and resolves once every earlier call has.
   */
  save(write: RaftLogWrite): Promise<void>;

  /**
   * Stores the application's own checkpoint: `snapshot` replaces the stored snapshot and every
   * entry up to its index is deleted; later entries stay. Durable, atomic and ordered like
   * `save`, with which it shares commits. `snapshot.meta.index` must be an index the log holds
   * (above the stored snapshot's, at most the last entry's) and `meta.term` that entry's term.
   */
  compact(snapshot: RaftSnapshot): Promise<void>;

  /** Waits for calls in flight (settled, succeeded or not), then refuses new ones. Idempotent. */
  close(): Promise<void>;
}

/** Opens the Raft log store of one group (keyspace) on a node's storage. */
export type RaftLogStoreFactory = (keyspace: string) => RaftLogStore;

/** The hard state of a group that never saved one. */
export const INITIAL_HARD_STATE: HardState = Object.freeze({ term: 0, vote: undefined, commit: 0 });

/** A record that cannot be cut off (hard state, snapshot) failed its checksum or could not be decoded. */
export class RaftLogCorruptionError extends Error {
  override readonly name = 'RaftLogCorruptionError';
}
