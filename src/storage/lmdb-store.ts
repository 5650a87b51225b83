import { open, type Database, type RootDatabase } from 'lmdb';
import { compareVersion, type ApplyOutcome, type Entry, type Version } from './entry.js';
import { decodeEntry, encodeEntry } from './entry-codec.js';
import { copyEntry } from './entry-copy.js';
import { assertKeySize, assertKeyspaceName } from './limits.js';
import { entryPageBytes, keepNewer, StoreClosedError, type ConflictResolver, type Store, type StoreSnapshot } from './store.js';
import { latin1 } from './key-text.js';

/** The named database holding the entries of every keyspace, keyed `<keyspace> 0x00 <key>`. */
const ENTRIES_DB = 'entries';
/** The named database holding metadata, keyed by name. */
const META_DB = 'meta';
/** The named database holding every Raft group's log (see lmdb-raft-log-store.ts). */
const RAFT_DB = 'raft';

/** Ends a keyspace's name in a database key; keyspace names never contain it (see limits.ts). */
const KEYSPACE_SEPARATOR = 0x00;
/** The byte after the separator: a keyspace's keys all sort below `<keyspace> 0x01`. */
const KEYSPACE_END = 0x01;

/** A write that is issued but not yet committed, and what waiting for it means. */
interface PendingWrite<T> {
  readonly value: T;
  /** Resolves once the write is durable; rejects when its commit failed. */
  readonly durable: Promise<void>;
}

/** One lmdb commit in flight: when it is durable, and what to take out of the overlays then. */
interface PendingCommit {
  readonly durable: Promise<void>;
  readonly cleanups: (() => void)[];
}

/**
 * The options every {@link LmdbStore} opens lmdb with (besides its path), each with its reason.
 * test/storage/lmdb-durability.test.ts pins them: loosening one must be a decision, not an accident.
 */
export const LMDB_OPEN_OPTIONS = Object.freeze({
  // The directory holds data.mdb and lock.mdb, even when the path has a dot in it.
  noSubdir: false,
  // Durable commits: see the class comment.
  overlappingSync: false,
  // The default, spelled out because group commit depends on it: every write of one event-loop
  // turn joins one transaction, started on the next turn. (lmdb's `commitDelay` only applies
  // with this off, which would let a transaction close in the middle of an apply.)
  eventTurnBatching: true,
  // Three named databases (entries, meta, raft) and room for a few more formats without a reopen.
  maxDbs: 8,
} as const);

/** Options of {@link LmdbStore.open}. */
export interface LmdbStoreOptions {
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: open lmdb with `noSync`, so commits
   * resolve without any fdatasync and an acknowledged write can be lost in a crash. The
   * durability trace test must catch this variant; if it does not, the test proves nothing.
   * @default false
   */
  readonly unsafeNoSync?: boolean;
}

/**
 * A durable {@link Store} on LMDB through lmdb-js: the default store of `replikit serve`.
 *
 * Group commit. lmdb-js gathers every asynchronous `put` issued in one event-loop turn into one
 * write transaction, run on its writer thread; while that transaction commits and syncs, the puts
 * of later turns gather into the next one. Concurrent `apply` calls therefore share commits and
 * fsyncs without any batching code here.
 *
 * Atomic compare-and-apply. LMDB's conditional writes compare numeric versions only, and the
 * version here is an (HLC, node id) pair, so the comparison runs in JavaScript instead: `apply`
 * reads what is held, compares and issues the put in one synchronous step, which nothing else in
 * the process can interleave with. What is held is the last write issued for the key, so a
 * pending-writes overlay stands in front of the database until each write's commit is visible
 * there (a plain `get` right after a `put` would still read the old value). `get` and `entries`
 * read through the overlay too, so they see writes still in flight, as the contract allows.
 * Outcomes thus follow call order exactly, and the database ends, commit by commit, at the
 * same state as the overlay.
 *
 * Durability. lmdb is opened with `overlappingSync: false`, so LMDB's own commit writes the data
 * pages, fdatasyncs them and writes the meta page through its O_DSYNC descriptor before the
 * commit's promise resolves: resolved means on disk (strace shows one fdatasync per commit).
 * lmdb-js's default on Linux, overlapping sync, resolves puts once the transaction is visible
 * and syncs afterwards; waiting for its `flushed` promise would restore durability, but raw puts
 * measured no faster that way on this machine (3.1k/s against 3.4k/s awaited one by one, 417k/s
 * against 486k/s with 1000 in flight), and the plain mode leaves one promise to reason about.
 * `noSync`, `noMetaSync`, `mapAsync`, `useWritemap` and `noMemInit` stay off: each trades
 * durability or integrity for speed. lmdb-js's read cache stays off too; the overlay already
 * covers what it would add.
 *
 * One instance per directory: LMDB lets other handles and processes open it too, but the overlay
 * assumes this store issues every write.
 */
