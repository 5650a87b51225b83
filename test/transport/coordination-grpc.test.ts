/**
 * LeaseService, LockService and ElectionService over real grpc-js on loopback (three in-process
 * ReplicaNodes; "default" is CP, "ap" is AP), through the generated clients: each bad input gets
 * its specific status and a message that says what to do, keep-alive streams answer per request
 * and go on, a lock waiter that runs out of time withdraws, and elections work end to end. Calls
 * go through a follower where it matters, so forwarding to the leader (ForwardRequest.lease) is
 * exercised too.
 */
import { credentials, Metadata, status, type Client, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ElectionServiceClient, type LeaderKey, type ObserveResponse } from '../../src/gen/replikit/v1/election_service.js';
import { LeaseServiceClient, type LeaseKeepAliveRequest, type LeaseKeepAliveResponse } from '../../src/gen/replikit/v1/lease_service.js';
import { LockServiceClient } from '../../src/gen/replikit/v1/lock_service.js';
import type { ReplicaNode } from '../../src/node/replica-node.js';
import { apAsync, cpQuorum } from '../../src/index.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';

/** Leases down to 200 ms, so that one can expire quickly in this test; the maximum stays one hour. */
const MIN_TTL = 200;

let nodes: ReplicaNode[];
const opened: Client[] = [];
let lease: (i: number) => LeaseServiceClient;
let lock: (i: number) => LockServiceClient;
let election: (i: number) => ElectionServiceClient;
/** Index of a node that does not lead "default" (calls through it are forwarded). */
let follower: number;

function cached<T extends Client>(make: (address: string) => T): (i: number) => T {
  const made = new Map<number, T>();
  return (i) => {
    let c = made.get(i);
    if (c === undefined) {
      c = make(nodes[i]!.address!);
      opened.push(c);
      made.set(i, c);
    }
    return c;
  };
}

beforeAll(async () => {
  nodes = await startInProcessCluster(3, () => ({ keyspaces: { default: cpQuorum({ leases: { minTtlMs: MIN_TTL } }), ap: apAsync() } }));
  await nodes[0]!.keyspace('default').put('warm', 'up', { timeoutMs: 10_000 });
  const leaderId = (nodes[0]!.core.policyOf('default') as { raftStatus(): { leader?: string } | undefined }).raftStatus()?.leader;
  follower = nodes.findIndex((n) => n.core.settings.nodeId !== leaderId);
  lease = cached((a) => new LeaseServiceClient(a, credentials.createInsecure()));
  lock = cached((a) => new LockServiceClient(a, credentials.createInsecure()));
  election = cached((a) => new ElectionServiceClient(a, credentials.createInsecure()));
}, 30_000);

afterAll(async () => {
  for (const c of opened) c.close();
  await Promise.all(nodes.map((n) => n.close(0)));
});

type Callback<R> = (err: ServiceError | null, res: R) => void;
/** Calls a generated unary method with a deadline `ms` from now. */
function unary<Q, R>(client: Client, method: (req: Q, md: Metadata, opts: { deadline: number }, cb: Callback<R>) => unknown, req: Q, ms = 5_000): Promise<R> {
  return new Promise((resolve, reject) => method.call(client, req, new Metadata(), { deadline: Date.now() + ms }, (err, res) => (err ? reject(err) : resolve(res))));
}

async function failure(p: Promise<unknown>, code: status, reason?: string): Promise<ServiceError> {
  const err = (await p.then(() => undefined, (e: unknown) => e)) as ServiceError | undefined;
  expect(err, 'the call should have failed').toBeDefined();
  expect(status[err!.code], err!.details).toBe(status[code]);
  if (reason !== undefined) expect(err!.metadata.get('replikit-reason')[0]).toBe(reason);
  return err!;
}

const grant = (i: number, ttlMs: number | bigint, keyspace = 'default') => unary(lease(i), lease(i).leaseGrant, { keyspace, ttlMs: BigInt(ttlMs) });
const revoke = (i: number, id: bigint, keyspace = 'default') => unary(lease(i), lease(i).leaseRevoke, { keyspace, id });
const list = (i: number, afterId: bigint, limit: number) => unary(lease(i), lease(i).leaseList, { keyspace: 'default', afterId, limit });
const acquire = (i: number, name: string, leaseId: bigint, ms = 5_000, keyspace = 'default') => unary(lock(i), lock(i).lock, { keyspace, name, lease: leaseId }, ms);
const unlock = (i: number, key: Buffer, keyspace = 'default') => unary(lock(i), lock(i).unlock, { keyspace, key });
const campaign = (i: number, name: string, leaseId: bigint, value: string, ms = 5_000, keyspace = 'default') =>
  unary(election(i), election(i).campaign, { keyspace, name, lease: leaseId, value: Buffer.from(value) }, ms);
