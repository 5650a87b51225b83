import { describe, expect, it } from 'vitest';
import type { CommittedChange, WatchEvent, WatchHistory, WatchRecord, WatchResponseRecord, WatchViolationKind } from '../../src/testing/index.js';
import { HistoryFormatError, checkWatches } from '../../src/testing/index.js';

// A small store history: two transactions of two keys (revisions 2 and 4), puts and deletes.
const committed: CommittedChange[] = [
  { revision: 1, type: 'put', key: 'a/x', value: '1' },
  { revision: 2, type: 'put', key: 'a/y', value: '1' },
  { revision: 2, type: 'put', key: 'b/q', value: '1' },
  { revision: 3, type: 'put', key: 'b/m', value: '1' },
  { revision: 4, type: 'put', key: 'a/x', value: '2' },
  { revision: 4, type: 'delete', key: 'a/y' },
  { revision: 5, type: 'put', key: 'c', value: '1' },
  { revision: 6, type: 'put', key: 'a/z', value: '1' },
  { revision: 7, type: 'delete', key: 'a/x' },
  { revision: 8, type: 'put', key: 'b/m', value: '2' },
];

const put = (revision: number, key: string, value: string, prevValue?: string): WatchEvent =>
  prevValue === undefined ? { type: 'put', key, value, revision } : { type: 'put', key, value, revision, prevValue };
const del = (revision: number, key: string): WatchEvent => ({ type: 'delete', key, revision });
const events = (...list: WatchEvent[]): WatchResponseRecord => ({ kind: 'events', events: list });
const progress = (revision: number): WatchResponseRecord => ({ kind: 'progress', revision });

/** A watch record that a test may change. */
type Draft = { -readonly [K in keyof WatchRecord]: WatchRecord[K] } & { responses: WatchResponseRecord[] };

/** A history every guarantee holds for. */
function good(): { committed: CommittedChange[]; watches: Draft[] } {
  return {
    committed: structuredClone(committed),
    watches: [
      {
        id: 'prefix',
        node: 'n1',
        range: { key: 'a/', prefix: true },
        startRevision: 1,
        responses: [
          events(put(1, 'a/x', '1')),
          events(put(2, 'a/y', '1')),
          progress(3),
          events(put(4, 'a/x', '2', '1'), del(4, 'a/y')),
          progress(5),
          events(put(6, 'a/z', '1')),
          events(del(7, 'a/x')),
          progress(8),
        ],
      },
      {
        id: 'range',
        node: 'n2',
        range: { key: 'b/', end: 'b/z' },
        startRevision: 2,
        responses: [events(put(2, 'b/q', '1')), events(put(3, 'b/m', '1')), progress(5), events(put(8, 'b/m', '2', '1'))],
      },
      { id: 'key', range: { key: 'c' }, startRevision: 1, responses: [events(put(5, 'c', '1')), progress(8)] },
      // A resume chain on the prefix: w1 → w2 → w3.
      {
        id: 'w1',
        range: { key: 'a/', prefix: true },
        startRevision: 1,
        responses: [events(put(1, 'a/x', '1'), put(2, 'a/y', '1')), progress(3)],
      },
      {
        id: 'w2',
        resumes: 'w1',
        range: { key: 'a/', prefix: true },
        startRevision: 4,
        responses: [events(put(4, 'a/x', '2'), del(4, 'a/y')), events(put(6, 'a/z', '1'))],
        endedAtRevision: 6,
      },
      { id: 'w3', resumes: 'w2', range: { key: 'a/', prefix: true }, startRevision: 7, responses: [events(del(7, 'a/x')), progress(8)] },
    ],
  };
}

/** The good history (or `h`) with one change made by `edit` to the watch `id`. */
function changed(id: string, edit: (w: Draft) => void, h = good()): WatchHistory {
  edit(h.watches.find((x) => x.id === id)!);
  return h;
}

const kinds = (h: WatchHistory): WatchViolationKind[] => checkWatches(h).violations.map((v) => v.kind);

/** Asserts that exactly one violation is reported, of `kind`, and returns it. */
function only(h: WatchHistory, kind: WatchViolationKind) {
  const result = checkWatches(h);
  expect(result.ok).toBe(false);
  expect(result.violations.map((v) => v.kind)).toEqual([kind]);
  expect(result.violations[0]!.message.startsWith(`${kind}: `)).toBe(true);
  return result.violations[0]!;
}

