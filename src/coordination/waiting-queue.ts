/**
 * The queue under locks and elections (etcd's concurrency recipes, run inside the node): each
 * contender puts one key under the queue's prefix, attached to its lease; the contender whose key
 * is oldest (smallest create revision) is at the head. A contender that is not reads the queue
 * once, then follows the queue's changes with one watch until every key ahead of its own is
 * deleted — released, resigned, or deleted with its lease — by a watch rather than by polling,
 * and without reading the queue again on each release (only the new head acts on one).
 *
 * Why it is safe: keys are created through the Raft log, so create revisions order contenders
 * the same on every replica; the head is decided by a linearizable Range, which sees every
 * deletion committed before it; a contender's key exists only while its lease lives, and a lease
 * ends only by a revoke committed through the log, which the leader decides (lease-keeper.ts).
 * The head's create revision is larger than that of every earlier head (revisions only grow), so
 * it serves as a fencing token.
 */
import type { Scheduler } from '../clock/index.js';
import { CompareResult, CompareTarget, type TxnResponse } from '../gen/replikit/v1/kv_service.js';
import { failedPrecondition, invalidArgument, notFound, outcomeUnknown, ReplikitError } from '../errors.js';
import type { CallOptions, NodeCore } from '../node/node-core.js';
import type { StoredKey } from '../policy/cp/kv-state-machine.js';
import { latin1 } from '../storage/key-text.js';

/**
 * The longest a Lock or a Campaign waits, also when the caller sets no deadline: one day. A wait
 * holds one watcher and a timer; a bound keeps a forgotten waiter from holding them for ever
 * (and keeps timers within what setTimeout can count).
 */
export const MAX_WAIT_MS = 24 * 3_600_000;
/** Between two reads of the queue when one found no leader. */
const RETRY_MS = 100;

/** A name of a lock or an election: what follows `_lock/` or `_election/` in its keys. */
export const MAX_NAME_BYTES = 256;

export function checkName(name: unknown, what: 'lock' | 'election'): string {
  if (typeof name !== 'string' || name.length === 0) throw invalidArgument('NAME_MISSING', `name is empty; name the ${what}`, { field: 'name' });
  const bytes = Buffer.byteLength(name);
  if (bytes > MAX_NAME_BYTES) throw invalidArgument('NAME_TOO_LONG', `name is ${bytes} bytes; a ${what} name has at most ${MAX_NAME_BYTES}`, { field: 'name' });
  if (name.startsWith('/') || name.endsWith('/')) throw invalidArgument('NAME_INVALID', `name ${JSON.stringify(name)} starts or ends with "/"; drop it`, { field: 'name' });
  return name;
}

/** Locks and elections need a CP keyspace: NOT_FOUND for none, FAILED_PRECONDITION for another policy. */
export function requireCp(node: NodeCore, keyspace: string, what: 'lock' | 'election'): void {
  const bound = node.keyspaceNames().find((k) => k.name === keyspace);
  if (bound === undefined) throw notFound('UNKNOWN_KEYSPACE', `keyspace ${JSON.stringify(keyspace)} does not exist on this node; name one of ${node.keyspaceNames().map((k) => k.name).join(', ')}`);
  if (bound.policy !== 'cp') throw failedPrecondition('COORDINATION_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} is ${bound.policy}; a ${what} needs a CP keyspace (linearizable, with leases)`);
}

export function checkLease(lease: unknown): number {
  const n = typeof lease === 'bigint' ? Number(lease) : lease;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
    throw invalidArgument('LEASE_MISSING', `lease must be the id of a lease you hold (LeaseGrant answers one), not ${String(lease)}`, { field: 'lease' });
  }
  return n;
}

/** The queue's prefix: `_lock/<name>/` or `_election/<name>/`. */
export function queuePrefix(kind: 'lock' | 'election', name: string): Buffer {
  return Buffer.from(`_${kind}/${name}/`, 'utf8');
}

/** A contender's key: the prefix and its lease id in 16 hex digits (so keys sort by lease id). */
export function contenderKey(prefix: Buffer, lease: number): Buffer {
  return Buffer.concat([prefix, Buffer.from(lease.toString(16).padStart(16, '0'), 'latin1')]);
}

export interface Contender {
  readonly key: Buffer;
  readonly createRevision: number;
  readonly lease: number;
}

