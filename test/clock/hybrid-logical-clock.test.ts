import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  HybridLogicalClock,
  MAX_HLC_LOGICAL,
  ZERO_HLC,
  compareHlc,
  formatHlc,
  isValidHlc,
  maxHlc,
  type HlcTimestamp,
} from '../../src/clock/index.js';

/** A wall time in the 2023 range; every generated reading is an offset from it. */
const T0 = 1_700_000_000_000;

/** A wall clock the test sets before each operation; it may go backwards. */
class ScriptedWallClock {
  current = T0;
  readonly read = (): number => this.current;
}

/** A local event at wall time `wall`, or a receive at `wall` of a message stamped `remote`. */
type HlcOp =
  | { readonly kind: 'now'; readonly wall: number }
  | { readonly kind: 'update'; readonly wall: number; readonly remote: HlcTimestamp };

const remoteTimestamp: fc.Arbitrary<HlcTimestamp> = fc.record({
  wallMs: fc.integer({ min: T0 - 5_000, max: T0 + 15_000 }),
  // Far below the ceiling: a remote counter at MAX_HLC_LOGICAL overflows update() (see below).
  logical: fc.nat({ max: 1_000 }),
});

/** Operations whose wall readings jump around freely, backwards included. */
function opsWithWall(wall: fc.Arbitrary<number>): fc.Arbitrary<HlcOp[]> {
  const op: fc.Arbitrary<HlcOp> = fc.oneof(
    fc.record({ kind: fc.constant('now' as const), wall }),
    fc.record({ kind: fc.constant('update' as const), wall, remote: remoteTimestamp }),
  );
  return fc.array(op, { maxLength: 100 });
}

/** Any wall readings, including a clock that steps backwards (NTP step, VM migration). */
const anyWallOps = opsWithWall(fc.integer({ min: T0, max: T0 + 10_000 }));

/** Wall readings that never decrease: generated as steps of 0..50 ms added up. */
const monotoneWallOps: fc.Arbitrary<HlcOp[]> = opsWithWall(fc.nat({ max: 50 })).map((ops) => {
  let wall = T0;
  return ops.map((op) => {
    wall += op.wall;
    return { ...op, wall };
  });
});

function apply(clock: HybridLogicalClock, wallClock: ScriptedWallClock, op: HlcOp): HlcTimestamp {
  wallClock.current = op.wall;
  return op.kind === 'now' ? clock.now() : clock.update(op.remote);
}

