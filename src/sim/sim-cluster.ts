import { HybridLogicalClock, repeatEvery, type TimerHandle } from '../clock/index.js';
import { localProfile, MembershipView, type FailureDetectorConfig } from '../failure/index.js';
import type { Logger } from '../logging/logger.js';
import { NODE_DEFAULTS } from '../node/config.js';
import { IDENTITY_META, identityRecord, NodeCore, settle, type MembershipAnswer } from '../node/node-core.js';
import { ReplikitError } from '../errors.js';
import { NotLeaderError } from '../policy/cp/raft-group.js';
import { nextIncarnation } from '../node/incarnation.js';
import type { ConsistencyPolicy, LivenessOracle } from '../policy/policy.js';
import { InMemoryNetwork, type NetworkFaults, CALM_NETWORK } from '../transport/in-memory-network.js';
import { SeededRandom } from './seeded-random.js';
import type { Store } from '../storage/store.js';
import { DEFAULT_DISK_PROFILE, SimulatedDisk, type DiskProfile } from './simulated-disk.js';
import { decodeBatch, historyKeyspace } from '../policy/cp/kv-history.js';
import type { ChangeBatch } from '../policy/watch/change.js';
import { VirtualScheduler } from './virtual-scheduler.js';

export interface SimClusterOptions {
  readonly seed: number;
  readonly nodeIds?: readonly string[];
  readonly keyspaces: Readonly<Record<string, ConsistencyPolicy>>;
  readonly faults?: NetworkFaults;
  /** Each node's wall-clock skew in milliseconds, drawn from [-maxSkewMs, maxSkewMs]. @default 0 */
  readonly maxSkewMs?: number;
  readonly requestTimeoutMs?: number;
  readonly logger?: Logger;
  /** How each node's simulated disk behaves. @default DEFAULT_DISK_PROFILE */
  readonly disk?: DiskProfile;
  /**
   * Liveness the policies see. By default each node runs the real failure detector (a
   * MembershipView with the local profile) over heartbeats sent through the simulated network.
   */
  readonly liveness?: (self: string) => LivenessOracle;
  /**
   * Whether the cluster starts already formed (every disk holds its node's identity, as after a
   * first start), so nodes serve at once; otherwise they start new and form the cluster through
   * the probe rounds first (see NodeCore.start). @default true
   */
  readonly formed?: boolean;
  /** DELIBERATELY BROKEN nodes, for testing the harness: see NodeSettings.unsafeSkipRecovery. */
  readonly unsafeSkipRecovery?: boolean;
  /** DELIBERATELY BROKEN nodes: see NodeSettings.unsafeIgnoreClockHighWater. */
  readonly unsafeIgnoreClockHighWater?: boolean;
  /**
   * DELIBERATELY BROKEN nodes: see NodeSettings.unsafePromoteLagging (the system keyspace; the
   * data keyspaces' groups take it through their own cpQuorum options).
   */
  readonly unsafePromoteLagging?: boolean;
  /** DELIBERATELY BROKEN nodes: see NodeSettings.unsafeOverlappingChanges. */
  readonly unsafeOverlappingChanges?: boolean;
}

/** A membership change as {@link SimCluster.changeMembership} runs it. */
export type MembershipChangeKind = 'add' | 'promote' | 'remove';

/** The address a node added at run time is recorded under (a HOST:PORT, as addMember requires; the network reaches nodes by id). */
export function simAddress(id: string): string {
  return `${id}.sim:7000`;
}

/** The faults that actually landed during a run, counted as they happen. */
export interface SimFaultStats {
  crashes: number;
  /** Crashes that found writes issued and not yet durable on the node's disk. */
  crashesWithWritesInFlight: number;
  /** Restarts with an empty disk. */
  amnesia: number;
  /** Wall-clock steps back or forward (at a restart or while running). */
  clockStepsBack: number;
  clockStepsForward: number;
  /** Syncs that failed with EIO, each stopping its node. */
  syncFailures: number;
  /** Stretches of time a node's disk ran slow. */
  slowDisks: number;
  /** Nodes that recovered their state from peers after amnesia and served again. */
  recoveries: number;
  /** Wiped nodes retired before they recovered (membership changes only; absent otherwise). */
  retiredRecovering?: number;
}

