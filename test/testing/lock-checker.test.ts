import { describe, expect, it } from 'vitest';
import type { LockAcquisition, LockEvent, LockHistory, LockViolationKind } from '../../src/testing/index.js';
import { DEFAULT_MAX_LOCK_VIOLATIONS, HistoryFormatError, checkLocks, parseLockLines } from '../../src/testing/index.js';

const start = (holder: string, token: number, at: number): LockEvent => ({ kind: 'start', holder, token, at });
const end = (holder: string, token: number, at: number): LockEvent => ({ kind: 'end', holder, token, at });
const crash = (holder: string, at: number): LockEvent => ({ kind: 'crash', holder, at });

/**
 * A history every guarantee holds for: three holders take turns; b enters at the very time a
 * leaves; token 7 was issued to c but never used; a crashes inside its second section, and b
 * enters after the crash and is still inside at the end.
 */
function good(): { lock: string; events: LockEvent[]; acquisitions: LockAcquisition[] } {
  return {
    lock: 'jobs',
    events: [
      start('a', 3, 100),
      end('a', 3, 110),
      start('b', 5, 110),
      end('b', 5, 130),
      start('c', 6, 140),
      end('c', 6, 150),
      start('a', 8, 160),
      crash('a', 170),
      start('b', 9, 180),
    ],
    acquisitions: [
      { holder: 'a', token: 3, at: 95 },
      { holder: 'b', token: 5, at: 105 },
      { holder: 'c', token: 6, at: 135 },
      { holder: 'c', token: 7, at: 152 },
      { holder: 'a', token: 8, at: 155 },
      { holder: 'b', token: 9, at: 175 },
    ],
  };
}

/** Asserts that exactly one violation is reported, of `kind`, and returns it. */
function only(h: LockHistory, kind: LockViolationKind) {
  const result = checkLocks(h);
  expect(result.ok).toBe(false);
  expect(result.violations.map((v) => v.kind)).toEqual([kind]);
  expect(result.violations[0]!.message.startsWith(`${kind}: `)).toBe(true);
  return result.violations[0]!;
}

describe('checkLocks: a correct history', () => {
  it('passes three holders taking turns, with a crash, an unused token and a section still open', () => {
    const result = checkLocks(good());
    expect(result.violations).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.omitted).toBe(0);
    expect(result.stats).toEqual({ sections: 5, holders: 3, crashes: 1, maxToken: 9, openAtEnd: 1 });
  });

  it('passes an empty history', () => {
    expect(checkLocks({ events: [] })).toEqual({
      ok: true,
      violations: [],
      omitted: 0,
      stats: { sections: 0, holders: 0, crashes: 0, maxToken: 0, openAtEnd: 0 },
    });
  });

  it('lets equal times through: the order of the events decides', () => {
    const h = good();
    const same = { events: h.events.map((e) => ({ ...e, at: 100 })) };
    expect(checkLocks(same).ok).toBe(true);
    // An end and a start at one time, in that order, is a handover; in the other order, an overlap.
    expect(checkLocks({ events: [start('a', 1, 5), end('a', 1, 7), start('b', 2, 7)] }).ok).toBe(true);
    expect(only({ events: [start('a', 1, 5), start('b', 2, 7), end('a', 1, 7)] }, 'overlap').at).toBe(7);
  });

  it('a crash ends the crashed holder’s section, so a later start is fine', () => {
    expect(checkLocks({ events: [start('a', 1, 10), crash('a', 20), start('b', 2, 30), end('b', 2, 40)] }).ok).toBe(true);
    // Without the crash, a's section with token 8 is still open when b enters with 9.
    const h = good();
    h.events.splice(7, 1);
    const v = only(h, 'overlap');
    expect(v).toMatchObject({ holder: 'b', token: 9, at: 180, other: { holder: 'a', token: 8, at: 160 } });
  });

  it('a crash of another holder ends nothing of this one: a start while it is open is an overlap', () => {
    // b is inside with token 2; a, with nothing open, crashes; c enters with 3 while b is still inside.
    const h = { events: [start('a', 1, 10), end('a', 1, 20), start('b', 2, 30), crash('a', 40), start('c', 3, 50)] };
    const v = only(h, 'overlap');
    expect(v).toMatchObject({ holder: 'c', token: 3, at: 50, other: { holder: 'b', token: 2, at: 30 } });
    expect(checkLocks(h).stats).toEqual({ sections: 3, holders: 3, crashes: 1, maxToken: 3, openAtEnd: 2 });
  });
});

