/**
 * Lease expiry across replicas and leader failover, on virtual time: three real NodeCores of a
 * SimCluster (src/sim/sim-cluster.ts) over the in-memory network, each on its simulated disk,
 * with a CP keyspace on the simulation's Raft timing (10 ms ticks, elections 100–200 ms; one
 * election time = 2 × electionTicks × tickMs = 200 ms) and 300 ms leases.
 *
 * - A lease kept alive through a follower lives on, far past its TTL.
 * - Its leader crashing does not take it: the next leader gives every lease TTL + one election
 *   time, and the renewals that reach it keep it.
 * - A lease nobody renews goes within TTL + one election time + one tick, on every replica, at
 *   one revision.
 * - The deliberately broken `unsafeExpireByFollowerClock` loses a lease that is kept alive; the
 *   same run with the correct policy does not.
 */
import { describe, expect, it } from 'vitest';
import { cpQuorum } from '../../src/policy/cp/cp-quorum.js';
import type { KeyspacePolicy } from '../../src/policy/policy.js';
import type { ChangeBatch } from '../../src/policy/watch/change.js';
import { SIM_RAFT_TIMING } from '../../src/sim/seed-check.js';
import { SimCluster } from '../../src/sim/sim-cluster.js';
import { DEFAULT_DISK_PROFILE } from '../../src/sim/simulated-disk.js';

const KS = 'kv';
const TTL = 300;
const TICK = SIM_RAFT_TIMING.tickMs;
const ELECTION = 2 * SIM_RAFT_TIMING.electionTicks * SIM_RAFT_TIMING.tickMs;
/** Disks without stalls: the bounds below are about lease expiry, not about a 250 ms fsync. */
const STEADY_DISK = { ...DEFAULT_DISK_PROFILE, slowRate: 0, stallRate: 0 };

type CpPolicy = KeyspacePolicy & {
  raftStatus(): { role: string; term: number; revision: number } | undefined;
  localHistory(after: number): ChangeBatch[];
};

async function startCluster(seed: number, unsafeExpireByFollowerClock = false): Promise<SimCluster> {
  const cluster = new SimCluster({
    seed,
    keyspaces: { [KS]: cpQuorum({ timing: SIM_RAFT_TIMING, leases: { minTtlMs: 100 }, unsafeExpireByFollowerClock }) },
    requestTimeoutMs: 400,
    disk: STEADY_DISK,
  });
  expect(await cluster.untilAllServing(5_000)).toBe(true);
  for (let i = 0; i < 200 && leaderOf(cluster) === undefined; i++) await cluster.scheduler.advance(TICK);
  expect(leaderOf(cluster)).toBeDefined();
  return cluster;
}

const policy = (cluster: SimCluster, id: string) => cluster.node(id).policyOf(KS) as CpPolicy;

function leaderOf(cluster: SimCluster): string | undefined {
  return cluster.nodeIds.find((id) => cluster.isUp(id) && policy(cluster, id).raftStatus()?.role === 'leader');
}

/** Runs virtual time until `p` settles (at most `limitMs`), then answers it. */
async function settle<T>(cluster: SimCluster, p: Promise<T>, limitMs = 2_000): Promise<T> {
  if (!(await cluster.scheduler.runUntilSettled(p, limitMs))) throw new Error(`a call did not settle within ${limitMs} virtual ms`);
  return p;
}

async function grant(cluster: SimCluster, via: string): Promise<number> {
  const answer = await settle(cluster, cluster.node(via).lease({ keyspace: KS, grant: { keyspace: KS, ttlMs: BigInt(TTL) } }, { timeoutMs: 400 }));
  return Number(answer.grant!.id);
}

async function putLeased(cluster: SimCluster, via: string, key: string, lease: number): Promise<number> {
  const written = await settle(cluster, cluster.node(via).put(KS, Buffer.from(key), Buffer.from('held'), { lease, timeoutMs: 400 }));
  return written.revision!;
}

