/**
 * What a Watch delivers and where it reads it from: the changes of a keyspace grouped by the
 * revision (CP) or feed position (AP, causal) that made them, and the source that keeps them.
 * Shared by the CP history (cp/kv-history.ts) and the AP and causal change feeds.
 */
import type { StoredKey } from '../cp/kv-state-machine.js';

/** One change to one key. */
export interface ChangeEvent {
  readonly type: 'put' | 'delete';
  /**
   * The key as the change left it. For a delete: the key, `modRevision` the delete's revision,
   * an empty value and the other revisions 0.
   */
  readonly kv: StoredKey;
  /** The key before the change, when it was present. */
  readonly prev?: StoredKey;
}

/** The changes of one revision (one transaction, or one applied batch of a feed), in order. */
export interface ChangeBatch {
  readonly revision: number;
  readonly events: readonly ChangeEvent[];
}

/** Where a watch reads the changes it has not yet been sent. */
export interface ChangeSource {
  /** The latest revision whose changes can be read (every batch at or below it is published). */
  readonly head: number;
  /**
   * Changes are kept only after this revision: a watch that needs one at or below it cannot be
   * served here (see {@link ChangeSource.floorError}).
   */
  readonly floor: number;
  /**
   * The batches with revision ≥ `from`, in order, up to about `maxBytes` (at least one while any
   * is left). `from` must be above {@link floor}.
   */
  read(from: number, maxBytes: number): ChangeBatch[];
  /** The error for a watch or read that needs revision `revision`, at or below the floor. */
  floorError(revision: number): Error;
}

/** What an event weighs against a watcher's buffer: its keys and values plus a fixed allowance. */
export function eventBytes(event: ChangeEvent): number {
  return 96 + event.kv.key.byteLength + event.kv.value.byteLength + (event.prev === undefined ? 0 : event.prev.value.byteLength + event.prev.key.byteLength + 64);
}
