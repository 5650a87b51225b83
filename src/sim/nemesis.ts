import type { NetworkFaults } from '../transport/in-memory-network.js';
import type { SeededRandom } from './seeded-random.js';
import type { SimCluster } from './sim-cluster.js';

/** The calm and the stormy network the nemesis switches between. */
export const CALM: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelayMs: 0.1, maxDelayMs: 2 };
export const STORMY: NetworkFaults = { dropRate: 0.05, duplicateRate: 0.05, minDelayMs: 0.5, maxDelayMs: 40 };

/** How the nemesis behaves; every choice inside comes from its random source. */
export interface NemesisOptions {
  /** Cut one node off from the others, or (false) one link only, so the others still relay. */
  readonly isolateWholeNodes: boolean;
  /** Virtual ms between actions. */
  readonly pauseMs: readonly [number, number];
  /** Largest clock step, either way, in ms. @default 3000 */
  readonly maxClockStepMs?: number;
  /**
   * Whether node `id` (down) may lose its disk now without losing what the policy promises to
   * keep. CP: always. AP and causal: only a disk whose acknowledged writes reached enough of the
   * others (a write acknowledged by one replica alone lives on one disk, which the failure model
   * says plainly). The nemesis also never wipes a second node while one is still recovering: a
   * majority's disks lost at once is outside the model.
   */
  readonly canWipe: (id: string) => boolean;
  /** The network while stormy. @default STORMY */
  readonly stormy?: NetworkFaults;
  /**
   * The share of partitions that split the nodes into two halves (the smaller one chosen at
   * random) rather than cutting off one node or one link. Membership runs use it: with four or
   * five nodes a half is more than one node. @default 0 (no extra random draw is made)
   */
  readonly splitRate?: number;
}

/** One fault action, as the schedule records it. */
export interface FaultEvent {
  readonly atMs: number;
  readonly action: string;
}

/**
 * A simulated run that could not go on, with the schedule that led there (for the report).
 * `stuck`: nodes never served again after the heal (a recovery or join that never ended).
 */
export class SimRunError extends Error {
  override readonly name = 'SimRunError';
  constructor(
    message: string,
    readonly schedule: readonly FaultEvent[],
    readonly stats: Record<string, number>,
    readonly stuck = false,
  ) {
    super(message);
  }
}

/**
 * After the heal: waits up to `withinMs` virtual ms for every node of `cluster` to serve (wiped
 * ones recovered, new ones joined); throws a stuck SimRunError naming each node's phase if not.
 */
export async function requireAllServing(cluster: SimCluster, seed: number, schedule: readonly FaultEvent[], stats: Record<string, number>, withinMs = 30_000): Promise<void> {
  if (await cluster.untilAllServing(withinMs, true)) return;
  Object.assign(stats, cluster.faults);
  const phases = cluster.nodeIds.map((id) => `${id} ${cluster.isUp(id) ? cluster.node(id).phase + ' ' + cluster.node(id).waitingFor : 'down'}`);
  throw new SimRunError(`seed ${seed}: not every node serves ${withinMs / 1000} virtual seconds after the heal: ${phases.join('; ')}`, schedule, stats, true);
}

/**
 * The fault injector of the simulations: partitions, crashes (single, or two nodes at once as a
 * power loss would), restarts with an empty disk (amnesia) or a stepped clock, clock steps of a
 * running node, slow disks, failed syncs, and lossy networks. Each action is recorded with its
 * virtual time, so a violation can be printed with the schedule that led to it.
 */
