import { apAsync, type ApAsyncOptions } from '../policy/ap/ap-async.js';
import { causal, type CausalOptions } from '../policy/causal/causal.js';
import { cpQuorum, type CpQuorumOptions } from '../policy/cp/cp-quorum.js';
import { compareVersion, type Entry } from '../storage/entry.js';
import { checkCausalConsistency } from '../testing/causal-checker.js';
import { pairOperations, type HistoryEvent, type Operation } from '../testing/history.js';
import { checkLinearizability } from '../testing/linearizability.js';
import { CAUSAL_KEYSPACE, runCausalWorkload } from './causal-workload.js';
import { SimRunError, type FaultEvent } from './nemesis.js';
import { runRegisterWorkload } from './register-workload.js';
import type { SimCluster } from './sim-cluster.js';
import { checkVersionOrder } from './version-order.js';
import { checkRaftAgreement } from './raft-agreement.js';
import { nameOf } from './large-values.js';
import { SYSTEM_KEYSPACE } from '../node/cluster-membership.js';

export type SimPolicy = 'cp' | 'ap' | 'causal';

/** Deliberately broken variants the harness must catch (see each option's documentation). */
export interface BrokenVariant {
  /** NodeSettings.unsafeSkipRecovery: a wiped replica serves (and counts) at once. */
  readonly skipRecovery?: boolean;
  /** Causal: CausalOptions.unsafeSkipDependencyCheck. */
  readonly skipDependencyCheck?: boolean;
  /** Causal: unsafeReadInFlight: replicas answer with writes not yet durable. */
  readonly readInFlight?: boolean;
  /** NodeSettings.unsafeIgnoreClockHighWater: a restarted node's clock may go back. */
  readonly ignoreClockHighWater?: boolean;
  /** CP: CpQuorumOptions.unsafeCommitWithoutMajority: the leader commits on its own copy alone. */
  readonly commitWithoutMajority?: boolean;
  /** CP: CpQuorumOptions.unsafeReadIndexWithoutQuorum: the leader reads without confirming it leads. */
  readonly readIndexWithoutQuorum?: boolean;
  /**
   * Not a broken build: the run changes the cluster's membership meanwhile (membership-nemesis.ts),
   * with fewer operations per client. The broken variants below need it.
   */
  readonly membershipChanges?: boolean;
  /** NodeSettings.unsafePromoteLagging and, for CP keyspaces, CpQuorumOptions.unsafePromoteLagging: learners promoted before they caught up. */
  readonly promoteLagging?: boolean;
  /** NodeSettings.unsafeOverlappingChanges: membership changes overlap (no joint consensus); the nemesis asks for two at once. */
  readonly overlappingChanges?: boolean;
  /** AP: ApAsyncOptions.unsafeCountRemoved: a removed voter's acknowledgements still count. */
  readonly countRemoved?: boolean;
}

/**
 * The shape of membership runs: operations per client (per session for causal), the pause before
 * each, and the pause between fault actions. The cluster's membership changes through the system
 * keyspace, whose Raft group runs on production timing (100 ms ticks, elections of 1–2 s): a run
 * must last a few virtual seconds for several changes to land, so operations are spread out, and
 * the faults come less often (each crash of the membership's leader halts changes for an
 * election). AP writes may wait a second for their quorum: a write still waiting when a voter
 * that acknowledged it is removed is what tells a build that keeps counting that voter apart.
 */
export const MEMBERSHIP_RUN = {
  cp: { clients: 3, ops: 16, opPauseMs: [0, 140], faultPauseMs: [60, 300] },
  ap: { clients: 3, ops: 20, opPauseMs: [0, 120], faultPauseMs: [60, 300], timeoutMs: 1_000 },
  causal: { clients: 4, ops: 16, opPauseMs: [0, 140], faultPauseMs: [60, 300] },
} as const;

/** What went wrong in one seed. */
export interface SeedViolation {
  /** Which check failed: linearizability, causality, convergence, durability or version order. */
  readonly kind: 'linearizability' | 'raft-agreement' | 'causality' | 'convergence' | 'lost-write' | 'ack-promise' | 'version-order' | 'recovery' | 'run';
  readonly explanation: string;
  /** The operations of the history, to cut a window from. */
  readonly operations: readonly Operation[];
  /** The key the violation is about, when one is. */
  readonly key?: string;
}

export interface SeedResult {
  readonly policy: SimPolicy;
  readonly seed: number;
  /** Completions by type and the faults that landed (SimFaultStats), for totals. */
  readonly stats: Record<string, number>;
  readonly schedule: readonly FaultEvent[];
  readonly violation?: SeedViolation;
}

