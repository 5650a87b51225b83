import type { Entry } from './entry.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * A frozen copy of `entry` that shares no bytes with it, as a store keeps it. Callers (the
 * transport above all) may reuse their buffers once `apply` returns; a durable medium would not
 * change when they do, so neither may the stores. Optional fields stay absent when they were.
 */
export function copyEntry(entry: Entry): Entry {
  const { hlc, nodeId } = entry.version;
  const copy: Mutable<Entry> = {
    // `new Uint8Array(view)` copies, and yields a plain Uint8Array even from a Buffer, whose
    // `slice` would return a view instead.
    key: new Uint8Array(entry.key),
    value: new Uint8Array(entry.value),
    version: Object.freeze({ hlc: Object.freeze({ wallMs: hlc.wallMs, logical: hlc.logical }), nodeId }),
    tombstone: entry.tombstone,
  };
  // VectorClock is immutable, so sharing it is safe.
  if (entry.dependencies !== undefined) copy.dependencies = entry.dependencies;
  if (entry.originSequence !== undefined) copy.originSequence = entry.originSequence;
  return Object.freeze(copy);
}