const leaderOf = (i: number, name: string, keyspace = 'default') => unary(election(i), election(i).leader, { keyspace, name });

/** A keep-alive stream: `send` a request, `next()` waits for the next answer. */
function keepAliveStream(i: number) {
  const stream: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> = lease(i).leaseKeepAlive();
  const received: LeaseKeepAliveResponse[] = [];
  let ended: ServiceError | 'ok' | undefined;
  let wake: (() => void) | undefined;
  stream.on('data', (r: LeaseKeepAliveResponse) => (received.push(r), wake?.()));
  stream.on('error', (e: ServiceError) => ((ended ??= e), wake?.()));
  stream.on('end', () => ((ended ??= 'ok'), wake?.()));
  let read = 0;
  return {
    send: (id: bigint, keyspace = 'default') => stream.write({ keyspace, id }),
    get ended() {
      return ended;
    },
    async next(ms = 5_000): Promise<LeaseKeepAliveResponse> {
      const deadline = Date.now() + ms;
      while (received.length <= read) {
        if (ended !== undefined) throw new Error(`the stream ended: ${ended === 'ok' ? 'ok' : ended.details}`);
        if (Date.now() > deadline) throw new Error('no keep-alive answer in time');
        await new Promise<void>((resolve) => ((wake = resolve), setTimeout(resolve, 50)));
      }
      return received[read++]!;
    },
    async untilEnded(ms = 5_000): Promise<ServiceError | 'ok'> {
      const deadline = Date.now() + ms;
      while (ended === undefined && Date.now() < deadline) await new Promise<void>((resolve) => ((wake = resolve), setTimeout(resolve, 50)));
      return ended ?? Promise.reject(new Error('the stream did not end'));
    },
    close: () => stream.end(),
    cancel: () => stream.cancel(),
  };
}

