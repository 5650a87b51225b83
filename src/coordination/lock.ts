/**
 * Locks (LockService, and `node.lock(name)` embedded): a mutex held by a lease, with a fencing
 * token. The queue and its safety argument are in waiting-queue.ts; this adds the deadline, the
 * withdrawal of a waiter that gave up, and release.
 */
import { failedPrecondition, invalidArgument, notFound, outcomeUnknown } from '../errors.js';
import type { CallOptions, NodeCore } from '../node/node-core.js';
import { requireCp, waitYourTurn, WaitingQueue } from './waiting-queue.js';

/** What Lock answers. */
export interface LockGrant {
  /** The key that holds the lock (give it to release). */
  readonly key: Buffer;
  /** Larger than every token issued before for this lock: pass it to what the lock protects. */
  readonly fencingToken: number;
  /** The keyspace's revision when the lock was found held. */
  readonly revision: number;
}

const LOCK_KEY_PREFIX = Buffer.from('_lock/');

/**
 * Acquires lock `name` for `lease`, waiting until it is free or the call's time runs out; then the
 * waiter's entry is withdrawn and the call fails with DEADLINE_EXCEEDED.
 */
export async function acquireLock(node: NodeCore, keyspace: string, name: string, lease: unknown, options: CallOptions): Promise<LockGrant> {
  const { mine, revision } = await waitYourTurn(node, 'lock', keyspace, name, lease, Buffer.alloc(0), options, {
    leaseGone: (id) => notFound('LEASE_NOT_FOUND', `lease ${id} ended while waiting for lock ${JSON.stringify(name)} (it expired or was revoked); grant a new lease and ask again`, { lease: String(id) }),
    expired: (budget) => outcomeUnknown('LOCK_WAIT_EXPIRED', `lock ${JSON.stringify(name)} was not acquired within ${budget} ms; its waiting entry was withdrawn; try again with a longer deadline`),
  });
  return { key: mine.key, fencingToken: mine.createRevision, revision };
}

/** Releases the lock held by `key` (or withdraws a waiter); FAILED_PRECONDITION when nothing holds it. */
export async function releaseLock(node: NodeCore, keyspace: string, key: Uint8Array, options: CallOptions): Promise<number> {
  requireCp(node, keyspace, 'lock');
  const k = Buffer.from(key);
  if (k.byteLength <= LOCK_KEY_PREFIX.byteLength || !k.subarray(0, LOCK_KEY_PREFIX.byteLength).equals(LOCK_KEY_PREFIX)) {
    throw invalidArgument('NOT_A_LOCK_KEY', `key ${JSON.stringify(k.toString('latin1'))} is not a lock's key (those start with "_lock/"); give the key Lock answered`, { field: 'key' });
  }
  const revision = await new WaitingQueue(node, keyspace, LOCK_KEY_PREFIX).leave({ key: k }, options);
  if (revision === undefined) {
    throw failedPrecondition('LOCK_NOT_HELD', `the lock held by ${JSON.stringify(k.toString('latin1'))} is not held: it was released already, or its lease expired (another holder may have it now); nothing was done`);
  }
  return revision;
}
