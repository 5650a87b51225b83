import type { SeededRandom } from './seeded-random.js';

/**
 * Values the simulations write: usually the short name the history records (`3-17`), sometimes
 * that name padded to hundreds of KiB up to the node's value limit, so batches are split by bytes
 * in the simulation as on real nodes. The padding follows a NUL byte, which names never contain,
 * so a read is recorded by its name alone and the checkers stay fast.
 */
export function valueToWrite(name: string, random: SeededRandom, largeRate: number, maxValueBytes: number): Uint8Array {
  const bytes = Buffer.from(name, 'utf8');
  if (!random.chance(largeRate)) return bytes;
  const size = Math.floor(random.between(64 * 1024, maxValueBytes));
  const out = Buffer.alloc(Math.max(size, bytes.length + 1), 0x78);
  bytes.copy(out);
  out[bytes.length] = 0;
  return out;
}

/** The name a value read back was written under (see {@link valueToWrite}). */
export function nameOf(value: Uint8Array): string {
  const end = value.indexOf(0);
  return Buffer.from(value.buffer, value.byteOffset, end < 0 ? value.byteLength : end).toString('utf8');
}