describe('checkLocks: one violation of each kind', () => {
  it('overlap: b enters before a leaves, naming both holders, tokens and times', () => {
    const h = good();
    h.events.splice(2, 1); // b's start at 110 …
    h.events.splice(1, 0, start('b', 5, 105)); // … moves to 105, inside a's section
    const v = only(h, 'overlap');
    expect(v).toMatchObject({ holder: 'b', token: 5, at: 105, other: { holder: 'a', token: 3, at: 100 } });
    expect(v.message).toContain(
      'overlap: holder "b" entered its critical section on lock "jobs" with token 5 at 105 while holder "a" was still in its section with token 3 (entered at 100, neither ended nor crashed since).',
    );
  });

  it('overlap: the same holder entering with another token while its section is open', () => {
    const v = only({ events: [start('a', 1, 10), start('a', 2, 20), end('a', 2, 30)] }, 'overlap');
    expect(v).toMatchObject({ holder: 'a', token: 2, at: 20, other: { holder: 'a', token: 1, at: 10 } });
  });

  it('overlap: counts the other open sections', () => {
    const result = checkLocks({ events: [start('a', 1, 10), start('b', 2, 20), start('c', 3, 30)] });
    expect(result.violations.map((v) => [v.kind, v.holder, v.other?.holder])).toEqual([
      ['overlap', 'b', 'a'],
      ['overlap', 'c', 'a'],
    ]);
    expect(result.violations[1]!.message).toContain('as were 1 other section.');
    expect(result.stats.openAtEnd).toBe(3);
  });

  it('token-order: c enters with a token smaller than one b already used', () => {
    const h = good();
    h.events[4] = start('c', 4, 140);
    h.events[5] = end('c', 4, 150);
    const v = only(h, 'token-order');
    expect(v).toMatchObject({ holder: 'c', token: 4, at: 140, other: { holder: 'b', token: 5, at: 110 } });
    expect(v.message).toContain('token-order: holder "c" entered its critical section on lock "jobs" with token 4 at 140, after holder "b" had entered with token 5 at 110.');
  });

  it('token-order: an equal token from another holder', () => {
    const v = only({ events: [start('a', 5, 1), end('a', 5, 2), start('b', 5, 3)] }, 'token-order');
    expect(v).toMatchObject({ holder: 'b', token: 5, other: { holder: 'a', token: 5, at: 1 } });
  });

  it('a paused holder with an old token entering while its successor is inside: overlap and token-order', () => {
    // a acquired 3 and paused; its lease expired; b acquired 5 and entered; a woke and entered.
    const result = checkLocks({ events: [start('b', 5, 100), start('a', 3, 120), end('a', 3, 125), end('b', 5, 130)] });
    expect(result.violations.map((v) => [v.kind, v.holder, v.token, v.other?.holder, v.other?.token])).toEqual([
      ['overlap', 'a', 3, 'b', 5],
      ['token-order', 'a', 3, 'b', 5],
    ]);
  });

  it('unmatched: an end of a section that never started', () => {
    const h = good();
    h.events.splice(4, 1); // c's start
    const v = only(h, 'unmatched');
    expect(v).toMatchObject({ holder: 'c', token: 6, at: 150 });
    expect(v.other).toBeUndefined();
    expect(v.message).toContain('unmatched: holder "c" left its critical section on lock "jobs" with token 6 at 150, but no section of holder "c" with token 6 was open: it never started.');
  });

  it('unmatched: an end twice, and an end after the holder crashed', () => {
    const twice = good();
    twice.events.splice(2, 0, end('a', 3, 110));
    expect(only(twice, 'unmatched')).toMatchObject({ holder: 'a', token: 3, at: 110, other: { at: 110 } });
    expect(checkLocks(twice).violations[0]!.message).toContain('it had already ended at 110');
    const dead = good();
    dead.events.splice(8, 0, end('a', 8, 175));
    const v = only(dead, 'unmatched');
    expect(v).toMatchObject({ holder: 'a', token: 8, at: 175, other: { holder: 'a', token: 8, at: 170 } });
    expect(v.message).toContain('holder "a" crashed at 170, which ended it');
  });

  it('unmatched: a second start of a (holder, token) already started (reported once, not also as token-order)', () => {
    const h = good();
    h.events.splice(4, 0, start('b', 5, 135), end('b', 5, 138));
    const v = only(h, 'unmatched');
    expect(v).toMatchObject({ holder: 'b', token: 5, at: 135, other: { holder: 'b', token: 5, at: 110 } });
    expect(v.message).toContain('holder "b" entered its critical section on lock "jobs" with token 5 at 135, but it had already entered with that token at 110 and left at 130.');
    expect(checkLocks(h).stats.sections).toBe(5);
  });

  it('duplicate-token: two acquisitions answered the same token', () => {
    const h = good();
    h.acquisitions[3] = { holder: 'c', token: 6, at: 152 };
    const v = only(h, 'duplicate-token');
    expect(v).toMatchObject({ holder: 'c', token: 6, at: 152, other: { holder: 'c', token: 6, at: 135 } });
    expect(v.message).toContain('duplicate-token: the lock service on lock "jobs" answered token 6 to holder "c" at 152, and had answered it to holder "c" at 135.');
  });
});

