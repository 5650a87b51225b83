/**
 * Locks and leases under faults, on a simulated 3-node CP cluster: four clients contend for one
 * lock over and over while the nemesis partitions, crashes (inside commits too), wipes disks,
 * slows disks and steps wall clocks, and a leader killer crashes whichever node leads now and then.
 *
 * Each client, per round: grants a lease through a random node and keeps it alive (KeptLease, the
 * holder-side rule: valid until the send time of the last confirmed renewal + TTL), acquires the
 * lock (acquireLock, waiting behind the others), then uses a simulated resource a few times with
 * its fencing token — each use only if its lease is still valid for the whole use — and releases
 * the lock and revokes the lease. Now and then a holder dies in the middle of its critical section
 * (it stops renewing and never releases): the lock must pass on only once its lease expired.
 *
 * The resource records every use it sees — start and end, holder and token — in the order it saw
 * them, and the lock checker (testing/lock-checker.ts) checks that no two holders' uses overlap
 * and that tokens only increase. Time is the simulation's one virtual clock, which every node's
 * Raft timers and every client read: only wall clocks are skewed and stepped, and no correct part
 * of lease expiry reads one. The deliberately broken variant `unsafeExpireByFollowerClock` lets
 * followers expire leases by their own wall clock, unaware of renewals; the checker must catch it.
 */
import { acquireLock, releaseLock } from '../coordination/lock.js';
import { KeptLease } from '../coordination/keep-alive.js';
import { ReplikitError, toReplikitError } from '../errors.js';
import { cpQuorum, type CpQuorumOptions } from '../policy/cp/cp-quorum.js';
import type { KeyspacePolicy } from '../policy/policy.js';
import { checkLocks, type LockCheckResult, type LockEvent } from '../testing/lock-checker.js';
import { fromExchangeError } from '../transport/status.js';
import { Nemesis, type FaultEvent } from './nemesis.js';
import { SIM_RAFT_TIMING } from './seed-check.js';
import type { SeededRandom } from './seeded-random.js';
import { SimCluster } from './sim-cluster.js';

export const LOCK_KEYSPACE = 'kv';
const LOCK_NAME = 'job';

/**
 * Leases of 300 virtual ms: on the simulation's Raft timing (10 ms ticks, elections in 100–200
 * ms) that is the same proportion as 3 s leases to 1–2 s elections in a real cluster; the floor
 * is lowered to match.
 */
export const LOCK_SIM_TTL_MS = 300;
export const LOCK_SIM_CP_OPTIONS: CpQuorumOptions = { timing: SIM_RAFT_TIMING, leases: { minTtlMs: 100 } };

export interface LockWorkloadOptions {
  readonly seed: number;
  /** Contending clients. @default 4 */
  readonly clients?: number;
  /** Lock rounds per client. @default 5 */
  readonly roundsPerClient?: number;
  /** Inject faults (nemesis and leader kills). @default true */
  readonly faults?: boolean;
  /** DELIBERATELY BROKEN: followers expire leases by their own wall clock. @default false */
  readonly unsafeExpireByFollowerClock?: boolean;
}

export interface LockSeedResult {
  readonly seed: number;
  readonly stats: Record<string, number>;
  readonly schedule: readonly FaultEvent[];
  readonly events: readonly LockEvent[];
  readonly check?: LockCheckResult;
  readonly violation?: { readonly kind: 'lock' | 'run'; readonly explanation: string };
}

type CpPolicy = KeyspacePolicy & { raftStatus(): { role: string; term: number } | undefined };

/** Runs one seed of the lock workload and checks it. */
export async function runLockSeed(seed: number, options: Omit<LockWorkloadOptions, 'seed'> = {}): Promise<LockSeedResult> {
  let run: { stats: Record<string, number>; schedule: readonly FaultEvent[]; events: LockEvent[]; acquisitions: { holder: string; token: number; at: number }[] };
  try {
    run = await runLockWorkload({ ...options, seed });
  } catch (error) {
    return { seed, stats: {}, schedule: [], events: [], violation: { kind: 'run', explanation: error instanceof Error ? (error.stack ?? error.message) : String(error) } };
  }
  const check = checkLocks({ lock: LOCK_NAME, events: run.events, acquisitions: run.acquisitions });
  const base = { seed, stats: run.stats, schedule: run.schedule, events: run.events, check };
  if (!check.ok) {
    const schedule = run.schedule.map((f) => `  ${f.atMs.toFixed(1)} ms: ${f.action}`).join('\n');
    return { ...base, violation: { kind: 'lock', explanation: `${check.violations.map((v) => v.message).join('\n')}\nfaults:\n${schedule}` } };
  }
  return base;
}

