/**
 * What AP and causal keyspaces serve Range and Watch from: the local replica.
 *
 * {@link LocalFeed} is the change feed of one keyspace on one node: every batch of entries the
 * replica's store applied (a client's write, replication from a peer, hint delivery, anti-entropy,
 * recovery) gets the next **position**, in the order the store applied them. Positions are this
 * node's alone, not ordered across nodes. The feed lives in memory, bounded by bytes: a watch
 * resumes from a position the feed still holds, and older positions answer OUT_OF_RANGE (Range
 * again and watch from now).
 *
 * Positions are not confused across restarts: a position is `epoch * 2^32 + sequence`, where the
 * epoch differs from one start of the node to the next (see {@link feedEpoch} for the limits) and
 * the sequence counts the batches of this start from 1. A position of another start is refused
 * like one that fell below the floor, not served as if it were this start's.
 *
 * {@link FeedRecorder} turns a policy's store applies into feed batches (in the store's apply order,
 * once durable), and {@link scanReplica} reads a range of the replica's durable state in key order.
 *
 * No I/O of its own and no clock.
 */
import { invalidArgument, outOfRange } from '../../errors.js';
import type { ApplyOutcome, Entry } from '../../storage/entry.js';
import { keepNewer, type ConflictResolver, type Store } from '../../storage/store.js';
import type { StoredKey } from '../cp/kv-state-machine.js';
import { eventBytes, type ChangeBatch, type ChangeEvent, type ChangeSource } from './change.js';
import type { KeyRange } from './key-range.js';
import type { WatchHub } from './watch-hub.js';

/**
 * Bytes of changes a feed keeps (keys, values, previous values and a fixed allowance per event, as
 * a watcher's buffer counts them): 16 MiB is four times what one slow watcher may hold unread
 * (WATCH_DEFAULTS.maxPendingBytes), so a client cut off for falling behind, or a node's watchers
 * moved to another stream, resume from the feed rather than re-reading the keyspace — tens of
 * thousands of small writes, or eight to sixteen at the 1 MiB value limit. It is per keyspace and node
 * and held whether or not anyone watches, so it is kept well below what a node's memory affords.
 */
export const FEED_BYTES = 16 * 1024 * 1024;

/** Positions per epoch: the sequence of one start of the node takes the low 32 bits. */
export const FEED_EPOCH_SPAN = 2 ** 32;
/** Epochs that keep every position a safe integer (2^21 × 2^32 = 2^53). */
export const FEED_EPOCHS = 2 ** 21;

/** What a batch counts for beyond its events: its position and framing. */
const BATCH_BYTES = 32;

/**
 * The metadata name under which the node keeps its incarnation (src/node/incarnation.ts, which
 * does not export it): one more on every start from the same disk, the wall clock in seconds on an
 * empty one. Written before the node creates its keyspace policies.
 */
const INCARNATION_META = 'incarnation';

/**
 * The epoch of this start's feed positions: the node's incarnation (see {@link INCARNATION_META})
 * modulo {@link FEED_EPOCHS}, or 0 when the store holds none (a node core started without it, as in
 * some tests and simulations: there every start has epoch 0 and a position held across a restart
 * is taken for one of the new start). Consecutive starts from one disk get consecutive
 * incarnations, so their epochs differ unless 2^21 starts apart; a wiped disk starts from the wall
 * clock, so its epoch matches an earlier start's only by a 1-in-2^21 coincidence.
 */
export function feedEpoch(store: Store): number {
  const held = store.getMeta(INCARNATION_META);
  if (held === undefined || held.byteLength !== 8) return 0;
  const incarnation = new DataView(held.buffer, held.byteOffset, held.byteLength).getBigUint64(0);
  return Number(incarnation % BigInt(FEED_EPOCHS));
}

export interface LocalFeedOptions {
  /** For messages: the keyspace the feed belongs to. */
  readonly keyspace?: string;
  /** Bytes of batches kept (at least the newest batch is, however large). @default FEED_BYTES */
  readonly maxBytes?: number;
}

export class LocalFeed implements ChangeSource {
  readonly #epoch: number;
  readonly #base: number;
  readonly #keyspace: string;
  readonly #maxBytes: number;
  /** The batches kept: positions floor + 1 .. head, oldest at `#first`. */
  #batches: ({ batch: ChangeBatch; bytes: number } | undefined)[] = [];
  #first = 0;
  #bytes = 0;
  #head: number;
  #floor: number;