/** Policy counters the simulation sums over every node start (CP: Raft snapshots that travelled). */
const SUMMED_POLICY_STATS = ['snapshotsTaken', 'snapshotsInstalled', 'transfersCompleted', 'chunksSent'] as const;

const SIM_EPOCH_MS = 1_700_000_000_000;
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A running node's failure detection: its view, and the timers that beat and tick. */
interface Detection {
  readonly view: MembershipView;
  readonly timers: TimerHandle[];
  readonly incarnation: number;
  /** Whom it beats to, in a fixed order (each beat draws from the network's random stream). */
  peers: string[];
}

/**
 * A whole cluster in one process on virtual time: NodeCores over an InMemoryNetwork, each on its
 * own {@link SimulatedDisk} that survives its node's crash, and each running the real failure
 * detector over simulated heartbeats. Everything random comes from one seed, so a failing run
 * replays exactly. The fault methods (crash, wipe, clock steps, slow disks, sync failures) count
 * what actually landed in {@link faults}.
 */
export class SimCluster {
  readonly scheduler = new VirtualScheduler();
  readonly random: SeededRandom;
  readonly network: InMemoryNetwork;
  readonly stores = new Map<string, SimulatedDisk>();
  readonly faults: SimFaultStats = {
    crashes: 0,
    crashesWithWritesInFlight: 0,
    amnesia: 0,
    clockStepsBack: 0,
    clockStepsForward: 0,
    syncFailures: 0,
    slowDisks: 0,
    recoveries: 0,
  };
  /** {@link SUMMED_POLICY_STATS} of node starts that have ended (see {@link policyTotals}). */
  readonly #endedPolicyStats: Record<string, number> = {};
  /** Called with the id of every node that crashes (by the nemesis, or on a failed sync). */
  readonly crashListeners: ((id: string) => void)[] = [];
  /** Nodes wiped and not yet serving again: at most a minority may be, or the model is broken. */
  readonly recovering = new Set<string>();
  /** Every disk lost, by wipe or retirement, with its virtual time (what a simulation's loss guard reasons over). */
  readonly losses: { readonly id: string; readonly atMs: number; readonly how: 'wipe' | 'retire' }[] = [];
  /**
   * Nodes that never vote again: they lost a disk they had served from, so their Raft groups
   * recovered without their votes (RAFT_NO_VOTE_META). A learner that never served rejoins as new.
   */
  readonly nonVoting = new Set<string>();
  readonly #nodes = new Map<string, NodeCore>();
  /** Node starts so far: each start draws its election timeouts from a stream of its own. */
  #starts = 0;
  readonly #detection = new Map<string, Detection>();
  readonly #skews = new Map<string, number>();
  readonly #options: SimClusterOptions;
  readonly #detectorConfig: FailureDetectorConfig = localProfile();
  /** The nodes now (retired ones left out), in the order they came; replaced, never mutated, on a change. */
  #nodeIds: readonly string[];
  /** Every id ever used: the formed-with nodes, those added, those retired. */
  readonly #everUsed = new Set<string>();
  /** Nodes added at run time (see addNode). */
  readonly #added = new Set<string>();
  /** Nodes that have served at least once (since their disk was last wiped). */
  readonly #served = new Set<string>();
  /** Nodes stopped for good (see retire). */
  readonly #retired = new Set<string>();

