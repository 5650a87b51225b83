/**
 * LeaseService, LockService and ElectionService over a NodeCore: thin adapters from the wire to
 * the recipes in coordination/, which validate their input and answer with one status each
 * (status.ts). An empty keyspace means "default".
 */
import { Metadata, type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import type { WallClock } from '../clock/index.js';
import { campaign, currentLeader, observe, proclaim, resign, type LeaderKey } from '../coordination/election.js';
import { acquireLock, releaseLock } from '../coordination/lock.js';
import { invalidArgument, notFound, resourceExhausted, toReplikitError } from '../errors.js';
import type { ElectionServiceServer, LeaderKey as WireLeaderKey, ObserveRequest, ObserveResponse } from '../gen/replikit/v1/election_service.js';
import type { LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseServiceServer } from '../gen/replikit/v1/lease_service.js';
import type { LockServiceServer } from '../gen/replikit/v1/lock_service.js';
import type { CallOptions, NodeCore } from '../node/node-core.js';
import { keyValue } from '../policy/cp/kv-state-machine.js';
import { remainingMs } from './call-deadline.js';
import { respond } from './kv-service.js';
import { grpcCodeOf, toGrpcStatus } from './status.js';

/**
 * Keep-alive requests one stream may have waiting for their answers: 10,000, the most one
 * renewal call carries. A client that sends faster than renewals are answered is cut off with
 * RESOURCE_EXHAUSTED rather than held in memory without bound.
 */
export const MAX_KEEPALIVES_PENDING = 10_000;
/** How long one batch of renewals may take before its leases are answered UNAVAILABLE (the client retries). */
const RENEW_TIMEOUT_MS = 5_000;

const CLIENT_CANCELLED = Object.freeze(new Error('the client cancelled the call'));

/** Ends a stream with the error's status (as watch-stream.ts does). */
function failStream(call: { emit(event: 'error', status: unknown): boolean }, error: unknown): void {
  const status = toGrpcStatus(error);
  call.emit('error', { code: status.code, details: status.details, metadata: status.metadata ?? new Metadata() });
}

function keyspaceOf(name: string): string {
  return name === '' ? 'default' : name;
}

function callOptions(call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>, wallClock: WallClock): CallOptions {
  const cancelled = new AbortController();
  call.once('cancelled', () => cancelled.abort(CLIENT_CANCELLED));
  return { timeoutMs: remainingMs(call.getDeadline(), wallClock()), signal: cancelled.signal };
}

export function leaseService(core: NodeCore, wallClock: WallClock): LeaseServiceServer {
  return {
    leaseGrant(call, callback) {
      const req = call.request;
      const keyspace = keyspaceOf(req.keyspace);
      if (req.ttlMs === 0n) return callback(toGrpcStatus(invalidArgument('LEASE_TTL_INVALID', 'ttl_ms is 0; give the lease a time to live in milliseconds (for example 10000)', { field: 'ttl_ms' })));
      respond(callback, async () => (await core.lease({ keyspace, grant: { keyspace, ttlMs: req.ttlMs } }, callOptions(call, wallClock))).grant!);
    },
    leaseRevoke(call, callback) {
      const keyspace = keyspaceOf(call.request.keyspace);
      respond(callback, async () => (await core.lease({ keyspace, revoke: { keyspace, id: call.request.id } }, callOptions(call, wallClock))).revoke!);
    },
    leaseTimeToLive(call, callback) {
      const keyspace = keyspaceOf(call.request.keyspace);
      respond(callback, async () => (await core.lease({ keyspace, timeToLive: { ...call.request, keyspace } }, callOptions(call, wallClock))).timeToLive!);
    },
    leaseList(call, callback) {
      const keyspace = keyspaceOf(call.request.keyspace);
      respond(callback, async () => (await core.lease({ keyspace, list: { ...call.request, keyspace } }, callOptions(call, wallClock))).list!);
    },
    leaseKeepAlive(call: ServerDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>) {
      serveKeepAlive(core, call);
    },
  };
}

/**
 * One keep-alive stream: requests are answered in order, in batches — every request that arrived
 * while the previous batch was being renewed goes in the next, so one leadership confirmation
 * renews them all. A renewal that fails is answered with its code; the stream goes on.
 */
function serveKeepAlive(core: NodeCore, call: ServerDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>): void {
  let pending: LeaseKeepAliveRequest[] = [];
  let keyspace: string | undefined;
  let running = false;
  let ended = false;
  let halfClosed = false;
  const end = (error?: unknown) => {
    if (ended) return;
    ended = true;
    if (error === undefined) call.end();
    else failStream(call, error);
  };
  const run = async () => {
    if (running || ended) return;
    running = true;
    try {
      while (pending.length > 0 && !ended) {
        const batch = pending;
        pending = [];
        let responses: LeaseKeepAliveResponse[];
        try {
          const answer = await core.lease({ keyspace: keyspace!, keepAlive: { ids: batch.map((r) => r.id) } }, { timeoutMs: RENEW_TIMEOUT_MS });
          responses = answer.keepAlive!.responses;
        } catch (error: unknown) {
          const e = toReplikitError(error);
          // A keyspace that does not exist or is not CP fails every request alike: say so once.
          if (e.kind === 'not-found' || e.kind === 'failed-precondition' || e.kind === 'invalid-argument') return end(e);
          responses = batch.map((r) => ({ id: r.id, ttlMs: 0n, code: grpcCodeOf(e), message: e.message }));
        }
        for (const r of responses) {
          if (ended) return;
          if (!call.write(r)) await new Promise<void>((resolve) => call.once('drain', resolve));
        }
      }
      if (halfClosed) end();
    } finally {
      running = false;
    }
  };
  call.on('data', (req: LeaseKeepAliveRequest) => {
    if (ended) return;
    const ks = keyspaceOf(req.keyspace);
    keyspace ??= ks;
    if (ks !== keyspace) return end(invalidArgument('KEYSPACE_CHANGED', `this stream keeps leases of ${JSON.stringify(keyspace)} alive, not ${JSON.stringify(ks)}; open one stream per keyspace`, { field: 'keyspace' }));
    if (req.id === 0n) return end(invalidArgument('LEASE_ID_MISSING', 'id is 0; name the lease (the id LeaseGrant answered)', { field: 'id' }));
    if (pending.length >= MAX_KEEPALIVES_PENDING) {
      return end(resourceExhausted('TOO_MANY_KEEPALIVES', `more than ${MAX_KEEPALIVES_PENDING} keep-alives are waiting for their answers on this stream; read the answers, or send fewer`));
    }
    pending.push(req);
    void run();
  });
  call.on('end', () => {
    halfClosed = true;
    if (!running && pending.length === 0) end();
  });
  call.on('cancelled', () => (ended = true));
  call.on('error', () => (ended = true));
}

export function lockService(core: NodeCore, wallClock: WallClock): LockServiceServer {
  return {
    lock(call, callback) {
      const req = call.request;
      respond(callback, async () => {
        const grant = await acquireLock(core, keyspaceOf(req.keyspace), req.name, req.lease, callOptions(call, wallClock));
        return { key: grant.key, fencingToken: BigInt(grant.fencingToken), revision: BigInt(grant.revision) };
      });
    },
    unlock(call, callback) {
      respond(callback, async () => ({ revision: BigInt(await releaseLock(core, keyspaceOf(call.request.keyspace), call.request.key, callOptions(call, wallClock))) }));
    },
  };
}

function leaderFromWire(leader: WireLeaderKey | undefined): LeaderKey {
  if (leader === undefined) throw invalidArgument('LEADER_MISSING', 'leader is missing; give the leader key Campaign answered', { field: 'leader' });
  return { name: leader.name, key: Buffer.from(leader.key), revision: Number(leader.revision), lease: Number(leader.lease) };
}

export function electionService(core: NodeCore, wallClock: WallClock): ElectionServiceServer {
  return {
    campaign(call, callback) {
      const req = call.request;
      respond(callback, async () => {
        const l = await campaign(core, keyspaceOf(req.keyspace), req.name, req.lease, req.value, callOptions(call, wallClock));
        return { leader: { name: l.name, key: l.key, revision: BigInt(l.revision), lease: BigInt(l.lease) } };
      });
    },
    proclaim(call, callback) {
      const req = call.request;
      respond(callback, async () => ({ revision: BigInt(await proclaim(core, keyspaceOf(req.keyspace), leaderFromWire(req.leader), req.value, callOptions(call, wallClock))) }));
    },
    resign(call, callback) {
      const req = call.request;
      respond(callback, async () => ({ revision: BigInt(await resign(core, keyspaceOf(req.keyspace), leaderFromWire(req.leader), callOptions(call, wallClock))) }));
    },
    leader(call, callback) {
      const req = call.request;
      respond(callback, async () => {
        const { kv, revision } = await currentLeader(core, keyspaceOf(req.keyspace), req.name, callOptions(call, wallClock));
        if (kv === undefined) throw notFound('NO_LEADER', `election ${JSON.stringify(req.name)} has no leader: nobody campaigns in it now`);
        return { kv: keyValue(kv), revision: BigInt(revision) };
      });
    },
    observe(call: ServerWritableStream<ObserveRequest, ObserveResponse>) {
      const req = call.request;
      const stop = new AbortController();
      call.once('cancelled', () => stop.abort(CLIENT_CANCELLED));
      void (async () => {
        try {
          for await (const change of observe(core, keyspaceOf(req.keyspace), req.name, stop.signal)) {
            if (!call.write({ kv: change.kv === undefined ? undefined : keyValue(change.kv), revision: BigInt(change.revision) })) {
              await new Promise<void>((resolve) => call.once('drain', resolve));
            }
          }
          call.end();
        } catch (error: unknown) {
          if (!stop.signal.aborted) failStream(call, error);
        }
      })();
    },
  };
}
