import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LamportClock } from '../../src/clock/index.js';

/** A local event, or a receive of a message stamped with `remote`. */
type LamportOp = { readonly kind: 'tick' } | { readonly kind: 'receive'; readonly remote: number };

const lamportOp: fc.Arbitrary<LamportOp> = fc.oneof(
  fc.constant({ kind: 'tick' } as const),
  fc.record({ kind: fc.constant('receive' as const), remote: fc.nat({ max: 1_000_000 }) }),
);

describe('LamportClock', () => {
  it('is strictly monotonic and follows the tick and receive rules exactly', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.array(lamportOp, { maxLength: 200 }), (initial, ops) => {
        const clock = new LamportClock(initial);
        let previous = clock.time;
        for (const op of ops) {
          const value = op.kind === 'tick' ? clock.tick() : clock.receive(op.remote);
          // The reference rules: tick is +1, receive is max(local, remote) + 1.
          const expected = op.kind === 'tick' ? previous + 1 : Math.max(previous, op.remote) + 1;
          expect(value).toBe(expected);
          expect(value).toBeGreaterThan(previous);
          if (op.kind === 'receive') expect(value).toBeGreaterThan(op.remote);
          expect(clock.time).toBe(value);
          previous = value;
        }
      }),
    );
  });

  it('reads without advancing', () => {
    const clock = new LamportClock(7);
    expect(clock.time).toBe(7);
    expect(clock.time).toBe(7);
    expect(clock.tick()).toBe(8);
  });

  it('jumps past a remote clock that is ahead and ticks past one that is behind', () => {
    const clock = new LamportClock(5);
    expect(clock.receive(10)).toBe(11);
    expect(clock.receive(3)).toBe(12);
  });

  it('refuses negative, fractional and unsafe values', () => {
    expect(() => new LamportClock(-1)).toThrow(RangeError);
    expect(() => new LamportClock(1.5)).toThrow(RangeError);
    const clock = new LamportClock();
    expect(() => clock.receive(-1)).toThrow(RangeError);
    expect(() => clock.receive(Number.NaN)).toThrow(RangeError);
    expect(() => clock.receive(2 ** 53)).toThrow(RangeError);
    expect(clock.time).toBe(0);
  });
});