  constructor(options: SimClusterOptions) {
    this.#options = options;
    this.random = new SeededRandom(options.seed);
    this.network = new InMemoryNetwork(this.scheduler, this.random.fork(1), options.faults ?? CALM_NETWORK);
    this.#nodeIds = options.nodeIds ?? ['n1', 'n2', 'n3'];
    for (const id of this.#nodeIds) this.#everUsed.add(id);
    const skewRandom = this.random.fork(2);
    for (const [i, id] of this.#nodeIds.entries()) {
      const disk = new SimulatedDisk(this.scheduler, this.random.fork(10 + i), options.disk ?? DEFAULT_DISK_PROFILE);
      if (options.formed ?? true) disk.prepareMeta(IDENTITY_META, identityRecord(id, NODE_DEFAULTS.clusterId));
      this.stores.set(id, disk);
      this.#skews.set(id, options.maxSkewMs ? skewRandom.between(-options.maxSkewMs, options.maxSkewMs) : 0);
      this.start(id);
    }
  }

  /** The nodes of the cluster now, in the order they came: the formed-with ones, then those added; retired ones left out. */
  get nodeIds(): readonly string[] {
    return this.#nodeIds;
  }

  /** Nodes stopped for good (see {@link retire}). Their disks stay in {@link stores}, as evidence. */
  get retired(): ReadonlySet<string> {
    return this.#retired;
  }

  /** True when `id` was added at run time (see {@link addNode}) and has not served yet: up or down, it still has its peers' state to copy. */
  isJoining(id: string): boolean {
    return this.#added.has(id) && !this.#served.has(id) && !this.#retired.has(id);
  }

  /**
   * Starts a new node `id` (an id never used before) on a new, empty disk, as `serve --join`
   * does: it copies its peers' AP and causal state before it serves, and its CP groups learn
   * the membership from their leaders. Its peers are the current nodes. Add it to the
   * membership first (changeMembership('add', id)), as joinCluster does.
   */
  addNode(id: string): NodeCore {
    if (this.#everUsed.has(id)) throw new Error(`${id} was used before: ids are never reused`);
    this.#everUsed.add(id);
    this.#added.add(id);
    const disk = new SimulatedDisk(this.scheduler, this.random.fork(20_000 + this.#everUsed.size), this.#options.disk ?? DEFAULT_DISK_PROFILE);
    this.stores.set(id, disk);
    this.#skews.set(id, 0);
    this.#nodeIds = [...this.#nodeIds, id];
    return this.start(id);
  }

  /**
   * Stops node `id` for good (a removed member's process stopped, its machine gone): it crashes
   * if it runs, never restarts, and leaves {@link nodeIds}. Its disk stays in {@link stores}.
   */
  retire(id: string): void {
    if (this.#retired.has(id)) return;
    if (!this.#everUsed.has(id)) throw new Error(`no node ${id}`);
    this.#halt(id, false);
    this.#retired.add(id);
    this.losses.push({ id, atMs: this.scheduler.nowMs(), how: 'retire' });
    this.#nodeIds = this.#nodeIds.filter((n) => n !== id);
    // A wiped node that never recovered leaves with its loss: nothing is left to recover.
    if (this.recovering.delete(id)) this.faults.retiredRecovering = (this.faults.retiredRecovering ?? 0) + 1;
  }

  /**
   * The node that leads the cluster's membership (the system keyspace's Raft group) as far as the
   * nodes know: of the running nodes that believe they lead it, the one of the highest term.
   */
  membershipLeader(): string | undefined {
    let best: { id: string; term: number } | undefined;
    for (const id of this.#nodeIds) {
      const group = this.#nodes.get(id)?.systemGroup;
      if (group === undefined || group.role !== 'leader') continue;
      const term = group.status().term;
      if (best === undefined || term > best.term) best = { id, term };
    }
    return best?.id;
  }

  /**
   * Runs one membership change on the membership's leader, as ClusterService forwards it: retried
   * (every 20 virtual ms, within `timeoutMs`) while no node leads the membership, the one asked
   * no longer does (NOT_MEMBERSHIP_LEADER), or a new leader has not committed an entry of its
   * term yet (LEADER_NOT_READY). Any other refusal (MEMBER_BEHIND, NO_LIVE_MAJORITY, ...) and an
   * unknown outcome (the change proposed, not committed in time) are thrown. `add` records the
   * node under {@link simAddress}.
   */
  async changeMembership(kind: MembershipChangeKind, id: string, options: { readonly timeoutMs?: number; readonly callTimeoutMs?: number } = {}): Promise<MembershipAnswer> {
    const deadline = this.scheduler.nowMs() + (options.timeoutMs ?? 2_000);
    const callTimeoutMs = options.callTimeoutMs ?? 1_000;
    for (;;) {
      const leader = this.membershipLeader();
      if (leader !== undefined) {
        const core = this.#nodes.get(leader)!;
        try {
          if (kind === 'add') return await core.addMember(id, simAddress(id), { timeoutMs: callTimeoutMs });
          if (kind === 'promote') return await core.promoteMember(id, { timeoutMs: callTimeoutMs });
          return await core.removeMember(id, { timeoutMs: callTimeoutMs });
        } catch (error) {
          const retry =
            error instanceof NotLeaderError ||
            (error instanceof ReplikitError && ['NOT_MEMBERSHIP_LEADER', 'LEADER_NOT_READY', 'NOT_OPEN', 'LEADER_TRANSFERRING', 'NODE_CLOSED', 'STARTING', 'RECOVERING'].includes(error.reason));
          if (!retry || this.scheduler.nowMs() >= deadline) throw error;
        }
      } else if (this.scheduler.nowMs() >= deadline) {
        throw new ReplikitError('unavailable', 'NOT_MEMBERSHIP_LEADER', `no node leads the cluster's membership (${kind} ${id}); nothing was changed`);
      }
      await new Promise<void>((resolve) => this.scheduler.setTimer(20, resolve));
    }
  }

  /** The running node `id`; throws if it is crashed. */
  node(id: string): NodeCore {
    const node = this.#nodes.get(id);
    if (node === undefined) throw new Error(`${id} is crashed`);
    return node;
  }

  isUp(id: string): boolean {
    return this.#nodes.has(id);
  }

  /** True when `id` is up and serving (not starting, recovering or stopped). */
  isServing(id: string): boolean {
    return this.#nodes.get(id)?.phase === 'serving';
  }

  /** Runs virtual time until every node is up and serving, or `limitMs` passes; true when they are. */
  async untilAllServing(limitMs: number, restartDown = false): Promise<boolean> {
    const deadline = this.scheduler.nowMs() + limitMs;
    while (!this.nodeIds.every((id) => this.isServing(id))) {
      if (this.scheduler.nowMs() >= deadline) return false;
      // A node that stopped on a failed sync meanwhile is restarted, as an operator would.
      if (restartDown) for (const id of this.nodeIds) if (!this.isUp(id)) this.start(id);
      await this.scheduler.advance(10);
    }
    return true;
  }

  /** Node `id`'s wall clock now, in ms since the epoch. */
  wallClockOf(id: string): number {
    return SIM_EPOCH_MS + this.scheduler.nowMs() + (this.#skews.get(id) ?? 0);
  }

  /** Starts (or restarts, from what its disk kept) node `id`. */
  start(id: string): NodeCore {
    if (this.#nodes.has(id)) throw new Error(`${id} is already running`);
    if (this.#retired.has(id)) throw new Error(`${id} was retired: it never starts again`);
    const wallClock = () => this.wallClockOf(id);
    const peers = this.nodeIds.filter((p) => p !== id).map((p) => ({ id: p, address: this.#added.has(p) ? simAddress(p) : `sim:${p}` }));
    // A node added at run time joins until it has served once: a learner that never served never
    // voted, so with an empty disk it joins again as new. One that served and lost its disk
    // recovers as any member does (and never votes again from that disk).
    const join = this.#added.has(id) && !this.#served.has(id);
    const clock = new HybridLogicalClock(wallClock);
    // This start's own handle on the disk: it goes dead when the node crashes.
    const store = this.stores.get(id)!.open();
    const detection = this.#options.liveness === undefined ? this.#startDetection(id, store, wallClock) : undefined;
    const node = new NodeCore(
      settle({
        nodeId: id,
        peers,
        keyspaces: this.#options.keyspaces,
        requestTimeoutMs: this.#options.requestTimeoutMs,
        unsafeSkipRecovery: this.#options.unsafeSkipRecovery,
        unsafeIgnoreClockHighWater: this.#options.unsafeIgnoreClockHighWater,
        unsafePromoteLagging: this.#options.unsafePromoteLagging,
        unsafeOverlappingChanges: this.#options.unsafeOverlappingChanges,
        ...(join ? { join: true, advertiseAddress: simAddress(id) } : {}),
      }),
      {
        replicas: this.network.replicaSet(id, peers.map((p) => p.id)),
        scheduler: this.scheduler,
        wallClock,
        clock,
        store,
        raftLog: (keyspace) => this.stores.get(id)!.openRaftLog(keyspace),
        // Election timeouts from the seed: a start's own stream, so a seed replays exactly.
        random: (() => {
          const r = this.random.fork(7_000 + this.#starts++);
          return () => r.next();
        })(),
        logger: this.#options.logger ?? silent,
        liveness: this.#options.liveness?.(id) ?? livenessOf(detection!.view, this.scheduler, this.#detectorConfig),
        // A failed sync stops the node, as `serve` exits: the simulation crashes it.
        onFatal: () => {
          this.faults.syncFailures++;
          this.scheduler.runSoon(() => this.crash(id));
        },
        onPhaseChange: (phase) => {
          if (phase === 'serving') this.#served.add(id);
          if (phase === 'serving' && this.recovering.delete(id)) this.faults.recoveries++;
        },
        // The failure detection follows the membership, as ReplicaNode's does.
        onMembershipChange: ({ known }) => this.#followPeers(id, known),
      },
    );
    this.#nodes.set(id, node);
    if (node.phase === 'serving') this.#served.add(id);
    // A wiped node whose identity is on disk again finished its recovery in an earlier life (its
    // identity is written only after the recovered state is durable) and serves at once.
    if (node.phase === 'serving' && this.recovering.delete(id)) this.faults.recoveries++;
    this.network.attach(id, { handler: node, clock });
    void node.start();
    return node;
  }

  /**
   * Crashes node `id`: it stops at once, and its disk loses every write not yet synced (a commit
   * under way included).
   */
  crash(id: string): void {
    this.#halt(id, true);
  }

  /** Stops node `id` at once (see crash); `fault`: count it as a crash (a retirement is not one). */
  #halt(id: string, fault: boolean): void {
    const node = this.#nodes.get(id);
    if (node === undefined) return;
    this.#nodes.delete(id);
    this.network.detach(id);
    this.#stopDetection(id);
    if (fault) this.faults.crashes++;
    this.#addPolicyStats(node, this.#endedPolicyStats);
    // The disk first: nothing the dying node's code does from here on reaches it.
    if (this.stores.get(id)!.crash() && fault) this.faults.crashesWithWritesInFlight++;
    // Abrupt: a crashed node hands nothing over (its network and disk are already gone).
    void node.close({ abrupt: true }).catch(() => {});
    for (const listener of this.crashListeners) listener(id);
  }

  /**
   * Replaces crashed node `id`'s disk with an empty one (amnesia): a new volume, a replaced
   * drive, a memory store. The node must be down.
   */
  wipe(id: string): void {
    if (this.#nodes.has(id)) throw new Error(`${id} must be down to lose its disk`);
    this.stores.get(id)!.wipe();
    // Its restart recovers (and never votes again), unless it is an added node that never served: it joins anew.
    if (!this.#added.has(id) || this.#served.has(id)) this.nonVoting.add(id);
    this.#served.delete(id);
    this.losses.push({ id, atMs: this.scheduler.nowMs(), how: 'wipe' });
    this.recovering.add(id);
    this.faults.amnesia++;
  }

  /** Moves node `id`'s wall clock by `deltaMs` (negative: back), running or not. */
  stepClock(id: string, deltaMs: number): void {
    if (deltaMs === 0) return;
    this.#skews.set(id, (this.#skews.get(id) ?? 0) + deltaMs);
    if (deltaMs < 0) this.faults.clockStepsBack++;
    else this.faults.clockStepsForward++;
  }

  /** Sets node `id`'s wall-clock offset from true time back to `skewMs` (an NTP fix). */
  setClockSkew(id: string, skewMs: number): void {
    this.#skews.set(id, skewMs);
  }

  clockSkewOf(id: string): number {
    return this.#skews.get(id) ?? 0;
  }

  /** Makes node `id`'s disk `factor` times slower (1 restores it). */
  slowDisk(id: string, factor: number): void {
    const disk = this.stores.get(id)!;
    if (factor > 1 && disk.slowFactor === 1) this.faults.slowDisks++;
    disk.slowFactor = factor;
  }

  /** Makes node `id`'s next commit fail its sync with EIO. */
  failNextSync(id: string): void {
    this.stores.get(id)!.failNextSync();
  }

  /** The failure detector's view of node `id` (undefined when liveness was injected or it is down). */
  viewOf(id: string): MembershipView | undefined {
    return this.#detection.get(id)?.view;
  }

  #startDetection(id: string, store: Store, wallClock: () => number): Detection {
    const config = this.#detectorConfig;
    // As ReplicaNode: the incarnation grows on every start from the same disk.
    let incarnation = 1;
    void nextIncarnation(store, wallClock).then((n) => (incarnation = n)).catch(() => {});
    const peers = this.nodeIds.filter((p) => p !== id);
    const view: MembershipView = new MembershipView({
      selfId: id,
      selfAddress: `sim:${id}`,
      peers: peers.map((p) => ({ id: p, address: `sim:${p}` })),
      config,
      startMs: this.scheduler.nowMs(),
    });
    const detection: Detection = { view, timers: [], peers, get incarnation() {
      return incarnation;
    } };
    const beat = () => {
      for (const peer of detection.peers) {
        const sent = incarnation;
        this.network.send(id, peer, () => {
          // A beat from a node the receiver does not count as a peer (yet, or any more) is ignored.
          const receiver = this.#detection.get(peer)?.view;
          if (receiver?.hasPeer(id)) receiver.recordHeartbeat(id, sent, this.scheduler.nowMs());
        });
      }
    };
    detection.timers.push(
      repeatEvery(this.scheduler, config.heartbeatIntervalMs, beat),
      repeatEvery(this.scheduler, config.tickIntervalMs, () => view.tick(this.scheduler.nowMs())),
    );
    this.#detection.set(id, detection);
    return detection;
  }

  /**
   * What the policies did over the whole run, summed over every node start (a crash ends a start,
   * so its counts are kept then): snapshots taken, installed and transferred.
   */
  policyTotals(): Record<string, number> {
    const totals = { ...this.#endedPolicyStats };
    for (const node of this.#nodes.values()) this.#addPolicyStats(node, totals);
    return totals;
  }

  /**
   * The revisions of CP keyspace `keyspace`'s history that node `id`'s disk holds durably, in
   * revision order (what a crash now would leave): read off the disk, not through the node, so a
   * simulation can take it as ground truth for Watch and Range. `after`: only revisions above it.
   */
  durableHistory(id: string, keyspace: string, after = 0): ChangeBatch[] {
    const out: ChangeBatch[] = [];
    for (const entry of this.stores.get(id)!.durableEntries(historyKeyspace(keyspace))) {
      const revision = Number(Buffer.from(entry.key.buffer, entry.key.byteOffset, entry.key.byteLength).readBigUInt64BE(0));
      if (revision > after) out.push(decodeBatch(revision, entry.value));
    }
    return out.sort((a, b) => a.revision - b.revision);
  }

  #addPolicyStats(node: NodeCore, into: Record<string, number>): void {
    for (const { name } of node.keyspaceNames()) {
      // Duck-typed, as ops/metrics.ts reads them: the policy interface does not require stats().
      const policy = node.policyOf(name) as { stats?: () => Readonly<Record<string, number>> | undefined };
      const stats = policy.stats?.();
      if (stats === undefined) continue;
      for (const key of SUMMED_POLICY_STATS) if (typeof stats[key] === 'number') into[key] = (into[key] ?? 0) + stats[key];
    }
  }

  /**
   * Node `id`'s membership changed: its failure detector follows `known` (every node whose peer
   * calls it takes). Nothing changes while the set is the same, so a run without membership
   * changes beats exactly as before; a new peer is beaten to after the others.
   */
  #followPeers(id: string, known: readonly string[]): void {
    const detection = this.#detection.get(id);
    if (detection === undefined) return;
    const wanted = new Set(known.filter((p) => p !== id));
    if (wanted.size === detection.peers.length && detection.peers.every((p) => wanted.has(p))) return;
    const peers = [...detection.peers.filter((p) => wanted.has(p)), ...[...wanted].filter((p) => !detection.peers.includes(p))];
    detection.peers = peers;
    detection.view.setPeers(peers.map((p) => ({ id: p, address: this.#added.has(p) ? simAddress(p) : `sim:${p}` })));
  }

  #stopDetection(id: string): void {
    const detection = this.#detection.get(id);
    if (detection === undefined) return;
    for (const t of detection.timers) t.cancel();
    this.#detection.delete(id);
  }
}

/** As FailureDetection.liveness: ALIVE peers, plus never-heard ones during the startup grace. */
function livenessOf(view: MembershipView, scheduler: VirtualScheduler, config: FailureDetectorConfig): LivenessOracle {
  return {
    isAlive: (peer) => {
      // As FailureDetection.liveness: a node that is no peer (any more, or yet) is not alive.
      if (peer !== view.selfId && !view.hasPeer(peer)) return false;
      if (view.isAlive(peer)) return true;
      const now = scheduler.nowMs();
      return now < view.startMs + config.startupGraceMs && view.member(peer, now).lastHeardAgeMs === undefined;
    },
  };
}