describe('checkWatches: a correct history', () => {
  it('passes, with a transaction, a prefix, a range, a single key, progress notifications and a resume chain', () => {
    const result = checkWatches(good());
    expect(result.violations).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.omitted).toBe(0);
    expect(result.stats).toEqual({ watches: 6, events: 16, progress: 7, resumes: 2, chains: 4 });
  });

  it('passes an empty history and a watch that received nothing yet', () => {
    expect(checkWatches({ committed: [], watches: [] }).ok).toBe(true);
    const idle: WatchRecord = { id: 'idle', range: { key: 'a/', prefix: true }, startRevision: 9, responses: [] };
    expect(checkWatches({ committed, watches: [idle] }).ok).toBe(true);
  });

  it('checks every key for an empty prefix', () => {
    const all: WatchRecord = {
      id: 'all',
      range: { key: '', prefix: true },
      startRevision: 7,
      responses: [events(del(7, 'a/x'), put(8, 'b/m', '2'))],
    };
    expect(checkWatches({ committed, watches: [all] }).ok).toBe(true);
    const missed = checkWatches({ committed, watches: [{ ...all, startRevision: 5 }] });
    // Revision 5 (c) and 6 (a/z) were not delivered; the first is named.
    expect(missed.violations.map((v) => [v.kind, v.revision, v.key])).toEqual([['reliable', 5, 'c']]);
    expect(missed.violations[0]!.message).toContain('the first of 2 changes it missed');
  });
});

