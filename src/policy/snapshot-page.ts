import type { Entry } from '../storage/entry.js';
import { entryBytes, prefixWithin } from '../storage/entry-size.js';
import type { SnapshotPage } from '../transport/replica-set.js';

/**
 * The page of `entries` (in byte-wise key order) after `afterKey`: at most `maxEntries` long and
 * `maxBytes` of entries (one larger entry alone).
 */
export function pageOf(entries: readonly Entry[], afterKey: Uint8Array | undefined, maxEntries: number, maxBytes: number): SnapshotPage {
  let start = 0;
  if (afterKey !== undefined) {
    const after = Buffer.from(afterKey.buffer, afterKey.byteOffset, afterKey.byteLength);
    while (start < entries.length && Buffer.compare(Buffer.from(entries[start]!.key), after) <= 0) start++;
  }
  const page = prefixWithin(entries.slice(start, start + maxEntries), entryBytes, maxBytes);
  return { entries: page, more: start + page.length < entries.length };
}