export class WaitingQueue {
  constructor(
    private readonly node: NodeCore,
    private readonly keyspace: string,
    private readonly prefix: Buffer,
  ) {}

  private get scheduler(): Scheduler {
    return this.node.runtime.scheduler;
  }

  /**
   * Puts this contender's key (with `value`, attached to `lease`) unless it is there already — a
   * retry after a lost answer keeps its place — and answers it.
   */
  async join(lease: number, value: Buffer, options: CallOptions): Promise<Contender> {
    const key = contenderKey(this.prefix, lease);
    const response: TxnResponse = await this.node.txn(
      {
        keyspace: this.keyspace,
        compares: [{ key, target: CompareTarget.COMPARE_TARGET_CREATE_REVISION, result: CompareResult.COMPARE_RESULT_EQUAL, value: Buffer.alloc(0), number: 0n }],
        success: [{ put: { key, value, lease: BigInt(lease) } }],
        failure: [{ get: { key } }],
      },
      options,
    );
    if (response.succeeded) return { key, createRevision: Number(response.responses[0]!.put!.revision), lease };
    const held = response.responses[0]?.get?.kv;
    if (held === undefined) throw outcomeUnknown('QUEUE_RACE', 'the queue entry vanished while joining; retry');
    return { key, createRevision: Number(held.createRevision), lease };
  }

  /** Every contender, oldest first, at one revision (a linearizable Range, page by page). */
  async contenders(options: CallOptions): Promise<{ readonly revision: number; readonly all: StoredKey[] }> {
    const all: StoredKey[] = [];
    let continuation: Uint8Array | undefined;
    let revision = 0;
    do {
      const page = await this.node.range(this.keyspace, { key: this.prefix, prefix: true, continuation }, options);
      revision = page.revision;
      all.push(...page.kvs);
      continuation = page.continuation;
    } while (continuation !== undefined);
    all.sort((a, b) => a.createRevision - b.createRevision);
    return { revision, all };
  }

  /**
   * Waits until `mine` heads the queue; answers the revision at which it did. Throws NOT_FOUND
   * when its key is gone (its lease ended), and DEADLINE_EXCEEDED at `deadlineMs` (the caller
   * withdraws).
   */
  async waitForHead(mine: Contender, deadlineMs: number, signal: AbortSignal | undefined, leaseGone: () => ReplikitError): Promise<number> {
    const left = () => deadlineMs - this.scheduler.nowMs();
    for (;;) {
      if (left() <= 0 || signal?.aborted) throw new WaitExpired();
      let read: { readonly revision: number; readonly all: StoredKey[] };
      try {
        read = await this.contenders({ timeoutMs: Math.min(left(), this.node.settings.requestTimeoutMs), signal });
      } catch (error: unknown) {
        // A read cut short by the deadline (timers fire a fraction early; a forwarded read may
        // be left a millisecond) is the deadline, not a failure of its own.
        if (left() <= 1 || signal?.aborted) throw new WaitExpired();
        // An election or a partition under a long wait: nothing was read; look again shortly.
        if (error instanceof ReplikitError && error.kind === 'unavailable') {
          await new Promise<void>((resolve) => this.scheduler.setTimer(Math.min(RETRY_MS, Math.max(1, left())), resolve));
          continue;
        }
        throw error;
      }
      if (!read.all.some((k) => k.key.equals(mine.key) && k.createRevision === mine.createRevision)) throw leaseGone();
      // Who is ahead can only shrink: a newcomer's key is created later, so it queues behind.
      const ahead = new Set(read.all.filter((k) => k.createRevision < mine.createRevision).map((k) => latin1(k.key)));
      if (ahead.size === 0) return read.revision;
      const headed = await this.#awaitDeletions(ahead, mine, read.revision, deadlineMs, signal);
      if (headed === 'gone') throw leaseGone();
      if (headed !== undefined) return headed;
      // The watch ended early (its node stopped, or it fell behind): read the queue again.
    }
  }

