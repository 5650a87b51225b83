/**
 * What a client asks of Range and Watch, checked and turned into the policies' terms: the key
 * range, the paging continuation (an opaque token that pins the revision, order and last key of
 * the page before), and the watch's start and progress interval. Every refusal is
 * INVALID_ARGUMENT naming the field.
 */
import { invalidArgument } from '../errors.js';
import { inRange, prefixRange, singleKey, type KeyRange } from '../policy/watch/key-range.js';
import { WATCH_DEFAULTS } from '../policy/watch/watch-hub.js';

export interface RangeArgs {
  /** The key, or the range's first key; may be empty only with `prefix` (every key). */
  readonly key: Uint8Array;
  /** The range's end (exclusive); empty or absent: the key alone. */
  readonly rangeEnd?: Uint8Array;
  readonly prefix?: boolean;
  /** 0 or absent: no limit. */
  readonly limit?: number;
  readonly keysOnly?: boolean;
  readonly countOnly?: boolean;
  readonly descending?: boolean;
  /** CP keyspaces: the revision to read at; 0 or absent for the current one. */
  readonly revision?: number;
  /** From the previous page's answer. */
  readonly continuation?: Uint8Array;
}

export interface WatchArgs {
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array;
  readonly prefix?: boolean;
  /** 0 or absent: changes from now. */
  readonly startRevision?: number;
  readonly prevKv?: boolean;
  /** 0 or absent: the node's default. */
  readonly progressIntervalMs?: number;
}

/**
 * Bytes of keys and values in one Range answer (at most the node's largest value): one maximal
 * value's worth, so that any page fits the node's message limit and a client's default 4 MiB
 * receive limit (a single larger key and value travel alone, within the limit's headroom).
 */
export const RANGE_PAGE_BYTES = 1024 * 1024;

/** Bytes of framing a message may carry beyond its values (keys, versions, clocks). */
export const MESSAGE_HEADROOM_BYTES = 64 * 1024;

/**
 * The largest message a node sends: two maximal values and headroom, since a watch event carries
 * a key's value and, when asked, its previous value. Within a client's default 4 MiB with the
 * default 1 MiB values.
 */
export function maxSendBytes(maxValueBytes: number): number {
  return 2 * maxValueBytes + MESSAGE_HEADROOM_BYTES;
}
/** The longest progress interval a watch may ask for: an hour; idle watches still hear from the node. */
export const MAX_PROGRESS_INTERVAL_MS = 3_600_000;

const CONTINUATION_FORMAT = 1;

export function keyRangeOf(args: { key: Uint8Array; rangeEnd?: Uint8Array; prefix?: boolean }, maxKeyBytes: number): KeyRange {
  const key = args.key;
  const end = args.rangeEnd ?? new Uint8Array(0);
  if (key.byteLength > maxKeyBytes) throw invalidArgument('KEY_TOO_LARGE', `key is ${key.byteLength} bytes; the limit (maxKeyBytes) is ${maxKeyBytes}`, { field: 'key' });
  if (end.byteLength > maxKeyBytes) throw invalidArgument('KEY_TOO_LARGE', `range_end is ${end.byteLength} bytes; the limit (maxKeyBytes) is ${maxKeyBytes}`, { field: 'range_end' });
  if (args.prefix === true) {
    if (end.byteLength > 0) throw invalidArgument('RANGE_AND_PREFIX', 'range_end must be empty when prefix is set: a prefix is its own range', { field: 'range_end' });
    return prefixRange(key);
  }
  if (key.byteLength === 0) throw invalidArgument('KEY_EMPTY', 'key is empty; give a key, a range (key and range_end) or a prefix (an empty prefix: every key)', { field: 'key' });
  if (end.byteLength === 0) return singleKey(key);
  const start = Buffer.from(key);
  const stop = Buffer.from(end);
  if (Buffer.compare(stop, start) <= 0) {
    throw invalidArgument('RANGE_INVERTED', `range_end (${describe(stop)}) must sort after key (${describe(start)}): the range [key, range_end) is empty`, { field: 'range_end' });
  }
  return { start, end: stop };
}

export interface CheckedRange {
  readonly range: KeyRange;
  readonly limit: number;
  readonly revision: number;
  readonly after: Buffer | undefined;
}

