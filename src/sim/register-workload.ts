import type { ConsistencyPolicy } from '../policy/policy.js';
import { HistoryRecorder, type HistoryEvent, type OpFunction } from '../testing/history.js';
import { Nemesis, SimRunError, requireAllServing, type FaultEvent } from './nemesis.js';
import { MembershipNemesis, untilMembershipLeader, wipeKeepsVoters } from './membership-nemesis.js';
import { LossGuard } from './loss-guard.js';
import { nameOf, valueToWrite } from './large-values.js';
import { NODE_DEFAULTS } from '../node/config.js';
import { heldElsewhere } from './wipe-safety.js';
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
  /**
   * Inject partitions, crashes (inside commits too), power losses, amnesia, clock steps, slow
   * disks, failed syncs, drops, duplicates and delays. @default true
   */
  readonly faults?: boolean;
  /**
   * CP keyspaces: the share of operations that are compare-and-sets, from the value the client
   * last read of the key to a new one (checked against the cas register model). @default 0
   */
  readonly casRate?: number;
  /** AP keyspaces: the share of writes that ask for ack level quorum (the rest: one). @default 0 */
  readonly quorumAckRate?: number;
  /** DELIBERATELY BROKEN nodes (see NodeSettings.unsafeSkipRecovery). @default false */
  readonly unsafeSkipRecovery?: boolean;
  /** DELIBERATELY BROKEN nodes (see NodeSettings.unsafeIgnoreClockHighWater). @default false */
  readonly unsafeIgnoreClockHighWater?: boolean;
  /**
   * Change the cluster's membership while the workload runs (membership-nemesis.ts): nodes added
   * (they join as learners and are promoted), removed and retired, replaced. AP keyspaces then
   * decide which disks may go by what acknowledgements promised (loss-guard.ts). @default false
   */
  readonly membershipChanges?: boolean;
  /** Virtual ms each client waits before each operation. @default [0, 5] */
  readonly opPauseMs?: readonly [number, number];
  /** Virtual ms between the fault nemesis's actions. @default [20, 120] */
  readonly faultPauseMs?: readonly [number, number];
  /** DELIBERATELY BROKEN nodes (see NodeSettings.unsafePromoteLagging). @default false */
  readonly unsafePromoteLagging?: boolean;
  /** DELIBERATELY BROKEN nodes (see NodeSettings.unsafeOverlappingChanges); the membership nemesis then sometimes asks for two changes at once. @default false */
  readonly unsafeOverlappingChanges?: boolean;
}

export interface RegisterWorkloadResult {
  readonly seed: number;
  readonly events: readonly HistoryEvent[];
  /** Counts per completion type, and of the faults injected and landed. */
  readonly stats: Record<string, number>;
  /** The cluster after the run (healed, every node up), for convergence checks. */
  readonly cluster: SimCluster;
  /** Every acknowledged put and delete with the version it was given. */
  readonly acknowledged: readonly AcknowledgedWrite[];
  /** The nemesis's actions, in order, with their virtual times. */
  readonly schedule: readonly FaultEvent[];
  /**
   * AP membership runs: acknowledgements that did not have the copies their ack level promises
   * when they were made (see LossGuard.acknowledged), each described.
   */
  readonly brokenPromises: readonly string[];
}

export interface AcknowledgedWrite {
  readonly key: string;
  /** The value put, or null for a delete. */
  readonly value: string | null;
  readonly version: Version;
  /** The node that coordinated the write. */
  readonly node: string;
  readonly invokedAtMs: number;
  readonly completedAtMs: number;
  /** AP keyspaces: the ack level it was acknowledged at. */
  readonly ack?: 'one' | 'quorum';
  /** Membership runs: the coordinator's voters when it acknowledged the write. */
  readonly voters?: readonly string[];
}

const KEYSPACE = 'register';
/** The share of writes whose value is padded to 64 KiB – 1 MiB (see large-values.ts). */
const LARGE_VALUE_RATE = 0.03;
const decoder = new TextDecoder();

