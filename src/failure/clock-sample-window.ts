/** One ClockSync sample of a peer's clock, in milliseconds. */
export interface ClockSample {
  /** The peer's wall clock minus this node's, estimated NTP-style at the midpoint of the round trip. */
  readonly offsetMs: number;
  /** The round trip of the sample; the offset is off by at most half of it. */
  readonly rttMs: number;
}

/**
 * The last few ClockSync samples of one peer, answering with the one of lowest round trip, as
 * NTP's clock filter does (RFC 5905 §10): queueing on one leg of a round trip makes the path
 * asymmetric and skews that sample's offset, and the lowest-RTT sample has the least room for it.
 * A change of the peer's offset shows once the older lower-RTT samples have left the window.
 */
export class ClockSampleWindow {
  readonly #capacity: number;
  readonly #samples: ClockSample[] = [];

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`a clock sample window holds a positive integer number of samples, not ${capacity}`);
    }
    this.#capacity = capacity;
  }

  /** Adds a sample (finite offset, finite non-negative RTT), evicting the oldest when full. */
  add(sample: ClockSample): void {
    const { offsetMs, rttMs } = sample;
    if (!Number.isFinite(offsetMs)) throw new RangeError(`a clock offset is a finite number of milliseconds, not ${offsetMs}`);
    if (!Number.isFinite(rttMs) || rttMs < 0) {
      throw new RangeError(`a round trip is a finite non-negative number of milliseconds, not ${rttMs}`);
    }
    this.#samples.push({ offsetMs, rttMs });
    if (this.#samples.length > this.#capacity) this.#samples.shift();
  }

  /** The held sample with the lowest RTT (the newest among equals), or undefined when empty. */
  best(): ClockSample | undefined {
    let best: ClockSample | undefined;
    for (const sample of this.#samples) {
      if (best === undefined || sample.rttMs <= best.rttMs) best = sample;
    }
    return best;
  }

  /** The number of samples held. */
  get count(): number {
    return this.#samples.length;
  }
}

/**
 * True when `sample` shows the peer's clock more than `maxClockOffsetMs` away even in the most
 * favourable reading of its error bound (|offset| − RTT/2), as CockroachDB's clock monitor judges
 * a remote offset: a WAN sample with a long round trip must not flag a peer on noise alone.
 */
export function clockOffsetExceeds(sample: ClockSample, maxClockOffsetMs: number): boolean {
  return Math.abs(sample.offsetMs) - sample.rttMs / 2 > maxClockOffsetMs;
}
