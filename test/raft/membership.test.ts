import { describe, expect, it } from 'vitest';
import { decodeMembership, encodeMembership } from '../../src/raft/membership.js';
import { Cluster } from './cluster.js';

const VOTERS = ['n1', 'n2', 'n3'];

/** n1..n3 voters with n1 leading; n4 and n5 exist but know no membership (new, empty nodes). */
function grown(config: ConstructorParameters<typeof Cluster>[1] = {}): Cluster {
  const c = new Cluster(['n1', 'n2', 'n3', 'n4', 'n5'], { voters: VOTERS, ...config }, {}, { n4: { voters: [] }, n5: { voters: [] } });
  c.elect('n1');
  expect(c.leaders()).toEqual(['n1']);
  return c;
}

function change(c: Cluster, type: 'addLearner' | 'promote' | 'remove', id: string, leader = 'n1') {
  const result = c.core(leader).proposeChange({ type, id }, `ctx-${type}-${id}`);
  c.stabilize();
  return result;
}

describe('membership changes in the Raft core', () => {
  it('a learner receives every entry, votes on nothing and counts toward no commit', () => {
    const c = grown();
    c.propose('n1', 'before');
    expect(change(c, 'addLearner', 'n4')).toMatchObject({ ok: true, membership: { voters: VOTERS, learners: ['n4'] } });
    c.propose('n1', 'after');
    // The learner caught up from index 1 and applied what the voters applied.
    expect(c.appliedTexts('n4')).toEqual(['before', 'after']);
    expect(c.core('n4').membership).toMatchObject({ voters: VOTERS, learners: ['n4'], context: 'ctx-addLearner-n4' });
    // With two voters cut off, the leader and the learner are not a majority: nothing commits.
    c.isolated.add('n2');
    c.isolated.add('n3');
    const stuck = c.core('n1').propose(new TextEncoder().encode('stuck'));
    expect(stuck.ok).toBe(true);
    c.stabilize();
    expect(c.core('n1').status().commit).toBeLessThan((stuck as { index: number }).index);
    // And the learner never campaigns, however long it hears nothing.
    c.isolated.clear();
    c.isolated.add('n1');
    c.tick('n4', 100);
    expect(c.core('n4').status().role).toBe('follower');
    expect(c.sent.filter((m) => m.from === 'n4' && (m.type === 'preVote' || m.type === 'vote'))).toEqual([]);
  });

  it('promotion is refused while the learner trails the commit index, and allowed once it caught up', () => {
    const c = grown({ maxPromoteLagEntries: 2 });
    change(c, 'addLearner', 'n4');
    c.isolated.add('n4');
    for (let i = 0; i < 6; i++) c.propose('n1', `w${i}`);
    const refused = change(c, 'promote', 'n4');
    expect(refused).toMatchObject({ ok: false, reason: 'behind' });
    expect((refused as { detail: string }).detail).toMatch(/n4 holds the log through index \d+, and \d+ is committed/);
    c.isolated.clear();
    c.tickAll(2);
    expect(change(c, 'promote', 'n4')).toMatchObject({ ok: true, membership: { voters: [...VOTERS, 'n4'], learners: [] } });
    // Four voters: a majority is three, so with two of them cut off nothing commits.
    c.isolated.add('n3');
    c.isolated.add('n4');
    const index = c.core('n1').propose(new TextEncoder().encode('needs three'));
    c.stabilize();
    expect(c.core('n1').status().commit).toBeLessThan((index as { index: number }).index);
    c.isolated.delete('n4');
    c.tickAll(2);
    expect(c.appliedTexts('n2')).toContain('needs three');
  });

  it('a learner promoted while far behind stalls commitment when one old voter fails (why promotion waits)', () => {
    const run = (unsafePromoteLagging: boolean) => {
      const c = grown({ unsafePromoteLagging, maxPromoteLagEntries: 2 });
      change(c, 'addLearner', 'n4');
      c.isolated.add('n4');
      for (let i = 0; i < 20; i++) c.propose('n1', `w${i}`);
      const promoted = change(c, 'promote', 'n4');
      // n4 hears again, but only slowly: one message in two is lost on its links.
      c.isolated.clear();
      let n = 0;
      c.intercept = (m) => ((m.to === 'n4' || m.from === 'n4') && n++ % 2 === 0 ? undefined : m);
      c.isolated.add('n3');
      const next = c.core('n1').propose(new TextEncoder().encode('after'));
      c.stabilize();
      return { promoted: promoted.ok, committedAtOnce: next.ok && c.core('n1').status().commit >= next.index };
    };
    expect(run(false)).toEqual({ promoted: false, committedAtOnce: true });
    expect(run(true)).toEqual({ promoted: true, committedAtOnce: false });
  });

  it('one change at a time: a second is refused until the first commits, and a new leader first commits its own entry', () => {
    const c = grown();
    c.isolated.add('n2');
    c.isolated.add('n3');
    expect(c.core('n1').proposeChange({ type: 'addLearner', id: 'n4' }, '').ok).toBe(true);
    c.stabilize();
    const second = c.core('n1').proposeChange({ type: 'addLearner', id: 'n5' }, '');
    expect(second).toMatchObject({ ok: false, reason: 'in-progress' });
    expect((second as { detail: string }).detail).toMatch(/is not committed yet/);
    c.isolated.clear();
    c.tickAll(2);
    expect(c.core('n1').status().changePending).toBe(false);
    expect(change(c, 'addLearner', 'n5').ok).toBe(true);

    // A leader that has not committed an entry of its term yet may not change the membership.
    const d = grown();
    d.isolated.add('n1');
    d.elect('n2');
    d.isolated.add('n3');
    d.isolated.add('n1');
    const early = d.core('n2').proposeChange({ type: 'addLearner', id: 'n4' }, '');
    if (d.core('n2').status().role === 'leader') {
      expect(early).toMatchObject({ ok: false, reason: 'not-ready' });
    }
  });

  it('refuses steps that are not one valid change', () => {
    const c = grown();
    expect(change(c, 'promote', 'n9')).toMatchObject({ ok: false, reason: 'invalid', detail: 'n9 is not a member (add it as a learner first)' });
    expect(change(c, 'addLearner', 'n2')).toMatchObject({ ok: false, reason: 'invalid', detail: 'n2 is already a voter' });
    expect(change(c, 'remove', 'n9')).toMatchObject({ ok: false, reason: 'invalid', detail: 'n9 is not a member' });
    expect(c.core('n2').proposeChange({ type: 'addLearner', id: 'n4' }, '')).toMatchObject({ ok: false, reason: 'not-leader', leader: 'n1' });
  });

  it('a removed follower stops counting, and its campaigns disturb nobody', () => {
    const c = grown();
    expect(change(c, 'remove', 'n3')).toMatchObject({ ok: true, membership: { voters: ['n1', 'n2'] } });
    c.tickAll(1);
    const term = c.core('n1').status().term;
    // n3 never received... or did: either way, it campaigns in vain and the leader's term stands.
    c.isolated.add('n3');
    c.tick('n3', 30);
    c.isolated.delete('n3');
    c.tick('n3', 30);
    c.stabilize();
    expect(c.core('n1').status()).toMatchObject({ role: 'leader', term });
    expect(c.core('n3').status().role).not.toBe('leader');
    // Two voters now: n1 and n2 commit without n3.
    c.isolated.add('n3');
    c.propose('n1', 'without n3');
    expect(c.appliedTexts('n2')).toContain('without n3');
  });

  it('a leader that removes itself steps down once the change commits, and hands over at once', () => {
    const c = grown();
    c.propose('n1', 'x');
    const removed = change(c, 'remove', 'n1');
    expect(removed.ok).toBe(true);
    c.tickAll(1);
    expect(c.core('n1').status().role).toBe('follower');
    const leaders = c.leaders();
    expect(leaders.length).toBe(1);
    expect(['n2', 'n3']).toContain(leaders[0]);
    expect(c.sent.some((m) => m.from === 'n1' && m.type === 'timeoutNow')).toBe(true);
    // The new group commits without n1, and n1 never campaigns again.
    c.isolated.add('n1');
    c.propose(leaders[0]!, 'y');
    expect(c.appliedTexts(leaders[0] === 'n2' ? 'n3' : 'n2')).toContain('y');
    c.isolated.delete('n1');
    const mark = c.sent.length;
    c.tick('n1', 50);
    expect(c.sent.slice(mark).filter((m) => m.from === 'n1' && (m.type === 'preVote' || m.type === 'vote'))).toEqual([]);
  });

  it('a config entry cut from a log takes its membership with it', () => {
    // Without leases, so that n2 can be elected while n3 still remembers n1.
    const c = grown({ preVote: false, checkQuorum: false });
    c.isolated.add('n2');
    c.isolated.add('n3');
    c.core('n1').proposeChange({ type: 'addLearner', id: 'n4' }, '');
    c.stabilize();
    expect(c.core('n1').membership.learners).toEqual(['n4']);
    // n2 leads a new term without the entry; n1 comes back and its uncommitted entry is replaced.
    c.isolated.clear();
    c.isolated.add('n1');
    c.elect('n2');
    const leader = 'n2';
    expect(c.core(leader).status().role).toBe('leader');
    c.propose(leader, 'newer');
    c.isolated.clear();
    c.tickAll(3);
    expect(c.appliedTexts('n1')).toContain('newer');
    expect(c.core('n1').membership).toMatchObject({ voters: VOTERS, learners: [] });
  });

  it('a snapshot carries the membership to a new member and across restarts', () => {
    const c = grown();
    change(c, 'addLearner', 'n4');
    c.isolated.add('n5');
    change(c, 'addLearner', 'n5');
    c.propose('n1', 'a');
    const snapshot = c.compact('n1');
    expect(snapshot.meta).toMatchObject({ voters: VOTERS, learners: ['n4', 'n5'], context: 'ctx-addLearner-n5' });
    // n5 missed everything and the log is compacted: it is sent the snapshot and learns the membership from it.
    c.isolated.clear();
    c.tickAll(3);
    expect(c.snapshots.get('n5')!.length).toBe(1);
    expect(c.core('n5').membership).toMatchObject({ voters: VOTERS, learners: ['n4', 'n5'] });
    // A restart rebuilds the membership from the snapshot and the log after it.
    change(c, 'promote', 'n4');
    c.restart('n1');
    c.restart('n5', { voters: [] });
    expect(c.core('n1').membership).toMatchObject({ voters: [...VOTERS, 'n4'], learners: ['n5'] });
    expect(c.core('n5').membership.voters).toEqual([...VOTERS, 'n4']);
    expect(c.core('n1').membershipAt(snapshot.meta.index).voters).toEqual(VOTERS);
  });

  it('a learner acknowledging heartbeats does not confirm a ReadIndex round', () => {
    const c = grown();
    change(c, 'addLearner', 'n4');
    c.isolated.add('n2');
    c.isolated.add('n3');
    c.core('n1').readIndex(7);
    c.stabilize();
    expect(c.readStates.get('n1')!.filter((r) => r.requestId === 7)).toEqual([]);
    // The round's heartbeats were lost; the next round's answers confirm both (they are in order).
    c.isolated.clear();
    c.core('n1').readIndex(8);
    c.stabilize();
    expect(c.readStates.get('n1')!.map((r) => r.requestId)).toEqual([7, 8]);
  });

  it('membership encodes as readable JSON and refuses malformed entries by name', () => {
    const m = { voters: ['a', 'b'], learners: ['c'], context: '{"a":"h:1"}' };
    expect(new TextDecoder().decode(encodeMembership(m))).toBe('{"voters":["a","b"],"learners":["c"],"context":"{\\"a\\":\\"h:1\\"}"}');
    expect(decodeMembership(encodeMembership(m))).toEqual(m);
    const bad = (text: string) => () => decodeMembership(new TextEncoder().encode(text));
    expect(bad('nope')).toThrow(/not JSON/);
    expect(bad('{"voters":[]}')).toThrow(/voters must not be empty/);
    expect(bad('{"voters":["a"],"learners":["a"]}')).toThrow(/names a member twice/);
    expect(bad('{"voters":[1]}')).toThrow(/list of node ids/);
  });
});
