import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IntervalWindow } from '../../src/failure/index.js';

/** The dumb reference: mean and population deviation of the last `capacity` samples, from scratch. */
function naive(samples: readonly number[], capacity: number): { mean: number; deviation: number } {
  const kept = samples.slice(-capacity);
  if (kept.length === 0) return { mean: 0, deviation: 0 };
  const mean = kept.reduce((s, x) => s + x, 0) / kept.length;
  const variance = kept.reduce((s, x) => s + (x - mean) ** 2, 0) / kept.length;
  return { mean, deviation: Math.sqrt(variance) };
}

describe('IntervalWindow', () => {
  it('agrees with a from-scratch mean and deviation of the last samples', () => {
    // The counterexample CI found (seed -1495923033) first, then random ones.
    const window = new IntervalWindow(3);
    for (const x of [0, 0, 0, 6505.19476450886, 9981.148515502036, 0, 0, 0]) window.add(x);
    expect(window.meanMs).toBe(0);
    expect(window.stdDeviationMs).toBeLessThan(1e-3);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.double({ min: 0, max: 10_000, noNaN: true }), { maxLength: 300 }),
        (capacity, samples) => {
          const window = new IntervalWindow(capacity);
          for (const sample of samples) window.add(sample);
          const reference = naive(samples, capacity);
          expect(window.count).toBe(Math.min(samples.length, capacity));
          expect(window.toArray()).toEqual(samples.slice(-capacity));
          expect(window.meanMs).toBeCloseTo(reference.mean, 6);
          // The variance, to within rounding of the largest squares it ever summed: E[x²] − E[x]²
          // of running sums cannot do better, and a deviation is that error's square root (a
          // window of zeros after values near 10,000 once read 7e-5 ms, failing a fixed
          // 4-decimal bound on the deviation; the detector floors it at minStdDeviationMs).
          const scale = Math.max(1, ...samples.map((x) => x * x));
          expect(Math.abs(window.stdDeviationMs ** 2 - reference.deviation ** 2)).toBeLessThanOrEqual(1e-12 * scale);
        },
      ),
    );
  });

  it('keeps its sums exact over many windows of eviction', () => {
    const window = new IntervalWindow(10);
    for (let i = 0; i < 1_000_000; i += 1) window.add(100 + (i % 7) * 0.1);
    expect(window.meanMs).toBeCloseTo(naive(window.toArray(), 10).mean, 9);
  });

  it('refuses a negative or non-finite interval and a non-positive capacity', () => {
    expect(() => new IntervalWindow(0)).toThrow(RangeError);
    const window = new IntervalWindow(3);
    expect(() => window.add(-1)).toThrow(RangeError);
    expect(() => window.add(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });
});
