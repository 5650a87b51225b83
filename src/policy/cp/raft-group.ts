/**
 * One CP keyspace's Raft group on one node: the I/O around the pure core (raft/raft-core.ts).
 *
 * The core says what to do; this does it, in the order Raft's safety needs (etcd-io/raft's
 * Ready contract): persist the hard state, entries and snapshot of a Ready — one durable write,
 * so every append that arrived meanwhile shares one sync (group commit) — then send its messages
 * (a vote or an acknowledgement is never sent before what it promises is on disk), then apply its
 * committed entries to the state machine and answer the proposals and reads waiting on them, then
 * `advance`. Ticks come from the injected scheduler, so the simulation runs the same code on
 * virtual time.
 */
import type { HybridLogicalClock, Scheduler, TimerHandle } from '../../clock/index.js';
import { versionFromWire, versionToWire } from '../../transport/wire.js';
import { failedPrecondition, invalidArgument, notFound, outcomeUnknown, ReplikitError, resourceExhausted, unavailable } from '../../errors.js';
import { RaftCommand } from '../../gen/replikit/v1/replica_service.js';
import type { TxnRequest, TxnResponse } from '../../gen/replikit/v1/kv_service.js';
import type { Logger } from '../../logging/logger.js';
import { RaftCore, type RaftConfig } from '../../raft/raft-core.js';
import { decodeMembership, snapshotMeta, type Membership, type MembershipChange } from '../../raft/membership.js';
import type { LogEntry, RaftMessage, RaftNodeId, RaftRole, Ready } from '../../raft/types.js';
import type { RaftLogStore } from '../../storage/raft-log-store.js';
import type { Store } from '../../storage/store.js';
import { KvStateMachine, writes, type LeaseNotFound, type LeaseRevokeResult } from './kv-state-machine.js';
import { LeaseKeeper } from './lease-keeper.js';
import { WatchHub, WATCH_DEFAULTS, type WatchLimits } from '../watch/watch-hub.js';
import type { KvHistory } from './kv-history.js';
import { KvStateStore } from './kv-state-store.js';
import { SNAPSHOT_CHUNK_BYTES, SnapshotTransfers, type SnapshotTransferStats } from './snapshot-transfer.js';

export interface RaftGroupTiming {
  /**
   * One Raft tick. 100 ms, etcd's heartbeat interval: a leader's heartbeat every tick keeps
   * followers' election timers quiet with 10× margin; on loopback or a LAN a round trip is far
   * below it.
   */
  readonly tickMs: number;
  /**
   * Ticks without a leader before a follower campaigns (randomized up to twice this). 10 ticks =
   * 1–2 s, etcd's default: long enough that a GC pause or a loaded machine does not depose a
   * healthy leader, short enough that a dead one is replaced within a couple of seconds.
   */
  readonly electionTicks: number;
  /**
   * Applied entries between two compactions of the log. The applied state is on disk already
   * (kv-state-store.ts), so a compaction only waits for its last commit and drops the log through
   * it; the core keeps its log in memory, so this bounds that memory and what a restart reads.
   * 5,000: etcd keeps that many entries after a snapshot for followers to catch up from; a
   * follower further behind gets the state as a snapshot.
   */
  readonly snapshotEvery: number;
  /**
   * Bytes of applied commands that also trigger a compaction, whatever their number: 64 MiB, so
   * that large values (up to the value limit each) cannot pile up 5,000 entries' worth of memory.
   */
  readonly compactAfterBytes: number;
  /** Bytes per piece of a snapshot sent to a follower (see snapshot-transfer.ts for the reason). */
  readonly snapshotChunkBytes: number;
}

export const RAFT_GROUP_DEFAULTS: RaftGroupTiming = { tickMs: 100, electionTicks: 10, snapshotEvery: 5_000, compactAfterBytes: 64 * 1024 * 1024, snapshotChunkBytes: SNAPSHOT_CHUNK_BYTES };

export interface RaftGroupOptions {
  readonly keyspace: string;
  readonly selfId: RaftNodeId;
  /** The first voters of a new group (see RaftConfig.voters): empty for a node joining a cluster. */
  readonly voters: readonly RaftNodeId[];
  /** The first membership's node-layer data (see Membership.context). @default '' */
  readonly membershipContext?: string;
  /**
   * Hears the membership whenever it changes: the one in effect (the latest in the log) and the
   * committed one (as of the commit index), after the Ready that changed either.
   */
  readonly onMembership?: (inEffect: Membership, committed: Membership) => void;
  readonly log: RaftLogStore;
  /** The node's store: the applied state lives there (kv-state-store.ts), beside the log. */
  readonly store: Store;
  readonly scheduler: Scheduler;
  /** Stamps each proposed command with a version (the HLC when proposed, and this node's id). */
  readonly clock: HybridLogicalClock;
  /** Seeded in the simulation; Math.random otherwise. Spreads election timeouts. */
  readonly random: () => number;
  /** Sends one peer its messages (one-way, best effort: Raft resends what matters). */
  readonly send: (peer: RaftNodeId, messages: readonly RaftMessage[]) => void;
  readonly logger: Logger;
  /** A durable write failed: the node stops (fail-stop; see node/fail-stop-store.ts). */
  readonly onFailure: (error: unknown) => void;
  /**
   * False after this node lost its disk (amnesia): it forgot whom it voted for and what it
   * acknowledged, so it never votes or campaigns again (see docs/failure-model.md); it still
   * replicates and serves.
   */
  readonly canVote: boolean;
  readonly timing?: Partial<RaftGroupTiming>;
  /** How long history is kept for Watch and Range at past revisions (see HISTORY_RETENTION_DEFAULTS). */
  readonly historyRetention?: Partial<HistoryRetention>;
  /** Watch limits (see WATCH_DEFAULTS). */
  readonly watchLimits?: WatchLimits;
  /** Lease limits (see LEASE_DEFAULTS). */
  readonly leaseLimits?: Partial<LeaseLimits>;
  /**
   * Hears leases this follower's own clock says expired, under the deliberately broken
   * `unsafeExpireByFollowerClock` only (the caller has them revoked through the leader).
   */
  readonly onFollowerExpiry?: (ids: number[]) => void;
  /** Deliberately broken variants, for proving the simulation catches them. */
  readonly unsafe?: Pick<RaftConfig, 'unsafeCommitWithoutMajority' | 'unsafeReadIndexWithoutQuorum' | 'unsafeOverlappingChanges' | 'unsafePromoteLagging'> & {
    /**
     * DELIBERATELY BROKEN: each follower also expires leases by its own wall clock, counting from
     * the grant and never hearing renewals (which go to the leader): live leases are revoked.
     */
    readonly unsafeExpireByFollowerClock?: boolean;
  };
}