describe('checkWatches: one violation of each kind', () => {
  it('ordered: a later revision delivered before an earlier one', () => {
    const h = changed('prefix', (w) => {
      const [r6, r7] = [w.responses[5]!, w.responses[6]!];
      w.responses[5] = r7;
      w.responses[6] = r6;
    });
    const v = only(h, 'ordered');
    expect(v).toMatchObject({ watchId: 'prefix', revision: 6, key: 'a/z' });
    expect(v.message).toContain('watch "prefix" (node "n1") received revision 6');
    expect(v.message).toContain('after revision 7 had arrived in response 6');
  });

  it('ordered: revisions going back within one response', () => {
    const h = good();
    h.committed.push({ revision: 9, type: 'put', key: 'c', value: '2' });
    changed('key', (w) => (w.responses = [events(put(9, 'c', '2'), put(5, 'c', '1'))]), h);
    const v = only(h, 'ordered');
    expect(v.message).toContain('after revision 9 had arrived earlier in the same response');
  });

  it('unique: the same change delivered twice', () => {
    const h = changed('prefix', (w) => {
      w.responses.splice(1, 0, events(put(1, 'a/x', '1')));
    });
    const v = only(h, 'unique');
    expect(v).toMatchObject({ watchId: 'prefix', revision: 1, key: 'a/x' });
    expect(v.message).toContain('received the put of "a/x" = "1" at revision 1 twice: in response 1 and again in response 2');
  });

  it('invented: a value the store never wrote', () => {
    const h = changed('range', (w) => {
      w.responses[3] = events(put(8, 'b/m', '3', '1'));
    });
    const v = only(h, 'invented');
    expect(v).toMatchObject({ watchId: 'range', revision: 8, key: 'b/m' });
    expect(v.message).toContain('received the put of "b/m" = "3" at revision 8 in response 4, but the store committed the put of "b/m" = "2" at revision 8');
  });

  it('invented: a change that was never committed, a key outside the range, a revision below the start, a wrong previous value', () => {
    const never = only(changed('key', (w) => w.responses.splice(1, 0, events(put(6, 'c', '9')))), 'invented');
    expect(never.message).toContain('the store committed no change to "c" at revision 6 (revision 6 changed "a/z")');
    const outside = only(changed('range', (w) => w.responses.splice(2, 0, events(put(5, 'c', '1')))), 'invented');
    expect(outside.message).toContain('on range ["b/", "b/z") received the put of "c" = "1" at revision 5 in response 3, a key outside its range');
    const below = only(changed('range', (w) => w.responses.unshift(events(put(1, 'a/x', '1')))), 'invented');
    expect(below.message).toContain('asked for revisions from 2 but received the put of "a/x" = "1" at revision 1');
    const prev = only(changed('range', (w) => (w.responses[3] = events(put(8, 'b/m', '2', '0')))), 'invented');
    expect(prev.message).toContain('with previous value "0", but just before revision 8 "b/m" held "1"');
    const absent = only(changed('range', (w) => (w.responses[1] = events(put(3, 'b/m', '1', '0')))), 'invented');
    expect(absent.message).toContain('"b/m" was absent');
  });

  it('reliable: a change in range never delivered, though progress covered it', () => {
    const h = changed('prefix', (w) => {
      w.responses.splice(5, 1); // the put of a/z at 6
    });
    const v = only(h, 'reliable');
    expect(v).toMatchObject({ watchId: 'prefix', revision: 6, key: 'a/z' });
    expect(v.message).toContain('watch "prefix" (node "n1") on prefix "a/" from revision 1 covered up to revision 8 (its last progress notification)');
    expect(v.message).toContain('never delivered the put of "a/z" = "1" at revision 6');
  });

  it('atomic: a transaction split across two responses', () => {
    const h = changed('prefix', (w) => {
      w.responses.splice(3, 1, events(put(4, 'a/x', '2', '1')), events(del(4, 'a/y')));
    });
    const v = only(h, 'atomic');
    expect(v).toMatchObject({ watchId: 'prefix', revision: 4 });
    expect(v.message).toContain('received the changes of revision 4 in its range split across responses 4 and 5');
  });

  it('atomic: only part of a transaction delivered (not also reported as unreliable)', () => {
    const h = changed('prefix', (w) => {
      w.responses[3] = events(put(4, 'a/x', '2', '1'));
    });
    const v = only(h, 'atomic');
    expect(v).toMatchObject({ watchId: 'prefix', revision: 4, key: 'a/y' });
    expect(v.message).toContain('received only 1 of the 2 changes of revision 4 in its range (in response 4), and it never received the delete of "a/y" at revision 4');
  });

  it('atomic: a watch over both keys of a transaction must get both; a watch over one, that one', () => {
    // Revision 2 changed a/y and b/q. The good history's prefix and range watches each get one.
    const all: WatchRecord = { id: 'all', range: { key: '', prefix: true }, startRevision: 2, responses: [events(put(2, 'a/y', '1'), put(2, 'b/q', '1'))], endedAtRevision: 2 };
    expect(checkWatches({ committed, watches: [all] }).ok).toBe(true);
    const half = only({ committed, watches: [{ ...all, responses: [events(put(2, 'b/q', '1'))] }] }, 'atomic');
    expect(half).toMatchObject({ revision: 2, key: 'a/y' });
    expect(half.message).toContain('received only 1 of the 2 changes of revision 2');
  });

  it('progress: an event at or below a progress revision arrives after it', () => {
    const h = changed('range', (w) => {
      w.responses.splice(2, 1, progress(8));
    });
    const v = only(h, 'progress');
    expect(v).toMatchObject({ watchId: 'range', revision: 8, key: 'b/m' });
    expect(v.message).toContain('after the progress notification for revision 8 in response 3 said every event up to revision 8 had been delivered');
  });

  it('progress: a progress revision goes back', () => {
    const h = changed('prefix', (w) => {
      w.responses.splice(3, 0, progress(2));
    });
    const v = only(h, 'progress');
    expect(v.revision).toBe(2);
    expect(v.message).toContain('a progress notification for revision 2 in response 4, after one for revision 3 in response 3');
  });

  it('resumable: a resume over a different range', () => {
    const h = changed('w3', (w) => {
      w.range = { key: 'a', prefix: true };
    });
    const v = only(h, 'resumable');
    expect(v).toMatchObject({ watchId: 'w3', otherWatchId: 'w2' });
    expect(v.message).toContain('watch "w3" resumes watch "w2" but watches prefix "a" where the resumed watch watched prefix "a/"');
  });

  it('resumable: a chain with a gap at the resume boundary, naming both watches and the change lost', () => {
    // w3 starts at 8, but w2 covered only up to 6: revision 7 (delete a/x) falls between them.
    const h = changed('w3', (w) => {
      w.startRevision = 8;
      w.responses = [progress(8)];
    });
    const v = only(h, 'resumable');
    expect(v).toMatchObject({ watchId: 'w3', otherWatchId: 'w2', revision: 7, key: 'a/x' });
    expect(v.message).toContain('watch "w3" resumes watch "w2" from revision 8, but the resumed watch had covered only up to revision 6 (its last event)');
    expect(v.message).toContain('revision 7 was watched by neither: the delete of "a/x" at revision 7 was never delivered');
    expect(v.message).toContain('A resume must start at the covered revision + 1, here 7.');
  });

  it('unique across a resume chain: a resume that starts too early redelivers', () => {
    const h = changed('w2', (w) => {
      w.startRevision = 2;
      w.responses.unshift(events(put(2, 'a/y', '1')));
    });
    const v = only(h, 'unique');
    expect(v).toMatchObject({ watchId: 'w2', otherWatchId: 'w1', revision: 2, key: 'a/y' });
    expect(v.message).toContain('already delivered in response 1 of watch "w1"');
    expect(v.message).toContain('a resume must start at 4');
  });

  it('reliable across a resume chain: a change missed inside a link is blamed on that link', () => {
    const h = changed('w2', (w) => {
      w.responses = [events(put(4, 'a/x', '2'), del(4, 'a/y'))]; // drops a/z at 6; endedAtRevision 6 still claims it
    });
    const v = only(h, 'reliable');
    expect(v).toMatchObject({ watchId: 'w2', revision: 6, key: 'a/z' });
    expect(v.message).toContain('covered up to revision 6 (the revision it ended at)');
  });
});

