import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/raft/raft-core.js';
import type { RaftMessage, RaftRestoredState } from '../../src/raft/types.js';
import { Cluster, restoredLog } from './cluster.js';

const IDS = ['n1', 'n2', 'n3'];
const FRESH: RaftRestoredState = { hardState: { term: 0, vote: undefined, commit: 0 }, snapshot: undefined, entries: [] };

function lone(id: string, restored: RaftRestoredState = FRESH, random = () => 0): RaftCore {
  return new RaftCore({ id, voters: IDS, random }, restored);
}

function vote(from: string, to: string, term: number, lastLogIndex = 0, lastLogTerm = 0, transfer = false): RaftMessage {
  return { type: 'vote', from, to, term, lastLogIndex, lastLogTerm, transfer };
}

describe('leader election (§5.2)', () => {
  it('a follower campaigns after its election timeout, pre-votes first, and wins with a majority', () => {
    const c = new Cluster(IDS);
    c.tick('n1', 9);
    expect(c.core('n1').status().role).toBe('follower');
    c.tick('n1');
    // Pre-vote asks about term 1 without moving to it.
    expect(c.core('n1').status()).toMatchObject({ role: 'preCandidate', term: 0 });
    expect(c.queue.map((m) => [m.type, m.to, m.term])).toEqual([
      ['preVote', 'n2', 1],
      ['preVote', 'n3', 1],
    ]);
    c.stabilize();
    expect(c.core('n1').status()).toMatchObject({ role: 'leader', term: 1, leader: 'n1', vote: 'n1' });
    for (const id of ['n2', 'n3']) expect(c.core(id).status()).toMatchObject({ role: 'follower', term: 1, leader: 'n1', vote: 'n1' });
    // The no-op of the new term commits and everyone applies it (§8).
    for (const id of IDS) expect(c.applied.get(id)!.map((e) => [e.index, e.term, e.kind])).toEqual([[1, 1, 'noop']]);
  });

  it('draws the election timeout from [electionTicks, 2·electionTicks)', () => {
    const early = lone('n1', FRESH, () => 0);
    for (let i = 0; i < 9; i++) early.tick();
    expect(early.status().role).toBe('follower');
    early.tick();
    expect(early.status().role).toBe('preCandidate');

    const late = lone('n1', FRESH, () => 0.999);
    for (let i = 0; i < 18; i++) late.tick();
    expect(late.status().role).toBe('follower');
    late.tick();
    expect(late.status().role).toBe('preCandidate');
  });

  it('grants one vote per term, the same one again on a repeated request, and persists it with the response', () => {
    const n3 = lone('n3');
    n3.step(vote('n1', 'n3', 1));
    const granted = n3.ready();
    expect(granted.hardState).toEqual({ term: 1, vote: 'n1', commit: 0 });
    expect(granted.messages).toEqual([{ type: 'voteResponse', from: 'n3', to: 'n1', term: 1, reject: false }]);
    n3.advance(granted);

    n3.step(vote('n2', 'n3', 1));
    expect(n3.ready().messages).toEqual([{ type: 'voteResponse', from: 'n3', to: 'n2', term: 1, reject: true }]);
    n3.step(vote('n1', 'n3', 1));
    expect(n3.ready().messages).toEqual([{ type: 'voteResponse', from: 'n3', to: 'n1', term: 1, reject: false }]);
  });

  it('votes only for a candidate whose log is at least as up-to-date (§5.4.1)', () => {
    const answer = (lastLogIndex: number, lastLogTerm: number) => {
      const voter = lone('n3', restoredLog([1, 1, 2]));
      voter.step(vote('n1', 'n3', 3, lastLogIndex, lastLogTerm));
      return voter.ready().messages.map((m) => (m.type === 'voteResponse' ? m.reject : undefined))[0];
    };
    expect(answer(9, 1)).toBe(true); // longer but older last term
    expect(answer(2, 2)).toBe(true); // same last term, shorter
    expect(answer(3, 2)).toBe(false); // same
    expect(answer(1, 3)).toBe(false); // newer last term wins whatever the length
  });

  it('a candidate rejected by a majority goes back to follower', () => {
    const logs = { n1: restoredLog([1]), n2: restoredLog([1, 2]), n3: restoredLog([1, 2]) };
    const c = new Cluster(IDS, { preVote: false }, logs);
    c.elect('n1');
    expect(c.core('n1').status()).toMatchObject({ role: 'follower', term: 2, leader: undefined });
    expect(c.leaders()).toEqual([]);
  });

  it('asks again the voters that did not answer, once per heartbeat interval (§5.1)', () => {
    const c = new Cluster(IDS, { preVote: false });
    c.isolated.add('n3');
    c.tick('n1', 10);
    c.queue = c.queue.filter((m) => m.to !== 'n2'); // n2's request is lost
    c.stabilize();
    expect(c.core('n1').status().role).toBe('candidate');
    c.tick('n1');
    expect(c.queue.map((m) => [m.type, m.to, m.term])).toEqual([
      ['vote', 'n2', 1],
      ['vote', 'n3', 1],
    ]);
    c.stabilize();
    expect(c.core('n1').status()).toMatchObject({ role: 'leader', term: 1 });
  });

  it('ignores messages from unknown nodes or addressed to another, and stale-term ones', () => {
    const n3 = lone('n3', restoredLog([1], { term: 5 }));
    n3.step(vote('mallory', 'n3', 9, 9, 9));
    n3.step(vote('n1', 'n2', 9, 9, 9));
    n3.step({ type: 'heartbeat', from: 'n3', to: 'n3', term: 9, commit: 0, context: 0 });
    expect(n3.hasReady()).toBe(false);
    n3.step(vote('n1', 'n3', 4, 9, 9));
    expect(n3.hasReady()).toBe(false);
    expect(n3.status()).toMatchObject({ term: 5, vote: undefined, leader: undefined });
  });

  it('a stale leader learns the newer term from the answer to its append and steps down', () => {
    const n3 = lone('n3', restoredLog([1], { term: 5 }));
    n3.step({ type: 'append', from: 'n1', to: 'n3', term: 3, prevIndex: 1, prevTerm: 1, entries: [], commit: 1 });
    const [answer] = n3.ready().messages;
    expect(answer).toMatchObject({ type: 'appendResponse', to: 'n1', term: 5, reject: false, index: 0 });
    expect(n3.status()).toMatchObject({ term: 5, leader: undefined, commit: 0 });
  });

  it('a node that lost its disk (canVote false) neither campaigns nor votes', () => {
    const amnesiac = new RaftCore({ id: 'n3', voters: IDS, random: () => 0, canVote: false }, FRESH);
    for (let i = 0; i < 50; i++) amnesiac.tick();
    expect(amnesiac.status().role).toBe('follower');
    amnesiac.step(vote('n1', 'n3', 1));
    expect(amnesiac.ready().messages).toEqual([{ type: 'voteResponse', from: 'n3', to: 'n1', term: 1, reject: true }]);
  });
});

