import {
  MAX_HLC_LOGICAL,
  type HlcTimestamp,
  type HybridLogicalClock,
} from '../clock/index.js';

/**
 * How far ahead of this node's wall clock a peer's HLC may be before it is refused, in
 * milliseconds. Every accepted timestamp can pull this node's HLC ahead of its wall clock by up to
 * this much, and that lead never shrinks until the wall clock catches up, so the limit bounds how
 * far one badly set clock can drag the whole cluster into the future. 500 ms is well above the
 * offsets NTP keeps machines within on a LAN (a few ms) and small enough that a clock set wrong
 * by seconds or hours is caught at once (CockroachDB's default `--max-offset` is 500 ms too).
 */
export const DEFAULT_MAX_CLOCK_OFFSET_MS = 500;

/**
 * What happened to one remote HLC. A remote timestamp is never trusted blindly: it is validated,
 * its offset from the local wall clock checked, and only then merged into the local clock.
 */
export type ObserveHlcResult =
  /** The message carried no HLC; the local clock is unchanged. */
  | { readonly kind: 'absent' }
  /** The HLC could not be decoded or is out of range; it was ignored and the clock is unchanged. */
  | { readonly kind: 'malformed'; readonly reason: string }
  /** The clock moved past `remote`; `local` is the timestamp the receive was given. */
  | { readonly kind: 'observed'; readonly remote: HlcTimestamp; readonly local: HlcTimestamp }
  /** `remote` was more than `maxClockOffsetMs` ahead of the local wall clock; the clock is unchanged. */
  | {
      readonly kind: 'too-far-ahead';
      readonly remote: HlcTimestamp;
      readonly aheadMs: number;
      readonly maxClockOffsetMs: number;
    };

/** Options of {@link observeRemoteHlc}. */
export interface RemoteHlcOptions {
  /** See {@link DEFAULT_MAX_CLOCK_OFFSET_MS}. @default 500 */
  readonly maxClockOffsetMs?: number;
}

/** Throws when `maxClockOffsetMs` is not a usable limit: a configuration bug, caught at setup. */
export function assertMaxClockOffsetMs(maxClockOffsetMs: number): void {
  if (!Number.isFinite(maxClockOffsetMs) || maxClockOffsetMs < 0) {
    throw new RangeError(`maxClockOffsetMs must be a finite number of milliseconds >= 0, not ${maxClockOffsetMs}`);
  }
}

/**
 * Why `remote` cannot be merged into a clock, or undefined when it can. Besides the range checks
 * of a valid HLC, the logical counter must leave room for one more tick: a receive of a timestamp
 * at the counter's ceiling would overflow the local clock, and a peer must not be able to crash a
 * node with one bad header.
 */
export function remoteHlcProblem(remote: HlcTimestamp): string | undefined {
  if (!Number.isSafeInteger(remote.wallMs)) return `wall time ${remote.wallMs} is not a safe integer`;
  if (remote.wallMs <= 0) return `wall time ${remote.wallMs} is not positive`;
  if (!Number.isInteger(remote.logical) || remote.logical < 0 || remote.logical >= MAX_HLC_LOGICAL) {
    return `logical counter ${remote.logical} is out of range [0, ${MAX_HLC_LOGICAL})`;
  }
  return undefined;
}

/**
 * Merges a peer's HLC into `clock` if it is valid and not too far ahead of the local wall clock.
 * Pure protocol logic: the gRPC interceptors, the ClockSync client and the in-memory transport all
 * call it, so they agree on what is accepted.
 */
export function observeRemoteHlc(
  remote: HlcTimestamp,
  clock: HybridLogicalClock,
  options: RemoteHlcOptions = {},
): ObserveHlcResult {
  const maxClockOffsetMs = options.maxClockOffsetMs ?? DEFAULT_MAX_CLOCK_OFFSET_MS;
  const problem = remoteHlcProblem(remote);
  if (problem !== undefined) return { kind: 'malformed', reason: problem };
  const aheadMs = clock.aheadOfWallMs(remote);
  if (aheadMs > maxClockOffsetMs) return { kind: 'too-far-ahead', remote, aheadMs, maxClockOffsetMs };
  return { kind: 'observed', remote, local: clock.update(remote) };
}

/**
 * The sentence that explains a refusal, naming the offset and the limit, e.g. "caller's HLC is
 * 2003 ms ahead of this node's wall clock; the limit (maxClockOffsetMs) is 500 ms". `whose` names
 * the peer from the reader's side: "caller's" or "server's".
 */
export function describeTooFarAhead(
  result: Extract<ObserveHlcResult, { kind: 'too-far-ahead' }>,
  whose: string,
): string {
  return (
    `${whose} HLC is ${result.aheadMs} ms ahead of this node's wall clock; ` +
    `the limit (maxClockOffsetMs) is ${result.maxClockOffsetMs} ms`
  );
}
