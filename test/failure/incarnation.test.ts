import { describe, expect, it } from 'vitest';
import { MembershipView, lanProfile } from '../../src/failure/index.js';
import type { MemberStateChange } from '../../src/failure/index.js';
import { JITTER_ONLY_LAN, beatArrivals } from './beat-schedule.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';

/** a's view of b after 10 s of jittery beats of incarnation 1 and 5 s of silence: b is DEAD. */
function deadPeer() {
  const config = lanProfile();
  const view = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: 'b:1' }], config, startMs: 0 });
  const changes: MemberStateChange[] = [];
  view.on('member-state', (change) => changes.push(change));
  const arrivals = beatArrivals(new SeededRandom(7), JITTER_ONLY_LAN, 100, 10_000);
  for (const at of arrivals) {
    view.recordHeartbeat('b', 1, at);
    view.tick(at);
  }
  for (let t = 10_000; t <= 15_000; t += config.tickIntervalMs) view.tick(t);
  expect(view.stateOf('b')).toBe('DEAD');
  return { view, changes, lastBeatMs: arrivals[arrivals.length - 1] ?? 0 };
}

describe('incarnations', () => {
  it('a higher incarnation returns a DEAD peer to ALIVE and resets its statistics', () => {
    const { view, changes } = deadPeer();
    const before = view.detectorOf('b');
    expect(before.sampleCount).toBeGreaterThan(90);
    expect(before.stdDeviationMs).toBeGreaterThan(30); // ±50 ms jitter, not the bootstrap's 25 ms

    expect(view.recordHeartbeat('b', 2, 15_000)).toBe('new-incarnation');
    expect(view.stateOf('b')).toBe('ALIVE');
    expect(changes.at(-1)).toMatchObject({ peer: 'b', from: 'DEAD', to: 'ALIVE', cause: 'new-incarnation', incarnation: 2, atMs: 15_000 });
    const after = view.detectorOf('b');
    expect(after).not.toBe(before);
    expect(after.sampleCount).toBe(2);
    expect(after.meanIntervalMs).toBe(100);
    expect(after.stdDeviationMs).toBe(25);
    expect(view.member('b', 15_000).incarnation).toBe(2);
  });

  it('a higher incarnation resets an ALIVE peer without a state change', () => {
    const config = lanProfile();
    const view = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: '' }], config, startMs: 0 });
    for (let t = 100; t <= 2000; t += 100) view.recordHeartbeat('b', 5, t);
    const changes: MemberStateChange[] = [];
    view.on('member-state', (change) => changes.push(change));
    expect(view.recordHeartbeat('b', 6, 2100)).toBe('new-incarnation');
    expect(changes).toEqual([]);
    expect(view.detectorOf('b').sampleCount).toBe(2);
  });

  it('a lower incarnation is ignored as stale: no life, no state change, no statistics', () => {
    const { view, changes, lastBeatMs } = deadPeer();
    const count = changes.length;
    expect(view.recordHeartbeat('b', 0, 15_000)).toBe('stale');
    expect(view.stateOf('b')).toBe('DEAD');
    expect(changes.length).toBe(count);
    expect(view.member('b', 15_000).lastHeardAgeMs).toBeCloseTo(15_000 - lastBeatMs, 9);

    view.recordHeartbeat('b', 3, 15_100);
    const detector = view.detectorOf('b');
    expect(view.recordHeartbeat('b', 2, 15_200)).toBe('stale');
    expect(view.detectorOf('b')).toBe(detector);
    expect(detector.lastHeartbeatMs).toBe(15_100);
    expect(view.member('b', 15_200).incarnation).toBe(3);
  });

  it('the same incarnation after a silence returns the peer to ALIVE and keeps its statistics', () => {
    const { view, changes } = deadPeer();
    const detector = view.detectorOf('b');
    const count = detector.sampleCount;
    expect(view.recordHeartbeat('b', 1, 15_000)).toBe('accepted');
    expect(view.stateOf('b')).toBe('ALIVE');
    expect(changes.at(-1)).toMatchObject({ from: 'DEAD', to: 'ALIVE', cause: 'heartbeat' });
    expect(view.detectorOf('b')).toBe(detector);
    expect(detector.sampleCount).toBe(count); // the 5 s gap was an outage, not a sample
  });

  it('refuses an incarnation that is not a non-negative integer', () => {
    const view = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: '' }], config: lanProfile(), startMs: 0 });
    expect(() => view.recordHeartbeat('b', -1, 10)).toThrow(RangeError);
    expect(() => view.recordHeartbeat('b', 1.5, 10)).toThrow(RangeError);
  });
});
