/**
 * The one load generator every system is driven by: `concurrency` callers in a closed loop (each
 * issues its next call as soon as the previous one ends) for a fixed time, after a warm-up that is
 * not measured. Latencies go into an HDR histogram in microseconds, so p50 / p99 are exact to
 * three significant digits whatever the number of calls, in constant memory.
 */
import { build, type Histogram } from 'hdr-histogram-js';

/** The largest latency the histogram tracks: one minute, far beyond any call's deadline. */
const HIGHEST_TRACKABLE_US = 60_000_000;
/** Three significant digits: 0.1 % resolution at every magnitude. */
const SIGNIFICANT_DIGITS = 3;

/**
 * What a conditional op (compare-and-set) resolves to when its compare did not hold: the call
 * worked, but nothing was swapped, so it counts in `failedCompares`, neither as an op nor as an error.
 */
export const COMPARE_FAILED: unique symbol = Symbol('compare failed');

/**
 * One call of the system under test; `n` counts calls across callers, `caller` is 0..concurrency-1.
 * It resolves when the call succeeded (to anything but {@link COMPARE_FAILED}) and rejects when it failed.
 */
export type LoadOp = (n: number, caller: number) => Promise<unknown>;

export interface LoadOptions {
  /** Callers running at once. */
  readonly concurrency: number;
  /** How long calls are measured, after the warm-up. */
  readonly durationMs: number;
  /** How long calls run before measuring starts (connections, JIT, caches). @default 0 */
  readonly warmupMs?: number;
  /** Where time comes from; injectable for tests. @default performance.now */
  readonly now?: () => number;
  /** Called once when the measured window opens (e.g. to read CPU counters). */
  readonly onWindowStart?: () => void;
  /** Called once when the measured window closes, before the calls still in flight are awaited. */
  readonly onWindowEnd?: () => void;
}

export interface LoadResult {
  /** Calls that succeeded (for compare-and-set: that swapped) and ended inside the measured window. */
  readonly ops: number;
  /** Calls that failed inside the measured window. */
  readonly errors: number;
  /**
   * Calls that answered {@link COMPARE_FAILED} inside the measured window: not in `ops`, nor in
   * the latencies. Absent in results made before conditional ops existed.
   */
  readonly failedCompares?: number;
  /** The first failure's message, so a failing system is never reported as merely slow. */
  readonly firstError?: string;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** A fresh latency histogram in microseconds. */
export function latencyHistogram(): Histogram {
  return build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_TRACKABLE_US,
    numberOfSignificantValueDigits: SIGNIFICANT_DIGITS,
  });
}

/**
 * Runs `op` from `concurrency` callers for `warmupMs + durationMs`. Only calls that end inside the
 * measured window count, so throughput is the completion rate over the window (at a steady state
 * that is the rate of service, with no bias from calls that straddle either edge). A call still in
 * flight when the time is up is awaited, so `op` should carry a deadline.
 */
export async function runLoad(op: LoadOp, options: LoadOptions): Promise<LoadResult> {
  const { concurrency, durationMs } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, not ${concurrency}`);
  if (!(durationMs > 0)) throw new RangeError(`durationMs must be positive, not ${durationMs}`);
  const now = options.now ?? (() => performance.now());
  const histogram = latencyHistogram();
  let errors = 0;
  let failedCompares = 0;
  let firstError: string | undefined;
  let n = 0;
  const start = now();
  const measureFrom = start + (options.warmupMs ?? 0);
  const end = measureFrom + durationMs;
  let opened = false;
  let closed = false;
  const caller = async (index: number): Promise<void> => {
    for (;;) {
      const t0 = now();
      if (!opened && t0 >= measureFrom) {
        opened = true;
        options.onWindowStart?.();
      }
      if (t0 >= end) {
        if (!closed) {
          closed = true;
          options.onWindowEnd?.();
        }
        return;
      }
      try {
        const answer = await op(n++, index);
        const t1 = now();
        if (t1 >= measureFrom && t1 < end) {
          if (answer === COMPARE_FAILED) failedCompares++;
          else histogram.recordValue(Math.max(1, Math.round((t1 - t0) * 1000)));
        }
      } catch (err: unknown) {
        const t1 = now();
        if (t1 >= measureFrom && t1 < end) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
        // A system that fails at once must not spin the loop in microtasks and starve the timers
        // (progress, watchdog) for the whole phase.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => caller(i)));
  const result = summarize(histogram, errors, durationMs, firstError, failedCompares);
  histogram.destroy();
  return result;
}

/** Turns a histogram of one measured window into a result. */
export function summarize(histogram: Histogram, errors: number, windowMs: number, firstError?: string, failedCompares = 0): LoadResult {
  const ops = histogram.totalCount;
  const pct = (p: number) => (ops === 0 ? NaN : histogram.getValueAtPercentile(p) / 1000);
  return {
    ops,
    errors,
    failedCompares,
    ...(firstError === undefined ? {} : { firstError }),
    opsPerSec: (ops / windowMs) * 1000,
    p50Ms: pct(50),
    p99Ms: pct(99),
    maxMs: ops === 0 ? NaN : histogram.maxValue / 1000,
  };
}
