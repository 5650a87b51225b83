import { HybridLogicalClock, repeatEvery, type TimerHandle } from '../clock/index.js';
import { localProfile, MembershipView, type FailureDetectorConfig } from '../failure/index.js';
import type { Logger } from '../logging/logger.js';
import { NODE_DEFAULTS } from '../node/config.js';
import { IDENTITY_META, identityRecord, NodeCore, settle } from '../node/node-core.js';
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
  readonly nodeIds: readonly string[];
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
  readonly #nodes = new Map<string, NodeCore>();
  /** Node starts so far: each start draws its election timeouts from a stream of its own. */
  #starts = 0;
  readonly #detection = new Map<string, Detection>();
  readonly #skews = new Map<string, number>();
  readonly #options: SimClusterOptions;
  readonly #detectorConfig: FailureDetectorConfig = localProfile();

  constructor(options: SimClusterOptions) {
    this.#options = options;
    this.random = new SeededRandom(options.seed);
    this.network = new InMemoryNetwork(this.scheduler, this.random.fork(1), options.faults ?? CALM_NETWORK);
    this.nodeIds = options.nodeIds ?? ['n1', 'n2', 'n3'];
    const skewRandom = this.random.fork(2);
    for (const [i, id] of this.nodeIds.entries()) {
      const disk = new SimulatedDisk(this.scheduler, this.random.fork(10 + i), options.disk ?? DEFAULT_DISK_PROFILE);
      if (options.formed ?? true) disk.prepareMeta(IDENTITY_META, identityRecord(id, NODE_DEFAULTS.clusterId));
      this.stores.set(id, disk);
      this.#skews.set(id, options.maxSkewMs ? skewRandom.between(-options.maxSkewMs, options.maxSkewMs) : 0);
      this.start(id);
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
    const wallClock = () => this.wallClockOf(id);
    const peers = this.nodeIds.filter((p) => p !== id).map((p) => ({ id: p, address: `sim:${p}` }));
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
          if (phase === 'serving' && this.recovering.delete(id)) this.faults.recoveries++;
        },
      },
    );
    this.#nodes.set(id, node);
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
    const node = this.#nodes.get(id);
    if (node === undefined) return;
    this.#nodes.delete(id);
    this.network.detach(id);
    this.#stopDetection(id);
    this.faults.crashes++;
    this.#addPolicyStats(node, this.#endedPolicyStats);
    // The disk first: nothing the dying node's code does from here on reaches it.
    if (this.stores.get(id)!.crash()) this.faults.crashesWithWritesInFlight++;
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
    const view = new MembershipView({
      selfId: id,
      selfAddress: `sim:${id}`,
      peers: peers.map((p) => ({ id: p, address: `sim:${p}` })),
      config,
      startMs: this.scheduler.nowMs(),
    });
    const beat = () => {
      for (const peer of peers) {
        const sent = incarnation;
        this.network.send(id, peer, () => this.#detection.get(peer)?.view.recordHeartbeat(id, sent, this.scheduler.nowMs()));
      }
    };
    const timers = [
      repeatEvery(this.scheduler, config.heartbeatIntervalMs, beat),
      repeatEvery(this.scheduler, config.tickIntervalMs, () => view.tick(this.scheduler.nowMs())),
    ];
    const detection: Detection = { view, timers, get incarnation() {
      return incarnation;
    } };
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
      if (view.isAlive(peer)) return true;
      const now = scheduler.nowMs();
      return now < view.startMs + config.startupGraceMs && view.member(peer, now).lastHeardAgeMs === undefined;
    },
  };
}