export class LmdbStore implements Store {
  readonly #root: RootDatabase;
  readonly #entries: Database<Buffer, Buffer>;
  readonly #meta: Database<Buffer, string>;
  #raft: Database<Buffer, Buffer> | undefined;
  /** Writes issued and not yet visible in the database, per keyspace, by latin1 key; null is a removal. */
  readonly #overlay = new Map<string, Map<string, PendingWrite<Entry | null>>>();
  readonly #metaOverlay = new Map<string, PendingWrite<Uint8Array>>();
  /** Commits not yet settled, by the promise lmdb-js gave their writes. */
  readonly #commits = new Map<Promise<boolean>, PendingCommit>();
  #closing: Promise<void> | undefined;

  private constructor(root: RootDatabase) {
    this.#root = root;
    this.#entries = root.openDB<Buffer, Buffer>({ name: ENTRIES_DB, keyEncoding: 'binary', encoding: 'binary' });
    this.#meta = root.openDB<Buffer, string>({ name: META_DB, encoding: 'binary' });
  }

  /**
   * Opens the store kept in directory `path`, creating the directory (and its parents) and an empty
   * store when there is none. Synchronous, like LMDB's own open.
   */
  static open(path: string, options: LmdbStoreOptions = {}): LmdbStore {
    const root = open({ ...LMDB_OPEN_OPTIONS, path, ...(options.unsafeNoSync === true ? { noSync: true } : {}) });
    return new LmdbStore(root);
  }

  get(keyspace: string, key: Uint8Array): Entry | undefined {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    const pending = this.#overlay.get(keyspace)?.get(latin1(key));
    if (pending !== undefined) return pending.value ?? undefined;
    return this.#read(dbKey(keyspace, key), key);
  }

  async readDurable(keyspace: string, key: Uint8Array): Promise<Entry | undefined> {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    const pending = this.#overlay.get(keyspace)?.get(latin1(key));
    if (pending === undefined) return this.#read(dbKey(keyspace, key), key);
    // Once its commit has resolved, this write's value is on disk (a newer one may be in flight).
    await pending.durable;
    return pending.value ?? undefined;
  }

  async apply(keyspace: string, entries: readonly Entry[], resolve: ConflictResolver = keepNewer): Promise<ApplyOutcome[]> {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    // Encode (and so validate) everything first, so that a bad entry rejects the call before any
    // of its writes is issued. A resolver that merges yields a new entry, encoded when chosen.
    const encoded = entries.map((entry) => {
      assertKeySize(entry.key);
      return encodeEntry(entry);
    });

    // From here to the first await nothing else runs: the compare and the put are one step.
    const outcomes: ApplyOutcome[] = [];
    const waits = new Set<Promise<void>>();
    let overlay = this.#overlay.get(keyspace);
    for (const [i, entry] of entries.entries()) {
      const k = latin1(entry.key);
      const key = dbKey(keyspace, entry.key);
      const pending = overlay?.get(k);
      const held = pending !== undefined ? (pending.value ?? undefined) : this.#read(key, entry.key);
      const chosen = resolve(held, entry);
      if (chosen === undefined) {
        outcomes.push('superseded');
        // Answer "superseded" only once the entry that wins is durable: a crash could otherwise
        // take it away after this replica has said it holds something newer.
        if (pending !== undefined) waits.add(pending.durable);
        continue;
      }
      const stored = copyEntry(chosen);
      if (overlay === undefined) this.#overlay.set(keyspace, (overlay = new Map()));
      const bytes = chosen === entry ? encoded[i]! : encodeEntry(stored);
      const write = this.#track(overlay, k, stored as Entry | null, this.#entries.put(key, bytes));
      waits.add(write.durable);
      outcomes.push('applied');
    }
    await Promise.all(waits);
    return outcomes;
  }

