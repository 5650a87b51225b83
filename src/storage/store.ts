import { compareVersion, type ApplyOutcome, type Entry, type Version } from './entry.js';

/**
 * Decides what a store keeps when `offered` arrives for a key that holds `held` (undefined when
 * nothing): the entry to store (`offered` itself, or a merge of both), or undefined to keep
 * `held`. Runs synchronously inside `apply`'s atomic step: it must be quick, deterministic and
 * must not call the store. The default keeps the larger version (last writer wins).
 */
export type ConflictResolver = (held: Entry | undefined, offered: Entry) => Entry | undefined;

/** The default resolver: the larger version wins, an equal one changes nothing. */
export const keepNewer: ConflictResolver = (held, offered) =>
  held === undefined || compareVersion(offered.version, held.version) > 0 ? offered : undefined;

/**
 * The durable state of one replica: versioned entries per keyspace, plus a little metadata (the
 * node's incarnation, hints). Modelled on etcd raft's storage.go: every method states what it
 * guarantees.
 *
 * Concurrency: a store is used from one Node.js process; calls may overlap (several `apply` calls
 * in flight at once) and the store must behave as if they ran one after another in call order.
 *
 * Errors: methods reject (or throw, for the synchronous ones) only for operating failures of the
 * medium (disk full, store closed); such an error means the write may not be durable. Calls after
 * `close()` throw {@link StoreClosedError} (the asynchronous ones reject with it). Arguments out of
 * range — a keyspace name outside `[A-Za-z0-9._-]{1,128}`, a key over `MAX_KEY_BYTES` (limits.ts) —
 * are programmer errors and throw (or reject with) `RangeError`; the API layer validates first.
 *
 * Ownership: a store copies the bytes it is given, so callers may reuse their buffers once a call
 * returns. Entries it returns are frozen and must not be modified, bytes included.
 */
export interface Store {
  /**
   * The entry held for `key` in `keyspace`, tombstones included, or undefined when none is.
   * Reflects every `apply` that has resolved, and may reflect ones still in flight (read your own
   * pending writes); it never goes back to an older version.
   */
  get(keyspace: string, key: Uint8Array): Entry | undefined;

  /**
   * The entry for `key` as durable state holds it: when a write of the key is still in flight,
   * waits for its commit and resolves with what that commit made durable; otherwise resolves at
   * once with what `get` shows. What it resolves with survives a crash, so a replica answering a
   * peer's read from it never vouches for a value a crash could take away. Rejects like `apply`
   * when the commit it waited for failed.
   */
  readDurable(keyspace: string, key: Uint8Array): Promise<Entry | undefined>;

  /**
   * Offers entries to the store. For each entry, in order, `resolve` (by default {@link keepNewer}:
   * the entry replaces what is held when nothing is held or the held version is smaller) chooses
   * what to keep: its choice is stored (`applied`), or nothing changes (`superseded`). The
   * resolution and the write are atomic with respect to every other `apply`, so with the default
   * the outcome does not depend on the order in which replicas receive writes.
   *
   * Resolves, with one outcome per entry in the same order, only once every applied entry is
   * durable: a crash after the promise resolves loses none of them. A `superseded` outcome, too,
   * waits until the entry that beat it is durable, so a replica never answers "I hold something
   * newer" about a write a crash could still take away. Calls that arrive together share one
   * commit (group commit), so many writers pay for one fsync. Never answers `buffered`: buffering
   * is the causal policy's business, above the store.
   */
  apply(keyspace: string, entries: readonly Entry[], resolve?: ConflictResolver): Promise<ApplyOutcome[]>;

  /**
   * Removes the entries of `keyspace` that still hold exactly the given versions (a newer entry
   * for the key stays): for purging tombstones and delivered hints. Resolves with how many were
   * removed, once the removals are durable. Atomic with respect to `apply`, like `apply` itself.
   */
  remove(keyspace: string, items: readonly { readonly key: Uint8Array; readonly version: Version }[]): Promise<number>;

  /**
   * Every entry of `keyspace` in byte-wise key order, tombstones included: a snapshot of the state
   * when called (for anti-entropy and tests), showing the same writes `get` would. Do not call it
   * on a hot path.
   */
  entries(keyspace: string): Entry[];

  /** A metadata value (small bytes, e.g. the incarnation counter), or undefined. */
  getMeta(name: string): Uint8Array | undefined;

  /** Durably sets a metadata value; resolves once it is committed. */
  putMeta(name: string, value: Uint8Array): Promise<void>;

  /** Waits for writes in flight, then releases the medium. Idempotent. */
  close(): Promise<void>;
}

/** Thrown by every call on a store after `close()`. */
export class StoreClosedError extends Error {
  override readonly name = 'StoreClosedError';
  constructor() {
    super('the store is closed');
  }
}
