import { compareHlc, type HlcTimestamp } from '../clock/index.js';
import type { ApplyOutcome, Entry, Version } from '../storage/entry.js';
import type { ConflictResolver, Store, StoreSnapshot } from '../storage/store.js';

/** The metadata name of the high-water mark. */
export const CLOCK_HIGH_WATER_META = 'clock.high-water';

/**
 * A store that keeps, durably and in the same commit as the entries, the largest HLC of any entry
 * it has applied: the clock's high-water mark. A node starts its HLC at or past it, so the
 * versions it mints stay unique and increasing across restarts however its wall clock moved
 * meanwhile (a step back after an NTP correction, a VM restored from a snapshot).
 *
 * Why persist rather than wait it out on start: waiting needs to know how far to wait, which is
 * this same mark, and stalls the node for as long as the clock stepped back; starting the HLC at
 * the mark costs nothing, and the HLC's logical part absorbs the difference. Every version a
 * node mints reaches its own store before the write is acknowledged (AP and causal apply locally
 * first; a CP coordinator's own copy, if it lagged, is caught by the quorum read of the next
 * write of that key), so the mark covers every version that matters.
 *
 * Cost: one small metadata put beside the entries when the mark moves, in the same synchronous
 * turn, so LMDB (and the simulated disk) commit it in the same transaction: no extra fsync.
 */
export class ClockHighWaterStore implements Store {
  readonly #inner: Store;
  #mark: HlcTimestamp | undefined;

  constructor(inner: Store) {
    this.#inner = inner;
    this.#mark = readHighWater(inner);
  }

  /** The largest HLC of any entry applied so far (durable or on its way), or undefined. */
  get highWater(): HlcTimestamp | undefined {
    return this.#mark;
  }

  get(keyspace: string, key: Uint8Array): Entry | undefined {
    return this.#inner.get(keyspace, key);
  }

  readDurable(keyspace: string, key: Uint8Array): Promise<Entry | undefined> {
    return this.#inner.readDurable(keyspace, key);
  }

  apply(keyspace: string, entries: readonly Entry[], resolve?: ConflictResolver): Promise<ApplyOutcome[]> {
    let top = this.#mark;
    for (const entry of entries) if (top === undefined || compareHlc(entry.version.hlc, top) > 0) top = entry.version.hlc;
    const applied = this.#inner.apply(keyspace, entries, resolve);
    if (top === this.#mark || top === undefined) return applied;
    this.#mark = top;
    // Issued in the same turn as the entries: one commit, so the mark is durable with them.
    const marked = this.#inner.putMeta(CLOCK_HIGH_WATER_META, encodeHighWater(top));
    return Promise.all([applied, marked]).then(([outcomes]) => outcomes);
  }

  remove(keyspace: string, items: readonly { readonly key: Uint8Array; readonly version: Version }[]): Promise<number> {
    return this.#inner.remove(keyspace, items);
  }

  snapshot(keyspace: string, metaName: string): StoreSnapshot {
    return this.#inner.snapshot(keyspace, metaName);
  }

  entries(keyspace: string): Entry[] {
    return this.#inner.entries(keyspace);
  }

  getMeta(name: string): Uint8Array | undefined {
    return this.#inner.getMeta(name);
  }

  putMeta(name: string, value: Uint8Array): Promise<void> {
    return this.#inner.putMeta(name, value);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

function encodeHighWater(t: HlcTimestamp): Uint8Array {
  return Buffer.from(`${t.wallMs}.${t.logical}`, 'latin1');
}

/** The high-water mark kept in `store`, or undefined when none is (a new or wiped store). */
export function readHighWater(store: Store): HlcTimestamp | undefined {
  const bytes = store.getMeta(CLOCK_HIGH_WATER_META);
  if (bytes === undefined) return undefined;
  const [wallMs, logical] = Buffer.from(bytes).toString('latin1').split('.').map(Number);
  if (!Number.isSafeInteger(wallMs) || !Number.isSafeInteger(logical)) return undefined;
  return { wallMs: wallMs!, logical: logical! };
}
