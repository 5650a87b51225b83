import * as zlib from 'node:zlib';
import { snapshotMeta } from '../raft/membership.js';
import type { EntryKind, HardState, LogEntry, SnapshotMeta } from '../raft/types.js';

/**
 * The on-disk records of a Raft log (LmdbRaftLogStore's values; the file WAL of
 * bench/log-store.ts frames the same entry records). Changing a layout means a new format number
 * and a reader for the old one: logs written by an earlier build must still load.
 *
 * Every record starts with the same 6-byte header, big-endian like the rest:
 *
 * | bytes | field |
 * |---|---|
 * | 1 | format (1) |
 * | 1 | record type: 1 entry, 2 hard state, 3 snapshot meta, 4 snapshot data |
 * | 4 | CRC-32 (IEEE 802.3, zlib's) of every byte after this field |
 *
 * then the body of its type. A `u64` is an unsigned integer up to 2^53 − 1 (JavaScript's safe
 * integers), written as two uint32 halves, high first: the same bytes as a uint64 BE. A string is
 * a uint16 byte length and UTF-8.
 *
 * Entry (type 1): `u64 term`, `u64 index`, `u8 kind` (0 command, 1 noop, 2 config), then the data
 * to the end.
 *
 * Hard state (type 2): `u64 term`, `u64 commit`, `u8 flags` (1: a vote follows), `string vote`
 * when flagged.
 *
 * Snapshot meta (type 3): `u64 index`, `u64 term`, `u64 data length`, `u32 voter count`, then
 * each voter as a string; then (records written since membership changes; older ones end here and
 * read as no learners and an empty context) `u32 learner count`, each learner as a string, and
 * `u32 context length` and the membership's context in UTF-8.
 *
 * Snapshot data (type 4): `u64 index`, `u64 term`, then the data to the end. Kept apart from the
 * meta so that loading the log never reads a large snapshot; the index, term and length repeated
 * in both tie one to the other.
 *
 * The entry's own index is inside the checksummed bytes, so a record found under the wrong key is
 * caught too. A checksum catches a torn or rotten record; it does not authenticate anything.
 */
export const RAFT_LOG_FORMAT = 1;

export const RECORD_ENTRY = 1;
export const RECORD_HARD_STATE = 2;
export const RECORD_SNAPSHOT_META = 3;
export const RECORD_SNAPSHOT_DATA = 4;

const HEADER_BYTES = 6;
/** Where the checksummed bytes start. */
const CRC_FROM = HEADER_BYTES;
const ENTRY_FIXED_BYTES = HEADER_BYTES + 8 + 8 + 1;

/** The longest node id (vote, voter), in UTF-8 bytes: its length is stored as a uint16. */
export const MAX_RAFT_NODE_ID_BYTES = 0xffff;

const KINDS: readonly EntryKind[] = ['command', 'noop', 'config'];

/** A record that does not decode: torn, rotten, or not written by this code. */
export class RaftLogRecordError extends Error {
  override readonly name = 'RaftLogRecordError';
}

/** The stored snapshot data record, decoded. */
export interface SnapshotDataRecord {
  readonly index: number;
  readonly term: number;
  readonly data: Uint8Array;
}

/** The stored snapshot meta record, decoded: the meta and the length of its data. */
export interface SnapshotMetaRecord {
  readonly meta: SnapshotMeta;
  readonly dataLength: number;
}

/** The record bytes of `entry`. Throws `RangeError` for a field out of range. */
export function encodeEntryRecord(entry: LogEntry): Buffer {
  const kind = KINDS.indexOf(entry.kind);
  if (kind < 0) throw new RangeError(`entry kind must be one of ${KINDS.join(', ')}, not ${String(entry.kind)}`);
  const out = Buffer.allocUnsafe(ENTRY_FIXED_BYTES + entry.data.byteLength);
  let at = header(out, RECORD_ENTRY);
  at = writeU64(out, at, entry.term, 'entry term');
  at = writeU64(out, at, entry.index, 'entry index');
  at = out.writeUInt8(kind, at);
  out.set(entry.data, at);
  return seal(out);
}

