import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhiAccrualDetector, phiOf } from '../../src/failure/index.js';
import type { PhiAccrualDetectorOptions } from '../../src/failure/index.js';

const BARE: PhiAccrualDetectorOptions = {
  threshold: 8,
  maxSampleSize: 1000,
  minStdDeviationMs: 1,
  acceptableHeartbeatPauseMs: 0,
  firstHeartbeatEstimateMs: 100,
};

describe('PhiAccrualDetector', () => {
  it('is available with phi 0 before the first beat, as in Akka', () => {
    const detector = new PhiAccrualDetector(BARE);
    expect(detector.phi(1_000_000)).toBe(0);
    expect(detector.isAvailable(1_000_000)).toBe(true);
    expect(detector.lastHeartbeatMs).toBeUndefined();
    expect(detector.suspicionAtMs()).toBeUndefined();
  });

  it('bootstraps from the expected interval: mean = interval, deviation = interval / 4', () => {
    const detector = new PhiAccrualDetector(BARE);
    detector.heartbeat(1000);
    expect(detector.lastHeartbeatMs).toBe(1000);
    expect(detector.sampleCount).toBe(2);
    expect(detector.meanIntervalMs).toBe(100);
    expect(detector.stdDeviationMs).toBe(25);
    // The hand-computed values of phi.test.ts, now through the detector: y = (elapsed − 100) / 25.
    expect(detector.phi(1100)).toBeCloseTo(0.30103, 5);
    expect(detector.phi(1150)).toBeCloseTo(1.64283, 4);
    expect(detector.phi(1200)).toBeCloseTo(4.73669, 4);
    expect(detector.phi(1250)).toBeCloseTo(10.7826, 4);
  });

  it('adds the acceptable pause to the mean and floors the deviation', () => {
    const detector = new PhiAccrualDetector({ ...BARE, acceptableHeartbeatPauseMs: 200, minStdDeviationMs: 40 });
    for (let t = 0; t <= 10_000; t += 100) detector.heartbeat(t); // perfectly regular: measured deviation → ~0
    expect(detector.stdDeviationMs).toBe(40);
    const mean = detector.meanIntervalMs;
    // At mean + pause the standard score is 0: phi = log10 2, whatever the deviation.
    expect(detector.phi(10_000 + mean + 200)).toBeCloseTo(Math.log10(2), 9);
    expect(detector.phi(10_000 + 500)).toBeCloseTo(phiOf(500, mean + 200, 40), 12);
  });

  it('grows monotonically with the time since the last beat, whatever the history', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1000, noNaN: true }), { minLength: 1, maxLength: 100 }),
        fc.array(fc.double({ min: 0, max: 5000, noNaN: true }), { minLength: 2, maxLength: 20 }),
        (intervals, probes) => {
          const detector = new PhiAccrualDetector({ ...BARE, acceptableHeartbeatPauseMs: 50, minStdDeviationMs: 10 });
          let t = 0;
          detector.heartbeat(t);
          for (const interval of intervals) detector.heartbeat((t += interval));
          let previous = -1;
          for (const offset of [...probes].sort((a, b) => a - b)) {
            const phi = detector.phi(t + offset);
            expect(phi).toBeGreaterThanOrEqual(previous);
            previous = phi;
          }
        },
      ),
    );
  });

  it('does not record an interval that itself reached the threshold (an outage, not jitter)', () => {
    const detector = new PhiAccrualDetector(BARE);
    for (let t = 0; t <= 5000; t += 100) detector.heartbeat(t);
    const count = detector.sampleCount;
    const mean = detector.meanIntervalMs;
    detector.heartbeat(5000 + 10_000); // ten seconds of silence, then a beat
    expect(detector.sampleCount).toBe(count);
    expect(detector.meanIntervalMs).toBe(mean);
    expect(detector.phi(15_000)).toBeLessThan(1);
    detector.heartbeat(15_100);
    expect(detector.sampleCount).toBe(count + 1);
  });

  it('measures silence from other evidence of life without adding intervals', () => {
    const beatsOnly = new PhiAccrualDetector(BARE);
    const withLife = new PhiAccrualDetector(BARE);
    for (let t = 0; t <= 10_000; t += 100) {
      beatsOnly.heartbeat(t);
      withLife.heartbeat(t);
      for (let rpc = t + 1; rpc < t + 100; rpc += 7) withLife.observeLife(rpc); // a busy RPC stream
    }
    expect(withLife.sampleCount).toBe(beatsOnly.sampleCount);
    expect(withLife.meanIntervalMs).toBe(beatsOnly.meanIntervalMs);
    expect(withLife.stdDeviationMs).toBe(beatsOnly.stdDeviationMs);
    withLife.observeLife(10_150);
    expect(withLife.lastHeartbeatMs).toBe(10_000);
    expect(withLife.lastLifeMs).toBe(10_150);
    expect(withLife.phi(10_250)).toBeCloseTo(beatsOnly.phi(10_100), 12);
  });

  it('seeds the window from evidence of life before any beat', () => {
    const detector = new PhiAccrualDetector(BARE);
    detector.observeLife(500);
    expect(detector.sampleCount).toBe(2);
    expect(detector.lastHeartbeatMs).toBeUndefined();
    expect(detector.phi(600)).toBeCloseTo(Math.log10(2), 9);
    // The first real beat adds no interval measured from the evidence.
    detector.heartbeat(520);
    expect(detector.sampleCount).toBe(2);
  });

  it('predicts when phi reaches the threshold', () => {
    const detector = new PhiAccrualDetector({ ...BARE, acceptableHeartbeatPauseMs: 200, minStdDeviationMs: 25 });
    for (let t = 0; t <= 3000; t += 100) detector.heartbeat(t + (t % 300 === 0 ? 30 : 0));
    const at = detector.suspicionAtMs();
    expect(at).toBeDefined();
    expect(detector.phi(at ?? 0)).toBeCloseTo(8, 9);
    expect(detector.isAvailable((at ?? 0) - 0.01)).toBe(true);
    expect(detector.isAvailable((at ?? 0) + 0.01)).toBe(false);
  });

  it('refuses a beat earlier than the previous one, and non-finite times', () => {
    const detector = new PhiAccrualDetector(BARE);
    detector.heartbeat(1000);
    expect(() => detector.heartbeat(999)).toThrow(/999 ms is earlier than the previous one at 1000 ms/);
    expect(() => detector.phi(Number.NaN)).toThrow(RangeError);
    // A query before the last beat is no silence at all, not an error.
    expect(detector.phi(900)).toBe(detector.phi(1000));
  });

  it('refuses options that would make phi meaningless', () => {
    expect(() => new PhiAccrualDetector({ ...BARE, minStdDeviationMs: 0 })).toThrow(/minStdDeviationMs/);
    expect(() => new PhiAccrualDetector({ ...BARE, threshold: -1 })).toThrow(/threshold/);
    expect(() => new PhiAccrualDetector({ ...BARE, acceptableHeartbeatPauseMs: -1 })).toThrow(/acceptableHeartbeatPauseMs/);
    expect(() => new PhiAccrualDetector({ ...BARE, maxSampleSize: 0 })).toThrow(RangeError);
  });
});