  constructor(epoch: number, options: LocalFeedOptions = {}) {
    if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch >= FEED_EPOCHS) throw new RangeError(`a feed epoch is a whole number below 2^21, not ${epoch}`);
    this.#epoch = epoch;
    this.#base = epoch * FEED_EPOCH_SPAN;
    this.#head = this.#base;
    this.#floor = this.#base;
    this.#keyspace = options.keyspace ?? 'the keyspace';
    this.#maxBytes = options.maxBytes ?? FEED_BYTES;
  }

  get epoch(): number {
    return this.#epoch;
  }

  /** The position of the latest batch (the epoch's base while there is none). */
  get head(): number {
    return this.#head;
  }

  /** Batches are kept only after this position. */
  get floor(): number {
    return this.#floor;
  }

  /** Bytes of the batches kept. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Gives the changes of one applied batch the next position and keeps them, dropping the oldest
   * batches beyond the byte bound. Returns the batch (to publish to the watchers in the same run).
   *
   * A start that applies more than 2^32 batches runs on into the positions of the next epoch; a
   * position of this start then stays a position of this start (every one is above the floor and
   * at most the head), but one held from before a later restart could be taken for it.
   */
  append(events: readonly ChangeEvent[]): ChangeBatch {
    const batch: ChangeBatch = { revision: this.#head + 1, events };
    let bytes = BATCH_BYTES;
    for (const e of events) bytes += eventBytes(e);
    this.#batches.push({ batch, bytes });
    this.#bytes += bytes;
    this.#head = batch.revision;
    while (this.#bytes > this.#maxBytes && this.#batches.length - this.#first > 1) {
      const dropped = this.#batches[this.#first]!;
      this.#batches[this.#first++] = undefined;
      this.#bytes -= dropped.bytes;
      this.#floor = dropped.batch.revision;
    }
    // Compact the array once the dropped slots are the larger part of it.
    if (this.#first > 1024 && this.#first * 2 > this.#batches.length) {
      this.#batches = this.#batches.slice(this.#first);
      this.#first = 0;
    }
    return batch;
  }

  read(from: number, maxBytes: number): ChangeBatch[] {
    if (from <= this.#floor) throw this.floorError(from);
    const out: ChangeBatch[] = [];
    let bytes = 0;
    for (let i = this.#first + (from - this.#floor - 1); i < this.#batches.length; i++) {
      const kept = this.#batches[i]!;
      if (out.length > 0 && bytes + kept.bytes > maxBytes) break;
      out.push(kept.batch);
      bytes += kept.bytes;
    }
    return out;
  }

  floorError(position: number): Error {
    return outOfRange(
      'FEED_POSITION_GONE',
      `position ${position} of this node's change feed of ${this.#keyspace} is no longer kept (the feed keeps the positions after ${this.#floor} of this node's current start); ` +
        'Range the keys again and watch from now (start_revision 0), on this node',
      { compact_revision: String(this.#floor) },
    );
  }

  /**
   * Where a watch asking for `startRevision` starts: the head + 1 for 0 (from now), else the
   * position itself. A position of another start of the node (another epoch) answers
   * {@link floorError}: its changes are not here. One past the head + 1 is refused.
   */
  startPosition(startRevision: number): number {
    if (startRevision === 0) return this.#head + 1;
    if (startRevision <= this.#floor) throw this.floorError(startRevision);
    if (startRevision > this.#head + 1) {
      // Beyond this epoch's span: a position of another start (a later epoch, or one the epochs
      // wrapped around to), whose changes this start never had.
      if (startRevision > this.#base + FEED_EPOCH_SPAN) throw this.floorError(startRevision);
      throw invalidArgument(
        'START_REVISION_IN_FUTURE',
        `start_revision ${startRevision} is past this node's change feed of ${this.#keyspace}, at position ${this.#head}; watch from ${this.#head + 1} or less, or 0 for changes from now`,
        { field: 'start_revision' },
      );
    }
    return startRevision;
  }
}

/** The counters of a keyspace's feed and watchers, as a policy's `stats()` reports them (the names ops/metrics.ts reads). */
export interface FeedStats {
  readonly watchers: number;
  readonly watchEventsPending: number;
  readonly watchBytesPending: number;
  readonly watchSlowCancellations: number;
  readonly watchEventsDelivered: number;
  /** The feed's latest position, and the bytes of changes it keeps. */
  readonly feedPosition: number;
  readonly feedBytes: number;
}

export function feedStats(hub: WatchHub, feed: LocalFeed): FeedStats {
  // The names of watchStatsOf, spelled out so the type has them.
  const s = hub.stats;
  return {
    watchers: s.watchers,
    watchEventsPending: s.pendingEvents,
    watchBytesPending: s.pendingBytes,
    watchSlowCancellations: s.slowCancellations,
    watchEventsDelivered: s.eventsDelivered,
    feedPosition: feed.head,
    feedBytes: feed.bytes,
  };
}

/** An entry of the replica as a Range or a feed shows it: no revisions, its version as the stamp. */
export function storedKeyOf(entry: Entry): StoredKey {
  return { key: asBuffer(entry.key), value: entry.tombstone ? EMPTY : asBuffer(entry.value), createRevision: 0, modRevision: 0, version: 0, stamp: entry.version };
}

/**
 * The change of a key from `held` to `stored`; undefined when none shows (a delete of a key that
 * was absent or already deleted). `stored`'s bytes are copied into buffers of the feed's own (they
 * may be views of a caller's buffer or a message); `held` is the store's, frozen.
 */
export function changeOf(held: Entry | undefined, stored: Entry): ChangeEvent | undefined {
  const wasPresent = held !== undefined && !held.tombstone;
  if (stored.tombstone && !wasPresent) return undefined;
  const kv = storedKeyOf(copyBytes(stored));
  const prev = wasPresent ? storedKeyOf(held) : undefined;
  return { type: stored.tombstone ? 'delete' : 'put', kv, ...(prev === undefined ? {} : { prev }) };
}

/**
 * Records what a policy's applies change in its keyspace and hands each applied batch's changes to
 * `onBatch` (which appends them to the feed and publishes them), in the order the store applied
 * the batches, once the store has made them durable: a watcher never sees a change a crash could
 * take away, nor two changes of a key out of order.
 *
 * Each apply's resolver is wrapped to learn, inside the store's atomic step, what was held (the
 * previous value, for free) and what the store chose to keep (a merge, or the entry itself).
 */
export class FeedRecorder {
  readonly #store: Store;
  readonly #keyspace: string;
  readonly #onBatch: (events: ChangeEvent[]) => void;
  /** Applies issued and not yet handed on, in issue order; `events` set once one settled. */
  readonly #slots: { events: ChangeEvent[] | undefined }[] = [];
  #firstSlot = 0;

  constructor(store: Store, keyspace: string, onBatch: (events: ChangeEvent[]) => void) {
    this.#store = store;
    this.#keyspace = keyspace;
    this.#onBatch = onBatch;
  }

  /** `store.apply(keyspace, entries, resolve)`, recording its changes for the feed. */
  apply(entries: readonly Entry[], resolve: ConflictResolver = keepNewer): Promise<ApplyOutcome[]> {
    const seen: { held: Entry | undefined; chosen: Entry | undefined }[] = [];
    const recording: ConflictResolver = (held, offered) => {
      const chosen = resolve(held, offered);
      seen.push({ held, chosen });
      return chosen;
    };
    const slot: { events: ChangeEvent[] | undefined } = { events: undefined };
    this.#slots.push(slot);
    let applying: Promise<ApplyOutcome[]>;
    try {
      applying = this.#store.apply(this.#keyspace, entries, recording);
    } catch (error: unknown) {
      applying = Promise.reject(error);
    }
    return applying.then(
      (outcomes) => {
        const events: ChangeEvent[] = [];
        // One resolver call per entry, in order (the store's contract); anything else records nothing.
        if (seen.length === entries.length) {
          for (const [i, outcome] of outcomes.entries()) {
            const s = seen[i]!;
            if (outcome !== 'applied' || s.chosen === undefined) continue;
            const change = changeOf(s.held, s.chosen);
            if (change !== undefined) events.push(change);
          }
        }
        this.#settle(slot, events);
        return outcomes;
      },
      (error: unknown) => {
        // The store failed (the node stops): what this apply did is unknown; later ones go on.
        this.#settle(slot, []);
        throw error;
      },
    );
  }

  #settle(slot: { events: ChangeEvent[] | undefined }, events: ChangeEvent[]): void {
    slot.events = events;
    while (this.#firstSlot < this.#slots.length && this.#slots[this.#firstSlot]!.events !== undefined) {
      const ready = this.#slots[this.#firstSlot++]!.events!;
      if (ready.length > 0) this.#onBatch(ready);
    }
    // Drop the slots handed on once they are the larger part (applies may overlap without end).
    if (this.#firstSlot === this.#slots.length || (this.#firstSlot > 1024 && this.#firstSlot * 2 > this.#slots.length)) {
      this.#slots.splice(0, this.#firstSlot);
      this.#firstSlot = 0;
    }
  }
}

/** Keys and values per page a scan reads from the store. */
const SCAN_PAGE_BYTES = 256 * 1024;

/**
 * Visits the entries of `range` in the replica's durable state (tombstones included), in
 * ascending key order, until `visit` answers false: one point-in-time view of the store, so one
 * state. `metaName`: the metadata value the view carries (see Store.snapshot).
 */
export function scanReplica(store: Store, keyspace: string, metaName: string, range: KeyRange, visit: (entry: Entry) => boolean): void {
  const view = store.snapshot(keyspace, metaName);
  try {
    let after: Uint8Array = range.start;
    let inclusive = true;
    for (;;) {
      const page = view.page(after, SCAN_PAGE_BYTES, inclusive);
      inclusive = false;
      if (page.length === 0) return;
      for (const entry of page) {
        if (range.end !== null && Buffer.compare(asBuffer(entry.key), range.end) >= 0) return;
        if (!visit(entry)) return;
      }
      after = page[page.length - 1]!.key;
    }
  } finally {
    view.close();
  }
}

const EMPTY = Buffer.alloc(0);

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The entry with its key and value in buffers of their own (not views of a caller's or a message's). */
function copyBytes(entry: Entry): Entry {
  return { ...entry, key: Buffer.from(entry.key), value: entry.tombstone ? EMPTY : Buffer.from(entry.value) };
}