/** The entry in `bytes`; its data is a copy. Throws {@link RaftLogRecordError} when the record is bad. */
export function decodeEntryRecord(bytes: Uint8Array): LogEntry {
  const input = open(bytes, RECORD_ENTRY);
  if (input.length < ENTRY_FIXED_BYTES) throw new RaftLogRecordError('entry record cut short');
  let at = HEADER_BYTES;
  const term = readU64(input, at);
  at += 8;
  const index = readU64(input, at);
  at += 8;
  const kind = KINDS[input.readUInt8(at)];
  at += 1;
  if (kind === undefined) throw new RaftLogRecordError(`entry record has unknown kind ${input.readUInt8(at - 1)}`);
  return Object.freeze({ term, index, kind, data: new Uint8Array(input.subarray(at)) });
}

/** The record bytes of `state`. Throws `RangeError` for a field out of range. */
export function encodeHardStateRecord(state: HardState): Buffer {
  const vote = state.vote === undefined ? undefined : nodeId(state.vote, 'vote');
  const out = Buffer.allocUnsafe(HEADER_BYTES + 8 + 8 + 1 + (vote === undefined ? 0 : 2 + vote.length));
  let at = header(out, RECORD_HARD_STATE);
  at = writeU64(out, at, state.term, 'hard state term');
  at = writeU64(out, at, state.commit, 'hard state commit');
  at = out.writeUInt8(vote === undefined ? 0 : 1, at);
  if (vote !== undefined) {
    at = out.writeUInt16BE(vote.length, at);
    vote.copy(out, at);
  }
  return seal(out);
}

/** The hard state in `bytes`. Throws {@link RaftLogRecordError} when the record is bad. */
export function decodeHardStateRecord(bytes: Uint8Array): HardState {
  const input = open(bytes, RECORD_HARD_STATE);
  const reader = new Reader(input, HEADER_BYTES);
  const term = reader.u64();
  const commit = reader.u64();
  const flags = reader.u8();
  const vote = flags & 1 ? reader.string() : undefined;
  reader.end();
  return Object.freeze({ term, vote, commit });
}

/** The record bytes of a snapshot's meta, given the length of its data. */
export function encodeSnapshotMetaRecord(meta: SnapshotMeta, dataLength: number): Buffer {
  const voters = meta.voters.map((voter) => nodeId(voter, 'voter'));
  const learners = (meta.learners ?? []).map((learner) => nodeId(learner, 'learner'));
  const context = Buffer.from(meta.context ?? '', 'utf8');
  const names = (list: Buffer[]) => list.reduce((n, v) => n + 2 + v.length, 0);
  const out = Buffer.allocUnsafe(HEADER_BYTES + 8 + 8 + 8 + 4 + names(voters) + 4 + names(learners) + 4 + context.length);
  let at = header(out, RECORD_SNAPSHOT_META);
  at = writeU64(out, at, meta.index, 'snapshot index');
  at = writeU64(out, at, meta.term, 'snapshot term');
  at = writeU64(out, at, dataLength, 'snapshot data length');
  at = out.writeUInt32BE(voters.length, at);
  for (const voter of voters) {
    at = out.writeUInt16BE(voter.length, at);
    at += voter.copy(out, at);
  }
  at = out.writeUInt32BE(learners.length, at);
  for (const learner of learners) {
    at = out.writeUInt16BE(learner.length, at);
    at += learner.copy(out, at);
  }
  at = out.writeUInt32BE(context.length, at);
  context.copy(out, at);
  return seal(out);
}

/** The snapshot meta in `bytes`. Throws {@link RaftLogRecordError} when the record is bad. */
export function decodeSnapshotMetaRecord(bytes: Uint8Array): SnapshotMetaRecord {
  const input = open(bytes, RECORD_SNAPSHOT_META);
  const reader = new Reader(input, HEADER_BYTES);
  const index = reader.u64();
  const term = reader.u64();
  const dataLength = reader.u64();
  const count = reader.u32();
  const voters: string[] = [];
  for (let i = 0; i < count; i++) voters.push(reader.string());
  const learners: string[] = [];
  let context = '';
  if (reader.at < input.length) {
    const learnerCount = reader.u32();
    for (let i = 0; i < learnerCount; i++) learners.push(reader.string());
    context = reader.bytes(reader.u32()).toString('utf8');
  }
  reader.end();
  const meta = snapshotMeta(index, term, { voters: Object.freeze(voters), learners: Object.freeze(learners), context });
  return Object.freeze({ meta: Object.freeze(meta), dataLength });
}

/** The record bytes of a snapshot's data. */
export function encodeSnapshotDataRecord(meta: SnapshotMeta, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + 8 + 8 + data.byteLength);
  let at = header(out, RECORD_SNAPSHOT_DATA);
  at = writeU64(out, at, meta.index, 'snapshot index');
  at = writeU64(out, at, meta.term, 'snapshot term');
  out.set(data, at);
  return seal(out);
}

