import { IntervalWindow } from './interval-window.js';
import { phiOf, standardScoreAtPhi } from './phi.js';

/** How a {@link PhiAccrualDetector} judges one peer. All times in milliseconds. */
export interface PhiAccrualDetectorOptions {
  /** phi at or above which the peer counts as unavailable. */
  readonly threshold: number;
  /** How many recent inter-arrival intervals the statistics cover. */
  readonly maxSampleSize: number;
  /** A floor under the measured standard deviation, so a very regular stream is not brittle. */
  readonly minStdDeviationMs: number;
  /** Added to the mean interval: silence this much longer than usual is still no sign of failure. */
  readonly acceptableHeartbeatPauseMs: number;
  /** The interval assumed before any has been measured, normally the configured beat interval. */
  readonly firstHeartbeatEstimateMs: number;
}

/**
 * A phi accrual failure detector for one peer (Hayashibara et al. 2004), following Akka's
 * `PhiAccrualFailureDetector`: a window of beat inter-arrival intervals gives a mean and a
 * standard deviation; phi says how unlikely the current silence would be if the peer were alive.
 *
 * Pure: it reads no clock and sets no timer. Every method takes the caller's monotonic time in
 * milliseconds, and calls must come in non-decreasing time order.
 *
 * Beyond Akka, it tells beats apart from other evidence of life ({@link observeLife}): a
 * successful RPC proves the peer was alive, so phi measures silence from it, but it adds no
 * interval, because RPCs arrive at the application's rate and would drag the mean interval far
 * below the beat interval, after which an ordinary gap between beats would look like a failure.
 */
export class PhiAccrualDetector {
  readonly #options: PhiAccrualDetectorOptions;
  readonly #intervals: IntervalWindow;
  /** The standard score at which phi reaches the threshold, computed once. */
  readonly #thresholdScore: number;
  #lastHeartbeatMs: number | undefined;
  #lastLifeMs: number | undefined;

  constructor(options: PhiAccrualDetectorOptions) {
    const { threshold, maxSampleSize, minStdDeviationMs, acceptableHeartbeatPauseMs, firstHeartbeatEstimateMs } = options;
    if (!(threshold > 0) || !Number.isFinite(threshold)) {
      throw new RangeError(`threshold must be a positive finite number, not ${threshold}`);
    }
    if (!(minStdDeviationMs > 0) || !Number.isFinite(minStdDeviationMs)) {
      throw new RangeError(`minStdDeviationMs must be a positive finite number, not ${minStdDeviationMs}`);
    }
    if (!(acceptableHeartbeatPauseMs >= 0) || !Number.isFinite(acceptableHeartbeatPauseMs)) {
      throw new RangeError(`acceptableHeartbeatPauseMs must be a non-negative finite number, not ${acceptableHeartbeatPauseMs}`);
    }
    if (!(firstHeartbeatEstimateMs > 0) || !Number.isFinite(firstHeartbeatEstimateMs)) {
      throw new RangeError(`firstHeartbeatEstimateMs must be a positive finite number, not ${firstHeartbeatEstimateMs}`);
    }
    this.#options = { ...options };
    this.#intervals = new IntervalWindow(maxSampleSize);
    this.#thresholdScore = standardScoreAtPhi(threshold);
  }

  /** The phi at or above which {@link isAvailable} answers false. */
  get threshold(): number {
    return this.#options.threshold;
  }

  /** When the last beat arrived, or undefined before the first. */
  get lastHeartbeatMs(): number | undefined {
    return this.#lastHeartbeatMs;
  }

  /** When the last beat or other evidence of life arrived, or undefined before any did. */
  get lastLifeMs(): number | undefined {
    return this.#lastLifeMs;
  }

  /** The number of intervals in the window, the two bootstrap estimates included. */
  get sampleCount(): number {
    return this.#intervals.count;
  }

