/**
 * Event latency of a watch, matched in the one process that both writes and watches: the time
 * from a put's acknowledgement at its caller to the arrival of its event at a watcher. Every put
 * carries a value of its own (the put's number and the phase's nonce in its first bytes, the rest
 * the benchmark's filler, so it is as long as the other rows' values); the watcher reads the
 * number back from the event and the tracker pairs the two moments, whichever comes first.
 *
 * An event may arrive before its put's acknowledgement (the watcher sits on the node that applied
 * the write first, and the answer to the caller is still on its way): such an event counts as
 * latency 0 and is counted as `early`. A put acknowledged inside the measured window whose event
 * never arrives is `missing`; an event that arrives twice is a `duplicate`; an event whose
 * revision is below the previous one on the same watcher is `outOfOrder`. A correct watch has
 * none of the last three.
 *
 * No I/O here, so test/bench/watch.test.ts checks every count.
 */
import type { Histogram } from 'hdr-histogram-js';

/** Bytes of the value that identify the put: 6 for its number, 4 for the phase's nonce. */
const ID_BYTES = 6;
const NONCE_BYTES = 4;

/** A value of `size` bytes (≥ 10) that names put `id` of the phase with `nonce`, the rest `filler`. */
export function taggedValue(id: number, nonce: number, size: number, filler = 0x78): Buffer {
  if (size < ID_BYTES + NONCE_BYTES) throw new RangeError(`a tagged value needs at least ${ID_BYTES + NONCE_BYTES} bytes, not ${size}`);
  const value = Buffer.alloc(size, filler);
  value.writeUIntBE(id, 0, ID_BYTES);
  value.writeUInt32BE(nonce >>> 0, ID_BYTES);
  return value;
}

/** The put number a value of {@link taggedValue} names, or undefined for a value of another phase (or none). */
export function tagOf(value: Uint8Array, nonce: number): number | undefined {
  if (value.length < ID_BYTES + NONCE_BYTES) return undefined;
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (buf.readUInt32BE(ID_BYTES) !== nonce >>> 0) return undefined;
  return buf.readUIntBE(0, ID_BYTES);
}

/** What one watcher (or several, summed) saw. */
export interface DeliveryCounts {
  /** Events of puts acknowledged inside the measured window: the latencies recorded. */
  events: number;
  /** Of those, events that arrived before their put's acknowledgement (recorded as 0). */
  early: number;
  /** Puts acknowledged inside the window whose event did not arrive. */
  missing: number;
  /** Events that arrived a second time. */
  duplicates: number;
  /** Events whose revision is below the previous event's on the same watcher. */
  outOfOrder: number;
  /** Events of another phase, or with a value that names no put. */
  strays: number;
}

export function emptyCounts(): DeliveryCounts {
  return { events: 0, early: 0, missing: 0, duplicates: 0, outOfOrder: 0, strays: 0 };
}

export function addCounts(into: DeliveryCounts, more: DeliveryCounts): DeliveryCounts {
  for (const k of Object.keys(into) as (keyof DeliveryCounts)[]) into[k] += more[k];
  return into;
}

/**
 * The puts one watcher should see and the events it saw. `histogram` (µs) may be shared by many
 * trackers: the latencies of all the watchers of a phase go into one distribution.
 */
export class DeliveryTracker {
  readonly #histogram: Histogram;
  /** Acknowledged puts whose event has not arrived: id → [ack time, counted]. */
  readonly #acked = new Map<number, [number, boolean]>();
  /** Events that arrived before their put's acknowledgement: id → arrival time. */
  readonly #early = new Map<number, number>();
  /** Every put id whose event arrived. */
  readonly #delivered = new Set<number>();
  #lastRevision = -1n;
  readonly #counts = emptyCounts();

  constructor(histogram: Histogram) {
    this.#histogram = histogram;
  }

  /** Put `id` was acknowledged at `at` (ms); `counted`: inside the measured window. */
  acked(id: number, at: number, counted: boolean): void {
    const arrived = this.#early.get(id);
    if (arrived !== undefined) {
      this.#early.delete(id);
      if (counted) {
        this.#counts.events++;
        this.#counts.early++;
        this.#record(arrived - at);
      }
      return;
    }
    if (!this.#delivered.has(id)) this.#acked.set(id, [at, counted]);
  }

  /** The event of put `id` (undefined: a value that names none) arrived at `at` (ms), at `revision`. */
  arrived(id: number | undefined, at: number, revision: bigint): void {
    if (revision < this.#lastRevision) this.#counts.outOfOrder++;
    else this.#lastRevision = revision;
    if (id === undefined) {
      this.#counts.strays++;
      return;
    }
    if (this.#delivered.has(id)) {
      this.#counts.duplicates++;
      return;
    }
    this.#delivered.add(id);
    const ack = this.#acked.get(id);
    if (ack === undefined) {
      this.#early.set(id, at);
      return;
    }
    this.#acked.delete(id);
    if (ack[1]) {
      this.#counts.events++;
      this.#record(at - ack[0]);
    }
  }

  /** Puts acknowledged inside the window whose event has not arrived yet. */
  outstanding(): number {
    let n = 0;
    for (const [, counted] of this.#acked.values()) if (counted) n++;
    return n;
  }

  /** The counts, `missing` being the puts still outstanding: call once waiting is over. */
  finish(): DeliveryCounts {
    return { ...this.#counts, missing: this.outstanding() };
  }

  #record(ms: number): void {
    // Clamped to 1 µs: an event that beat its acknowledgement is "no later than the ack".
    this.#histogram.recordValue(Math.max(1, Math.round(ms * 1000)));
  }
}

/**
 * Waits until `outstanding()` is 0 or `timeoutMs` passed (events of the last puts still on their
 * way when the load stopped); resolves to how long it waited.
 */
export async function settle(outstanding: () => number, timeoutMs: number, pollMs = 20): Promise<number> {
  const start = performance.now();
  while (outstanding() > 0 && performance.now() - start < timeoutMs) await new Promise((r) => setTimeout(r, pollMs));
  return performance.now() - start;
}
