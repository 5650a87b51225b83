import type { Entry } from '../../storage/entry.js';

/**
 * Digests for anti-entropy: keys fall into buckets by a hash of their bytes, and a bucket's digest
 * is the XOR of its entries' 64-bit hashes, so it can be kept up to date one key at a time (XOR
 * the old hash out, the new one in) and two replicas compare whole key ranges by one number.
 * Pure functions: no I/O, no clock.
 */

/**
 * Buckets per keyspace. 256 keeps a digest at 2 KiB while a differing bucket of a million-key
 * keyspace still holds only about 4,000 keys to exchange.
 */
export const DIGEST_BUCKETS = 256;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a, 32 bits, continuing from `seed`. */
function fnv1a(bytes: Uint8Array, seed: number = FNV_OFFSET): number {
  let h = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, FNV_PRIME) >>> 0;
  }
  return h;
}

function fnvNumber(n: number, seed: number): number {
  let h = seed;
  // Two 26-bit halves cover every safe integer.
  for (const part of [Math.floor(n / 0x4000000), n % 0x4000000]) {
    for (let shift = 0; shift < 32; shift += 8) {
      h ^= (part >>> shift) & 0xff;
      h = Math.imul(h, FNV_PRIME) >>> 0;
    }
  }
  return h;
}

const encoder = new TextEncoder();

/** The bucket of a key. */
export function bucketOf(key: Uint8Array, buckets: number = DIGEST_BUCKETS): number {
  return fnv1a(key) % buckets;
}

/**
 * The 64-bit hash of an entry (key, version, tombstone flag, value), as a bigint; 0n stands for
 * "absent", so an entry that should count as absent (an expired tombstone) is given 0n.
 */
export function entryHash(entry: Entry): bigint {
  const parts = (seed: number): number => {
    let h = fnv1a(entry.key, seed);
    h = fnvNumber(entry.version.hlc.wallMs, h);
    h = fnvNumber(entry.version.hlc.logical, h);
    h = fnv1a(encoder.encode(entry.version.nodeId), h);
    h = fnvNumber(entry.tombstone ? 1 : 0, h);
    return fnv1a(entry.value, h);
  };
  const hash = (BigInt(parts(FNV_OFFSET)) << 32n) | BigInt(parts(0x9e3779b9));
  return hash === 0n ? 1n : hash;
}

/**
 * A keyspace's digest, kept up to date key by key: `set` replaces a key's hash. Remembers every
 * key per bucket, so that a differing bucket's keys can be listed without a store scan.
 */
export class KeyspaceDigest {
  readonly buckets: number;
  readonly #bucketHashes: bigint[];
  readonly #keyHashes = new Map<string, bigint>();
  readonly #bucketKeys: Map<string, Uint8Array>[];

  constructor(buckets: number = DIGEST_BUCKETS) {
    this.buckets = buckets;
    this.#bucketHashes = Array.from({ length: buckets }, () => 0n);
    this.#bucketKeys = Array.from({ length: buckets }, () => new Map());
  }

  /**
   * Sets `key`'s hash and returns its bucket. A hash of 0n counts as absent in the bucket's digest,
   * but the key stays listed (an expired tombstone is still shipped when its bucket differs)
   * until {@link forget}.
   */
  set(key: Uint8Array, hash: bigint): number {
    const id = keyId(key);
    const bucket = bucketOf(key, this.buckets);
    const old = this.#keyHashes.get(id) ?? 0n;
    // A copy of exactly its size: a small Buffer decoded from a message is a slice of Node's
    // shared 8 KiB allocation pool (or a view into a larger buffer), and keeping it for as long as
    // the key lives would keep all of that alive with it.
    if (!this.#bucketKeys[bucket]!.has(id)) this.#bucketKeys[bucket]!.set(id, Uint8Array.prototype.slice.call(key));
    if (old === hash) return bucket;
    this.#bucketHashes[bucket] = this.#bucketHashes[bucket]! ^ old ^ hash;
    this.#keyHashes.set(id, hash);
    return bucket;
  }

  /** Drops `key` altogether (its entry was purged from the store). */
  forget(key: Uint8Array): void {
    this.set(key, 0n);
    const id = keyId(key);
    this.#keyHashes.delete(id);
    this.#bucketKeys[bucketOf(key, this.buckets)]!.delete(id);
  }

  /** Every bucket's hash, in bucket order. */
  hashes(): bigint[] {
    return this.#bucketHashes.slice();
  }

  /** The buckets whose hashes differ from `other` (which must have as many buckets). */
  differing(other: readonly bigint[]): number[] {
    const out: number[] = [];
    for (let b = 0; b < this.buckets; b++) if (this.#bucketHashes[b] !== other[b]) out.push(b);
    return out;
  }

  /** The keys listed in `bucket`. */
  keysIn(bucket: number): Uint8Array[] {
    return [...this.#bucketKeys[bucket]!.values()];
  }

  /** The number of keys listed. */
  get size(): number {
    return this.#keyHashes.size;
  }
}

/** A Map key for key bytes. */
export function keyId(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}
