/**
 * The coordination API of an embedded node: `node.leases`, `node.lock(name)` and
 * `node.election(name)`. The same recipes serve LeaseService, LockService and ElectionService
 * (transport/coordination-services.ts).
 */
import type { CallOptions, NodeCore } from '../node/node-core.js';
import { invalidArgument } from '../errors.js';
import { fromExchangeError } from '../transport/status.js';
import type { StoredKey } from '../policy/cp/kv-state-machine.js';
import { KeptLease } from './keep-alive.js';
import { acquireLock, releaseLock } from './lock.js';
import { campaign, currentLeader, observe, proclaim, resign, type LeaderChange, type LeaderKey } from './election.js';

/** Options of every coordination call: which CP keyspace ("default" when absent), and the call's deadline. */
export interface CoordinationOptions {
  readonly keyspace?: string;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** A lease's description (LeaseTimeToLive). */
export interface LeaseInfo {
  readonly id: number;
  readonly ttlMs: number;
  readonly remainingMs: number;
  readonly keyCount: number;
  readonly keys: Buffer[];
}

/** TTL of the lease a lock or a campaign grants itself when given none: 10 s, as etcd's concurrency sessions (60 s there) scaled to failover times here. */
export const DEFAULT_SESSION_TTL_MS = 10_000;

export class Leases {
  constructor(private readonly node: NodeCore) {}

  async grant(ttlMs: number, options: CoordinationOptions = {}): Promise<{ readonly id: number; readonly ttlMs: number; readonly revision: number }> {
    const keyspace = options.keyspace ?? 'default';
    const r = (await this.node.lease({ keyspace, grant: { keyspace, ttlMs: toU64(ttlMs, 'ttl_ms') } }, call(options))).grant!;
    return { id: Number(r.id), ttlMs: Number(r.ttlMs), revision: Number(r.revision) };
  }

  async revoke(id: number, options: CoordinationOptions = {}): Promise<{ readonly revision: number; readonly keysDeleted: number }> {
    const keyspace = options.keyspace ?? 'default';
    const r = (await this.node.lease({ keyspace, revoke: { keyspace, id: toU64(id, 'id') } }, call(options))).revoke!;
    return { revision: Number(r.revision), keysDeleted: r.keysDeleted };
  }

  /** Renews lease `id` once; answers its TTL. NOT_FOUND when it expired or was revoked. */
  async renew(id: number, options: CoordinationOptions = {}): Promise<number> {
    const keyspace = options.keyspace ?? 'default';
    const r = (await this.node.lease({ keyspace, keepAlive: { ids: [toU64(id, 'id')] } }, call(options))).keepAlive!.responses[0]!;
    if (r.code !== 0) throw fromExchangeError({ code: r.code, message: r.message, reason: '' });
    return Number(r.ttlMs);
  }

  async timeToLive(id: number, options: CoordinationOptions & { readonly keys?: boolean } = {}): Promise<LeaseInfo> {
    const keyspace = options.keyspace ?? 'default';
    const r = (await this.node.lease({ keyspace, timeToLive: { keyspace, id: toU64(id, 'id'), keys: options.keys === true } }, call(options))).timeToLive!;
    return { id: Number(r.id), ttlMs: Number(r.ttlMs), remainingMs: Number(r.remainingMs), keyCount: Number(r.keyCount), keys: r.keys.map((k) => Buffer.from(k)) };
  }

  async list(options: CoordinationOptions & { readonly afterId?: number; readonly limit?: number } = {}): Promise<{ readonly leases: { id: number; ttlMs: number }[]; readonly more: boolean }> {
    const keyspace = options.keyspace ?? 'default';
    const r = (await this.node.lease({ keyspace, list: { keyspace, afterId: BigInt(options.afterId ?? 0), limit: options.limit ?? 0 } }, call(options))).list!;
    return { leases: r.leases.map((l) => ({ id: Number(l.id), ttlMs: Number(l.ttlMs) })), more: r.more };
  }

  /** Keeps lease `id` (of `ttlMs`, granted at `grantedAtMs` on the node's clock) alive until stopped or lost. */
  keepAlive(id: number, ttlMs: number, options: CoordinationOptions & { readonly grantedAtMs?: number } = {}): KeptLease {
    const scheduler = this.node.runtime.scheduler;
    return new KeptLease(
      { id, ttlMs, scheduler, renew: (lease) => this.renew(lease, { keyspace: options.keyspace, timeoutMs: Math.max(100, Math.min(ttlMs / 3, this.node.settings.requestTimeoutMs)) }) },
      options.grantedAtMs ?? scheduler.nowMs(),
    );
  }

