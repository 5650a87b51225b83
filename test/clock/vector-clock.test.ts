import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VectorClock, type CausalOrder } from '../../src/clock/index.js';

/**
 * Vector clocks over a few nodes with small counters, so that equal, ordered and concurrent pairs
 * all come up often.
 */
const NODES = ['a', 'b', 'c', 'd'] as const;
const node = fc.constantFrom(...NODES);
const vectorClock: fc.Arbitrary<VectorClock> = fc
  .dictionary(node, fc.nat({ max: 3 }), { maxKeys: NODES.length })
  .map((counters) => VectorClock.from(counters));

/** The naive reference: compare counter by counter over every node either clock mentions. */
function referenceCompare(a: VectorClock, b: VectorClock): CausalOrder {
  const nodes = new Set([...a.nodes(), ...b.nodes()]);
  let aLess = false;
  let bLess = false;
  for (const n of nodes) {
    if (a.get(n) < b.get(n)) aLess = true;
    if (b.get(n) < a.get(n)) bLess = true;
  }
  if (!aLess && !bLess) return 'equal';
  if (aLess && !bLess) return 'before';
  if (bLess && !aLess) return 'after';
  return 'concurrent';
}

const json = (vc: VectorClock): Record<string, number> => vc.toJSON();
const CONVERSE: Record<CausalOrder, CausalOrder> = {
  before: 'after',
  after: 'before',
  equal: 'equal',
  concurrent: 'concurrent',
};

describe('VectorClock compare', () => {
  it('returns exactly one of before / after / equal / concurrent, as the naive reference does', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, (a, b) => {
        const order = a.compare(b);
        expect(['before', 'after', 'equal', 'concurrent']).toContain(order);
        expect(order).toBe(referenceCompare(a, b));
      }),
    );
  });

  it('is antisymmetric: b.compare(a) is the converse of a.compare(b); concurrent is symmetric', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, (a, b) => {
        expect(b.compare(a)).toBe(CONVERSE[a.compare(b)]);
      }),
    );
  });

  it('calls two clocks equal only when they hold the same counters, and never before', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, (a, b) => {
        expect(a.compare(b) === 'equal').toBe(JSON.stringify(json(a)) === JSON.stringify(json(b)));
        expect(a.compare(a)).toBe('equal');
      }),
    );
  });

  it('is transitive: a before b and b before c give a before c (chains built on purpose)', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, vectorClock, node, node, (a, x, y, n, m) => {
        // Random triples are rarely chains, so build one: b is a merged with x then advanced, etc.
        const b = a.merge(x).increment(n);
        const c = b.merge(y).increment(m);
        expect(a.compare(b)).toBe('before');
        expect(b.compare(c)).toBe('before');
        expect(a.compare(c)).toBe('before');
      }),
    );
  });

  it('is transitive over arbitrary triples wherever the premise holds, for every non-strict relation too', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, vectorClock, (a, b, c) => {
        const ab = a.compare(b);
        const bc = b.compare(c);
        if ((ab === 'before' || ab === 'equal') && (bc === 'before' || bc === 'equal')) {
          expect(a.compare(c)).toBe(ab === 'equal' && bc === 'equal' ? 'equal' : 'before');
        }
      }),
    );
  });

  it('makes an incremented clock come after the original', () => {
    fc.assert(
      fc.property(vectorClock, node, (a, n) => {
        const next = a.increment(n);
        expect(next.compare(a)).toBe('after');
        expect(a.compare(next)).toBe('before');
        expect(next.get(n)).toBe(a.get(n) + 1);
        expect(a.get(n)).toBe(next.get(n) - 1); // the original is untouched
      }),
    );
  });
});

describe('VectorClock merge', () => {
  it('is commutative', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, (a, b) => {
        expect(json(a.merge(b))).toEqual(json(b.merge(a)));
      }),
    );
  });

  it('is associative', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, vectorClock, (a, b, c) => {
        expect(json(a.merge(b).merge(c))).toEqual(json(a.merge(b.merge(c))));
      }),
    );
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, (a, b) => {
        expect(json(a.merge(a))).toEqual(json(a));
        expect(json(a.merge(b).merge(b))).toEqual(json(a.merge(b)));
      }),
    );
  });

  it('is the least upper bound: it dominates both, and is the pointwise maximum', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, (a, b) => {
        const m = a.merge(b);
        expect(m.dominates(a)).toBe(true);
        expect(m.dominates(b)).toBe(true);
        expect(['after', 'equal']).toContain(m.compare(a));
        expect(['after', 'equal']).toContain(m.compare(b));
        for (const n of NODES) expect(m.get(n)).toBe(Math.max(a.get(n), b.get(n)));
      }),
    );
  });

  it('followed by an increment comes after both inputs, as a receive does', () => {
    fc.assert(
      fc.property(vectorClock, vectorClock, node, (a, b, n) => {
        const received = a.merge(b).increment(n);
        expect(received.compare(a)).toBe('after');
        expect(received.compare(b)).toBe('after');
      }),
    );
  });
});

describe('VectorClock examples', () => {
  it('orders a send before its receive and keeps independent writes concurrent', () => {
    const send = VectorClock.EMPTY.increment('a'); // a:1
    const receive = VectorClock.EMPTY.increment('b').merge(send).increment('b'); // a:1 b:2
    const independent = VectorClock.EMPTY.increment('c');
    expect(send.compare(receive)).toBe('before');
    expect(receive.compare(independent)).toBe('concurrent');
    expect(receive.toJSON()).toEqual({ a: 1, b: 2 });
  });

  it('treats absent and zero counters alike', () => {
    expect(VectorClock.from({ a: 0, b: 1 }).compare(VectorClock.from({ b: 1 }))).toBe('equal');
    expect(VectorClock.from({ a: 0 }).size).toBe(0);
  });

  it('refuses negative and fractional counters', () => {
    expect(() => VectorClock.from({ a: -1 })).toThrow(RangeError);
    expect(() => VectorClock.from([['a', 0.5]])).toThrow(RangeError);
  });

  it('never changes a clock that was merged into or incremented', () => {
    const a = VectorClock.from({ a: 1 });
    a.merge(VectorClock.from({ b: 2 }));
    a.increment('a');
    expect(a.toJSON()).toEqual({ a: 1 });
  });
});