  async remove(keyspace: string, items: readonly { readonly key: Uint8Array; readonly version: Version }[]): Promise<number> {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    // As in apply: from here to the await, the compare and the removal are one step.
    const waits = new Set<Promise<void>>();
    let removed = 0;
    let overlay = this.#overlay.get(keyspace);
    for (const item of items) {
      const k = latin1(item.key);
      const key = dbKey(keyspace, item.key);
      const pending = overlay?.get(k);
      const held = pending !== undefined ? (pending.value ?? undefined) : this.#read(key, item.key);
      if (held === undefined || compareVersion(held.version, item.version) !== 0) continue;
      if (overlay === undefined) this.#overlay.set(keyspace, (overlay = new Map()));
      waits.add(this.#track(overlay, k, null as Entry | null, this.#entries.remove(key)).durable);
      removed++;
    }
    await Promise.all(waits);
    return removed;
  }

  entries(keyspace: string): Entry[] {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    const prefix = keyspacePrefix(keyspace);
    const end = Buffer.from(prefix);
    end[end.length - 1] = KEYSPACE_END;
    const scanned: Entry[] = [];
    for (const { key, value } of this.#entries.getRange({ start: prefix, end })) {
      scanned.push(decodeEntry(key.subarray(prefix.length), value));
    }
    const overlay = this.#overlay.get(keyspace);
    if (overlay === undefined || overlay.size === 0) return scanned;
    const merged = new Map(scanned.map((entry) => [latin1(entry.key), entry]));
    for (const [k, pending] of overlay) {
      if (pending.value === null) merged.delete(k);
      else merged.set(k, pending.value);
    }
    // Latin1 strings compare code unit by code unit, which is byte by byte.
    return [...merged.keys()].sort().map((k) => merged.get(k)!);
  }

  /**
   * A view on one LMDB read transaction: it sees the last commit when it was taken, meta and
   * entries alike, whatever commits later (LMDB's MVCC keeps those pages until the view closes).
   */
  snapshot(keyspace: string, metaName: string): StoreSnapshot {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    const transaction = this.#root.useReadTransaction();
    // lmdb-js reads within a given transaction (its typings leave the option out of getBinary).
    const getBinary = this.#meta.getBinary as (id: string, options: { transaction: typeof transaction }) => Buffer | undefined;
    const stored = getBinary.call(this.#meta, metaName, { transaction });
    const prefix = keyspacePrefix(keyspace);
    const end = Buffer.from(prefix);
    end[end.length - 1] = KEYSPACE_END;
    let open = true;
    return {
      meta: stored === undefined ? undefined : new Uint8Array(stored),
      page: (afterKey, maxBytes, inclusive) => {
        if (!open || this.#closing !== undefined) throw new StoreClosedError();
        const start = afterKey === undefined ? prefix : dbKey(keyspace, afterKey);
        const page: Entry[] = [];
        let bytes = 0;
        for (const { key, value } of this.#entries.getRange({ start, end, exclusiveStart: afterKey !== undefined && inclusive !== true, transaction })) {
          const entry = decodeEntry(key.subarray(prefix.length), value);
          const cost = entryPageBytes(entry);
          if (page.length > 0 && bytes + cost > maxBytes) break;
          page.push(entry);
          bytes += cost;
        }
        return page;
      },
      close: () => {
        if (!open) return;
        open = false;
        transaction.done();
      },
    };
  }

  getMeta(name: string): Uint8Array | undefined {
    this.#assertOpen();
    const pending = this.#metaOverlay.get(name);
    if (pending !== undefined) return pending.value;
    const stored = this.#meta.getBinary(name);
    return stored === undefined ? undefined : new Uint8Array(stored);
  }

  async putMeta(name: string, value: Uint8Array): Promise<void> {
    this.#assertOpen();
    const stored = new Uint8Array(value);
    const write = this.#track(this.#metaOverlay, name, stored, this.#meta.put(name, Buffer.from(stored)));
    await write.durable;
  }

  /**
   * The named database `raft` of this store's environment, where `LmdbRaftLogStore` keeps
   * the log of every Raft group (keyed by group; see lmdb-raft-log-store.ts). Being in the same
   * environment, its writes join the same transactions as `apply`'s: what one event-loop turn
   * writes to either commits, and is fsynced, together, and the store's durability options
   * (`unsafeNoSync` included) hold for it too. Opened on first use (a short write transaction
   * when it does not exist yet). Throws {@link StoreClosedError} after `close()`, which waits for
   * the log's writes in flight as for the store's own (lmdb's close does).
   */
  raftLogDatabase(): Database<Buffer, Buffer> {
    this.#assertOpen();
    this.#raft ??= this.#root.openDB<Buffer, Buffer>({ name: RAFT_DB, keyEncoding: 'binary', encoding: 'binary' });
    return this.#raft;
  }

  /**
   * The id of the last committed LMDB write transaction. Each commit adds one, so the difference
   * across a stretch of work counts the commits (and fsyncs) it took: how well writes were
   * grouped. Reads the environment's info, so keep it off hot paths.
   */
  lastTransactionId(): number {
    this.#assertOpen();
    return (this.#root.getStats() as { lastTxnId: number }).lastTxnId;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Failed writes have already rejected their own apply; closing still succeeds.
      while (this.#commits.size > 0) await Promise.allSettled([...this.#commits.values()].map((c) => c.durable));
      await this.#root.close();
    })();
    return this.#closing;
  }

  /**
   * Puts `value` in `overlay` under `k` until `committed` settles, and returns the pending write.
   * A write that a newer one has replaced in the overlay in the meantime stays replaced.
   *
   * lmdb-js hands every put of one transaction the same promise, so the bookkeeping (one promise
   * reaction, one entry in `#commits`) is per commit, not per write: under load a thousand writes
   * share it.
   */
  #track<T>(overlay: Map<string, PendingWrite<T>>, k: string, value: T, committed: Promise<boolean>): PendingWrite<T> {
    let commit = this.#commits.get(committed);
    if (commit === undefined) {
      const cleanups: (() => void)[] = [];
      const settle = (): void => {
        this.#commits.delete(committed);
        for (const cleanup of cleanups) cleanup();
      };
      const durable = committed.then(settle, (error: unknown) => {
        // The commit failed: the database holds what it held before, so the overlay must too.
        // Every apply that compared against these writes waits on `durable` and rejects with it.
        settle();
        throw error;
      });
      // Whoever waits on `durable` sees a failure; this only keeps a commit nobody waits for any
      // more (its apply threw after issuing a write) from crashing the process as unhandled.
      durable.catch(() => {});
      commit = { durable, cleanups };
      this.#commits.set(committed, commit);
    }
    const write: PendingWrite<T> = { value, durable: commit.durable };
    commit.cleanups.push(() => {
      if (overlay.get(k) === write) overlay.delete(k);
    });
    overlay.set(k, write);
    return write;
  }

  #read(key: Buffer, appKey: Uint8Array): Entry | undefined {
    // The fast variant returns a buffer lmdb reuses on the next read; decodeEntry copies out of it.
    const bytes = this.#entries.getBinaryFast(key);
    return bytes === undefined ? undefined : decodeEntry(appKey, bytes);
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) throw new StoreClosedError();
  }
}

function keyspacePrefix(keyspace: string): Buffer {
  const prefix = Buffer.allocUnsafe(keyspace.length + 1);
  prefix.write(keyspace, 0, 'latin1');
  prefix[keyspace.length] = KEYSPACE_SEPARATOR;
  return prefix;
}

function dbKey(keyspace: string, key: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(keyspace.length + 1 + key.byteLength);
  out.write(keyspace, 0, 'latin1');
  out[keyspace.length] = KEYSPACE_SEPARATOR;
  out.set(key, keyspace.length + 1);
  return out;
}

