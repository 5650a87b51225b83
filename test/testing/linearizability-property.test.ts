import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EventValue, OpFunction, Operation, Outcome, Value } from '../../src/testing/index.js';
import { checkLinearizability } from '../../src/testing/index.js';

/**
 * Histories that are linearizable by construction: each operation runs on a real register at an
 * instant between its call and return, and records what it saw. Whatever the overlaps, the
 * checker must accept them; and a read changed to a value never written must be rejected.
 */

const PROCESSES = 5;
const KEYS = ['a', 'b'];
/** Written values come from this small range, so that reads, writes and cas often coincide. */
const VALUE_RANGE = 3;
/** Long enough for plenty of overlaps on each key, short enough for hundreds of runs a second. */
const MAX_STEPS = 80;

interface Step {
  readonly process: number;
  readonly key: string;
  readonly f: OpFunction;
  readonly a: number;
  readonly b: number;
  /** Idle time before the call, and the operation's length. */
  readonly gap: number;
  readonly length: number;
  /** Where in [call, return] it takes effect, as a fraction. */
  readonly at: number;
  /** Times out (info); and if so, whether it took effect anyway. */
  readonly info: boolean;
  readonly tookEffect: boolean;
}

const step: fc.Arbitrary<Step> = fc.record({
  process: fc.integer({ min: 0, max: PROCESSES - 1 }),
  key: fc.constantFrom(...KEYS),
  f: fc.constantFrom<OpFunction>('read', 'read', 'write', 'cas', 'delete'),
  a: fc.integer({ min: 0, max: VALUE_RANGE - 1 }),
  b: fc.integer({ min: 0, max: VALUE_RANGE - 1 }),
  gap: fc.integer({ min: 0, max: 10 }),
  length: fc.integer({ min: 0, max: 30 }),
  at: fc.double({ min: 0, max: 1, noNaN: true }),
  // One operation in five times out.
  info: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  tookEffect: fc.boolean(),
});

/** Runs `steps` on a real register per key and records the history they make. */
function run(steps: readonly Step[]): Operation[] {
  const clocks = new Array<number>(PROCESSES).fill(0);
  const planned = steps.map((s, id) => {
    const call = clocks[s.process]! + s.gap;
    const ret = call + s.length;
    clocks[s.process] = ret + 1;
    return { s, id, call, ret, effect: call + s.at * (ret - call), output: null as Value, applied: false };
  });
  const register = new Map<string, Value>();
  const happening = planned.filter((p) => !p.s.info || p.s.tookEffect).sort((x, y) => x.effect - y.effect || x.id - y.id);
  for (const p of happening) {
    const held = register.get(p.s.key) ?? null;
    switch (p.s.f) {
      case 'read':
        p.output = held;
        break;
      case 'write':
        register.set(p.s.key, p.s.a);
        break;
      case 'delete':
        register.set(p.s.key, null);
        break;
      case 'cas':
        p.applied = held === p.s.a;
        if (p.applied) register.set(p.s.key, p.s.b);
        break;
    }
  }
  return planned.map((p) => {
    const { s } = p;
    const outcome: Outcome = s.info ? 'info' : s.f === 'cas' && !p.applied ? 'fail' : 'ok';
    const value: EventValue = s.f === 'read' ? p.output : s.f === 'write' ? s.a : s.f === 'cas' ? [s.a, s.b] : null;
    return {
      id: p.id,
      process: s.process,
      f: s.f,
      key: s.key,
      value: s.f === 'read' && outcome !== 'ok' ? null : value,
      call: p.call,
      return: outcome === 'info' ? Infinity : p.ret,
      outcome,
    };
  });
}

