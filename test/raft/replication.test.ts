import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/raft/raft-core.js';
import type { LogEntry, RaftMessage } from '../../src/raft/types.js';
import { bytes, Cluster, entry, restoredLog } from './cluster.js';

const IDS = ['n1', 'n2', 'n3'];
const FIVE = ['s1', 's2', 's3', 's4', 's5'];

function appendsTo(c: Cluster, to: string): Extract<RaftMessage, { type: 'append' }>[] {
  return c.sent.filter((m): m is Extract<RaftMessage, { type: 'append' }> => m.type === 'append' && m.to === to);
}

function rejectionsFrom(c: Cluster, from: string): number {
  return c.sent.filter((m) => m.type === 'appendResponse' && m.from === from && m.reject).length;
}

describe('log replication (§5.3)', () => {
  it('replicates proposals, commits them on a majority and every node applies the same entries in order', () => {
    const c = new Cluster(IDS);
    c.elect('n1');
    const a = c.propose('n1', 'a');
    const b = c.propose('n1', 'b');
    expect([a, b]).toEqual([
      { ok: true, index: 2, term: 1 },
      { ok: true, index: 3, term: 1 },
    ]);
    for (const id of IDS) {
      expect(c.appliedTexts(id)).toEqual(['a', 'b']);
      expect(c.core(id).status()).toMatchObject({ commit: 3, applied: 3, lastIndex: 3 });
    }
    expect(c.core('n1').status().progress).toEqual([
      { id: 'n2', match: 3, next: 4, state: 'replicate', inflight: 0 },
      { id: 'n3', match: 3, next: 4, state: 'replicate', inflight: 0 },
    ]);
  });

  it('a follower refuses a proposal and names the leader; forwarding is the node layer’s business', () => {
    const c = new Cluster(IDS);
    expect(c.core('n2').propose(bytes('x'))).toEqual({ ok: false, reason: 'not-leader', leader: undefined });
    c.elect('n1');
    expect(c.core('n2').propose(bytes('x'))).toEqual({ ok: false, reason: 'not-leader', leader: 'n1' });
  });

  it('counts the leader’s own copy only once it is durable (advanced)', () => {
    const solo = new RaftCore({ id: 'n1', voters: ['n1'], random: () => 0 }, restoredLog([]));
    for (let i = 0; i < 10; i++) solo.tick();
    expect(solo.status().role).toBe('leader');
    const first = solo.ready();
    expect(first.entries.map((e) => e.kind)).toEqual(['noop']);
    expect(solo.status().commit).toBe(0);
    solo.advance(first);
    expect(solo.status().commit).toBe(1);
    const second = solo.ready();
    expect(second.committed.map((e) => e.index)).toEqual([1]);
    expect(second.hardState?.commit).toBe(1);
  });

  it('replaces a follower’s conflicting uncommitted suffix, and the Ready says where the overwrite starts', () => {
    // n3 led term 2 and appended entries nobody else got; n1 wins term 3 with n2's vote.
    const logs = { n1: restoredLog([1, 1, 1], { term: 2 }), n2: restoredLog([1, 1, 1], { term: 2 }), n3: restoredLog([1, 2, 2, 2], { term: 2 }) };
    const c = new Cluster(IDS, {}, logs);
    c.elect('n1');
    expect(c.core('n1').status()).toMatchObject({ role: 'leader', term: 3 });
    expect(c.logTerms('n3')).toEqual([1, 1, 1, 3]);
    const overwrite = c.readys.get('n3')!.find((r) => r.entries.length > 0)!;
    expect(overwrite.entries[0]!.index).toBe(2);
    expect(c.applied.get('n3')!.map((e) => e.term)).toEqual([1, 1, 1, 3]);
  });

  it('a duplicated or reordered older append never truncates what a newer one added', () => {
    const follower = new RaftCore({ id: 'n2', voters: IDS, random: () => 0 }, restoredLog([]));
    const append = (entries: LogEntry[]): RaftMessage => ({ type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, entries, commit: 0 });
    follower.step(append([entry(1, 1), entry(2, 1), entry(3, 1)]));
    follower.step(append([entry(1, 1)]));
    const r = follower.ready();
    expect(follower.status().lastIndex).toBe(3);
    expect(r.entries.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(r.messages.map((m) => (m.type === 'appendResponse' ? [m.reject, m.index] : undefined))).toEqual([
      [false, 3],
      [false, 1],
    ]);
  });

  it('backs up to a far-behind follower in one round trip, using its last index', () => {
    const long = Array.from({ length: 50 }, () => 1);
    const logs = { n1: restoredLog(long), n2: restoredLog(long), n3: restoredLog(long.slice(0, 5)) };
    const c = new Cluster(IDS, {}, logs);
    c.elect('n1');
    expect(rejectionsFrom(c, 'n3')).toBe(1);
    expect(c.core('n3').status().lastIndex).toBe(51);
  });

  it('skips a whole run of stale-term entries per round trip, whichever side’s terms are newer', () => {
    // The leader's terms: 1 1 3 3 3 3 3 3 3 3 then its no-op. n3 holds a long stale run of term 2.
    const leaderLog = [1, 1, 3, 3, 3, 3, 3, 3, 3, 3];
    const staleLog = [1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2];
    const c = new Cluster(IDS, {}, { n1: restoredLog(leaderLog), n2: restoredLog(leaderLog), n3: restoredLog(staleLog, { term: 3 }) });
    c.elect('n1');
    expect(rejectionsFrom(c, 'n3')).toBeLessThanOrEqual(2);
    expect(c.logTerms('n3')).toEqual([...leaderLog, 4]);
  });

  it('keeps at most maxInflightAppends unacknowledged appends per follower', () => {
    const c = new Cluster(IDS, { maxInflightAppends: 2 });
    c.elect('n1');
    const before = appendsTo(c, 'n2').length;
    for (let i = 0; i < 5; i++) c.core('n1').propose(bytes(`p${i}`));
    c.flush();
    expect(appendsTo(c, 'n2').length - before).toBe(2);
    expect(c.core('n1').status().progress.find((p) => p.id === 'n2')).toMatchObject({ state: 'replicate', inflight: 2 });
    c.stabilize();
    for (const id of IDS) expect(c.appliedTexts(id)).toEqual(['p0', 'p1', 'p2', 'p3', 'p4']);
  });

  it('a follower whose pipeline lost appends is found out by a heartbeat and caught up', () => {
    const c = new Cluster(IDS, { maxInflightAppends: 2 });
    c.elect('n1');
    c.intercept = (m) => (m.type === 'append' && m.to === 'n3' ? undefined : m);
    for (let i = 0; i < 4; i++) c.propose('n1', `p${i}`);
    expect(c.core('n1').status().progress.find((p) => p.id === 'n3')).toMatchObject({ inflight: 2 });
    c.intercept = (m) => m;
    c.tickAll(3);
    expect(c.appliedTexts('n3')).toEqual(['p0', 'p1', 'p2', 'p3']);
  });

  it('limits an append by entries and by bytes; a single larger entry travels alone', () => {
    const c = new Cluster(IDS, { maxAppendEntries: 3, maxAppendBytes: 10 });
    c.elect('n1');
    c.isolated.add('n3');
    const texts = ['aaaa', 'bbbb', 'cccc', 'd', 'e', 'f', 'g', 'h', 'x'.repeat(25), 'i'];
    for (const t of texts) c.propose('n1', t);
    const before = appendsTo(c, 'n3').length;
    c.isolated.delete('n3');
    c.tickAll(3);
    expect(c.appliedTexts('n3')).toEqual(texts);
    const catchUp = appendsTo(c, 'n3')
      .slice(before)
      .filter((m) => m.entries.length > 0);
    for (const m of catchUp) {
      const size = m.entries.reduce((n, e) => n + e.data.byteLength, 0);
      expect(m.entries.length).toBeLessThanOrEqual(3);
      if (m.entries.length > 1) expect(size).toBeLessThanOrEqual(10);
    }
    expect(catchUp.some((m) => m.entries.length === 1 && m.entries[0]!.data.byteLength === 25)).toBe(true);
  });
});

describe('commitment rule (§5.4.2, Figure 8)', () => {
  /**
   * s1 leads term 4 holding (2, term 2); s5, cut off, holds (2, term 3) from its time as leader
   * of term 3. s1 gets (2, 2) onto s2, s3 and s4, a majority, but its term-4 no-op onto none.
   */
  function figure8(): Cluster {
    const logs = {
      s1: restoredLog([1, 2], { term: 3, commit: 1 }),
      s2: restoredLog([1, 2], { term: 3, commit: 1 }),
      s3: restoredLog([1], { term: 3, commit: 1 }),
      s4: restoredLog([1], { term: 3, commit: 1 }),
      s5: restoredLog([1, 3], { term: 3, commit: 1 }),
    };
    const c = new Cluster(FIVE, { preVote: false, checkQuorum: false, maxAppendEntries: 1 }, logs);
    // Term-4 entries never arrive anywhere.
    c.intercept = (m) => (m.type === 'append' ? { ...m, entries: m.entries.filter((e) => e.term !== 4) } : m);
    c.isolated.add('s5');
    c.elect('s1');
    return c;
  }

  it('an entry of an older term on a majority is not committed by counting', () => {
    const c = figure8();
    expect(c.core('s1').status()).toMatchObject({ role: 'leader', term: 4, commit: 1 });
    expect(c.logTerms('s3')).toEqual([1, 2]);
    const matches = c.core('s1').status().progress.map((p) => p.match);
    expect(matches.filter((m) => m >= 2).length + 1).toBeGreaterThanOrEqual(3);
    expect(c.applied.get('s1')!.some((e) => e.index === 2)).toBe(false);
  });

  it('so a later leader may overwrite it, and no node ever applied it', () => {
    const c = figure8();
    c.isolated.clear();
    c.isolated.add('s1');
    c.intercept = (m) => m;
    // s5's first campaign (term 4) meets voters that voted in term 4; its second one (term 5) wins.
    c.elect('s5');
    expect(c.core('s5').status()).toMatchObject({ role: 'follower', term: 4 });
    c.elect('s5');
    expect(c.core('s5').status()).toMatchObject({ role: 'leader', term: 5 });
    for (const id of ['s2', 's3', 's4', 's5']) {
      expect(c.logTerms(id).slice(0, 3)).toEqual([1, 3, 5]);
      expect(c.applied.get(id)!.find((e) => e.index === 2)?.term).toBe(3);
    }
    expect(c.applied.get('s1')!.some((e) => e.index === 2)).toBe(false);
  });

  it('once an entry of its own term is on a majority, the older one commits with it', () => {
    const c = figure8();
    c.isolated.clear();
    c.intercept = (m) => m;
    c.tickAll(2);
    expect(c.core('s1').status().commit).toBe(3);
    for (const id of FIVE) expect(c.applied.get(id)!.map((e) => e.term)).toEqual([1, 2, 4]);
  });
});

describe('pending proposals', () => {
  it('refuses proposals past maxPendingProposals uncommitted ones, and accepts again once they commit', () => {
    const c = new Cluster(IDS, { maxPendingProposals: 3 });
    c.elect('n1');
    c.isolated.add('n2');
    c.isolated.add('n3');
    for (let i = 0; i < 3; i++) expect(c.core('n1').propose(bytes(`p${i}`)).ok).toBe(true);
    expect(c.core('n1').propose(bytes('p3'))).toEqual({ ok: false, reason: 'too-many-pending', leader: 'n1' });
    c.isolated.clear();
    c.tickAll(2);
    expect(c.core('n1').status().commit).toBe(4);
    expect(c.core('n1').propose(bytes('p3')).ok).toBe(true);
  });

  it('bounds their bytes too, but always takes one proposal into an empty pipeline', () => {
    const c = new Cluster(IDS, { maxPendingProposalBytes: 10 });
    c.elect('n1');
    c.isolated.add('n2');
    c.isolated.add('n3');
    expect(c.core('n1').propose(new Uint8Array(25)).ok).toBe(true);
    expect(c.core('n1').propose(new Uint8Array(1))).toMatchObject({ ok: false, reason: 'too-many-pending' });
    c.isolated.clear();
    c.tickAll(2);
    expect(c.core('n1').propose(new Uint8Array(6)).ok).toBe(true);
    expect(c.core('n1').propose(new Uint8Array(4)).ok).toBe(true);
    expect(c.core('n1').propose(new Uint8Array(1))).toMatchObject({ ok: false, reason: 'too-many-pending' });
  });
});