  /** Grants a lease and keeps it alive: a session, in etcd's terms. */
  async session(ttlMs: number = DEFAULT_SESSION_TTL_MS, options: CoordinationOptions = {}): Promise<KeptLease> {
    const sentAt = this.node.runtime.scheduler.nowMs();
    const granted = await this.grant(ttlMs, options);
    return this.keepAlive(granted.id, granted.ttlMs, { ...options, grantedAtMs: sentAt });
  }
}

/** A lock held (see `node.lock(name).acquire`). */
export interface HeldLock {
  readonly name: string;
  readonly key: Buffer;
  /** Pass it to what the lock protects; it refuses tokens smaller than the largest it saw. */
  readonly fencingToken: number;
  readonly lease: number;
  /** The lease kept alive for this lock, when acquire granted one itself. */
  readonly session: KeptLease | undefined;
  /** Releases the lock (and revokes the lease acquire granted itself). */
  release(): Promise<void>;
}

export class NodeLock {
  constructor(
    private readonly node: NodeCore,
    readonly name: string,
    private readonly leases: Leases,
  ) {}

  /**
   * Acquires the lock, waiting up to `timeoutMs`. Holds it with `lease` when given; otherwise
   * grants a lease of `ttlMs` and keeps it alive while the lock is held.
   */
  async acquire(options: CoordinationOptions & { readonly lease?: number; readonly ttlMs?: number } = {}): Promise<HeldLock> {
    const keyspace = options.keyspace ?? 'default';
    const { value: grant, lease, session } = await withLease(this.leases, options, (lease) => acquireLock(this.node, keyspace, this.name, lease, call(options)));
    return {
      name: this.name,
      key: grant.key,
      fencingToken: grant.fencingToken,
      lease,
      session,
      release: () => endWith(this.leases, keyspace, session, () => releaseLock(this.node, keyspace, grant.key, call(options))),
    };
  }
}

/** Leadership won by a campaign. */
export interface Leadership {
  readonly leader: LeaderKey;
  readonly session: KeptLease | undefined;
  proclaim(value: Uint8Array | string): Promise<number>;
  resign(): Promise<void>;
}

export class NodeElection {
  constructor(
    private readonly node: NodeCore,
    readonly name: string,
    private readonly leases: Leases,
  ) {}

  /** Campaigns with `value` and resolves once leading. Like a lock, grants and keeps a lease unless given one. */
  async campaign(value: Uint8Array | string, options: CoordinationOptions & { readonly lease?: number; readonly ttlMs?: number } = {}): Promise<Leadership> {
    const keyspace = options.keyspace ?? 'default';
    const { value: leader, session } = await withLease(this.leases, options, (lease) => campaign(this.node, keyspace, this.name, lease, bytes(value), call(options)));
    return {
      leader,
      session,
      proclaim: (v) => proclaim(this.node, keyspace, leader, bytes(v), call(options)),
      resign: () => endWith(this.leases, keyspace, session, () => resign(this.node, keyspace, leader, call(options))),
    };
  }

  /** The current leader, or undefined. */
  async leader(options: CoordinationOptions = {}): Promise<{ readonly kv: StoredKey | undefined; readonly revision: number }> {
    return currentLeader(this.node, options.keyspace ?? 'default', this.name, call(options));
  }

  /** The leader now, then each change, until `signal` aborts. */
  observe(signal: AbortSignal, options: CoordinationOptions = {}): AsyncGenerator<LeaderChange> {
    return observe(this.node, options.keyspace ?? 'default', this.name, signal);
  }
}

/**
 * Runs `use` with `options.lease`, or with a lease granted (of `options.ttlMs`) and kept alive for
 * it — a session, revoked at once if `use` fails.
 */
async function withLease<T>(leases: Leases, options: CoordinationOptions & { readonly lease?: number; readonly ttlMs?: number }, use: (lease: number) => Promise<T>): Promise<{ value: T; lease: number; session: KeptLease | undefined }> {
  if (options.lease !== undefined) return { value: await use(options.lease), lease: options.lease, session: undefined };
  const session = await leases.session(options.ttlMs ?? DEFAULT_SESSION_TTL_MS, options);
  try {
    return { value: await use(session.id), lease: session.id, session };
  } catch (error) {
    session.stop();
    await leases.revoke(session.id, { keyspace: options.keyspace }).catch(() => {});
    throw error;
  }
}

/** Stops a session's keep-alive, runs `end` (release, resign), then revokes the session's lease. */
async function endWith(leases: Leases, keyspace: string, session: KeptLease | undefined, end: () => Promise<unknown>): Promise<void> {
  session?.stop();
  try {
    await end();
  } finally {
    if (session !== undefined) await leases.revoke(session.id, { keyspace }).catch(() => {});
  }
}

function call(options: CoordinationOptions): CallOptions {
  return { timeoutMs: options.timeoutMs, signal: options.signal };
}

function bytes(v: Uint8Array | string): Uint8Array {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
}

function toU64(n: number, field: string): bigint {
  if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument('NOT_A_NUMBER', `${field} must be a whole number, not ${n}`, { field });
  return BigInt(n);
}