describe('checkWatches: coverage', () => {
  it('does not flag changes after the revision a watch ended at', () => {
    const early: WatchRecord = { id: 'early', range: { key: 'a/', prefix: true }, startRevision: 1, responses: [events(put(1, 'a/x', '1')), events(put(2, 'a/y', '1'))], endedAtRevision: 3 };
    const result = checkWatches({ committed, watches: [early] });
    expect(result.ok).toBe(true);
    // The same watch claiming to have ended at 4 missed the transaction at 4.
    const late = checkWatches({ committed, watches: [{ ...early, endedAtRevision: 4 }] });
    expect(late.violations.map((v) => [v.kind, v.revision, v.key])).toEqual([['reliable', 4, 'a/x']]);
    expect(late.violations[0]!.message).toContain('covered up to revision 4 (the revision it ended at)');
    expect(late.violations[0]!.message).toContain('the first of 2 changes it missed');
  });

  it('a gap before a resume: w2 resumes w1 beyond its covered revision + 1 with no change lost', () => {
    // w1 covered up to 3 by its progress notification; without it, only up to 2, so w2 should start
    // at 3, not 4. Nothing under "a/" changed at 3, so nothing was lost this time, yet the resume
    // could have lost a change.
    const result = checkWatches(changed('w1', (w) => (w.responses = [events(put(1, 'a/x', '1'), put(2, 'a/y', '1'))])));
    expect(result.violations.map((v) => v.kind)).toEqual(['resumable']);
    expect(result.violations[0]!.message).toContain('revision 3 was watched by neither: no change in its range was committed there this time');
  });
});

describe('checkWatches: options and malformed histories', () => {
  it('lists at most maxViolations and counts the rest', () => {
    const h = changed('prefix', (w) => {
      w.responses = [progress(8)];
    });
    // One reliable violation (it covers all): use several watches to get several.
    const many = { committed: h.committed, watches: [0, 1, 2, 3].map((n) => ({ ...h.watches[0]!, id: `p${n}` })) };
    const result = checkWatches(many, { maxViolations: 2 });
    expect(result.violations).toHaveLength(2);
    expect(result.omitted).toBe(2);
    expect(result.ok).toBe(false);
    expect(() => checkWatches(many, { maxViolations: -1 })).toThrow(RangeError);
  });

  it('refuses malformed histories', () => {
    const w: WatchRecord = { id: 'w', range: { key: 'x' }, startRevision: 1, responses: [] };
    expect(() => checkWatches({ committed: [committed[1]!, committed[0]!], watches: [] })).toThrow(HistoryFormatError);
    expect(() => checkWatches({ committed: [committed[0]!, committed[0]!], watches: [] })).toThrow(/changes twice at revision 1/);
    expect(() => checkWatches({ committed, watches: [w, w] })).toThrow(/used by two watches/);
    expect(() => checkWatches({ committed, watches: [{ ...w, resumes: 'nope' }] })).toThrow(/not in the history/);
    expect(() => checkWatches({ committed, watches: [w, { ...w, id: 'a', resumes: 'w' }, { ...w, id: 'b', resumes: 'w' }] })).toThrow(/both resume/);
    expect(() => checkWatches({ committed, watches: [{ ...w, id: 'a', resumes: 'b' }, { ...w, id: 'b', resumes: 'a' }] })).toThrow(/cycle/);
    expect(() => checkWatches({ committed, watches: [{ ...w, startRevision: 0 }] })).toThrow(/startRevision/);
    expect(() => checkWatches({ committed, watches: [{ ...w, range: { key: 'x', end: 'y', prefix: true } }] })).toThrow(/not both/);
  });
});

