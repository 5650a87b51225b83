import { describe, expect, it } from 'vitest';
import { MembershipView, lanProfile } from '../../src/failure/index.js';
import type { QuorumChange } from '../../src/failure/index.js';

const config = lanProfile();
const START_MS = 50_000;

function fiveNodes() {
  const view = new MembershipView({
    selfId: 'a',
    peers: ['b', 'c', 'd', 'e'].map((id) => ({ id, address: `${id}:7000` })),
    config,
    startMs: START_MS,
  });
  const quorum: QuorumChange[] = [];
  view.on('quorum-lost', (change) => quorum.push(change));
  view.on('quorum-regained', (change) => quorum.push(change));
  return { view, quorum };
}

describe('startup', () => {
  it('peers never heard from are DEAD and not alive, but a quorum they could complete is pending', () => {
    const { view } = fiveNodes();
    expect(view.stateOf('b')).toBe('DEAD');
    expect(view.aliveCount()).toBe(1);
    expect(view.member('b', START_MS).lastHeardAgeMs).toBeUndefined();
    const status = view.trackQuorum('ks', ['a', 'b', 'c', 'd', 'e']);
    expect(status).toMatchObject({ state: 'pending', aliveCount: 1, pendingCount: 4, quorumSize: 3, replicaCount: 5 });
    expect(view.isQuorumReachable('ks')).toBe(false);
  });

  it('first beats make the quorum reachable, with an event that says it came from pending', () => {
    const { view, quorum } = fiveNodes();
    view.trackQuorum('ks', ['a', 'b', 'c', 'd', 'e']);
    view.recordHeartbeat('b', 1, START_MS + 120);
    expect(view.quorum('ks')).toMatchObject({ state: 'pending', aliveCount: 2, pendingCount: 3 });
    expect(quorum).toEqual([]);
    view.recordHeartbeat('c', 1, START_MS + 130);
    expect(view.isQuorumReachable('ks')).toBe(true);
    expect(quorum).toEqual([
      { name: 'ks', from: 'pending', to: 'reachable', aliveCount: 3, quorumSize: 3, replicaCount: 5, atMs: START_MS + 130 },
    ]);
  });

  it('when the grace period ends without enough beats, the quorum is lost', () => {
    const { view, quorum } = fiveNodes();
    view.trackQuorum('ks', ['a', 'b', 'c', 'd', 'e']);
    for (let t = START_MS; t < START_MS + config.startupGraceMs; t += config.tickIntervalMs) {
      if ((t - START_MS) % 100 === 0) view.recordHeartbeat('b', 1, t + 1);
      view.tick(t);
    }
    expect(view.quorum('ks').state).toBe('pending');
    expect(quorum).toEqual([]);
    view.tick(START_MS + config.startupGraceMs);
    expect(view.quorum('ks')).toMatchObject({ state: 'unreachable', pendingCount: 0, aliveCount: 2 });
    expect(quorum).toEqual([
      { name: 'ks', from: 'pending', to: 'unreachable', aliveCount: 2, quorumSize: 3, replicaCount: 5, atMs: START_MS + config.startupGraceMs },
    ]);
  });

  it('a peer heard from and then lost during the grace period is not pending', () => {
    const { view } = fiveNodes();
    view.trackQuorum('ks', ['a', 'b', 'c']);
    view.recordHeartbeat('b', 1, START_MS + 100);
    view.recordEvidence('b', false, START_MS + 150);
    expect(view.stateOf('b')).toBe('SUSPECT');
    expect(view.quorum('ks')).toMatchObject({ state: 'pending', aliveCount: 1, pendingCount: 1 });
  });
});

describe('trackQuorum', () => {
  it('takes any subset and quorum size, by default a majority', () => {
    const { view } = fiveNodes();
    expect(view.trackQuorum('pair', ['b', 'c']).quorumSize).toBe(2);
    expect(view.trackQuorum('one-of-two', ['a', 'b'], 1).state).toBe('reachable');
    expect(view.untrackQuorum('pair')).toBe(true);
    expect(() => view.quorum('pair')).toThrow(/not tracked/);
  });

  it('refuses unknown members, duplicates, bad sizes and a name tracked twice', () => {
    const { view } = fiveNodes();
    expect(() => view.trackQuorum('x', ['a', 'z'])).toThrow(/"z", which is not a member/);
    expect(() => view.trackQuorum('x', ['a', 'a'])).toThrow(/twice/);
    expect(() => view.trackQuorum('x', ['a', 'b'], 3)).toThrow(/quorumSize \(3\) of "x" must be an integer from 1 to its replica count \(2\)/);
    expect(() => view.trackQuorum('x', [])).toThrow(/at least one replica/);
    view.trackQuorum('x', ['a']);
    expect(() => view.trackQuorum('x', ['a'])).toThrow(/already tracked/);
  });
});
