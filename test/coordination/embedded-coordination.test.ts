/**
 * Leases, locks and elections through the embedding API of real nodes (three ReplicaNodes on
 * loopback gRPC, CP keyspace "default"): what a key attached to a lease does, what a fencing
 * token promises, who leads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplicaNode } from '../../src/node/replica-node.js';
import { ReplikitError } from '../../src/errors.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';

let nodes: ReplicaNode[];
beforeAll(async () => {
  nodes = await startInProcessCluster(3);
  // Wait for a leader: the first write succeeds once one is elected.
  await nodes[0]!.keyspace('default').put('warm', 'up', { timeoutMs: 10_000 });
}, 30_000);
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.close(0)));
});

const errorOf = async (p: Promise<unknown>): Promise<ReplikitError> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof ReplikitError) return e;
    throw e;
  }
  throw new Error('expected a failure');
};

describe('leases', () => {
  it('a key put with a lease is deleted when the lease is revoked, on every node', async () => {
    const { id, ttlMs } = await nodes[1]!.leases.grant(5_000);
    expect(ttlMs).toBe(5_000);
    await nodes[2]!.core.put('default', Buffer.from('leased/a'), Buffer.from('1'), { lease: id });
    await nodes[0]!.core.put('default', Buffer.from('leased/b'), Buffer.from('2'), { lease: id });
    const info = await nodes[0]!.leases.timeToLive(id, { keys: true });
    expect(info.keyCount).toBe(2);
    expect(info.keys.map((k) => k.toString())).toEqual(['leased/a', 'leased/b']);
    expect(info.remainingMs).toBeGreaterThan(3_000);
    const revoked = await nodes[2]!.leases.revoke(id);
    expect(revoked.keysDeleted).toBe(2);
    for (const n of nodes) expect((await n.keyspace('default').get('leased/a')).found).toBe(false);
    expect((await errorOf(nodes[0]!.leases.timeToLive(id))).kind).toBe('not-found');
  });

  it('a lease not kept alive expires: its keys go within TTL + one election time', async () => {
    const { id } = await nodes[0]!.leases.grant(1_000);
    await nodes[0]!.core.put('default', Buffer.from('expiring'), Buffer.from('x'), { lease: id });
    const started = Date.now();
    while ((await nodes[1]!.keyspace('default').get('expiring')).found) await new Promise((r) => setTimeout(r, 50));
    const took = Date.now() - started;
    expect(took).toBeLessThan(1_000 + 2_000 + 500);
    expect((await errorOf(nodes[1]!.leases.renew(id))).kind).toBe('not-found');
    // Every node applied the expiry from the log, and says so.
    for (const n of nodes) expect(await n.metrics.scrape()).toMatch(new RegExp(`^replikit_leases_expired\\{keyspace="default",node="${n.nodeId}"\\} [1-9]`, 'm'));
  });

  it('a lease kept alive outlives its TTL', async () => {
    const kept = await nodes[1]!.leases.session(1_000);
    await nodes[1]!.core.put('default', Buffer.from('kept'), Buffer.from('x'), { lease: kept.id });
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await nodes[2]!.keyspace('default').get('kept')).found).toBe(true);
    expect(kept.renewals).toBeGreaterThanOrEqual(5);
    const scraped = (await Promise.all(nodes.map((n) => n.metrics.scrape()))).join('\n');
    expect(scraped).toMatch(/^replikit_lease_renewals\{keyspace="default",node="n\d"\} ([5-9]|\d\d+)$/m);
    expect(scraped).toMatch(/^replikit_leases\{keyspace="default",node="n1"\} [1-9]/m);
    expect(kept.valid()).toBe(true);
    kept.stop();
    await nodes[1]!.leases.revoke(kept.id);
  });

  it('refuses bad input with the specific status', async () => {
    expect((await errorOf(nodes[0]!.leases.grant(0))).kind).toBe('invalid-argument');
    expect((await errorOf(nodes[0]!.leases.grant(3_600_001))).reason).toBe('LEASE_TTL_INVALID');
    expect((await errorOf(nodes[0]!.leases.renew(987_654))).kind).toBe('not-found');
    expect((await errorOf(nodes[0]!.leases.revoke(987_654))).kind).toBe('not-found');
    expect((await errorOf(nodes[0]!.core.put('default', Buffer.from('k'), Buffer.from('v'), { lease: 987_654 }))).reason).toBe('LEASE_NOT_FOUND');
  });
});

describe('locks', () => {
  it('one holder at a time, tokens increase, a waiter is woken by the release', async () => {
    const a = await nodes[0]!.lock('job').acquire();
    const waiting = nodes[1]!.lock('job').acquire({ timeoutMs: 10_000 });
    let bHeld = false;
    void waiting.then(() => (bHeld = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(bHeld).toBe(false);
    await a.release();
    const b = await waiting;
    expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
    expect((await errorOf(a.release())).reason).toBe('LOCK_NOT_HELD');
    await b.release();
  });

  it('a waiter that runs out of time withdraws', async () => {
    const a = await nodes[0]!.lock('busy').acquire();
    const e = await errorOf(nodes[2]!.lock('busy').acquire({ timeoutMs: 500 }));
    expect(e.reason).toBe('LOCK_WAIT_EXPIRED');
    await a.release();
    const c = await nodes[1]!.lock('busy').acquire({ timeoutMs: 5_000 });
    await c.release();
  });
});

describe('elections', () => {
  it('the first campaigner leads; the next takes over when it resigns; observers see both', async () => {
    const stop = new AbortController();
    const seen: string[] = [];
    const observing = (async () => {
      for await (const change of nodes[2]!.election('primary').observe(stop.signal)) seen.push(change.kv?.value.toString() ?? '(none)');
    })();
    const one = await nodes[0]!.election('primary').campaign('n1');
    const twoCampaign = nodes[1]!.election('primary').campaign('n2', { timeoutMs: 10_000 });
    expect((await nodes[2]!.election('primary').leader()).kv?.value.toString()).toBe('n1');
    await one.proclaim('n1-v2');
    await one.resign();
    const two = await twoCampaign;
    expect(two.leader.revision).toBeGreaterThan(one.leader.revision);
    await new Promise((r) => setTimeout(r, 300));
    stop.abort();
    await observing.catch(() => {});
    expect(seen).toEqual(['(none)', 'n1', 'n1-v2', 'n2']);
    await two.resign();
  });
});
