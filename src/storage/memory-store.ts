import { compareVersion, type ApplyOutcome, type Entry, type Version } from './entry.js';
import { copyEntry } from './entry-copy.js';
import { assertKeySize, assertKeyspaceName } from './limits.js';
import { copiedSnapshot, keepNewer, StoreClosedError, type ConflictResolver, type Store, type StoreSnapshot } from './store.js';

/** Entries of one keyspace by key, the key's bytes spelled as a latin1 string. */
type Keyspace = Map<string, Entry>;

/**
 * The reference {@link Store}: plain maps, no I/O, no timers. Simulations and unit tests use it,
 * and the contract tests hold {@link LmdbStore} to the same behaviour.
 *
 * It models a durable medium, not a process's memory: a node that "crashes" in a simulation keeps
 * its MemoryStore, and the restarted node opens the same instance (see {@link crash}). To make
 * that meaningful, writes pass through the same two stages as on disk. `apply` stages accepted
 * entries at once (so `get` reads them, as the contract allows) and every call made in the same
 * synchronous run shares one "commit", which happens on a microtask; only then do the entries
 * become durable and the promises resolve. No timer is involved, so a simulation on virtual time
 * stays deterministic: outcomes and resolution order follow call order alone.
 */
export class MemoryStore implements Store {
  /** What survives a crash. */
  readonly #durable = new Map<string, Keyspace>();
  readonly #durableMeta = new Map<string, Uint8Array>();
  /** What the commit in flight will make durable; a crash drops it. */
  /** A null entry stages a removal. */
  readonly #staged = new Map<string, Map<string, Entry | null>>();
  readonly #stagedMeta = new Map<string, Uint8Array>();
  /** The commit every call of the current synchronous run waits for. */
  #commit: Promise<void> | undefined;
  /** Bumped by every crash, so a commit scheduled before one knows to give up. */
  #epoch = 0;
  #closed = false;

  get(keyspace: string, key: Uint8Array): Entry | undefined {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    const k = keyString(key);
    const staged = this.#staged.get(keyspace)?.get(k);
    if (staged !== undefined) return staged ?? undefined;
    return this.#durable.get(keyspace)?.get(k);
  }

  async readDurable(keyspace: string, key: Uint8Array): Promise<Entry | undefined> {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    const k = keyString(key);
    if (this.#staged.get(keyspace)?.has(k)) await this.#joinCommit();
    return this.#durable.get(keyspace)?.get(k);
  }

  apply(keyspace: string, entries: readonly Entry[], resolve: ConflictResolver = keepNewer): Promise<ApplyOutcome[]> {
    try {
      this.#assertOpen();
      assertKeyspaceName(keyspace);
      for (const entry of entries) assertKeySize(entry.key);
    } catch (error) {
      return Promise.reject(error);
    }
    const outcomes = entries.map((entry): ApplyOutcome => {
      const held = this.get(keyspace, entry.key);
      const chosen = resolve(held, entry);
      if (chosen === undefined) return 'superseded';
      let staged = this.#staged.get(keyspace);
      if (staged === undefined) this.#staged.set(keyspace, (staged = new Map()));
      staged.set(keyString(entry.key), copyEntry(chosen));
      return 'applied';
    });
    // Superseded entries wait for the commit too: the entry that beat them may be staged in it,
    // and "superseded" must not be answered for a version a crash could still take away.
    return this.#joinCommit().then(() => outcomes);
  }

  remove(keyspace: string, items: readonly { readonly key: Uint8Array; readonly version: Version }[]): Promise<number> {
    try {
      this.#assertOpen();
      assertKeyspaceName(keyspace);
    } catch (error) {
      return Promise.reject(error);
    }
    let removed = 0;
    for (const item of items) {
      const held = this.get(keyspace, item.key);
      if (held === undefined || compareVersion(held.version, item.version) !== 0) continue;
      let staged = this.#staged.get(keyspace);
      if (staged === undefined) this.#staged.set(keyspace, (staged = new Map()));
      staged.set(keyString(item.key), null);
      removed++;
    }
    return this.#joinCommit().then(() => removed);
  }

  entries(keyspace: string): Entry[] {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    const merged = new Map<string, Entry | null>(this.#durable.get(keyspace));
    for (const [k, entry] of this.#staged.get(keyspace) ?? []) merged.set(k, entry);
    for (const [k, entry] of merged) if (entry === null) merged.delete(k);
    // Latin1 strings compare code unit by code unit, which is byte by byte.
    return [...merged.keys()].sort().map((k) => merged.get(k)!);
  }

  snapshot(keyspace: string, metaName: string): StoreSnapshot {
    this.#assertOpen();
    assertKeyspaceName(keyspace);
    const durable = this.#durable.get(keyspace) ?? new Map<string, Entry>();
    return copiedSnapshot([...durable.keys()].sort().map((k) => durable.get(k)!), this.#durableMeta.get(metaName));
  }

  getMeta(name: string): Uint8Array | undefined {
    this.#assertOpen();
    return this.#stagedMeta.get(name) ?? this.#durableMeta.get(name);
  }

  putMeta(name: string, value: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreClosedError());
    this.#stagedMeta.set(name, new Uint8Array(value));
    return this.#joinCommit();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#commit;
  }

  /**
   * Simulates a crash of the process using this store, followed by the restart that opens it
   * again. Writes whose `apply` or `putMeta` has not resolved are lost — the worst a real medium
   * may do — and their promises never settle, since nobody is left to see them. Everything that
   * resolved survives. Afterwards the store is open (even if it had been closed) for the restarted
   * node. The simulation must stop the crashed node's own code: calls it still makes would reach
   * this same instance.
   */
  crash(): void {
    this.#epoch++;
    this.#staged.clear();
    this.#stagedMeta.clear();
    this.#commit = undefined;
    this.#closed = false;
  }

  #joinCommit(): Promise<void> {
    if (this.#commit !== undefined) return this.#commit;
    const epoch = this.#epoch;
    const commit = new Promise<void>((resolve) => {
      queueMicrotask(() => {
        // A crash came first: this commit never happened, and its waiters belong to a dead process.
        if (this.#epoch !== epoch) return;
        this.#makeDurable();
        this.#commit = undefined;
        resolve();
      });
    });
    this.#commit = commit;
    return commit;
  }

  #makeDurable(): void {
    for (const [keyspace, staged] of this.#staged) {
      let durable = this.#durable.get(keyspace);
      if (durable === undefined) this.#durable.set(keyspace, (durable = new Map()));
      for (const [k, entry] of staged) {
        if (entry === null) durable.delete(k);
        else durable.set(k, entry);
      }
    }
    this.#staged.clear();
    for (const [name, value] of this.#stagedMeta) this.#durableMeta.set(name, value);
    this.#stagedMeta.clear();
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosedError();
  }
}

function keyString(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}
