/**
 * CP keyspaces on a replicated log: one Raft group per keyspace over the cluster's members
 * (raft-group.ts), whose committed commands build an MVCC key-value state (kv-state-machine.ts).
 *
 * - A write (put, delete, a transaction that writes) is a proposal: one round trip from the
 *   leader to a majority, which persists it, and it is acknowledged once applied.
 * - A linearizable read uses ReadIndex: the leader notes its commit index, confirms with a
 *   heartbeat round that a majority still follows it, and answers once it has applied that far.
 *   No clock is trusted (no leader lease), so clock drift cannot make a read stale.
 * - A serializable read answers from the local replica at once and says it may be stale.
 * - Any node takes any call: a follower forwards it to the leader over its Exchange stream, and
 *   relays the answer (one hop; a leader that lost its role meanwhile answers UNAVAILABLE).
 *
 * Failure answers: no majority believed alive, or no leader after an election's worth of waiting
 * → UNAVAILABLE (nothing happened); the deadline passes after a write was proposed or forwarded →
 * DEADLINE_EXCEEDED (the write may still commit).
 */
import { failedPrecondition, invalidArgument, outcomeUnknown, ReplikitError, toReplikitError, unavailable } from '../../errors.js';
import type { TxnRequest, TxnResponse } from '../../gen/replikit/v1/kv_service.js';
import type { RaftMessage } from '../../raft/types.js';
import type { Entry } from '../../storage/entry.js';
import { PeerCallError, type SnapshotPage } from '../../transport/replica-set.js';
import type { CompactResult, ConsistencyPolicy, KeyspacePolicy, MemberSet, OperationOptions, PolicyContext, RangeQuery, RangeResult, ReadResult, WatchRequestSpec, WriteResult } from '../policy.js';
import { repeatEvery, type TimerHandle } from '../../clock/index.js';
import type { Membership, MembershipChange } from '../../raft/membership.js';
import { WATCH_DEFAULTS, watchStatsOf, type Watcher, type WatchLimits } from '../watch/watch-hub.js';
import { rangeAtRevision } from './kv-range.js';
import type { ChangeBatch } from '../watch/change.js';
import { majority } from '../majority.js';
import { LEASE_DEFAULTS, NotLeaderError, RaftGroup, RAFT_GROUP_DEFAULTS, type HistoryRetention, type LeaseLimits, type RaftGroupStatus, type RaftGroupTiming, type Renewal } from './raft-group.js';
import type { LeaseAnswer, LeaseCall } from '../../gen/replikit/v1/replica_service.js';
import { notFound } from '../../errors.js';
import { validateTxn } from './txn-validation.js';
import { versionFromWire } from '../../transport/wire.js';
import { grpcCodeOf } from '../../transport/status.js';

export interface CpQuorumOptions {
  /** Tick length, election timeout and snapshot interval; see RAFT_GROUP_DEFAULTS for each reason. */
  readonly timing?: Partial<RaftGroupTiming>;
  /**
   * How long the keyspace keeps history for Watch and Range at past revisions: the leader
   * compacts what is older than `ms` or more than `revisions` behind. See HISTORY_RETENTION_DEFAULTS.
   */
  readonly historyRetention?: Partial<HistoryRetention>;
  /** Bounds on each node's watchers of the keyspace. See WATCH_DEFAULTS. */
  readonly watchLimits?: Partial<WatchLimits>;
  /** Bounds on the keyspace's leases (TTL range, how many). See LEASE_DEFAULTS. */
  readonly leases?: Partial<LeaseLimits>;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: followers also expire leases by their
   * own wall clock, counting from the grant and unaware of renewals. The simulation must catch it.
   * @default false
   */
  readonly unsafeExpireByFollowerClock?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: the leader counts an entry committed
   * once it alone holds it. The simulation must catch this variant.
   * @default false
   */
  readonly unsafeCommitWithoutMajority?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: the leader answers reads without
   * confirming it still leads (a deposed leader serves stale values). The simulation must catch it.
   * @default false
   */
  readonly unsafeReadIndexWithoutQuorum?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: a learner is promoted however far
   * behind it is (see RaftConfig.unsafePromoteLagging).
   * @default false
   */
  readonly unsafePromoteLagging?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: membership changes may overlap
   * without joint consensus (see RaftConfig.unsafeOverlappingChanges).
   * @default false
   */
  readonly unsafeOverlappingChanges?: boolean;
}

const EMPTY = new Uint8Array(0);