describe('pre-vote (thesis §9.6)', () => {
  it('a node cut off from the others does not raise its term, and does not disturb the leader when it returns', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.isolated.add('n3');
    c.tick('n3', 100);
    expect(c.core('n3').status().term).toBe(1);
    c.tickAll(30);
    c.isolated.delete('n3');
    c.tickAll(30, true);
    expect(c.core('n1').status()).toMatchObject({ role: 'leader', term: 1 });
    expect(c.core('n3').status()).toMatchObject({ role: 'follower', term: 1, leader: 'n1' });
  });

  it('without it the returning node has raised its term and deposes the working leader', () => {
    const c = new Cluster(IDS, { preVote: false });
    c.elect('n1');
    c.isolated.add('n3');
    c.tick('n3', 100);
    expect(c.core('n3').status().term).toBeGreaterThan(5);
    c.isolated.delete('n3');
    c.tickAll(60, true);
    expect(c.leaders()).toHaveLength(1);
    expect(Math.min(...IDS.map((id) => c.core(id).status().term))).toBeGreaterThan(5);
  });

  it('a pre-vote grant changes neither term nor vote of the voter', () => {
    const n3 = lone('n3', restoredLog([1], { term: 1 }));
    n3.step({ type: 'preVote', from: 'n1', to: 'n3', term: 2, lastLogIndex: 1, lastLogTerm: 1, transfer: false });
    const r = n3.ready();
    expect(r.messages).toEqual([{ type: 'preVoteResponse', from: 'n3', to: 'n1', term: 2, reject: false }]);
    expect(r.hardState).toBeUndefined();
    expect(n3.status()).toMatchObject({ term: 1, vote: undefined });
  });
});

describe('check-quorum and leases (thesis §6.2, §4.2.3)', () => {
  it('a leader that hears from no majority for an election timeout steps down', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.isolated.add('n1');
    c.tick('n1', 10);
    // The first check-quorum round counts the followers as heard from (they were, at election).
    expect(c.core('n1').status().role).toBe('leader');
    c.tick('n1', 10);
    expect(c.core('n1').status()).toMatchObject({ role: 'follower', term: 1, leader: undefined });
  });

  it('without check-quorum the cut-off leader keeps leading', () => {
    const c = new Cluster(IDS, { checkQuorum: false });
    c.elect('n1');
    c.isolated.add('n1');
    c.tick('n1', 50);
    expect(c.core('n1').status().role).toBe('leader');
  });

  it('a follower that heard from its leader within the timeout ignores a campaign, unless it is a transfer', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    const n2 = c.core('n2');
    n2.step(vote('n3', 'n2', 5, 1, 1));
    expect(n2.hasReady()).toBe(false);
    expect(n2.status()).toMatchObject({ term: 1, leader: 'n1' });
    n2.step(vote('n3', 'n2', 5, 1, 1, true));
    expect(n2.status()).toMatchObject({ term: 5, vote: 'n3' });
  });

  it('the lease ends an election timeout after the leader was last heard from', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    c.isolated.add('n1');
    c.tick('n2', 9);
    c.core('n2').step({ type: 'preVote', from: 'n3', to: 'n2', term: 2, lastLogIndex: 1, lastLogTerm: 1, transfer: false });
    expect(c.core('n2').hasReady()).toBe(false);
    c.tick('n2');
    c.core('n2').step({ type: 'preVote', from: 'n3', to: 'n2', term: 2, lastLogIndex: 1, lastLogTerm: 1, transfer: false });
    expect(c.core('n2').ready().messages).toEqual([{ type: 'preVoteResponse', from: 'n2', to: 'n3', term: 2, reject: false }]);
  });
});