describe('checkLocks: options and malformed histories', () => {
  it('lists at most maxViolations and counts the rest', () => {
    const events = [start('a', 10, 0), ...[1, 2, 3, 4].map((t) => start(`h${t}`, t, t))];
    const result = checkLocks({ events }, { maxViolations: 3 });
    // Four starts inside a's section, each with a smaller token: eight violations.
    expect(result.violations).toHaveLength(3);
    expect(result.omitted).toBe(5);
    expect(result.ok).toBe(false);
    const none = checkLocks({ events }, { maxViolations: 0 });
    expect(none.violations).toEqual([]);
    expect(none.ok).toBe(false);
    expect(DEFAULT_MAX_LOCK_VIOLATIONS).toBe(100);
    expect(() => checkLocks({ events }, { maxViolations: -1 })).toThrow(RangeError);
  });

  it('refuses events out of time order, and malformed events', () => {
    const h = good();
    h.events[3] = end('b', 5, 90);
    expect(() => checkLocks(h)).toThrow(HistoryFormatError);
    expect(() => checkLocks(h)).toThrow(/events\[3\]: time 90 is before the previous event's time 110/);
    const bad = (e: unknown) => () => checkLocks({ events: [e as LockEvent] });
    expect(bad({ kind: 'start', holder: 'a', token: 0, at: 1 })).toThrow(/events\[0\]: token must be a positive integer, not 0/);
    expect(bad({ kind: 'end', holder: 'a', token: 1.5, at: 1 })).toThrow(/token must be a positive integer, not 1.5/);
    expect(bad({ kind: 'start', holder: 'a', at: 1 })).toThrow(/token must be a positive integer, not missing/);
    expect(bad({ kind: 'start', token: 1, at: 1 })).toThrow(/holder must be a non-empty string, not missing/);
    expect(bad({ kind: 'crash', holder: '', at: 1 })).toThrow(/holder must be a non-empty string/);
    expect(bad({ kind: 'release', holder: 'a', token: 1, at: 1 })).toThrow(/unknown kind "release" \(expected start, end or crash\)/);
    expect(bad({ kind: 'crash', holder: 'a', at: Number.NaN })).toThrow(/at must be a finite number/);
    expect(bad(null)).toThrow(HistoryFormatError);
    expect(() => checkLocks({ events: [], acquisitions: [{ holder: 'a', token: -2, at: 1 }] })).toThrow(/acquisitions\[0\]: token must be a positive integer/);
  });
});

describe('parseLockLines', () => {
  it('parses what a shell critical section writes, skipping blank lines', () => {
    const text = [
      'start a 3 1718000000000000100',
      'end a 3 1718000000000000200',
      '',
      'start\tb 5   1718000000000000300\r',
      'crash b 1718000000000000400',
      '   ',
    ].join('\n');
    const events = parseLockLines(text);
    expect(events.map((e) => e.kind)).toEqual(['start', 'end', 'start', 'crash']);
    expect(events[0]).toEqual({ kind: 'start', holder: 'a', token: 3, at: 1718000000000000100 });
    expect(events[3]).toEqual({ kind: 'crash', holder: 'b', at: 1718000000000000400 });
    // Nanoseconds since the epoch lose their last digits as doubles, but keep their order.
    expect(checkLocks({ events }).stats).toEqual({ sections: 2, holders: 2, crashes: 1, maxToken: 5, openAtEnd: 0 });
    expect(checkLocks({ events: parseLockLines('start a 1 10\nstart b 2 20\n') }).violations.map((v) => v.kind)).toEqual(['overlap']);
  });

  it('throws a HistoryFormatError naming the line', () => {
    const at = (text: string): HistoryFormatError => {
      try {
        parseLockLines(text, 'locks.log');
      } catch (error: unknown) {
        expect(error).toBeInstanceOf(HistoryFormatError);
        return error as HistoryFormatError;
      }
      throw new Error(`no error for ${JSON.stringify(text)}`);
    };
    const e = at('start a 1 10\n\nstart b two 20\n');
    expect(e.line).toBe(3);
    expect(e.message).toBe('locks.log:3: the token must be a positive integer, not "two"');
    expect(at('start a 0 10').detail).toBe('the token must be a positive integer, not "0"');
    expect(at('start a 1 10\nend a 1').message).toBe('locks.log:2: expected "end <holder> <token> <at>", not "end a 1"');
    expect(at('crash a 1 10').message).toBe('locks.log:1: expected "crash <holder> <at>", not "crash a 1 10"');
    expect(at('start a 1 soon').detail).toBe('the time must be a number, not "soon"');
    expect(at('\nrelease a 1 10').message).toBe('locks.log:2: unknown event "release" (expected start, end or crash)');
    expect(at('start a 1 20\n\nend a 1 10').message).toBe(
      'locks.log:3: time 10 is before the time 20 on line 1; the lines must be in the order the resource saw them, with nondecreasing times',
    );
    expect(() => parseLockLines('start a 1.5 10')).toThrow(/^line 1: the token must be a positive integer/);
  });
});

// ---------------------------------------------------------------------------------------------
// A property: a correct serial history passes; one mutation of it fails, with the expected kind.

/** A 32-bit linear congruential generator (Numerical Recipes' constants), seeded: runs repeat. */
function lcg(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.floor((state / 2 ** 32) * n);
  };
}

