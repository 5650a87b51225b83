import { describe, expect, it } from 'vitest';
import type { EventValue, OpFunction, Operation, Outcome, Value } from '../../src/testing/index.js';
import { checkLinearizability, pairOperations } from '../../src/testing/index.js';

/** One operation of a handwritten history: [process, f, value, call, return], ok on key "x" unless given. */
interface Spec {
  readonly p: number;
  readonly f: OpFunction;
  readonly v?: EventValue;
  readonly at: readonly [number, number];
  readonly outcome?: Outcome;
  readonly key?: string;
}

function history(specs: readonly Spec[]): Operation[] {
  return specs.map((s, id) => ({
    id,
    process: s.p,
    f: s.f,
    key: s.key ?? 'x',
    value: s.v ?? null,
    call: s.at[0],
    return: s.outcome === 'info' ? Infinity : s.at[1],
    outcome: s.outcome ?? 'ok',
  }));
}

type Interval = readonly [number, number];
const write = (p: number, v: Value, at: Interval, extra: Partial<Spec> = {}): Spec => ({ p, f: 'write', v, at, ...extra });
const read = (p: number, v: Value, at: Interval, extra: Partial<Spec> = {}): Spec => ({ p, f: 'read', v, at, ...extra });
const cas = (p: number, from: Value, to: Value, at: readonly [number, number], extra: Partial<Spec> = {}): Spec => ({
  p,
  f: 'cas',
  v: [from, to],
  at,
  ...extra,
});
const del = (p: number, at: readonly [number, number], extra: Partial<Spec> = {}): Spec => ({ p, f: 'delete', at, ...extra });

const verdict = (specs: readonly Spec[]) => checkLinearizability(history(specs)).verdict;

