import { describe, expect, it } from 'vitest';
import type { MemberSnapshot, QuorumStatus } from '../../src/failure/index.js';
import { judgeHealth } from '../../src/ops/health.js';

const member = (id: string, over: Partial<MemberSnapshot> = {}): MemberSnapshot => ({
  id,
  address: '',
  self: false,
  state: 'ALIVE',
  phi: 0,
  lastHeardAgeMs: 0,
  rttMs: 1,
  clockOffsetMs: 0,
  clockOffsetExceeded: false,
  incarnation: 1,
  ...over,
});
const self = member('n1', { self: true });
const quorum = (state: QuorumStatus['state'], aliveCount = 3): QuorumStatus => ({
  name: 'k',
  replicaIds: ['n1', 'n2', 'n3'],
  replicaCount: 3,
  quorumSize: 2,
  aliveCount,
  pendingCount: 0,
  state,
});
const keyspaces = [
  { name: 'default', policy: 'cp' as const },
  { name: 'a', policy: 'ap' as const },
  { name: 'c', policy: 'causal' as const },
];

describe('judgeHealth', () => {
  it('serves everything with a quorum and clocks in bounds, and while quorums are pending at startup', () => {
    for (const state of ['reachable', 'pending'] as const) {
      const v = judgeHealth({ keyspaces, quorum: () => quorum(state), members: [self, member('n2'), member('n3')], maxClockOffsetMs: 500 });
      expect(v.reasons).toEqual([]);
      expect([...v.keyspaces.values()].flat()).toEqual([]);
    }
  });

  it('stops serving CP keyspaces only when their quorum is unreachable', () => {
    const v = judgeHealth({ keyspaces, quorum: () => quorum('unreachable', 1), members: [self, member('n2', { state: 'DEAD' }), member('n3', { state: 'DEAD' })], maxClockOffsetMs: 500 });
    expect(v.reasons).toEqual(['quorum lost for CP keyspace default: 1 of 3 replicas alive, a quorum needs 2']);
    expect(v.keyspaces.get('default')).toHaveLength(1);
    expect(v.keyspaces.get('a')).toEqual([]);
    expect(v.keyspaces.get('c')).toEqual([]);
  });

  it("blames this node's clock only when a majority of peers are off, and then every keyspace", () => {
    const oneOff = judgeHealth({ keyspaces, quorum: () => quorum('reachable'), members: [self, member('n2', { clockOffsetExceeded: true, clockOffsetMs: 900 }), member('n3')], maxClockOffsetMs: 500 });
    expect(oneOff.reasons).toEqual([]);
    const allOff = judgeHealth({
      keyspaces,
      quorum: () => quorum('reachable'),
      members: [self, member('n2', { clockOffsetExceeded: true, clockOffsetMs: 900.4 }), member('n3', { clockOffsetExceeded: true, clockOffsetMs: -1200 })],
      maxClockOffsetMs: 500,
    });
    expect(allOff.reasons).toEqual(["this node's clock is off by more than 500 ms against 2 of 2 peers (n2 +900 ms, n3 -1200 ms)"]);
    for (const why of allOff.keyspaces.values()) expect(why).toEqual(allOff.reasons);
  });

  it('never blames the clock of a node without peers', () => {
    expect(judgeHealth({ keyspaces, quorum: () => quorum('reachable', 1), members: [self], maxClockOffsetMs: 500 }).reasons).toEqual([]);
  });
});
