/**
 * What a store accepts: keyspace names and key sizes. Both stores enforce the same limits, so a
 * simulation on {@link MemoryStore} fails where a real node on {@link LmdbStore} would. A caller
 * that breaks them has a bug (the API layer validates client input first and answers
 * INVALID_ARGUMENT), so the stores throw `RangeError` rather than report an operating failure.
 */

/** The longest keyspace name, in characters (ASCII, so also bytes). */
export const MAX_KEYSPACE_NAME_LENGTH = 128;

/**
 * Keyspace names are ASCII letters, digits, `.`, `_` and `-`. Excluding every byte below 0x2d lets
 * LmdbStore end the name with a 0x00 separator and still sort and range-scan keyspaces by prefix.
 */
export const KEYSPACE_NAME_PATTERN = /^[A-Za-z0-9._-]+$/;

/**
 * The longest key, in bytes. LMDB's key limit is 1978 bytes with its default page size; a keyspace
 * name and a separator take up to 129 of them, and 1 KiB leaves room to spare.
 */
export const MAX_KEY_BYTES = 1024;

/** True when `name` can name a keyspace. */
export function isValidKeyspaceName(name: string): boolean {
  return name.length <= MAX_KEYSPACE_NAME_LENGTH && KEYSPACE_NAME_PATTERN.test(name);
}

/** Throws `RangeError` unless `name` can name a keyspace. */
export function assertKeyspaceName(name: string): void {
  if (!isValidKeyspaceName(name)) {
    throw new RangeError(
      `keyspace name ${JSON.stringify(name)} must be 1 to ${MAX_KEYSPACE_NAME_LENGTH} characters of [A-Za-z0-9._-]`,
    );
  }
}

/** Throws `RangeError` when `key` is longer than {@link MAX_KEY_BYTES}. */
export function assertKeySize(key: Uint8Array): void {
  if (key.byteLength > MAX_KEY_BYTES) {
    throw new RangeError(`a key is at most ${MAX_KEY_BYTES} bytes, not ${key.byteLength}`);
  }
}
