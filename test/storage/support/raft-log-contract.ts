import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { HardState, LogEntry, RaftRestoredState, RaftSnapshot } from '../../../src/raft/types.js';
import { StoreClosedError } from '../../../src/storage/index.js';
import { INITIAL_HARD_STATE, type RaftLogStore, type RaftLogWrite } from '../../../src/storage/raft-log-store.js';

/**
 * One Raft log store under test and the medium under it. `log` is the current process's handle:
 * `restart` ends that process cleanly (every write has resolved) and opens the medium again.
 */
export interface RaftLogHarness {
  readonly log: RaftLogStore;
  restart(): Promise<void>;
  /** Commits (fsyncs) the medium has done so far. */
  commits(): number;
  /** Releases the medium. */
  dispose(): Promise<void>;
}

/** Entry `index` of `term`; its data names both, so a misplaced or stale record shows. */
export function entry(index: number, term: number, kind: LogEntry['kind'] = 'command'): LogEntry {
  return { index, term, kind, data: new TextEncoder().encode(kind === 'noop' ? '' : `t${term}-i${index}`) };
}

/** Entries `from` … `to` (inclusive) of `term`. */
export function entries(from: number, to: number, term: number): LogEntry[] {
  return Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, term));
}

export function snapshot(index: number, term: number, voters: readonly string[] = ['n1', 'n2', 'n3'], data = `state@${index}`): RaftSnapshot {
  return { meta: { index, term, voters }, data: new TextEncoder().encode(data) };
}

export function hardState(term: number, vote: string | undefined, commit: number): HardState {
  return { term, vote, commit };
}

/** A restored state as plain data, for toEqual (bytes as arrays). */
export function plain(state: RaftRestoredState): unknown {
  return {
    hardState: { ...state.hardState },
    snapshot: state.snapshot === undefined ? undefined : { ...state.snapshot, voters: [...state.snapshot.voters] },
    entries: state.entries.map((e) => ({ ...e, data: [...e.data] })),
  };
}

/**
 * An independent model of what a log holds after a sequence of writes: plain arrays, the rules of
 * RaftLogStore.save and compact spelled out again, to hold every implementation to them.
 */
export class ModelLog {
  hardState: HardState = INITIAL_HARD_STATE;
  snapshot: RaftSnapshot | undefined;
  log: LogEntry[] = [];

  get snapshotIndex(): number {
    return this.snapshot?.meta.index ?? 0;
  }

  get lastIndex(): number {
    return this.log.at(-1)?.index ?? this.snapshotIndex;
  }

  termAt(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshot?.meta.term ?? 0;
    return this.log.find((e) => e.index === index)?.term;
  }

  save(write: RaftLogWrite): void {
    if (write.snapshot !== undefined) {
      const { index, term } = write.snapshot.meta;
      const matches = this.termAt(index) === term;
      this.log = matches ? this.log.filter((e) => e.index > index) : [];
      this.snapshot = write.snapshot;
    }
    if (write.entries !== undefined && write.entries.length > 0) {
      const first = write.entries[0]!.index;
      this.log = [...this.log.filter((e) => e.index < first), ...write.entries];
    }
    if (write.hardState !== undefined) this.hardState = write.hardState;
  }

  compact(snap: RaftSnapshot): void {
    this.log = this.log.filter((e) => e.index > snap.meta.index);
    this.snapshot = snap;
  }

  restored(): RaftRestoredState {
    return { hardState: this.hardState, snapshot: this.snapshot?.meta, entries: this.log };
  }
}

/** A step of the random histories: built from random numbers against the model's state. */
type Step =
  | { readonly kind: 'append'; readonly back: number; readonly count: number; readonly termUp: number }
  | { readonly kind: 'hardState'; readonly termUp: number; readonly vote: number; readonly commitBack: number }
  | { readonly kind: 'snapshot'; readonly ahead: number; readonly termUp: number; readonly match: boolean }
  | { readonly kind: 'compact'; readonly back: number }
  | { readonly kind: 'restart' }
  | { readonly kind: 'turn' };

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('append' as const), back: fc.nat(4), count: fc.integer({ min: 1, max: 4 }), termUp: fc.nat(1) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('hardState' as const), termUp: fc.nat(1), vote: fc.nat(2), commitBack: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), ahead: fc.integer({ min: -3, max: 3 }), termUp: fc.nat(1), match: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('turn' as const) }) },
);

