import type { WallClock } from '../clock/index.js';
import type { Store } from '../storage/store.js';

/** Metadata key under which the node's incarnation counter is kept in the store. */
const INCARNATION_META = 'incarnation';

/**
 * One more than the stored incarnation; for an empty store (new, or wiped), the wall clock in
 * seconds, so that a node that lost its disk still comes back with an incarnation larger than
 * any its peers saw from it (they ignore beats from older incarnations).
 */
export async function nextIncarnation(store: Store, wallClock: WallClock): Promise<number> {
  const held = store.getMeta(INCARNATION_META);
  const previous = held === undefined ? 0 : Number(new DataView(held.buffer, held.byteOffset, held.byteLength).getBigUint64(0));
  const next = held === undefined ? Math.max(1, Math.floor(wallClock() / 1000)) : previous + 1;
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(next));
  await store.putMeta(INCARNATION_META, bytes);
  return next;
}