describe('LeaseService', () => {
  it('LeaseGrant refuses a TTL of 0, below the minimum and above one hour with INVALID_ARGUMENT saying what to give', async () => {
    const zero = await failure(grant(follower, 0), status.INVALID_ARGUMENT, 'LEASE_TTL_INVALID');
    expect(zero.details).toMatch(/ttl_ms is 0; give the lease a time to live/);
    expect(zero.metadata.get('replikit-detail-field')[0]).toBe('ttl_ms');
    const over = await failure(grant(follower, 3_600_001), status.INVALID_ARGUMENT, 'LEASE_TTL_INVALID');
    expect(over.details).toMatch(/3600001.*200 to 3600000 ms.*keep it alive to hold it longer/);
    const under = await failure(grant(0, MIN_TTL - 1), status.INVALID_ARGUMENT, 'LEASE_TTL_INVALID');
    expect(under.details).toMatch(/200 to 3600000/);
    // The bounds themselves are fine.
    const longest = await grant(follower, 3_600_000);
    expect(longest.ttlMs).toBe(3_600_000n);
    await revoke(follower, longest.id);
  });

  it('LeaseKeepAlive answers an unknown id with code NOT_FOUND and a message, and the stream goes on to renew a real lease', async () => {
    const real = await grant(follower, 5_000);
    const stream = keepAliveStream(follower);
    stream.send(987_654_321n);
    const unknown = await stream.next();
    expect(unknown.id).toBe(987_654_321n);
    expect(unknown.code).toBe(status.NOT_FOUND);
    expect(unknown.ttlMs).toBe(0n);
    expect(unknown.message).toMatch(/lease 987654321 does not exist.*grant a new lease/);
    stream.send(real.id);
    const renewed = await stream.next();
    expect(renewed).toMatchObject({ id: real.id, code: 0, ttlMs: 5_000n });
    expect(stream.ended).toBeUndefined();
    // Half-closing ends it cleanly.
    stream.close();
    expect(await stream.untilEnded()).toBe('ok');
    await revoke(follower, real.id);
  });

  it('LeaseKeepAlive of a lease that expired answers NOT_FOUND; its keys are gone', async () => {
    const short = await grant(follower, MIN_TTL);
    await nodes[0]!.core.put('default', Buffer.from('grpc/expiring'), Buffer.from('x'), { lease: Number(short.id) });
    // TTL, one tick (100 ms) to notice, and the commit.
    const deadline = Date.now() + 5_000;
    while ((await nodes[follower]!.keyspace('default').get('grpc/expiring')).found) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 25));
    }
    const stream = keepAliveStream(follower);
    stream.send(short.id);
    const answer = await stream.next();
    expect(answer.code).toBe(status.NOT_FOUND);
    expect(answer.message).toMatch(/grant a new lease/);
    stream.cancel();
  });

  it('LeaseKeepAlive on an unknown keyspace or an AP one ends the stream with NOT_FOUND or FAILED_PRECONDITION', async () => {
    const unknown = keepAliveStream(follower);
    unknown.send(1n, 'nope');
    const e1 = (await unknown.untilEnded()) as ServiceError;
    expect(status[e1.code]).toBe('NOT_FOUND');
    const ap = keepAliveStream(follower);
    ap.send(1n, 'ap');
    const e2 = (await ap.untilEnded()) as ServiceError;
    expect(status[e2.code]).toBe('FAILED_PRECONDITION');
    expect(e2.details).toMatch(/leases need a CP keyspace/);
  });

  it('LeaseRevoke of an unknown lease is NOT_FOUND (through the leader and through a follower)', async () => {
    for (const i of [0, 1, 2]) {
      const e = await failure(revoke(i, 123_456_789n), status.NOT_FOUND, 'LEASE_NOT_FOUND');
      expect(e.details).toMatch(/lease 123456789 does not exist/);
    }
    // A revoke that worked once does not work twice.
    const once = await grant(follower, 5_000);
    const r = await revoke(follower, once.id);
    expect(r.keysDeleted).toBe(0);
    await failure(revoke(follower, once.id), status.NOT_FOUND, 'LEASE_NOT_FOUND');
  });

  it('leases on an AP keyspace are FAILED_PRECONDITION; on an unknown keyspace NOT_FOUND', async () => {
    const ap = await failure(grant(follower, 5_000, 'ap'), status.FAILED_PRECONDITION, 'LEASE_NOT_SUPPORTED');
    expect(ap.details).toMatch(/"ap" is ap; leases need a CP keyspace/);
    const unknown = await failure(grant(follower, 5_000, 'no-such-keyspace'), status.NOT_FOUND, 'UNKNOWN_KEYSPACE');
    expect(unknown.details).toMatch(/it serves/);
    await failure(revoke(follower, 1n, 'no-such-keyspace'), status.NOT_FOUND, 'UNKNOWN_KEYSPACE');
  });

  it('LeaseList pages by after_id and limit, and says when more follow', async () => {
    const mine: bigint[] = [];
    for (let i = 0; i < 5; i++) mine.push((await grant(follower, 60_000)).id);
    const all = await list(follower, 0n, 0);
    expect(all.more).toBe(false);
    const allIds = all.leases.map((l) => l.id);
    for (const id of mine) expect(allIds).toContain(id);
    expect([...allIds].sort((a, b) => (a < b ? -1 : 1))).toEqual(allIds);
    // Page through two at a time: the same leases, in order; `more` on all pages but the last.
    const paged: bigint[] = [];
    let after = 0n;
    for (;;) {
      const page = await list(follower, after, 2);
      expect(page.leases.length).toBeLessThanOrEqual(2);
      paged.push(...page.leases.map((l) => l.id));
      if (!page.more) break;
      expect(page.leases).toHaveLength(2);
      after = page.leases[page.leases.length - 1]!.id;
    }
    expect(paged).toEqual(allIds);
    // After the third of mine: the rest of mine come next, with their TTL.
    const rest = await list(0, mine[2]!, 10);
    expect(rest.leases.slice(0, 2)).toEqual([
      { id: mine[3], ttlMs: 60_000n },
      { id: mine[4], ttlMs: 60_000n },
    ]);
    // After the last there is nothing.
    expect(await list(follower, allIds[allIds.length - 1]!, 10)).toEqual({ leases: [], more: false });
    const tooMany = await failure(list(follower, 0n, 10_001), status.INVALID_ARGUMENT, 'LIMIT_TOO_LARGE');
    expect(tooMany.details).toMatch(/at most 10000/);
    for (const id of mine) await revoke(follower, id);
  });
});

