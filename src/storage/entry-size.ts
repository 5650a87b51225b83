import type { Entry } from './entry.js';

/**
 * Bytes an entry takes on the wire, near enough for budgets: key and value, plus the version,
 * flags and framing (48 bytes covers an HLC, a node id of up to 16 bytes and protobuf tags), plus
 * 24 bytes per node of a causal dependency clock. Budgets are kept well under the gRPC message
 * limit, so an estimate a little off either way never makes a message too large.
 */
export function entryBytes(entry: Entry): number {
  return entry.key.byteLength + entry.value.byteLength + ENTRY_OVERHEAD_BYTES + (entry.dependencies?.size ?? 0) * 24;
}

/** What an entry costs beyond its key and value (see {@link entryBytes}). */
export const ENTRY_OVERHEAD_BYTES = 48;

/**
 * The longest prefix of `items` whose sizes add up to at most `budgetBytes`, and at most
 * `maxItems` long, but never empty: one item larger than the budget travels alone.
 */
export function prefixWithin<T>(items: readonly T[], sizeOf: (item: T) => number, budgetBytes: number, maxItems = Number.POSITIVE_INFINITY): T[] {
  const taken: T[] = [];
  let bytes = 0;
  for (const item of items) {
    if (taken.length >= maxItems) break;
    const size = sizeOf(item);
    if (taken.length > 0 && bytes + size > budgetBytes) break;
    taken.push(item);
    bytes += size;
  }
  return taken;
}