/** The AP options of the simulations: short intervals, so a run converges in virtual seconds. */
/**
 * Raft in the simulation: 10 ms ticks and a 10-tick election timeout (100–200 ms), on the scale of
 * the simulated network's delays and the workload's 300 ms deadlines, so that a run of a few
 * virtual seconds sees elections, leader changes and catch-ups rather than one long term. The log
 * compacted every 30 entries, so that followers back from a crash or a partition often need a
 * snapshot, and snapshots sent one key per piece, so that a transfer takes many round trips that a
 * crash, a partition or a lost message can cut.
 */
export const SIM_RAFT_TIMING = { tickMs: 10, electionTicks: 10, snapshotEvery: 30, snapshotChunkBytes: 1 } as const;

/**
 * CP data keyspaces in membership runs: SIM_RAFT_TIMING with 20 ms ticks (elections of 200–400
 * ms), which halves what a run of several virtual seconds costs.
 */
export const MEMBERSHIP_RAFT_TIMING = { ...SIM_RAFT_TIMING, tickMs: 20 } as const;

export const SIM_AP_OPTIONS: ApAsyncOptions = { antiEntropyIntervalMs: 200, hintReplayIntervalMs: 100, callTimeoutMs: 100 };
/**
 * AP keyspaces in membership runs: hints offered every 400 ms and anti-entropy every 500 ms (the
 * production defaults are 200 ms and 1 s), so that a node cut off for a while catches up through
 * them more slowly than the membership's log reaches it.
 */
export const MEMBERSHIP_AP_OPTIONS: ApAsyncOptions = { antiEntropyIntervalMs: 500, hintReplayIntervalMs: 400, callTimeoutMs: 100 };
/** After the heal, AP replicas must agree within this long (two anti-entropy intervals, plus time for clocks that ran ahead). */
const AP_CONVERGENCE_MS = 2 * 200 + 4_000;
/** Causal replicas must agree within this long after the heal (clocks that ran ahead by up to 3 s included). */
const CAUSAL_CONVERGENCE_MS = 5_000;
const decoder = new TextDecoder();

/**
 * Runs one seed of one policy's simulation under every fault kind and checks it with that
 * policy's checkers: CP with the linearizability checker; AP for convergence after the heal and
 * every acknowledged write kept; causal with the causal checker and convergence; all three for
 * the version order of each node's writes. The tests and `npm run sim` share it.
 */
export async function runSeed(policy: SimPolicy, seed: number, broken: BrokenVariant = {}): Promise<SeedResult> {
  try {
    if (policy === 'causal') return await runCausal(seed, broken);
    return await runRegister(policy, seed, broken);
  } catch (error) {
    // A run that stopped with nodes that never served again is a recovery that never ended.
    if (error instanceof SimRunError) {
      return { policy, seed, stats: error.stats, schedule: error.schedule, violation: { kind: error.stuck ? 'recovery' : 'run', explanation: error.message, operations: [] } };
    }
    return { policy, seed, stats: {}, schedule: [], violation: { kind: 'run', explanation: error instanceof Error ? (error.stack ?? error.message) : String(error), operations: [] } };
  }
}