describe('LockService', () => {
  it('refuses a lease of 0 (INVALID_ARGUMENT), an unknown lease (NOT_FOUND), a non-lock key (INVALID_ARGUMENT)', async () => {
    const zero = await failure(acquire(follower, 'grpc-lock', 0n), status.INVALID_ARGUMENT, 'LEASE_MISSING');
    expect(zero.details).toMatch(/lease must be the id of a lease you hold \(LeaseGrant answers one\)/);
    const unknown = await failure(acquire(follower, 'grpc-lock', 555_555_555n), status.NOT_FOUND, 'LEASE_NOT_FOUND');
    expect(unknown.details).toMatch(/grant a new lease/);
    const notLock = await failure(unlock(follower, Buffer.from('some/key')), status.INVALID_ARGUMENT, 'NOT_A_LOCK_KEY');
    expect(notLock.details).toMatch(/give the key Lock answered/);
    const ap = await failure(acquire(follower, 'grpc-lock', 1n, 5_000, 'ap'), status.FAILED_PRECONDITION);
    expect(ap.details).toMatch(/CP keyspace/);
    await failure(acquire(follower, 'grpc-lock', 1n, 5_000, 'no-such-keyspace'), status.NOT_FOUND, 'UNKNOWN_KEYSPACE');
  });

  it('a waiter whose deadline passes gets DEADLINE_EXCEEDED and is withdrawn: the next contender gets the lock right after release; a second unlock is FAILED_PRECONDITION', async () => {
    const [a, b, c] = await Promise.all([grant(0, 60_000), grant(follower, 60_000), grant(2, 60_000)]);
    const held = await acquire(0, 'grpc-busy', a.id);
    expect(held.key.toString()).toMatch(/^_lock\/grpc-busy\//);
    // Its time may run out during the re-read of the queue (forwarded to the leader with a
    // millisecond left): that is the deadline too, and the entry is withdrawn whatever ended the wait.
    const waited = await failure(acquire(follower, 'grpc-busy', b.id, 800), status.DEADLINE_EXCEEDED, 'LOCK_WAIT_EXPIRED');
    expect(waited.details).toMatch(/waiting entry was withdrawn; try again with a longer deadline/);
    // b's lease lives on (60 s): only its withdrawal lets c pass it.
    const third = acquire(2, 'grpc-busy', c.id, 10_000);
    let thirdAt = 0;
    void third.then(() => (thirdAt = Date.now()), () => {});
    await new Promise((r) => setTimeout(r, 300));
    expect(thirdAt).toBe(0);
    const releasedAt = Date.now();
    await unlock(follower, held.key);
    const got = await third;
    expect(got.fencingToken).toBeGreaterThan(held.fencingToken);
    expect(thirdAt - releasedAt).toBeLessThan(2_000);
    // The first holder's key is gone: unlocking it again is FAILED_PRECONDITION.
    const again = await failure(unlock(0, held.key), status.FAILED_PRECONDITION, 'LOCK_NOT_HELD');
    expect(again.details).toMatch(/not held: it was released already, or its lease expired/);
    await unlock(2, got.key);
    await failure(unlock(2, got.key), status.FAILED_PRECONDITION, 'LOCK_NOT_HELD');
    for (const l of [a, b, c]) await revoke(0, l.id);
  });
});

describe('ElectionService', () => {
  it('Campaign, Leader, Proclaim, Resign and Observe: the happy path, through different nodes', async () => {
    const [l1, l2] = await Promise.all([grant(0, 60_000), grant(follower, 60_000)]);
    const observed: { value: string | undefined; revision: bigint }[] = [];
    const observer = election(2).observe({ keyspace: 'default', name: 'grpc-primary' });
    observer.on('data', (r: ObserveResponse) => observed.push({ value: r.kv === undefined ? undefined : Buffer.from(r.kv.value).toString(), revision: r.revision }));
    observer.on('error', () => {});
    // The observer first announces the election as it stands: nobody yet.
    const first = Date.now() + 5_000;
    while (observed.length < 1 && Date.now() < first) await new Promise((r) => setTimeout(r, 10));
    expect(observed.map((o) => o.value)).toEqual([undefined]);
    const one = (await campaign(0, 'grpc-primary', l1.id, 'one')).leader!;
    expect(one).toMatchObject({ name: 'grpc-primary', lease: l1.id });
    expect(one.revision).toBeGreaterThan(0n);
    const twoCampaign = campaign(follower, 'grpc-primary', l2.id, 'two', 10_000);
    const now = await leaderOf(follower, 'grpc-primary');
    expect(Buffer.from(now.kv!.value).toString()).toBe('one');
    expect(now.kv!.lease).toBe(l1.id);
    const proclaimed = await unary(election(2), election(2).proclaim, { keyspace: 'default', leader: one, value: Buffer.from('one-v2') });
    expect(proclaimed.revision).toBeGreaterThan(one.revision);
    expect(Buffer.from((await leaderOf(0, 'grpc-primary')).kv!.value).toString()).toBe('one-v2');
    const resigned = await unary(election(0), election(0).resign, { keyspace: 'default', leader: one });
    expect(resigned.revision).toBeGreaterThan(proclaimed.revision);
    const two: LeaderKey = (await twoCampaign).leader!;
    expect(two.revision).toBeGreaterThan(one.revision);
    expect(Buffer.from((await leaderOf(2, 'grpc-primary')).kv!.value).toString()).toBe('two');
    // Resigning twice, or proclaiming for a leader that resigned: FAILED_PRECONDITION.
    await failure(unary(election(0), election(0).resign, { keyspace: 'default', leader: one }), status.FAILED_PRECONDITION, 'NOT_LEADER');
    await failure(unary(election(0), election(0).proclaim, { keyspace: 'default', leader: one, value: Buffer.from('x') }), status.FAILED_PRECONDITION, 'NOT_LEADER');
    await unary(election(follower), election(follower).resign, { keyspace: 'default', leader: two });
    const deadline = Date.now() + 5_000;
    while (observed.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    observer.cancel();
    expect(observed.map((o) => o.value ?? '(none)')).toEqual(['(none)', 'one', 'one-v2', 'two', '(none)']);
    for (let i = 1; i < observed.length; i++) expect(observed[i]!.revision).toBeGreaterThan(observed[i - 1]!.revision);
    // Nobody campaigns now.
    const nobody = await failure(leaderOf(follower, 'grpc-primary'), status.NOT_FOUND, 'NO_LEADER');
    expect(nobody.details).toMatch(/nobody campaigns in it now/);
    for (const l of [l1, l2]) await revoke(0, l.id);
  });

  it('Leader of an election nobody ever ran is NOT_FOUND; AP keyspaces are FAILED_PRECONDITION; unknown ones NOT_FOUND; bad input INVALID_ARGUMENT', async () => {
    await failure(leaderOf(0, 'never-held'), status.NOT_FOUND, 'NO_LEADER');
    await failure(campaign(0, 'x', 1n, 'v', 5_000, 'ap'), status.FAILED_PRECONDITION);
    await failure(leaderOf(0, 'x', 'no-such-keyspace'), status.NOT_FOUND, 'UNKNOWN_KEYSPACE');
    await failure(campaign(0, 'x', 0n, 'v'), status.INVALID_ARGUMENT, 'LEASE_MISSING');
    await failure(campaign(0, 'x', 444_444_444n, 'v'), status.NOT_FOUND, 'LEASE_NOT_FOUND');
    await failure(leaderOf(0, ''), status.INVALID_ARGUMENT, 'NAME_MISSING');
    const noLeader = await failure(unary(election(0), election(0).resign, { keyspace: 'default', leader: undefined }), status.INVALID_ARGUMENT, 'LEADER_MISSING');
    expect(noLeader.details).toMatch(/give the leader key Campaign answered/);
  });

  // Leader reads with a plain Range, which AP keyspaces answer too: it must refuse them itself.
  it('Leader on an AP keyspace is FAILED_PRECONDITION, as Campaign is', async () => {
    const e = await failure(leaderOf(0, 'x', 'ap'), status.FAILED_PRECONDITION);
    expect(e.details).toMatch(/CP keyspace/);
  });
});
