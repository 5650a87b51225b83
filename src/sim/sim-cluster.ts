import { HybridLogicalClock } from '../clock/index.js';
import type { Logger } from '../logging/logger.js';
import { NodeCore, settle } from '../node/node-core.js';
import type { ConsistencyPolicy, LivenessOracle } from '../policy/policy.js';
import { MemoryStore } from '../storage/memory-store.js';
import { InMemoryNetwork, type NetworkFaults, CALM_NETWORK } from '../transport/in-memory-network.js';
import { SeededRandom } from './seeded-random.js';
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
  /** Liveness the policies see; everyone alive by default (the quorum calls find out the rest). */
  readonly liveness?: (self: string) => LivenessOracle;
}

const SIM_EPOCH_MS = 1_700_000_000_000;
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A whole cluster in one process on virtual time: NodeCores over an InMemoryNetwork, each with a
 * MemoryStore that survives its node's crash (it models the disk). Everything random comes from
 * one seed, so a failing run replays exactly.
 */
export class SimCluster {
  readonly scheduler = new VirtualScheduler();
  readonly random: SeededRandom;
  readonly network: InMemoryNetwork;
  readonly nodeIds: readonly string[];
  readonly stores = new Map<string, MemoryStore>();
  readonly #nodes = new Map<string, NodeCore>();
  readonly #skews = new Map<string, number>();
  readonly #options: SimClusterOptions;

  constructor(options: SimClusterOptions) {
    this.#options = options;
    this.random = new SeededRandom(options.seed);
    this.network = new InMemoryNetwork(this.scheduler, this.random.fork(1), options.faults ?? CALM_NETWORK);
    this.nodeIds = options.nodeIds ?? ['n1', 'n2', 'n3'];
    const skewRandom = this.random.fork(2);
    for (const id of this.nodeIds) {
      this.stores.set(id, new MemoryStore());
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

  /** Starts (or restarts, from its surviving store) node `id`. */
  start(id: string): NodeCore {
    if (this.#nodes.has(id)) throw new Error(`${id} is already running`);
    const skew = this.#skews.get(id) ?? 0;
    const wallClock = () => SIM_EPOCH_MS + this.scheduler.nowMs() + skew;
    const peers = this.nodeIds.filter((p) => p !== id).map((p) => ({ id: p, address: `sim:${p}` }));
    const clock = new HybridLogicalClock(wallClock);
    const node = new NodeCore(
      settle({
        nodeId: id,
        peers,
        keyspaces: this.#options.keyspaces,
        requestTimeoutMs: this.#options.requestTimeoutMs,
      }),
      {
        replicas: this.network.replicaSet(id, peers.map((p) => p.id)),
        scheduler: this.scheduler,
        wallClock,
        clock,
        store: this.stores.get(id)!,
        logger: this.#options.logger ?? silent,
        liveness: this.#options.liveness?.(id) ?? { isAlive: () => true },
      },
    );
    this.#nodes.set(id, node);
    this.network.attach(id, { handler: node, clock });
    return node;
  }

  /**
   * Crashes node `id`: it stops at once. Its store (the disk) keeps what it acknowledged as
   * durable and loses writes still in flight, the worst a real disk may do.
   */
  crash(id: string): void {
    const node = this.#nodes.get(id);
    if (node === undefined) return;
    this.#nodes.delete(id);
    this.network.detach(id);
    void node.close();
    this.stores.get(id)!.crash();
  }
}