describe('HybridLogicalClock properties', () => {
  it('now() is strictly monotonic even when the wall clock goes backwards', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: T0 - 10_000, max: T0 + 10_000 }), { maxLength: 200 }), (walls) => {
        const wallClock = new ScriptedWallClock();
        const clock = new HybridLogicalClock(wallClock.read);
        let previous = clock.peek();
        for (const wall of walls) {
          wallClock.current = wall;
          const next = clock.now();
          expect(compareHlc(next, previous)).toBeGreaterThan(0);
          expect(clock.peek()).toEqual(next);
          previous = next;
        }
      }),
    );
  });

  it('every timestamp, from now() or update(), is larger than all before it; update() passes the remote', () => {
    fc.assert(
      fc.property(anyWallOps, (ops) => {
        const wallClock = new ScriptedWallClock();
        const clock = new HybridLogicalClock(wallClock.read);
        let largestIssued = clock.peek();
        for (const op of ops) {
          const t = apply(clock, wallClock, op);
          // Issued timestamps only grow, so beating the latest beats every earlier one.
          expect(compareHlc(t, largestIssued)).toBeGreaterThan(0);
          if (op.kind === 'update') {
            expect(compareHlc(t, op.remote)).toBeGreaterThan(0);
            // And the next local event stays past the remote too.
            expect(compareHlc(clock.now(), op.remote)).toBeGreaterThan(0);
          }
          largestIssued = clock.peek();
        }
      }),
    );
  });

  it('its physical part is exactly the largest wall time it has seen, its own or a remote one', () => {
    fc.assert(
      fc.property(anyWallOps, (ops) => {
        const wallClock = new ScriptedWallClock();
        const clock = new HybridLogicalClock(wallClock.read);
        let largestSeen = ZERO_HLC.wallMs;
        for (const op of ops) {
          const t = apply(clock, wallClock, op);
          largestSeen = Math.max(largestSeen, op.wall, op.kind === 'update' ? op.remote.wallMs : 0);
          expect(t.wallMs).toBe(largestSeen);
        }
      }),
    );
  });

  /**
   * The drift bound. Write wallᵢ for the wall reading at operation i and D = max over the updates
   * k ≤ i of (remoteₖ.wallMs − wallₖ), the largest lead a remote clock showed when it arrived.
   * With a wall clock that never goes backwards, after every operation i:
   *
   *     hlc.wallMs − wallᵢ ≤ max(0, D)
   *
   * because each remoteₖ.wallMs ≤ wallₖ + D ≤ wallᵢ + D and each earlier wallⱼ ≤ wallᵢ. A clock
   * that only ever sees its own wall clock (no updates, D undefined) has hlc.wallMs = wallᵢ.
   */
  it('stays within the largest offset it has been shown of a monotonic wall clock', () => {
    fc.assert(
      fc.property(monotoneWallOps, (ops) => {
        const wallClock = new ScriptedWallClock();
        const clock = new HybridLogicalClock(wallClock.read);
        let largestLead = 0;
        for (const op of ops) {
          const t = apply(clock, wallClock, op);
          if (op.kind === 'update') largestLead = Math.max(largestLead, op.remote.wallMs - op.wall);
          expect(t.wallMs - op.wall).toBeLessThanOrEqual(largestLead);
          expect(t.wallMs).toBeGreaterThanOrEqual(op.wall);
        }
      }),
    );
  });

  /**
   * When the wall clock may step backwards the bound above cannot hold: the HLC never goes back,
   * so it leads the wall clock by however far the wall clock fell from its peak. The exact bound
   * adds that fall: hlc.wallMs − wallᵢ ≤ max(0, D) + (max_{j ≤ i} wallⱼ − wallᵢ).
   */
  it('leads a wall clock that stepped back by at most the largest remote lead plus the step', () => {
    fc.assert(
      fc.property(anyWallOps, (ops) => {
        const wallClock = new ScriptedWallClock();
        const clock = new HybridLogicalClock(wallClock.read);
        let largestLead = 0;
        let peakWall = Number.NEGATIVE_INFINITY;
        for (const op of ops) {
          const t = apply(clock, wallClock, op);
          peakWall = Math.max(peakWall, op.wall);
          if (op.kind === 'update') largestLead = Math.max(largestLead, op.remote.wallMs - op.wall);
          expect(t.wallMs - op.wall).toBeLessThanOrEqual(largestLead + (peakWall - op.wall));
        }
      }),
    );
  });

  it('resets the logical counter whenever the wall clock passes everything seen', () => {
    fc.assert(
      fc.property(anyWallOps, (ops) => {
        const wallClock = new ScriptedWallClock();
        const clock = new HybridLogicalClock(wallClock.read);
        for (const op of ops) {
          const before = clock.peek();
          const t = apply(clock, wallClock, op);
          const remoteWall = op.kind === 'update' ? op.remote.wallMs : 0;
          if (op.wall > before.wallMs && op.wall > remoteWall) expect(t.logical).toBe(0);
        }
      }),
    );
  });

  it('grows the logical counter by at most one per operation beyond the largest remote counter', () => {
    fc.assert(
      fc.property(anyWallOps, (ops) => {
        const wallClock = new ScriptedWallClock();
        const clock = new HybridLogicalClock(wallClock.read);
        let largestRemoteLogical = 0;
        ops.forEach((op, i) => {
          if (op.kind === 'update') largestRemoteLogical = Math.max(largestRemoteLogical, op.remote.logical);
          const t = apply(clock, wallClock, op);
          expect(t.logical).toBeLessThanOrEqual(largestRemoteLogical + i + 1);
        });
      }),
    );
  });
});

