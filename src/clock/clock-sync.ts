/**
 * Clock offset estimation from NTP-style samples (RFC 5905 §8, the on-wire protocol). Pure
 * arithmetic over four wall-clock readings; the ClockSync RPC that collects them lives in the
 * transport.
 */

/**
 * How many recent samples per peer the estimator keeps. The minimum-RTT sample of a window is the
 * one least distorted by queueing (its error is at most half its RTT), so a larger window finds a
 * better sample; a smaller one follows a drifting clock sooner. Eight is what NTP's clock filter
 * uses, and at one sample every few seconds it spans well under a minute of drift.
 */
export const DEFAULT_CLOCK_SYNC_WINDOW = 8;

/** One estimate of a peer's clock, from one request/response exchange. */
export interface ClockSample {
  /** The peer's wall clock minus this node's, in milliseconds. */
  readonly offsetMs: number;
  /** The round trip minus the peer's processing time, in milliseconds. */
  readonly rttMs: number;
}

/**
 * One NTP sample from four wall-clock readings in milliseconds: `originMs` (local, request sent),
 * `receiveMs` (remote, request arrived), `sendMs` (remote, response sent) and `arrivalMs` (local,
 * response arrived). offset = ((receive − origin) + (send − arrival)) / 2 and
 * rtt = (arrival − origin) − (send − receive). If the two one-way delays are d₁ and d₂, the true
 * offset θ satisfies offset = θ + (d₁ − d₂) / 2, so |offset − θ| ≤ rtt / 2 whatever the asymmetry.
 */
export function clockSample(originMs: number, receiveMs: number, sendMs: number, arrivalMs: number): ClockSample {
  return {
    offsetMs: (receiveMs - originMs + (sendMs - arrivalMs)) / 2,
    rttMs: arrivalMs - originMs - (sendMs - receiveMs),
  };
}

/**
 * Tracks one peer's clock offset: a sliding window of its latest samples, reporting the one with
 * the smallest RTT (on ties the most recent). Keep one estimator per peer.
 */
export class ClockOffsetEstimator {
  readonly #windowSize: number;
  readonly #samples: ClockSample[] = [];

  constructor(windowSize: number = DEFAULT_CLOCK_SYNC_WINDOW) {
    if (!Number.isSafeInteger(windowSize) || windowSize < 1) {
      throw new RangeError(`a clock sync window holds at least one sample, not ${windowSize}`);
    }
    this.#windowSize = windowSize;
  }

  /**
   * Adds a sample, dropping the oldest beyond the window. Refuses (returns false for) a sample
   * with a negative or non-finite RTT: that only happens when a wall clock stepped during the
   * exchange or the peer reported nonsense, and such a sample would win every minimum-RTT
   * comparison for a whole window.
   */
  add(sample: ClockSample): boolean {
    if (!Number.isFinite(sample.offsetMs) || !Number.isFinite(sample.rttMs) || sample.rttMs < 0) return false;
    this.#samples.push(sample);
    if (this.#samples.length > this.#windowSize) this.#samples.shift();
    return true;
  }

  /** The minimum-RTT sample of the window, or undefined before the first sample. */
  best(): ClockSample | undefined {
    let best: ClockSample | undefined;
    for (const sample of this.#samples) {
      if (best === undefined || sample.rttMs <= best.rttMs) best = sample;
    }
    return best;
  }

  /** How many samples the window holds now. */
  get size(): number {
    return this.#samples.length;
  }

  /** The window's capacity. */
  get windowSize(): number {
    return this.#windowSize;
  }
}
