import type { ConsistencyPolicy } from '../policy/policy.js';
import type { CausalOperation } from '../testing/causal-history.js';
import { HistoryRecorder, pairOperations, type HistoryEvent } from '../testing/history.js';
import type { NetworkFaults } from '../transport/in-memory-network.js';
import type { SeededRandom } from './seeded-random.js';
import { RecordedCalls } from './recorded-call.js';
import { SimCluster } from './sim-cluster.js';
import { Nemesis, SimRunError, requireAllServing, type FaultEvent } from './nemesis.js';
import type { AcknowledgedWrite } from './register-workload.js';
import { MembershipNemesis, untilMembershipLeader, wipeKeepsVoters } from './membership-nemesis.js';
import { heldElsewhere } from './wipe-safety.js';
import { nameOf, valueToWrite } from './large-values.js';
import { NODE_DEFAULTS } from '../node/config.js';

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
  /** DELIBERATELY BROKEN nodes (see NodeSettings.unsafeSkipRecovery). @default false */
  readonly unsafeSkipRecovery?: boolean;
  /** DELIBERATELY BROKEN nodes (see NodeSettings.unsafeIgnoreClockHighWater). @default false */
  readonly unsafeIgnoreClockHighWater?: boolean;
  /** Change the cluster's membership while the sessions run (see RegisterWorkloadOptions.membershipChanges). @default false */
  readonly membershipChanges?: boolean;
  /** Virtual ms each session waits before each operation. @default [0, 8] */
  readonly opPauseMs?: readonly [number, number];
  /** Virtual ms between the fault nemesis's actions. @default [20, 150] */
  readonly faultPauseMs?: readonly [number, number];
  /** DELIBERATELY BROKEN nodes (see NodeSettings.unsafePromoteLagging). @default false */
  readonly unsafePromoteLagging?: boolean;
  /** DELIBERATELY BROKEN nodes (see NodeSettings.unsafeOverlappingChanges). @default false */
  readonly unsafeOverlappingChanges?: boolean;
}

export interface CausalWorkloadResult {
  readonly seed: number;
  readonly events: readonly HistoryEvent[];
  /** The operations with the node that served each. */
  readonly operations: readonly CausalOperation[];
  readonly stats: Record<string, number>;
  readonly cluster: SimCluster;
  /** The nemesis's actions, in order, with their virtual times. */
  readonly schedule: readonly FaultEvent[];
  /** Every acknowledged write, for the version-order check. */
  readonly acknowledged: readonly AcknowledgedWrite[];
}