async function runRegister(policy: 'cp' | 'ap', seed: number, broken: BrokenVariant): Promise<SeedResult> {
  const membership = isMembershipRun(broken);
  const cpOptions: CpQuorumOptions = {
    timing: membership ? MEMBERSHIP_RAFT_TIMING : SIM_RAFT_TIMING,
    unsafeCommitWithoutMajority: broken.commitWithoutMajority,
    unsafeReadIndexWithoutQuorum: broken.readIndexWithoutQuorum,
    ...(broken.promoteLagging ? { unsafePromoteLagging: true } : {}),
  };
  const run = await runRegisterWorkload({
    seed,
    policy: policy === 'cp' ? cpQuorum(cpOptions) : apAsync({ ...(membership ? MEMBERSHIP_AP_OPTIONS : SIM_AP_OPTIONS), ...(broken.countRemoved ? { unsafeCountRemoved: true } : {}) }),
    casRate: policy === 'cp' ? 0.15 : 0,
    // With membership changes every AP write asks for a quorum: an ack-one write lives on one
    // disk, and a removed node's disk goes (the loss guard would then keep every such node).
    quorumAckRate: policy === 'ap' ? (membership ? 1 : 0.5) : 0,
    unsafeSkipRecovery: broken.skipRecovery,
    unsafeIgnoreClockHighWater: broken.ignoreClockHighWater,
    ...(membership
      ? { membershipChanges: true, clients: MEMBERSHIP_RUN[policy].clients, opsPerClient: MEMBERSHIP_RUN[policy].ops, ...(policy === 'ap' ? { timeoutMs: MEMBERSHIP_RUN.ap.timeoutMs } : {}), opPauseMs: MEMBERSHIP_RUN[policy].opPauseMs, faultPauseMs: MEMBERSHIP_RUN[policy].faultPauseMs, unsafePromoteLagging: broken.promoteLagging, unsafeOverlappingChanges: broken.overlappingChanges }
      : {}),
  });
  const base = { policy, seed, stats: run.stats, schedule: run.schedule };
  const operations = pairOperations(run.events);
  const stuck = unrecovered(run.stats);
  if (stuck !== undefined) return { ...base, violation: { kind: 'recovery', explanation: stuck, operations } };
  if (policy === 'cp') {
    const disagreement = raftDisagreement(run.cluster, 'register', membership);
    if (disagreement !== undefined) return { ...base, violation: { kind: 'raft-agreement', explanation: disagreement, operations } };
  }
  if (membership) {
    const disagreement = raftDisagreement(run.cluster, SYSTEM_KEYSPACE, true);
    if (disagreement !== undefined) return { ...base, violation: { kind: 'raft-agreement', explanation: disagreement, operations } };
  }
  const order = checkVersionOrder(run.acknowledged);
  if (order !== undefined) return { ...base, violation: { kind: 'version-order', explanation: order, operations } };
  if (policy === 'cp') {
    const result = checkLinearizability(operations, { timeoutMs: 10_000 });
    if (result.verdict !== 'linearizable') {
      const key = result.keys.find((k) => k.verdict !== 'linearizable')?.key;
      return { ...base, violation: { kind: 'linearizability', explanation: `${result.verdict}: ${result.explanation ?? ''}`, operations, key } };
    }
    return base;
  }
  // Membership runs decide which disks may go by what acknowledgements promise: each was checked when made.
  const brokenPromise = run.brokenPromises[0];
  if (brokenPromise !== undefined) return { ...base, violation: { kind: 'ack-promise', explanation: brokenPromise, operations } };
  const convergenceMs = membership ? 2 * MEMBERSHIP_AP_OPTIONS.antiEntropyIntervalMs! + 4_000 : AP_CONVERGENCE_MS;
  const converged = await timeToConverge(run.cluster, 'register', convergenceMs);
  if (converged < 0) {
    return { ...base, violation: { kind: 'convergence', explanation: `replicas differ ${convergenceMs} ms after the heal:\n${describeStates(run.cluster, 'register')}`, operations } };
  }
  for (const id of run.cluster.nodeIds) {
    const state = stateOf(run.cluster, id, 'register');
    for (const w of run.acknowledged) {
      const held = state.get(w.key);
      const lost =
        held === undefined
          ? `${id} holds nothing for ${w.key}`
          : compareVersion(held.version, w.version) < 0
            ? `${id} holds an older version of ${w.key}`
            : compareVersion(held.version, w.version) === 0 && (held.tombstone !== (w.value === null) || (w.value !== null && nameOf(held.value) !== w.value))
              ? `${id} holds another value under the same version of ${w.key}`
              : undefined;
      if (lost !== undefined) {
        return { ...base, violation: { kind: 'lost-write', explanation: `${lost} than the write acknowledged by ${w.node} at ${w.completedAtMs} ms (${JSON.stringify(w.version)})`, operations, key: w.key } };
      }
    }
  }
  return base;
}

