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

/**
 * The wire form of an HLC: a serialized `replikit.v1.Hlc` (field 1 `wall_time_ms` uint64, field 2
 * `logical` uint32), byte for byte what the generated encoder writes (a test holds them equal).
 * Written by hand because it runs twice on every RPC: the generated encoder goes through BigInt
 * and a growable writer, which cost more than the rest of the stamp together.
 */
export function encodeHlc(t: HlcTimestamp): Buffer {
  const bytes = Buffer.allocUnsafe(1 + varintLength(t.wallMs) + (t.logical === 0 ? 0 : 1 + varintLength(t.logical)));
  let at = 0;
  if (t.wallMs !== 0) {
    bytes[at++] = WALL_TIME_TAG;
    at = writeVarint(bytes, at, t.wallMs);
  }
  if (t.logical !== 0) {
    bytes[at++] = LOGICAL_TAG;
    at = writeVarint(bytes, at, t.logical);
  }
  return at === bytes.length ? bytes : bytes.subarray(0, at);
}

/**
 * Decodes the wire form, or throws when the bytes are not a protobuf message. The result is not
 * range-checked: a wall time beyond 2^53 comes back as an unsafe number for
 * {@link observeRemoteHlc} to refuse, never silently rounded into a valid one. The canonical form
 * (what every replikit and protobuf encoder writes) is read by hand; anything else (unknown
 * fields, repeated or reordered fields, oversized varints) goes to the generated decoder.
 */
export function decodeHlc(bytes: Uint8Array): HlcTimestamp {
  return decodeCanonicalHlc(bytes) ?? decodeAnyHlc(bytes);
}

const WALL_TIME_TAG = 0x08; // field 1, varint
const LOGICAL_TAG = 0x10; // field 2, varint
/** 2^53 needs 8 varint bytes; anything longer is left to the generated decoder. */
const MAX_FAST_VARINT_BYTES = 8;

function decodeAnyHlc(bytes: Uint8Array): HlcTimestamp {
  const message = Hlc.decode(bytes);
  const wallMs =
    message.wallTimeMs > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(message.wallTimeMs);
  return { wallMs, logical: message.logical };
}

/** `[wall tag, varint][logical tag, varint]` with either field absent, or undefined. */
function decodeCanonicalHlc(bytes: Uint8Array): HlcTimestamp | undefined {
  let at = 0;
  let wallMs = 0;
  let logical = 0;
  if (at < bytes.length && bytes[at] === WALL_TIME_TAG) {
    const read = readVarint(bytes, at + 1);
    if (read === undefined || read.value > Number.MAX_SAFE_INTEGER) return undefined;
    wallMs = read.value;
    at = read.next;
  }
  if (at < bytes.length && bytes[at] === LOGICAL_TAG) {
    const read = readVarint(bytes, at + 1);
    if (read === undefined || read.value > 0xffff_ffff) return undefined;
    logical = read.value;
    at = read.next;
  }
  return at === bytes.length ? { wallMs, logical } : undefined;
}

function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    length++;
  }
  return length;
}

/** Writes a non-negative safe integer as a varint; division rather than shifts, which stop at 32 bits. */
function writeVarint(bytes: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    bytes[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  bytes[at++] = value;
  return at;
}

function readVarint(bytes: Uint8Array, at: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < MAX_FAST_VARINT_BYTES && at < bytes.length; i++) {
    const byte = bytes[at++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return { value, next: at };
    scale *= 0x80;
  }
  return undefined;
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