interface Sec {
  holder: string;
  token: number;
  startAt: number;
  closeAt: number;
  close: 'end' | 'crash';
}

/** 200 sections, one after another, of 5 holders; tokens grow by 1 to 3; times grow by 0 to 4 (so some are equal); one in ten crashes. */
function serial(random: (n: number) => number): Sec[] {
  const out: Sec[] = [];
  let token = 0;
  let at = 1_000;
  for (let i = 0; i < 200; i++) {
    token += 1 + random(3);
    const startAt = (at += random(3));
    const closeAt = (at += random(5));
    out.push({ holder: `h${random(5)}`, token, startAt, closeAt, close: random(10) === 0 ? 'crash' : 'end' });
  }
  return out;
}

function render(sections: readonly Sec[]): LockEvent[] {
  return sections.flatMap((s) => [start(s.holder, s.token, s.startAt), s.close === 'end' ? end(s.holder, s.token, s.closeAt) : crash(s.holder, s.closeAt)]);
}

/** The index of a random section (in [from, to)) for which `ok` holds. */
function pick(random: (n: number) => number, from: number, to: number, ok: (i: number) => boolean): number {
  for (;;) {
    const i = from + random(to - from);
    if (ok(i)) return i;
  }
}

type Mutation = (random: (n: number) => number, s: Sec[]) => LockHistory;