/** Whether `key` is on replica `id` now, as that replica has applied it (no leader asked). */
async function onReplica(cluster: SimCluster, id: string, key: string): Promise<boolean> {
  const read = await settle(cluster, cluster.node(id).get(KS, Buffer.from(key), { consistency: 'serializable', timeoutMs: 100 }));
  return read.value !== undefined;
}

/** The revision at which replica `id` deleted `key` after `after`, from its own history; undefined if it has not. */
function deletedAt(cluster: SimCluster, id: string, key: string, after: number): ChangeBatch | undefined {
  return policy(cluster, id)
    .localHistory(after)
    .find((batch) => batch.events.some((e) => e.type === 'delete' && e.kv.key.toString() === key));
}

/**
 * A holder renewing lease `id` every `everyMs` through whichever node `via()` names (while it is
 * up), as a client's keep-alive would; counts the answers.
 */
function keepAlive(cluster: SimCluster, id: number, via: () => string, everyMs: number) {
  const stats = { ok: 0, failed: 0, errors: [] as string[], lastOkAt: -1 };
  let stopped = false;
  const beat = () => {
    if (stopped) return;
    const nodeId = via();
    if (cluster.isUp(nodeId)) {
      cluster
        .node(nodeId)
        .lease({ keyspace: KS, keepAlive: { ids: [BigInt(id)] } }, { timeoutMs: everyMs })
        .then(
          (answer) => {
            const r = answer.keepAlive!.responses[0]!;
            if (r.code === 0) {
              stats.ok++;
              stats.lastOkAt = cluster.scheduler.nowMs();
            } else {
              stats.failed++;
              stats.errors.push(`${r.code} ${r.message}`);
            }
          },
          (error: unknown) => {
            stats.failed++;
            stats.errors.push(String(error));
          },
        );
    }
    cluster.scheduler.setTimer(everyMs, beat);
  };
  beat();
  return { stats, stop: () => (stopped = true) };
}

/** Runs one cluster through: grant via a follower, attach a key, keep it alive via that follower for 10 × TTL. */
async function keptThroughFollower(seed: number, unsafe: boolean) {
  const cluster = await startCluster(seed, unsafe);
  const leader = leaderOf(cluster)!;
  const follower = cluster.nodeIds.find((id) => id !== leader)!;
  const id = await grant(cluster, follower);
  const putRevision = await putLeased(cluster, follower, 'kept', id);
  const holder = keepAlive(cluster, id, () => follower, TTL / 3);
  let lostAt: number | undefined;
  const started = cluster.scheduler.nowMs();
  for (let t = 0; t < 10 * TTL; t += TICK) {
    await cluster.scheduler.advance(TICK);
    if (lostAt === undefined && cluster.nodeIds.some((n) => deletedAt(cluster, n, 'kept', putRevision) !== undefined)) lostAt = cluster.scheduler.nowMs() - started;
  }
  holder.stop();
  return { cluster, leader, follower, id, putRevision, holder: holder.stats, lostAt };
}

