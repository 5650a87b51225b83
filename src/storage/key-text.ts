/**
 * A key as a JavaScript string of the same order: latin1 maps each byte to one UTF-16 code unit,
 * so strings compare as the bytes do. For keys in Maps and sorting (stores, watchers, oracles).
 */
export function latin1(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}
