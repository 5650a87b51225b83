import { VectorClock } from '../clock/index.js';
import type { Entry } from './entry.js';

/**
 * The binary layout of an entry's value in LmdbStore (the key lives in the LMDB key, so it is not
 * repeated). Big-endian, fixed header first so a future format can be told apart by its first
 * byte:
 *
 * | bytes | field |
 * |---|---|
 * | 1 | format (1) |
 * | 1 | flags: 1 tombstone, 2 has dependencies, 4 has originSequence |
 * | 8 | version.hlc.wallMs, float64 (exact for every safe integer) |
 * | 4 | version.hlc.logical, uint32 |
 * | 2 + n | version.nodeId, uint16 byte length + UTF-8 |
 * | 8 | originSequence, float64, when flagged |
 * | 4 + … | dependencies, when flagged: uint32 count, then per node uint16 length + UTF-8 + float64 counter |
 * | rest | value |
 *
 * An own layout rather than lmdb's default msgpack keeps a record to a few dozen bytes of overhead
 * and keeps msgpack's shared-structure records out of the entries database, whose range scans
 * must see entries only.
 */
export const ENTRY_FORMAT = 1;

const FLAG_TOMBSTONE = 1;
const FLAG_DEPENDENCIES = 2;
const FLAG_ORIGIN_SEQUENCE = 4;

/** The longest node id, in UTF-8 bytes: its length is stored as a uint16. */
export const MAX_NODE_ID_BYTES = 0xffff;

const HEADER_BYTES = 1 + 1 + 8 + 4;

/** The value bytes LmdbStore stores for `entry`. Throws `RangeError` for fields out of range. */
export function encodeEntry(entry: Entry): Buffer {
  const nodeId = utf8(entry.version.nodeId, 'version.nodeId');
  const dependencies =
    entry.dependencies === undefined
      ? undefined
      : [...entry.dependencies.entries()].map(([node, counter]) => [utf8(node, 'dependency node id'), counter] as const);
  const logical = entry.version.hlc.logical;
  if (!Number.isInteger(logical) || logical < 0 || logical > 0xffff_ffff) {
    throw new RangeError(`version.hlc.logical must be a uint32, not ${logical}`);
  }

  let size = HEADER_BYTES + 2 + nodeId.length + entry.value.byteLength;
  if (entry.originSequence !== undefined) size += 8;
  if (dependencies !== undefined) {
    size += 4;
    for (const [node] of dependencies) size += 2 + node.length + 8;
  }

  const out = Buffer.allocUnsafe(size);
  let at = 0;
  at = out.writeUInt8(ENTRY_FORMAT, at);
  at = out.writeUInt8(
    (entry.tombstone ? FLAG_TOMBSTONE : 0) |
      (dependencies === undefined ? 0 : FLAG_DEPENDENCIES) |
      (entry.originSequence === undefined ? 0 : FLAG_ORIGIN_SEQUENCE),
    at,
  );
  at = out.writeDoubleBE(entry.version.hlc.wallMs, at);
  at = out.writeUInt32BE(logical, at);
  at = out.writeUInt16BE(nodeId.length, at);
  at += nodeId.copy(out, at);
  if (entry.originSequence !== undefined) at = out.writeDoubleBE(entry.originSequence, at);
  if (dependencies !== undefined) {
    at = out.writeUInt32BE(dependencies.length, at);
    for (const [node, counter] of dependencies) {
      at = out.writeUInt16BE(node.length, at);
      at += node.copy(out, at);
      at = out.writeDoubleBE(counter, at);
    }
  }
  out.set(entry.value, at);
  return out;
}

/**
 * The entry stored under `key` as `bytes` (made by {@link encodeEntry}). The result shares no
 * memory with `bytes`, so lmdb may reuse its read buffer. Throws when the format is unknown or the
 * record is cut short: both mean the database is not one this code wrote.
 */
export function decodeEntry(key: Uint8Array, bytes: Uint8Array): Entry {
  // lmdb's getBinaryFast buffers report the whole 16 MiB shared read buffer as byteLength;
  // only `length` is the size of the value read.
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const format = input.readUInt8(0);
  if (format !== ENTRY_FORMAT) {
    throw new Error(`stored entry has format ${format}; this build reads format ${ENTRY_FORMAT}`);
  }
  const flags = input.readUInt8(1);
  const wallMs = input.readDoubleBE(2);
  const logical = input.readUInt32BE(10);
  let at = HEADER_BYTES;
  const nodeIdLength = input.readUInt16BE(at);
  at += 2;
  const nodeId = readUtf8(input, at, nodeIdLength);
  at += nodeIdLength;
  let originSequence: number | undefined;
  if (flags & FLAG_ORIGIN_SEQUENCE) {
    originSequence = input.readDoubleBE(at);
    at += 8;
  }
  let dependencies: VectorClock | undefined;
  if (flags & FLAG_DEPENDENCIES) {
    const count = input.readUInt32BE(at);
    at += 4;
    const pairs: [string, number][] = [];
    for (let i = 0; i < count; i++) {
      const length = input.readUInt16BE(at);
      at += 2;
      const node = readUtf8(input, at, length);
      at += length;
      pairs.push([node, input.readDoubleBE(at)]);
      at += 8;
    }
    dependencies = VectorClock.from(pairs);
  }
  return Object.freeze({
    key: new Uint8Array(key),
    value: new Uint8Array(input.subarray(at)),
    version: Object.freeze({ hlc: Object.freeze({ wallMs, logical }), nodeId }),
    tombstone: (flags & FLAG_TOMBSTONE) !== 0,
    ...(dependencies === undefined ? {} : { dependencies }),
    ...(originSequence === undefined ? {} : { originSequence }),
  });
}

function utf8(text: string, what: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_NODE_ID_BYTES) {
    throw new RangeError(`${what} is at most ${MAX_NODE_ID_BYTES} UTF-8 bytes, not ${bytes.length}`);
  }
  return bytes;
}

function readUtf8(input: Buffer, at: number, length: number): string {
  if (at + length > input.length) throw new RangeError('stored entry is cut short');
  return input.toString('utf8', at, at + length);
}
