/**
 * One page of a Range: from the keys of a range in ascending order, as a store or a replica
 * visits them, the count of all of them and the page asked for — limit, order, continuation and a
 * byte budget — holding no more than the page in memory (in descending order, a sliding window of
 * it). Shared by every policy's Range.
 */
import type { StoredKey } from '../cp/kv-state-machine.js';
import type { KeyRange } from './key-range.js';

export interface RangeQuery {
  readonly range: KeyRange;
  /** At most this many keys in the page; 0 for no limit. */
  readonly limit: number;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
  readonly descending: boolean;
  /** CP keyspaces: the revision to read at, 0 for the current one. 0 elsewhere. */
  readonly revision: number;
  /** A continuation: the page starts after this key (before it, descending). */
  readonly after?: Buffer;
  /** About how many bytes of keys and values one page may carry (one larger key travels alone). */
  readonly maxBytes: number;
}

export interface RangePage {
  readonly kvs: readonly StoredKey[];
  /** Keys in the whole range (not only this page). */
  readonly count: number;
  /** Keys remain after this page: read on after its last key. */
  readonly more: boolean;
}

/**
 * Builds the page from `scan`, which must visit the range's keys in ascending order (and stop
 * when `visit` answers false; this never asks it to, since the count needs every key).
 */
export function pageOfRange(query: RangeQuery, scan: (visit: (record: StoredKey) => boolean) => void): RangePage {
  let count = 0;
  const page: StoredKey[] = [];
  let pageBytes = 0;
  let more = false;
  const after = query.after;
  const cost = (r: StoredKey) => r.key.byteLength + (query.keysOnly ? 0 : r.value.byteLength) + 64;
  scan((record) => {
    count++;
    if (query.countOnly) return true;
    const key = record.key;
    if (!query.descending) {
      if (after !== undefined && Buffer.compare(key, after) <= 0) return true;
      if (more) return true;
      if ((query.limit > 0 && page.length >= query.limit) || (page.length > 0 && pageBytes + cost(record) > query.maxBytes)) {
        more = true;
        return true;
      }
      page.push(record);
      pageBytes += cost(record);
      return true;
    }
    // Descending: the page is the last keys before `after`; keep a window of them.
    if (after !== undefined && Buffer.compare(key, after) >= 0) return true;
    page.push(record);
    pageBytes += cost(record);
    while (page.length > 1 && ((query.limit > 0 && page.length > query.limit) || pageBytes > query.maxBytes)) {
      pageBytes -= cost(page.shift()!);
      more = true;
    }
    return true;
  });
  if (query.descending) page.reverse();
  const kvs = query.keysOnly ? page.map((r) => ({ ...r, value: EMPTY })) : page;
  return { kvs, count, more };
}

const EMPTY = Buffer.alloc(0);