/** Checks a Range's numbers and continuation. `revision` must be 0 where `hasRevisions` is false. */
export function checkRange(args: RangeArgs, range: KeyRange, hasRevisions: boolean): CheckedRange {
  const limit = args.limit ?? 0;
  if (!Number.isSafeInteger(limit) || limit < 0) throw invalidArgument('LIMIT_NEGATIVE', `limit must be 0 (no limit) or a positive count, not ${limit}`, { field: 'limit' });
  let revision = args.revision ?? 0;
  if (!Number.isSafeInteger(revision) || revision < 0) throw invalidArgument('REVISION_INVALID', `revision must be a whole number ≥ 0, not ${revision}`, { field: 'revision' });
  if (revision !== 0 && !hasRevisions) throw invalidArgument('REVISION_NOT_SUPPORTED', 'only CP keyspaces keep revisions: leave revision 0 (the local replica now)', { field: 'revision' });
  let after: Buffer | undefined;
  if (args.continuation !== undefined && args.continuation.byteLength > 0) {
    const c = decodeContinuation(args.continuation);
    if (c.descending !== (args.descending === true)) throw invalidArgument('CONTINUATION_MISMATCH', 'continuation was made for the other sort order', { field: 'continuation' });
    if (revision !== 0 && revision !== c.revision) throw invalidArgument('CONTINUATION_MISMATCH', `continuation was made at revision ${c.revision}, not ${revision}`, { field: 'continuation' });
    if (!inRange(range, c.after)) throw invalidArgument('CONTINUATION_MISMATCH', 'continuation was made for another range', { field: 'continuation' });
    revision = c.revision;
    after = c.after;
  }
  return { range, limit, revision, after };
}

/** The token for the page after one that ended at `lastKey`, read at `revision`. */
export function encodeContinuation(revision: number, descending: boolean, lastKey: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(10 + lastKey.byteLength);
  out.writeUInt8(CONTINUATION_FORMAT, 0);
  out.writeBigUInt64BE(BigInt(revision), 1);
  out.writeUInt8(descending ? 1 : 0, 9);
  Buffer.from(lastKey.buffer, lastKey.byteOffset, lastKey.byteLength).copy(out, 10);
  return out;
}

function decodeContinuation(data: Uint8Array): { revision: number; descending: boolean; after: Buffer } {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.byteLength < 11 || buf.readUInt8(0) !== CONTINUATION_FORMAT || buf.readUInt8(9) > 1) {
    throw invalidArgument('CONTINUATION_INVALID', 'continuation is not one this node made: pass the continuation of the previous answer unchanged', { field: 'continuation' });
  }
  return { revision: Number(buf.readBigUInt64BE(1)), descending: buf.readUInt8(9) === 1, after: Buffer.from(buf.subarray(10)) };
}

export function checkWatch(args: WatchArgs): { startRevision: number; progressIntervalMs: number } {
  const startRevision = args.startRevision ?? 0;
  if (!Number.isSafeInteger(startRevision) || startRevision < 0) throw invalidArgument('START_REVISION_INVALID', `start_revision must be a whole number ≥ 0, not ${startRevision}`, { field: 'start_revision' });
  const interval = args.progressIntervalMs ?? 0;
  if (!Number.isSafeInteger(interval) || interval < 0 || (interval !== 0 && interval < WATCH_DEFAULTS.minProgressIntervalMs) || interval > MAX_PROGRESS_INTERVAL_MS) {
    throw invalidArgument('PROGRESS_INTERVAL_INVALID', `progress_interval_ms must be 0 (the default, ${WATCH_DEFAULTS.defaultProgressIntervalMs}) or ${WATCH_DEFAULTS.minProgressIntervalMs} to ${MAX_PROGRESS_INTERVAL_MS}, not ${interval}`, { field: 'progress_interval_ms' });
  }
  return { startRevision, progressIntervalMs: interval === 0 ? WATCH_DEFAULTS.defaultProgressIntervalMs : interval };
}

function describe(key: Buffer): string {
  const text = key.toString('latin1');
  return /^[\x20-\x7e]*$/.test(text) ? JSON.stringify(text.length > 40 ? text.slice(0, 40) + '…' : text) : `0x${key.subarray(0, 20).toString('hex')}`;
}
