import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/raft/raft-core.js';
import { bytes, Cluster, restoredLog } from './cluster.js';

const IDS = ['n1', 'n2', 'n3'];

describe('ReadIndex (thesis §6.4)', () => {
  it('answers once a majority confirms the leadership, with the commit index as of the request', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.propose('n1', 'a');
    expect(c.core('n1').readIndex(7)).toEqual({ ok: true });
    c.flush();
    expect(c.readStates.get('n1')).toEqual([]);
    const round = c.queue.filter((m) => m.type === 'heartbeat');
    expect(round.map((m) => m.to)).toEqual(['n2', 'n3']);
    expect(round.every((m) => m.type === 'heartbeat' && m.context > 0)).toBe(true);
    // One follower's answer makes a majority with the leader itself.
    c.deliverOne();
    c.flush();
    c.queue = c.queue.filter((m) => m.to !== 'n3');
    c.stabilize();
    expect(c.readStates.get('n1')).toEqual([{ requestId: 7, index: 2 }]);
  });

  it('a new leader serves no read before it has committed an entry of its own term', () => {
    const c = new Cluster(IDS);
    c.intercept = (m) => (m.type === 'append' ? undefined : m);
    c.elect('n1');
    expect(c.core('n1').status()).toMatchObject({ role: 'leader', commit: 0 });
    expect(c.core('n1').readIndex(1)).toEqual({ ok: true });
    c.tickAll(3);
    expect(c.readStates.get('n1')).toEqual([]);
    c.intercept = (m) => m;
    c.tickAll(2);
    expect(c.readStates.get('n1')).toEqual([{ requestId: 1, index: 1 }]);
  });

  it('a leader cut off from the majority never confirms a read', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.isolated.add('n1');
    c.core('n1').readIndex(1);
    c.tick('n1', 5);
    c.stabilize();
    expect(c.readStates.get('n1')).toEqual([]);
    // Deposed, it drops the round: the node layer fails the read when softState shows the change.
    c.tick('n1', 20);
    const deposed = c.readys.get('n1')!.find((r) => r.softState?.role === 'follower');
    expect(deposed).toBeDefined();
    c.isolated.clear();
    c.tickAll(5);
    expect(c.readStates.get('n1')).toEqual([]);
  });

  it('with unsafeReadIndexWithoutQuorum the same cut-off leader answers at once (the bug the simulation must catch)', () => {
    const c = new Cluster(IDS, { unsafeReadIndexWithoutQuorum: true });
    c.elect('n1');
    c.isolated.add('n1');
    c.core('n1').readIndex(1);
    c.flush();
    expect(c.readStates.get('n1')).toEqual([{ requestId: 1, index: 1 }]);
  });

  it('a follower refuses and names the leader', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    expect(c.core('n2').readIndex(1)).toEqual({ ok: false, reason: 'not-leader', leader: 'n1' });
  });

  it('a lone voter answers as soon as its no-op is committed', () => {
    const solo = new RaftCore({ id: 'n1', voters: ['n1'], random: () => 0 }, restoredLog([]));
    for (let i = 0; i < 10; i++) solo.tick();
    solo.readIndex(5);
    solo.advance(solo.ready());
    expect(solo.ready().readStates).toEqual([{ requestId: 5, index: 1 }]);
  });

  it('an answer to a later round confirms the earlier rounds too', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.core('n1').readIndex(1);
    c.core('n1').readIndex(2);
    c.flush();
    // Only the second round's heartbeats arrive.
    const contexts = c.queue.map((m) => (m.type === 'heartbeat' ? m.context : 0));
    const last = Math.max(...contexts);
    c.queue = c.queue.filter((m) => m.type === 'heartbeat' && m.context === last);
    c.stabilize();
    expect(c.readStates.get('n1')).toEqual([
      { requestId: 1, index: 1 },
      { requestId: 2, index: 1 },
    ]);
  });
});

describe('leadership transfer (thesis §3.10)', () => {
  it('hands over to an up-to-date follower, which campaigns at once past pre-vote and leases', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.propose('n1', 'a');
    expect(c.core('n1').transferLeadership('n2')).toEqual({ ok: true });
    expect(c.core('n1').propose(bytes('b'))).toEqual({ ok: false, reason: 'transferring', leader: 'n1' });
    c.flush();
    expect(c.queue.map((m) => [m.type, m.to])).toEqual([['timeoutNow', 'n2']]);
    c.stabilize();
    expect(c.core('n2').status()).toMatchObject({ role: 'leader', term: 2 });
    expect(c.core('n1').status()).toMatchObject({ role: 'follower', term: 2, leader: 'n2' });
    const campaign = c.sent.filter((m) => m.from === 'n2' && (m.type === 'vote' || m.type === 'preVote'));
    expect(campaign.map((m) => m.type === 'vote' && m.transfer)).toEqual([true, true]);
  });

  it('brings a lagging target up to date before telling it to campaign', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.isolated.add('n3');
    for (const t of ['a', 'b', 'c']) c.propose('n1', t);
    c.isolated.clear();
    c.core('n1').transferLeadership('n3');
    c.stabilize();
    const n3Messages = c.sent.filter((m) => m.to === 'n3' && m.from === 'n1');
    const timeoutNow = n3Messages.findIndex((m) => m.type === 'timeoutNow');
    expect(timeoutNow).toBeGreaterThan(0);
    expect(n3Messages.slice(0, timeoutNow).some((m) => m.type === 'append' && m.entries.length > 0)).toBe(true);
    expect(c.core('n3').status()).toMatchObject({ role: 'leader', term: 2 });
    expect(c.appliedTexts('n3')).toEqual(['a', 'b', 'c']);
  });

  it('gives up after an election timeout when the target does not take over, and takes proposals again', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.isolated.add('n3');
    c.core('n1').transferLeadership('n3');
    c.tickAll(9);
    expect(c.core('n1').propose(bytes('x'))).toMatchObject({ ok: false, reason: 'transferring' });
    c.tickAll(1);
    expect(c.core('n1').status()).toMatchObject({ role: 'leader', transferee: undefined });
    expect(c.core('n1').propose(bytes('x')).ok).toBe(true);
  });

  it('refuses on a follower and for an unknown node', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    expect(c.core('n2').transferLeadership('n3')).toEqual({ ok: false, reason: 'not-leader', leader: 'n1' });
    expect(c.core('n1').transferLeadership('zz')).toEqual({ ok: false, reason: 'unknown-node', leader: 'n1' });
  });
});
