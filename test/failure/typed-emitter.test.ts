import { describe, expect, it } from 'vitest';
import { MembershipView, TypedEmitter, lanProfile } from '../../src/failure/index.js';

interface Events {
  ping: { n: number };
  pong: string;
}

describe('TypedEmitter', () => {
  it('calls listeners in order, once each, and removes them', () => {
    const emitter = new TypedEmitter<Events>();
    const seen: string[] = [];
    const first = (e: { n: number }) => seen.push(`first ${e.n}`);
    const off = emitter.on('ping', first);
    emitter.on('ping', first);
    emitter.on('ping', (e) => seen.push(`second ${e.n}`));
    emitter.emit('ping', { n: 1 });
    off();
    emitter.emit('ping', { n: 2 });
    emitter.emit('pong', 'nobody listens');
    expect(seen).toEqual(['first 1', 'second 1', 'second 2']);
    expect(emitter.listenerCount('ping')).toBe(1);
  });

  it('runs every listener even when one throws, then rethrows', () => {
    const emitter = new TypedEmitter<Events>();
    const seen: number[] = [];
    emitter.on('ping', () => {
      throw new Error('faulty');
    });
    emitter.on('ping', (e) => seen.push(e.n));
    expect(() => emitter.emit('ping', { n: 7 })).toThrow('faulty');
    expect(seen).toEqual([7]);
  });
});

describe('MembershipView events', () => {
  it('are delivered after the view is consistent, even to a listener that throws', () => {
    const view = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: '' }], config: lanProfile(), startMs: 0 });
    view.trackQuorum('ks', ['a', 'b']);
    const seen: string[] = [];
    view.on('member-state', () => {
      // The quorum is already up to date when the member's change is announced.
      seen.push(`member: quorum ${view.quorum('ks').state}`);
      throw new Error('listener bug');
    });
    view.on('quorum-regained', (e) => seen.push(`quorum ${e.from}->${e.to}`));
    expect(() => view.recordHeartbeat('b', 1, 100)).toThrow('listener bug');
    expect(seen).toEqual(['member: quorum reachable', 'quorum pending->reachable']);
    expect(view.stateOf('b')).toBe('ALIVE');
  });

  it('snapshots every member, self first, without changing state', () => {
    const view = new MembershipView({
      selfId: 'a',
      selfAddress: 'a:7000',
      selfIncarnation: 3,
      peers: [{ id: 'b', address: 'b:7000' }],
      config: lanProfile(),
      startMs: 0,
    });
    view.recordHeartbeat('b', 9, 100);
    const [self, b] = view.members(5000);
    expect(self).toEqual({
      id: 'a',
      address: 'a:7000',
      self: true,
      state: 'ALIVE',
      phi: 0,
      lastHeardAgeMs: 0,
      rttMs: 0,
      clockOffsetMs: 0,
      clockOffsetExceeded: false,
      incarnation: 3,
    });
    expect(b).toMatchObject({ id: 'b', address: 'b:7000', self: false, state: 'ALIVE', lastHeardAgeMs: 4900, incarnation: 9 });
    expect(b?.phi).toBeGreaterThan(8); // stale, but members() is a query: only tick changes states
    expect(view.stateOf('b')).toBe('ALIVE');
  });

  it('treats an input older than one already seen as happening at the latest time', () => {
    const view = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: '' }], config: lanProfile(), startMs: 0 });
    view.recordHeartbeat('b', 1, 1000);
    view.tick(1200);
    view.recordHeartbeat('b', 1, 1150); // read the clock before the tick, arrived after it
    expect(view.detectorOf('b').lastHeartbeatMs).toBe(1200);
  });

  it('refuses unknown peers, itself as a peer and duplicate peers', () => {
    const view = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: '' }], config: lanProfile(), startMs: 0 });
    expect(() => view.recordHeartbeat('z', 1, 10)).toThrow(/"z" is not a peer/);
    expect(() => view.recordHeartbeat('a', 1, 10)).toThrow(/"a" is this node/);
    expect(view.isAlive('a')).toBe(true);
    expect(() => new MembershipView({ selfId: 'a', peers: [{ id: 'a', address: '' }], config: lanProfile(), startMs: 0 })).toThrow(/itself/);
    expect(
      () => new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: '' }, { id: 'b', address: '' }], config: lanProfile(), startMs: 0 }),
    ).toThrow(/twice/);
  });
});