/** The snapshot data in `bytes` (copied). Throws {@link RaftLogRecordError} when the record is bad. */
export function decodeSnapshotDataRecord(bytes: Uint8Array): SnapshotDataRecord {
  const input = open(bytes, RECORD_SNAPSHOT_DATA);
  const reader = new Reader(input, HEADER_BYTES);
  const index = reader.u64();
  const term = reader.u64();
  return Object.freeze({ index, term, data: new Uint8Array(input.subarray(reader.at)) });
}

/**
 * CRC-32 (IEEE), as zlib computes it: Node's native `zlib.crc32` (Node ≥ 20.15), else a table in
 * JavaScript (the same function, about ten times slower).
 */
export const crc32: (data: Uint8Array) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (data) => zlib.crc32(data) : tableCrc32;

let crcTable: Uint32Array | undefined;

function tableCrc32(data: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** Exported for the test that holds the fallback to zlib's result. */
export { tableCrc32 as crc32InJavaScript };

function header(out: Buffer, type: number): number {
  out.writeUInt8(RAFT_LOG_FORMAT, 0);
  out.writeUInt8(type, 1);
  return HEADER_BYTES;
}

/** Fills in the checksum of a finished record. */
function seal(out: Buffer): Buffer {
  out.writeUInt32BE(crc32(out.subarray(CRC_FROM)), 2);
  return out;
}

/** Checks a record's header and checksum; returns it as a Buffer of exactly its length. */
function open(bytes: Uint8Array, type: number): Buffer {
  // lmdb's fast-read buffers report their whole shared buffer as byteLength; `length` is the record.
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (input.length < HEADER_BYTES) throw new RaftLogRecordError('record cut short');
  const format = input.readUInt8(0);
  if (format !== RAFT_LOG_FORMAT) throw new RaftLogRecordError(`record has format ${format}; this build reads format ${RAFT_LOG_FORMAT}`);
  const found = input.readUInt8(1);
  if (found !== type) throw new RaftLogRecordError(`record has type ${found}, expected ${type}`);
  if (input.readUInt32BE(2) !== crc32(input.subarray(CRC_FROM))) throw new RaftLogRecordError('record fails its checksum');
  return input;
}

function writeU64(out: Buffer, at: number, value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${what} must be a safe non-negative integer, not ${value}`);
  out.writeUInt32BE(Math.floor(value / 0x1_0000_0000), at);
  out.writeUInt32BE(value >>> 0, at + 4);
  return at + 8;
}

function readU64(input: Buffer, at: number): number {
  const high = input.readUInt32BE(at);
  if (high > 0x1f_ffff) throw new RaftLogRecordError('u64 field above 2^53 - 1');
  return high * 0x1_0000_0000 + input.readUInt32BE(at + 4);
}

function nodeId(id: string, what: string): Buffer {
  if (typeof id !== 'string') throw new RangeError(`${what} must be a string`);
  const bytes = Buffer.from(id, 'utf8');
  if (bytes.length > MAX_RAFT_NODE_ID_BYTES) throw new RangeError(`${what} is at most ${MAX_RAFT_NODE_ID_BYTES} UTF-8 bytes, not ${bytes.length}`);
  return bytes;
}

/** Reads fields in order, throwing {@link RaftLogRecordError} past the end. */
class Reader {
  constructor(
    private readonly input: Buffer,
    public at: number,
  ) {}

  #need(n: number): void {
    if (this.at + n > this.input.length) throw new RaftLogRecordError('record cut short');
  }

  u8(): number {
    this.#need(1);
    return this.input.readUInt8(this.at++);
  }

  u32(): number {
    this.#need(4);
    const value = this.input.readUInt32BE(this.at);
    this.at += 4;
    return value;
  }

  u64(): number {
    this.#need(8);
    const value = readU64(this.input, this.at);
    this.at += 8;
    return value;
  }

  string(): string {
    this.#need(2);
    const length = this.input.readUInt16BE(this.at);
    this.at += 2;
    this.#need(length);
    const text = this.input.toString('utf8', this.at, this.at + length);
    this.at += length;
    return text;
  }

  bytes(length: number): Buffer {
    this.#need(length);
    const out = this.input.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }

  end(): void {
    if (this.at !== this.input.length) throw new RaftLogRecordError('record has trailing bytes');
  }
}