/** Turns a random step into a valid write (or nothing) for the model's current state. */
function writeFor(step: Step, model: ModelLog, term: { current: number }): { save?: RaftLogWrite; compact?: RaftSnapshot } | undefined {
  const commit = model.hardState.commit;
  switch (step.kind) {
    case 'append': {
      // Overwrite only above the commit and the snapshot, and never below the last term.
      const lowest = Math.max(commit, model.snapshotIndex) + 1;
      const first = Math.max(lowest, model.lastIndex + 1 - step.back);
      term.current = Math.max(term.current + step.termUp, model.termAt(first - 1) ?? 0, model.hardState.term);
      return { save: { entries: entries(first, first + step.count - 1, term.current) } };
    }
    case 'hardState': {
      const t = Math.max(model.hardState.term + step.termUp, 0);
      const sameTerm = t === model.hardState.term;
      const vote = sameTerm && model.hardState.vote !== undefined ? model.hardState.vote : ['n1', 'n2', undefined][step.vote];
      const newCommit = Math.max(commit, model.lastIndex - step.commitBack);
      return { save: { hardState: hardState(t, vote, newCommit) } };
    }
    case 'snapshot': {
      const index = Math.max(model.snapshotIndex, model.lastIndex + step.ahead, 1);
      const held = model.termAt(index);
      const t = step.match && held !== undefined ? held : Math.max(term.current + step.termUp, model.snapshot?.meta.term ?? 0);
      // A leader's snapshot is committed: it may replace uncommitted entries, never committed ones.
      if (held !== undefined && held !== t && index <= commit) return undefined;
      if (index === model.snapshotIndex && held !== t) return undefined;
      term.current = Math.max(term.current, t);
      return { save: { snapshot: snapshot(index, t), hardState: hardState(Math.max(model.hardState.term, t), model.hardState.term >= t ? model.hardState.vote : undefined, Math.max(commit, index)) } };
    }
    case 'compact': {
      const index = model.lastIndex - step.back;
      if (index <= model.snapshotIndex || index < 1) return undefined;
      return { compact: snapshot(index, model.termAt(index)!) };
    }
    default:
      return undefined;
  }
}

/**
 * The behaviour every {@link RaftLogStore} promises, as one suite. `make` returns a harness on a
 * fresh, empty medium each time; the suite disposes of every one it made.
 */
