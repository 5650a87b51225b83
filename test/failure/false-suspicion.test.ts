import { describe, expect, it } from 'vitest';
import { MembershipView, lanProfile } from '../../src/failure/index.js';
import type { MemberStateChange } from '../../src/failure/index.js';
import { JITTERY_LAN, beatArrivals } from './beat-schedule.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';

const TEN_MINUTES_MS = 10 * 60_000;
const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 42, 1234];

describe('a live peer with jittery beats', () => {
  it.each(SEEDS)(
    'is never suspected over 10 virtual minutes: beats every 100 ms ±50 ms, 1 %% held up to 200 ms (seed %i)',
    (seed) => {
      const config = lanProfile();
      const view = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: 'b:1' }], config, startMs: 0 });
      const changes: MemberStateChange[] = [];
      view.on('member-state', (change) => changes.push(change));
      const arrivals = beatArrivals(new SeededRandom(seed), JITTERY_LAN, 100, TEN_MINUTES_MS);

      // Ticks every tickIntervalMs, and phi measured just before each beat lands: the highest
      // phi of each gap, since phi only grows until the beat arrives.
      let maxPhi = 0;
      let next = 0;
      for (let tickAt = config.tickIntervalMs; tickAt <= TEN_MINUTES_MS; tickAt += config.tickIntervalMs) {
        for (let at = arrivals[next]; at !== undefined && at <= tickAt; at = arrivals[++next]) {
          if (next > 0) maxPhi = Math.max(maxPhi, view.detectorOf('b').phi(at));
          view.recordHeartbeat('b', 1, at);
        }
        view.tick(tickAt);
      }

      expect(changes.map((c) => c.to)).toEqual(['ALIVE']);
      expect(view.stateOf('b')).toBe('ALIVE');
      expect(maxPhi).toBeLessThan(config.phiThreshold);
      // A margin, not just a pass: the worst gap of ten minutes stays well short of phi 8.
      expect(maxPhi).toBeLessThan(config.phiThreshold / 2);
    },
  );
});