describe('leases across replicas and failover (virtual time, 3 NodeCores)', () => {
  it('(a) a lease kept alive every TTL/3 through a follower survives 10 × TTL on every replica', async () => {
    const { cluster, leader, follower, id, putRevision, holder, lostAt } = await keptThroughFollower(11, false);
    expect(leaderOf(cluster)).toBe(leader);
    expect(follower).not.toBe(leader);
    expect(lostAt).toBeUndefined();
    // Every renewal was answered, none refused.
    expect(holder.failed, holder.errors.join('\n')).toBe(0);
    expect(holder.ok).toBeGreaterThanOrEqual(28);
    for (const n of cluster.nodeIds) {
      expect(await onReplica(cluster, n, 'kept'), n).toBe(true);
      expect(deletedAt(cluster, n, 'kept', putRevision)).toBeUndefined();
    }
    const ttl = await settle(cluster, cluster.node(follower).lease({ keyspace: KS, timeToLive: { keyspace: KS, id: BigInt(id), keys: true } }, { timeoutMs: 400 }));
    expect(Number(ttl.timeToLive!.remainingMs)).toBeGreaterThan(0);
    expect(ttl.timeToLive!.keys.map((k) => k.toString())).toEqual(['kept']);
  });

  it('(b) the leader crashing does not take a lease kept alive through a surviving node; once renewals stop, it goes', async () => {
    const cluster = await startCluster(23);
    const leader = leaderOf(cluster)!;
    const via = cluster.nodeIds.find((id) => id !== leader)!;
    const id = await grant(cluster, via);
    const putRevision = await putLeased(cluster, via, 'survivor', id);
    const keeper = keepAlive(cluster, id, () => via, TTL / 3);
    const holder = keeper.stats;
    await cluster.scheduler.advance(TTL - 50);
    // A second lease, which nobody keeps alive, granted just before the crash: the old leader
    // never gets to expire it.
    const orphan = await grant(cluster, via);
    const orphanRevision = await putLeased(cluster, via, 'orphan', orphan);
    await cluster.scheduler.advance(50 - 10);
    // Abruptly: no hand-over, its disk loses what it had not synced.
    cluster.crash(leader);
    const crashedAt = cluster.scheduler.nowMs();
    const survivors = cluster.nodeIds.filter((n) => n !== leader);
    let tookOver: number | undefined;
    const orphanGone = new Map<string, number>();
    while (cluster.scheduler.nowMs() < crashedAt + 3 * TTL) {
      await cluster.scheduler.advance(1);
      if (tookOver === undefined && leaderOf(cluster) !== undefined) tookOver = cluster.scheduler.nowMs();
      for (const n of survivors) if (!orphanGone.has(n) && deletedAt(cluster, n, 'orphan', orphanRevision)) orphanGone.set(n, cluster.scheduler.nowMs());
    }
    const next = leaderOf(cluster);
    expect(next).toBeDefined();
    expect(next).not.toBe(leader);
    // The next leader gave the unrenewed lease its TTL plus one election time from when it took
    // over — no less (it cannot know when the last renewal was) — and revoked it then.
    expect(orphanGone.size).toBe(survivors.length);
    for (const at of orphanGone.values()) {
      expect(at - tookOver!).toBeGreaterThanOrEqual(TTL + ELECTION);
      expect(at - tookOver!).toBeLessThanOrEqual(TTL + ELECTION + 2 * TICK);
    }
    expect(new Set(survivors.map((n) => deletedAt(cluster, n, 'orphan', orphanRevision)!.revision)).size).toBe(1);
    for (const n of survivors) {
      expect(await onReplica(cluster, n, 'survivor'), n).toBe(true);
      expect(deletedAt(cluster, n, 'survivor', putRevision), n).toBeUndefined();
    }
    // Renewals went on under the new leader.
    expect(holder.lastOkAt).toBeGreaterThan(crashedAt + ELECTION);
    const ttl = await settle(cluster, cluster.node(via).lease({ keyspace: KS, timeToLive: { keyspace: KS, id: BigInt(id), keys: false } }, { timeoutMs: 400 }));
    expect(Number(ttl.timeToLive!.keyCount)).toBe(1);

    // The holder stops: the new leader revokes it within TTL + one election time + one tick of
    // the last renewal it confirmed, on both survivors at one revision.
    keeper.stop();
    await cluster.scheduler.advance(TICK);
    const lastRenewal = holder.lastOkAt;
    const gone = new Map<string, number>();
    while (gone.size < survivors.length && cluster.scheduler.nowMs() < lastRenewal + 3 * TTL) {
      await cluster.scheduler.advance(1);
      for (const n of survivors) if (!gone.has(n) && deletedAt(cluster, n, 'survivor', putRevision)) gone.set(n, cluster.scheduler.nowMs());
    }
    expect(gone.size).toBe(survivors.length);
    for (const at of gone.values()) expect(at - lastRenewal).toBeLessThanOrEqual(TTL + ELECTION + TICK);
    const revisions = survivors.map((n) => deletedAt(cluster, n, 'survivor', putRevision)!.revision);
    expect(new Set(revisions).size).toBe(1);
  });

  it('(c) a lease not kept alive is revoked within TTL + one election time + one tick on every replica, at the same revision', async () => {
    const cluster = await startCluster(37);
    const leader = leaderOf(cluster)!;
    const via = cluster.nodeIds.find((id) => id !== leader)!;
    const sentAt = cluster.scheduler.nowMs();
    const id = await grant(cluster, via);
    const putRevision = await putLeased(cluster, via, 'a', id);
    // Two keys in one put, one more after: all go in one revision.
    await putLeased(cluster, leader, 'b', id);
    const gone = new Map<string, number>();
    let checkedBeforeTtl = false;
    while (gone.size < cluster.nodeIds.length && cluster.scheduler.nowMs() < sentAt + 3 * TTL) {
      await cluster.scheduler.advance(1);
      const elapsed = cluster.scheduler.nowMs() - sentAt;
      if (!checkedBeforeTtl && elapsed >= TTL - 2 * TICK) {
        // Not before its TTL: the keys are still on every replica.
        checkedBeforeTtl = true;
        for (const n of cluster.nodeIds) expect(await onReplica(cluster, n, 'a'), n).toBe(true);
      }
      for (const n of cluster.nodeIds) if (!gone.has(n) && deletedAt(cluster, n, 'a', putRevision)) gone.set(n, cluster.scheduler.nowMs());
    }
    expect(checkedBeforeTtl).toBe(true);
    expect([...gone.keys()].sort()).toEqual([...cluster.nodeIds].sort());
    for (const [n, at] of gone) {
      expect(at - sentAt, n).toBeGreaterThanOrEqual(TTL);
      expect(at - sentAt, n).toBeLessThanOrEqual(TTL + ELECTION + TICK);
    }
    const batches = cluster.nodeIds.map((n) => deletedAt(cluster, n, 'a', putRevision)!);
    expect(new Set(batches.map((b) => b.revision)).size).toBe(1);
    // One revision held both keys' deletes, on every replica alike.
    for (const batch of batches) expect(batch.events.map((e) => `${e.type} ${e.kv.key.toString()}`)).toEqual(['delete a', 'delete b']);
    for (const n of cluster.nodeIds) {
      expect(await onReplica(cluster, n, 'a')).toBe(false);
      expect(await onReplica(cluster, n, 'b')).toBe(false);
    }
    // The lease is gone for everyone: a renewal now is NOT_FOUND.
    const late = await settle(cluster, cluster.node(via).lease({ keyspace: KS, keepAlive: { ids: [BigInt(id)] } }, { timeoutMs: 400 }));
    expect(late.keepAlive!.responses[0]!.code).toBe(5);
  });

  it('(d) the deliberately broken unsafeExpireByFollowerClock loses a lease kept alive; the correct policy on the same run does not', async () => {
    const broken = await keptThroughFollower(11, true);
    const correct = await keptThroughFollower(11, false);
    // The broken followers count from the grant, unaware of renewals: the lease goes soon after its TTL.
    expect(broken.lostAt).toBeDefined();
    expect(broken.lostAt!).toBeLessThan(2 * TTL + ELECTION);
    expect(await onReplica(broken.cluster, broken.leader, 'kept')).toBe(false);
    // Its holder was renewing all along, and learns of the loss only when refused.
    expect(broken.holder.ok).toBeGreaterThan(0);
    expect(broken.holder.errors.some((e) => e.startsWith('5 '))).toBe(true);
    expect(correct.lostAt).toBeUndefined();
    expect(await onReplica(correct.cluster, correct.leader, 'kept')).toBe(true);
  });
});