/** Leases one keep-alive call renews at most: one stream's batch, bounded like a transaction. */
export const MAX_RENEWALS_PER_CALL = 10_000;
/** Leases one LeaseList page holds at most, and by default. */
export const MAX_LEASE_PAGE = 10_000;
const DEFAULT_LEASE_PAGE = 1_000;
/** Keys LeaseTimeToLive lists at most (the count is always exact). */
export const MAX_LEASE_KEYS_LISTED = 10_000;

function leaseNotFoundError(id: number): ReplikitError {
  return notFound('LEASE_NOT_FOUND', `lease ${id} does not exist: it expired or was revoked (or was never granted); grant a new lease and attach its keys again`, { lease: String(id) });
}

function renewalToWire(r: Renewal): { id: bigint; ttlMs: bigint; code: number; message: string } {
  if ('ttlMs' in r) return { id: BigInt(r.id), ttlMs: BigInt(r.ttlMs), code: 0, message: '' };
  return { id: BigInt(r.id), ttlMs: 0n, code: grpcCodeOf(r.error), message: r.error.message };
}

/** A Raft message call to a peer gives up after this long: Raft resends, so waiting longer buys nothing. */
const RAFT_SEND_TIMEOUT_MS = 1_000;

/** CP keyspaces on Raft. See the module comment. */
export function cpQuorum(options: CpQuorumOptions = {}): ConsistencyPolicy {
  return { name: 'cp', create: (context) => new CpRaftKeyspace(context, options) };
}

export class CpRaftKeyspace implements KeyspacePolicy {
  readonly recoveryNeeds = 'none' as const;
  readonly #ctx: PolicyContext;
  readonly #options: CpQuorumOptions;
  readonly #timing: RaftGroupTiming;
  #group: RaftGroup | undefined;
  #opening: Promise<RaftGroup> | undefined;
  readonly #openWaiters = new Set<() => void>();
  #closed = false;
  /** The cluster's membership this group follows (see membershipChanged); undefined until told. */
  #target: MemberSet | undefined;
  #reconciling = false;
  #reconcileTimer: TimerHandle | undefined;

  constructor(context: PolicyContext, options: CpQuorumOptions) {
    if (context.raftLog === undefined) throw new Error(`keyspace ${context.keyspace} is CP, but the node gave it no Raft log store`);
    this.#ctx = context;
    this.#options = options;
    this.#timing = { ...RAFT_GROUP_DEFAULTS, ...options.timing };
  }