describe('checkLinearizability', () => {
  it('accepts an empty history and a sequential one', () => {
    expect(verdict([])).toBe('linearizable');
    expect(verdict([read(1, null, [0, 1]), write(1, 1, [2, 3]), read(2, 1, [4, 5])])).toBe('linearizable');
  });

  it('rejects a stale read', () => {
    const specs = [write(1, 1, [0, 1]), write(1, 2, [2, 3]), read(2, 1, [4, 5])];
    expect(verdict(specs)).toBe('not-linearizable');
  });

  it('rejects a lost write', () => {
    expect(verdict([write(1, 1, [0, 1]), read(2, null, [2, 3])])).toBe('not-linearizable');
  });

  it('allows either order of concurrent writes, but only one of them', () => {
    const writes = [write(1, 1, [0, 10]), write(2, 2, [1, 9])];
    expect(verdict([...writes, read(3, 1, [11, 12])])).toBe('linearizable');
    expect(verdict([...writes, read(3, 2, [11, 12])])).toBe('linearizable');
    // A read concurrent with both may see either, or neither.
    expect(verdict([...writes, read(3, null, [5, 6]), read(3, 1, [11, 12])])).toBe('linearizable');
    // Having seen 2 last, the register cannot go back to 1.
    expect(verdict([...writes, read(3, 2, [11, 12]), read(3, 1, [13, 14])])).toBe('not-linearizable');
  });

  it('lets an info write take effect later, even long after its call', () => {
    const specs = [write(1, 1, [0, 0], { outcome: 'info' }), read(2, null, [5, 6]), read(2, null, [7, 8]), read(3, 1, [20, 21])];
    expect(verdict(specs)).toBe('linearizable');
  });

  it('lets an info write never take effect', () => {
    const specs = [write(1, 0, [0, 1]), write(2, 1, [2, 3], { outcome: 'info' }), read(3, 0, [5, 6]), read(3, 0, [100, 101])];
    expect(verdict(specs)).toBe('linearizable');
  });

  it('lets an info write take effect only once', () => {
    const specs = [
      write(1, 0, [0, 1]),
      write(2, 1, [2, 3], { outcome: 'info' }),
      read(3, 1, [5, 6]),
      write(3, 0, [7, 8]),
      read(3, 1, [9, 10]),
    ];
    expect(verdict(specs)).toBe('not-linearizable');
  });

  it('lets a write of the value already held take effect later', () => {
    // Writing 1 while the register holds 1 looks like a no-op, but it may take effect after the
    // write of 2 and so restore 1.
    const specs = [write(1, 1, [0, 1]), write(2, 1, [2, 10]), write(3, 2, [2, 3]), read(4, 1, [11, 12])];
    expect(verdict(specs)).toBe('linearizable');
  });

  it('ignores info reads and failed operations', () => {
    expect(verdict([read(1, null, [0, 1], { outcome: 'info' }), write(1, 3, [2, 3]), read(2, 3, [4, 5])])).toBe('linearizable');
    // A failed write certainly had no effect: reading its value is a violation.
    expect(verdict([write(1, 5, [0, 1], { outcome: 'fail' }), read(2, 5, [2, 3])])).toBe('not-linearizable');
    expect(verdict([write(1, 5, [0, 1], { outcome: 'fail' }), read(2, null, [2, 3])])).toBe('linearizable');
  });

  it('applies a successful cas and leaves the register alone on a failed one', () => {
    expect(verdict([write(1, 0, [0, 1]), cas(2, 0, 1, [2, 3]), read(3, 1, [4, 5])])).toBe('linearizable');
    expect(verdict([write(1, 0, [0, 1]), cas(2, 0, 1, [2, 3]), read(3, 0, [4, 5])])).toBe('not-linearizable');
    expect(verdict([write(1, 0, [0, 1]), cas(2, 5, 1, [2, 3], { outcome: 'fail' }), read(3, 0, [4, 5])])).toBe(
      'linearizable',
    );
  });

  it('rejects a cas whose success contradicts the register', () => {
    const result = checkLinearizability(history([write(1, 0, [0, 1]), cas(2, 5, 1, [2, 3])]));
    expect(result.verdict).toBe('not-linearizable');
    expect(result.explanation).toContain('cas 5 → 1 by process 2 at [2, 3] succeeded');
    expect(result.explanation).toContain('never 5');
  });

  it('lets an info cas apply when the register matches, or not at all', () => {
    const start = [write(1, 0, [0, 1]), cas(2, 0, 7, [2, 3], { outcome: 'info' })];
    expect(verdict([...start, read(3, 7, [4, 5])])).toBe('linearizable');
    expect(verdict([...start, read(3, 0, [4, 5])])).toBe('linearizable');
    expect(verdict([...start, read(3, 3, [4, 5])])).toBe('not-linearizable');
    // Its compare may have failed: an info cas that can never match is no violation.
    expect(verdict([cas(1, 5, 6, [0, 1], { outcome: 'info' }), read(2, null, [2, 3])])).toBe('linearizable');
  });

  it('treats a delete as making the key absent', () => {
    expect(verdict([write(1, 1, [0, 1]), del(1, [2, 3]), read(2, null, [4, 5])])).toBe('linearizable');
    expect(verdict([write(1, 1, [0, 1]), del(1, [2, 3]), read(2, 1, [4, 5])])).toBe('not-linearizable');
  });

  it('compares values by JSON equality: 1 is not "1"', () => {
    expect(verdict([write(1, 1, [0, 1]), read(2, '1', [2, 3])])).toBe('not-linearizable');
    expect(verdict([write(1, 'a', [0, 1]), read(2, 'a', [2, 3])])).toBe('linearizable');
  });

  it('checks each key as an independent register', () => {
    // Writes on one key are invisible on another, so these reads of null are fine.
    const fine = [write(1, 1, [0, 1], { key: 'a' }), read(2, null, [2, 3], { key: 'b' }), read(2, 1, [4, 5], { key: 'a' })];
    const result = checkLinearizability(history([...fine, write(3, 9, [0, 1], { key: 'c' }), read(3, 8, [2, 3], { key: 'c' })]));
    expect(result.verdict).toBe('not-linearizable');
    expect(result.keys.map((k) => [k.key, k.verdict])).toEqual([
      ['a', 'linearizable'],
      ['b', 'linearizable'],
      ['c', 'not-linearizable'],
    ]);
    expect(result.explanation).toContain('key "c"');
    expect(result.explanation).not.toContain('key "a"');
    expect(checkLinearizability(history(fine)).verdict).toBe('linearizable');
  });

  it('explains a violation: the key, the operations, and why no order fits', () => {
    const specs = [
      write(1, 0, [0, 1], { key: 'k' }),
      write(1, 3, [2, 3], { key: 'k' }),
      write(2, 0, [4, 5], { key: 'k' }),
      read(3, 0, [6, 7], { key: 'k' }),
      read(3, 3, [8, 9], { key: 'k' }),
    ];
    const result = checkLinearizability(history(specs));
    expect(result.verdict).toBe('not-linearizable');
    const violation = result.keys[0]!.violation!;
    expect(violation.key).toBe('k');
    expect(violation.prefix.map((op) => op.id)).toEqual([0, 1, 2, 3]);
    expect(violation.valueAfterPrefix).toBe(0);
    expect(violation.stuck.map((s) => s.operation.id)).toEqual([4]);
    expect(violation.culprit?.operation.id).toBe(4);
    expect(violation.culprit?.valuesHeld).toEqual([0]);
    expect(result.explanation).toContain('key "k" is not linearizable');
    expect(result.explanation).toContain('read by process 3 at [8, 9] returned 3');
    expect(result.explanation).toContain('the register held 0, never 3');
    expect(result.explanation).toContain('Longest linearizable prefix found: 4 operations');
    expect(result.explanation).toContain('write 0 by process 2 at [4, 5]');
  });

  it('explains a violation where every operation fits somewhere but no order fits all', () => {
    // Each read can be placed after the writes in one order, but they need opposite orders.
    const specs = [write(1, 1, [0, 10]), write(2, 2, [0, 10]), read(3, 1, [11, 12]), read(4, 2, [11, 12])];
    const result = checkLinearizability(history(specs));
    expect(result.verdict).toBe('not-linearizable');
    expect(result.keys[0]!.violation!.culprit).toBeUndefined();
    expect(result.explanation).toContain('no order fits them all');
  });

  it('treats an invocation that never completed as info', () => {
    const ops = pairOperations([
      { process: 1, type: 'invoke', f: 'write', key: 'x', value: 4, time: 0 },
      { process: 2, type: 'invoke', f: 'read', key: 'x', value: null, time: 5 },
      { process: 2, type: 'ok', f: 'read', key: 'x', value: 4, time: 6 },
    ]);
    expect(ops[0]).toMatchObject({ outcome: 'info', return: Infinity });
    expect(checkLinearizability(ops).verdict).toBe('linearizable');
  });

  it('answers unknown, never a guess, when the time budget runs out', () => {
    // Twenty concurrent writes and a read of a value none of them wrote: proving it impossible
    // means trying every subset of writes before the read, far more than the budget allows.
    const writes = Array.from({ length: 20 }, (_, i) => write(i, i, [0, 100]));
    const hard = history([...writes, read(99, 'never', [1, 99])]);
    const result = checkLinearizability(hard, { timeoutMs: 0 });
    expect(result.verdict).toBe('unknown');
    expect(result.keys[0]).toMatchObject({ verdict: 'unknown', stoppedBy: 'time' });
    expect(result.explanation).toContain('time budget');
    // The budget is read from the injected clock.
    let now = 0;
    const jumpy = () => (now += 1_000);
    expect(checkLinearizability(hard, { timeoutMs: 60_000, clock: jumpy }).verdict).toBe('unknown');
  });

  it('decides quickly what fits within the budget', () => {
    expect(checkLinearizability(history([write(1, 1, [0, 1]), read(2, 1, [2, 3])]), { timeoutMs: 0 }).verdict).toBe(
      'linearizable',
    );
  });
});
