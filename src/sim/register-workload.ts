import type { ConsistencyPolicy } from '../policy/policy.js';
import { HistoryRecorder, type HistoryEvent, type OpFunction } from '../testing/history.js';
import type { NetworkFaults } from '../transport/in-memory-network.js';
import { RecordedCalls } from './recorded-call.js';
import { SimCluster } from './sim-cluster.js';
import type { SeededRandom } from './seeded-random.js';
import type { Version } from '../storage/entry.js';

/** What one simulated run does; every choice inside comes from `seed`. */
export interface RegisterWorkloadOptions {
  readonly seed: number;
  /** The policy of the one keyspace under test. */
  readonly policy: ConsistencyPolicy;
  /** Concurrent clients, each running one operation at a time. @default 5 */
  readonly clients?: number;
  /** Operations per client. @default 60 */
  readonly opsPerClient?: number;
  /** The keys the clients share. @default 3 */
  readonly keys?: number;
  /** Per-operation deadline, virtual ms. @default 300 */
  readonly timeoutMs?: number;
  /** Inject partitions, crash-restarts, drops, duplicates and delays. @default true */
  readonly faults?: boolean;
}

export interface RegisterWorkloadResult {
  readonly seed: number;
  readonly events: readonly HistoryEvent[];
  /** Counts per completion type, and of the faults injected. */
  readonly stats: Record<string, number>;
  /** The cluster after the run (healed, every node up), for convergence checks. */
  readonly cluster: SimCluster;
  /** Every acknowledged put and delete with the version it was given. */
  readonly acknowledged: readonly AcknowledgedWrite[];
}

export interface AcknowledgedWrite {
  readonly key: string;
  /** The value put, or null for a delete. */
  readonly value: string | null;
  readonly version: Version;
}

const KEYSPACE = 'register';
const decoder = new TextDecoder();

/** The calm and the stormy network the nemesis switches between. */
const CALM: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelayMs: 0.1, maxDelayMs: 2 };
const STORMY: NetworkFaults = { dropRate: 0.05, duplicateRate: 0.05, minDelayMs: 0.5, maxDelayMs: 40 };

/**
 * A register workload under faults, on a simulated 3-node cluster: clients read, write and delete
 * a few keys through random nodes while a nemesis partitions the network, crashes and restarts
 * nodes and makes the network lossy. The recorded history goes to a checker.
 *
 * Outcomes are recorded as the API promises them: UNAVAILABLE and INVALID_ARGUMENT as `fail` (the
 * operation certainly did not take effect: the checker holds the policy to that), a deadline
 * (outcome unknown), a crash of the coordinating node, or anything unexpected as `info`.
 */
export async function runRegisterWorkload(options: RegisterWorkloadOptions): Promise<RegisterWorkloadResult> {
  const clients = options.clients ?? 5;
  const opsPerClient = options.opsPerClient ?? 60;
  const keyCount = options.keys ?? 3;
  const timeoutMs = options.timeoutMs ?? 300;
  const injectFaults = options.faults ?? true;
  const cluster = new SimCluster({ seed: options.seed, keyspaces: { [KEYSPACE]: options.policy }, maxSkewMs: 50, requestTimeoutMs: timeoutMs });
  const { scheduler } = cluster;
  const recorder = new HistoryRecorder(() => scheduler.nowMs());
  const stats: Record<string, number> = { ok: 0, fail: 0, info: 0, crashes: 0, partitions: 0, storms: 0 };
  const keys = Array.from({ length: keyCount }, (_, i) => `k${i}`);
  const sleep = (ms: number) => new Promise<void>((resolve) => scheduler.setTimer(ms, resolve));
  let running = true;
  const acknowledged: AcknowledgedWrite[] = [];

  const calls = new RecordedCalls(stats);

  const client = async (process: number, random: SeededRandom): Promise<void> => {
    for (let n = 0; n < opsPerClient; n++) {
      await sleep(random.between(0, 5));
      const nodeId = random.pick(cluster.nodeIds);
      const key = random.pick(keys);
      const roll = random.next();
      const f: OpFunction = roll < 0.5 ? 'read' : roll < 0.9 ? 'write' : 'delete';
      const value = f === 'write' ? `${process}-${n}` : null;
      const handle = recorder.invoke(process, f, key, value);
      if (!cluster.isUp(nodeId)) {
        // Connection refused: the request never left the client.
        calls.refused(handle);
        continue;
      }
      const ks = cluster.node(nodeId).keyspace(KEYSPACE);
      await calls.run(nodeId, handle, () =>
        f === 'read'
          ? ks.get(key).then((r) => () => handle.ok(r.value === undefined ? null : decoder.decode(r.value)))
          : f === 'write'
            ? ks.put(key, value!).then((r) => () => {
                acknowledged.push({ key, value, version: r.version });
                handle.ok();
              })
            : ks.delete(key).then((r) => () => {
                acknowledged.push({ key, value: null, version: r.version });
                handle.ok();
              }),
      );
    }
  };

  const nemesis = async (random: SeededRandom): Promise<void> => {
    while (running) {
      await sleep(random.between(20, 120));
      if (!running) break;
      const action = random.next();
      const down = cluster.nodeIds.filter((id) => !cluster.isUp(id));
      if (action < 0.25) {
        const isolated = random.pick(cluster.nodeIds);
        cluster.network.partition([[isolated], cluster.nodeIds.filter((id) => id !== isolated)]);
        stats.partitions!++;
      } else if (action < 0.45) {
        cluster.network.heal();
      } else if (action < 0.6 && down.length < 2) {
        const victim = random.pick(cluster.nodeIds.filter((id) => cluster.isUp(id)));
        cluster.crash(victim);
        calls.crashed(victim);
        stats.crashes!++;
      } else if (action < 0.8 && down.length > 0) {
        cluster.start(random.pick(down));
      } else if (action < 0.9) {
        cluster.network.setFaults(STORMY);
        stats.storms!++;
      } else {
        cluster.network.setFaults(CALM);
      }
    }
  };

  const workload = Promise.all(Array.from({ length: clients }, (_, i) => client(i, cluster.random.fork(100 + i))));
  const chaos = injectFaults ? nemesis(cluster.random.fork(99)) : Promise.resolve();
  const finished = await scheduler.runUntilSettled(workload, 10 * 60_000);
  running = false;
  if (!finished) throw new Error(`seed ${options.seed}: the workload did not finish within 10 virtual minutes`);

  // Heal everything, so that callers can check convergence on the final state.
  cluster.network.heal();
  cluster.network.setFaults(CALM);
  for (const id of cluster.nodeIds) if (!cluster.isUp(id)) cluster.start(id);
  await scheduler.runUntilSettled(chaos, 1_000);
  return { seed: options.seed, events: recorder.events(), stats, cluster, acknowledged };
}
