import type { Metadata } from '@grpc/grpc-js';
import type { HlcTimestamp, HybridLogicalClock } from '../clock/index.js';
import { Hlc } from '../gen/replikit/v1/types.js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { HLC_METADATA_KEY } from './metadata-keys.js';
import {
  describeTooFarAhead,
  observeRemoteHlc,
  type ObserveHlcResult,
  type RemoteHlcOptions,
} from './remote-hlc.js';

/** Options of {@link observeHlc}. */
export interface ObserveHlcOptions extends RemoteHlcOptions {
  /** Gets malformed values at debug level and refused ones at warn. @default silentLogger */
  readonly logger?: Logger;
  /** Names the peer in log lines, from this node's side: "caller's" or "server's". @default "peer's" */
  readonly whose?: string;
}

/** The wire form of an HLC: a serialized `replikit.v1.Hlc`. */
export function encodeHlc(t: HlcTimestamp): Buffer {
  return Buffer.from(Hlc.encode({ wallTimeMs: BigInt(t.wallMs), logical: t.logical }).finish());
}

/**
 * Decodes the wire form, or throws when the bytes are not a protobuf message. The result is not
 * range-checked: a wall time beyond 2^53 comes back as an unsafe number for
 * {@link observeRemoteHlc} to refuse, never silently rounded into a valid one.
 */
export function decodeHlc(bytes: Uint8Array): HlcTimestamp {
  const message = Hlc.decode(bytes);
  const wallMs =
    message.wallTimeMs > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(message.wallTimeMs);
  return { wallMs, logical: message.logical };
}

/** Stamps `clock.now()` into `metadata` (replacing any earlier stamp) and returns the timestamp. */
export function stampHlc(metadata: Metadata, clock: HybridLogicalClock): HlcTimestamp {
  const t = clock.now();
  metadata.set(HLC_METADATA_KEY, encodeHlc(t));
  return t;
}

/**
 * Reads the peer's HLC from `metadata` and merges it into `clock` (see {@link observeRemoteHlc}).
 * Never throws on what a peer sent: a missing value is `absent`; bytes that do not decode, a zero
 * wall time or an out-of-range counter are `malformed`, logged at debug and otherwise ignored, so
 * the call goes on as if no HLC had come; an HLC too far ahead is `too-far-ahead`, logged at warn
 * and not merged. What to do about a refusal (fail the call or not) is the caller's decision.
 * When several values are present only the first counts: the key is set, never appended, by
 * replikit.
 */
export function observeHlc(
  metadata: Metadata,
  clock: HybridLogicalClock,
  options: ObserveHlcOptions = {},
): ObserveHlcResult {
  const logger = options.logger ?? silentLogger;
  const values = metadata.get(HLC_METADATA_KEY);
  if (values.length === 0) return { kind: 'absent' };

  const value = values[0];
  const decoded = decodeMetadataValue(value);
  const result: ObserveHlcResult =
    'reason' in decoded ? { kind: 'malformed', reason: decoded.reason } : observeRemoteHlc(decoded.remote, clock, options);
  if (result.kind === 'malformed') {
    logger.debug(`ignored a malformed ${HLC_METADATA_KEY} value`, {
      key: HLC_METADATA_KEY,
      reason: result.reason,
      bytes: value === undefined || typeof value === 'string' ? undefined : value.byteLength,
    });
  } else if (result.kind === 'too-far-ahead') {
    logger.warn(`refused a remote HLC: ${describeTooFarAhead(result, options.whose ?? "peer's")}`, {
      remoteWallMs: result.remote.wallMs,
      remoteLogical: result.remote.logical,
      aheadMs: result.aheadMs,
      maxClockOffsetMs: result.maxClockOffsetMs,
    });
  }
  return result;
}

/** Decodes one metadata value, catching what a peer can get wrong. */
function decodeMetadataValue(value: string | Buffer | undefined): { remote: HlcTimestamp } | { reason: string } {
  // grpc-js always hands `-bin` values over as Buffers; a string means a hand-built Metadata.
  if (typeof value !== 'object') return { reason: 'value is not binary' };
  try {
    return { remote: decodeHlc(value) };
  } catch (err) {
    return { reason: `does not decode: ${err instanceof Error ? err.message : String(err)}` };
  }
}