  /** The mean of the intervals in the window, in milliseconds (0 before the first beat). */
  get meanIntervalMs(): number {
    return this.#intervals.meanMs;
  }

  /** The standard deviation phi uses, in milliseconds: the measured one, at least the floor. */
  get stdDeviationMs(): number {
    return Math.max(this.#intervals.stdDeviationMs, this.#options.minStdDeviationMs);
  }

  /**
   * A beat arrived at `nowMs`. The first one seeds the window with Akka's estimate (two intervals
   * at estimate ± estimate/4: mean = the expected interval, deviation = a quarter of it), so phi
   * is meaningful from the first beat on.
   *
   * An interval that was itself long enough to reach the threshold is not recorded, as in Akka:
   * it measures an outage (a partition, a stopped process), not the network's jitter, and one
   * such sample would inflate the deviation and slow every later detection.
   */
  heartbeat(nowMs: number): void {
    assertTime(nowMs);
    const last = this.#lastHeartbeatMs;
    if (last === undefined) {
      this.#bootstrap();
    } else {
      if (nowMs < last) {
        throw new RangeError(
          `a heartbeat at ${nowMs} ms is earlier than the previous one at ${last} ms; times must come from a monotonic clock`,
        );
      }
      const interval = nowMs - last;
      if (this.#phiAfter(interval) < this.#options.threshold) this.#intervals.add(interval);
    }
    this.#lastHeartbeatMs = nowMs;
    this.#touch(nowMs);
  }

  /**
   * Evidence of life other than a beat arrived at `nowMs` (a successful RPC from or to the peer):
   * phi measures silence from here on, but the interval statistics stay as the beats made them.
   * Before any beat, it seeds the window like a first beat would, so that a peer known only from
   * RPCs still becomes suspect when it falls silent.
   */
  observeLife(nowMs: number): void {
    assertTime(nowMs);
    this.#bootstrap();
    this.#touch(nowMs);
  }

  /**
   * The suspicion level at `nowMs`: 0 when the peer has never been heard from (as in Akka: the
   * detector has nothing to judge, and the caller decides what an unknown peer means). A time
   * before the last evidence counts as no silence at all.
   */
  phi(nowMs: number): number {
    assertTime(nowMs);
    const last = this.#lastLifeMs;
    if (last === undefined) return 0;
    return this.#phiAfter(Math.max(0, nowMs - last));
  }

  /** True while phi is below the threshold (and before the peer was ever heard from). */
  isAvailable(nowMs: number): boolean {
    return this.phi(nowMs) < this.#options.threshold;
  }

  /**
   * The time at which phi will reach the threshold if nothing more is heard, or undefined before
   * the peer was ever heard from. It moves only when a beat or other evidence arrives, so a
   * driver can set one timer for it instead of polling; the bench uses it to measure detection.
   */
  suspicionAtMs(): number | undefined {
    const last = this.#lastLifeMs;
    if (last === undefined) return undefined;
    return last + this.#intervals.meanMs + this.#options.acceptableHeartbeatPauseMs + this.#thresholdScore * this.stdDeviationMs;
  }

  #phiAfter(elapsedMs: number): number {
    const mean = this.#intervals.meanMs + this.#options.acceptableHeartbeatPauseMs;
    return phiOf(elapsedMs, mean, this.stdDeviationMs);
  }

  #bootstrap(): void {
    if (this.#intervals.count > 0) return;
    const estimate = this.#options.firstHeartbeatEstimateMs;
    const deviation = estimate / 4;
    this.#intervals.add(estimate - deviation);
    this.#intervals.add(estimate + deviation);
  }

  #touch(nowMs: number): void {
    this.#lastLifeMs = this.#lastLifeMs === undefined ? nowMs : Math.max(this.#lastLifeMs, nowMs);
  }
}

function assertTime(nowMs: number): void {
  if (!Number.isFinite(nowMs)) {
    throw new RangeError(`a time is a finite number of milliseconds, not ${nowMs}`);
  }
}
