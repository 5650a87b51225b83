import type { Entry, Version } from '../../storage/entry.js';
import type { Store } from '../../storage/store.js';
import { keyId } from './entry-digest.js';

/** One hinted key: deliver this key's current entry to the peer; `version` orders the hints. */
export interface Hint {
  readonly key: Uint8Array;
  readonly version: Version;
}

const EMPTY = new Uint8Array(0);

/**
 * The durable hints of one AP keyspace for one peer (hinted handoff): the keys whose writes the
 * peer missed while it was unreachable, kept in a store keyspace of their own so that they
 * survive a restart of this node. A hint names a key, not a value; delivery sends the key's entry
 * as the store holds it then, so a hint can never carry stale data past a newer write or a delete.
 *
 * Bounded: beyond `maxHints` keys the oldest hints are dropped (the anti-entropy rounds repair
 * what they would have delivered), and `onDrop` is told how many, for a metric and a warning.
 */
export class HintLog {
  /** In order of age (oldest first). */
  readonly #index = new Map<string, Hint>();
  #dropped = 0;
  /** Dropped for good (the peer left the cluster): every later call does nothing. */
  #gone = false;

  private constructor(
    private readonly store: Store,
    readonly name: string,
    private readonly maxHints: number,
    private readonly onDrop: (count: number) => void,
  ) {}

  /** Opens the log kept in store keyspace `name`, reloading hints left by an earlier run. */
  static open(store: Store, name: string, maxHints: number, onDrop: (count: number) => void): HintLog {
    const log = new HintLog(store, name, maxHints, onDrop);
    const held = store.entries(name).filter((e) => !e.tombstone);
    held.sort((a, b) => (a.version.hlc.wallMs - b.version.hlc.wallMs) || (a.version.hlc.logical - b.version.hlc.logical));
    for (const e of held) log.#index.set(keyId(e.key), { key: e.key, version: e.version });
    return log;
  }

  get size(): number {
    return this.#index.size;
  }

  /** Hints dropped for the bound since this log was opened. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Records that the peer misses these keys' writes; resolves once durable. */
  async add(entries: readonly Entry[]): Promise<void> {
    if (this.#gone || entries.length === 0) return;
    const hints = entries.map((e): Entry => ({ key: e.key, value: EMPTY, version: e.version, tombstone: false }));
    await this.store.apply(this.name, hints);
    // Dropped meanwhile: drop() saw these records (the store shows writes in flight) and removes them.
    if (this.#gone) return;
    for (const h of hints) {
      const id = keyId(h.key);
      this.#index.delete(id); // re-inserted at the end: it is now the youngest
      this.#index.set(id, { key: h.key, version: h.version });
    }
    const excess = this.#index.size - this.maxHints;
    if (excess > 0 && !this.#gone) {
      const victims = [...this.#index.values()].slice(0, excess);
      for (const v of victims) this.#index.delete(keyId(v.key));
      this.#dropped += excess;
      this.onDrop(excess);
      await this.store.remove(this.name, victims);
    }
  }

  /** Up to `limit` of the oldest hints. */
  oldest(limit: number): Hint[] {
    const out: Hint[] = [];
    for (const h of this.#index.values()) {
      if (out.length >= limit) break;
      out.push(h);
    }
    return out;
  }

  /** Forgets delivered hints (those not re-hinted with a newer version meanwhile). */
  async remove(hints: readonly Hint[]): Promise<void> {
    if (this.#gone) return;
    const current = hints.filter((h) => this.#index.get(keyId(h.key))?.version === h.version);
    for (const h of current) this.#index.delete(keyId(h.key));
    if (current.length > 0) await this.store.remove(this.name, current);
  }

  /**
   * Forgets every hint, in memory at once and in the store, and ignores every later call: the peer
   * left the cluster for good, so there is no one to deliver them to. Nothing is lost by it: a
   * hint names a key whose entry this replica still holds and replicates to the members that
   * remain. Resolves with how many records it removed from the store, once that is durable.
   */
  async drop(): Promise<number> {
    this.#gone = true;
    this.#index.clear();
    // From the store rather than the index: it also shows the records of an add still in flight.
    const held = this.store.entries(this.name);
    if (held.length === 0) return 0;
    return this.store.remove(this.name, held);
  }
}
