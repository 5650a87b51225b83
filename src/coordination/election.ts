/**
 * Leader election (ElectionService, and `node.election(name)` embedded), on the queue of
 * waiting-queue.ts: the campaigner at the head leads; its key's value is what it proclaims.
 */
import type { KeyValue } from '../gen/replikit/v1/kv_service.js';
import { CompareResult, CompareTarget } from '../gen/replikit/v1/kv_service.js';
import { failedPrecondition, invalidArgument, notFound, outcomeUnknown } from '../errors.js';
import type { CallOptions, NodeCore } from '../node/node-core.js';
import { keyValue, type StoredKey } from '../policy/cp/kv-state-machine.js';
import { checkLease, checkName, queuePrefix, requireCp, waitYourTurn, WaitingQueue } from './waiting-queue.js';

/** One campaigner's candidacy (what Proclaim and Resign name). */
export interface LeaderKey {
  readonly name: string;
  readonly key: Buffer;
  /** Its create revision: grows with every new leader (a fencing token). */
  readonly revision: number;
  readonly lease: number;
}

/** Campaigns in election `name` and waits until this campaigner leads. */
export async function campaign(node: NodeCore, keyspace: string, name: string, lease: unknown, value: Uint8Array, options: CallOptions): Promise<LeaderKey> {
  const { mine } = await waitYourTurn(node, 'election', keyspace, name, lease, value, options, {
    leaseGone: (id) => notFound('LEASE_NOT_FOUND', `lease ${id} ended while campaigning in ${JSON.stringify(name)}; grant a new lease and campaign again`, { lease: String(id) }),
    expired: (budget) => outcomeUnknown('CAMPAIGN_EXPIRED', `the campaign in ${JSON.stringify(name)} did not win within ${budget} ms; the candidacy was withdrawn; campaign again`),
  });
  return { name, key: mine.key, revision: mine.createRevision, lease: mine.lease };
}

/** Changes the leader's value; FAILED_PRECONDITION when `leader` no longer leads. */
export async function proclaim(node: NodeCore, keyspace: string, leader: LeaderKey, value: Uint8Array, options: CallOptions): Promise<number> {
  checkLeaderKey(leader);
  requireCp(node, keyspace, 'election');
  const response = await node.txn(
    {
      keyspace,
      compares: [{ key: leader.key, target: CompareTarget.COMPARE_TARGET_CREATE_REVISION, result: CompareResult.COMPARE_RESULT_EQUAL, value: Buffer.alloc(0), number: BigInt(leader.revision) }],
      success: [{ put: { key: leader.key, value: Buffer.from(value), lease: BigInt(leader.lease) } }],
      failure: [],
    },
    options,
  );
  if (!response.succeeded) throw notLeading(leader);
  return Number(response.revision);
}

/** Gives up leadership (or a candidacy); FAILED_PRECONDITION when it was gone already. */
export async function resign(node: NodeCore, keyspace: string, leader: LeaderKey, options: CallOptions): Promise<number> {
  checkLeaderKey(leader);
  requireCp(node, keyspace, 'election');
  const revision = await new WaitingQueue(node, keyspace, queuePrefix('election', leader.name)).leave({ key: leader.key, createRevision: leader.revision }, options);
  if (revision === undefined) throw notLeading(leader);
  return revision;
}

/** The current leader of `name`, or undefined when nobody campaigns. */
export async function currentLeader(node: NodeCore, keyspace: string, name: string, options: CallOptions): Promise<{ readonly kv: StoredKey | undefined; readonly revision: number }> {
  checkName(name, 'election');
  requireCp(node, keyspace, 'election');
  const { revision, all } = await new WaitingQueue(node, keyspace, queuePrefix('election', name)).contenders(options);
  return { kv: all[0], revision };
}

/** What Observe yields: the leader (undefined: none) as of `revision`. */
export interface LeaderChange {
  readonly kv: StoredKey | undefined;
  readonly revision: number;
}

/**
 * The leader now, then every change of leader or of its value, until `signal` aborts. Follows one
 * watch of the election's prefix from the revision it first read; when that watch ends (the node
 * stopped serving, or the watcher fell behind) it reads again and goes on, so a change is never
 * skipped: at worst the same leader is announced twice.
 */
export async function* observe(node: NodeCore, keyspace: string, name: string, signal: AbortSignal): AsyncGenerator<LeaderChange> {
  checkName(name, 'election');
  requireCp(node, keyspace, 'election');
  const prefix = queuePrefix('election', name);
  const queue = new WaitingQueue(node, keyspace, prefix);
  // `null` until the first announcement; then the leader last announced (undefined: none).
  let last: StoredKey | undefined | null = null;
  const changed = (kv: StoredKey | undefined) =>
    last === null || (kv === undefined ? last !== undefined : last === undefined || !kv.key.equals(last.key) || kv.modRevision !== last.modRevision);
  while (!signal.aborted) {
    const { revision, all } = await queue.contenders({ signal });
    const candidates = new Map(all.map((k) => [k.key.toString('latin1'), k]));
    const head = () => [...candidates.values()].sort((a, b) => a.createRevision - b.createRevision)[0];
    if (changed(head())) yield { kv: (last = head()), revision };
    const watcher = await node.watch(keyspace, { key: prefix, prefix: true, startRevision: revision + 1 }, { signal });
    const abort = () => watcher.cancel();
    signal.addEventListener('abort', abort, { once: true });
    try {
      for await (const message of watcher) {
        if (message.kind !== 'events') continue;
        for (const { event } of message.events) {
          const k = event.kv.key.toString('latin1');
          if (event.type === 'put') candidates.set(k, event.kv);
          else candidates.delete(k);
        }
        if (changed(head())) yield { kv: (last = head()), revision: message.revision };
      }
    } catch {
      // The watch ended: read again (below) and go on.
    } finally {
      signal.removeEventListener('abort', abort);
      watcher.cancel();
    }
  }
}

export function leaderKeyValue(kv: StoredKey): KeyValue {
  return keyValue(kv);
}

function checkLeaderKey(leader: LeaderKey): void {
  checkName(leader.name, 'election');
  checkLease(leader.lease);
  const prefix = queuePrefix('election', leader.name);
  if (!Buffer.isBuffer(leader.key) || !leader.key.subarray(0, prefix.byteLength).equals(prefix)) {
    throw invalidArgument('NOT_A_CANDIDACY', `leader.key is not a candidacy of election ${JSON.stringify(leader.name)}; give the leader key Campaign answered`, { field: 'leader.key' });
  }
  if (!Number.isSafeInteger(leader.revision) || leader.revision <= 0) throw invalidArgument('REVISION_INVALID', 'leader.revision must be the revision Campaign answered', { field: 'leader.revision' });
}

function notLeading(leader: LeaderKey) {
  return failedPrecondition('NOT_LEADER', `the candidacy ${JSON.stringify(leader.key.toString('latin1'))} no longer exists: it resigned, or its lease ended; campaign again`);
}