describe('checkLinearizability on generated histories', () => {
  it('accepts every history recorded from a real register', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: MAX_STEPS, size: 'max' }), (steps) => {
        const result = checkLinearizability(run(steps), { timeoutMs: 30_000 });
        expect(result.explanation).toBeUndefined();
        expect(result.verdict).toBe('linearizable');
      }),
      { numRuns: 500 },
    );
  });

  it('rejects the same histories once a read returns a value never written', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: MAX_STEPS, size: 'max' }), fc.nat(), (steps, choice) => {
        const ops = run(steps);
        const reads = ops.filter((op) => op.f === 'read' && op.outcome === 'ok');
        fc.pre(reads.length > 0);
        const victim = reads[choice % reads.length]!;
        const mutated = ops.map((op) => (op === victim ? { ...op, value: 'never written' } : op));
        const result = checkLinearizability(mutated, { timeoutMs: 30_000 });
        expect(result.verdict).toBe('not-linearizable');
        expect(result.keys.find((k) => k.key === victim.key)?.violation?.culprit?.operation.id).toBe(victim.id);
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with a brute-force search over every order, on small arbitrary histories', () => {
    const arbitrary = fc.array(
      fc.record({
        process: fc.integer({ min: 0, max: 3 }),
        f: fc.constantFrom<OpFunction>('read', 'write', 'cas', 'delete'),
        a: fc.integer({ min: 0, max: 2 }),
        b: fc.integer({ min: 0, max: 2 }),
        readsAbsent: fc.boolean(),
        call: fc.integer({ min: 0, max: 20 }),
        length: fc.integer({ min: 0, max: 10 }),
        outcome: fc.constantFrom<Outcome>('ok', 'ok', 'ok', 'fail', 'info'),
      }),
      { maxLength: BRUTE_FORCE_MAX_OPS, size: 'max' },
    );
    let violations = 0;
    fc.assert(
      fc.property(arbitrary, (specs) => {
        const ops: Operation[] = specs.map((s, id) => ({
          id,
          process: s.process,
          f: s.f,
          key: 'k',
          value:
            s.f === 'read' ? (s.outcome === 'ok' && !s.readsAbsent ? s.a : null) : s.f === 'write' ? s.a : s.f === 'cas' ? [s.a, s.b] : null,
          call: s.call,
          return: s.outcome === 'info' ? Infinity : s.call + s.length,
          outcome: s.outcome,
        }));
        const expected = bruteForce(ops);
        if (!expected) violations++;
        expect(checkLinearizability(ops).verdict).toBe(expected ? 'linearizable' : 'not-linearizable');
      }),
      { numRuns: 1000 },
    );
    // Both answers must have come up often, or the comparison proves little.
    expect(violations).toBeGreaterThan(100);
    expect(violations).toBeLessThan(900);
  });
});

/** Up to 7! orders each: enough for every rule to interact, small enough to enumerate. */
const BRUTE_FORCE_MAX_OPS = 7;

/**
 * Tries every order of the operations that respects real time. A failed operation and an info
 * read are left out; an info write, cas or delete may be left out (it never took effect).
 */
function bruteForce(all: readonly Operation[]): boolean {
  const ops = all.filter((op) => op.outcome !== 'fail' && !(op.f === 'read' && op.outcome !== 'ok'));
  const placed = new Array<boolean>(ops.length).fill(false);
  const go = (state: Value): boolean => {
    if (ops.every((op, i) => placed[i] || op.outcome === 'info')) return true;
    for (let i = 0; i < ops.length; i++) {
      if (placed[i]) continue;
      const op = ops[i]!;
      // Every operation that returned before this one was called must already be placed.
      if (ops.some((other, j) => !placed[j] && j !== i && other.return < op.call)) continue;
      let next: Value | undefined;
      if (op.f === 'read') next = op.value === state ? state : undefined;
      else if (op.f === 'write') next = op.value as Value;
      else if (op.f === 'delete') next = null;
      else {
        const [from, to] = op.value as readonly [Value, Value];
        next = state === from ? to : op.outcome === 'info' ? state : undefined;
      }
      if (next === undefined) continue;
      placed[i] = true;
      const ok = go(next);
      placed[i] = false;
      if (ok) return true;
    }
    return false;
  };
  return go(null);
}