/** Bounds on a keyspace's leases. */
export interface LeaseLimits {
  /**
   * The shortest TTL granted: 1 s. A lease must outlive a network round trip and a commit with a
   * wide margin, or its holder loses it while renewing; etcd's minimum is comparable (1.5 ×
   * its election timeout).
   */
  readonly minTtlMs: number;
  /** The longest: one hour. A holder that dies holds its lock this long at most. */
  readonly maxTtlMs: number;
  /**
   * Leases a keyspace holds at most: 100,000. Each costs every replica about 200 bytes of memory
   * and the leader a deadline; a client that leaks leases meets this instead of the node's memory.
   */
  readonly maxLeases: number;
}

export const LEASE_DEFAULTS: LeaseLimits = { minTtlMs: 1_000, maxTtlMs: 3_600_000, maxLeases: 100_000 };
/** Leases revoked per log entry when many expire at once: one entry stays small (8 bytes each). */
const EXPIRE_BATCH = 1_000;

/** One lease renewal's answer. */
export type Renewal = { readonly id: number; readonly ttlMs: number } | { readonly id: number; readonly error: ReplikitError };

const EMPTY = new Uint8Array(0);

/**
 * How much history a CP keyspace keeps: the leader compacts (through the log) what is older
 * than `ms` or more than `revisions` behind the head, whichever goes further.
 */
export interface HistoryRetention {
  readonly revisions: number;
  readonly ms: number;
}

/**
 * Five minutes: Kubernetes' API server compacts etcd every five minutes, so its watchers are
 * built to resume within that; a client that was away longer re-lists. A million revisions:
 * bounds the disk a write storm can fill within those five minutes (at 1 KiB a revision, about
 * 2 GiB with the previous values). Checked every second: at most one small log entry a second.
 */
export const HISTORY_RETENTION_DEFAULTS: HistoryRetention = { revisions: 1_000_000, ms: 300_000 };
const RETENTION_CHECK_MS = 1_000;

/** Thrown when this node does not lead the group: the caller forwards to `leader`, when known. */
export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
  constructor(readonly leader: RaftNodeId | undefined) {
    super(leader === undefined ? 'no leader is known' : `${leader} leads`);
  }
}

interface Waiter<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (error: unknown) => void;
  readonly timer: TimerHandle;
}

/** What a Compact command answers: the compaction revision in force, and the keyspace's revision. */
export interface CompactResult {
  readonly compactRevision: number;
  readonly revision: number;
}

/** What a lease grant answers. */
export interface LeaseGrantResult {
  readonly id: number;
  readonly ttlMs: number;
  readonly revision: number;
}

type ProposalResult = TxnResponse | CompactResult | LeaseGrantResult | LeaseRevokeResult | MembershipResult;

/** A membership change, committed. */
export interface MembershipResult {
  readonly membership: Membership;
  /** The index of its config entry: the membership's version. */
  readonly index: number;
}

interface PendingProposal extends Waiter<ProposalResult> {
  readonly term: number;
}

interface PendingRead extends Waiter<unknown> {
  /** Computes the answer once the replica has applied through the confirmed index. */
  readonly answer: () => unknown;
  /** Set once the leader confirmed its leadership: answer when applied reaches it. */
  index: number | undefined;
}

export interface RaftGroupStatus {
  readonly role: RaftRole;
  readonly term: number;
  readonly leader: RaftNodeId | undefined;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly revision: number;
  readonly followers: readonly { readonly id: RaftNodeId; readonly match: number; readonly lag: number }[];
  readonly leaderChanges: number;
  readonly proposalsPending: number;
}

/** What the group has done since it opened, for metrics. */
export interface RaftGroupStats {
  syncs: number;
  syncMs: number;
  entriesPersisted: number;
  commits: number;
  commitMs: number;
  snapshotsTaken: number;
  snapshotsSent: number;
  snapshotsInstalled: number;
  leaderChanges: number;
  /** Peer messages the core refused as impossible (see `step`). */
  messagesRefused: number;
  /** Leases ended by expiry, as applied here. */
  leasesExpired: number;
  /** Renewals this node confirmed as leader. */
  leaseRenewals: number;
}

export class RaftGroup {
  readonly #o: RaftGroupOptions;
  readonly #timing: RaftGroupTiming;
  readonly #core: RaftCore;
  readonly #state: KvStateStore;
  readonly #machine: KvStateMachine;
  readonly #transfers: SnapshotTransfers;
  readonly #proposals = new Map<number, PendingProposal & { proposedAt: number }>();
  readonly #reads = new Map<number, PendingRead>();
  readonly #leaderWaiters = new Set<() => void>();
  readonly #revisionWaiters = new Set<{ readonly revision: number; readonly done: (reached: boolean) => void }>();
  readonly stats: RaftGroupStats = { syncs: 0, syncMs: 0, entriesPersisted: 0, commits: 0, commitMs: 0, snapshotsTaken: 0, snapshotsSent: 0, snapshotsInstalled: 0, leaderChanges: 0, messagesRefused: 0, leasesExpired: 0, leaseRenewals: 0 };
  #nextReadId = 1;
  #role: RaftRole = 'follower';
  #leader: RaftNodeId | undefined;
  #snapshotIndex: number;
  /** The term and vote last written: a Ready that changes them must sync before it sends. */
  #durableVote: { term: number; vote: RaftNodeId | undefined } = { term: 0, vote: undefined };
  /** Bytes of commands applied since the last compaction. */
  #appliedBytesSinceCompaction = 0;
  #tick: TimerHandle | undefined;
  #drainScheduled = false;
  #draining = false;
  #failed: unknown;
  #closed = false;
  readonly #hub: WatchHub;
  readonly #retention: HistoryRetention;
  /** The leader's samples of (time, revision), oldest first, for compacting by age. */
  #revisionSamples: { atMs: number; revision: number }[] = [];
  /** The last log index on disk (what a committed entry must be at or below to be applied before the next write). */
  #durableLastIndex = 0;
  #retentionTimer: TimerHandle | undefined;
  #compactionProposed = 0;
  readonly #keeper = new LeaseKeeper();
  readonly #leaseLimits: LeaseLimits;
  /** Renewals waiting for the next leadership confirmation, and whether one is under way. */
  #renewals: { readonly ids: readonly number[]; readonly resolve: (r: Renewal[]) => void; readonly reject: (e: unknown) => void }[] = [];
  #confirmingRenewals = false;
  /** Under the broken follower-clock expiry: leases this follower already asked to revoke. */
  readonly #followerExpired = new Set<number>();

