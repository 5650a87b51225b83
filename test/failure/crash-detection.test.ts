import { describe, expect, it } from 'vitest';
import { MembershipView, lanProfile, localProfile } from '../../src/failure/index.js';
import type { FailureDetectorConfig, MemberStateChange } from '../../src/failure/index.js';
import { JITTER_ONLY_LAN, beatArrivals } from './beat-schedule.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { deliveriesOf, runVirtual } from './virtual-time.js';

const SEEDS = Array.from({ length: 20 }, (_, i) => i + 1);
const CRASH_AT_MS = 60_000;

/** Beats from b every interval ± jitter until it crashes at 60 s; returns a's view of b over time. */
function crashRun(config: FailureDetectorConfig, seed: number) {
  const view = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: 'b:1' }], config, startMs: 0 });
  const changes: MemberStateChange[] = [];
  view.on('member-state', (change) => changes.push(change));
  // Jitter in proportion to the interval: ±50 ms on 100 ms beats, ±25 ms on the local profile's 50 ms.
  const scale = config.heartbeatIntervalMs / JITTER_ONLY_LAN.intervalMs;
  const jitter = { ...JITTER_ONLY_LAN, intervalMs: config.heartbeatIntervalMs, jitterMs: JITTER_ONLY_LAN.jitterMs * scale };
  const arrivals = beatArrivals(new SeededRandom(seed), jitter, config.heartbeatIntervalMs, CRASH_AT_MS);
  runVirtual([view], deliveriesOf(arrivals, view, 'b'), { fromMs: 0, untilMs: CRASH_AT_MS + 5000, tickIntervalMs: config.tickIntervalMs });
  const lastBeatMs = arrivals[arrivals.length - 1] ?? 0;
  const after = changes.filter((c) => c.atMs > lastBeatMs);
  return { view, lastBeatMs, changes, after };
}

describe('a crashed peer', () => {
  it.each(SEEDS)('is DEAD within 1 s of its last beat on the LAN profile (seed %i)', (seed) => {
    const config = lanProfile();
    const { view, lastBeatMs, changes, after } = crashRun(config, seed);
    // Before the crash it never left ALIVE: one change, DEAD → ALIVE on the first beat.
    expect(changes.filter((c) => c.atMs <= lastBeatMs).map((c) => c.to)).toEqual(['ALIVE']);
    expect(after.map((c) => [c.from, c.to, c.cause])).toEqual([
      ['ALIVE', 'SUSPECT', 'phi'],
      ['SUSPECT', 'DEAD', 'confirmed'],
    ]);
    const [suspect, dead] = after;
    const suspectAfterMs = (suspect?.atMs ?? Infinity) - lastBeatMs;
    const deadAfterMs = (dead?.atMs ?? Infinity) - lastBeatMs;
    // Suspicion comes when phi reaches 8, as the detector predicts, within one tick.
    const predicted = (view.detectorOf('b').suspicionAtMs() ?? 0) - lastBeatMs;
    expect(suspectAfterMs).toBeGreaterThanOrEqual(predicted);
    expect(suspectAfterMs).toBeLessThan(predicted + config.tickIntervalMs);
    // DEAD follows after deadAfterMs, within one more tick, and all of it within a second.
    expect(deadAfterMs - suspectAfterMs).toBeGreaterThanOrEqual(config.deadAfterMs);
    expect(deadAfterMs - suspectAfterMs).toBeLessThan(config.deadAfterMs + config.tickIntervalMs);
    expect(deadAfterMs).toBeGreaterThan(config.heartbeatIntervalMs + config.acceptableHeartbeatPauseMs + config.deadAfterMs);
    expect(deadAfterMs).toBeLessThan(1000);
    expect(dead?.cause).toBe('confirmed');
    expect(view.isAlive('b')).toBe(false);
  });

  it('is DEAD within about 0.5 s on the local profile (beats every 50 ms ±25 ms)', () => {
    const config = localProfile();
    for (const seed of SEEDS) {
      const { lastBeatMs, after } = crashRun(config, seed);
      const dead = after.find((c) => c.to === 'DEAD');
      expect((dead?.atMs ?? Infinity) - lastBeatMs).toBeLessThan(550);
    }
  });

  it('reports the measured times (for the record)', () => {
    const measured = SEEDS.map((seed) => {
      const { lastBeatMs, after } = crashRun(lanProfile(), seed);
      return (after.find((c) => c.to === 'DEAD')?.atMs ?? Infinity) - lastBeatMs;
    });
    const worst = Math.max(...measured);
    const mean = measured.reduce((s, x) => s + x, 0) / measured.length;
    console.info(`LAN profile, ±50 ms jitter: last beat → DEAD mean ${mean.toFixed(0)} ms, worst ${worst.toFixed(0)} ms over ${SEEDS.length} seeds`);
    expect(worst).toBeLessThan(1000);
  });
});
