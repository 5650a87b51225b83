import { HybridLogicalClock, repeatEvery, type Scheduler, type TimerHandle, type WallClock } from '../clock/index.js';
import { failedPrecondition, invalidArgument, notFound, ReplikitError, unavailable } from '../errors.js';
import type { LeaseAnswer, LeaseCall } from '../gen/replikit/v1/replica_service.js';
import type { Logger } from '../logging/logger.js';
import type {
  ConsistencyPolicy,
  KeyspacePolicy,
  LivenessOracle,
  OperationOptions,
  PolicyName,
  ReadResult,
  RangeResult,
  CompactResult,
  WriteResult,
} from '../policy/policy.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import type { Store } from '../storage/store.js';
import type { RaftLogStore } from '../storage/raft-log-store.js';
import type { TxnRequest, TxnResponse } from '../gen/replikit/v1/kv_service.js';
import type { RaftMessage } from '../raft/types.js';
import type { DigestAnswer, ProbeAnswer, ReplicaHandler, ReplicaSet, SnapshotPage } from '../transport/replica-set.js';
import { majority } from '../policy/majority.js';
import type { Watcher } from '../policy/watch/watch-hub.js';
import { checkRange, checkWatch, encodeContinuation, keyRangeOf, RANGE_PAGE_BYTES, type RangeArgs, type WatchArgs } from './range-watch-args.js';
import { ClockHighWaterStore } from './clock-high-water.js';
import { ENTRY_OVERHEAD_BYTES, entryBytes } from '../storage/entry-size.js';
import { FailStopStore } from './fail-stop-store.js';
import { sessionTokenCodec, type SessionCodec } from '../transport/session-token.js';
import { BatchingReplicaSet } from '../transport/batching-replica-set.js';
import { NODE_DEFAULTS, type PeerConfig } from './config.js';
import { KeyspaceHandle } from './keyspace-handle.js';
import { latin1 } from '../storage/key-text.js';
import { clusterMembershipOf, decodeContext, encodeContext, SYSTEM_KEYSPACE, type ClusterMembership, type MembershipContext } from './cluster-membership.js';
import { cpQuorum, CpRaftKeyspace } from '../policy/cp/cp-quorum.js';
import type { MembershipResult, RaftGroup } from '../policy/cp/raft-group.js';
import type { Membership, MembershipChange } from '../raft/membership.js';
import { promoteLag, RAFT_DEFAULTS } from '../raft/raft-core.js';
import { MemoryRaftLogStore } from '../storage/memory-raft-log-store.js';
import type { MemberProgress } from '../transport/replica-set.js';
import type { PolicyContext } from '../policy/policy.js';

/** What a node runs on, injected: real gRPC and time, or an in-memory network on virtual time. */
export interface NodeRuntime {
  readonly replicas: ReplicaSet;
  readonly scheduler: Scheduler;
  readonly wallClock: WallClock;
  readonly store: Store;
  readonly logger: Logger;
  readonly liveness: LivenessOracle;
  /** The node's HLC; created from `wallClock` when absent. */
  readonly clock?: HybridLogicalClock;
  /**
   * The Raft log store of a CP keyspace on this node (on the same disk as `store`). Required when
   * the node has CP keyspaces.
   */
  readonly raftLog?: (keyspace: string) => RaftLogStore;
  /** Random numbers for Raft's election timeouts: seeded in the simulation; Math.random by default. */
  readonly random?: () => number;
  /**
   * Called once when the store fails (a failed sync): the node has stopped acknowledging and the
   * process should exit; a simulation crashes the node.
   */
  readonly onFatal?: (error: unknown) => void;
  /** Called whenever the node's phase or what it waits for changes (health listens). */
  readonly onPhaseChange?: (phase: NodePhase) => void;
  /**
   * Called when the cluster's membership changed (see cluster-membership.ts): `peers` is every
   * member but this node with its address (learners and members being added included), `voters`
   * the committed voters. The failure detector and the identity checks follow it.
   */
  readonly onMembershipChange?: (change: {
    readonly peers: readonly PeerConfig[];
    readonly voters: readonly string[];
    readonly membership: ClusterMembership;
    /** Every node whose peer calls are still taken: the peers, and members that left a moment ago (their last acknowledgements). */
    readonly known: readonly string[];
  }) => void;
}

/**
 * Where a node stands. `starting`: its store holds no identity, and it is asking its peers whether
 * the cluster is new or has history. `recovering`: it lost its state (or never had it) in a
 * cluster with history, and copies the others' before it serves or counts toward any quorum.
 * `serving`. `failed`: its store failed; it answers nothing until restarted.
 */
export type NodePhase = 'starting' | 'recovering' | 'serving' | 'failed';

/** The metadata under which a node keeps its identity once it belongs to a cluster. */
export const IDENTITY_META = 'node.identity';

/** The identity record a node keeps once it belongs to a cluster (see {@link IDENTITY_META}). */
export function identityRecord(nodeId: string, clusterId: string): Uint8Array {
  return Buffer.from(JSON.stringify({ nodeId, clusterId }));
}
/** Set (durably) once a new node has seen every peer new too: the cluster is forming. */
export const FORMING_META = 'node.forming';
/** How long one probe or snapshot page may take, and the pause between rounds that fell short. */
const PROBE_TIMEOUT_MS = 500;
const SNAPSHOT_TIMEOUT_MS = 2_000;
const RETRY_PAUSE_MS = 200;
/** Distinct keys a Read answer reads from the store at a time (see #answerWithinBudget). */
const READ_CHUNK_KEYS = 16;
const FORMING_PAUSE_MS = 10;
/**
 * Client requests that may wait at once for a starting or recovering node; beyond it they fail at
 * once. Each waiter is a closure and a timer, so 10,000 cost about a megabyte.
 */
export const MAX_SERVE_WAITERS = 10_000;

/** The settled configuration a node core runs with (defaults applied, validated). */
export interface NodeSettings {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly peers: readonly PeerConfig[];
  readonly keyspaces: Readonly<Record<string, ConsistencyPolicy>>;
  readonly requestTimeoutMs: number;
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  readonly maxBatchEntries: number;
  readonly maxBatchBytes: number;
  readonly maxClockOffsetMs: number;
  /** Keys the HMAC of session tokens; see sessionTokenCodec. */
  readonly sessionSecret?: string;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: a node whose store is empty serves at
   * once, as if the cluster were new, instead of recovering the others' state first. The
   * simulation must catch this variant (a wiped replica counting toward quorums).
   * @default false
   */
  readonly unsafeSkipRecovery?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: the HLC starts from the wall clock
   * alone, ignoring the high-water mark the store keeps, so a node restarted with its clock
   * stepped back mints versions older than its earlier ones. The simulation must catch it.
   * @default false
   */
  readonly unsafeIgnoreClockHighWater?: boolean;
  /** Where peers reach this node, HOST:PORT (recorded in the cluster's membership). @default '' */
  readonly selfAddress?: string;
  /**
   * This node joins a running cluster with an empty store (`serve --join`): it was added as a
   * learner and learns the membership from the cluster's leaders; it copies the AP and causal
   * state of its peers before it serves, and, being new, votes once promoted.
   */
  readonly join?: boolean;
  /**
   * The membership's leader promotes each learner by itself as soon as it has caught up (as
   * `promoteMember` would accept), instead of waiting for an operator's command. Give it to every
   * node: whichever leads the membership acts. @default false
   */
  readonly autoPromote?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: a learner is promoted without asking
   * how far it has caught up, and CP keyspaces promote it however far behind. The simulation
   * must catch this variant.
   */
  readonly unsafePromoteLagging?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: the system keyspace takes a
   * membership change while another is uncommitted (no joint consensus). The simulation must
   * catch this variant.
   */
  readonly unsafeOverlappingChanges?: boolean;
}