  private constructor(options: RaftGroupOptions, core: RaftCore, state: KvStateStore, snapshotIndex: number) {
    this.#o = options;
    this.#timing = { ...RAFT_GROUP_DEFAULTS, ...options.timing };
    this.#core = core;
    this.#state = state;
    this.#hub = new WatchHub(state.history, options.scheduler, options.watchLimits ?? WATCH_DEFAULTS);
    this.#machine = new KvStateMachine(state, (batch) => this.#hub.publish(batch));
    this.#retention = { ...HISTORY_RETENTION_DEFAULTS, ...options.historyRetention };
    this.#leaseLimits = { ...LEASE_DEFAULTS, ...options.leaseLimits };
    this.#snapshotIndex = snapshotIndex;
    this.#transfers = new SnapshotTransfers({
      selfId: options.selfId,
      membershipAt: (index) => this.#core.membershipAt(index),
      state,
      scheduler: options.scheduler,
      chunkBytes: this.#timing.snapshotChunkBytes,
      // Two election timeouts: a chunk is one round trip plus one commit, far less even on a
      // loaded machine; a transfer given up is restarted by the core's snapshot retry.
      ackTimeoutMs: 2 * this.#timing.electionTicks * this.#timing.tickMs,
      send: (peer, messages) => this.#o.send(peer, messages),
      term: () => this.#core.status().term,
      deliver: (message) => {
        this.#core.step(message);
        const taken = this.#core.snapshotToHandOut;
        this.#kick();
        return taken !== undefined && taken.index === message.snapshot.meta.index && taken.term === message.snapshot.meta.term;
      },
      onError: (error) => this.#fail(error),
    });
  }

  /**
   * Opens the group from what its stores kept: the applied state (on disk as of its last commit)
   * and the log after the last compaction; entries the state already covers are not applied again.
   */
  static async open(options: RaftGroupOptions): Promise<RaftGroup> {
    const timing = { ...RAFT_GROUP_DEFAULTS, ...options.timing };
    const restored = await options.log.load();
    let opened: RaftGroup | undefined;
    const state = KvStateStore.open(options.store, options.keyspace, options.scheduler, (error) => {
      if (opened !== undefined) opened.#fail(error);
      else options.onFailure(error);
    });
    const applied = state.meta.appliedIndex;
    const compacted = restored.snapshot?.index ?? 0;
    const lastIndex = restored.entries.length > 0 ? restored.entries[restored.entries.length - 1]!.index : compacted;
    // The log is compacted only through what the state has on disk, and entries are applied only
    // once the log has them: anything else is a damaged store, not something to serve from.
    if (applied < compacted || applied > lastIndex) {
      throw new Error(`the Raft group of ${options.keyspace} cannot open: its state is applied through index ${applied}, but its log covers ${compacted + 1}..${lastIndex}`);
    }
    const core = new RaftCore(
      {
        id: options.selfId,
        voters: [...options.voters],
        membershipContext: options.membershipContext,
        electionTicks: timing.electionTicks,
        heartbeatTicks: 1,
        random: options.random,
        canVote: options.canVote,
        ...options.unsafe,
      },
      // The snapshot's data is the state on disk, streamed from the store when a follower needs
      // it (snapshot-transfer.ts): the core holds only an empty stand-in, so that it knows it has one.
      { ...restored, snapshotData: restored.snapshot === undefined ? undefined : EMPTY },
    );
    // A group that has never had a term (a new cluster, all nodes starting together) starts its
    // election clock nearly run out, so the first leader is there within one randomized election
    // timeout's spread (0.1–1.1 s by default) instead of 1–2 s. Safe: elections are only faster,
    // and pre-vote keeps an early candidate from disturbing a leader that already exists.
    if (restored.hardState.term === 0 && restored.entries.length === 0 && restored.snapshot === undefined) {
      for (let i = 0; i < timing.electionTicks - 1; i++) core.tick();
    }
    const group = new RaftGroup(options, core, state, compacted);
    group.#durableVote = { term: restored.hardState.term, vote: restored.hardState.vote };
    group.#durableLastIndex = lastIndex;
    opened = group;
    group.#scheduleTick();
    group.#scheduleRetention();
    group.#noteMembership();
    group.#kick();
    return group;
  }

  /** The membership in effect (the latest in this node's log, committed or not). */
  get membership(): Membership {
    return this.#core.membership;
  }

  /** The membership as of this node's commit index. */
  get committedMembership(): Membership {
    return this.#core.membershipAt(this.#core.status().commit);
  }

  /** True while a membership change is in the log and not yet committed. */
  get changePending(): boolean {
    return this.#core.status().changePending;
  }

  /** On the leader: the replication progress of `member` (undefined elsewhere or for a non-member). */
  progressOf(member: RaftNodeId): { readonly match: number; readonly commit: number } | undefined {
    const status = this.#core.status();
    const pr = status.progress.find((p) => p.id === member);
    return pr === undefined ? undefined : { match: pr.match, commit: status.commit };
  }

  /**
   * On the leader: one membership step through the log (see raft/membership.ts); resolves once
   * committed. Refused, with the reason, while another change is under way, for a step that is not
   * valid, and for promoting a learner that has not caught up. Throws NotLeaderError elsewhere.
   */
  changeMembership(change: MembershipChange, context: string, timeoutMs: number, signal?: AbortSignal): Promise<MembershipResult> {
    this.#assertOpen();
    const result = this.#core.proposeChange(change, context);
    if (!result.ok) {
      if (result.reason === 'not-leader') throw new NotLeaderError(result.leader);
      if (result.reason === 'transferring') throw unavailable('LEADER_TRANSFERRING', `the leader of ${this.#o.keyspace} is handing over to another node; nothing was changed: retry`);
      if (result.reason === 'too-many-pending') throw unavailable('TOO_MANY_PENDING', `the leader of ${this.#o.keyspace} has too many uncommitted writes; nothing was changed: retry`);
      if (result.reason === 'not-ready') throw unavailable('LEADER_NOT_READY', `the leader of ${this.#o.keyspace} was just elected and has not committed an entry of its term yet; nothing was changed: retry`);
      if (result.reason === 'invalid') throw failedPrecondition('MEMBERSHIP_CHANGE_INVALID', `${describeChange(change)} cannot be done: ${result.detail}; nothing was changed`, { member: change.id });
      if (result.reason === 'behind') {
        throw failedPrecondition('MEMBER_BEHIND', `${change.id} cannot be promoted yet in ${this.#o.keyspace}: ${result.detail}; it is still catching up (retry once it has)`, { member: change.id });
      }
      throw failedPrecondition('MEMBERSHIP_CHANGE_IN_PROGRESS', `another membership change of ${this.#o.keyspace} is under way (${'detail' in result ? result.detail : ''}); nothing was changed: retry once it is done`);
    }
    this.#kick();
    return this.#awaitProposal(result.index, result.term, timeoutMs, signal) as Promise<MembershipResult>;
  }

  /** This node's role as the core knows it now (not as of the last Ready). */
  get role(): RaftRole {
    return this.#core.role;
  }

  /** The leader as the core knows it now, or undefined while none is known. */
  get leader(): RaftNodeId | undefined {
    return this.#core.leader;
  }

  /** Snapshot transfers sent and received since the group opened. */
  get transferStats(): Readonly<SnapshotTransferStats> {
    return this.#transfers.stats;
  }

  /** The state machine as this replica has applied it (serializable reads, tests). */
  get machine(): KvStateMachine {
    return this.#machine;
  }

  /** Messages from a peer, as the transport received them. */
  step(messages: readonly RaftMessage[]): void {
    if (this.#closed || this.#failed !== undefined) return;
    for (const m of messages) {
      if (m.type === 'snapshotChunk' || m.type === 'snapshotChunkAck') {
        this.#transfers.step(m);
        continue;
      }
      // A whole snapshot reaches the core only from the transfer, once its pieces are staged
      // (snapshot-transfer.ts): one from the wire carries no state and is dropped.
      if (m.type === 'snapshot') continue;
      try {
        this.#core.step(m);
      } catch (error: unknown) {
        // The core refuses a message that contradicts what it holds (a commit index past its log,
        // entries conflicting with committed ones) before changing anything: an honest peer never
        // sends one, so it is logged and dropped rather than stopping the node for a forger.
        this.stats.messagesRefused++;
        this.#o.logger.error(`the Raft group of ${this.#o.keyspace} refused a ${m.type} message from ${m.from}`, { error: String(error) });
      }
    }
    this.#kick();
  }

  /**
   * Runs a transaction on the leader: through the log when it writes, by ReadIndex when it only
   * reads. Throws {@link NotLeaderError} on a follower.
   */
  run(txn: TxnRequest, timeoutMs: number, signal?: AbortSignal): Promise<TxnResponse> {
    return writes(txn) ? (this.#propose({ txn }, timeoutMs, signal) as Promise<TxnResponse>) : this.linearizable(() => this.#machine.read(txn), timeoutMs, signal);
  }

  /**
   * On the leader: confirms leadership (ReadIndex), waits until this replica has applied what was
   * committed then, and answers `compute()` — which then sees every write acknowledged before the
   * call. Throws {@link NotLeaderError} on a follower.
   */
  linearizable<T>(compute: () => T, timeoutMs: number, signal?: AbortSignal): Promise<T> {
    return this.#readIndex(compute, timeoutMs, signal) as Promise<T>;
  }

  /** On the leader: compacts the history through `revision`, through the log. */
  compact(revision: number, timeoutMs: number, signal?: AbortSignal): Promise<CompactResult> {
    return this.#propose({ compact: { keyspace: this.#o.keyspace, revision: BigInt(revision) } }, timeoutMs, signal) as Promise<CompactResult>;
  }

  /** The lease limits in force. */
  get leaseLimits(): LeaseLimits {
    return this.#leaseLimits;
  }

  /** On the leader: grants a lease through the log; its id is the entry's index. */
  grantLease(ttlMs: number, timeoutMs: number, signal?: AbortSignal): Promise<LeaseGrantResult> {
    const { minTtlMs, maxTtlMs, maxLeases } = this.#leaseLimits;
    if (!Number.isInteger(ttlMs) || ttlMs < minTtlMs || ttlMs > maxTtlMs) {
      throw invalidArgument('LEASE_TTL_INVALID', `ttl_ms is ${ttlMs}; a lease lives ${minTtlMs} to ${maxTtlMs} ms (keep it alive to hold it longer)`, { field: 'ttl_ms' });
    }
    if (this.#machine.leaseCount >= maxLeases) {
      throw resourceExhausted('TOO_MANY_LEASES', `${this.#o.keyspace} holds ${this.#machine.leaseCount} leases, its limit; revoke leases no longer needed (replikit lease list shows them)`);
    }
    return this.#propose({ leaseGrant: { ttlMs: BigInt(ttlMs) } }, timeoutMs, signal) as Promise<LeaseGrantResult>;
  }

  /** On the leader: revokes lease `id` through the log, deleting its keys; NOT_FOUND when it does not exist. */
  async revokeLease(id: number, timeoutMs: number, signal?: AbortSignal): Promise<LeaseRevokeResult> {
    if (this.#machine.lease(id) === undefined && this.#core.role === 'leader') throw leaseNotFound(id);
    const result = (await this.#propose({ leaseRevoke: { ids: [BigInt(id)], expired: false } }, timeoutMs, signal)) as LeaseRevokeResult;
    if (result.revoked.length === 0) throw leaseNotFound(id);
    return result;
  }

  /**
   * On the leader: renews leases for their TTL. Answered once a ReadIndex round started after
   * this call confirmed that this node still leads (see lease-keeper.ts for why); renewals that
   * arrive meanwhile share the next round. Throws {@link NotLeaderError} on a follower.
   */
  renewLeases(ids: readonly number[], timeoutMs: number): Promise<Renewal[]> {
    this.#assertOpen();
    if (this.#core.role !== 'leader') throw new NotLeaderError(this.#core.leader);
    return new Promise<Renewal[]>((resolve, reject) => {
      this.#renewals.push({ ids, resolve, reject });
      this.#confirmRenewals(timeoutMs);
    });
  }

  #confirmRenewals(timeoutMs: number): void {
    if (this.#confirmingRenewals || this.#renewals.length === 0) return;
    this.#confirmingRenewals = true;
    const batch = this.#renewals;
    this.#renewals = [];
    const answer = () => {
      const now = this.#o.scheduler.nowMs();
      return batch.map((b) => b.ids.map((id): Renewal => {
        const lease = this.#machine.lease(id);
        if (lease === undefined) return { id, error: leaseNotFound(id) };
        const renewed = this.#keeper.renew(id, lease.ttlMs, now);
        if (renewed.ok) {
          this.stats.leaseRenewals++;
          return { id, ttlMs: renewed.ttlMs };
        }
        if (renewed.why === 'expired') return { id, error: notFound('LEASE_EXPIRED', `lease ${id} expired and is being revoked; grant a new lease and attach its keys again`) };
        return { id, error: unavailable('NOT_LEADER', `this node stopped leading ${this.#o.keyspace} before renewing lease ${id}; keep it alive again`) };
      }));
    };
    let confirmed: Promise<Renewal[][]>;
    try {
      confirmed = this.linearizable(answer, timeoutMs);
    } catch (error: unknown) {
      confirmed = Promise.reject(error);
    }
    confirmed.then(
      (answers) => batch.forEach((b, i) => b.resolve(answers[i]!)),
      (error: unknown) => batch.forEach((b) => b.reject(error)),
    ).finally(() => {
      this.#confirmingRenewals = false;
      this.#confirmRenewals(timeoutMs);
    });
  }

  /** Milliseconds lease `id` has left by this leader's clock; undefined on a follower. */
  leaseRemaining(id: number): number | undefined {
    return this.#keeper.remaining(id, this.#o.scheduler.nowMs());
  }

  /** The keyspace's history on this node (what Range at a past revision and catching-up watchers read). */
  get history(): KvHistory {
    return this.#state.history;
  }

  /** The keyspace's current state on this node, for Range. */
  get state(): KvStateStore {
    return this.#state;
  }

  /**
   * Resolves once this replica has applied through `revision` (true), or after `timeoutMs` (false).
   */
  waitForRevision(revision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.#machine.revision >= revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = { revision, done: (reached: boolean) => {
        timer.cancel();
        this.#revisionWaiters.delete(waiter);
        signal?.removeEventListener('abort', abort);
        resolve(reached);
      } };
      const abort = () => waiter.done(false);
      const timer = this.#o.scheduler.setTimer(timeoutMs, () => waiter.done(false));
      this.#revisionWaiters.add(waiter);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  /** This node's watchers of the keyspace. */
  get watchers(): WatchHub {
    return this.#hub;
  }

  /** Answers a read-only transaction from this replica at once: possibly stale, never invented. */
  readLocal(txn: TxnRequest): TxnResponse {
    this.#assertOpen();
    return this.#machine.read(txn);
  }

  /** Resolves once a leader is known (true), or after `timeoutMs` without one (false). */
  waitForLeader(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.#core.leader !== undefined) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (found: boolean) => {
        timer.cancel();
        this.#leaderWaiters.delete(wake);
        signal?.removeEventListener('abort', abort);
        resolve(found);
      };
      const wake = () => done(true);
      const abort = () => done(false);
      const timer = this.#o.scheduler.setTimer(timeoutMs, () => done(false));
      this.#leaderWaiters.add(wake);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  status(): RaftGroupStatus {
    const s = this.#core.status();
    return {
      role: s.role,
      term: s.term,
      leader: s.leader,
      commitIndex: s.commit,
      appliedIndex: this.#machine.appliedIndex,
      revision: this.#machine.revision,
      followers: (s.progress ?? []).filter((p) => p.id !== this.#o.selfId).map((p) => ({ id: p.id, match: p.match, lag: Math.max(0, s.lastIndex - p.match) })),
      leaderChanges: this.stats.leaderChanges,
      proposalsPending: this.#proposals.size,
    };
  }

  /**
   * Stops the group. A leader first hands leadership to its most caught-up follower and waits up
   * to `handOverMs` for it to take over, so clients see a new leader at once rather than after an
   * election timeout.
   */
  async close(handOverMs = 1_000): Promise<void> {
    if (this.#closed) return;
    if (this.#core.role === 'leader' && this.#failed === undefined) {
      const s = this.#core.status();
      const best = (s.progress ?? []).filter((p) => p.id !== this.#o.selfId).sort((a, b) => b.match - a.match)[0];
      if (best !== undefined) {
        this.#core.transferLeadership(best.id);
        this.#kick();
        const until = this.#o.scheduler.nowMs() + handOverMs;
        while (this.#core.role === 'leader' && this.#o.scheduler.nowMs() < until) {
          await new Promise<void>((r) => this.#o.scheduler.setTimer(this.#timing.tickMs / 4, r));
        }
      }
    }
    this.#closed = true;
    this.#tick?.cancel();
    this.#retentionTimer?.cancel();
    this.#hub.close(unavailable('NODE_STOPPING', `this node stopped serving ${this.#o.keyspace}; watch again through another node`));
    this.#transfers.close();
    const closing = new ReplikitError('cancelled', 'NODE_CLOSING', 'the node is shutting down');
    for (const [, p] of this.#proposals) (p.timer.cancel(), p.reject(outcomeUnknown('NODE_CLOSING', 'the node shut down before the write was committed; it may still be')));
    for (const [, r] of this.#reads) (r.timer.cancel(), r.reject(closing));
    this.#proposals.clear();
    this.#reads.clear();
    // A clean stop writes the state out, so the next start replays nothing; an abrupt one (no
    // hand-over: a crash, as the simulation stops a node) leaves that to the log.
    if (handOverMs > 0 && this.#failed === undefined) await this.#state.flush().catch(() => {});
    this.#state.close();
  }

  #propose(command: Partial<Pick<RaftCommand, 'txn' | 'compact' | 'leaseGrant' | 'leaseRevoke'>>, timeoutMs: number, signal?: AbortSignal): Promise<ProposalResult> {
    this.#assertOpen();
    const data = RaftCommand.encode({ ...command, version: versionToWire({ hlc: this.#o.clock.now(), nodeId: this.#o.selfId }) }).finish();
    const result = this.#core.propose(data);
    if (!result.ok) {
      if (result.reason === 'not-leader') throw new NotLeaderError(result.leader);
      if (result.reason === 'transferring') throw unavailable('LEADER_TRANSFERRING', `the leader of ${this.#o.keyspace} is handing over to another node; retry`);
      throw unavailable('TOO_MANY_PENDING', `the leader of ${this.#o.keyspace} has too many uncommitted writes; retry`);
    }
    this.#kick();
    return this.#awaitProposal(result.index, result.term, timeoutMs, signal);
  }

  #awaitProposal(index: number, term: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<ProposalResult> {
    return new Promise<ProposalResult>((resolve, reject) => {
      const timer = this.#o.scheduler.setTimer(timeoutMs, () => {
        if (!this.#proposals.delete(index)) return;
        reject(outcomeUnknown('COMMIT_TIMEOUT', `the write was proposed at index ${index} but not committed within ${timeoutMs} ms; it may still be`));
      });
      this.#proposals.set(index, { term, resolve, reject, timer, proposedAt: this.#o.scheduler.nowMs() });
      // A caller that gives up only stops waiting: the proposal is in the log and may commit.
      signal?.addEventListener('abort', () => {
        if (this.#proposals.delete(index)) (timer.cancel(), reject(outcomeUnknown('CANCELLED', 'the caller gave up after the write was proposed; it may still commit')));
      }, { once: true });
    });
  }

  #lastMembership: { inEffect: Membership; committed: Membership } | undefined;

  /** Tells the node layer of a membership that changed, in effect or committed. */
  #noteMembership(): void {
    if (this.#o.onMembership === undefined) return;
    const inEffect = this.#core.membership;
    const committed = this.#core.membershipAt(this.#core.status().commit);
    const last = this.#lastMembership;
    if (last !== undefined && last.inEffect === inEffect && last.committed === committed) return;
    this.#lastMembership = { inEffect, committed };
    this.#o.onMembership(inEffect, committed);
  }

  #readIndex(answer: () => unknown, timeoutMs: number, signal?: AbortSignal): Promise<unknown> {
    this.#assertOpen();
    const id = this.#nextReadId++;
    const result = this.#core.readIndex(id);
    if (!result.ok) {
      if (result.reason === 'not-leader') throw new NotLeaderError(result.leader);
      throw unavailable('READ_NOT_READY', `the leader of ${this.#o.keyspace} cannot serve reads yet (${result.reason}); retry`);
    }
    this.#kick();
    return new Promise<unknown>((resolve, reject) => {
      const timer = this.#o.scheduler.setTimer(timeoutMs, () => {
        if (this.#reads.delete(id)) reject(unavailable('READ_NOT_CONFIRMED', `the leader could not confirm its leadership within ${timeoutMs} ms; nothing was read`));
      });
      this.#reads.set(id, { answer, index: undefined, resolve, reject, timer });
      signal?.addEventListener('abort', () => {
        if (this.#reads.delete(id)) (timer.cancel(), reject(new ReplikitError('cancelled', 'CANCELLED', 'the caller gave up')));
      }, { once: true });
    });
  }

  #assertOpen(): void {
    if (this.#failed !== undefined) throw unavailable('GROUP_FAILED', `this node's replica of ${this.#o.keyspace} stopped after a storage failure`);
    if (this.#closed) throw new ReplikitError('cancelled', 'NODE_CLOSING', 'the node is shutting down');
  }

  #scheduleTick(): void {
    if (this.#closed || this.#failed !== undefined) return;
    this.#tick = this.#o.scheduler.setTimer(this.#timing.tickMs, () => {
      this.#core.tick();
      this.#kick();
      this.#scheduleTick();
      this.#expireLeases();
    });
  }

  /** On the leader, once a tick: leases past their deadline are revoked through the log. */
  #expireLeases(): void {
    if (this.#o.unsafe?.unsafeExpireByFollowerClock && this.#core.role !== 'leader') {
      // The deliberately broken variant: this follower's own wall clock, from the grant, unaware of renewals.
      const wall = this.#o.clock.now().wallMs;
      const due = this.#machine.leases().filter((l) => !this.#followerExpired.has(l.id) && wall >= l.grantedWallMs + l.ttlMs).map((l) => l.id);
      for (const id of due) this.#followerExpired.add(id);
      if (due.length > 0) this.#o.onFollowerExpiry?.(due);
    }
    if (this.#core.role !== 'leader') return;
    for (;;) {
      const due = this.#keeper.due(this.#o.scheduler.nowMs(), EXPIRE_BATCH);
      if (due.length === 0) return;
      try {
        this.#propose({ leaseRevoke: { ids: due.map(BigInt), expired: true } }, 10 * this.#timing.tickMs * this.#timing.electionTicks).catch(() => this.#keeper.retry(due));
      } catch {
        this.#keeper.retry(due);
        return;
      }
    }
  }

  /**
   * The leader compacts history older than the retention, through the log (etcd's periodic and
   * revision compactors do the same). Followers keep no samples: a new leader starts sampling when
   * it takes over, so compaction by age waits one retention period after a change of leader.
   */
  #scheduleRetention(): void {
    if (this.#closed || this.#failed !== undefined) return;
    this.#retentionTimer = this.#o.scheduler.setTimer(RETENTION_CHECK_MS, () => {
      this.#scheduleRetention();
      if (this.#core.role !== 'leader') {
        this.#revisionSamples = [];
        return;
      }
      const now = this.#o.scheduler.nowMs();
      const head = this.#machine.revision;
      this.#revisionSamples.push({ atMs: now, revision: head });
      let byAge = 0;
      while (this.#revisionSamples.length > 0 && now - this.#revisionSamples[0]!.atMs >= this.#retention.ms) byAge = this.#revisionSamples.shift()!.revision;
      const target = Math.max(byAge, head - this.#retention.revisions);
      const current = Math.max(this.#state.history.compactRevision, this.#compactionProposed);
      // By count, in steps of 1% of the revisions kept; by age, whenever the oldest kept is too old.
      const step = Math.max(1, Math.floor(this.#retention.revisions / 100));
      if (byAge <= current && target - current < step) return;
      this.#compactionProposed = target;
      this.compact(target, RETENTION_CHECK_MS * 10).catch(() => (this.#compactionProposed = 0));
    });
  }

  /** Runs the Ready loop soon, once for everything that arrives in this turn (group commit). */
  #kick(): void {
    if (this.#drainScheduled || this.#draining) return;
    this.#drainScheduled = true;
    this.#o.scheduler.runSoon(() => {
      this.#drainScheduled = false;
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#draining || this.#failed !== undefined || this.#closed) return;
    this.#draining = true;
    try {
      while (this.#core.hasReady() && !this.#closed) {
        const ready = this.#core.ready();
        // A leader sends its appends while it writes them (thesis §10.2.1), so its own sync and
        // its followers' overlap instead of adding up. Safe because nothing it sends promises what
        // this write holds: a vote or a term it has not synced (excluded: then it waits as anyone
        // does), or a commit index covering these entries — the core counts an entry committed
        // when followers acknowledge it, but that commit index only leaves this node in a later
        // Ready, which is taken after this write is durable; the entries are applied then too.
        const sendFirst = this.#core.role === 'leader' && !this.#changesVote(ready);
        if (sendFirst) this.#send(ready.messages);
        // Committed entries this node already holds on disk, and that this Ready's write does not
        // replace, are applied before the write instead of after it: committed means a majority
        // holds them, and the local copy is durable, so the state never runs ahead of the log on
        // disk. A follower then applies a write (and its watchers hear it) as soon as the commit
        // index arrives, not after the fsync of the next entries that came with it; etcd's
        // followers, too, hand committed entries to their apply loop before their WAL write.
        const stableThrough = ready.snapshot !== undefined ? 0 : Math.min(this.#durableLastIndex, (ready.entries[0]?.index ?? Infinity) - 1);
        let early = 0;
        while (early < ready.committed.length && ready.committed[early]!.index <= stableThrough) this.#apply(ready.committed[early++]!);
        if (early > 0) this.#machine.checkpoint();
        await this.#persist(ready);
        if (ready.snapshot !== undefined) this.#durableLastIndex = ready.snapshot.meta.index;
        if (ready.entries.length > 0) this.#durableLastIndex = ready.entries[ready.entries.length - 1]!.index;
        if (ready.snapshot !== undefined) {
          this.#machine.reload();
          this.#transfers.finished();
          this.#snapshotIndex = ready.snapshot.meta.index;
          this.#appliedBytesSinceCompaction = 0;
          this.stats.snapshotsInstalled++;
        }
        if (!sendFirst) this.#send(ready.messages);
        for (let i = early; i < ready.committed.length; i++) this.#apply(ready.committed[i]!);
        // In the same synchronous run as the applies' writes: one commit holds them and the index.
        this.#machine.checkpoint();
        this.#core.advance(ready);
        this.#noteSoftState(ready);
        if (ready.hardState !== undefined || ready.entries.length > 0 || ready.snapshot !== undefined) this.#noteMembership();
        for (const rs of ready.readStates) {
          const read = this.#reads.get(rs.requestId);
          if (read !== undefined) read.index = rs.index;
        }
        this.#answerReads();
        await this.#maybeSnapshot();
      }
    } catch (error: unknown) {
      this.#fail(error);
    } finally {
      this.#draining = false;
    }
  }

  /** True when the Ready's hard state moves the term or the vote: it must be durable before anything is sent. */
  #changesVote(ready: Ready): boolean {
    const hs = ready.hardState;
    return hs !== undefined && (hs.term !== this.#durableVote.term || hs.vote !== this.#durableVote.vote);
  }

  async #persist(ready: Ready): Promise<void> {
    const hs = ready.hardState;
    const voteChanged = this.#changesVote(ready);
    // A Ready that only moves the commit index writes nothing: Raft does not need the commit index
    // durable (a restarted node learns it from the leader again, and its applied state is on disk),
    // and a sync for it would put a third fsync in every write's path. etcd's MustSync skips the
    // same. The commit index rides along with the next write that must sync.
    if (!voteChanged && ready.entries.length === 0 && ready.snapshot === undefined) return;
    if (hs !== undefined) this.#durableVote = { term: hs.term, vote: hs.vote };
    const started = this.#o.scheduler.nowMs();
    if (ready.snapshot !== undefined) {
      const staged = this.#transfers.staged(ready.snapshot.meta);
      if (staged === undefined) throw new Error(`the Raft core handed out snapshot ${ready.snapshot.meta.index} that was not staged`);
      // The switch to the staged state and the log's snapshot record are issued in one run, so
      // they commit together: a crash leaves the old state with the old log, or the new with the new.
      this.#state.install({ appliedIndex: ready.snapshot.meta.index, appliedTerm: ready.snapshot.meta.term, revision: staged.revision, lastStamp: staged.lastStamp, compactRevision: staged.compactRevision });
      // The history of this node now starts at the snapshot, at once: watchers that needed what
      // came between end now, before anything (a progress notification) could speak for the new
      // head in their name; they are told to watch again from another node.
      this.#hub.reset();
    }
    await this.#o.log.save({ hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot });
    this.stats.syncs++;
    this.stats.syncMs += this.#o.scheduler.nowMs() - started;
    this.stats.entriesPersisted += ready.entries.length;
  }

  #send(messages: readonly RaftMessage[]): void {
    const byPeer = new Map<RaftNodeId, RaftMessage[]>();
    for (const m of messages) {
      if (m.type === 'snapshot') {
        // The core's snapshot message holds no state (see open): the state streams from the store.
        this.stats.snapshotsSent++;
        this.#transfers.send(m.to, m.term);
        continue;
      }
      const list = byPeer.get(m.to);
      if (list === undefined) byPeer.set(m.to, [m]);
      else list.push(m);
    }
    for (const [peer, list] of byPeer) this.#o.send(peer, list);
  }

  #apply(entry: LogEntry): void {
    let response: ProposalResult | LeaseNotFound | undefined;
    this.#appliedBytesSinceCompaction += entry.data.byteLength;
    const command = entry.kind === 'command' ? this.#decodeCommand(entry) : undefined;
    if (command?.txn !== undefined) response = this.#machine.apply(entry.index, entry.term, command.txn, command.version);
    else if (command?.compact !== undefined) response = { compactRevision: this.#machine.compact(entry.index, entry.term, command.compact), revision: this.#machine.revision };
    else if (command?.leaseGrant !== undefined) {
      response = this.#machine.grantLease(entry.index, entry.term, command.leaseGrant, command.version);
      if (response !== undefined) this.#keeper.granted(response.id, response.ttlMs, this.#o.scheduler.nowMs());
    } else if (command?.leaseRevoke !== undefined) {
      response = this.#machine.revokeLeases(entry.index, entry.term, command.leaseRevoke.ids, command.version);
      if (command.leaseRevoke.expired && response !== undefined) this.stats.leasesExpired += response.revoked.length;
      this.#keeper.revoked(command.leaseRevoke.ids);
    } else {
      this.#machine.skip(entry.index, entry.term);
      if (entry.kind === 'config') response = { membership: decodeMembership(entry.data), index: entry.index };
    }
    const waiting = this.#proposals.get(entry.index);
    if (waiting === undefined) return;
    this.#proposals.delete(entry.index);
    waiting.timer.cancel();
    if (waiting.term === entry.term && response !== undefined) {
      this.stats.commits++;
      this.stats.commitMs += this.#o.scheduler.nowMs() - waiting.proposedAt;
      if ('leaseNotFound' in response) waiting.reject(leaseNotFound(response.leaseNotFound));
      else waiting.resolve(response);
    } else {
      // Another leader's entry took the index: ours was cut from the log and can never commit.
      waiting.reject(unavailable('LEADER_CHANGED', `leadership of ${this.#o.keyspace} changed before the write was committed; it was not applied`));
    }
  }

  /**
   * The command of a committed entry, or undefined for one that holds none this version can run.
   * Such an entry is skipped, the same on every replica (the log is the same), and logged: only a
   * newer version's command or a forged entry can be one, and stopping every replica that applies
   * it, again after each restart, would turn one bad entry into a lost keyspace.
   */
  #decodeCommand(entry: LogEntry): { txn?: TxnRequest; compact?: number; leaseGrant?: number; leaseRevoke?: { ids: number[]; expired: boolean }; version: ReturnType<typeof versionFromWire> } | undefined {
    try {
      const command = RaftCommand.decode(entry.data);
      const version = versionFromWire(command.version, `log entry ${entry.index}'s version`);
      if (command.compact !== undefined) return { compact: Number(command.compact.revision), version };
      if (command.leaseGrant !== undefined) return { leaseGrant: Number(command.leaseGrant.ttlMs), version };
      if (command.leaseRevoke !== undefined) return { leaseRevoke: { ids: command.leaseRevoke.ids.map(Number), expired: command.leaseRevoke.expired }, version };
      if (command.txn === undefined) throw new Error('it holds no transaction');
      return { txn: command.txn, version };
    } catch (error: unknown) {
      this.#o.logger.error(`the Raft group of ${this.#o.keyspace} skipped log entry ${entry.index}: it holds no command this version can run`, { error: String(error) });
      return undefined;
    }
  }

  #answerReads(): void {
    if (this.#revisionWaiters.size > 0) for (const w of [...this.#revisionWaiters]) if (this.#machine.revision >= w.revision) w.done(true);
    for (const [id, read] of this.#reads) {
      if (read.index === undefined || read.index > this.#machine.appliedIndex) continue;
      this.#reads.delete(id);
      read.timer.cancel();
      try {
        read.resolve(read.answer());
      } catch (error) {
        read.reject(error);
      }
    }
  }

  #noteSoftState(ready: Ready): void {
    const soft = ready.softState;
    if (soft === undefined) return;
    if (soft.leader !== this.#leader && soft.leader !== undefined) this.stats.leaderChanges++;
    const wasLeader = this.#role === 'leader';
    this.#role = soft.role;
    this.#leader = soft.leader;
    if (this.#leader !== undefined) for (const wake of [...this.#leaderWaiters]) wake();
    // Lease deadlines are the leader's alone (lease-keeper.ts): a new leader gives every lease
    // its TTL plus one election time (the longest an election takes) from now.
    if (!wasLeader && soft.role === 'leader') this.#keeper.lead(this.#machine.leases(), this.#o.scheduler.nowMs(), 2 * this.#timing.electionTicks * this.#timing.tickMs);
    if (wasLeader && soft.role !== 'leader') this.#keeper.stepDown();
    if (wasLeader && soft.role !== 'leader') {
      this.#transfers.stopSending();
      // A deposed leader cannot confirm reads any more: they fail now (nothing was read) rather
      // than at their deadline. Its uncommitted proposals may still commit under the next leader,
      // or be cut from the log: their callers learn now that the outcome is unknown, as etcd's
      // "leader changed", instead of waiting out their deadline.
      for (const [id, read] of this.#reads) {
        this.#reads.delete(id);
        read.timer.cancel();
        read.reject(unavailable('LEADER_CHANGED', `this node stopped leading ${this.#o.keyspace} before the read was confirmed; nothing was read`));
      }
      for (const [index, proposal] of this.#proposals) {
        this.#proposals.delete(index);
        proposal.timer.cancel();
        proposal.reject(outcomeUnknown('LEADER_CHANGED', `this node stopped leading ${this.#o.keyspace} before the write at index ${index} was committed; it may still be`));
      }
    }
  }

  /**
   * Compacts the log through the applied index once enough was applied since the last time: the
   * state is on disk already, so this waits for its last commit (the log must keep what the
   * state on disk does not cover) and drops the log through it.
   */
  async #maybeSnapshot(): Promise<void> {
    const applied = this.#machine.appliedIndex;
    if (applied - this.#snapshotIndex < this.#timing.snapshotEvery && this.#appliedBytesSinceCompaction < this.#timing.compactAfterBytes) return;
    if (applied <= this.#snapshotIndex) return;
    const term = this.#machine.appliedTerm;
    await this.#state.flush();
    await this.#o.log.compact({ meta: snapshotMeta(applied, term, this.#core.membershipAt(applied)), data: EMPTY });
    this.#core.compact(applied, EMPTY);
    this.#snapshotIndex = applied;
    this.#appliedBytesSinceCompaction = 0;
    this.stats.snapshotsTaken++;
  }

  #fail(error: unknown): void {
    // After close (a crash in the simulation fences the disk under a write in flight) nothing is reported.
    if (this.#failed !== undefined || this.#closed) return;
    this.#failed = error;
    this.#tick?.cancel();
    this.#retentionTimer?.cancel();
    this.#hub.close(unavailable('NODE_STOPPING', `this node stopped serving ${this.#o.keyspace}; watch again through another node`));
    this.#transfers.close();
    this.#state.close();
    // Mostly a durable write that failed; whatever it was, the group cannot go on without it.
    this.#o.logger.error(`the Raft group of ${this.#o.keyspace} stopped: ${error instanceof Error ? error.message : String(error)}`, { error: String(error) });
    for (const [, p] of this.#proposals) (p.timer.cancel(), p.reject(outcomeUnknown('STORAGE_FAILED', 'a durable write failed after the write was proposed; it may still commit on the other nodes')));
    for (const [, r] of this.#reads) (r.timer.cancel(), r.reject(unavailable('STORAGE_FAILED', 'this node stopped after a storage failure; nothing was read')));
    this.#proposals.clear();
    this.#reads.clear();
    this.#o.onFailure(error);
  }
}

export function leaseNotFound(id: number): ReplikitError {
  return notFound('LEASE_NOT_FOUND', `lease ${id} does not exist: it expired or was revoked (or was never granted); grant a new lease and attach its keys again`, { lease: String(id) });
}

/** Rejects what a replica was never meant to be asked (a guard for the transport's dispatch). */
export function notForRaft(what: string): ReplikitError {
  return invalidArgument('NOT_A_RAFT_CALL', `${what} is not served by CP keyspaces, which replicate through their Raft log`);
}

function describeChange(change: MembershipChange): string {
  return change.type === 'addLearner' ? `adding ${change.id}` : change.type === 'promote' ? `promoting ${change.id}` : `removing ${change.id}`;
}