export function raftLogContract(name: string, make: () => RaftLogHarness | Promise<RaftLogHarness>, options: { historyRuns?: number } = {}): void {
  describe(`${name} (RaftLogStore contract)`, () => {
    const made: RaftLogHarness[] = [];
    const fresh = async (): Promise<RaftLogHarness> => {
      const harness = await make();
      made.push(harness);
      return harness;
    };
    afterEach(async () => {
      for (const harness of made.splice(0)) await harness.dispose();
    });

    it('starts empty', async () => {
      const h = await fresh();
      expect(plain(h.log.load())).toEqual({ hardState: { term: 0, vote: undefined, commit: 0 }, snapshot: undefined, entries: [] });
      expect(h.log.loadSnapshot()).toBeUndefined();
    });

    it('appends entries and loads exactly them after a restart, kinds and bytes included', async () => {
      const h = await fresh();
      const written = [entry(1, 1, 'noop'), entry(2, 1), entry(3, 2), { ...entry(4, 2), data: new Uint8Array(70_000).fill(7) }];
      await h.log.save({ entries: written.slice(0, 2) });
      await h.log.save({ entries: written.slice(2) });
      await h.restart();
      const loaded = h.log.load();
      expect(plain(loaded)).toEqual(plain({ hardState: INITIAL_HARD_STATE, snapshot: undefined, entries: written }));
      expect(loaded.entries[0]!.kind).toBe('noop');
      expect(loaded.entries[3]!.data).toBeInstanceOf(Uint8Array);
    });

    it('overwrites a suffix: every entry at or after the first new index goes, even past the new ones', async () => {
      const h = await fresh();
      await h.log.save({ entries: entries(1, 6, 1) });
      // Rewritten with the same term, entries 5 and 6 would still chain on: they must go all the same.
      await h.log.save({ entries: entries(3, 4, 1) });
      expect(h.log.load().entries.map((e) => e.index)).toEqual([1, 2, 3, 4]);
      await h.log.save({ entries: entries(5, 6, 1) });
      await h.log.save({ entries: entries(3, 4, 2) });
      const expected = { hardState: INITIAL_HARD_STATE, snapshot: undefined, entries: [...entries(1, 2, 1), ...entries(3, 4, 2)] };
      expect(plain(h.log.load())).toEqual(plain(expected));
      await h.restart();
      expect(plain(h.log.load())).toEqual(plain(expected));
      // Appending right after the last entry deletes nothing.
      await h.log.save({ entries: entries(5, 5, 2) });
      await h.restart();
      expect(h.log.load().entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5]);
    });

    it('stores the hard state, vote or no vote, and replaces it', async () => {
      const h = await fresh();
      await h.log.save({ hardState: hardState(1, undefined, 0) });
      await h.restart();
      expect(h.log.load().hardState).toEqual({ term: 1, vote: undefined, commit: 0 });
      await h.log.save({ hardState: hardState(1, 'n2', 0) });
      await h.log.save({ entries: entries(1, 3, 1), hardState: hardState(2, 'n3', 2) });
      await h.restart();
      expect(h.log.load().hardState).toEqual({ term: 2, vote: 'n3', commit: 2 });
      expect(h.log.load().entries).toHaveLength(3);
    });

    it('installs a snapshot that matches the log: entries up to it go, later ones stay', async () => {
      const h = await fresh();
      await h.log.save({ entries: [...entries(1, 5, 1), ...entries(6, 10, 2)] });
      await h.log.save({ snapshot: snapshot(6, 2, ['a', 'b']), hardState: hardState(2, undefined, 6) });
      await h.restart();
      const loaded = h.log.load();
      expect(loaded.snapshot).toEqual({ index: 6, term: 2, voters: ['a', 'b'] });
      expect(loaded.entries.map((e) => e.index)).toEqual([7, 8, 9, 10]);
      const snap = h.log.loadSnapshot()!;
      expect(snap.meta).toEqual({ index: 6, term: 2, voters: ['a', 'b'] });
      expect(new TextDecoder().decode(snap.data)).toBe('state@6');
    });

    it('installs a snapshot that does not match the log (or is past it) by discarding the whole log (Raft §7)', async () => {
      const h = await fresh();
      await h.log.save({ entries: entries(1, 8, 1) });
      // The leader's entry 5 has term 3: everything this log holds after 5 is another history.
      await h.log.save({ snapshot: snapshot(5, 3) });
      await h.restart();
      expect(h.log.load().snapshot?.index).toBe(5);
      expect(h.log.load().entries).toEqual([]);
      // Past the log, with entries in the same write: those follow the snapshot.
      await h.log.save({ snapshot: snapshot(20, 4), entries: entries(21, 22, 4), hardState: hardState(4, undefined, 20) });
      await h.restart();
      const loaded = h.log.load();
      expect(loaded.snapshot).toEqual({ index: 20, term: 4, voters: ['n1', 'n2', 'n3'] });
      expect(loaded.entries.map((e) => [e.index, e.term])).toEqual([[21, 4], [22, 4]]);
      expect(loaded.hardState).toEqual({ term: 4, vote: undefined, commit: 20 });
    });

    it('compacts: stores the checkpoint, deletes the entries it covers, keeps the rest', async () => {
      const h = await fresh();
      await h.log.save({ entries: [...entries(1, 4, 1), ...entries(5, 9, 3)], hardState: hardState(3, 'n1', 7) });
      await h.log.compact(snapshot(6, 3, ['n1'], 'checkpoint'));
      expect(h.log.load().entries.map((e) => e.index)).toEqual([7, 8, 9]);
      await h.restart();
      const loaded = h.log.load();
      expect(loaded.snapshot).toEqual({ index: 6, term: 3, voters: ['n1'] });
      expect(loaded.entries.map((e) => e.index)).toEqual([7, 8, 9]);
      expect(loaded.hardState).toEqual({ term: 3, vote: 'n1', commit: 7 });
      expect(new TextDecoder().decode(h.log.loadSnapshot()!.data)).toBe('checkpoint');
      // Compacting everything leaves the log empty after the snapshot; appends continue from it.
      await h.log.compact(snapshot(9, 3));
      await h.log.save({ entries: entries(10, 10, 3) });
      await h.restart();
      expect(h.log.load().snapshot?.index).toBe(9);
      expect(h.log.load().entries.map((e) => e.index)).toEqual([10]);
    });

    it('refuses a compaction past the log, with the wrong term, or older than the snapshot', async () => {
      const h = await fresh();
      await h.log.save({ entries: entries(1, 5, 2) });
      await h.log.compact(snapshot(2, 2));
      await expect(h.log.compact(snapshot(6, 2))).rejects.toBeInstanceOf(RangeError);
      await expect(h.log.compact(snapshot(4, 1))).rejects.toBeInstanceOf(RangeError);
      await expect(h.log.compact(snapshot(1, 2))).rejects.toBeInstanceOf(RangeError);
      await expect(h.log.save({ snapshot: snapshot(1, 2) })).rejects.toBeInstanceOf(RangeError);
      await h.log.compact(snapshot(4, 2));
      await h.restart();
      expect(h.log.load().snapshot?.index).toBe(4);
    });

    it('shares one commit among the writes of one turn, and resolves them in call order', async () => {
      const h = await fresh();
      await h.log.save({ entries: entries(1, 1, 1) });
      const before = h.commits();
      const order: number[] = [];
      const calls = [
        h.log.save({ entries: entries(2, 3, 1) }),
        h.log.save({ hardState: hardState(1, 'n1', 1) }),
        h.log.save({}),
        h.log.save({ entries: entries(4, 4, 1) }),
        h.log.compact(snapshot(2, 1)),
        h.log.save({ entries: entries(5, 9, 1), hardState: hardState(1, 'n1', 4) }),
      ].map((p, i) => p.then(() => order.push(i)));
      await Promise.all(calls);
      expect(order).toEqual([0, 1, 2, 3, 4, 5]);
      expect(h.commits() - before).toBe(1);
      await h.restart();
      const loaded = h.log.load();
      expect(loaded.snapshot?.index).toBe(2);
      expect(loaded.entries.map((e) => e.index)).toEqual([3, 4, 5, 6, 7, 8, 9]);
      expect(loaded.hardState).toEqual({ term: 1, vote: 'n1', commit: 4 });
    });

    it('resolves writes of different turns in call order too', async () => {
      const h = await fresh();
      const order: string[] = [];
      const calls: Promise<unknown>[] = [];
      let next = 1;
      for (let turn = 0; turn < 5; turn++) {
        for (let i = 0; i < 3; i++) {
          const at = next++;
          calls.push(h.log.save({ entries: entries(at, at, 1) }).then(() => order.push(`e${at}`)));
        }
        calls.push(h.log.save({}).then(() => order.push(`empty${turn}`)));
        await new Promise((resolve) => setImmediate(resolve));
      }
      await Promise.all(calls);
      const expected: string[] = [];
      for (let turn = 0, at = 1; turn < 5; turn++) {
        for (let i = 0; i < 3; i++) expected.push(`e${at++}`);
        expected.push(`empty${turn}`);
      }
      expect(order).toEqual(expected);
      expect(h.log.load().entries).toHaveLength(15);
    });

    it('refuses writes that break a Raft invariant with RangeError, writes nothing and carries on', async () => {
      const h = await fresh();
      await h.log.save({ entries: [...entries(1, 3, 1), ...entries(4, 6, 2)], hardState: hardState(2, 'n1', 4) });
      await h.log.compact(snapshot(2, 1));
      const refused: RaftLogWrite[] = [
        { entries: entries(8, 9, 2) }, // a gap after 6
        { entries: [entry(7, 2), entry(9, 2)] }, // not contiguous
        { entries: entries(2, 3, 2) }, // within the snapshot
        { entries: [entry(7, 1)] }, // a term below its predecessor's
        { entries: [entry(7, 3), entry(8, 2)] }, // a term going down within the write
        { entries: entries(4, 5, 3) }, // rewrites committed entries 4 with another term
        { entries: [{ ...entry(7, 2), kind: 'bogus' as LogEntry['kind'] }] },
        { entries: [{ ...entry(7, 2), index: 7.5 }] },
        { hardState: hardState(1, undefined, 4) }, // the term goes back
        { hardState: hardState(2, 'n2', 4) }, // a second vote in term 2
        { hardState: hardState(2, undefined, 4) }, // taking the vote back
        { hardState: hardState(2, 'n1', -1) },
        { hardState: { term: 2, vote: 'x'.repeat(70_000), commit: 4 } },
        // Good parts do not carry a bad one through: the whole write is refused.
        { hardState: hardState(3, undefined, 4), entries: entries(8, 8, 3) },
      ];
      for (const write of refused) await expect(h.log.save(write), JSON.stringify(write).slice(0, 120)).rejects.toBeInstanceOf(RangeError);
      // Rewriting committed entries with the same ones is harmless, and allowed.
      await h.log.save({ entries: entries(4, 7, 2) });
      await h.log.save({ hardState: hardState(3, 'n2', 5) });
      await h.restart();
      const loaded = h.log.load();
      expect(loaded.entries.map((e) => [e.index, e.term])).toEqual([[3, 1], [4, 2], [5, 2], [6, 2], [7, 2]]);
      expect(loaded.hardState).toEqual({ term: 3, vote: 'n2', commit: 5 });
    });

    it('load refuses to run while writes are in flight', async () => {
      const h = await fresh();
      const pending = h.log.save({ entries: entries(1, 2, 1) });
      expect(() => h.log.load()).toThrow(/in flight/);
      await pending;
      expect(h.log.load().entries).toHaveLength(2);
    });

    it('copies what it is given and what it returns', async () => {
      const h = await fresh();
      const e = entry(1, 1);
      const snap = snapshot(1, 1);
      const saved = h.log.save({ entries: [e] });
      e.data.fill(0);
      await saved;
      const compacted = h.log.compact(snap);
      snap.data.fill(0);
      await compacted;
      await h.log.save({ entries: entries(2, 2, 1) });
      const loaded = h.log.load();
      expect(Object.isFrozen(loaded.entries[0])).toBe(true);
      loaded.entries[0]!.data.fill(0);
      h.log.loadSnapshot()!.data.fill(0);
      await h.restart();
      expect(new TextDecoder().decode(h.log.load().entries[0]!.data)).toBe('t1-i2');
      expect(new TextDecoder().decode(h.log.loadSnapshot()!.data)).toBe('state@1');
    });

    it('waits for writes in flight on close, then refuses every call', async () => {
      const h = await fresh();
      let resolved = false;
      const saved = h.log.save({ entries: entries(1, 1, 1) }).then(() => (resolved = true));
      await h.log.close();
      expect(resolved).toBe(true);
      await saved;
      await expect(h.log.save({ entries: entries(2, 2, 1) })).rejects.toBeInstanceOf(StoreClosedError);
      await expect(h.log.compact(snapshot(1, 1))).rejects.toBeInstanceOf(StoreClosedError);
      expect(() => h.log.load()).toThrow(StoreClosedError);
      await h.log.close();
    });

    it('matches a model over random histories of writes and restarts', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(stepArbitrary, { minLength: 1, maxLength: 25 }), async (steps) => {
          const h = await make();
          try {
            const model = new ModelLog();
            const term = { current: 1 };
            let pending: Promise<void>[] = [];
            const settle = async (): Promise<void> => {
              await Promise.all(pending);
              pending = [];
            };
            for (const step of steps) {
              if (step.kind === 'restart') {
                await settle();
                await h.restart();
                expect(plain(h.log.load())).toEqual(plain(model.restored()));
                continue;
              }
              if (step.kind === 'turn') {
                await settle();
                expect(plain(h.log.load())).toEqual(plain(model.restored()));
                continue;
              }
              const write = writeFor(step, model, term);
              if (write?.save !== undefined) {
                pending.push(h.log.save(write.save));
                model.save(write.save);
              } else if (write?.compact !== undefined) {
                pending.push(h.log.compact(write.compact));
                model.compact(write.compact);
              }
            }
            await settle();
            await h.restart();
            expect(plain(h.log.load())).toEqual(plain(model.restored()));
            const snap = h.log.loadSnapshot();
            expect(snap === undefined ? undefined : [...snap.data]).toEqual(model.snapshot === undefined ? undefined : [...model.snapshot.data]);
          } finally {
            await h.dispose();
          }
        }),
        { numRuns: options.historyRuns ?? 60, seed: 20_240_611 },
      );
    });
  });
}