  open(how: { readonly amnesiac: boolean }): Promise<void> {
    const ctx = this.#ctx;
    this.#opening ??= RaftGroup.open({
      keyspace: ctx.keyspace,
      selfId: ctx.selfId,
      // A node joining a running cluster knows no membership: it learns it from the leader, which
      // adds it as a learner once the cluster's membership names it.
      voters: ctx.joining === true ? [] : ctx.replicaIds,
      membershipContext: ctx.membershipContext,
      onMembership: (inEffect, committed) => {
        ctx.onMembership?.(inEffect, committed);
        this.#reconcileSoon();
      },
      log: ctx.raftLog!(),
      store: ctx.store,
      scheduler: ctx.scheduler,
      clock: ctx.clock,
      random: ctx.random,
      logger: ctx.logger,
      canVote: !how.amnesiac,
      timing: this.#options.timing,
      historyRetention: this.#options.historyRetention,
      watchLimits: { ...WATCH_DEFAULTS, ...this.#options.watchLimits },
      leaseLimits: this.#options.leases,
      unsafe: {
        unsafeCommitWithoutMajority: this.#options.unsafeCommitWithoutMajority,
        unsafeReadIndexWithoutQuorum: this.#options.unsafeReadIndexWithoutQuorum,
        unsafeExpireByFollowerClock: this.#options.unsafeExpireByFollowerClock,
        unsafePromoteLagging: this.#options.unsafePromoteLagging,
        unsafeOverlappingChanges: this.#options.unsafeOverlappingChanges,
      },
      onFollowerExpiry: (ids) => {
        for (const id of ids) void this.leaseCall({ keyspace: ctx.keyspace, revoke: { keyspace: ctx.keyspace, id: BigInt(id) } }, { timeoutMs: 5_000 }).catch(() => {});
      },
      onFailure: (error) => ctx.onFatal(error),
      send: (peer, messages) => {
        ctx.replicas.raft?.(peer, ctx.keyspace, messages, RAFT_SEND_TIMEOUT_MS).catch(() => {});
      },
    }).then((group) => {
      this.#group = group;
      // A leader follows the cluster's membership a step at a time; retried on this beat while it
      // differs (a learner still catching up, a change still committing).
      this.#reconcileTimer = repeatEvery(ctx.scheduler, 2 * this.#timing.tickMs, () => this.#reconcileSoon());
      for (const wake of this.#openWaiters) wake();
      this.#openWaiters.clear();
      if (this.#closed) void group.close(0);
      return group;
    });
    return this.#opening.then(() => undefined);
  }

  async put(key: Uint8Array, value: Uint8Array, options: OperationOptions): Promise<WriteResult> {
    const lease = BigInt(options.lease ?? 0);
    const response = await this.txn({ keyspace: this.#ctx.keyspace, compares: [], success: [{ put: { key: Buffer.from(key), value: Buffer.from(value), lease } }], failure: [] }, options);
    return this.#written(response);
  }

  async delete(key: Uint8Array, options: OperationOptions): Promise<WriteResult> {
    const response = await this.txn({ keyspace: this.#ctx.keyspace, compares: [], success: [{ delete: { key: Buffer.from(key) } }], failure: [] }, options);
    return this.#written(response);
  }

  async get(key: Uint8Array, options: OperationOptions): Promise<ReadResult> {
    const request: TxnRequest = { keyspace: this.#ctx.keyspace, compares: [], success: [{ get: { key: Buffer.from(key) } }], failure: [] };
    const serializable = options.consistency === 'serializable';
    const response = serializable ? (await this.#opened(options)).readLocal(request) : await this.txn(request, options);
    const kv = response.responses[0]?.get?.kv;
    return {
      value: kv === undefined ? undefined : kv.value,
      version: kv === undefined ? undefined : versionFromWire(kv.writeVersion, "the leader's answer"),
      sessionToken: EMPTY,
      cp: {
        revision: Number(response.revision),
        createRevision: Number(kv?.createRevision ?? 0n),
        modRevision: Number(kv?.modRevision ?? 0n),
        keyVersion: Number(kv?.version ?? 0n),
        possiblyStale: serializable,
      },
    };
  }

  async txn(request: TxnRequest, options: OperationOptions): Promise<TxnResponse> {
    validateTxn(request, this.#ctx.valueLimits);
    return this.#onLeader(
      options,
      (group, remainingMs) => group.run(request, remainingMs, options.signal),
      (leader, remainingMs) => this.#forward(leader, request, remainingMs),
    );
  }

  /**
   * A lease operation: on the leader, which alone keeps lease deadlines (lease-keeper.ts);
   * forwarded there from a follower.
   */
  async leaseCall(call: LeaseCall, options: OperationOptions): Promise<LeaseAnswer> {
    this.#checkLeaseCall(call);
    return this.#onLeader(
      options,
      (group, remainingMs) => this.#leaseOnLeader(group, call, remainingMs, options.signal),
      (leader, remainingMs) => this.#forwardLease(leader, call, remainingMs),
    );
  }

  async forwardedLease(_from: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer> {
    this.#checkLeaseCall(call);
    const group = this.#group;
    if (group === undefined) throw unavailable('NOT_LEADER', `this node is still opening ${this.#ctx.keyspace}; retry`);
    try {
      return await this.#leaseOnLeader(group, call, timeoutMs);
    } catch (error: unknown) {
      if (error instanceof NotLeaderError) throw unavailable('NOT_LEADER', `this node no longer leads ${this.#ctx.keyspace}; nothing was done; retry`);
      throw error;
    }
  }

  /** Refuses a malformed lease call before it goes anywhere (the leader checks again). */
  #checkLeaseCall(call: LeaseCall): void {
    const id = call.revoke?.id ?? call.timeToLive?.id;
    if (id !== undefined && id === 0n) throw invalidArgument('LEASE_ID_MISSING', 'id is 0; name the lease (the id LeaseGrant answered)', { field: 'id' });
    if (call.keepAlive?.ids.some((i) => i === 0n)) throw invalidArgument('LEASE_ID_MISSING', 'id is 0; name the lease (the id LeaseGrant answered)', { field: 'id' });
    if (call.keepAlive !== undefined && call.keepAlive.ids.length > MAX_RENEWALS_PER_CALL) {
      throw invalidArgument('TOO_MANY_RENEWALS', `one call renews at most ${MAX_RENEWALS_PER_CALL} leases, not ${call.keepAlive.ids.length}`, { field: 'ids' });
    }
    if (call.list !== undefined && call.list.limit > MAX_LEASE_PAGE) {
      throw invalidArgument('LIMIT_TOO_LARGE', `limit is ${call.list.limit}; a page holds at most ${MAX_LEASE_PAGE} leases`, { field: 'limit' });
    }
    const ttl = call.grant?.ttlMs;
    const limits = { ...LEASE_DEFAULTS, ...this.#options.leases };
    if (ttl !== undefined && (ttl < BigInt(limits.minTtlMs) || ttl > BigInt(limits.maxTtlMs))) {
      throw invalidArgument('LEASE_TTL_INVALID', `ttl_ms is ${ttl}; a lease lives ${limits.minTtlMs} to ${limits.maxTtlMs} ms (keep it alive to hold it longer)`, { field: 'ttl_ms' });
    }
    if (call.grant === undefined && call.revoke === undefined && call.keepAlive === undefined && call.timeToLive === undefined && call.list === undefined) {
      throw invalidArgument('LEASE_CALL_EMPTY', 'the lease call names no operation');
    }
  }

  async #leaseOnLeader(group: RaftGroup, call: LeaseCall, timeoutMs: number, signal?: AbortSignal): Promise<LeaseAnswer> {
    if (call.grant !== undefined) {
      const g = await group.grantLease(Number(call.grant.ttlMs), timeoutMs, signal);
      return { grant: { id: BigInt(g.id), ttlMs: BigInt(g.ttlMs), revision: BigInt(g.revision) } };
    }
    if (call.revoke !== undefined) {
      const r = await group.revokeLease(Number(call.revoke.id), timeoutMs, signal);
      return { revoke: { revision: BigInt(r.revision), keysDeleted: r.keysDeleted } };
    }
    if (call.keepAlive !== undefined) {
      const renewed = await group.renewLeases(call.keepAlive.ids.map(Number), timeoutMs);
      return { keepAlive: { responses: renewed.map(renewalToWire) } };
    }
    if (call.timeToLive !== undefined) {
      const id = Number(call.timeToLive.id);
      const wantKeys = call.timeToLive.keys;
      return group.linearizable(() => {
        const lease = group.machine.lease(id);
        if (lease === undefined) throw leaseNotFoundError(id);
        const keys = wantKeys ? [...lease.keys].sort().slice(0, MAX_LEASE_KEYS_LISTED).map((k) => Buffer.from(k, 'latin1')) : [];
        return { timeToLive: { id: BigInt(id), ttlMs: BigInt(lease.ttlMs), remainingMs: BigInt(Math.round(group.leaseRemaining(id) ?? lease.ttlMs)), keyCount: BigInt(lease.keys.size), keys } };
      }, timeoutMs, signal);
    }
    const list = call.list!;
    const limit = list.limit === 0 ? DEFAULT_LEASE_PAGE : list.limit;
    const after = Number(list.afterId);
    return group.linearizable(() => {
      const all = group.machine.leases().filter((l) => l.id > after);
      return { list: { leases: all.slice(0, limit).map((l) => ({ id: BigInt(l.id), ttlMs: BigInt(l.ttlMs) })), more: all.length > limit } };
    }, timeoutMs, signal);
  }

  async #forwardLease(leader: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer> {
    const forward = this.#ctx.replicas.forwardLease;
    if (forward === undefined) throw failedPrecondition('NO_FORWARDING', 'this transport cannot forward calls to the leader');
    try {
      return await forward.call(this.#ctx.replicas, leader, call, timeoutMs);
    } catch (error: unknown) {
      if (error instanceof ReplikitError) throw error;
      if (error instanceof PeerCallError && error.failure === 'unreachable') throw unavailable('LEADER_UNREACHABLE', `the leader ${leader} refused the connection; nothing was done; retry`);
      const changes = call.grant !== undefined || call.revoke !== undefined;
      if (changes) throw outcomeUnknown('FORWARD_FAILED', `the lease call was handed to the leader ${leader}, which did not answer (${toReplikitError(error).message}); it may have taken effect`);
      throw unavailable('FORWARD_FAILED', `could not reach the leader ${leader} (${toReplikitError(error).message}); retry`);
    }
  }

  async range(query: RangeQuery, options: OperationOptions): Promise<RangeResult> {
    const group = await this.#opened(options);
    const serializable = options.consistency === 'serializable';
    if (!serializable) await this.#caughtUp(group, options);
    else if (query.revision > group.history.head) {
      throw unavailable('REPLICA_BEHIND', `this node has applied ${this.#ctx.keyspace} through revision ${group.history.head}, before revision ${query.revision}; read linearizably, or retry`);
    }
    const page = rangeAtRevision(group.state, group.history, query);
    return { ...page, sessionToken: EMPTY, possiblyStale: serializable };
  }

  async watch(request: WatchRequestSpec, options: OperationOptions): Promise<Watcher> {
    const group = await this.#opened(options);
    let start = request.startRevision === 0 ? group.history.head + 1 : request.startRevision;
    if (start > group.history.head + 1) {
      // Beyond this replica: a resume from a node further ahead, or a revision that does not
      // exist yet. Only the leader knows which.
      const committed = await this.#caughtUp(group, options);
      if (start > committed + 1) {
        throw invalidArgument('START_REVISION_IN_FUTURE', `start_revision ${start} is past the keyspace's revision ${committed} + 1; watch from ${committed + 1} or less, or 0 for changes from now`, { field: 'start_revision' });
      }
      start = Math.min(start, group.history.head + 1);
    }
    return group.watchers.open({ range: request.range, startRevision: start, prevKv: request.prevKv, progressIntervalMs: request.progressIntervalMs });
  }

  async compact(revision: number, options: OperationOptions): Promise<CompactResult> {
    const group = await this.#opened(options);
    const committed = await this.#caughtUp(group, options);
    if (revision > committed) {
      throw invalidArgument('REVISION_IN_FUTURE', `revision ${revision} is past the keyspace's current revision ${committed}; compact at most through it`, { field: 'revision' });
    }
    return this.#onLeader(
      options,
      (g, remainingMs) => g.compact(revision, remainingMs, options.signal),
      (leader, remainingMs) => this.#forwardCompact(leader, revision, remainingMs),
    );
  }

  /**
   * The keyspace's committed revision, confirmed by the leader (a ReadIndex read), once this
   * replica has applied through it: what this replica then shows is linearizable.
   */
  async #caughtUp(group: RaftGroup, options: OperationOptions): Promise<number> {
    const started = this.#ctx.scheduler.nowMs();
    const confirmed = await this.txn({ keyspace: this.#ctx.keyspace, compares: [], success: [], failure: [] }, options);
    const revision = Number(confirmed.revision);
    const left = Math.max(1, options.timeoutMs - (this.#ctx.scheduler.nowMs() - started));
    if (!(await group.waitForRevision(revision, left, options.signal))) {
      throw unavailable('REPLICA_BEHIND', `this node had not applied ${this.#ctx.keyspace} through revision ${revision} (the leader's) within the deadline; nothing was read; retry`);
    }
    return revision;
  }

  /**
   * Runs `local` on the leader when this node leads, else `remote` towards the leader, retrying
   * through elections until the deadline (see the module comment for the answers).
   */
  async #onLeader<T>(options: OperationOptions, local: (group: RaftGroup, remainingMs: number) => Promise<T>, remote: (leader: string, remainingMs: number) => Promise<T>): Promise<T> {
    const group = await this.#opened(options);
    const deadline = this.#ctx.scheduler.nowMs() + options.timeoutMs;
    const remaining = () => Math.max(1, deadline - this.#ctx.scheduler.nowMs());
    this.#refuseWithoutMajority();
    let leader = group.leader;
    for (;;) {
      if (leader === this.#ctx.selfId) {
        try {
          return await local(group, remaining());
        } catch (error: unknown) {
          if (!(error instanceof NotLeaderError)) throw error;
          // Lost the lead between the check and the proposal. Every retry waits a tick: the core
          // needs a message or a tick to change its mind, so asking again at once would spin.
          await this.#pause(this.#timing.tickMs);
          if (this.#ctx.scheduler.nowMs() >= deadline || options.signal?.aborted) {
            throw unavailable('NO_LEADER', `${this.#ctx.keyspace} has no leader: an election is under way; nothing was done; retry`);
          }
        }
      }
      leader = await this.#leaderOrNone(group, remaining(), options.signal);
      if (leader === this.#ctx.selfId) continue;
      try {
        return await remote(leader, remaining());
      } catch (error: unknown) {
        // The leader this node knows is gone (its connection refused: nothing was delivered).
        // Until the deadline, wait a tick and ask whoever leads then: an election is under way.
        if (!(error instanceof ReplikitError && error.reason === 'LEADER_UNREACHABLE')) throw error;
        await this.#pause(this.#timing.tickMs);
        if (this.#ctx.scheduler.nowMs() >= deadline || options.signal?.aborted) throw error;
        this.#refuseWithoutMajority();
        leader = group.leader;
      }
    }
  }

  async forwarded(_from: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse> {
    validateTxn(request, this.#ctx.valueLimits);
    const group = this.#group;
    if (group === undefined) throw unavailable('NOT_LEADER', `this node is still opening ${this.#ctx.keyspace}; retry`);
    try {
      return await group.run(request, timeoutMs);
    } catch (error: unknown) {
      if (error instanceof NotLeaderError) {
        throw unavailable('NOT_LEADER', `this node no longer leads ${this.#ctx.keyspace} (${error.message}); nothing was done; retry`, error.leader === undefined ? undefined : { leader: error.leader });
      }
      throw error;
    }
  }

  async forwardedCompact(_from: string, revision: number, timeoutMs: number): Promise<CompactResult> {
    const group = this.#group;
    if (group === undefined) throw unavailable('NOT_LEADER', `this node is still opening ${this.#ctx.keyspace}; retry`);
    try {
      return await group.compact(revision, timeoutMs);
    } catch (error: unknown) {
      if (error instanceof NotLeaderError) throw unavailable('NOT_LEADER', `this node no longer leads ${this.#ctx.keyspace}; nothing was done; retry`);
      throw error;
    }
  }

  raftMessages(_from: string, messages: readonly RaftMessage[]): void {
    // Before the group opens nothing is lost: the sender's Raft resends what matters.
    this.#group?.step(messages);
  }

  /**
   * This node's history after revision `after` (what it applied, in memory or on disk), from its
   * floor on: for oracles (the simulation's ground truth) and diagnostics, not a client path.
   */
  localHistory(after: number): ChangeBatch[] {
    const history = this.#group?.history;
    if (history === undefined) return [];
    const out: ChangeBatch[] = [];
    for (let from = Math.max(after, history.floor) + 1; from <= history.head; ) {
      const page = history.read(from, 1024 * 1024);
      if (page.length === 0) break;
      out.push(...page);
      from = page[page.length - 1]!.revision + 1;
    }
    return out;
  }

  /** Diagnostics: every lease this replica holds, with the time left by this node's keeper (leader only). */
  leaseDebug(): { id: number; ttlMs: number; keys: number; remainingMs: number | undefined }[] | undefined {
    const group = this.#group;
    return group?.machine.leases().map((l) => ({ id: l.id, ttlMs: l.ttlMs, keys: l.keys.size, remainingMs: group.leaseRemaining(l.id) }));
  }

  raftStatus(): RaftGroupStatus | undefined {
    return this.#group?.status();
  }

  /** For metrics (ops/metrics.ts reads these fields by name). */
  stats(): Readonly<Record<string, number>> | undefined {
    const group = this.#group;
    if (group === undefined) return undefined;
    const status = group.status();
    return {
      ...group.stats,
      ...group.transferStats,
      term: status.term,
      isLeader: status.role === 'leader' ? 1 : 0,
      proposalsPending: status.proposalsPending,
      appliedIndex: status.appliedIndex,
      revision: group.history.head,
      compactRevision: group.history.compactRevision,
      leases: group.machine.leaseCount,
      ...watchStatsOf(group.watchers.stats),
    };
  }

  applyReplicated(): Promise<never> {
    return Promise.reject(failedPrecondition('NOT_A_RAFT_CALL', `${this.#ctx.keyspace} is a CP keyspace: it replicates through its Raft log, not Replicate`));
  }

  readLocal(_from: string, _keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]> {
    return Promise.reject(failedPrecondition('NOT_A_RAFT_CALL', `${this.#ctx.keyspace} is a CP keyspace: peers read it through its Raft log, not Read`));
  }

  snapshot(): Promise<SnapshotPage> {
    return Promise.reject(failedPrecondition('NOT_A_RAFT_CALL', `${this.#ctx.keyspace} is a CP keyspace: a lagging replica gets a Raft snapshot from its leader`));
  }

  async absorb(): Promise<void> {
    throw failedPrecondition('NOT_A_RAFT_CALL', `${this.#ctx.keyspace} is a CP keyspace: it recovers through its Raft log`);
  }

  /**
   * The cluster's membership (the system keyspace's, committed): this group's leader brings the
   * group's own membership to it one step at a time, through the group's log — members that left
   * are removed first, new ones added as learners, and learners the cluster made voters promoted
   * once they have caught up with this group's log (the core refuses earlier).
   */
  membershipChanged(members: MemberSet): void {
    this.#target = members;
    this.#reconcileSoon();
  }

  /** The group this keyspace runs on, once open (the node layer's membership API uses it). */
  get group(): RaftGroup | undefined {
    return this.#group;
  }

  #reconcileSoon(): void {
    const group = this.#group;
    const target = this.#target;
    if (group === undefined || target === undefined || this.#reconciling || this.#closed || group.role !== 'leader' || group.changePending) return;
    const step = nextStep(group.membership, target);
    if (step === undefined) return;
    this.#reconciling = true;
    let proposed: Promise<unknown>;
    try {
      proposed = group.changeMembership(step, '', 10 * this.#timing.tickMs * this.#timing.electionTicks);
    } catch (error: unknown) {
      // RaftGroup.changeMembership refuses synchronously (a leader not ready yet, a learner behind):
      // as a rejection, so that the refusal is handled below and reconciling ends.
      proposed = Promise.reject(error);
    }
    proposed
      .then(
        () => this.#ctx.logger.info(`keyspace ${this.#ctx.keyspace} followed the cluster's membership: ${step.type} ${step.id}`, { keyspace: this.#ctx.keyspace, change: step.type, member: step.id }),
        (error: unknown) => {
          // A learner still behind, a change still committing, a leader that just stepped down:
          // all resolve themselves; the next beat tries again.
          if (!(error instanceof ReplikitError && error.reason === 'MEMBER_BEHIND')) {
            this.#ctx.logger.debug(`keyspace ${this.#ctx.keyspace} could not ${step.type} ${step.id} yet`, { error: String(error) });
          }
        },
      )
      .finally(() => (this.#reconciling = false));
  }

  async close(options: { readonly abrupt?: boolean } = {}): Promise<void> {
    this.#closed = true;
    this.#reconcileTimer?.cancel();
    await this.#group?.close(options.abrupt ? 0 : undefined);
  }

  #written(response: TxnResponse): WriteResult {
    const op = response.responses[0];
    const wire = op?.put?.version ?? op?.delete?.version;
    return { version: versionFromWire(wire, "the leader's answer"), sessionToken: EMPTY, revision: Number(response.revision) };
  }

  async #opened(options: OperationOptions): Promise<RaftGroup> {
    if (this.#group !== undefined) return this.#group;
    if (this.#closed) throw new ReplikitError('cancelled', 'NODE_CLOSING', 'the node is shutting down');
    const opened = await new Promise<boolean>((resolve) => {
      const timer = this.#ctx.scheduler.setTimer(options.timeoutMs, () => (this.#openWaiters.delete(wake), resolve(false)));
      const wake = () => (timer.cancel(), resolve(true));
      this.#openWaiters.add(wake);
    });
    if (!opened || this.#group === undefined) throw unavailable('NOT_OPEN', `${this.#ctx.keyspace} is still loading its log on this node; retry`);
    return this.#group;
  }

  /** Self, or a peer the failure detector believes alive whose connection is not known broken. */
  #reachable(id: string): boolean {
    return id === this.#ctx.selfId || (this.#ctx.liveness.isAlive(id) && this.#ctx.replicas.isConnected?.(id) !== false);
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => this.#ctx.scheduler.setTimer(ms, resolve));
  }

  /** Refuses at once, as the old quorum policy did, when the failure detector sees no majority. */
  #refuseWithoutMajority(): void {
    const voters = this.#group?.membership.voters ?? this.#ctx.replicaIds;
    // A node that knows no membership yet (joining) cannot judge: the leader will answer.
    if (voters.length === 0) return;
    const alive = voters.filter((id) => this.#reachable(id));
    const needed = majority(voters.length);
    if (alive.length < needed) {
      throw unavailable('NO_QUORUM', `${alive.length} of ${voters.length} replicas are alive and a quorum needs ${needed} (keyspace ${this.#ctx.keyspace}); nothing was done`, {
        reachable: String(alive.length),
        needed: String(needed),
      });
    }
  }

  /** The leader, waiting up to two election timeouts for one; UNAVAILABLE when none shows. */
  async #leaderOrNone(group: RaftGroup, remainingMs: number, signal?: AbortSignal): Promise<string> {
    const believedAlive = (id: string | undefined) => id !== undefined && this.#reachable(id);
    if (believedAlive(group.leader)) return group.leader!;
    const electionMs = 2 * this.#timing.electionTicks * this.#timing.tickMs;
    // Four fifths of the caller's time at most: the refusal must reach it before its deadline,
    // or it would read "outcome unknown" where nothing happened.
    const until = this.#ctx.scheduler.nowMs() + Math.min(remainingMs * 0.8, electionMs);
    while (this.#ctx.scheduler.nowMs() < until && !signal?.aborted) {
      // A tick at a time, so that peers found gone meanwhile end the wait (below).
      await group.waitForLeader(Math.min(this.#timing.tickMs, until - this.#ctx.scheduler.nowMs()), signal);
      if (believedAlive(group.leader)) return group.leader!;
      await this.#pause(Math.max(0, Math.min(this.#timing.tickMs, until - this.#ctx.scheduler.nowMs())));
      // Peers found gone meanwhile: no election can succeed without a majority, so say so now.
      this.#refuseWithoutMajority();
    }
    throw unavailable('NO_LEADER', `${this.#ctx.keyspace} has no leader: an election is under way, or no majority can reach each other; nothing was done; retry`);
  }

  async #forwardCompact(leader: string, revision: number, timeoutMs: number): Promise<CompactResult> {
    const forward = this.#ctx.replicas.forwardCompact;
    if (forward === undefined) throw failedPrecondition('NO_FORWARDING', 'this transport cannot forward calls to the leader');
    try {
      return await forward.call(this.#ctx.replicas, leader, this.#ctx.keyspace, revision, timeoutMs);
    } catch (error: unknown) {
      if (error instanceof ReplikitError) throw error;
      if (error instanceof PeerCallError && error.failure === 'unreachable') throw unavailable('LEADER_UNREACHABLE', `the leader ${leader} refused the connection; nothing was done; retry`);
      // A compaction that may have happened is harmless to repeat: the caller may retry.
      throw outcomeUnknown('FORWARD_FAILED', `the compaction was handed to the leader ${leader}, which did not answer (${toReplikitError(error).message}); it may have taken effect; compacting again is harmless`);
    }
  }

  async #forward(leader: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse> {
    const forward = this.#ctx.replicas.forward;
    if (forward === undefined) throw failedPrecondition('NO_FORWARDING', 'this transport cannot forward calls to the leader');
    try {
      return await forward.call(this.#ctx.replicas, leader, request, timeoutMs);
    } catch (error: unknown) {
      if (error instanceof ReplikitError) throw error;
      const reads = request.success.concat(request.failure).every((op) => op.get !== undefined);
      // Only a call that certainly never reached the leader (refused, not sent) left nothing behind.
      const maybeDelivered = !(error instanceof PeerCallError && error.failure === 'unreachable');
      if (!maybeDelivered) throw unavailable('LEADER_UNREACHABLE', `the leader ${leader} refused the connection (${toReplikitError(error).message}); nothing was done; retry`);
      if (maybeDelivered && !reads) {
        throw outcomeUnknown('FORWARD_FAILED', `the write was handed to the leader ${leader}, which did not answer (${toReplikitError(error).message}); it may have taken effect`);
      }
      throw unavailable('FORWARD_FAILED', `could not reach the leader ${leader} (${toReplikitError(error).message}); nothing was ${reads ? 'read' : 'done'}; retry`);
    }
  }
}

/**
 * The next single step from a group's membership toward the cluster's: a member that left goes
 * first (while it is still out of every quorum it can be, before new voters raise the majority),
 * then a new member joins as a learner, then a learner the cluster made a voter is promoted.
 * Undefined when the group already matches. Demoting a voter is not a step the cluster takes.
 */
export function nextStep(group: Membership, target: MemberSet): MembershipChange | undefined {
  const wanted = new Set([...target.voters, ...target.learners]);
  const gone = [...group.learners, ...group.voters].find((id) => !wanted.has(id));
  if (gone !== undefined && !(group.voters.length === 1 && group.voters[0] === gone)) return { type: 'remove', id: gone };
  const missing = [...target.voters, ...target.learners].find((id) => !group.voters.includes(id) && !group.learners.includes(id));
  if (missing !== undefined) return { type: 'addLearner', id: missing };
  const ready = group.learners.find((id) => target.voters.includes(id));
  if (ready !== undefined) return { type: 'promote', id: ready };
  return undefined;
}
