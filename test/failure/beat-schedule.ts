import type { SeededRandom } from '../../src/sim/seeded-random.js';

/** How beats from one sender arrive at one receiver, in milliseconds. */
export interface BeatJitter {
  /** The sender's beat period. */
  readonly intervalMs: number;
  /** Each arrival lands U(−jitterMs, +jitterMs) off its slot. */
  readonly jitterMs: number;
  /** The chance that a beat is held up on top of its jitter (a GC pause, a retransmission). */
  readonly pauseProbability: number;
  /** A held-up beat is late by U(0, maxPauseMs). */
  readonly maxPauseMs: number;
}

/** Beats every 100 ms, ±50 ms uniform jitter, 1 % of them held up by up to 200 ms. */
export const JITTERY_LAN: BeatJitter = { intervalMs: 100, jitterMs: 50, pauseProbability: 0.01, maxPauseMs: 200 };

/** Beats every 100 ms, ±50 ms uniform jitter, no pauses. */
export const JITTER_ONLY_LAN: BeatJitter = { intervalMs: 100, jitterMs: 50, pauseProbability: 0, maxPauseMs: 0 };

/**
 * Arrival times of the beats a sender sends at slots `fromMs`, `fromMs + interval`, … up to
 * `untilMs`. The sender's timer keeps its schedule, so jitter does not accumulate; one stream
 * delivers in order, so a held-up beat also holds up those behind it (they arrive together).
 */
export function beatArrivals(random: SeededRandom, jitter: BeatJitter, fromMs: number, untilMs: number): number[] {
  const arrivals: number[] = [];
  let previous = -Infinity;
  for (let slot = fromMs; slot <= untilMs; slot += jitter.intervalMs) {
    let at = slot + random.between(-jitter.jitterMs, jitter.jitterMs);
    if (jitter.pauseProbability > 0 && random.chance(jitter.pauseProbability)) at += random.between(0, jitter.maxPauseMs);
    at = Math.max(at, previous);
    arrivals.push(at);
    previous = at;
  }
  return arrivals;
}