/** What the membership calls answer: the committed membership, with its version. */
export interface MembershipAnswer {
  readonly clusterId: string;
  readonly membership: ClusterMembership;
}

/**
 * How far (in log entries) a learner may trail the commit index of a CP keyspace and still be
 * promoted: one append's worth, which it receives in one round trip (RAFT_DEFAULTS.maxPromoteLagEntries).
 */
const PROMOTE_LAG_ENTRIES = RAFT_DEFAULTS.maxPromoteLagEntries;
/** How often the membership's leader looks for a learner to promote, with autoPromote: a few times per catch-up. */
const AUTO_PROMOTE_CHECK_MS = 500;
/** How long asking a learner for its progress may take. */
const PROGRESS_TIMEOUT_MS = 2_000;
/**
 * How long a member that left stays connected: its last messages (the heartbeat that tells it of
 * its removal) are sent within a round trip of the commit; two seconds cover a loaded machine.
 */
export const DEPARTURE_GRACE_MS = 2_000;

/** Per-call options of the embedding API. */
export interface CallOptions {
  /** Milliseconds before the call fails; the node's `requestTimeoutMs` when absent. */
  readonly timeoutMs?: number;
  /** The causal context of an earlier response. */
  readonly sessionToken?: Uint8Array;
  /** AP keyspaces: replicas that must hold a write before it is acknowledged. */
  readonly ack?: OperationOptions['ack'];
  /** Aborted when the caller gives up (a cancelled gRPC call): waits end at once. */
  readonly signal?: AbortSignal;
  /** CP keyspaces: how a read is answered (linearizable by default). */
  readonly consistency?: OperationOptions['consistency'];
  /** CP keyspaces: the lease a put attaches its key to (deleted when it ends); 0 or absent for none. */
  readonly lease?: number;
}

/**
 * Set once a node recovered from a lost disk in a cluster with history: its CP keyspaces' Raft
 * groups never vote or campaign again from this disk (it forgot its votes; see failure-model.md).
 */
export const RAFT_NO_VOTE_META = 'raft.no-vote';

/**
 * The heart of a replica: keyspaces bound to policies over one store, one HLC and one replica set.
 * It validates every client request and every peer request before a policy sees it. It knows
 * nothing of gRPC: `startNode` wires it to real sockets, simulations to an in-memory network.
 */
export class NodeCore implements ReplicaHandler {
  readonly settings: NodeSettings;
  readonly clock: HybridLogicalClock;
  readonly runtime: NodeRuntime;
  readonly sessions: SessionCodec;
  /** The peers as the policies reach them: batched. */
  readonly replicas: BatchingReplicaSet;
  /** The store as the policies use it: fail-stop, keeping the clock's high-water mark. */
  readonly store: Store;
  readonly #policies = new Map<string, { name: PolicyName; policy: KeyspacePolicy }>();
  /** The system keyspace: the cluster's membership (see cluster-membership.ts). */
  readonly #system: CpRaftKeyspace;
  /** The membership as this node's system keyspace committed it. */
  #membership: ClusterMembership;
  /** This node was a member and the committed membership no longer names it. */
  #removed = false;
  /** What the keyspaces follow (see #followMembership); undefined until the system keyspace said. */
  #policyMembers: { readonly voters: readonly string[]; readonly learners: readonly string[] } | undefined;
  /** Where peers reach this node (see advertise). */
  #selfAddress: string;
  /** The members this node reaches now (see #followMembership). */
  #connected: readonly PeerConfig[];
  /** Members that left, reachable until DEPARTURE_GRACE_MS after they did, by id → address. */
  readonly #departed = new Map<string, string>();
  #closed = false;
  #phase: NodePhase;
  /** Why the node is not serving yet, for logs, health and Status. */
  #waitingFor = '';
  #started: Promise<void> | undefined;
  #serving: Promise<void> | undefined;
  #opened: Promise<void> | undefined;
  /** Client requests waiting for the node to serve (see #whenServing). */
  readonly #serveWaiters = new Set<(served: boolean) => void>();