describe('checkWatches: a large history', () => {
  it('checks 100k changes and 200 watches (with resume chains), and still finds one lost change', () => {
    const PREFIXES = 100;
    const big: CommittedChange[] = [];
    let revision = 0;
    for (let n = 0; big.length < 100_000; n++) {
      revision++;
      const p = n % PREFIXES;
      const key = `p${String(p).padStart(3, '0')}/k${n % 997}`;
      big.push(n % 5 === 0 ? { revision, type: 'delete', key } : { revision, type: 'put', key, value: String(n) });
      // Every seventh revision is a transaction over two prefixes.
      if (n % 7 === 0) big.push({ revision, type: 'put', key: `p${String((p + 1) % PREFIXES).padStart(3, '0')}/t${n}`, value: 't' });
    }
    const byPrefix = new Map<string, CommittedChange[]>();
    for (const c of big) {
      const p = c.key.slice(0, 5);
      const list = byPrefix.get(p);
      if (list === undefined) byPrefix.set(p, [c]);
      else list.push(c);
    }
    /** The responses a correct server sends for `changes` (in range, from start): three revisions per response, progress every tenth. */
    const respond = (changes: readonly CommittedChange[], start: number, end: number): WatchResponseRecord[] => {
      const out: WatchResponseRecord[] = [];
      let batch: WatchEvent[] = [];
      let revisions = 0;
      for (let i = 0; i < changes.length; i++) {
        const c = changes[i]!;
        if (c.revision < start || c.revision > end) continue;
        batch.push(c.type === 'put' ? put(c.revision, c.key, c.value!) : del(c.revision, c.key));
        if (changes[i + 1]?.revision === c.revision) continue;
        if (++revisions % 3 === 0) {
          out.push(events(...batch));
          batch = [];
          if (revisions % 30 === 0) out.push(progress(c.revision));
        }
      }
      if (batch.length > 0) out.push(events(...batch));
      return out;
    };
    const watches: WatchRecord[] = [];
    for (let i = 0; i < 200; i++) {
      const p = `p${String(i % PREFIXES).padStart(3, '0')}/`;
      const changes = byPrefix.get(p.slice(0, 5))!;
      if (i % 4 === 3) {
        // A chain of two: the first link ends at mid, the second resumes from mid + 1.
        const mid = Math.floor(revision / 2);
        watches.push({ id: `w${i}`, range: { key: p, prefix: true }, startRevision: 1, responses: respond(changes, 1, mid), endedAtRevision: mid });
        watches.push({ id: `w${i}b`, resumes: `w${i}`, range: { key: p, prefix: true }, startRevision: mid + 1, responses: respond(changes, mid + 1, revision) });
      } else if (i % 4 === 2) {
        // A range within the prefix: [p, p + "l") holds the k keys, not the t keys.
        watches.push({ id: `w${i}`, range: { key: p, end: `${p}l` }, startRevision: 1000, responses: respond(changes.filter((c) => c.key < `${p}l`), 1000, revision) });
      } else {
        watches.push({ id: `w${i}`, range: { key: p, prefix: true }, startRevision: 1 + i * 10, responses: respond(changes, 1 + i * 10, revision) });
      }
    }
    const h: WatchHistory = { committed: big, watches };
    const result = checkWatches(h);
    expect(result.violations).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.stats.watches).toBe(250);
    expect(result.stats.chains).toBe(200);
    expect(result.stats.events).toBeGreaterThan(100_000);

    // Drop one single-change revision from the middle of one watch: the checker must find it.
    const victim = watches[0]!;
    const r = victim.responses.findIndex((x, k) => k > 10 && x.kind === 'events' && x.events.length === 3 && new Set(x.events.map((e) => e.revision)).size === 3);
    const resp = victim.responses[r] as { kind: 'events'; events: WatchEvent[] };
    const dropped = resp.events[1]!;
    const broken = { committed: big, watches: [{ ...victim, responses: [...victim.responses.slice(0, r), events(resp.events[0]!, resp.events[2]!), ...victim.responses.slice(r + 1)] }, ...watches.slice(1)] };
    const found = checkWatches(broken);
    expect(found.violations.map((v) => [v.kind, v.watchId, v.revision, v.key])).toEqual([['reliable', 'w0', dropped.revision, dropped.key]]);
  });
});
