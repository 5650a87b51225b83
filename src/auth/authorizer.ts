/**
 * Client authorization: what each RPC needs, checked against the caller's certificate and the
 * rules of an authz file (authz-rules.ts), in a grpc-js server interceptor that refuses a request
 * before its handler sees it.
 *
 * What each RPC needs (keyspace: the request's; an empty one is "default" for the coordination
 * services, as their handlers read it):
 *
 * | RPC | needs |
 * |---|---|
 * | KvService Get, Range, Watch (each create) | `read`; the key, or the whole range, within a grant's key prefix |
 * | KvService Put, Delete | `write` on the key |
 * | KvService Txn | `read` on every compared and read key, `write` on every written or deleted key, both branches |
 * | KvService Compact | `write` on the whole keyspace (a grant without a key prefix: it reaches every key's history) |
 * | LeaseService LeaseGrant, LeaseKeepAlive (every message), LeaseList, LeaseTimeToLive | `write` on the keyspace (any grant of it: leases are not keys); with `keys` set, also `read` on the whole keyspace |
 * | LeaseService LeaseRevoke | `write` on the whole keyspace (it deletes the lease's keys, wherever they are) |
 * | LockService Lock, Unlock | `write` on the lock's name, as a key (Unlock: the name inside the lock key) |
 * | ElectionService Campaign, Proclaim, Resign | `write` on the election's name, as a key |
 * | ElectionService Leader, Observe | `read` on the election's name, as a key |
 * | ClusterService AddMember, PromoteMember, RemoveMember | `admin` on keyspace `*` |
 * | ClusterService Status, ListMembers | any grant at all |
 *
 * Other services pass untouched: ReplicaService is the peer protocol (guarded by the peer
 * identity and peer certificate checks), and grpc.health and reflection stay open for load
 * balancers and tools. A method of the five services above that the table does not name is
 * refused: deny by default.
 *
 * Node certificates of this node's own cluster (`spiffe://<cluster-id>/node/<id>`) are granted
 * everything, with no grant in the file: nodes forward clients' calls to each other (membership
 * changes to the membership's leader) and hold every keyspace's data anyway. A certificate of
 * another cluster, one that names no replikit identity, and a caller without a certificate are
 * refused everything.
 */