const mutations: Record<string, [LockViolationKind, Mutation]> = {
  'swap the tokens of two sections': [
    'token-order',
    (random, s) => {
      const i = random(199);
      const j = pick(random, i + 1, 200, () => true);
      [s[i]!.token, s[j]!.token] = [s[j]!.token, s[i]!.token];
      return { events: render(s) };
    },
  ],
  'move a start earlier, into the section before': [
    'overlap',
    (random, s) => {
      // Into a section that ends (a crash of the same holder would also end the moved one).
      const j = pick(random, 1, 200, (k) => s[k - 1]!.close === 'end' || s[k - 1]!.holder !== s[k]!.holder);
      const events = render(s);
      const [moved] = events.splice(2 * j, 1);
      events.splice(2 * j - 1, 0, { ...moved!, at: s[j - 1]!.startAt });
      return { events };
    },
  ],
  'drop an end': [
    'overlap',
    (random, s) => {
      const i = pick(random, 0, 199, (k) => s[k]!.close === 'end');
      const events = render(s);
      events.splice(2 * i + 1, 1);
      return { events };
    },
  ],
  'drop a start': [
    'unmatched',
    (random, s) => {
      const i = pick(random, 0, 200, (k) => s[k]!.close === 'end');
      const events = render(s);
      events.splice(2 * i, 1);
      return { events };
    },
  ],
  'answer one token twice': [
    'duplicate-token',
    (random, s) => {
      const acquisitions = s.map((x) => ({ holder: x.holder, token: x.token, at: x.startAt - 1 }));
      const i = random(199);
      const j = pick(random, i + 1, 200, () => true);
      acquisitions[j]!.token = acquisitions[i]!.token;
      return { events: render(s), acquisitions };
    },
  ],
};

describe('checkLocks: randomized serial histories', () => {
  const SEEDS = 40;

  it(`passes ${SEEDS} correct serial histories of 200 sections, and catches each of 5 mutations of every one`, () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const random = lcg(seed * 7919);
      const sections = serial(random);
      const acquisitions = sections.map((x) => ({ holder: x.holder, token: x.token, at: x.startAt - 1 }));
      const result = checkLocks({ lock: `seed-${seed}`, events: render(sections), acquisitions });
      expect(result.violations, `seed ${seed}`).toEqual([]);
      expect(result.stats).toEqual({
        sections: 200,
        holders: new Set(sections.map((x) => x.holder)).size,
        crashes: sections.filter((x) => x.close === 'crash').length,
        maxToken: sections[199]!.token,
        openAtEnd: 0,
      });
      for (const [name, [kind, mutate]] of Object.entries(mutations)) {
        const broken = checkLocks(mutate(random, structuredClone(sections)), { maxViolations: Infinity });
        expect(broken.ok, `seed ${seed}: ${name}`).toBe(false);
        expect(new Set(broken.violations.map((v) => v.kind)), `seed ${seed}: ${name}`).toEqual(new Set([kind]));
      }
    }
  });

  it('a serial history where one section is moved inside its predecessor gives exactly one overlap', () => {
    const random = lcg(42);
    const sections = serial(random);
    const h = mutations['move a start earlier, into the section before']![1](random, sections);
    expect(checkLocks(h).violations.map((v) => v.kind)).toEqual(['overlap']);
  });
});