export async function runLockWorkload(options: LockWorkloadOptions) {
  const clients = options.clients ?? 4;
  const rounds = options.roundsPerClient ?? 5;
  const policy = cpQuorum({ ...LOCK_SIM_CP_OPTIONS, unsafeExpireByFollowerClock: options.unsafeExpireByFollowerClock });
  const cluster = new SimCluster({ seed: options.seed, keyspaces: { [LOCK_KEYSPACE]: policy }, maxSkewMs: 50, requestTimeoutMs: 400, formed: false });
  const { scheduler } = cluster;
  const sleep = (ms: number) => new Promise<void>((resolve) => scheduler.setTimer(ms, resolve));
  const stats: Record<string, number> = {
    rounds: 0,
    leasesGranted: 0,
    grantFailures: 0,
    acquisitions: 0,
    acquireFailures: 0,
    uses: 0,
    usesSkippedLeaseInDoubt: 0,
    leasesLostWhileHolding: 0,
    holderDeaths: 0,
    handoversAfterDeath: 0,
    releases: 0,
    releaseFailures: 0,
    leaderKills: 0,
    leaderTerms: 0,
  };
  const events: LockEvent[] = [];
  const acquisitions: { holder: string; token: number; at: number }[] = [];
  const serving = () => cluster.nodeIds.filter((id) => cluster.isServing(id));
  const leaderTerms = new Set<number>();
  const leader = (): string | undefined => {
    for (const id of cluster.nodeIds) {
      if (!cluster.isUp(id)) continue;
      const s = (cluster.node(id).policyOf(LOCK_KEYSPACE) as CpPolicy).raftStatus();
      if (s?.role === 'leader') {
        leaderTerms.add(s.term);
        return id;
      }
    }
    return undefined;
  };

  /** A call through a node that may crash under it: a client gives up after `limitMs`. */
  const call = async <T>(run: () => Promise<T>, limitMs: number): Promise<T> => {
    let timer: { cancel(): void } | undefined;
    const gaveUp = new Promise<never>((_, reject) => {
      timer = scheduler.setTimer(limitMs, () => reject(new ReplikitError('outcome-unknown', 'CLIENT_GAVE_UP', 'the node did not answer')));
    });
    try {
      return await Promise.race([run(), gaveUp]);
    } finally {
      timer?.cancel();
    }
  };
  const someNode = (random: SeededRandom): string | undefined => {
    const up = serving();
    return up.length === 0 ? undefined : random.pick(up);
  };

  /** Renews lease `id` once through some serving node. */
  const renewVia = (random: SeededRandom) => async (id: number): Promise<number> => {
    const nodeId = someNode(random);
    if (nodeId === undefined) throw new ReplikitError('unavailable', 'NO_NODE', 'no node serves');
    const answer = await call(() => cluster.node(nodeId).lease({ keyspace: LOCK_KEYSPACE, keepAlive: { ids: [BigInt(id)] } }, { timeoutMs: 100 }), 150);
    const r = answer.keepAlive!.responses[0]!;
    if (r.code !== 0) throw fromExchangeError({ code: r.code, message: r.message, reason: '' });
    return Number(r.ttlMs);
  };

  /** When the last holder died, for measuring how long the lock stayed with a dead holder. */
  let deadHolderSince: number | undefined;

  const client = async (index: number, random: SeededRandom): Promise<void> => {
    const holder = `c${index}`;
    for (let round = 0; round < rounds; round++) {
      stats.rounds!++;
      await sleep(random.between(0, 60));
      // A grant goes through whichever node serves, again until it succeeds (nothing happened
      // while the cluster has no quorum): each round is one lock acquisition tried.
      let leaseId: number | undefined;
      let sentAt = 0;
      for (let attempt = 0; attempt < 30 && leaseId === undefined; attempt++) {
        const nodeId = someNode(random);
        if (nodeId === undefined) {
          await sleep(50);
          continue;
        }
        sentAt = scheduler.nowMs();
        try {
          const granted = await call(() => cluster.node(nodeId).lease({ keyspace: LOCK_KEYSPACE, grant: { keyspace: LOCK_KEYSPACE, ttlMs: BigInt(LOCK_SIM_TTL_MS) } }, { timeoutMs: 400 }), 500);
          leaseId = Number(granted.grant!.id);
          stats.leasesGranted!++;
        } catch (error) {
          stats.grantFailures!++;
          if (process.env.LOCK_SIM_DEBUG) console.log(`grant via ${nodeId} at ${scheduler.nowMs().toFixed(0)}: ${toReplikitError(error).reason} ${toReplikitError(error).message}`);
          await sleep(random.between(20, 80));
        }
      }
      if (leaseId === undefined) continue;
      const kept = new KeptLease({ id: leaseId, ttlMs: LOCK_SIM_TTL_MS, scheduler, renew: renewVia(random.fork(round)), retryMs: 10 }, sentAt);
      const giveUp = async () => {
        kept.stop();
        const via = someNode(random);
        if (via !== undefined) await call(() => cluster.node(via).lease({ keyspace: LOCK_KEYSPACE, revoke: { keyspace: LOCK_KEYSPACE, id: BigInt(leaseId) } }, { timeoutMs: 300 }), 400).catch(() => {});
      };
      const lockNode = someNode(random);
      if (lockNode === undefined) {
        await giveUp();
        continue;
      }
      let grant: { key: Buffer; fencingToken: number };
      try {
        grant = await call(() => acquireLock(cluster.node(lockNode), LOCK_KEYSPACE, LOCK_NAME, leaseId, { timeoutMs: 2_000 }), 2_500);
      } catch (error) {
        stats.acquireFailures!++;
        if (process.env.LOCK_SIM_DEBUG) console.log(`acquire via ${lockNode} at ${scheduler.nowMs().toFixed(0)}: ${toReplikitError(error).reason} ${toReplikitError(error).message}`);
        await giveUp();
        continue;
      }
      stats.acquisitions!++;
      acquisitions.push({ holder: `${holder}/${round}`, token: grant.fencingToken, at: scheduler.nowMs() });
      if (deadHolderSince !== undefined) {
        stats.handoversAfterDeath!++;
        stats.maxHandoverAfterDeathMs = Math.max(stats.maxHandoverAfterDeathMs ?? 0, scheduler.nowMs() - deadHolderSince);
        deadHolderSince = undefined;
      }
      // The critical section: a few uses of the resource, each only while the lease is valid for
      // its whole length (the holder's own rule; no correct holder ever acts past it). The resource
      // sees one section per acquisition: from the first use's start to the last use's end.
      const uses = random.int(1, 8);
      const dies = random.chance(0.12);
      const dieAfter = random.int(0, uses - 1);
      const who = `${holder}/${round}`;
      let lost = false;
      let inSection = false;
      for (let u = 0; u < uses; u++) {
        if (dies && u === dieAfter) break;
        const length = random.between(10, 60);
        if (!kept.valid(length + 1)) {
          lost = true;
          break;
        }
        if (!inSection) events.push({ kind: 'start', holder: who, token: grant.fencingToken, at: scheduler.nowMs() });
        inSection = true;
        stats.uses!++;
        await sleep(length);
      }
      if (inSection && !dies) events.push({ kind: 'end', holder: who, token: grant.fencingToken, at: scheduler.nowMs() });
      if (dies) {
        // The holder's process dies: no more renewals, no release; its lease must expire first.
        kept.stop();
        stats.holderDeaths!++;
        events.push({ kind: 'crash', holder: who, at: scheduler.nowMs() });
        deadHolderSince = scheduler.nowMs();
        continue;
      }
      if (lost) {
        stats.usesSkippedLeaseInDoubt!++;
        if (kept.lostReason !== undefined) stats.leasesLostWhileHolding!++;
      }
      kept.stop();
      const via = someNode(random);
      if (via !== undefined) {
        try {
          await call(() => releaseLock(cluster.node(via), LOCK_KEYSPACE, grant.key, { timeoutMs: 300 }), 400);
          stats.releases!++;
        } catch (error) {
          stats.releaseFailures!++;
          if (toReplikitError(error).reason === 'LOCK_NOT_HELD') stats.releasedAfterExpiry = (stats.releasedAfterExpiry ?? 0) + 1;
        }
      }
      await giveUp();
    }
  };

  const wiped = new Set<string>();
  const nemesis = new Nemesis(
    cluster,
    cluster.random.fork(99),
    {
      isolateWholeNodes: true,
      pauseMs: [100, 400],
      // As the other CP workloads: one node may lose its disk per run.
      canWipe: (id) => {
        if (wiped.size > 0 && !wiped.has(id)) return false;
        wiped.add(id);
        return true;
      },
    },
    stats,
  );
  let stopping = false;
  /** Crashes the leader every so often, and restarts it a little later. */
  const leaderKiller = async (random: SeededRandom): Promise<void> => {
    while (!stopping) {
      await sleep(random.between(600, 1_500));
      if (stopping) return;
      const id = leader();
      if (id === undefined || cluster.nodeIds.some((n) => !cluster.isUp(n))) continue;
      cluster.crash(id);
      stats.leaderKills!++;
      await sleep(random.between(50, 400));
      if (!cluster.isUp(id)) cluster.start(id);
    }
  };
  const termWatcher = async (): Promise<void> => {
    while (!stopping) {
      leader();
      await sleep(10);
    }
  };

  if (!(await cluster.untilAllServing(10_000))) throw new Error(`seed ${options.seed}: the cluster did not form within 10 virtual seconds`);
  const faults = options.faults ?? true;
  const background = [termWatcher(), ...(faults ? [leaderKiller(cluster.random.fork(98))] : [])];
  const chaos = faults ? nemesis.run() : Promise.resolve();
  const workload = Promise.all(Array.from({ length: clients }, (_, i) => client(i, cluster.random.fork(100 + i))));
  const finished = await scheduler.runUntilSettled(workload, 10 * 60_000);
  nemesis.stop();
  stopping = true;
  if (!finished) throw new Error(`seed ${options.seed}: the workload did not finish within 10 virtual minutes`);
  nemesis.heal();
  await scheduler.runUntilSettled(Promise.all([chaos, ...background]), 5_000);
  if (!(await cluster.untilAllServing(30_000, true))) throw new Error(`seed ${options.seed}: not every node serves 30 virtual seconds after the heal`);
  // Liveness: once healed, the lock is free again within a TTL and an election (whatever died
  // holding it), and a newcomer gets it.
  const healedAt = scheduler.nowMs();
  const last = (async () => {
    const node = cluster.node(cluster.nodeIds[0]!);
    // Clocks fixed by the heal may still trail HLCs that ran ahead (up to a clock step): calls
    // are refused until they catch up, so the newcomer retries, as a client would.
    const retrying = async <T>(run: () => Promise<T>): Promise<T> => {
      for (;;) {
        try {
          return await run();
        } catch (error) {
          if (process.env.LOCK_SIM_DEBUG) console.log(`final at ${scheduler.nowMs().toFixed(0)}: ${toReplikitError(error).reason} ${toReplikitError(error).message}`);
          await sleep(100);
        }
      }
    };
    await retrying(async () => {
      const sentAt = scheduler.nowMs();
      const granted = await node.lease({ keyspace: LOCK_KEYSPACE, grant: { keyspace: LOCK_KEYSPACE, ttlMs: BigInt(LOCK_SIM_TTL_MS) } }, { timeoutMs: 500 });
      const kept = new KeptLease({ id: Number(granted.grant!.id), ttlMs: LOCK_SIM_TTL_MS, scheduler, renew: renewVia(cluster.random.fork(97)), retryMs: 10 }, sentAt);
      try {
        const grant = await acquireLock(node, LOCK_KEYSPACE, LOCK_NAME, Number(granted.grant!.id), { timeoutMs: 1_000 });
        acquisitions.push({ holder: 'final', token: grant.fencingToken, at: scheduler.nowMs() });
        events.push({ kind: 'start', holder: 'final', token: grant.fencingToken, at: scheduler.nowMs() });
        events.push({ kind: 'end', holder: 'final', token: grant.fencingToken, at: scheduler.nowMs() });
      } finally {
        kept.stop();
      }
    });
  })();
  if (!(await scheduler.runUntilSettled(last, 10_000))) {
    if (process.env.LOCK_SIM_DEBUG) {
      for (const id of cluster.nodeIds) {
        const p = cluster.node(id).policyOf(LOCK_KEYSPACE) as CpPolicy & { leaseDebug?: () => unknown };
        console.log(id, JSON.stringify(p.raftStatus()), JSON.stringify(p.leaseDebug?.()));
      }
      const r = await cluster.node('n1').range(LOCK_KEYSPACE, { key: Buffer.from('_lock/'), prefix: true }, { consistency: 'serializable' });
      console.log(r.kvs.map((k) => `${k.key.toString()} c${k.createRevision} lease ${k.lease}`));
    }
    throw new Error(`seed ${options.seed}: after the heal, a newcomer did not get the lock within 10 virtual seconds`);
  }
  await last;
  stats.finalAcquireMs = scheduler.nowMs() - healedAt;
  stats.leaderTerms = leaderTerms.size;
  stats.leaderChanges = Math.max(0, leaderTerms.size - 1);
  Object.assign(stats, cluster.faults, cluster.policyTotals());
  return { stats, schedule: nemesis.schedule, events, acquisitions };
}
