import { describe, expect, it } from 'vitest';
import { MembershipView, lanProfile } from '../../src/failure/index.js';
import type { MemberStateChange, QuorumChange } from '../../src/failure/index.js';

const config = lanProfile();

function threeNodes() {
  const view = new MembershipView({
    selfId: 'a',
    peers: [{ id: 'b', address: 'b:1' }, { id: 'c', address: 'c:1' }],
    config,
    startMs: 0,
  });
  const changes: MemberStateChange[] = [];
  const quorum: QuorumChange[] = [];
  view.on('member-state', (change) => changes.push(change));
  view.on('quorum-lost', (change) => quorum.push(change));
  view.on('quorum-regained', (change) => quorum.push(change));
  view.trackQuorum('ks', ['a', 'b', 'c']);
  return { view, changes, quorum };
}

/** Regular beats from `peers` every 100 ms in (from, until], ticking at each. */
function beat(view: MembershipView, peers: readonly string[], fromMs: number, untilMs: number): void {
  for (let t = fromMs + 100; t <= untilMs; t += 100) {
    for (const peer of peers) view.recordHeartbeat(peer, 1, t);
    view.tick(t);
  }
}

describe('passive evidence from RPCs', () => {
  it('a success keeps a peer ALIVE through silent beats without touching the interval statistics', () => {
    const { view } = threeNodes();
    beat(view, ['b', 'c'], 0, 5000);
    const detector = view.detectorOf('b');
    const [count, mean, deviation] = [detector.sampleCount, detector.meanIntervalMs, detector.stdDeviationMs];
    // b's beats stop at 5 s, but calls to it keep succeeding every 20 ms until 8 s.
    for (let t = 5020; t <= 8000; t += 20) {
      view.recordEvidence('b', true, t);
      view.recordHeartbeat('c', 1, Math.ceil(t / 100) * 100);
      view.tick(t);
    }
    expect(view.stateOf('b')).toBe('ALIVE');
    expect([detector.sampleCount, detector.meanIntervalMs, detector.stdDeviationMs]).toEqual([count, mean, deviation]);
    expect(detector.lastHeartbeatMs).toBe(5000);
    expect(view.member('b', 8000).lastHeardAgeMs).toBe(0);
    // Silence measured from the last success: suspicion when the detector says, not before.
    const due = detector.suspicionAtMs() ?? 0;
    view.tick(due - 1);
    expect(view.stateOf('b')).toBe('ALIVE');
    view.tick(due);
    expect(view.stateOf('b')).toBe('SUSPECT');
  });

  it('a success returns a SUSPECT or DEAD peer to ALIVE', () => {
    const { view, changes } = threeNodes();
    beat(view, ['b', 'c'], 0, 1000);
    view.tick(2000);
    expect(view.stateOf('b')).toBe('SUSPECT');
    view.recordEvidence('b', true, 2010);
    expect(changes.at(-1)).toMatchObject({ peer: 'b', from: 'SUSPECT', to: 'ALIVE', cause: 'call-succeeded' });
    view.tick(4000);
    view.tick(5000);
    expect(view.stateOf('b')).toBe('DEAD');
    view.recordEvidence('b', true, 5001);
    expect(view.stateOf('b')).toBe('ALIVE');
  });

  it('a success from a peer never heard from makes it ALIVE, and silence makes it DEAD again', () => {
    const { view } = threeNodes();
    view.recordEvidence('b', true, 50);
    expect(view.stateOf('b')).toBe('ALIVE');
    expect(view.member('b', 50).incarnation).toBeUndefined();
    for (let t = 60; t <= 2000; t += config.tickIntervalMs) view.tick(t);
    expect(view.stateOf('b')).toBe('DEAD');
  });

  it('a failure with nothing heard during the call makes an ALIVE peer SUSPECT at once, and the quorum check sees it', () => {
    const { view, changes, quorum } = threeNodes();
    beat(view, ['b', 'c'], 0, 3000);
    // c crashed quietly at 3 s; a call to b that started at 3010 fails at 3040 (connection refused).
    for (let t = 3010; t <= 5000; t += 10) {
      if (t % 100 === 0) view.recordHeartbeat('b', 1, t);
      view.tick(t);
    }
    expect(view.stateOf('c')).toBe('DEAD');
    expect(view.isQuorumReachable('ks')).toBe(true);
    view.recordEvidence('b', false, 5040, 5010);
    expect(changes.at(-1)).toMatchObject({ peer: 'b', from: 'ALIVE', to: 'SUSPECT', cause: 'call-failed', atMs: 5040 });
    expect(view.isQuorumReachable('ks')).toBe(false);
    expect(quorum.at(-1)).toMatchObject({ name: 'ks', to: 'unreachable', aliveCount: 1, atMs: 5040 });
    // b is alive after all: its next beat clears the suspicion and the quorum comes back.
    view.recordHeartbeat('b', 1, 5100);
    expect(view.stateOf('b')).toBe('ALIVE');
    expect(quorum.at(-1)).toMatchObject({ to: 'reachable', aliveCount: 2 });
  });

  it('a failed call during which the peer was heard from says nothing about the peer', () => {
    const { view, changes } = threeNodes();
    beat(view, ['b', 'c'], 0, 3000);
    const count = changes.length;
    // A call started at 2500 timed out at 3000, while b's beats kept arriving.
    view.recordEvidence('b', false, 3000, 2500);
    expect(view.stateOf('b')).toBe('ALIVE');
    expect(changes.length).toBe(count);
  });

  it('a failure leaves a SUSPECT peer suspected since the start, and DEAD follows deadAfterMs after the failure', () => {
    const { view } = threeNodes();
    beat(view, ['b', 'c'], 0, 1000);
    view.recordEvidence('b', false, 1010);
    expect(view.stateOf('b')).toBe('SUSPECT');
    view.recordEvidence('b', false, 1200); // does not restart the confirmation
    view.tick(1010 + config.deadAfterMs - 1);
    expect(view.stateOf('b')).toBe('SUSPECT');
    view.tick(1010 + config.deadAfterMs);
    expect(view.stateOf('b')).toBe('DEAD');
    view.recordEvidence('b', false, 1400);
    expect(view.stateOf('b')).toBe('DEAD');
  });

  it('a failure from a peer never heard from leaves it DEAD', () => {
    const { view, changes } = threeNodes();
    view.recordEvidence('b', false, 10);
    expect(view.stateOf('b')).toBe('DEAD');
    expect(changes).toEqual([]);
  });
});
