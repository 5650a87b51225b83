/**
 * Leases, locks and elections of a remote cluster (LeaseService, LockService, ElectionService),
 * through a {@link ReplikitClient}: `client.leases`, `client.lock(name)`, `client.election(name)`.
 * The same recipes as an embedded node's (coordination/embedded.ts), over gRPC, with failover:
 *
 * - Unary calls that change nothing twice are retried on the next endpoint while UNAVAILABLE
 *   (grant too: a grant repeated after a lost answer leaves one more lease, which expires after
 *   its TTL). Lock and Campaign are retried with the same lease, which continues the same wait
 *   (the node keeps the waiter's entry, attached to the lease, across the retry).
 * - Keep-alives go over one LeaseKeepAlive stream per keyspace, shared by every lease the client
 *   keeps alive there; a stream that fails, ends or goes silent is opened again on the next
 *   endpoint. The holder-side validity rule is KeptLease's (coordination/keep-alive.ts): the lease
 *   is valid until the send time of its last confirmed renewal plus its TTL; it is lost when the
 *   node answers NOT_FOUND or when that time passes unconfirmed.
 * - Observe resumes on the next endpoint when its stream fails; a leader announced twice (the
 *   new stream starts with the current leader) is announced once.
 */
import { Metadata, status as Status, type ClientDuplexStream, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { systemScheduler, type Scheduler } from '../clock/index.js';
import { KeptLease, type KeepAliveOptions } from '../coordination/keep-alive.js';
import { invalidArgument, ReplikitError, unavailable } from '../errors.js';
import { ElectionServiceClient, type LeaderKey as WireLeaderKey, type ObserveResponse } from '../gen/replikit/v1/election_service.js';
import type { KeyValue as WireKeyValue } from '../gen/replikit/v1/kv_service.js';
import { LeaseServiceClient, type LeaseKeepAliveRequest, type LeaseKeepAliveResponse } from '../gen/replikit/v1/lease_service.js';
import { LockServiceClient } from '../gen/replikit/v1/lock_service.js';
import { fromExchangeError, fromGrpcError } from '../transport/status.js';
import type { ReplikitClient } from './replikit-client.js';
import { toBuffer, type Bytes } from './types.js';

/** Options of every coordination call: the CP keyspace ("default" when absent), a deadline, a way to give up. */
export interface RemoteCoordinationOptions {
  readonly keyspace?: string;
  /** The call's deadline; the client's `timeoutMs` when absent (Lock and Campaign: see their docs). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** A lease's description (LeaseTimeToLive). */
export interface RemoteLeaseInfo {
  readonly id: number;
  readonly ttlMs: number;
  /** Milliseconds before the leader expires it, as the leader's clock runs. */
  readonly remainingMs: number;
  readonly keyCount: number;
  /** Its keys, when asked for (`keys: true`). */
  readonly keys: Buffer[];
}

/** TTL of the lease a lock or a campaign grants itself when given none (as the embedded API). */
export const DEFAULT_SESSION_TTL_MS = 10_000;
/** Lock and Campaign without a deadline wait this long (24 days): within what a Node timer can hold. */
export const MAX_WAIT_MS = 24 * 24 * 3_600_000;
/** How long a failed Observe keeps trying to resume before it ends with the error. */
const OBSERVE_BACKOFF_MS = { first: 50, max: 1_000 } as const;

/** Kinds after which a renewal is not retried: the lease (or its keyspace) is gone, or the call is wrong. */
const FINAL_KINDS = new Set(['not-found', 'invalid-argument', 'failed-precondition']);

function keyspaceOf(options: { readonly keyspace?: string }): string {
  return options.keyspace ?? 'default';
}

function u64(n: number, field: string): bigint {
  if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument('NOT_A_NUMBER', `${field} must be a whole number, not ${n}`, { field });
  return BigInt(n);
}

interface PendingRenewal {
  readonly id: number;
  readonly resolve: (ttlMs: number) => void;
  readonly reject: (error: ReplikitError) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * One LeaseKeepAlive stream of one keyspace, shared by the leases kept alive there. Requests are
 * answered one each, in order, so answers are matched to requests by position. The stream opens
 * on first use, on the endpoint the client prefers, and again on the next endpoint after it
 * failed; it closes when no lease uses it any more.
 */
class KeepAliveStream {
  readonly #client: ReplikitClient;
  readonly #keyspace: string;
  #endpoint: number;
  #call: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | undefined;
  #pending: PendingRenewal[] = [];
  #users = 0;

  constructor(client: ReplikitClient, keyspace: string) {
    this.#client = client;
    this.#keyspace = keyspace;
    this.#endpoint = client.preferred;
  }

  /** The endpoint the stream runs on (or opens on next). */
  get endpoint(): string {
    return this.#client.endpoints[this.#endpoint]!;
  }

  use(): void {
    this.#users++;
  }

  unuse(): void {
    if (--this.#users > 0) return;
    this.#users = 0;
    const call = this.#call;
    if (call !== undefined && this.#pending.length === 0) {
      this.#call = undefined;
      call.end();
    }
  }

  /**
   * Renews lease `id` once: resolves with the TTL renewed, rejects with the node's status (NOT_FOUND:
   * gone) or UNAVAILABLE when the stream failed or no answer came within `timeoutMs` (the stream is
   * then abandoned, and the next renewal opens one on the next endpoint).
   */
  renew(id: number, timeoutMs: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let call: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>;
      try {
        call = this.#open();
      } catch (error: unknown) {
        return reject(error instanceof ReplikitError ? error : unavailable('KEEPALIVE_FAILED', String(error)));
      }
      const timer = setTimeout(
        () => this.#fail(call, unavailable('KEEPALIVE_SILENT', `no answer to the renewal of lease ${id} from ${this.endpoint} within ${Math.round(timeoutMs)} ms; trying the next endpoint`)),
        timeoutMs,
      );
      timer.unref();
      this.#pending.push({ id, resolve, reject, timer });
      call.write({ keyspace: this.#keyspace, id: BigInt(id) });
    });
  }

  close(): void {
    if (this.#call !== undefined) this.#fail(this.#call, new ReplikitError('cancelled', 'CLIENT_CLOSED', 'the client is closed'));
  }

  #open(): ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> {
    if (this.#call !== undefined) return this.#call;
    const index = this.#endpoint;
    const call = this.#client.serviceOf(index, LeaseServiceClient).leaseKeepAlive(new Metadata());
    this.#call = call;
    call.on('data', (r: LeaseKeepAliveResponse) => {
      if (call !== this.#call) return;
      const p = this.#pending.shift();
      if (p === undefined || BigInt(p.id) !== r.id) {
        if (p !== undefined) this.#pending.unshift(p);
        return this.#fail(call, unavailable('KEEPALIVE_OUT_OF_ORDER', `the keep-alive stream on ${this.endpoint} answered lease ${r.id} out of turn; opening it again`));
      }
      clearTimeout(p.timer);
      if (r.code === 0) p.resolve(Number(r.ttlMs));
      else p.reject(fromExchangeError({ code: r.code, message: r.message || `lease ${p.id} was not renewed`, reason: '' }));
      if (this.#users === 0 && this.#pending.length === 0) {
        this.#call = undefined;
        call.end();
      }
    });
    call.on('error', (err: ServiceError) => this.#fail(call, fromGrpcError(err)));
    call.on('end', () => this.#fail(call, unavailable('KEEPALIVE_ENDED', `the keep-alive stream on ${this.#client.endpoints[index]} ended; opening it again`)));
    return call;
  }

  /** Abandons `call` (when it is still the current one): its pending renewals fail with `error`. */
  #fail(call: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>, error: ReplikitError): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    call.cancel();
    // A failure of the stream itself (anything but a verdict on the keyspace or the call) is
    // "retry": the next renewal goes to the next endpoint.
    const final = FINAL_KINDS.has(error.kind) || error.reason === 'CLIENT_CLOSED';
    if (!final) this.#endpoint = (this.#endpoint + 1) % this.#client.endpoints.length;
    const e = final ? error : error.kind === 'unavailable' ? error : unavailable(error.reason, error.message);
    for (const p of this.#pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(e);
    }
  }
}

/** What {@link RemoteLeases.keepAlive} takes. */
export interface RemoteKeepAliveOptions extends RemoteCoordinationOptions {
  /** When the grant (or a renewal) that confirmed the lease was sent, on `leases.scheduler`'s clock; now when absent. */
  readonly grantedAtMs?: number;
  /** Told of each renewal confirmed. */
  readonly onRenewed?: (ttlMs: number) => void;
  /**
   * Renewals per TTL: 3 by default (every third of it, as etcd). More keep the holder's view of
   * its validity fresher: after a failure (a leader killed) it has nearly the whole TTL left to
   * reach the next leader, rather than two thirds of it at worst.
   */
  readonly renewalsPerTtl?: number;
}

/** `base` with every timer `factor` times as long (its clock unchanged). */
function fasterTimers(base: Scheduler, factor: number): Scheduler {
  return { nowMs: () => base.nowMs(), setTimer: (ms, cb) => base.setTimer(ms * factor, cb), runSoon: (cb) => base.runSoon(cb) };
}

/** A KeptLease whose stream use ends when it stops or is lost. */
class StreamKeptLease extends KeptLease {
  readonly #done: () => void;

  constructor(options: KeepAliveOptions, grantedAtMs: number, done: () => void) {
    super(options, grantedAtMs);
    let once = false;
    this.#done = () => {
      if (once) return;
      once = true;
      done();
    };
    void this.lost.then(this.#done);
  }

  override stop(): void {
    super.stop();
    this.#done();
  }
}

/** The leases of a remote cluster's CP keyspaces: `client.leases`. */
export class RemoteLeases {
  readonly #client: ReplikitClient;
  readonly #streams = new Map<string, KeepAliveStream>();
  readonly #kept = new Set<KeptLease>();
  /** The clock of {@link KeptLease} validity: monotonic milliseconds (performance.now()). */
  readonly scheduler: Scheduler = systemScheduler;

  constructor(client: ReplikitClient) {
    this.#client = client;
  }

  /** Grants a lease of `ttlMs` (the node's limits: 1,000 to 3,600,000 ms by default). */
  async grant(ttlMs: number, options: RemoteCoordinationOptions = {}): Promise<{ readonly id: number; readonly ttlMs: number; readonly revision: number }> {
    const keyspace = keyspaceOf(options);
    const ttl = u64(ttlMs, 'ttl_ms');
    const r = await this.#client.call<{ id: bigint; ttlMs: bigint; revision: bigint }>(
      (i, deadline, cb) => this.#leases(i).leaseGrant({ keyspace, ttlMs: ttl }, new Metadata(), { deadline }, cb),
      { retry: true, ...callOptions(options) },
    );
    return { id: Number(r.id), ttlMs: Number(r.ttlMs), revision: Number(r.revision) };
  }

  /** Revokes a lease now, deleting its keys. NOT_FOUND when it expired or was revoked already. */
  async revoke(id: number, options: RemoteCoordinationOptions = {}): Promise<{ readonly revision: number; readonly keysDeleted: number }> {
    const keyspace = keyspaceOf(options);
    const lease = u64(id, 'id');
    const r = await this.#client.call<{ revision: bigint; keysDeleted: number }>(
      (i, deadline, cb) => this.#leases(i).leaseRevoke({ keyspace, id: lease }, new Metadata(), { deadline }, cb),
      { retry: true, ...callOptions(options) },
    );
    return { revision: Number(r.revision), keysDeleted: r.keysDeleted };
  }

  /** A lease's TTL, the time it has left and (`keys`) its keys. NOT_FOUND when it is gone. */
  async timeToLive(id: number, options: RemoteCoordinationOptions & { readonly keys?: boolean } = {}): Promise<RemoteLeaseInfo> {
    const keyspace = keyspaceOf(options);
    const lease = u64(id, 'id');
    const r = await this.#client.call<{ id: bigint; ttlMs: bigint; remainingMs: bigint; keyCount: bigint; keys: Buffer[] }>(
      (i, deadline, cb) => this.#leases(i).leaseTimeToLive({ keyspace, id: lease, keys: options.keys === true }, new Metadata(), { deadline }, cb),
      { retry: true, ...callOptions(options) },
    );
    return { id: Number(r.id), ttlMs: Number(r.ttlMs), remainingMs: Number(r.remainingMs), keyCount: Number(r.keyCount), keys: r.keys.map((k) => Buffer.from(k)) };
  }

  /** One page of the keyspace's leases, in id order, after `afterId`. */
  async list(options: RemoteCoordinationOptions & { readonly afterId?: number; readonly limit?: number } = {}): Promise<{ readonly leases: { id: number; ttlMs: number }[]; readonly more: boolean }> {
    const keyspace = keyspaceOf(options);
    const afterId = u64(options.afterId ?? 0, 'afterId');
    const limit = Number(u64(options.limit ?? 0, 'limit'));
    const r = await this.#client.call<{ leases: { id: bigint; ttlMs: bigint }[]; more: boolean }>(
      (i, deadline, cb) => this.#leases(i).leaseList({ keyspace, afterId, limit }, new Metadata(), { deadline }, cb),
      { retry: true, ...callOptions(options) },
    );
    return { leases: r.leases.map((l) => ({ id: Number(l.id), ttlMs: Number(l.ttlMs) })), more: r.more };
  }

  /** Every lease of the keyspace, a page at a time. */
  async *listAll(options: RemoteCoordinationOptions & { readonly limit?: number } = {}): AsyncGenerator<{ id: number; ttlMs: number }, void, undefined> {
    let afterId = 0;
    for (;;) {
      const page = await this.list({ ...options, afterId });
      yield* page.leases;
      if (!page.more || page.leases.length === 0) return;
      afterId = page.leases[page.leases.length - 1]!.id;
    }
  }

  /**
   * Renews lease `id` once over the keyspace's keep-alive stream: answers the TTL renewed, from
   * when the request was sent at the earliest. NOT_FOUND when the lease is gone; UNAVAILABLE when
   * no node confirmed it (retry).
   */
  renew(id: number, options: RemoteCoordinationOptions = {}): Promise<number> {
    u64(id, 'id');
    const stream = this.#stream(keyspaceOf(options));
    stream.use();
    return stream.renew(id, options.timeoutMs ?? this.#client.timeoutMs).finally(() => stream.unuse());
  }

  /**
   * Keeps lease `id` (of `ttlMs`) alive over the keep-alive stream until stopped or lost: see
   * {@link KeptLease}. `grantedAtMs` is when the grant (or a renewal) confirmed it was sent, on
   * `leases.scheduler`'s clock (performance.now()); now when absent. `onRenewed` is told of each
   * renewal confirmed.
   */
  keepAlive(id: number, ttlMs: number, options: RemoteKeepAliveOptions = {}): KeptLease {
    u64(id, 'id');
    const perTtl = options.renewalsPerTtl ?? 3;
    if (!(perTtl >= 3 && perTtl <= 100)) throw invalidArgument('ARGUMENT_INVALID', `renewalsPerTtl must be between 3 and 100, not ${perTtl}`, { field: 'renewalsPerTtl' });
    const stream = this.#stream(keyspaceOf(options));
    // An answer slower than a third of the TTL leaves too little of it to try another node.
    const timeoutMs = Math.max(250, Math.min(ttlMs / 3, this.#client.timeoutMs));
    stream.use();
    const kept: KeptLease = new StreamKeptLease(
      {
        id,
        ttlMs,
        // KeptLease renews every third of the TTL: timers run `3 / perTtl` as long for more.
        scheduler: perTtl === 3 ? this.scheduler : fasterTimers(this.scheduler, 3 / perTtl),
        // ...and the retry after a failed renewal stays at 100 ms (one Raft tick).
        retryMs: (100 * perTtl) / 3,
        renew: async (lease) => {
          const ttl = await stream.renew(lease, timeoutMs);
          options.onRenewed?.(ttl);
          return ttl;
        },
      },
      options.grantedAtMs ?? this.scheduler.nowMs(),
      () => {
        this.#kept.delete(kept);
        stream.unuse();
      },
    );
    this.#kept.add(kept);
    return kept;
  }

  /** Grants a lease and keeps it alive (a session). */
  async session(ttlMs: number = DEFAULT_SESSION_TTL_MS, options: Omit<RemoteKeepAliveOptions, 'grantedAtMs'> = {}): Promise<KeptLease> {
    const sentAt = this.scheduler.nowMs();
    const granted = await this.grant(ttlMs, options);
    return this.keepAlive(granted.id, granted.ttlMs, { ...options, grantedAtMs: sentAt });
  }

  /** @internal Stops every kept lease and closes the streams (the client is closing). */
  closeStreams(): void {
    for (const k of [...this.#kept]) k.stop();
    for (const s of this.#streams.values()) s.close();
  }

  /** The endpoint the keep-alive stream of `keyspace` runs on. */
  keepAliveEndpoint(keyspace = 'default'): string {
    return this.#stream(keyspace).endpoint;
  }

  #stream(keyspace: string): KeepAliveStream {
    let s = this.#streams.get(keyspace);
    if (s === undefined) {
      s = new KeepAliveStream(this.#client, keyspace);
      this.#streams.set(keyspace, s);
    }
    return s;
  }

  #leases(index: number): LeaseServiceClient {
    return this.#client.serviceOf(index, LeaseServiceClient);
  }
}

/** A lock held through a remote cluster. */
export interface RemoteHeldLock {
  readonly name: string;
  /** The key that holds the lock (Unlock takes it). */
  readonly key: Buffer;
  /** Pass it to what the lock protects; it refuses tokens smaller than the largest it saw. */
  readonly fencingToken: number;
  /** The keyspace's revision when the lock was found held. */
  readonly revision: number;
  readonly lease: number;
  /** The lease kept alive for this lock, when acquire granted one itself. */
  readonly session: KeptLease | undefined;
  /** Releases the lock (and revokes the lease acquire granted itself). FAILED_PRECONDITION LOCK_NOT_HELD when it was not held any more. */
  release(options?: RemoteCoordinationOptions): Promise<void>;
}

/** Lock and Campaign are retried (same lease: same wait) unless the node said the wait is over or the request is wrong. */
function waitRetryable(final: string) {
  return (e: ReplikitError): boolean => e.kind === 'unavailable' || (e.kind === 'outcome-unknown' && e.reason !== final && e.reason !== 'DEADLINE_EXCEEDED');
}

/** A signal that aborts when `signal` does or when `session` is lost. */
function linked(signal: AbortSignal | undefined, session: KeptLease | undefined): { signal: AbortSignal | undefined; done: () => void } {
  if (session === undefined) return { signal, done: () => {} };
  const controller = new AbortController();
  const abort = () => controller.abort();
  signal?.addEventListener('abort', abort, { once: true });
  if (signal?.aborted) controller.abort();
  let over = false;
  void session.lost.then(() => {
    if (!over) controller.abort();
  });
  return {
    signal: controller.signal,
    done: () => {
      over = true;
      signal?.removeEventListener('abort', abort);
    },
  };
}

/**
 * Runs `wait` (a Lock or a Campaign) holding `options.lease`, or a lease of `options.ttlMs`
 * granted and kept alive for it (a session). The wait ends when the caller's signal aborts or the
 * session is lost; then, or when `wait` fails, the session is stopped and its lease revoked, and a
 * lost session is named as the reason.
 */
async function whileHolding<T>(
  leases: RemoteLeases,
  keyspace: string,
  options: RemoteCoordinationOptions & { readonly lease?: number; readonly ttlMs?: number },
  wait: (lease: number, signal: AbortSignal | undefined) => Promise<T>,
): Promise<{ value: T; lease: number; session: KeptLease | undefined }> {
  const session = options.lease === undefined ? await leases.session(options.ttlMs ?? DEFAULT_SESSION_TTL_MS, { keyspace }) : undefined;
  const lease = options.lease ?? session!.id;
  const linkedWait = linked(options.signal, session);
  try {
    const value = await wait(lease, linkedWait.signal);
    if (session?.lostReason !== undefined) throw session.lostReason;
    return { value, lease, session };
  } catch (error) {
    if (session !== undefined) {
      session.stop();
      await leases.revoke(session.id, { keyspace }).catch(() => {});
      if (session.lostReason !== undefined && error instanceof ReplikitError && error.kind === 'cancelled') throw session.lostReason;
    }
    throw error;
  } finally {
    linkedWait.done();
  }
}

/** Stops a session's keep-alive, runs `end` (release, resign), then revokes the session's lease. */
async function endSession(leases: RemoteLeases, keyspace: string, session: KeptLease | undefined, end: () => Promise<unknown>): Promise<void> {
  session?.stop();
  try {
    await end();
  } finally {
    if (session !== undefined) await leases.revoke(session.id, { keyspace }).catch(() => {});
  }
}

/** The lock `name`: `client.lock(name)`. */
export class RemoteLock {
  constructor(
    readonly client: ReplikitClient,
    readonly name: string,
  ) {}

  /**
   * Acquires the lock, waiting up to `timeoutMs` (24 days when absent; DEADLINE_EXCEEDED
   * LOCK_WAIT_EXPIRED after it). Holds it with `lease` when given; otherwise grants a lease of
   * `ttlMs` and keeps it alive while the lock is held (`session`). A wait interrupted by a failed
   * node goes on through the next endpoint, in the same place in the queue.
   */
  async acquire(options: RemoteCoordinationOptions & { readonly lease?: number; readonly ttlMs?: number } = {}): Promise<RemoteHeldLock> {
    const keyspace = keyspaceOf(options);
    const leases = this.client.leases;
    const { value: r, lease, session } = await whileHolding(leases, keyspace, options, (lease, signal) =>
      this.client.call<{ key: Buffer; fencingToken: bigint; revision: bigint }>(
        (i, deadline, cb) => this.client.serviceOf(i, LockServiceClient).lock({ keyspace, name: this.name, lease: BigInt(lease) }, new Metadata(), { deadline }, cb),
        { retry: waitRetryable('LOCK_WAIT_EXPIRED'), timeoutMs: options.timeoutMs ?? MAX_WAIT_MS, ...(signal === undefined ? {} : { signal }) },
      ),
    );
    const key = Buffer.from(r.key);
    return {
      name: this.name,
      key,
      fencingToken: Number(r.fencingToken),
      revision: Number(r.revision),
      lease,
      session,
      release: (releaseOptions = {}) => endSession(leases, keyspace, session, () => this.unlock(key, { keyspace, ...releaseOptions })),
    };
  }

  /** Releases the lock held by `key` (or withdraws a waiter). FAILED_PRECONDITION LOCK_NOT_HELD when nothing holds it. */
  async unlock(key: Uint8Array, options: RemoteCoordinationOptions = {}): Promise<number> {
    const keyspace = keyspaceOf(options);
    const r = await this.client.call<{ revision: bigint }>(
      (i, deadline, cb) => this.client.serviceOf(i, LockServiceClient).unlock({ keyspace, key: Buffer.from(key) }, new Metadata(), { deadline }, cb),
      { retry: true, ...callOptions(options) },
    );
    return Number(r.revision);
  }
}

/** A campaigner's candidacy (Proclaim and Resign take it). */
export interface RemoteLeaderKey {
  readonly name: string;
  readonly key: Buffer;
  /** Its create revision: grows with every new leader (a fencing token). */
  readonly revision: number;
  readonly lease: number;
}

/** The leader of an election as a node reports it. */
export interface ElectionLeader {
  readonly key: Buffer;
  /** What it proclaims. */
  readonly value: Buffer;
  /** When it became a candidate; grows with every new leader (a fencing token). */
  readonly createRevision: number;
  /** The revision of its last proclamation. */
  readonly modRevision: number;
  readonly lease: number;
}

/** What Observe yields: the leader (undefined: none) at `revision`. */
export interface ElectionChange {
  readonly leader: ElectionLeader | undefined;
  readonly revision: number;
}

/** Leadership won by a campaign. */
export interface RemoteLeadership {
  readonly leader: RemoteLeaderKey;
  readonly session: KeptLease | undefined;
  proclaim(value: Bytes, options?: RemoteCoordinationOptions): Promise<number>;
  /** Gives up leadership (and revokes the lease campaign granted itself). */
  resign(options?: RemoteCoordinationOptions): Promise<void>;
}

function leaderFromWire(kv: WireKeyValue): ElectionLeader {
  return { key: Buffer.from(kv.key), value: Buffer.from(kv.value), createRevision: Number(kv.createRevision), modRevision: Number(kv.modRevision), lease: Number(kv.lease) };
}

function leaderKeyToWire(k: RemoteLeaderKey): WireLeaderKey {
  return { name: k.name, key: k.key, revision: BigInt(k.revision), lease: BigInt(k.lease) };
}

/** The election `name`: `client.election(name)`. */
export class RemoteElection {
  constructor(
    readonly client: ReplikitClient,
    readonly name: string,
  ) {}

  /**
   * Campaigns with `value` and resolves once leading, waiting up to `timeoutMs` (24 days when
   * absent). Like a lock, grants and keeps a lease of `ttlMs` unless given `lease`.
   */
  async campaign(value: Bytes, options: RemoteCoordinationOptions & { readonly lease?: number; readonly ttlMs?: number } = {}): Promise<RemoteLeadership> {
    const keyspace = keyspaceOf(options);
    const leases = this.client.leases;
    const { value: r, session } = await whileHolding(leases, keyspace, options, (lease, signal) =>
      this.client.call<{ leader: WireLeaderKey | undefined }>(
        (i, deadline, cb) => this.#service(i).campaign({ keyspace, name: this.name, lease: BigInt(lease), value: toBuffer(value) }, new Metadata(), { deadline }, cb),
        { retry: waitRetryable('CAMPAIGN_EXPIRED'), timeoutMs: options.timeoutMs ?? MAX_WAIT_MS, ...(signal === undefined ? {} : { signal }) },
      ),
    );
    const l = r.leader!;
    const leader: RemoteLeaderKey = { name: l.name, key: Buffer.from(l.key), revision: Number(l.revision), lease: Number(l.lease) };
    return {
      leader,
      session,
      proclaim: (v, o = {}) => this.proclaim(leader, v, { keyspace, ...o }),
      resign: (o = {}) => endSession(leases, keyspace, session, () => this.resign(leader, { keyspace, ...o })),
    };
  }

  /** Changes the leader's value; FAILED_PRECONDITION when `leader` no longer leads. */
  async proclaim(leader: RemoteLeaderKey, value: Bytes, options: RemoteCoordinationOptions = {}): Promise<number> {
    const keyspace = keyspaceOf(options);
    const r = await this.client.call<{ revision: bigint }>(
      (i, deadline, cb) => this.#service(i).proclaim({ keyspace, leader: leaderKeyToWire(leader), value: toBuffer(value) }, new Metadata(), { deadline }, cb),
      { retry: true, ...callOptions(options) },
    );
    return Number(r.revision);
  }

  /** Gives up leadership (or a candidacy); FAILED_PRECONDITION when it was gone already. */
  async resign(leader: RemoteLeaderKey, options: RemoteCoordinationOptions = {}): Promise<number> {
    const keyspace = keyspaceOf(options);
    const r = await this.client.call<{ revision: bigint }>(
      (i, deadline, cb) => this.#service(i).resign({ keyspace, leader: leaderKeyToWire(leader) }, new Metadata(), { deadline }, cb),
      { retry: true, ...callOptions(options) },
    );
    return Number(r.revision);
  }

  /** The current leader; `leader` is undefined when nobody campaigns. */
  async leader(options: RemoteCoordinationOptions = {}): Promise<ElectionChange> {
    const keyspace = keyspaceOf(options);
    try {
      const r = await this.client.call<{ kv: WireKeyValue | undefined; revision: bigint }>(
        (i, deadline, cb) => this.#service(i).leader({ keyspace, name: this.name }, new Metadata(), { deadline }, cb),
        { retry: true, ...callOptions(options) },
      );
      return { leader: r.kv === undefined ? undefined : leaderFromWire(r.kv), revision: Number(r.revision) };
    } catch (error: unknown) {
      if (error instanceof ReplikitError && error.reason === 'NO_LEADER') return { leader: undefined, revision: 0 };
      throw error;
    }
  }

  /**
   * The leader now, then every change of leader or of its value, until `signal` aborts (the
   * iterator then ends) or `break`. A failed stream is opened again on the next endpoint for up to
   * the client's `resumeTimeoutMs`; `onResume` is told of each attempt.
   */
  async *observe(signal?: AbortSignal, options: Omit<RemoteCoordinationOptions, 'signal' | 'timeoutMs'> & { readonly onResume?: (info: { from: string; to: string; error: ReplikitError }) => void } = {}): AsyncGenerator<ElectionChange, void, undefined> {
    const keyspace = keyspaceOf(options);
    let endpoint = this.client.preferred;
    let last: { key: string; modRevision: number } | null | undefined;
    let failingSince: number | undefined;
    let failures = 0;
    while (!signal?.aborted) {
      const call: ClientReadableStream<ObserveResponse> = this.#service(endpoint).observe({ keyspace, name: this.name }, new Metadata());
      const abort = () => call.cancel();
      signal?.addEventListener('abort', abort, { once: true });
      let error: ReplikitError;
      try {
        for await (const message of call as AsyncIterable<ObserveResponse>) {
          failingSince = undefined;
          failures = 0;
          const leader = message.kv === undefined ? undefined : leaderFromWire(message.kv);
          const id = leader === undefined ? null : { key: leader.key.toString('latin1'), modRevision: leader.modRevision };
          const same = last !== undefined && (id === null ? last === null : last !== null && last.key === id.key && last.modRevision === id.modRevision);
          if (same) continue;
          last = id;
          yield { leader, revision: Number(message.revision) };
        }
        error = unavailable('OBSERVE_ENDED', `the node ${this.client.endpoints[endpoint]} ended the observation`);
      } catch (err: unknown) {
        if (signal?.aborted) return;
        if (!isServiceErrorLike(err)) throw err;
        error = fromGrpcError(err);
        if (![Status.UNAVAILABLE, Status.CANCELLED, Status.RESOURCE_EXHAUSTED, Status.DEADLINE_EXCEEDED, Status.INTERNAL].includes(err.code)) throw error;
      } finally {
        signal?.removeEventListener('abort', abort);
        call.cancel();
      }
      if (signal?.aborted) return;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > this.client.resumeTimeoutMs) throw error;
      const from = this.client.endpoints[endpoint]!;
      this.client.failedOn(endpoint);
      endpoint = (endpoint + 1) % this.client.endpoints.length;
      options.onResume?.({ from, to: this.client.endpoints[endpoint]!, error });
      const pause = Math.min(OBSERVE_BACKOFF_MS.max, OBSERVE_BACKOFF_MS.first * 2 ** Math.min(failures++, 10));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, pause);
        signal?.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      });
    }
  }

  #service(index: number): ElectionServiceClient {
    return this.client.serviceOf(index, ElectionServiceClient);
  }
}

function callOptions(options: RemoteCoordinationOptions): { timeoutMs?: number; signal?: AbortSignal } {
  return { ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }), ...(options.signal === undefined ? {} : { signal: options.signal }) };
}

function isServiceErrorLike(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';
}
