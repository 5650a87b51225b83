/**
 * Range over a CP keyspace at a revision: the state as it stood then. At the current revision
 * that is the state itself; at a past one, the state with every later change in range undone, by
 * the previous records the history keeps with each change (kv-history.ts) — one pass over the
 * history after the revision, then one over the state, both in the same synchronous run, so they
 * see one moment.
 */
import { invalidArgument } from '../../errors.js';
import { inRange } from '../watch/key-range.js';
import { pageOfRange, type RangePage, type RangeQuery } from '../watch/range-page.js';
import type { KvHistory } from './kv-history.js';
import type { StoredKey } from './kv-state-machine.js';
import type { KvStateStore } from './kv-state-store.js';
import { latin1 } from '../../storage/key-text.js';

/** History read per step while undoing (bytes): bounds what one read holds besides the undo map. */
const UNDO_READ_BYTES = 1024 * 1024;

/**
 * The page `query` asks for, at `query.revision` (0: the current one). Answers the revision read
 * at. Throws INVALID_ARGUMENT for a revision past the head, and the history's floor error for one
 * it no longer keeps.
 */
export function rangeAtRevision(state: KvStateStore, history: KvHistory, query: RangeQuery): RangePage & { readonly revision: number } {
  const head = history.head;
  const revision = query.revision === 0 ? head : query.revision;
  if (revision > head) {
    throw invalidArgument('REVISION_IN_FUTURE', `revision ${revision} is past the keyspace's current revision ${head}`, { field: 'revision' });
  }
  // The key's record at `revision` for every key in range changed after it (null: absent then).
  const undo = new Map<string, StoredKey | null>();
  if (revision < head) {
    // The state at the floor itself is still there to rebuild: what came after it is all kept.
    if (revision < history.floor) throw history.floorError(revision + 1);
    for (let from = revision + 1; from <= head; ) {
      const batches = history.read(from, UNDO_READ_BYTES);
      if (batches.length === 0) break;
      for (const batch of batches) {
        for (const event of batch.events) {
          if (!inRange(query.range, event.kv.key)) continue;
          const k = latin1(event.kv.key);
          // The first change after the revision holds what the key was then.
          if (!undo.has(k)) undo.set(k, event.prev ?? null);
        }
        from = batch.revision + 1;
      }
    }
  }
  const undone = [...undo.keys()].sort();
  const page = pageOfRange(query, (visit) => {
    let u = 0;
    const emitUndoneBefore = (k: string | undefined): boolean => {
      while (u < undone.length && (k === undefined || undone[u]! < k)) {
        const then = undo.get(undone[u++]!);
        if (then && !visit(then)) return false;
      }
      return true;
    };
    let going = true;
    state.scan(query.range, (record) => {
      if (u >= undone.length) return (going = visit(record));
      const k = latin1(record.key);
      if (!(going = emitUndoneBefore(k))) return false;
      if (u < undone.length && undone[u] === k) {
        const then = undo.get(undone[u++]!);
        return (going = then ? visit(then) : true);
      }
      return (going = visit(record));
    });
    if (going) emitUndoneBefore(undefined);
  });
  return { ...page, revision };
}

