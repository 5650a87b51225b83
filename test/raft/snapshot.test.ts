import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/raft/raft-core.js';
import type { RaftMessage, RaftSnapshot } from '../../src/raft/types.js';
import { bytes, Cluster, restoredLog } from './cluster.js';

const IDS = ['n1', 'n2', 'n3'];

/** A leader n1 that compacted entries n3 (cut off meanwhile) still needs. */
function lagging(config = {}): { c: Cluster; snapshot: RaftSnapshot } {
  const c = new Cluster(IDS, config);
  c.elect('n1');
  c.isolated.add('n3');
  for (const t of ['a', 'b', 'c', 'd', 'e']) c.propose('n1', t);
  const snapshot = c.compact('n1');
  return { c, snapshot };
}

function snapshotsTo(c: Cluster, to: string): RaftMessage[] {
  return c.sent.filter((m) => m.type === 'snapshot' && m.to === to);
}

describe('snapshots (§7)', () => {
  it('compaction keeps the snapshot and drops the entries it covers', () => {
    const { c, snapshot } = lagging();
    expect(snapshot.meta).toEqual({ index: 6, term: 1, voters: IDS });
    expect(c.core('n1').status()).toMatchObject({ snapshotIndex: 6, lastIndex: 6, commit: 6 });
  });

  it('a follower needing compacted entries gets the snapshot, installs it from its Ready, and replicates on from there', () => {
    const { c, snapshot } = lagging();
    c.isolated.clear();
    c.tickAll(2);
    expect(c.snapshots.get('n3')).toEqual([snapshot]);
    const installed = c.readys.get('n3')!.find((r) => r.snapshot !== undefined)!;
    expect(installed.hardState?.commit).toBe(6);
    expect(installed.committed).toEqual([]);
    expect(c.core('n3').status()).toMatchObject({ snapshotIndex: 6, lastIndex: 6, commit: 6, applied: 6 });
    expect(c.core('n1').status().progress.find((p) => p.id === 'n3')).toMatchObject({ state: 'replicate', match: 6 });

    c.propose('n1', 'f');
    expect(c.appliedTexts('n3')).toEqual(['f']);
    expect(c.durable.get('n3')!.entries.map((e) => e.index)).toEqual([7]);
  });

  it('sends a lost snapshot again after snapshotRetryTicks, and nothing else meanwhile', () => {
    const { c } = lagging({ snapshotRetryTicks: 5 });
    let dropped = false;
    c.intercept = (m) => {
      if (m.type !== 'snapshot' || dropped) return m;
      dropped = true;
      return undefined;
    };
    c.isolated.clear();
    c.tickAll(1);
    expect(snapshotsTo(c, 'n3')).toHaveLength(1);
    expect(c.core('n1').status().progress.find((p) => p.id === 'n3')?.state).toBe('snapshot');
    c.tickAll(3);
    expect(snapshotsTo(c, 'n3')).toHaveLength(1);
    c.tickAll(2);
    expect(snapshotsTo(c, 'n3')).toHaveLength(2);
    expect(c.core('n3').status().snapshotIndex).toBe(6);
  });

  it('after a restart the leader sends the snapshot it restored, data included', () => {
    const { c, snapshot } = lagging();
    c.restart('n1');
    c.restart('n2');
    c.elect('n1');
    expect(c.core('n1').status()).toMatchObject({ role: 'leader', term: 2, snapshotIndex: 6 });
    c.isolated.clear();
    c.tickAll(2);
    expect(c.snapshots.get('n3')).toEqual([snapshot]);
    expect(c.core('n3').status().lastIndex).toBe(7);
  });

  it('a follower that holds the snapshot’s last entry only moves its commit index', () => {
    const follower = new RaftCore({ id: 'n2', voters: IDS, random: () => 0 }, restoredLog([1, 1, 1, 1], { commit: 1 }));
    const snapshot: RaftSnapshot = { meta: { index: 3, term: 1, voters: IDS }, data: bytes('s') };
    follower.step({ type: 'snapshot', from: 'n1', to: 'n2', term: 1, snapshot });
    const r = follower.ready();
    expect(r.snapshot).toBeUndefined();
    expect(r.committed.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(r.messages).toEqual([{ type: 'appendResponse', from: 'n2', to: 'n1', term: 1, reject: false, index: 3, hint: 4 }]);
    expect(follower.status()).toMatchObject({ lastIndex: 4, snapshotIndex: 0 });
  });

  it('a follower whose log conflicts with the snapshot replaces it; an older snapshot is ignored', () => {
    const follower = new RaftCore({ id: 'n2', voters: IDS, random: () => 0 }, restoredLog([1, 2, 2], { term: 3, commit: 1 }));
    const snapshot: RaftSnapshot = { meta: { index: 3, term: 3, voters: IDS }, data: bytes('s') };
    follower.step({ type: 'snapshot', from: 'n1', to: 'n2', term: 3, snapshot });
    const r = follower.ready();
    expect(r.snapshot).toBe(snapshot);
    expect(r.hardState).toEqual({ term: 3, vote: undefined, commit: 3 });
    follower.advance(r);
    expect(follower.status()).toMatchObject({ lastIndex: 3, snapshotIndex: 3, commit: 3, applied: 3 });

    follower.step({ type: 'snapshot', from: 'n1', to: 'n2', term: 3, snapshot: { meta: { index: 2, term: 3, voters: IDS }, data: bytes('old') } });
    const again = follower.ready();
    expect(again.snapshot).toBeUndefined();
    expect(again.messages).toEqual([{ type: 'appendResponse', from: 'n2', to: 'n1', term: 3, reject: false, index: 3, hint: 3 }]);
  });

  it('compacts only what was applied, and nothing twice', () => {
    const { c } = lagging();
    expect(() => c.core('n1').compact(7, bytes('x'))).toThrow(RangeError);
    expect(c.core('n1').compact(6, bytes('x'))).toBeUndefined();
    expect(c.core('n1').compact(3, bytes('x'))).toBeUndefined();
  });
});
