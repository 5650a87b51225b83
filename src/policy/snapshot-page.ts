import type { Entry } from '../storage/entry.js';
import type { SnapshotPage } from '../transport/replica-set.js';

/** The page of `entries` (in byte-wise key order) after `afterKey`, at most `maxEntries` long. */
export function pageOf(entries: readonly Entry[], afterKey: Uint8Array | undefined, maxEntries: number): SnapshotPage {
  let start = 0;
  if (afterKey !== undefined) {
    const after = Buffer.from(afterKey.buffer, afterKey.byteOffset, afterKey.byteLength);
    while (start < entries.length && Buffer.compare(Buffer.from(entries[start]!.key), after) <= 0) start++;
  }
  const page = entries.slice(start, start + maxEntries);
  return { entries: page, more: start + page.length < entries.length };
}
