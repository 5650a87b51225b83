import type { WallClock } from './wall-clock.js';

/** One HLC timestamp. Ordered by `wallMs`, then `logical`. */
export interface HlcTimestamp {
  /** The largest wall time seen, in milliseconds since the Unix epoch. */
  readonly wallMs: number;
  /** Orders events that share `wallMs`. */
  readonly logical: number;
}

/** The smallest timestamp; every real one is larger. */
export const ZERO_HLC: HlcTimestamp = Object.freeze({ wallMs: 0, logical: 0 });

/**
 * The logical counter's ceiling. It only grows while the wall clock stands still or lags behind a
 * peer's; 2^32 − 1 fits the wire's uint32 and is far beyond what a millisecond can hold.
 */
export const MAX_HLC_LOGICAL = 0xffff_ffff;

/** Negative when a < b, zero when equal, positive when a > b. */
export function compareHlc(a: HlcTimestamp, b: HlcTimestamp): number {
  if (a.wallMs !== b.wallMs) return a.wallMs < b.wallMs ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  return 0;
}

/** The larger of two timestamps. */
export function maxHlc(a: HlcTimestamp, b: HlcTimestamp): HlcTimestamp {
  return compareHlc(a, b) >= 0 ? a : b;
}

/** True when `t` could have come from a real clock: integers, in range, wall time set. */
export function isValidHlc(t: HlcTimestamp): boolean {
  return (
    Number.isSafeInteger(t.wallMs) &&
    t.wallMs > 0 &&
    Number.isInteger(t.logical) &&
    t.logical >= 0 &&
    t.logical <= MAX_HLC_LOGICAL
  );
}

/** `HLC(12345.6)` style, for logs and error messages. */
export function formatHlc(t: HlcTimestamp): string {
  return `${t.wallMs}.${t.logical}`;
}

/**
 * A hybrid logical clock (Kulkarni, Demirbas et al. 2014): the physical part follows the injected
 * wall clock, the logical part orders events within a millisecond and across peers whose clocks
 * run ahead. It never goes backwards, even when the wall clock does, and stays within the largest
 * offset it has been shown of the wall clock.
 */
export class HybridLogicalClock {
  readonly #wallClock: WallClock;
  #last: HlcTimestamp;

  constructor(wallClock: WallClock, initial: HlcTimestamp = ZERO_HLC) {
    this.#wallClock = wallClock;
    this.#last = initial;
  }

  /** The latest timestamp issued or observed, without advancing. */
  peek(): HlcTimestamp {
    return this.#last;
  }

  /** A local event or a send: a timestamp larger than every one issued or observed so far. */
  now(): HlcTimestamp {
    const physical = this.#physicalMs();
    const last = this.#last;
    const next =
      physical > last.wallMs
        ? { wallMs: physical, logical: 0 }
        : { wallMs: last.wallMs, logical: this.#nextLogical(last.logical) };
    this.#last = next;
    return next;
  }

  /**
   * A receive of a message stamped `remote`: the clock moves past both its own last timestamp and
   * the remote one. The caller has already validated `remote` (see {@link isValidHlc}) and decided
   * whether its offset is acceptable.
   */
  update(remote: HlcTimestamp): HlcTimestamp {
    const physical = this.#physicalMs();
    const last = this.#last;
    const wallMs = Math.max(last.wallMs, remote.wallMs, physical);
    let logical: number;
    if (wallMs === last.wallMs && wallMs === remote.wallMs) {
      logical = this.#nextLogical(Math.max(last.logical, remote.logical));
    } else if (wallMs === last.wallMs) {
      logical = this.#nextLogical(last.logical);
    } else if (wallMs === remote.wallMs) {
      logical = this.#nextLogical(remote.logical);
    } else {
      logical = 0;
    }
    const next = { wallMs, logical };
    this.#last = next;
    return next;
  }

  /** How far `remote` runs ahead of this node's wall clock, in milliseconds (negative: behind). */
  aheadOfWallMs(remote: HlcTimestamp): number {
    return remote.wallMs - this.#wallClock();
  }

  /** Whole milliseconds: timestamps go on the wire as integers, whatever resolution the clock has. */
  #physicalMs(): number {
    return Math.floor(this.#wallClock());
  }

  #nextLogical(logical: number): number {
    if (logical >= MAX_HLC_LOGICAL) {
      // Invariant, not an operating error: 4 billion events inside one millisecond cannot happen.
      throw new RangeError('HLC logical counter overflow');
    }
    return logical + 1;
  }
}
