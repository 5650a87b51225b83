/**
 * The keys a Range or a Watch covers: [start, end) in byte-wise order, `end` null for "every key
 * from `start` on". A single key is [key, key + 0x00); a prefix is [prefix, the prefix's successor).
 */
export interface KeyRange {
  readonly start: Buffer;
  /** Exclusive; null when the range runs to the last key. */
  readonly end: Buffer | null;
}

const ZERO = Buffer.from([0]);

/** The range holding `key` alone. */
export function singleKey(key: Uint8Array): KeyRange {
  const start = Buffer.from(key);
  return { start, end: Buffer.concat([start, ZERO]) };
}

/** The range of every key that starts with `prefix` (an empty prefix: every key). */
export function prefixRange(prefix: Uint8Array): KeyRange {
  return { start: Buffer.from(prefix), end: prefixEnd(prefix) };
}

/**
 * The first key after every key that starts with `prefix`: the prefix with its last byte below
 * 0xff incremented and what follows it dropped; null when there is none (all 0xff, or empty).
 */
export function prefixEnd(prefix: Uint8Array): Buffer | null {
  for (let i = prefix.byteLength - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = prefix[i]! + 1;
      return end;
    }
  }
  return null;
}

export function inRange(range: KeyRange, key: Uint8Array): boolean {
  const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  return Buffer.compare(k, range.start) >= 0 && (range.end === null || Buffer.compare(k, range.end) < 0);
}

/** True when the range is the single key `range.start`. */
export function isSingleKey(range: KeyRange): boolean {
  return range.end !== null && range.end.byteLength === range.start.byteLength + 1 && range.end[range.start.byteLength] === 0 && range.end.subarray(0, range.start.byteLength).equals(range.start);
}
