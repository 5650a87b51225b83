import { compareVersion, type Entry, type Version } from '../../storage/entry.js';
import { keepNewer, type ConflictResolver } from '../../storage/store.js';

/**
 * An application's merge of two concurrent values of one key (a counter's sum of per-node parts,
 * a set union). Contract: deterministic, and commutative, associative and idempotent — a
 * semilattice join — or replicas will not converge. It may throw; see {@link mergeResolver}.
 */
export type MergeFunction = (a: Uint8Array, b: Uint8Array) => Uint8Array;

/** Last writer wins: the larger version is kept. The default of AP keyspaces (and of stores). */
export const lastWriterWins: ConflictResolver = keepNewer;

/** What a merge resolver reports when the application's merge throws. */
export interface MergeFailure {
  readonly key: Uint8Array;
  /** The value kept (by last writer wins). */
  readonly winner: Entry;
  /** The value that lost; kept aside, never dropped. */
  readonly loser: Entry;
  readonly error: unknown;
}

function maxVersion(a: Version, b: Version): Version {
  return compareVersion(a, b) >= 0 ? a : b;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A resolver that merges values with `merge`: the stored entry gets the merged value and the
 * larger of the two versions, so replicas that have seen the same writes hold the same entry.
 * Tombstones are not merged: a delete and a value resolve by last writer wins. When `merge`
 * throws, the larger version wins as under last writer wins, `onFailure` gets both entries (the
 * keyspace keeps the loser aside and logs it), and nothing is lost.
 */
export function mergeResolver(merge: MergeFunction, onFailure: (failure: MergeFailure) => void): ConflictResolver {
  return (held, offered) => {
    if (held === undefined) return offered;
    if (held.tombstone || offered.tombstone) return lastWriterWins(held, offered);
    const order = compareVersion(offered.version, held.version);
    if (order === 0 && sameBytes(held.value, offered.value)) return undefined;
    let value: Uint8Array;
    try {
      value = merge(held.value, offered.value);
      if (!(value instanceof Uint8Array)) throw new TypeError(`merge returned ${typeof value}, not bytes`);
    } catch (error: unknown) {
      const [winner, loser] = order > 0 ? [offered, held] : [held, offered];
      onFailure({ key: offered.key, winner, loser, error });
      return order > 0 ? offered : undefined;
    }
    const version = maxVersion(held.version, offered.version);
    if (compareVersion(version, held.version) === 0 && sameBytes(value, held.value)) return undefined;
    return { key: offered.key, value, version, tombstone: false };
  };
}