async function runCausal(seed: number, broken: BrokenVariant): Promise<SeedResult> {
  const options: CausalOptions = { callTimeoutMs: 100, unsafeSkipDependencyCheck: broken.skipDependencyCheck, unsafeReadInFlight: broken.readInFlight };
  const membership = isMembershipRun(broken);
  const run = await runCausalWorkload({
    seed,
    policy: causal(options),
    unsafeSkipRecovery: broken.skipRecovery,
    unsafeIgnoreClockHighWater: broken.ignoreClockHighWater,
    ...(membership
      ? { membershipChanges: true, sessions: MEMBERSHIP_RUN.causal.clients, opsPerSession: MEMBERSHIP_RUN.causal.ops, opPauseMs: MEMBERSHIP_RUN.causal.opPauseMs, faultPauseMs: MEMBERSHIP_RUN.causal.faultPauseMs, unsafePromoteLagging: broken.promoteLagging, unsafeOverlappingChanges: broken.overlappingChanges }
      : {}),
  });
  const base = { policy: 'causal' as const, seed, stats: run.stats, schedule: run.schedule };
  const stuck = unrecovered(run.stats);
  if (stuck !== undefined) return { ...base, violation: { kind: 'recovery', explanation: stuck, operations: run.operations } };
  if (membership) {
    const disagreement = raftDisagreement(run.cluster, SYSTEM_KEYSPACE, true);
    if (disagreement !== undefined) return { ...base, violation: { kind: 'raft-agreement', explanation: disagreement, operations: run.operations } };
  }
  const order = checkVersionOrder(run.acknowledged);
  if (order !== undefined) return { ...base, violation: { kind: 'version-order', explanation: order, operations: run.operations } };
  const result = checkCausalConsistency(run.operations);
  if (!result.valid) return { ...base, violation: { kind: 'causality', explanation: result.explanation ?? 'causal violation', operations: run.operations } };
  if ((await timeToConverge(run.cluster, CAUSAL_KEYSPACE, CAUSAL_CONVERGENCE_MS)) < 0) {
    return { ...base, violation: { kind: 'convergence', explanation: `replicas differ ${CAUSAL_CONVERGENCE_MS} ms after the heal:\n${describeStates(run.cluster, CAUSAL_KEYSPACE)}`, operations: run.operations } };
  }
  return base;
}

/** What `id`'s disk holds durably: the state a crash now would leave, and what must converge. */
/** Every wiped replica must have recovered and served again by the end of its run. */
function unrecovered(stats: Record<string, number>): string | undefined {
  const wiped = stats.amnesia ?? 0;
  const recovered = stats.recoveries ?? 0;
  // A wiped node retired before it recovered (membership runs) has nothing left to recover.
  const retired = stats.retiredRecovering ?? 0;
  return wiped === recovered + retired ? undefined : `${wiped} replicas lost their disks but ${recovered} recovered and served again by the end of the run${retired > 0 ? ` (and ${retired} were retired first)` : ''}`;
}

function isMembershipRun(broken: BrokenVariant): boolean {
  return broken.membershipChanges === true || broken.promoteLagging === true || broken.overlappingChanges === true || broken.countRemoved === true;
}

/**
 * Raft agreement (raft-agreement.ts) over the durable logs of a CP keyspace: the nodes' now, and
 * in membership runs also those of nodes retired meanwhile (what they committed still had to agree).
 */
function raftDisagreement(cluster: SimCluster, keyspace: string, withRetired: boolean): string | undefined {
  const ids = withRetired ? [...cluster.nodeIds, ...cluster.retired] : cluster.nodeIds;
  const problem = checkRaftAgreement(new Map(ids.map((id) => [id, cluster.stores.get(id)!.durableRaftLog(keyspace)])));
  return problem === undefined || !withRetired ? problem : `keyspace ${keyspace}: ${problem}`;
}

function stateOf(cluster: SimCluster, id: string, keyspace: string): Map<string, Entry> {
  return new Map(cluster.stores.get(id)!.durableEntries(keyspace).map((e) => [decoder.decode(e.key), e]));
}

function describeStates(cluster: SimCluster, keyspace: string): string {
  return cluster.nodeIds.map((id) => `  ${id}: ${describeState(stateOf(cluster, id, keyspace))}`).join('\n');
}

function describeState(state: Map<string, Entry>): string {
  return JSON.stringify([...state].map(([k, e]) => [k, e.tombstone ? null : `${nameOf(e.value)} (${e.value.byteLength} B)`, `${e.version.hlc.wallMs}.${e.version.hlc.logical}@${e.version.nodeId}`]).sort());
}

/** Runs virtual time until every replica holds the same entries; returns the ms it took, or -1. */
export async function timeToConverge(cluster: SimCluster, keyspace: string, limitMs: number): Promise<number> {
  const start = cluster.scheduler.nowMs();
  for (;;) {
    const states = cluster.nodeIds.map((id) => describeState(stateOf(cluster, id, keyspace)));
    if (states.every((s) => s === states[0])) return cluster.scheduler.nowMs() - start;
    if (cluster.scheduler.nowMs() - start >= limitMs) return -1;
    // A node that stopped on a failed sync is restarted, as an operator would.
    for (const id of cluster.nodeIds) if (!cluster.isUp(id)) cluster.start(id);
    await cluster.scheduler.advance(10);
  }
}

/** Adds one seed's stats into running totals. */
export function addStats(totals: Record<string, number>, stats: Record<string, number>): void {
  for (const [k, v] of Object.entries(stats)) totals[k] = (totals[k] ?? 0) + v;
}

export type { HistoryEvent };