  constructor(settings: NodeSettings, runtime: NodeRuntime) {
    this.settings = settings;
    this.runtime = runtime;
    const highWater = new ClockHighWaterStore(runtime.store);
    this.store = new FailStopStore(highWater, (error) => this.#failStop(error));
    this.clock = runtime.clock ?? new HybridLogicalClock(runtime.wallClock);
    // Versions minted from now on order after every version this store ever held.
    if (highWater.highWater !== undefined && !settings.unsafeIgnoreClockHighWater) this.clock.update(highWater.highWater);
    this.#phase = this.#readIdentity() ? 'serving' : 'starting';
    this.sessions = sessionTokenCodec(settings.clusterId, settings.sessionSecret);
    const replicaIds = [settings.nodeId, ...settings.peers.map((p) => p.id)];
    // Calls to one peer issued in the same turn travel as one batch (see BatchingReplicaSet).
    this.replicas = new BatchingReplicaSet(runtime.replicas, runtime.scheduler, { maxBatchEntries: settings.maxBatchEntries, maxBatchBytes: settings.maxBatchBytes });
    this.#selfAddress = settings.selfAddress ?? '';
    this.#connected = settings.peers;
    const formedWith: MembershipContext = {
      version: 0,
      addresses: Object.fromEntries([[settings.nodeId, settings.selfAddress ?? ''], ...settings.peers.map((p) => [p.id, p.address])]),
      removed: [],
    };
    this.#membership = { ...formedWith, voters: replicaIds, learners: [], members: replicaIds.map((id) => ({ id, address: formedWith.addresses[id] ?? '', role: 'voter' as const })) };
    const raftLog = runtime.raftLog ?? (() => new MemoryRaftLogStore());
    this.#system = cpQuorum({ unsafePromoteLagging: settings.unsafePromoteLagging, unsafeOverlappingChanges: settings.unsafeOverlappingChanges }).create({
      ...this.#policyContext(SYSTEM_KEYSPACE, replicaIds, () => raftLog(SYSTEM_KEYSPACE)),
      joining: settings.join,
      membershipContext: encodeContext(formedWith),
      onMembership: (inEffect, committed) => this.#followMembership(inEffect, committed),
    }) as CpRaftKeyspace;
    for (const [name, policy] of Object.entries(settings.keyspaces)) {
      this.#policies.set(name, {
        name: policy.name,
        policy: policy.create({
          ...this.#policyContext(name, replicaIds, runtime.raftLog === undefined ? undefined : () => runtime.raftLog!(name)),
          joining: settings.join,
        }),
      });
    }
  }

  #policyContext(name: string, replicaIds: readonly string[], raftLog: (() => RaftLogStore) | undefined): PolicyContext {
    const { settings, runtime } = this;
    return {
          keyspace: name,
          selfId: settings.nodeId,
          replicaIds,
          store: this.store,
          replicas: this.replicas,
          clock: this.clock,
          scheduler: runtime.scheduler,
          liveness: runtime.liveness,
          logger: runtime.logger,
          sessions: this.sessions,
          limits: { maxBatchEntries: settings.maxBatchEntries, maxBatchBytes: settings.maxBatchBytes },
          valueLimits: { maxKeyBytes: settings.maxKeyBytes, maxValueBytes: settings.maxValueBytes },
          raftLog,
          random: runtime.random ?? Math.random,
          onFatal: (error) => this.#failStop(error),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Membership (see cluster-membership.ts)

  /** The cluster's membership as this node's system keyspace committed it. */
  get membership(): ClusterMembership {
    return this.#membership;
  }

  /**
   * Where peers reach this node, once known (a node listening on port 0 learns its port when it
   * binds): every membership change this node makes records it.
   */
  advertise(address: string): void {
    this.#selfAddress = address;
  }

  /** The members' addresses as of `current`, with this node's own as it knows it best. */
  #addressesWithSelf(current: ClusterMembership): Record<string, string> {
    const addresses = { ...current.addresses };
    if (this.#selfAddress !== '' && current.members.some((m) => m.id === this.settings.nodeId)) addresses[this.settings.nodeId] = this.#selfAddress;
    return addresses;
  }

  /** True once the committed membership no longer names this node: it serves nothing more. */
  get removed(): boolean {
    return this.#removed;
  }

  /** The system keyspace's Raft group, once open (Status, tests). */
  get systemGroup(): RaftGroup | undefined {
    return this.#system.group;
  }

  /**
   * Adds `id` at `address` as a learner. On the system keyspace's leader only: elsewhere it throws
   * UNAVAILABLE `NOT_MEMBERSHIP_LEADER` naming the leader and its address, for the caller to
   * forward (ClusterService does). `clusterId`, when given, must be this cluster's.
   */
  async addMember(id: string, address: string, options: CallOptions & { readonly clusterId?: string } = {}): Promise<MembershipAnswer> {
    if (options.clusterId !== undefined && options.clusterId !== '' && options.clusterId !== this.settings.clusterId) {
      this.runtime.logger.warn(`refused to add ${id} at ${address}: it asked to join cluster ${JSON.stringify(options.clusterId)}, this is ${JSON.stringify(this.settings.clusterId)}`, { member: id, address, clusterId: options.clusterId });
      throw failedPrecondition('CLUSTER_ID_MISMATCH', `${id} asked to join cluster ${JSON.stringify(options.clusterId)}, but this is cluster ${JSON.stringify(this.settings.clusterId)}; nothing was changed: give it the right --cluster-id, or join the other cluster`, { member: id });
    }
    checkMemberId(id);
    checkAddress(address);
    const group = await this.#membershipLeader(options);
    const current = clusterMembershipOf(group.membership);
    const existing = current.members.find((m) => m.id === id);
    if (existing !== undefined) throw failedPrecondition('MEMBER_EXISTS', `${id} is already a ${existing.role} of the cluster (at ${existing.address}); nothing was changed`, { member: id });
    const sameAddress = Object.entries(this.#addressesWithSelf(current)).find(([, a]) => a === address)?.[0];
    if (sameAddress !== undefined) throw failedPrecondition('ADDRESS_IN_USE', `${address} is already the address of member ${sameAddress}; nothing was changed: remove ${sameAddress} first, or give the new node another address`, { member: id, address });
    if (current.removed.includes(id)) {
      throw failedPrecondition('MEMBER_REMOVED_BEFORE', `${id} was a member and was removed; a node never comes back under a removed id (its old votes could count twice): start the new node with another id; nothing was changed`, { member: id });
    }
    const context = encodeContext({ version: current.version + 1, addresses: { ...this.#addressesWithSelf(current), [id]: address }, removed: current.removed });
    return this.#change(group, { type: 'addLearner', id }, context, options);
  }

  /**
   * Makes the learner `id` a voter, once it has caught up: it serves (its AP and causal state is
   * copied) and has applied every CP keyspace's log to within PROMOTE_LAG_ENTRIES of what this
   * node knows committed. FAILED_PRECONDITION `MEMBER_BEHIND` otherwise. On the leader only (see addMember).
   */
  async promoteMember(id: string, options: CallOptions = {}): Promise<MembershipAnswer> {
    checkMemberId(id);
    const group = await this.#membershipLeader(options);
    const current = clusterMembershipOf(group.membership);
    if (current.voters.includes(id)) throw failedPrecondition('ALREADY_VOTER', `${id} is already a voter; nothing was changed`, { member: id });
    if (!current.learners.includes(id)) throw unknownMember(id, current);
    if (!this.settings.unsafePromoteLagging) await this.#checkCaughtUp(id, options);
    const context = encodeContext({ version: current.version + 1, addresses: this.#addressesWithSelf(current), removed: current.removed });
    return this.#change(group, { type: 'promote', id }, context, options);
  }

  /**
   * Removes the voter or learner `id`. Refused when the voters left would not include a majority
   * the failure detector believes alive (the cluster would stop), and for the last voter. On the
   * leader only (see addMember).
   */
  async removeMember(id: string, options: CallOptions = {}): Promise<MembershipAnswer> {
    checkMemberId(id);
    const group = await this.#membershipLeader(options);
    const current = clusterMembershipOf(group.membership);
    if (!current.members.some((m) => m.id === id)) throw unknownMember(id, current);
    const voters = current.voters.filter((v) => v !== id);
    if (voters.length === 0) throw failedPrecondition('LAST_VOTER', `${id} is the last voter: a cluster needs at least one; nothing was changed`, { member: id });
    const alive = voters.filter((v) => v === this.settings.nodeId || this.runtime.liveness.isAlive(v));
    if (alive.length < majority(voters.length)) {
      throw failedPrecondition(
        'NO_LIVE_MAJORITY',
        `removing ${id} would leave ${voters.length} voters (${voters.join(', ')}) of which ${alive.length} are alive, and a majority needs ${majority(voters.length)}: the cluster would stop; nothing was changed (bring members back first)`,
        { member: id },
      );
    }
    const addresses = Object.fromEntries(Object.entries(this.#addressesWithSelf(current)).filter(([member]) => member !== id));
    const context = encodeContext({ version: current.version + 1, addresses, removed: [...current.removed, id] });
    return this.#change(group, { type: 'remove', id }, context, options);
  }

  async #membershipLeader(options: CallOptions): Promise<RaftGroup> {
    const timeoutMs = options.timeoutMs ?? this.settings.requestTimeoutMs;
    await this.#whenServing(this.#operationOptions(options));
    const group = this.#system.group;
    if (group === undefined) throw unavailable('NOT_OPEN', 'the system keyspace is still loading its log on this node; retry');
    if (group.role !== 'leader') {
      // An election may be under way: give it most of the caller's time before answering.
      const until = this.runtime.scheduler.nowMs() + Math.min(timeoutMs * 0.5, 2_000);
      while (group.leader === undefined && this.runtime.scheduler.nowMs() < until) await group.waitForLeader(100, options.signal);
      if ((group.role as string) === 'leader') return group;
      const leader = group.leader;
      throw unavailable(
        'NOT_MEMBERSHIP_LEADER',
        leader === undefined
          ? "the cluster's membership has no leader now (an election is under way, or no majority is reachable); nothing was changed: retry"
          : `membership changes go through ${leader}, the leader of the cluster's membership; nothing was changed here`,
        { leader: leader ?? '', leader_address: leader === undefined ? '' : (this.#membership.addresses[leader] ?? '') },
      );
    }
    return group;
  }

  async #change(group: RaftGroup, change: MembershipChange, context: string, options: CallOptions): Promise<MembershipAnswer> {
    const timeoutMs = options.timeoutMs ?? this.settings.requestTimeoutMs;
    const { scheduler } = this.runtime;
    const until = scheduler.nowMs() + timeoutMs / 2;
    let result: MembershipResult;
    for (;;) {
      try {
        result = await group.changeMembership(change, context, Math.max(1, timeoutMs - (scheduler.nowMs() - (until - timeoutMs / 2))), options.signal);
        break;
      } catch (error) {
        // A leader elected a moment ago commits its first entry within a round trip: wait for it.
        if (!(error instanceof ReplikitError && error.reason === 'LEADER_NOT_READY') || scheduler.nowMs() >= until) throw error;
        await this.#pause(20);
      }
    }
    this.runtime.logger.info(`membership changed: ${change.type} ${change.id}`, { change: change.type, member: change.id, version: decodeContext(result.membership.context).version });
    return { clusterId: this.settings.clusterId, membership: clusterMembershipOf(result.membership) };
  }

  async #checkCaughtUp(id: string, options: CallOptions): Promise<void> {
    let progress: MemberProgress;
    try {
      progress = await this.replicas.progress(id, Math.min(PROGRESS_TIMEOUT_MS, options.timeoutMs ?? this.settings.requestTimeoutMs));
    } catch (error) {
      throw failedPrecondition('MEMBER_BEHIND', `${id} did not say how far it has caught up (${describeError(error)}); nothing was changed: promote it once it is running and reachable`, { member: id });
    }
    if (!progress.serving) throw failedPrecondition('MEMBER_BEHIND', `${id} is still copying its peers' state; nothing was changed: promote it once it serves`, { member: id });
    const groups: [string, RaftGroup | undefined][] = [[SYSTEM_KEYSPACE, this.#system.group]];
    for (const [name, { policy }] of this.#policies) if (policy instanceof CpRaftKeyspace) groups.push([name, policy.group]);
    for (const [name, group] of groups) {
      if (group === undefined) continue;
      const commit = group.status().commitIndex;
      const applied = progress.applied[name] ?? 0;
      if (applied + promoteLag(PROMOTE_LAG_ENTRIES, commit) < commit) {
        throw failedPrecondition('MEMBER_BEHIND', `${id} has applied keyspace ${name} through index ${applied}, and ${commit} is committed; nothing was changed: promote it once it has caught up`, { member: id, keyspace: name });
      }
    }
  }

  /**
   * The system keyspace's membership changed (in effect or committed): connections follow both
   * (a member being added is reached before its addition commits), everything that counts
   * replicas follows the committed one.
   */
  #followMembership(inEffect: Membership, committed: Membership): void {
    // A joining node knows no membership until the leader's first entries reach it: until then it
    // keeps the members it was started with.
    if (committed.voters.length === 0) return;
    const now = clusterMembershipOf(committed);
    const pending = clusterMembershipOf(inEffect);
    const wasMember = this.#membership.members.some((m) => m.id === this.settings.nodeId);
    this.#membership = now;
    const addresses = { ...now.addresses, ...pending.addresses };
    const ids = new Set([...now.voters, ...now.learners, ...pending.voters, ...pending.learners]);
    ids.delete(this.settings.nodeId);
    // The simulation's network reaches peers by id alone; gRPC needs the address, which every
    // member added at run time has (the formed-with members' come from --peers).
    const peers = [...ids].map((id) => ({ id, address: addresses[id] ?? '' }));
    for (const gone of this.#connected.filter((p) => !ids.has(p.id))) {
      // A member that just left stays reachable a moment: the message telling it that it was
      // removed (its last Raft heartbeat) is on its way.
      this.#departed.set(gone.id, gone.address);
      this.runtime.scheduler.setTimer(DEPARTURE_GRACE_MS, () => {
        if (this.#departed.delete(gone.id) && !this.#closed) {
          this.#connect(this.#connected);
          this.#announce();
        }
      });
    }
    for (const p of peers) this.#departed.delete(p.id);
    this.#connect(peers);
    this.#announce();
    // Committed voters count; members whose addition is in this node's log and not (yet, as far
    // as it knows) committed are followed as learners too. A node restarted from its disk may
    // know a smaller commit index than it did before (its membership would go back to before
    // an addition it had seen committed): a causal keyspace would then truncate writes the new
    // member has not received, and they would be gone for it.
    const committedIds = new Set([...now.voters, ...now.learners]);
    const adding = [...pending.voters, ...pending.learners].filter((id) => !committedIds.has(id));
    this.#policyMembers = { voters: now.voters, learners: [...now.learners, ...adding] };
    const members = this.#policyMembers;
    for (const { policy } of this.#policies.values()) policy.membershipChanged?.(members);
    const isMember = now.members.some((m) => m.id === this.settings.nodeId);
    if (wasMember && !isMember && !this.#removed) {
      this.#removed = true;
      this.runtime.logger.warn(`node ${this.settings.nodeId} was removed from the cluster (membership version ${now.version}): it serves nothing more; stop it`);
      this.runtime.onPhaseChange?.(this.#phase);
    }
  }

  #announce(): void {
    const peers = this.#connected.filter((p) => p.address !== '');
    const known = [...new Set([...this.#connected.map((p) => p.id), ...this.#departed.keys()])];
    this.runtime.onMembershipChange?.({ peers, voters: this.#membership.voters, membership: this.#membership, known });
  }

  #connect(peers: readonly PeerConfig[]): void {
    this.#connected = peers;
    this.replicas.setPeers([...peers, ...[...this.#departed].filter(([id]) => !peers.some((p) => p.id === id)).map(([id, address]) => ({ id, address }))]);
  }

  /** Keyspace names with their policy names, in config order. */
  keyspaceNames(): { name: string; policy: PolicyName }[] {
    return [...this.#policies].map(([name, p]) => ({ name, policy: p.name }));
  }

  /** The policy instance serving `keyspace` (for stats and tests); throws NOT_FOUND like requests do. */
  policyOf(keyspace: string): KeyspacePolicy {
    return this.#policyOf(keyspace);
  }

  /** A typed handle on one keyspace; throws NOT_FOUND for a keyspace the node does not serve. */
  keyspace(name: string): KeyspaceHandle {
    this.#policyOf(name);
    return new KeyspaceHandle(this, name);
  }

  /** Where the node stands (see {@link NodePhase}). */
  get phase(): NodePhase {
    return this.#phase;
  }

  /** While not serving: what the node is waiting for, in words; empty when serving. */
  get waitingFor(): string {
    return this.#phase === 'serving' ? '' : this.#waitingFor;
  }

  /** Why the node does not serve, in one sentence for health and Status; empty while it serves. */
  notServingReason(): string {
    if (this.#removed) return `node ${this.settings.nodeId} was removed from the cluster (membership version ${this.#membership.version}); stop it`;
    if (this.#phase === 'serving') return '';
    if (this.#phase === 'failed') return `node ${this.settings.nodeId} stopped: its store failed`;
    return `node ${this.settings.nodeId} is ${this.#phase}: ${this.#waitingFor}`;
  }

  /**
   * Takes the node to `serving`. A node whose store has its identity serves at once. A node with
   * an empty store first asks its peers whether the cluster is new: when every peer is new too,
   * the cluster forms (two rounds, so that no node forms while another still sees a new peer);
   * when any peer belongs to a cluster, this node lost its state (or is new to a cluster with
   * history) and recovers it from the others before it serves. It waits, and says why, while it
   * cannot tell. Resolves once serving (or never, if closed first).
   */
  start(): Promise<void> {
    this.#started ??= this.#bootstrap().catch((error: unknown) => {
      // Whatever stopped the start-up (the store failing, most likely) stops the node: a node left
      // starting for ever would neither serve nor say why.
      if (!this.#closed) this.#failStop(error);
    });
    return this.#started;
  }

  async put(keyspace: string, key: Uint8Array, value: Uint8Array, options: CallOptions = {}): Promise<WriteResult> {
    const policy = this.#policyOf(keyspace);
    this.#checkKey(key);
    if (value.byteLength > this.settings.maxValueBytes) {
      throw invalidArgument(
        'VALUE_TOO_LARGE',
        `value is ${value.byteLength} bytes; the limit (maxValueBytes) is ${this.settings.maxValueBytes}`,
        { size: String(value.byteLength), limit: String(this.settings.maxValueBytes) },
      );
    }
    if (options.lease && this.#policies.get(keyspace)!.name !== 'cp') {
      throw failedPrecondition('LEASE_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} is ${this.#policies.get(keyspace)!.name}; leases need a CP keyspace (put without a lease, or use a CP keyspace)`);
    }
    return policy.put(key, value, await this.#whenServing(this.#operationOptions(options)));
  }

  /** A lease operation (see LeaseService) on a CP keyspace. */
  async lease(call: LeaseCall, options: CallOptions = {}): Promise<LeaseAnswer> {
    const policy = this.#policyOf(call.keyspace);
    if (policy.leaseCall === undefined) {
      throw failedPrecondition('LEASE_NOT_SUPPORTED', `keyspace ${JSON.stringify(call.keyspace)} is ${this.#policies.get(call.keyspace)!.name}; leases need a CP keyspace`);
    }
    return policy.leaseCall(call, await this.#whenServing(this.#operationOptions(options)));
  }

  async get(keyspace: string, key: Uint8Array, options: CallOptions = {}): Promise<ReadResult> {
    const policy = this.#policyOf(keyspace);
    this.#checkKey(key);
    return policy.get(key, await this.#whenServing(this.#operationOptions(options)));
  }

  async delete(keyspace: string, key: Uint8Array, options: CallOptions = {}): Promise<WriteResult> {
    const policy = this.#policyOf(keyspace);
    this.#checkKey(key);
    return policy.delete(key, await this.#whenServing(this.#operationOptions(options)));
  }

  /** A transaction (compare-and-set and more) on a CP keyspace; see TxnRequest. */
  async txn(request: TxnRequest, options: CallOptions = {}): Promise<TxnResponse> {
    const policy = this.#policyOf(request.keyspace);
    if (policy.txn === undefined) {
      throw failedPrecondition('TXN_NOT_SUPPORTED', `keyspace ${JSON.stringify(request.keyspace)} is ${this.#policies.get(request.keyspace)!.name}; transactions need a CP keyspace`);
    }
    return policy.txn(request, await this.#whenServing(this.#operationOptions(options)));
  }

  /**
   * Reads the keys of a key, a range or a prefix (see RangeRequest): on CP keyspaces at a
   * revision, elsewhere from the local replica. `continuation` in the answer reads the next page.
   */
  async range(keyspace: string, args: RangeArgs, options: CallOptions = {}): Promise<RangeResult & { readonly continuation?: Uint8Array }> {
    const policy = this.#policyOf(keyspace);
    const isCp = this.#policies.get(keyspace)!.name === 'cp';
    const checked = checkRange(args, keyRangeOf(args, this.settings.maxKeyBytes), isCp);
    if (policy.range === undefined) throw failedPrecondition('RANGE_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} cannot answer Range`);
    const descending = args.descending === true;
    const result = await policy.range(
      { range: checked.range, limit: checked.limit, keysOnly: args.keysOnly === true, countOnly: args.countOnly === true, descending, revision: checked.revision, after: checked.after, maxBytes: Math.min(RANGE_PAGE_BYTES, this.settings.maxValueBytes) },
      await this.#whenServing(this.#operationOptions(options)),
    );
    const last = result.kvs[result.kvs.length - 1];
    return result.more && last !== undefined ? { ...result, continuation: encodeContinuation(result.revision, descending, last.key) } : result;
  }

  /**
   * Starts a watch of a key, a range or a prefix on this node (see WatchCreateRequest): an async
   * iterator of messages, which throws when the watch fails (the error's details name
   * `resume_revision`, or `compact_revision`).
   */
  async watch(keyspace: string, args: WatchArgs, options: CallOptions = {}): Promise<Watcher> {
    const policy = this.#policyOf(keyspace);
    const range = keyRangeOf(args, this.settings.maxKeyBytes);
    const checked = checkWatch(args);
    if (policy.watch === undefined) throw failedPrecondition('WATCH_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} cannot be watched`);
    return policy.watch({ range, startRevision: checked.startRevision, prevKv: args.prevKv === true, progressIntervalMs: checked.progressIntervalMs }, await this.#whenServing(this.#operationOptions(options)));
  }

  /** Compacts a CP keyspace's history through `revision` (see CompactRequest). */
  async compact(keyspace: string, revision: number, options: CallOptions = {}): Promise<CompactResult> {
    const policy = this.#policyOf(keyspace);
    if (policy.compact === undefined) {
      throw failedPrecondition('COMPACT_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} is ${this.#policies.get(keyspace)!.name}; only CP keyspaces keep history to compact`);
    }
    if (!Number.isSafeInteger(revision) || revision <= 0) throw invalidArgument('REVISION_INVALID', `revision must be a positive whole number, not ${revision}`, { field: 'revision' });
    return policy.compact(revision, await this.#whenServing(this.#operationOptions(options)));
  }

  // The replica half, called by the transport when a peer's request arrives.

  async replicate(from: string, keyspace: string, entries: readonly Entry[]): Promise<ApplyOutcome[]> {
    const policy = this.#policyOf(keyspace);
    await this.#joinIfFormed();
    this.#assertServing();
    this.#checkBatch(entries.length);
    for (const entry of entries) this.#checkKey(entry.key);
    return policy.applyReplicated(from, entries);
  }

  async read(from: string, keyspace: string, keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]> {
    const policy = this.#policyOf(keyspace);
    await this.#joinIfFormed();
    this.#assertServing();
    this.#checkBatch(keys.length);
    for (const key of keys) this.#checkKey(key);
    return this.#answerWithinBudget(keys, (chunk) => policy.readLocal(from, chunk));
  }

  /**
   * The answer to a peer's Read: each distinct key read once, in chunks, and the answer cut to the
   * longest prefix of `keys` whose entries fit `maxBatchBytes` (never empty: one entry larger than
   * the budget goes alone). The caller asks again for the rest (BatchingReplicaSet does). So one
   * small Read naming a large value a thousand times costs one entry and one budget of memory,
   * not a thousand copies.
   */
  async #answerWithinBudget(keys: readonly Uint8Array[], read: (keys: Uint8Array[]) => Promise<(Entry | undefined)[]>): Promise<(Entry | undefined)[]> {
    const { maxBatchBytes } = this.settings;
    const found = new Map<string, Entry | undefined>();
    const answer: (Entry | undefined)[] = [];
    let bytes = 0;
    for (let at = 0; at < keys.length; ) {
      // The next few distinct keys not yet read, a chunk at a time (memory: a chunk of entries).
      const chunk: Uint8Array[] = [];
      for (let i = at; i < keys.length && chunk.length < READ_CHUNK_KEYS; i++) {
        const id = latin1(keys[i]!);
        if (!found.has(id) && !chunk.some((k) => latin1(k) === id)) chunk.push(keys[i]!);
      }
      if (chunk.length > 0) (await read(chunk)).forEach((entry, i) => found.set(latin1(chunk[i]!), entry));
      for (; at < keys.length && found.has(latin1(keys[at]!)); at++) {
        const entry = found.get(latin1(keys[at]!));
        const size = entry === undefined ? keys[at]!.byteLength + ENTRY_OVERHEAD_BYTES : entryBytes(entry);
        if (answer.length > 0 && bytes + size > maxBatchBytes) return answer;
        answer.push(entry);
        bytes += size;
      }
    }
    return answer;
  }

  async syncDigests(from: string, keyspace: string, bucketHashes: readonly bigint[]): Promise<DigestAnswer> {
    const policy = this.#policyOf(keyspace);
    // Not a sign that the cluster formed (no #joinIfFormed): AP anti-entropy runs from a node's
    // start, so a peer still forming sends these too. Taking one as proof once let a node serve
    // before a slow peer was ready; that peer then saw a member, took the new cluster for one with
    // history and "recovered" (test/node/cluster-formation.test.ts).
    this.#assertServing();
    if (policy.syncDigests === undefined) {
      throw failedPrecondition('NOT_AP_KEYSPACE', `keyspace ${JSON.stringify(keyspace)} is not an AP keyspace; anti-entropy runs only between AP replicas`);
    }
    return policy.syncDigests(from, bucketHashes, this.settings.maxBatchEntries);
  }

  async progress(_from: string): Promise<MemberProgress> {
    const applied: Record<string, number> = {};
    const system = this.#system.group;
    if (system !== undefined) applied[SYSTEM_KEYSPACE] = system.status().appliedIndex;
    for (const [name, { policy }] of this.#policies) {
      const status = policy.raftStatus?.();
      if (status !== undefined) applied[name] = status.appliedIndex;
    }
    return { serving: this.#phase === 'serving', applied };
  }

  async probe(_from: string): Promise<ProbeAnswer> {
    if (this.#phase !== 'starting') return 'member';
    return this.store.getMeta(FORMING_META) === undefined ? 'new' : 'ready';
  }

  async snapshot(from: string, keyspace: string, afterKey: Uint8Array | undefined, maxEntries: number): Promise<SnapshotPage> {
    const policy = this.#policyOf(keyspace);
    // Only a serving replica is a source: a recovering one holds part of the state at most.
    this.#assertServing();
    this.#checkBatch(maxEntries);
    if (afterKey !== undefined) this.#checkKey(afterKey);
    return policy.snapshot(afterKey, Math.max(1, maxEntries), from);
  }

  async raft(from: string, keyspace: string, messages: readonly RaftMessage[]): Promise<void> {
    // Taken in while the node closes too: a leader handing over needs its followers' answers.
    const policy = keyspace === SYSTEM_KEYSPACE ? this.#system : this.#closed ? this.#policies.get(keyspace)?.policy : this.#policyOf(keyspace);
    if (policy === undefined) return;
    if (policy.raftMessages === undefined) throw failedPrecondition('NOT_A_RAFT_KEYSPACE', `keyspace ${JSON.stringify(keyspace)} has no Raft group`);
    await this.#joinIfFormed();
    policy.raftMessages(from, messages);
  }

  async forwardCompact(from: string, keyspace: string, revision: number, timeoutMs: number): Promise<CompactResult> {
    const policy = this.#policyOf(keyspace);
    if (policy.forwardedCompact === undefined) throw failedPrecondition('NOT_A_RAFT_KEYSPACE', `keyspace ${JSON.stringify(keyspace)} has no Raft group`);
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalidArgument('BAD_TIMEOUT', `a forwarded call needs a positive timeout, not ${timeoutMs}`);
    return policy.forwardedCompact(from, revision, Math.min(timeoutMs, this.settings.requestTimeoutMs * 4));
  }

  async forwardLease(from: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer> {
    const policy = this.#policyOf(call.keyspace);
    if (policy.forwardedLease === undefined) throw failedPrecondition('NOT_A_RAFT_KEYSPACE', `keyspace ${JSON.stringify(call.keyspace)} has no Raft group`);
    this.#assertServing();
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalidArgument('BAD_TIMEOUT', `a forwarded call needs a positive timeout, not ${timeoutMs}`);
    return policy.forwardedLease(from, call, Math.min(timeoutMs, this.settings.requestTimeoutMs * 4));
  }

  async forward(from: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse> {
    const policy = this.#policyOf(request.keyspace);
    if (policy.forwarded === undefined) throw failedPrecondition('NOT_A_RAFT_KEYSPACE', `keyspace ${JSON.stringify(request.keyspace)} has no Raft group`);
    this.#assertServing();
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalidArgument('BAD_TIMEOUT', `a forwarded call needs a positive timeout, not ${timeoutMs}`);
    return policy.forwarded(from, request, Math.min(timeoutMs, this.settings.requestTimeoutMs * 4));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Stops the policies' background work. The store is closed by whoever opened it. */
  async close(options: { readonly abrupt?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeServeWaiters(false);
    // The system keyspace hands nothing over: membership changes are rare and wait out an
    // election, and a hand-over would hold every node's close (on virtual time too) for it.
    this.#autoPromoteTimer?.cancel();
    await Promise.all([this.#system.close({ abrupt: true }), ...[...this.#policies.values()].map((p) => p.policy.close(options))]);
  }

  /**
   * A client's request that arrives while the node starts or recovers waits for it to serve, up
   * to the request's deadline, then fails with UNAVAILABLE naming what the node waits for (so a
   * cluster's first requests, sent as its nodes come up, succeed). Resolves with the options,
   * their deadline less the time waited.
   */
  async #whenServing(options: OperationOptions): Promise<OperationOptions> {
    if (this.#removed) {
      throw failedPrecondition('NODE_REMOVED', `node ${this.settings.nodeId} was removed from the cluster and serves nothing; nothing was done: use another node`);
    }
    if (this.#phase === 'serving') return options;
    if (this.#phase === 'failed' || this.#closed || this.#serveWaiters.size >= MAX_SERVE_WAITERS) this.#assertServing();
    const { scheduler } = this.runtime;
    const started = scheduler.nowMs();
    const served = await new Promise<boolean>((resolve) => {
      const waiter = (ok: boolean) => {
        timer.cancel();
        options.signal?.removeEventListener('abort', cancel);
        this.#serveWaiters.delete(waiter);
        resolve(ok);
      };
      const cancel = () => waiter(false);
      const timer = scheduler.setTimer(options.timeoutMs, cancel);
      options.signal?.addEventListener('abort', cancel, { once: true });
      this.#serveWaiters.add(waiter);
    });
    if (!served) this.#assertServing();
    return { ...options, timeoutMs: Math.max(1, options.timeoutMs - (scheduler.nowMs() - started)) };
  }

  /** Wakes the requests waiting for the node to serve: `true` once it serves, `false` to fail them. */
  #wakeServeWaiters(served: boolean): void {
    for (const waiter of [...this.#serveWaiters]) waiter(served);
  }

  #assertServing(): void {
    if (this.#phase === 'serving') return;
    if (this.#phase === 'failed') {
      throw unavailable('STORAGE_FAILED', `node ${this.settings.nodeId} stopped after its store failed (${describeError(this.store instanceof FailStopStore ? this.store.failure : undefined)}); nothing was done: use another node`);
    }
    throw unavailable(
      this.#phase === 'recovering' ? 'RECOVERING' : 'STARTING',
      `node ${this.settings.nodeId} is ${this.#phase === 'recovering' ? 'recovering the state it lost from its peers' : 'starting'} and serves nothing yet: ${this.#waitingFor}; nothing was done: retry, here later or on another node`,
      { phase: this.#phase },
    );
  }

  #readIdentity(): boolean {
    const held = this.runtime.store.getMeta(IDENTITY_META);
    if (held === undefined) return false;
    const identity = JSON.parse(Buffer.from(held).toString('utf8')) as { nodeId: string; clusterId: string };
    if (identity.nodeId !== this.settings.nodeId || identity.clusterId !== this.settings.clusterId) {
      throw new Error(
        `this store belongs to node ${JSON.stringify(identity.nodeId)} of cluster ${JSON.stringify(identity.clusterId)}, ` +
          `not to node ${JSON.stringify(this.settings.nodeId)} of cluster ${JSON.stringify(this.settings.clusterId)}: give the right data directory or id`,
      );
    }
    return true;
  }

  async #bootstrap(): Promise<void> {
    if (this.#phase === 'serving') return this.#openPolicies();
    if (this.#phase !== 'starting') return;
    const peers = this.settings.peers.map((p) => p.id);
    const { logger } = this.runtime;
    let lastWait = '';
    const waiting = (why: string) => {
      this.#waitingFor = why;
      if (why !== lastWait) {
        logger.info(`node ${this.settings.nodeId} is waiting: ${why}`, { phase: this.#phase });
        this.runtime.onPhaseChange?.(this.#phase);
      }
      lastWait = why;
    };
    if (this.settings.join) {
      // Added to a running cluster as a learner: it copies its peers' AP and causal state before
      // it serves (its CP keyspaces catch up through their logs), and, being new, it votes once
      // promoted.
      this.#phase = 'recovering';
      this.runtime.onPhaseChange?.('recovering');
      logger.info(`node ${this.settings.nodeId} joins a running cluster: it copies its peers' state before it serves`);
      for (const [name, { policy }] of this.#policies) await this.#recoverKeyspace(name, policy, waiting);
      if (this.#closed) return;
      await this.#serve('joined');
      return;
    }
    waiting('asking its peers whether the cluster is new');
    let recover = false;
    while (peers.length > 0) {
      const answers = await Promise.all(peers.map((p) => this.replicas.probe(p, PROBE_TIMEOUT_MS).catch(() => undefined)));
      if (this.#closed || this.#phase !== 'starting' || this.#serving !== undefined) return;
      const ready = this.store.getMeta(FORMING_META) !== undefined;
      const silent = peers.filter((_, i) => answers[i] === undefined);
      if (!ready && answers.some((a) => a === 'member')) {
        recover = true;
        break;
      }
      if (ready && answers.every((a) => a === 'ready' || a === 'member')) break;
      if (!ready && answers.every((a) => a === 'new' || a === 'ready')) {
        await this.store.putMeta(FORMING_META, new Uint8Array([1]));
        continue;
      }
      waiting(
        silent.length > 0
          ? `its store is empty and ${silent.join(', ')} ${silent.length === 1 ? 'has' : 'have'} not answered; it cannot tell a new cluster from one it lost its state in until every peer answers`
          : `the cluster is forming; waiting for ${peers.filter((_, i) => answers[i] === 'new').join(', ')} to see every peer`,
      );
      // While forming, every peer is up and answering: look again soon.
      await this.#pause(silent.length > 0 ? RETRY_PAUSE_MS : FORMING_PAUSE_MS);
      if (this.#closed || this.#serving !== undefined) return;
    }
    if (recover && !this.settings.unsafeSkipRecovery) {
      this.#phase = 'recovering';
      this.runtime.onPhaseChange?.('recovering');
      logger.warn(`node ${this.settings.nodeId} has an empty store in a cluster with history: it recovers from its peers before it serves`);
      for (const [name, { policy }] of this.#policies) await this.#recoverKeyspace(name, policy, waiting);
      if (this.#closed) return;
    }
    await this.#serve(recover && !this.settings.unsafeSkipRecovery ? 'recovered' : 'formed');
  }

  /**
   * Writes the node's identity and starts serving; once only, however many paths lead here (the
   * bootstrap loop, or a peer's call showing that the cluster has formed).
   */
  #serve(how: 'formed' | 'recovered' | 'joined'): Promise<void> {
    this.#serving ??= (async () => {
      if (how === 'recovered') await this.store.putMeta(RAFT_NO_VOTE_META, new Uint8Array([1]));
      await this.#openPolicies();
      await this.store.putMeta(IDENTITY_META, identityRecord(this.settings.nodeId, this.settings.clusterId));
      if (this.#closed || (this.#phase as NodePhase) === 'failed') return;
      this.#phase = 'serving';
      this.#waitingFor = '';
      this.runtime.onPhaseChange?.('serving');
      this.#wakeServeWaiters(true);
      this.runtime.logger.info(
        how === 'recovered' ? `node ${this.settings.nodeId} recovered and serves` : how === 'joined' ? `node ${this.settings.nodeId} joined the cluster and serves` : `node ${this.settings.nodeId} formed a new cluster and serves`,
      );
    })();
    return this.#serving;
  }

  /**
   * A peer's replica call (Replicate, Read, Raft; not SyncDigests, see there) reached a node that
   * is still forming: only a serving node sends one, and a peer serves only once it saw this node
   * ready, so the cluster has formed: serve now rather than refuse the call and fail the peer's
   * first requests.
   */
  async #joinIfFormed(): Promise<void> {
    if (this.#phase === 'starting' && this.store.getMeta(FORMING_META) !== undefined) await this.#serve('formed');
  }

  /**
   * Copies a keyspace's state from enough serving peers that every write acknowledged before the
   * loss is among what was copied: any majority of the cluster that acknowledged a write, less
   * this node, meets any n − majority + 1 of the others (n = 3: both of them). The causal policy
   * needs every other replica (each origin's own log is the only place its truncated writes were).
   */
  async #recoverKeyspace(name: string, policy: KeyspacePolicy, waiting: (why: string) => void): Promise<void> {
    const peers = this.settings.peers.map((p) => p.id);
    const n = peers.length + 1;
    if (policy.recoveryNeeds === 'none') return;
    const needed = policy.recoveryNeeds === 'all' ? peers.length : n - majority(n) + 1;
    const copied = new Set<string>();
    const lastError = new Map<string, string>();
    waiting(`keyspace ${name} is copying the state of ${needed} of its peers (${peers.join(', ')})`);
    while (copied.size < needed) {
      for (const peer of peers) {
        if (copied.has(peer) || this.#closed) continue;
        try {
          let afterKey: Uint8Array | undefined;
          for (;;) {
            const page = await this.replicas.snapshot(peer, name, afterKey, this.settings.maxBatchEntries, SNAPSHOT_TIMEOUT_MS);
            for (const entry of page.entries) this.clock.update(entry.version.hlc);
            await policy.absorb(page);
            if (!page.more || page.entries.length === 0) break;
            afterKey = page.entries[page.entries.length - 1]!.key;
          }
          copied.add(peer);
        } catch (error) {
          // Not serving, unreachable or failed mid-way: another round asks again (pages are idempotent).
          lastError.set(peer, describeError(error).slice(0, 200));
        }
      }
      if (this.#closed || this.#phase === 'failed') return;
      if (copied.size < needed) {
        const missing = peers.filter((p) => !copied.has(p));
        const why = missing.map((p) => (lastError.has(p) ? `${p}: ${lastError.get(p)}` : p)).join('; ');
        waiting(`keyspace ${name} has copied the state of ${copied.size} of the ${needed} peers it needs; waiting for ${why}`);
        await this.#pause(RETRY_PAUSE_MS);
      }
    }
  }

  /** Opens what keyspaces load before serving (CP keyspaces' Raft logs); once. */
  #openPolicies(): Promise<void> {
    this.#opened ??= (async () => {
      const amnesiac = this.store.getMeta(RAFT_NO_VOTE_META) !== undefined;
      // The membership first: the keyspaces follow what its log says from the start.
      await this.#system.open({ amnesiac });
      for (const { policy } of this.#policies.values()) await policy.open?.({ amnesiac });
      const members = this.#policyMembers ?? { voters: this.#membership.voters, learners: this.#membership.learners };
      for (const { policy } of this.#policies.values()) policy.membershipChanged?.(members);
      if (this.settings.autoPromote) this.#autoPromoteTimer = repeatEvery(this.runtime.scheduler, AUTO_PROMOTE_CHECK_MS, () => void this.#autoPromote());
    })();
    return this.#opened;
  }

  #autoPromoteTimer: TimerHandle | undefined;
  #autoPromoting = false;

  /** With autoPromote, on the membership's leader: promotes the first learner that has caught up. */
  async #autoPromote(): Promise<void> {
    const group = this.#system.group;
    if (this.#autoPromoting || this.#closed || this.#phase !== 'serving' || group?.role !== 'leader' || group.changePending) return;
    const learner = clusterMembershipOf(group.membership).learners[0];
    if (learner === undefined) return;
    this.#autoPromoting = true;
    try {
      await this.promoteMember(learner, { timeoutMs: this.settings.requestTimeoutMs });
      this.runtime.logger.info(`promoted ${learner}: it has caught up (autoPromote)`, { member: learner });
    } catch {
      // Still behind, or the leadership moved: the next check tries again.
    } finally {
      this.#autoPromoting = false;
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => this.runtime.scheduler.setTimer(ms, resolve));
  }

  #failStop(error: unknown): void {
    if (this.#phase === 'failed') return;
    this.#phase = 'failed';
    this.runtime.logger.error(`node ${this.settings.nodeId} stops: its store failed (${describeError(error)}); it acknowledges nothing more and must be restarted`, {
      error: describeError(error),
    });
    this.runtime.onPhaseChange?.('failed');
    this.#wakeServeWaiters(false);
    this.runtime.onFatal?.(error);
  }

  #policyOf(keyspace: string): KeyspacePolicy {
    if (this.#closed) throw new ReplikitError('cancelled', 'NODE_CLOSED', `node ${this.settings.nodeId} is shutting down`);
    if (typeof keyspace !== 'string' || keyspace === '') {
      throw invalidArgument('KEYSPACE_MISSING', 'the request names no keyspace');
    }
    const bound = this.#policies.get(keyspace);
    if (bound === undefined) {
      throw notFound(
        'UNKNOWN_KEYSPACE',
        `no keyspace ${JSON.stringify(shorten(keyspace))} on this cluster; it serves ${[...this.#policies.keys()].map((k) => JSON.stringify(k)).join(', ')}`,
        { keyspace: shorten(keyspace) },
      );
    }
    return bound.policy;
  }

  #checkKey(key: Uint8Array): void {
    if (!(key instanceof Uint8Array) || key.byteLength === 0) {
      throw invalidArgument('KEY_EMPTY', 'the key is empty; keys are 1 to ' + this.settings.maxKeyBytes + ' bytes');
    }
    if (key.byteLength > this.settings.maxKeyBytes) {
      throw invalidArgument(
        'KEY_TOO_LARGE',
        `the key is ${key.byteLength} bytes; the limit (maxKeyBytes) is ${this.settings.maxKeyBytes}`,
        { size: String(key.byteLength), limit: String(this.settings.maxKeyBytes) },
      );
    }
  }

  #checkBatch(count: number): void {
    if (count > this.settings.maxBatchEntries) {
      throw invalidArgument(
        'BATCH_TOO_LARGE',
        `the batch has ${count} entries; the limit (maxBatchEntries) is ${this.settings.maxBatchEntries}`,
      );
    }
  }

  #operationOptions(options: CallOptions): OperationOptions {
    const timeoutMs = options.timeoutMs ?? this.settings.requestTimeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw invalidArgument('BAD_TIMEOUT', `timeoutMs must be a positive number of milliseconds, not ${timeoutMs}`);
    }
    if (options.consistency !== undefined && options.consistency !== 'linearizable' && options.consistency !== 'serializable') {
      throw invalidArgument('BAD_CONSISTENCY', `consistency must be linearizable or serializable, not ${String(options.consistency)}`);
    }
    if (options.lease !== undefined && (!Number.isSafeInteger(options.lease) || options.lease < 0)) {
      throw invalidArgument('LEASE_INVALID', `lease must be a lease id (a positive whole number) or 0 for none, not ${options.lease}`, { field: 'lease' });
    }
    return { timeoutMs, sessionToken: options.sessionToken, ack: options.ack, signal: options.signal, consistency: options.consistency, lease: options.lease };
  }
}


function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A caller's text in an error message, cut to a readable length (it may be anything). */
function shorten(text: string, max = 80): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/** Applies {@link NODE_DEFAULTS} to the optional fields. */
export function settle(config: {
  nodeId: string;
  clusterId?: string;
  peers?: readonly PeerConfig[];
  keyspaces: Readonly<Record<string, ConsistencyPolicy>>;
  requestTimeoutMs?: number;
  maxKeyBytes?: number;
  maxValueBytes?: number;
  maxBatchEntries?: number;
  maxBatchBytes?: number;
  maxClockOffsetMs?: number;
  sessionSecret?: string;
  unsafeSkipRecovery?: boolean;
  unsafeIgnoreClockHighWater?: boolean;
  unsafePromoteLagging?: boolean;
  unsafeOverlappingChanges?: boolean;
  join?: boolean;
  autoPromote?: boolean;
  advertiseAddress?: string;
}): NodeSettings {
  return {
    nodeId: config.nodeId,
    clusterId: config.clusterId ?? NODE_DEFAULTS.clusterId,
    peers: config.peers ?? [],
    keyspaces: config.keyspaces,
    requestTimeoutMs: config.requestTimeoutMs ?? NODE_DEFAULTS.requestTimeoutMs,
    maxKeyBytes: config.maxKeyBytes ?? NODE_DEFAULTS.maxKeyBytes,
    maxValueBytes: config.maxValueBytes ?? NODE_DEFAULTS.maxValueBytes,
    maxBatchEntries: config.maxBatchEntries ?? NODE_DEFAULTS.maxBatchEntries,
    maxBatchBytes: config.maxBatchBytes ?? NODE_DEFAULTS.maxBatchBytes,
    maxClockOffsetMs: config.maxClockOffsetMs ?? NODE_DEFAULTS.maxClockOffsetMs,
    sessionSecret: config.sessionSecret,
    unsafeSkipRecovery: config.unsafeSkipRecovery,
    unsafeIgnoreClockHighWater: config.unsafeIgnoreClockHighWater,
    unsafePromoteLagging: config.unsafePromoteLagging,
    unsafeOverlappingChanges: config.unsafeOverlappingChanges,
    join: config.join,
    autoPromote: config.autoPromote,
    selfAddress: config.advertiseAddress,
  };
}

const MEMBER_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const MEMBER_ADDRESS_PATTERN = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

function checkMemberId(id: string): void {
  if (typeof id !== 'string' || !MEMBER_ID_PATTERN.test(id)) {
    throw invalidArgument('MEMBER_ID_INVALID', `a member id is 1 to 64 characters of [A-Za-z0-9._-], not ${JSON.stringify(shorten(String(id)))}`, { field: 'node_id' });
  }
}

function checkAddress(address: string): void {
  const m = typeof address === 'string' ? MEMBER_ADDRESS_PATTERN.exec(address) : null;
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw invalidArgument('ADDRESS_INVALID', `a member's address is HOST:PORT (port 1 to 65535), not ${JSON.stringify(shorten(String(address)))}`, { field: 'address' });
  }
}

function unknownMember(id: string, membership: ClusterMembership): ReplikitError {
  return invalidArgument('MEMBER_UNKNOWN', `${id} is not a member of the cluster; the members are ${membership.members.map((m) => `${m.id} (${m.role})`).join(', ')}`, { member: id, field: 'node_id' });
}