import { prefixEnd } from '../policy/watch/key-range.js';
import { BurstLimit } from '../logging/burst-limit.js';
import { ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { ReplikitError } from '../errors.js';
import { ClusterServiceService } from '../gen/replikit/v1/cluster_service.js';
import { ElectionServiceService, type LeaderKey } from '../gen/replikit/v1/election_service.js';
import { KvServiceService, type RequestOp, type TxnRequest } from '../gen/replikit/v1/kv_service.js';
import { LeaseServiceService } from '../gen/replikit/v1/lease_service.js';
import { LockServiceService } from '../gen/replikit/v1/lock_service.js';
import { callHook } from '../interceptors/call-hook.js';
import { callerCertificate, describeIdentity, identityOfSubjectAltName } from '../interceptors/certificate-identity.js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { toGrpcStatus } from '../transport/status.js';
import { Undecodable } from '../transport/undecodable-requests.js';
import { prefixesFor, satisfies, type AuthzRules, type Need, type Permission } from './authz-rules.js';

/** Holds the rules in force; `replace` swaps them (SIGHUP), and every call reads the current ones. */
export class Authorizer {
  #rules: AuthzRules;

  constructor(rules: AuthzRules) {
    this.#rules = rules;
  }

  get rules(): AuthzRules {
    return this.#rules;
  }

  /** Puts `rules` in force for every call that arrives from now on (calls already admitted go on). */
  replace(rules: AuthzRules): void {
    this.#rules = rules;
  }

  /** Decides one request message of `method` from a caller with `certificate`; undefined: allowed. */
  check(certificate: PeerCertificate | undefined, clusterId: string, method: string, message: unknown): AuthzRefusal | undefined {
    return decide(this.#rules, certificate, clusterId, method, message);
  }
}

/** Why a request was refused; it is answered PERMISSION_DENIED with `message`. */
export interface AuthzRefusal {
  /** Who called: `client app (spiffe://c1/client/app)`, or what was wrong with the certificate. */
  readonly identity: string;
  readonly method: string;
  /** The keyspace the request named; undefined for ClusterService. */
  readonly keyspace: string | undefined;
  /** The permission missing (`any`: Status and ListMembers, which need any grant). */
  readonly permission: Permission | 'any';
  /** Stable, for logs: `no-grant`, `no-certificate`, `invalid-certificate`, `other-cluster`, `unknown-method`. */
  readonly reason: string;
  /** For the caller and the log: names the identity, keyspace and permission; never a value. */
  readonly message: string;
}

type NeedsOf = (message: never) => Need[];

const utf8 = (text: string) => Buffer.from(text, 'utf8');
const EMPTY = Buffer.alloc(0);
/** Coordination services read an empty keyspace as "default" (coordination-services.ts). */
const coordinationKeyspace = (name: string | undefined) => (name === undefined || name === '' ? 'default' : name);

function rangeNeed(permission: Permission, keyspace: string, key: Uint8Array | undefined, rangeEnd: Uint8Array | undefined, prefix: boolean | undefined): Need {
  const start = key ?? EMPTY;
  if (prefix === true) return { kind: 'range', permission, keyspace, start, end: prefixEnd(start) };
  if (rangeEnd === undefined || rangeEnd.byteLength === 0) return { kind: 'key', permission, keyspace, key: start };
  return { kind: 'range', permission, keyspace, start, end: rangeEnd };
}

function txnNeeds(req: TxnRequest): Need[] {
  const keyspace = req.keyspace ?? '';
  const needs: Need[] = [];
  for (const c of req.compares ?? []) needs.push({ kind: 'key', permission: 'read', keyspace, key: c.key ?? EMPTY });
  const ops = (list: RequestOp[] | undefined) => {
    for (const op of list ?? []) {
      if (op.put !== undefined) needs.push({ kind: 'key', permission: 'write', keyspace, key: op.put.key ?? EMPTY });
      else if (op.delete !== undefined) needs.push({ kind: 'key', permission: 'write', keyspace, key: op.delete.key ?? EMPTY });
      else if (op.get !== undefined) needs.push({ kind: 'key', permission: 'read', keyspace, key: op.get.key ?? EMPTY });
    }
  };
  ops(req.success);
  ops(req.failure);
  // A transaction that touches no key still reads the keyspace (its revision).
  if (needs.length === 0) needs.push({ kind: 'keyspace', permission: 'read', keyspace });
  return needs;
}

/** `_lock/<name>/<lease in 16 hex digits>`: the name, as Lock was asked for it; other keys as they are. */
function lockNameOf(key: Uint8Array | undefined): Buffer {
  const k = Buffer.from(key ?? EMPTY);
  const LOCK = '_lock/';
  if (k.byteLength <= LOCK.length || k.toString('latin1', 0, LOCK.length) !== LOCK) return k;
  const rest = k.subarray(LOCK.length);
  const slash = rest.lastIndexOf(0x2f);
  return slash < 0 ? rest : rest.subarray(0, slash);
}

function leaderNameNeed(permission: Permission, keyspace: string | undefined, leader: LeaderKey | undefined): Need {
  return { kind: 'key', permission, keyspace: coordinationKeyspace(keyspace), key: utf8(leader?.name ?? ''), what: 'election name' };
}

/** The needs of every guarded method's request message, by method path. */
const NEEDS = new Map<string, NeedsOf>([
  [KvServiceService.get.path, (m: { keyspace?: string; key?: Uint8Array }) => [{ kind: 'key', permission: 'read', keyspace: m.keyspace ?? '', key: m.key ?? EMPTY }]],
  [KvServiceService.put.path, (m: { keyspace?: string; key?: Uint8Array }) => [{ kind: 'key', permission: 'write', keyspace: m.keyspace ?? '', key: m.key ?? EMPTY }]],
  [KvServiceService.delete.path, (m: { keyspace?: string; key?: Uint8Array }) => [{ kind: 'key', permission: 'write', keyspace: m.keyspace ?? '', key: m.key ?? EMPTY }]],
  [KvServiceService.txn.path, (m: TxnRequest) => txnNeeds(m)],
  [KvServiceService.range.path, (m: { keyspace?: string; key?: Uint8Array; rangeEnd?: Uint8Array; prefix?: boolean }) => [rangeNeed('read', m.keyspace ?? '', m.key, m.rangeEnd, m.prefix)]],
  [
    KvServiceService.watch.path,
    (m: { create?: { keyspace?: string; key?: Uint8Array; rangeEnd?: Uint8Array; prefix?: boolean } }) =>
      m.create === undefined ? [{ kind: 'any-grant' }] : [rangeNeed('read', m.create.keyspace ?? '', m.create.key, m.create.rangeEnd, m.create.prefix)],
  ],
  [KvServiceService.compact.path, (m: { keyspace?: string }) => [{ kind: 'whole-keyspace', permission: 'write', keyspace: m.keyspace ?? '' }]],
  [LeaseServiceService.leaseGrant.path, (m: { keyspace?: string }) => [{ kind: 'keyspace', permission: 'write', keyspace: coordinationKeyspace(m.keyspace) }]],
  [LeaseServiceService.leaseKeepAlive.path, (m: { keyspace?: string }) => [{ kind: 'keyspace', permission: 'write', keyspace: coordinationKeyspace(m.keyspace) }]],
  [LeaseServiceService.leaseList.path, (m: { keyspace?: string }) => [{ kind: 'keyspace', permission: 'write', keyspace: coordinationKeyspace(m.keyspace) }]],
  [
    LeaseServiceService.leaseTimeToLive.path,
    (m: { keyspace?: string; keys?: boolean }) => [
      { kind: 'keyspace', permission: 'write', keyspace: coordinationKeyspace(m.keyspace) },
      ...(m.keys === true ? [{ kind: 'whole-keyspace', permission: 'read', keyspace: coordinationKeyspace(m.keyspace) } as const] : []),
    ],
  ],
  [LeaseServiceService.leaseRevoke.path, (m: { keyspace?: string }) => [{ kind: 'whole-keyspace', permission: 'write', keyspace: coordinationKeyspace(m.keyspace) }]],
  [LockServiceService.lock.path, (m: { keyspace?: string; name?: string }) => [{ kind: 'key', permission: 'write', keyspace: coordinationKeyspace(m.keyspace), key: utf8(m.name ?? ''), what: 'lock name' }]],
  [LockServiceService.unlock.path, (m: { keyspace?: string; key?: Uint8Array }) => [{ kind: 'key', permission: 'write', keyspace: coordinationKeyspace(m.keyspace), key: lockNameOf(m.key), what: 'lock name' }]],
  [ElectionServiceService.campaign.path, (m: { keyspace?: string; name?: string }) => [{ kind: 'key', permission: 'write', keyspace: coordinationKeyspace(m.keyspace), key: utf8(m.name ?? ''), what: 'election name' }]],
  [ElectionServiceService.proclaim.path, (m: { keyspace?: string; leader?: LeaderKey }) => [leaderNameNeed('write', m.keyspace, m.leader)]],
  [ElectionServiceService.resign.path, (m: { keyspace?: string; leader?: LeaderKey }) => [leaderNameNeed('write', m.keyspace, m.leader)]],
  [ElectionServiceService.leader.path, (m: { keyspace?: string; name?: string }) => [{ kind: 'key', permission: 'read', keyspace: coordinationKeyspace(m.keyspace), key: utf8(m.name ?? ''), what: 'election name' }]],
  [ElectionServiceService.observe.path, (m: { keyspace?: string; name?: string }) => [{ kind: 'key', permission: 'read', keyspace: coordinationKeyspace(m.keyspace), key: utf8(m.name ?? ''), what: 'election name' }]],
  [ClusterServiceService.status.path, () => [{ kind: 'any-grant' }]],
  [ClusterServiceService.listMembers.path, () => [{ kind: 'any-grant' }]],
  [ClusterServiceService.addMember.path, () => [{ kind: 'cluster-admin' }]],
  [ClusterServiceService.promoteMember.path, () => [{ kind: 'cluster-admin' }]],
  [ClusterServiceService.removeMember.path, () => [{ kind: 'cluster-admin' }]],
]);

/** The services whose every method is checked; a method of theirs missing from {@link NEEDS} is refused. */
const GUARDED_SERVICES = ['KvService', 'LeaseService', 'LockService', 'ElectionService', 'ClusterService'].map((s) => `/replikit.v1.${s}/`);

/** True for the methods the authorizer checks (the client API); false for the peer protocol, health and reflection. */
export function isAuthorizedMethod(path: string): boolean {
  return GUARDED_SERVICES.some((prefix) => path.startsWith(prefix));
}

/** What `message` (a request of `method`) needs; a message that did not parse needs any grant (its handler refuses it). */
export function needsOf(method: string, message: unknown): Need[] {
  const of = NEEDS.get(method);
  if (of === undefined) return [];
  if (message === null || typeof message !== 'object' || message instanceof Undecodable) return [{ kind: 'any-grant' }];
  return of(message as never);
}

/** A keyspace name from a request, for messages: quoted, and cut short (a caller may send a megabyte). */
function quoted(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

function permissionOf(need: Need | undefined): Permission | 'any' {
  if (need === undefined || need.kind === 'any-grant') return 'any';
  if (need.kind === 'cluster-admin') return 'admin';
  return need.permission;
}

function keyspaceOf(need: Need | undefined): string | undefined {
  if (need === undefined || need.kind === 'any-grant') return undefined;
  if (need.kind === 'cluster-admin') return '*';
  return need.keyspace;
}

/**
 * The decision for one request message: undefined when allowed, else the refusal. Pure: the
 * certificate is what the TLS layer verified, the rules are what the file said.
 */
export function decide(rules: AuthzRules, certificate: PeerCertificate | undefined, clusterId: string, method: string, message: unknown): AuthzRefusal | undefined {
  if (!isAuthorizedMethod(method)) return undefined;
  const needs = needsOf(method, message);
  const first = needs[0];
  const base = { method, keyspace: keyspaceOf(first), permission: permissionOf(first) };
  if (!NEEDS.has(method)) {
    return { ...base, identity: 'the caller', reason: 'unknown-method', message: `${method} is not in the authorization table of this node: refused (deny by default)` };
  }
  if (certificate === undefined) {
    return {
      ...base,
      identity: 'a caller without a certificate',
      reason: 'no-certificate',
      message: `${method} needs a client certificate: with authorization on (${rules.source}), a caller without one (plaintext, or TLS without a client certificate) has no identity and is refused`,
    };
  }
  const read = identityOfSubjectAltName(certificate.subjectaltname);
  if (read.kind === 'invalid') {
    return { ...base, identity: 'an invalid certificate', reason: 'invalid-certificate', message: `the caller's certificate names no replikit identity, so it is refused ${method}: ${read.problem}` };
  }
  const identity = read.identity;
  const who = describeIdentity(identity);
  if (identity.clusterId !== clusterId) {
    return {
      ...base,
      identity: who,
      reason: 'other-cluster',
      message: `${who} is an identity of cluster ${JSON.stringify(identity.clusterId)}, but this node belongs to cluster ${JSON.stringify(clusterId)}: it is granted nothing here`,
    };
  }
  // This cluster's own nodes forward clients' calls and hold the data anyway: everything.
  if (identity.kind === 'node') return undefined;
  const grants = rules.grantsFor(identity);
  for (const need of needs) {
    if (satisfies(grants, need)) continue;
    return { method, identity: who, keyspace: keyspaceOf(need), permission: permissionOf(need), reason: 'no-grant', message: refusalMessage(rules, grants, who, method, need) };
  }
  return undefined;
}

function refusalMessage(rules: AuthzRules, grants: ReturnType<AuthzRules['grantsFor']>, who: string, method: string, need: Need): string {
  const file = rules.source;
  switch (need.kind) {
    case 'any-grant':
      return `${who} may not call ${method}: no grant in ${file} names it`;
    case 'cluster-admin':
      return `${who} may not admin keyspace "*": no grant in ${file} gives it admin there (${method} changes the membership, which needs admin on keyspace *)`;
    default: {
      const ks = quoted(need.keyspace);
      const prefixes = prefixesFor(grants, need.permission, need.keyspace);
      if (prefixes.length === 0 || need.kind === 'keyspace') return `${who} may not ${need.permission} keyspace ${ks}: no grant in ${file} gives it ${need.permission} there`;
      const within = `keys starting with ${prefixes.slice(0, 5).map((p) => JSON.stringify(p)).join(', ')}${prefixes.length > 5 ? ', …' : ''}`;
      const what =
        need.kind === 'whole-keyspace'
          ? `on every key of it (${method} reaches every key)`
          : need.kind === 'range'
            ? 'on the whole range asked for'
            : `on this ${need.what ?? 'key'}`;
      return `${who} may not ${need.permission} keyspace ${ks} beyond ${within}: no grant in ${file} gives it ${need.permission} ${what}`;
    }
  }
}

/** Lines per window before refusals are only counted: a misconfigured client in a loop must not flood the log. */
export const AUTHZ_REFUSAL_LOG_BURST = 10;
export const AUTHZ_REFUSAL_LOG_WINDOW_MS = 10_000;

/**
 * Logs refusals at warn, one line each with the identity, method, keyspace and permission (never
 * a key's value), up to {@link AUTHZ_REFUSAL_LOG_BURST} per {@link AUTHZ_REFUSAL_LOG_WINDOW_MS};
 * beyond that they are counted, and the count goes with the next line that gets through.
 */
export function authzRefusalLogger(logger: Logger, nowMs: () => number = () => performance.now()): (refusal: AuthzRefusal) => void {
  const limit = new BurstLimit(AUTHZ_REFUSAL_LOG_BURST, AUTHZ_REFUSAL_LOG_WINDOW_MS, nowMs);
  return (refusal) => {
    const admitted = limit.admit();
    if (admitted === undefined) return;
    logger.warn(`refused ${refusal.method}: ${refusal.message}`, {
      identity: refusal.identity,
      method: refusal.method,
      keyspace: refusal.keyspace,
      permission: refusal.permission,
      reason: refusal.reason,
      ...(admitted.suppressedBefore > 0 ? { suppressedSinceLastLine: admitted.suppressedBefore } : {}),
    });
  };
}

/** Options of {@link authorizationServerInterceptor}. */
export interface AuthorizationInterceptorOptions {
  /** This node's cluster: certificates of another are refused everything. */
  readonly clusterId: string;
  /** Gets the refusals at warn, rate-limited (see {@link authzRefusalLogger}). */
  readonly logger?: Logger;
  /** Called with every refusal (a metric); must be quick and must not throw. */
  readonly onRefused?: (refusal: AuthzRefusal) => void;
}

/**
 * A server interceptor that checks every request message of the client API (every message of a
 * client stream too) against `authorizer`'s current rules and the caller's certificate, and
 * answers PERMISSION_DENIED before the handler sees a message it may not send. Other methods pass
 * straight through. Put it right after the peer identity interceptor.
 *
 * On an application's own grpc-js Server (`ReplicaNode.start({ server })`) replikit cannot add
 * interceptors: pass this one in the Server's `interceptors` option yourself.
 */
export function authorizationServerInterceptor(authorizer: Authorizer, options: AuthorizationInterceptorOptions): ServerInterceptor {
  const logger = options.logger ?? silentLogger;
  const log = authzRefusalLogger(logger);
  return (descriptor, nextCall) => {
    const method = descriptor.path;
    if (!isAuthorizedMethod(method)) return nextCall as ServerInterceptingCall;
    let refused = false;
    let certificate: PeerCertificate | undefined | null = null;
    const call: ServerInterceptingCall = new ServerInterceptingCall(nextCall, {
      start: (next) => {
        next({
          onReceiveMessage: (message, nextMessage) => {
            if (refused) return;
            if (certificate === null) certificate = callerCertificate(call.getAuthContext());
            const refusal = authorizer.check(certificate, options.clusterId, method, message);
            if (refusal === undefined) {
              nextMessage(message);
              return;
            }
            refused = true;
            log(refusal);
            const { onRefused } = options;
            if (onRefused !== undefined) callHook(logger, 'onRefused', () => onRefused(refusal));
            const details: Record<string, string> = { permission: refusal.permission };
            if (refusal.keyspace !== undefined) details.keyspace = refusal.keyspace.slice(0, 80);
            call.sendStatus(toGrpcStatus(new ReplikitError('permission-denied', 'NOT_AUTHORIZED', refusal.message, { details })));
          },
          // A refused call's handler never starts: it sees neither the message nor the half-close.
          onReceiveHalfClose: (nextHalfClose) => {
            if (!refused) nextHalfClose();
          },
        });
      },
    });
    return call;
  };
}