export class Nemesis {
  readonly schedule: FaultEvent[] = [];
  #running = true;

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: SeededRandom,
    private readonly options: NemesisOptions,
    private readonly stats: Record<string, number>,
  ) {
    for (const k of ['partitions', 'storms', 'powerLosses']) stats[k] ??= 0;
  }

  stop(): void {
    this.#running = false;
  }

  async run(): Promise<void> {
    const { cluster, random, options } = this;
    const sleep = (ms: number) => new Promise<void>((resolve) => cluster.scheduler.setTimer(ms, resolve));
    const maxStep = options.maxClockStepMs ?? 3_000;
    // Most steps stay inside the peers' tolerated clock offset (500 ms), which is all it takes to
    // reorder versions across a restart; some go beyond it, and the node's messages are refused.
    // A node's clock stays within maxStep of true time, however many steps land on it.
    const step = (id: string) => {
      const size = random.chance(0.7) ? random.between(20, 450) : random.between(500, maxStep);
      const delta = Math.round(random.chance(0.5) ? -size : size);
      const skew = cluster.clockSkewOf(id);
      return Math.max(-maxStep, Math.min(maxStep, skew + delta)) - skew;
    };
    while (this.#running) {
      await sleep(random.between(options.pauseMs[0], options.pauseMs[1]));
      if (!this.#running) break;
      const up = cluster.nodeIds.filter((id) => cluster.isUp(id));
      const down = cluster.nodeIds.filter((id) => !cluster.isUp(id));
      const roll = random.next();
      if (roll < 0.16) {
        if (options.splitRate !== undefined && random.chance(options.splitRate)) {
          const rest = [...cluster.nodeIds];
          const half: string[] = [];
          while (half.length < Math.floor(cluster.nodeIds.length / 2)) half.push(rest.splice(random.int(0, rest.length - 1), 1)[0]!);
          cluster.network.partition([half, rest]);
          this.#record(`split ${half.join(' ')} | ${rest.join(' ')}`);
          this.stats.partitions!++;
          continue;
        }
        const a = random.pick(cluster.nodeIds);
        if (options.isolateWholeNodes) {
          cluster.network.partition([[a], cluster.nodeIds.filter((id) => id !== a)]);
          this.#record(`partition ${a} | rest`);
        } else {
          const b = random.pick(cluster.nodeIds.filter((id) => id !== a));
          cluster.network.partition([[a], [b]]);
          this.#record(`cut link ${a} - ${b}`);
        }
        this.stats.partitions!++;
      } else if (roll < 0.28) {
        cluster.network.heal();
        this.#record('heal');
      } else if (roll < 0.4 && down.length === 0) {
        this.#crash(random.pick(up));
      } else if (roll < 0.43 && down.length === 0) {
        // A power loss: two nodes at once, each losing whatever its disk had not synced.
        const first = random.pick(up);
        const second = random.pick(up.filter((id) => id !== first));
        this.stats.powerLosses!++;
        this.#crash(first);
        this.#crash(second);
      } else if (roll < 0.6 && down.length > 0) {
        const id = random.pick(down);
        let how = '';
        if (cluster.recovering.size === 0 && random.chance(0.3) && options.canWipe(id)) {
          cluster.wipe(id);
          how += ' with an empty disk';
        }
        if (random.chance(0.3)) {
          const delta = step(id);
          cluster.stepClock(id, delta);
          how += ` with its clock stepped ${delta > 0 ? '+' : ''}${delta} ms`;
        }
        cluster.start(id);
        this.#record(`restart ${id}${how}`);
      } else if (roll < 0.65 && up.length > 0) {
        const id = random.pick(up);
        const delta = step(id);
        cluster.stepClock(id, delta);
        this.#record(`step ${id}'s clock ${delta > 0 ? '+' : ''}${delta} ms`);
      } else if (roll < 0.7) {
        const id = random.pick(cluster.nodeIds);
        cluster.setClockSkew(id, 0);
        this.#record(`fix ${id}'s clock`);
      } else if (roll < 0.75) {
        const id = random.pick(cluster.nodeIds);
        cluster.slowDisk(id, 20);
        this.#record(`slow ${id}'s disk ×20`);
      } else if (roll < 0.79) {
        const id = random.pick(cluster.nodeIds);
        cluster.slowDisk(id, 1);
        this.#record(`restore ${id}'s disk`);
      } else if (roll < 0.81 && up.length > 0) {
        const id = random.pick(up);
        cluster.failNextSync(id);
        this.#record(`fail ${id}'s next sync (EIO)`);
      } else if (roll < 0.91) {
        cluster.network.setFaults(options.stormy ?? STORMY);
        this.stats.storms!++;
        this.#record('storm');
      } else {
        cluster.network.setFaults(CALM);
        this.#record('calm');
      }
    }
  }

  /**
   * Ends the chaos: heals the network, restarts every node with a sane clock and a normal disk,
   * so callers can check the final state.
   */
  heal(): void {
    this.stop();
    const { cluster } = this;
    cluster.network.heal();
    cluster.network.setFaults(CALM);
    for (const id of cluster.nodeIds) {
      cluster.setClockSkew(id, 0);
      cluster.slowDisk(id, 1);
      cluster.stores.get(id)!.disarmSyncFailure();
      if (!cluster.isUp(id)) cluster.start(id);
    }
    this.#record('heal all');
  }

  #crash(id: string): void {
    this.cluster.crash(id);
    this.#record(`crash ${id}`);
  }

  #record(action: string): void {
    this.schedule.push({ atMs: Math.round(this.cluster.scheduler.nowMs() * 100) / 100, action });
  }
}