describe('HybridLogicalClock examples', () => {
  it('follows the wall clock while it advances', () => {
    const wall = new ScriptedWallClock();
    const clock = new HybridLogicalClock(wall.read);
    expect(clock.now()).toEqual({ wallMs: T0, logical: 0 });
    wall.current = T0 + 5;
    expect(clock.now()).toEqual({ wallMs: T0 + 5, logical: 0 });
  });

  it('counts logically while the wall clock stands still or steps back', () => {
    const wall = new ScriptedWallClock();
    const clock = new HybridLogicalClock(wall.read);
    clock.now();
    expect(clock.now()).toEqual({ wallMs: T0, logical: 1 });
    wall.current = T0 - 1_000;
    expect(clock.now()).toEqual({ wallMs: T0, logical: 2 });
  });

  it('adopts a remote clock that is ahead and ticks past it', () => {
    const wall = new ScriptedWallClock();
    const clock = new HybridLogicalClock(wall.read);
    clock.now();
    expect(clock.update({ wallMs: T0 + 200, logical: 7 })).toEqual({ wallMs: T0 + 200, logical: 8 });
    expect(clock.now()).toEqual({ wallMs: T0 + 200, logical: 9 });
    expect(clock.aheadOfWallMs(clock.peek())).toBe(200);
  });

  it('moves past equal wall times by the larger logical counter', () => {
    const wall = new ScriptedWallClock();
    const clock = new HybridLogicalClock(wall.read, { wallMs: T0, logical: 3 });
    expect(clock.update({ wallMs: T0, logical: 10 })).toEqual({ wallMs: T0, logical: 11 });
    expect(clock.update({ wallMs: T0, logical: 2 })).toEqual({ wallMs: T0, logical: 12 });
  });

  it('peeks without advancing', () => {
    const wall = new ScriptedWallClock();
    const clock = new HybridLogicalClock(wall.read);
    expect(clock.peek()).toEqual(ZERO_HLC);
    const t = clock.now();
    expect(clock.peek()).toEqual(t);
    expect(clock.peek()).toEqual(t);
  });

  /**
   * A remote timestamp at the counter's ceiling makes update() throw. update() documents that its
   * caller validates the remote first, and isValidHlc() accepts this one, so the check that stops
   * a peer from crashing a node this way is in the interceptors (remoteHlcProblem).
   */
  it('throws on logical overflow, which callers must keep remote input from reaching', () => {
    const wall = new ScriptedWallClock();
    const clock = new HybridLogicalClock(wall.read);
    const atCeiling = { wallMs: T0 + 1, logical: MAX_HLC_LOGICAL };
    expect(isValidHlc(atCeiling)).toBe(true);
    expect(() => clock.update(atCeiling)).toThrow(RangeError);
  });

  it('orders, validates and formats timestamps', () => {
    const a = { wallMs: T0, logical: 1 };
    const b = { wallMs: T0, logical: 2 };
    const c = { wallMs: T0 + 1, logical: 0 };
    expect(compareHlc(a, b)).toBeLessThan(0);
    expect(compareHlc(c, b)).toBeGreaterThan(0);
    expect(compareHlc(a, { ...a })).toBe(0);
    expect(maxHlc(a, c)).toBe(c);
    expect(isValidHlc(ZERO_HLC)).toBe(false);
    expect(isValidHlc({ wallMs: 2 ** 53, logical: 0 })).toBe(false);
    expect(isValidHlc({ wallMs: T0, logical: -1 })).toBe(false);
    expect(formatHlc(a)).toBe(`${T0}.1`);
  });
});