/**
 * A register workload under faults, on a simulated 3-node cluster: clients read, write and delete
 * a few keys through random nodes while a nemesis partitions the network, crashes and restarts
 * nodes (inside commits, two at once, with empty disks or stepped clocks), slows disks, fails
 * syncs and makes the network lossy. The recorded history goes to a checker.
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
  const quorumAckRate = options.quorumAckRate ?? 0;
  const casRate = options.casRate ?? 0;
  const opPauseMs = options.opPauseMs ?? [0, 5];
  const cluster = new SimCluster({
    seed: options.seed,
    keyspaces: { [KEYSPACE]: options.policy },
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
  const isAp = options.policy.name === 'ap';
  const guard = membershipChanges && isAp ? new LossGuard(cluster, KEYSPACE) : undefined;
  const { scheduler } = cluster;
  const recorder = new HistoryRecorder(() => scheduler.nowMs());
  const stats: Record<string, number> = { ok: 0, fail: 0, info: 0 };
  const keys = Array.from({ length: keyCount }, (_, i) => `k${i}`);
  const sleep = (ms: number) => new Promise<void>((resolve) => scheduler.setTimer(ms, resolve));
  const acknowledged: AcknowledgedWrite[] = [];
  const brokenPromises: string[] = [];

  const calls = new RecordedCalls(stats);
  cluster.crashListeners.push((id) => calls.crashed(id));

  const client = async (process: number, random: SeededRandom): Promise<void> => {
    // Value sizes come from a stream of their own, so the operations a seed runs do not depend on them.
    const sizes = cluster.random.fork(5_000 + process);
    // The value (bytes) this client last read of each key: what its compare-and-sets expect.
    const lastRead = new Map<string, Uint8Array>();
    const casRolls = cluster.random.fork(6_000 + process);
    for (let n = 0; n < opsPerClient; n++) {
      await sleep(random.between(opPauseMs[0], opPauseMs[1]));
      const nodeId = random.pick(cluster.nodeIds);
      const key = random.pick(keys);
      const roll = random.next();
      const expected = lastRead.get(key);
      // A separate stream decides cas, so that seeds run without cas keep their operations.
      const cas = casRate > 0 && casRolls.chance(casRate) && expected !== undefined;
      const f: OpFunction = cas ? 'cas' : roll < 0.5 ? 'read' : roll < 0.9 ? 'write' : 'delete';
      const value = f === 'write' ? `${process}-${n}` : null;
      const ack = random.chance(quorumAckRate) ? 'quorum' : undefined;
      const handle = recorder.invoke(process, f, key, f === 'cas' ? [nameOf(expected!), `${process}-${n}`] : value);
      if (!cluster.isUp(nodeId)) {
        // Connection refused: the request never left the client.
        calls.refused(handle);
        continue;
      }
      const ks = cluster.node(nodeId).keyspace(KEYSPACE);
      const invokedAtMs = scheduler.nowMs();
      const acked = (version: Version) => {
        if (!membershipChanges) return void acknowledged.push({ key, value, version, node: nodeId, invokedAtMs, completedAtMs: scheduler.nowMs() });
        const voters = cluster.isUp(nodeId) ? cluster.node(nodeId).membership.voters : [];
        acknowledged.push({ key, value, version, node: nodeId, invokedAtMs, completedAtMs: scheduler.nowMs(), ack: ack ?? 'one', voters });
        const broken = guard?.acknowledged({ key, version, level: ack ?? 'one', voters, invokedAtMs });
        if (broken !== undefined) brokenPromises.push(`${nodeId} at ${Math.round(scheduler.nowMs())} ms: ${broken}`);
      };
      await calls.run(nodeId, handle, () =>
        f === 'cas'
          ? ks.compareAndSet(key, expected!, valueToWrite(`${process}-${n}`, sizes, LARGE_VALUE_RATE, NODE_DEFAULTS.maxValueBytes)).then((r) => () => {
              if (!r.swapped) return handle.fail();
              handle.ok();
            })
          : f === 'read'
          ? ks.get(key).then((r) => () => {
              if (r.value === undefined) lastRead.delete(key);
              else lastRead.set(key, r.value);
              handle.ok(r.value === undefined ? null : nameOf(r.value));
            })
          : f === 'write'
            ? ks.put(key, valueToWrite(value!, sizes, LARGE_VALUE_RATE, NODE_DEFAULTS.maxValueBytes), { ack }).then((r) => () => {
                acked(r.version);
                handle.ok();
              })
            : ks.delete(key, { ack }).then((r) => () => {
                acked(r.version);
                handle.ok();
              }),
      );
    }
  };

  // A CP replica that lost its disk never votes again (it forgot its votes; membership changes
  // replace it): one such node leaves the other two to elect leaders, a second would leave none.
  // So the nemesis wipes one node per run, as often as it likes.
  const wipedCp = new Set<string>();
  let membership: MembershipNemesis | undefined;
  const nemesis = new Nemesis(cluster, cluster.random.fork(99), {
    isolateWholeNodes: true,
    pauseMs: options.faultPauseMs ?? [20, 120],
    canWipe: (id) => {
      if (membership !== undefined) return wipeKeepsVoters(cluster, membership, id) && (guard === undefined || guard.canLose(id));
      if (options.policy.name !== 'cp') return heldElsewhere(cluster, id, KEYSPACE, 1);
      if (wipedCp.size > 0 && !wipedCp.has(id)) return false;
      wipedCp.add(id);
      return true;
    },
    ...(membershipChanges ? { splitRate: 0.4 } : {}),
  }, stats);
  if (membershipChanges) {
    membership = new MembershipNemesis(cluster, cluster.random.fork(98), {
      pauseMs: [30, 200],
      overlapRate: options.unsafeOverlappingChanges ? 0.35 : 0.1,
      canLose: (id) => guard === undefined || guard.canLose(id),
    }, stats, nemesis.schedule);
  }

  // The cluster forms first (every node new, two probe rounds); the faults start once it serves.
  if (!(await cluster.untilAllServing(10_000))) throw new Error(`seed ${options.seed}: the cluster did not form within 10 virtual seconds`);
  // Membership changes need the membership's leader: its first election (on the system
  // keyspace's own, slower timing) ends before the run begins.
  if (membershipChanges && !(await untilMembershipLeader(cluster, 10_000))) throw new SimRunError(`seed ${options.seed}: no node led the cluster's membership within 10 virtual seconds of forming`, nemesis.schedule, stats);
  const workload = Promise.all(Array.from({ length: clients }, (_, i) => client(i, cluster.random.fork(100 + i))));
  const chaos = injectFaults ? nemesis.run() : Promise.resolve();
  const changes = membership?.run() ?? Promise.resolve();
  const finished = await scheduler.runUntilSettled(workload, 10 * 60_000);
  nemesis.stop();
  membership?.stop();
  if (!finished) throw new SimRunError(`seed ${options.seed}: the workload did not finish within 10 virtual minutes`, nemesis.schedule, stats);
  // The membership change under way ends (each step is bounded in time).
  if (!(await scheduler.runUntilSettled(changes, 60_000))) throw new SimRunError(`seed ${options.seed}: the membership nemesis did not stop within a virtual minute`, nemesis.schedule, stats);

  // Heal everything, so that callers can check convergence on the final state.
  nemesis.heal();
  await scheduler.runUntilSettled(chaos, 1_000);
  // Nodes removed and not retired yet hand over what they hold, then go.
  if (membership !== undefined) await scheduler.runUntilSettled(membership.finish(), 60_000);
  // Every node serving again: wiped ones recovered (a clock that ran ahead has been caught up with).
  await requireAllServing(cluster, options.seed, nemesis.schedule, stats);
  Object.assign(stats, cluster.faults, cluster.policyTotals());
  return { seed: options.seed, events: recorder.events(), stats, cluster, acknowledged, schedule: nemesis.schedule, brokenPromises };
}