  /**
   * Follows the queue's changes from after `revision` until every key in `ahead` is deleted;
   * answers the revision at which the last went ('gone' when `mine` went first), or undefined
   * when the watch ended before. One watch of the prefix and no further reads: every deletion
   * it reports is committed, so once none is ahead, `mine` heads the queue as of that revision.
   */
  async #awaitDeletions(ahead: Set<string>, mine: Contender, revision: number, deadlineMs: number, signal: AbortSignal | undefined): Promise<number | 'gone' | undefined> {
    const left = Math.min(deadlineMs - this.scheduler.nowMs(), MAX_WAIT_MS);
    if (left <= 0) throw new WaitExpired();
    const watcher = await this.node.watch(this.keyspace, { key: this.prefix, prefix: true, startRevision: revision + 1 }, { timeoutMs: left, signal });
    const timer = this.scheduler.setTimer(left, () => watcher.cancel());
    const abort = () => watcher.cancel();
    signal?.addEventListener('abort', abort, { once: true });
    const own = latin1(mine.key);
    try {
      for await (const message of watcher) {
        if (message.kind !== 'events') continue;
        for (const { event, revision: at } of message.events) {
          if (event.type !== 'delete') continue;
          const key = latin1(event.kv.key);
          if (key === own) return 'gone';
          if (ahead.delete(key) && ahead.size === 0) return at;
        }
      }
    } catch {
      // The watch ended (the node stopped serving the keyspace, or it fell behind): look again.
    } finally {
      timer.cancel();
      signal?.removeEventListener('abort', abort);
      watcher.cancel();
    }
    return undefined;
  }

  /** Deletes `mine` if it is still the same key (same create revision); answers the revision, or undefined when it was gone. */
  async leave(mine: { readonly key: Buffer; readonly createRevision?: number }, options: CallOptions): Promise<number | undefined> {
    const response = await this.node.txn(
      {
        keyspace: this.keyspace,
        compares: [
          mine.createRevision === undefined
            ? { key: mine.key, target: CompareTarget.COMPARE_TARGET_CREATE_REVISION, result: CompareResult.COMPARE_RESULT_GREATER, value: Buffer.alloc(0), number: 0n }
            : { key: mine.key, target: CompareTarget.COMPARE_TARGET_CREATE_REVISION, result: CompareResult.COMPARE_RESULT_EQUAL, value: Buffer.alloc(0), number: BigInt(mine.createRevision) },
        ],
        success: [{ delete: { key: mine.key } }],
        failure: [],
      },
      options,
    );
    return response.succeeded ? Number(response.revision) : undefined;
  }
}

/**
 * The whole wait of a lock or a campaign: checks the request, joins the queue of `name` with
 * `lease` and `value`, and waits for the head until the call's time runs out. Whatever ends the
 * wait early, the entry is withdrawn — or it would reach the head later for a caller that has
 * gone — in the background (the caller's deadline may have passed; if withdrawing fails, the
 * lease still bounds the entry). Answers the entry and the revision at which it headed the queue.
 */
export async function waitYourTurn(
  node: NodeCore,
  kind: 'lock' | 'election',
  keyspace: string,
  name: string,
  lease: unknown,
  value: Uint8Array,
  options: CallOptions,
  say: { readonly leaseGone: (lease: number) => ReplikitError; readonly expired: (budgetMs: number) => ReplikitError },
): Promise<{ readonly mine: Contender; readonly revision: number }> {
  checkName(name, kind);
  const leaseId = checkLease(lease);
  requireCp(node, keyspace, kind);
  // No deadline: wait as long as it takes, within MAX_WAIT_MS.
  const budget = Math.min(options.timeoutMs ?? MAX_WAIT_MS, MAX_WAIT_MS);
  const deadline = node.runtime.scheduler.nowMs() + budget;
  const queue = new WaitingQueue(node, keyspace, queuePrefix(kind, name));
  const mine = await queue.join(leaseId, Buffer.from(value), { ...options, timeoutMs: Math.min(budget, node.settings.requestTimeoutMs) });
  try {
    return { mine, revision: await queue.waitForHead(mine, deadline, options.signal, () => say.leaseGone(leaseId)) };
  } catch (error: unknown) {
    void queue.leave(mine, { timeoutMs: node.settings.requestTimeoutMs }).catch(() => {});
    throw error instanceof WaitExpired ? say.expired(budget) : error;
  }
}

/** The wait reached its deadline (or its caller gave up). */
export class WaitExpired extends Error {
  override readonly name = 'WaitExpired';
}
