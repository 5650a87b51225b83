import type { ConsistencyPolicy } from '../policy/policy.js';
import type { CausalOperation } from '../testing/causal-history.js';
import { HistoryRecorder, pairOperations, type HistoryEvent } from '../testing/history.js';
import type { NetworkFaults } from '../transport/in-memory-network.js';
import type { SeededRandom } from './seeded-random.js';
import { RecordedCalls } from './recorded-call.js';
import { SimCluster } from './sim-cluster.js';

export interface CausalWorkloadOptions {
  readonly seed: number;
  readonly policy: ConsistencyPolicy;
  /** Sessions, each one operation at a time. @default 6 */
  readonly sessions?: number;
  /** Operations per session. @default 50 */
  readonly opsPerSession?: number;
  /** Keys shared by the sessions. @default 4 */
  readonly keys?: number;
  /** Probability that a session moves to another node before an operation. @default 0.3 */
  readonly moveRate?: number;
  /** Per-operation deadline, virtual ms. @default 300 */
  readonly timeoutMs?: number;
}

export interface CausalWorkloadResult {
  readonly seed: number;
  readonly events: readonly HistoryEvent[];
  /** The operations with the node that served each. */
  readonly operations: readonly CausalOperation[];
  readonly stats: Record<string, number>;
  readonly cluster: SimCluster;
}

export const CAUSAL_KEYSPACE = 'causal';
const decoder = new TextDecoder();
const CALM: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelayMs: 0.1, maxDelayMs: 2 };
const STORMY: NetworkFaults = { dropRate: 0.05, duplicateRate: 0.05, minDelayMs: 0.5, maxDelayMs: 60 };

/**
 * Sessions that move between the nodes of a simulated 3-node cluster, carrying their session
 * token, writing unique values and reading under partitions, lossy and slow links and
 * crash-restarts. The history goes to the causal checker. UNAVAILABLE (a replica behind the
 * session, a node down) is recorded as `fail`: nothing happened, and the checker holds the policy
 * to it; a crash of the serving node while an operation runs is `info`.
 */
export async function runCausalWorkload(options: CausalWorkloadOptions): Promise<CausalWorkloadResult> {
  const sessions = options.sessions ?? 6;
  const opsPerSession = options.opsPerSession ?? 50;
  const keys = Array.from({ length: options.keys ?? 4 }, (_, i) => `k${i}`);
  const moveRate = options.moveRate ?? 0.3;
  const timeoutMs = options.timeoutMs ?? 300;
  const cluster = new SimCluster({ seed: options.seed, keyspaces: { [CAUSAL_KEYSPACE]: options.policy }, maxSkewMs: 50, requestTimeoutMs: timeoutMs });
  const { scheduler } = cluster;
  const recorder = new HistoryRecorder(() => scheduler.nowMs());
  const served = new Map<string, string>(); // `${session}:${invokeIndex}` -> node
  const stats: Record<string, number> = { ok: 0, fail: 0, info: 0, crashes: 0, partitions: 0, moves: 0 };
  const sleep = (ms: number) => new Promise<void>((resolve) => scheduler.setTimer(ms, resolve));
  const calls = new RecordedCalls(stats);
  let running = true;

  const session = async (id: number, random: SeededRandom): Promise<void> => {
    let node = random.pick(cluster.nodeIds);
    let token: Uint8Array = new Uint8Array(0);
    for (let n = 0; n < opsPerSession; n++) {
      await sleep(random.between(0, 8));
      if (random.chance(moveRate)) {
        node = random.pick(cluster.nodeIds);
        stats.moves!++;
      }
      const key = random.pick(keys);
      const write = random.chance(0.4);
      const value = `s${id}-${n}`;
      const handle = recorder.invoke(id, write ? 'write' : 'read', key, write ? value : null);
      served.set(`${id}:${n}`, node);
      if (!cluster.isUp(node)) {
        calls.refused(handle);
        continue;
      }
      const ks = cluster.node(node).keyspace(CAUSAL_KEYSPACE);
      await calls.run(node, handle, () =>
        write
          ? ks.put(key, value, { sessionToken: token }).then((r) => () => {
              token = r.sessionToken;
              handle.ok();
            })
          : ks.get(key, { sessionToken: token }).then((r) => () => {
              token = r.sessionToken;
              handle.ok(r.value === undefined ? null : decoder.decode(r.value));
            }),
      );
    }
  };

  const nemesis = async (random: SeededRandom): Promise<void> => {
    while (running) {
      await sleep(random.between(20, 150));
      if (!running) break;
      const action = random.next();
      const down = cluster.nodeIds.filter((id) => !cluster.isUp(id));
      if (action < 0.25) {
        const a = random.pick(cluster.nodeIds);
        const b = random.pick(cluster.nodeIds.filter((id) => id !== a));
        cluster.network.partition([[a], [b]]); // one link down: the others still relay
        stats.partitions!++;
      } else if (action < 0.45) {
        cluster.network.heal();
      } else if (action < 0.55 && down.length === 0) {
        const victim = random.pick(cluster.nodeIds);
        cluster.crash(victim);
        calls.crashed(victim);
        stats.crashes!++;
      } else if (action < 0.75 && down.length > 0) {
        cluster.start(random.pick(down));
      } else if (action < 0.9) {
        cluster.network.setFaults(STORMY);
      } else {
        cluster.network.setFaults(CALM);
      }
    }
  };

  const work = Promise.all(Array.from({ length: sessions }, (_, i) => session(i, cluster.random.fork(200 + i))));
  const chaos = nemesis(cluster.random.fork(199));
  const finished = await scheduler.runUntilSettled(work, 10 * 60_000);
  running = false;
  if (!finished) throw new Error(`seed ${options.seed}: the causal workload did not finish within 10 virtual minutes`);
  cluster.network.heal();
  cluster.network.setFaults(CALM);
  for (const id of cluster.nodeIds) if (!cluster.isUp(id)) cluster.start(id);
  await scheduler.runUntilSettled(chaos, 1_000);

  const events = recorder.events();
  const perSession = new Map<string, number>();
  const operations = pairOperations(events).map((op): CausalOperation => {
    const n = perSession.get(String(op.process)) ?? 0;
    perSession.set(String(op.process), n + 1);
    return { ...op, node: served.get(`${op.process}:${n}`) };
  });
  return { seed: options.seed, events, operations, stats, cluster };
}
