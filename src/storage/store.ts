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

  /**
   * A point-in-time view of what is durable: the entries of `keyspace` and the metadata value
   * `metaName`, both as one commit left them (writes in flight are not in it, and writes after it
   * do not change it). For reading a whole keyspace page by page without holding it in memory, as
   * a Raft snapshot sent to a follower does. The view holds resources until closed (on LMDB a read
   * transaction, which keeps the pages it sees from being reused): close it promptly.
   */
  snapshot(keyspace: string, metaName: string): StoreSnapshot;

  /** A metadata value (small bytes, e.g. the incarnation counter), or undefined. */
  getMeta(name: string): Uint8Array | undefined;

  /** Durably sets a metadata value; resolves once it is committed. */
  putMeta(name: string, value: Uint8Array): Promise<void>;

  /** Waits for writes in flight, then releases the medium. Idempotent. */
  close(): Promise<void>;
}

/** A point-in-time view of one keyspace and one metadata value (see {@link Store.snapshot}). */
export interface StoreSnapshot {
  /** The metadata value as the view's commit left it. */
  readonly meta: Uint8Array | undefined;
  /**
   * The entries after `afterKey` (from `afterKey` itself when `inclusive`; from the first when
   * undefined) in byte-wise key order, up to about `maxBytes` of keys and values — at least one
   * entry while any is left, however large — and none once the keyspace is exhausted.
   */
  page(afterKey: Uint8Array | undefined, maxBytes: number, inclusive?: boolean): Entry[];
  /** Releases the view. Idempotent; `page` throws afterwards. */
  close(): void;
}

/** What an entry counts for against a page's byte budget: its bytes plus a fixed allowance for its version and framing. */
export function entryPageBytes(entry: Entry): number {
  return entry.key.byteLength + entry.value.byteLength + 64;
}

/**
 * The page of `sorted` (entries in byte-wise key order) after `afterKey`, within `maxBytes` (see
 * {@link StoreSnapshot.page}): for the stores that hold a keyspace as a sorted copy.
 */
export function pageOfSorted(sorted: readonly Entry[], afterKey: Uint8Array | undefined, maxBytes: number, inclusive = false): Entry[] {
  let start = 0;
  if (afterKey !== undefined) {
    const after = Buffer.from(afterKey.buffer, afterKey.byteOffset, afterKey.byteLength);
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const k = sorted[mid]!.key;
      const order = Buffer.compare(Buffer.from(k.buffer, k.byteOffset, k.byteLength), after);
      if (order < 0 || (order === 0 && !inclusive)) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  const page: Entry[] = [];
  let bytes = 0;
  for (let i = start; i < sorted.length; i++) {
    const entry = sorted[i]!;
    const cost = entryPageBytes(entry);
    if (page.length > 0 && bytes + cost > maxBytes) break;
    page.push(entry);
    bytes += cost;
  }
  return page;
}

/** A {@link StoreSnapshot} over copies taken when it was made (the in-memory stores). */
export function copiedSnapshot(sorted: readonly Entry[], meta: Uint8Array | undefined): StoreSnapshot {
  let closed = false;
  return {
    meta: meta === undefined ? undefined : new Uint8Array(meta),
    page: (afterKey, maxBytes, inclusive) => {
      if (closed) throw new StoreClosedError();
      return pageOfSorted(sorted, afterKey, maxBytes, inclusive);
    },
    close: () => {
      closed = true;
    },
  };
}

/** Thrown by every call on a store after `close()`. */
export class StoreClosedError extends Error {
  override readonly name = 'StoreClosedError';
  constructor() {
    super('the store is closed');
  }
}