export const CAUSAL_KEYSPACE = 'causal';
/** The share of writes whose value is padded to 64 KiB – 1 MiB (see large-values.ts). */
const LARGE_VALUE_RATE = 0.03;
const decoder = new TextDecoder();
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
  const opPauseMs = options.opPauseMs ?? [0, 8];
  const cluster = new SimCluster({
    seed: options.seed,
    keyspaces: { [CAUSAL_KEYSPACE]: options.policy },
    maxSkewMs: 50,
    requestTimeoutMs: timeoutMs,
    unsafeSkipRecovery: options.unsafeSkipRecovery,
    unsafeIgnoreClockHighWater: options.unsafeIgnoreClockHighWater,
    unsafePromoteLagging: options.unsafePromoteLagging,
    unsafeOverlappingChanges: options.unsafeOverlappingChanges,
    // Every node starts new: the run begins with the cluster forming.
    formed: false,
  });
  const membershipChanges = options.membershipChanges ?? false;
  const { scheduler } = cluster;
  const recorder = new HistoryRecorder(() => scheduler.nowMs());
  const served = new Map<string, string>(); // `${session}:${invokeIndex}` -> node
  const stats: Record<string, number> = { ok: 0, fail: 0, info: 0, moves: 0 };
  const acknowledged: AcknowledgedWrite[] = [];
  const sleep = (ms: number) => new Promise<void>((resolve) => scheduler.setTimer(ms, resolve));
  const calls = new RecordedCalls(stats);
  cluster.crashListeners.push((id) => calls.crashed(id));

  const session = async (id: number, random: SeededRandom): Promise<void> => {
    // Value sizes come from a stream of their own, so the operations a seed runs do not depend on them.
    const sizes = cluster.random.fork(5_000 + id);
    let node = random.pick(cluster.nodeIds);
    let token: Uint8Array = new Uint8Array(0);
    for (let n = 0; n < opsPerSession; n++) {
      await sleep(random.between(opPauseMs[0], opPauseMs[1]));
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
      const invokedAtMs = scheduler.nowMs();
      const servedBy = node;
      await calls.run(node, handle, () =>
        write
          ? ks.put(key, valueToWrite(value, sizes, LARGE_VALUE_RATE, NODE_DEFAULTS.maxValueBytes), { sessionToken: token }).then((r) => () => {
              acknowledged.push({ key, value, version: r.version, node: servedBy, invokedAtMs, completedAtMs: scheduler.nowMs() });
              token = r.sessionToken;
              handle.ok();
            })
          : ks.get(key, { sessionToken: token }).then((r) => () => {
              token = r.sessionToken;
              handle.ok(r.value === undefined ? null : nameOf(r.value));
            }),
      );
    }
  };

  // Only a disk whose own writes every peer has applied (its origin log is empty) and whose
  // entries the others hold: a causal write acknowledged by one replica lives on one disk.
  const canLose = (id: string) => cluster.stores.get(id)!.durableEntries(`_l.${CAUSAL_KEYSPACE}`).length === 0 && heldElsewhere(cluster, id, CAUSAL_KEYSPACE, 1);
  let membership: MembershipNemesis | undefined;
  const nemesis = new Nemesis(cluster, cluster.random.fork(199), {
    isolateWholeNodes: false, // one link down: the others still relay
    pauseMs: options.faultPauseMs ?? [20, 150],
    stormy: STORMY,
    canWipe: (id) => canLose(id) && (membership === undefined || wipeKeepsVoters(cluster, membership, id)),
    ...(membershipChanges ? { splitRate: 0.4 } : {}),
  }, stats);
  if (membershipChanges) {
    membership = new MembershipNemesis(cluster, cluster.random.fork(198), {
      pauseMs: [30, 200],
      overlapRate: options.unsafeOverlappingChanges ? 0.35 : 0.1,
      canLose,
      startWhenKnown: true,
    }, stats, nemesis.schedule);
  }

  if (!(await cluster.untilAllServing(10_000))) throw new Error(`seed ${options.seed}: the cluster did not form within 10 virtual seconds`);
  if (membershipChanges && !(await untilMembershipLeader(cluster, 10_000))) throw new SimRunError(`seed ${options.seed}: no node led the cluster's membership within 10 virtual seconds of forming`, nemesis.schedule, stats);
  const work = Promise.all(Array.from({ length: sessions }, (_, i) => session(i, cluster.random.fork(200 + i))));
  const chaos = nemesis.run();
  const changes = membership?.run() ?? Promise.resolve();
  const finished = await scheduler.runUntilSettled(work, 10 * 60_000);
  nemesis.stop();
  membership?.stop();
  if (!finished) throw new SimRunError(`seed ${options.seed}: the causal workload did not finish within 10 virtual minutes`, nemesis.schedule, stats);
  if (!(await scheduler.runUntilSettled(changes, 60_000))) throw new SimRunError(`seed ${options.seed}: the membership nemesis did not stop within a virtual minute`, nemesis.schedule, stats);
  nemesis.heal();
  await scheduler.runUntilSettled(chaos, 1_000);
  if (membership !== undefined) await scheduler.runUntilSettled(membership.finish(), 60_000);
  await requireAllServing(cluster, options.seed, nemesis.schedule, stats);
  Object.assign(stats, cluster.faults);

  const events = recorder.events();
  const perSession = new Map<string, number>();
  const operations = pairOperations(events).map((op): CausalOperation => {
    const n = perSession.get(String(op.process)) ?? 0;
    perSession.set(String(op.process), n + 1);
    return { ...op, node: served.get(`${op.process}:${n}`) };
  });
  return { seed: options.seed, events, operations, stats, cluster, schedule: nemesis.schedule, acknowledged };
}
