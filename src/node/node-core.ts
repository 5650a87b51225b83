import { HybridLogicalClock, type Scheduler, type WallClock } from '../clock/index.js';
import { failedPrecondition, invalidArgument, notFound, ReplikitError, unavailable } from '../errors.js';
import type { LeaseAnswer, LeaseCall } from '../gen/replikit/v1/replica_service.js';
import type { Logger } from '../logging/logger.js';
import type {
  ConsistencyPolicy,
  KeyspacePolicy,
  LivenessOracle,
  OperationOptions,
  PolicyName,
  ReadResult,
  RangeResult,
  CompactResult,
  WriteResult,
} from '../policy/policy.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import type { Store } from '../storage/store.js';
import type { RaftLogStore } from '../storage/raft-log-store.js';
import type { TxnRequest, TxnResponse } from '../gen/replikit/v1/kv_service.js';
import type { RaftMessage } from '../raft/types.js';
import type { DigestAnswer, ProbeAnswer, ReplicaHandler, ReplicaSet, SnapshotPage } from '../transport/replica-set.js';
import { majority } from '../policy/majority.js';
import type { Watcher } from '../policy/watch/watch-hub.js';
import { checkRange, checkWatch, encodeContinuation, keyRangeOf, RANGE_PAGE_BYTES, type RangeArgs, type WatchArgs } from './range-watch-args.js';
import { ClockHighWaterStore } from './clock-high-water.js';
import { ENTRY_OVERHEAD_BYTES, entryBytes } from '../storage/entry-size.js';
import { FailStopStore } from './fail-stop-store.js';
import { sessionTokenCodec, type SessionCodec } from '../transport/session-token.js';
import { BatchingReplicaSet } from '../transport/batching-replica-set.js';
import { NODE_DEFAULTS, type PeerConfig } from './config.js';
import { KeyspaceHandle } from './keyspace-handle.js';
import { latin1 } from '../storage/key-text.js';

/** What a node runs on, injected: real gRPC and time, or an in-memory network on virtual time. */
export interface NodeRuntime {
  readonly replicas: ReplicaSet;
  readonly scheduler: Scheduler;
  readonly wallClock: WallClock;
  readonly store: Store;
  readonly logger: Logger;
  readonly liveness: LivenessOracle;
  /** The node's HLC; created from `wallClock` when absent. */
  readonly clock?: HybridLogicalClock;
  /**
   * The Raft log store of a CP keyspace on this node (on the same disk as `store`). Required when
   * the node has CP keyspaces.
   */
  readonly raftLog?: (keyspace: string) => RaftLogStore;
  /** Random numbers for Raft's election timeouts: seeded in the simulation; Math.random by default. */
  readonly random?: () => number;
  /**
   * Called once when the store fails (a failed sync): the node has stopped acknowledging and the
   * process should exit; a simulation crashes the node.
   */
  readonly onFatal?: (error: unknown) => void;
  /** Called whenever the node's phase or what it waits for changes (health listens). */
  readonly onPhaseChange?: (phase: NodePhase) => void;
}

/**
 * Where a node stands. `starting`: its store holds no identity, and it is asking its peers whether
 * the cluster is new or has history. `recovering`: it lost its state (or never had it) in a
 * cluster with history, and copies the others' before it serves or counts toward any quorum.
 * `serving`. `failed`: its store failed; it answers nothing until restarted.
 */
export type NodePhase = 'starting' | 'recovering' | 'serving' | 'failed';

/** The metadata under which a node keeps its identity once it belongs to a cluster. */
export const IDENTITY_META = 'node.identity';

/** The identity record a node keeps once it belongs to a cluster (see {@link IDENTITY_META}). */
export function identityRecord(nodeId: string, clusterId: string): Uint8Array {
  return Buffer.from(JSON.stringify({ nodeId, clusterId }));
}
/** Set (durably) once a new node has seen every peer new too: the cluster is forming. */
const FORMING_META = 'node.forming';
/** How long one probe or snapshot page may take, and the pause between rounds that fell short. */
const PROBE_TIMEOUT_MS = 500;
const SNAPSHOT_TIMEOUT_MS = 2_000;
const RETRY_PAUSE_MS = 200;
/** Distinct keys a Read answer reads from the store at a time (see #answerWithinBudget). */
const READ_CHUNK_KEYS = 16;
const FORMING_PAUSE_MS = 10;
/**
 * Client requests that may wait at once for a starting or recovering node; beyond it they fail at
 * once. Each waiter is a closure and a timer, so 10,000 cost about a megabyte.
 */
export const MAX_SERVE_WAITERS = 10_000;

/** The settled configuration a node core runs with (defaults applied, validated). */
export interface NodeSettings {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly peers: readonly PeerConfig[];
  readonly keyspaces: Readonly<Record<string, ConsistencyPolicy>>;
  readonly requestTimeoutMs: number;
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  readonly maxBatchEntries: number;
  readonly maxBatchBytes: number;
  readonly maxClockOffsetMs: number;
  /** Keys the HMAC of session tokens; see sessionTokenCodec. */
  readonly sessionSecret?: string;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: a node whose store is empty serves at
   * once, as if the cluster were new, instead of recovering the others' state first. The
   * simulation must catch this variant (a wiped replica counting toward quorums).
   * @default false
   */
  readonly unsafeSkipRecovery?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: the HLC starts from the wall clock
   * alone, ignoring the high-water mark the store keeps, so a node restarted with its clock
   * stepped back mints versions older than its earlier ones. The simulation must catch it.
   * @default false
   */
  readonly unsafeIgnoreClockHighWater?: boolean;
}

/** Per-call options of the embedding API. */
export interface CallOptions {
  /** Milliseconds before the call fails; the node's `requestTimeoutMs` when absent. */
  readonly timeoutMs?: number;
  /** The causal context of an earlier response. */
  readonly sessionToken?: Uint8Array;
  /** AP keyspaces: replicas that must hold a write before it is acknowledged. */
  readonly ack?: OperationOptions['ack'];
  /** Aborted when the caller gives up (a cancelled gRPC call): waits end at once. */
  readonly signal?: AbortSignal;
  /** CP keyspaces: how a read is answered (linearizable by default). */
  readonly consistency?: OperationOptions['consistency'];
  /** CP keyspaces: the lease a put attaches its key to (deleted when it ends); 0 or absent for none. */
  readonly lease?: number;
}

/**
 * Set once a node recovered from a lost disk in a cluster with history: its CP keyspaces' Raft
 * groups never vote or campaign again from this disk (it forgot its votes; see failure-model.md).
 */
export const RAFT_NO_VOTE_META = 'raft.no-vote';

/**
 * The heart of a replica: keyspaces bound to policies over one store, one HLC and one replica set.
 * It validates every client request and every peer request before a policy sees it. It knows
 * nothing of gRPC: `startNode` wires it to real sockets, simulations to an in-memory network.
 */
export class NodeCore implements ReplicaHandler {
  readonly settings: NodeSettings;
  readonly clock: HybridLogicalClock;
  readonly runtime: NodeRuntime;
  readonly sessions: SessionCodec;
  /** The peers as the policies reach them: batched. */
  readonly replicas: BatchingReplicaSet;
  /** The store as the policies use it: fail-stop, keeping the clock's high-water mark. */
  readonly store: Store;
  readonly #policies = new Map<string, { name: PolicyName; policy: KeyspacePolicy }>();
  #closed = false;
  #phase: NodePhase;
  /** Why the node is not serving yet, for logs, health and Status. */
  #waitingFor = '';
  #started: Promise<void> | undefined;
  #serving: Promise<void> | undefined;
  #opened: Promise<void> | undefined;
  /** Client requests waiting for the node to serve (see #whenServing). */
  readonly #serveWaiters = new Set<(served: boolean) => void>();

  constructor(settings: NodeSettings, runtime: NodeRuntime) {
    this.settings = settings;
    this.runtime = runtime;
    const highWater = new ClockHighWaterStore(runtime.store);
    this.store = new FailStopStore(highWater, (error) => this.#failStop(error));
    this.clock = runtime.clock ?? new HybridLogicalClock(runtime.wallClock);
    // Versions minted from now on order after every version this store ever held.
    if (highWater.highWater !== undefined && !settings.unsafeIgnoreClockHighWater) this.clock.update(highWater.highWater);
    this.#phase = this.#readIdentity() ? 'serving' : 'starting';
    this.sessions = sessionTokenCodec(settings.clusterId, settings.sessionSecret);
    const replicaIds = [settings.nodeId, ...settings.peers.map((p) => p.id)];
    // Calls to one peer issued in the same turn travel as one batch (see BatchingReplicaSet).
    this.replicas = new BatchingReplicaSet(runtime.replicas, runtime.scheduler, { maxBatchEntries: settings.maxBatchEntries, maxBatchBytes: settings.maxBatchBytes });
    for (const [name, policy] of Object.entries(settings.keyspaces)) {
      this.#policies.set(name, {
        name: policy.name,
        policy: policy.create({
          keyspace: name,
          selfId: settings.nodeId,
          replicaIds,
          store: this.store,
          replicas: this.replicas,
          clock: this.clock,
          scheduler: runtime.scheduler,
          liveness: runtime.liveness,
          logger: runtime.logger,
          sessions: this.sessions,
          limits: { maxBatchEntries: settings.maxBatchEntries, maxBatchBytes: settings.maxBatchBytes },
          valueLimits: { maxKeyBytes: settings.maxKeyBytes, maxValueBytes: settings.maxValueBytes },
          raftLog: runtime.raftLog === undefined ? undefined : () => runtime.raftLog!(name),
          random: runtime.random ?? Math.random,
          onFatal: (error) => this.#failStop(error),
        }),
      });
    }
  }

  /** Keyspace names with their policy names, in config order. */
  keyspaceNames(): { name: string; policy: PolicyName }[] {
    return [...this.#policies].map(([name, p]) => ({ name, policy: p.name }));
  }

  /** The policy instance serving `keyspace` (for stats and tests); throws NOT_FOUND like requests do. */
  policyOf(keyspace: string): KeyspacePolicy {
    return this.#policyOf(keyspace);
  }

  /** A typed handle on one keyspace; throws NOT_FOUND for a keyspace the node does not serve. */
  keyspace(name: string): KeyspaceHandle {
    this.#policyOf(name);
    return new KeyspaceHandle(this, name);
  }

  /** Where the node stands (see {@link NodePhase}). */
  get phase(): NodePhase {
    return this.#phase;
  }

  /** While not serving: what the node is waiting for, in words; empty when serving. */
  get waitingFor(): string {
    return this.#phase === 'serving' ? '' : this.#waitingFor;
  }

  /** Why the node does not serve, in one sentence for health and Status; empty while it serves. */
  notServingReason(): string {
    if (this.#phase === 'serving') return '';
    if (this.#phase === 'failed') return `node ${this.settings.nodeId} stopped: its store failed`;
    return `node ${this.settings.nodeId} is ${this.#phase}: ${this.#waitingFor}`;
  }

  /**
   * Takes the node to `serving`. A node whose store has its identity serves at once. A node with
   * an empty store first asks its peers whether the cluster is new: when every peer is new too,
   * the cluster forms (two rounds, so that no node forms while another still sees a new peer);
   * when any peer belongs to a cluster, this node lost its state (or is new to a cluster with
   * history) and recovers it from the others before it serves. It waits, and says why, while it
   * cannot tell. Resolves once serving (or never, if closed first).
   */
  start(): Promise<void> {
    this.#started ??= this.#bootstrap().catch((error: unknown) => {
      // Whatever stopped the start-up (the store failing, most likely) stops the node: a node left
      // starting for ever would neither serve nor say why.
      if (!this.#closed) this.#failStop(error);
    });
    return this.#started;
  }

  async put(keyspace: string, key: Uint8Array, value: Uint8Array, options: CallOptions = {}): Promise<WriteResult> {
    const policy = this.#policyOf(keyspace);
    this.#checkKey(key);
    if (value.byteLength > this.settings.maxValueBytes) {
      throw invalidArgument(
        'VALUE_TOO_LARGE',
        `value is ${value.byteLength} bytes; the limit (maxValueBytes) is ${this.settings.maxValueBytes}`,
        { size: String(value.byteLength), limit: String(this.settings.maxValueBytes) },
      );
    }
    if (options.lease && this.#policies.get(keyspace)!.name !== 'cp') {
      throw failedPrecondition('LEASE_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} is ${this.#policies.get(keyspace)!.name}; leases need a CP keyspace (put without a lease, or use a CP keyspace)`);
    }
    return policy.put(key, value, await this.#whenServing(this.#operationOptions(options)));
  }

  /** A lease operation (see LeaseService) on a CP keyspace. */
  async lease(call: LeaseCall, options: CallOptions = {}): Promise<LeaseAnswer> {
    const policy = this.#policyOf(call.keyspace);
    if (policy.leaseCall === undefined) {
      throw failedPrecondition('LEASE_NOT_SUPPORTED', `keyspace ${JSON.stringify(call.keyspace)} is ${this.#policies.get(call.keyspace)!.name}; leases need a CP keyspace`);
    }
    return policy.leaseCall(call, await this.#whenServing(this.#operationOptions(options)));
  }

  async get(keyspace: string, key: Uint8Array, options: CallOptions = {}): Promise<ReadResult> {
    const policy = this.#policyOf(keyspace);
    this.#checkKey(key);
    return policy.get(key, await this.#whenServing(this.#operationOptions(options)));
  }

  async delete(keyspace: string, key: Uint8Array, options: CallOptions = {}): Promise<WriteResult> {
    const policy = this.#policyOf(keyspace);
    this.#checkKey(key);
    return policy.delete(key, await this.#whenServing(this.#operationOptions(options)));
  }

  /** A transaction (compare-and-set and more) on a CP keyspace; see TxnRequest. */
  async txn(request: TxnRequest, options: CallOptions = {}): Promise<TxnResponse> {
    const policy = this.#policyOf(request.keyspace);
    if (policy.txn === undefined) {
      throw failedPrecondition('TXN_NOT_SUPPORTED', `keyspace ${JSON.stringify(request.keyspace)} is ${this.#policies.get(request.keyspace)!.name}; transactions need a CP keyspace`);
    }
    return policy.txn(request, await this.#whenServing(this.#operationOptions(options)));
  }

  /**
   * Reads the keys of a key, a range or a prefix (see RangeRequest): on CP keyspaces at a
   * revision, elsewhere from the local replica. `continuation` in the answer reads the next page.
   */
  async range(keyspace: string, args: RangeArgs, options: CallOptions = {}): Promise<RangeResult & { readonly continuation?: Uint8Array }> {
    const policy = this.#policyOf(keyspace);
    const isCp = this.#policies.get(keyspace)!.name === 'cp';
    const checked = checkRange(args, keyRangeOf(args, this.settings.maxKeyBytes), isCp);
    if (policy.range === undefined) throw failedPrecondition('RANGE_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} cannot answer Range`);
    const descending = args.descending === true;
    const result = await policy.range(
      { range: checked.range, limit: checked.limit, keysOnly: args.keysOnly === true, countOnly: args.countOnly === true, descending, revision: checked.revision, after: checked.after, maxBytes: Math.min(RANGE_PAGE_BYTES, this.settings.maxValueBytes) },
      await this.#whenServing(this.#operationOptions(options)),
    );
    const last = result.kvs[result.kvs.length - 1];
    return result.more && last !== undefined ? { ...result, continuation: encodeContinuation(result.revision, descending, last.key) } : result;
  }

  /**
   * Starts a watch of a key, a range or a prefix on this node (see WatchCreateRequest): an async
   * iterator of messages, which throws when the watch fails (the error's details name
   * `resume_revision`, or `compact_revision`).
   */
  async watch(keyspace: string, args: WatchArgs, options: CallOptions = {}): Promise<Watcher> {
    const policy = this.#policyOf(keyspace);
    const range = keyRangeOf(args, this.settings.maxKeyBytes);
    const checked = checkWatch(args);
    if (policy.watch === undefined) throw failedPrecondition('WATCH_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} cannot be watched`);
    return policy.watch({ range, startRevision: checked.startRevision, prevKv: args.prevKv === true, progressIntervalMs: checked.progressIntervalMs }, await this.#whenServing(this.#operationOptions(options)));
  }

  /** Compacts a CP keyspace's history through `revision` (see CompactRequest). */
  async compact(keyspace: string, revision: number, options: CallOptions = {}): Promise<CompactResult> {
    const policy = this.#policyOf(keyspace);
    if (policy.compact === undefined) {
      throw failedPrecondition('COMPACT_NOT_SUPPORTED', `keyspace ${JSON.stringify(keyspace)} is ${this.#policies.get(keyspace)!.name}; only CP keyspaces keep history to compact`);
    }
    if (!Number.isSafeInteger(revision) || revision <= 0) throw invalidArgument('REVISION_INVALID', `revision must be a positive whole number, not ${revision}`, { field: 'revision' });
    return policy.compact(revision, await this.#whenServing(this.#operationOptions(options)));
  }

  // The replica half, called by the transport when a peer's request arrives.

  async replicate(from: string, keyspace: string, entries: readonly Entry[]): Promise<ApplyOutcome[]> {
    const policy = this.#policyOf(keyspace);
    await this.#joinIfFormed();
    this.#assertServing();
    this.#checkBatch(entries.length);
    for (const entry of entries) this.#checkKey(entry.key);
    return policy.applyReplicated(from, entries);
  }

  async read(from: string, keyspace: string, keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]> {
    const policy = this.#policyOf(keyspace);
    await this.#joinIfFormed();
    this.#assertServing();
    this.#checkBatch(keys.length);
    for (const key of keys) this.#checkKey(key);
    return this.#answerWithinBudget(keys, (chunk) => policy.readLocal(from, chunk));
  }

  /**
   * The answer to a peer's Read: each distinct key read once, in chunks, and the answer cut to the
   * longest prefix of `keys` whose entries fit `maxBatchBytes` (never empty: one entry larger than
   * the budget goes alone). The caller asks again for the rest (BatchingReplicaSet does). So one
   * small Read naming a large value a thousand times costs one entry and one budget of memory,
   * not a thousand copies.
   */
  async #answerWithinBudget(keys: readonly Uint8Array[], read: (keys: Uint8Array[]) => Promise<(Entry | undefined)[]>): Promise<(Entry | undefined)[]> {
    const { maxBatchBytes } = this.settings;
    const found = new Map<string, Entry | undefined>();
    const answer: (Entry | undefined)[] = [];
    let bytes = 0;
    for (let at = 0; at < keys.length; ) {
      // The next few distinct keys not yet read, a chunk at a time (memory: a chunk of entries).
      const chunk: Uint8Array[] = [];
      for (let i = at; i < keys.length && chunk.length < READ_CHUNK_KEYS; i++) {
        const id = latin1(keys[i]!);
        if (!found.has(id) && !chunk.some((k) => latin1(k) === id)) chunk.push(keys[i]!);
      }
      if (chunk.length > 0) (await read(chunk)).forEach((entry, i) => found.set(latin1(chunk[i]!), entry));
      for (; at < keys.length && found.has(latin1(keys[at]!)); at++) {
        const entry = found.get(latin1(keys[at]!));
        const size = entry === undefined ? keys[at]!.byteLength + ENTRY_OVERHEAD_BYTES : entryBytes(entry);
        if (answer.length > 0 && bytes + size > maxBatchBytes) return answer;
        answer.push(entry);
        bytes += size;
      }
    }
    return answer;
  }

  async syncDigests(from: string, keyspace: string, bucketHashes: readonly bigint[]): Promise<DigestAnswer> {
    const policy = this.#policyOf(keyspace);
    await this.#joinIfFormed();
    this.#assertServing();
    if (policy.syncDigests === undefined) {
      throw failedPrecondition('NOT_AP_KEYSPACE', `keyspace ${JSON.stringify(keyspace)} is not an AP keyspace; anti-entropy runs only between AP replicas`);
    }
    return policy.syncDigests(from, bucketHashes, this.settings.maxBatchEntries);
  }

  async probe(_from: string): Promise<ProbeAnswer> {
    if (this.#phase !== 'starting') return 'member';
    return this.store.getMeta(FORMING_META) === undefined ? 'new' : 'ready';
  }

  async snapshot(from: string, keyspace: string, afterKey: Uint8Array | undefined, maxEntries: number): Promise<SnapshotPage> {
    const policy = this.#policyOf(keyspace);
    // Only a serving replica is a source: a recovering one holds part of the state at most.
    this.#assertServing();
    this.#checkBatch(maxEntries);
    if (afterKey !== undefined) this.#checkKey(afterKey);
    return policy.snapshot(afterKey, Math.max(1, maxEntries), from);
  }

  async raft(from: string, keyspace: string, messages: readonly RaftMessage[]): Promise<void> {
    // Taken in while the node closes too: a leader handing over needs its followers' answers.
    const policy = this.#closed ? this.#policies.get(keyspace)?.policy : this.#policyOf(keyspace);
    if (policy === undefined) return;
    if (policy.raftMessages === undefined) throw failedPrecondition('NOT_A_RAFT_KEYSPACE', `keyspace ${JSON.stringify(keyspace)} has no Raft group`);
    await this.#joinIfFormed();
    policy.raftMessages(from, messages);
  }

  async forwardCompact(from: string, keyspace: string, revision: number, timeoutMs: number): Promise<CompactResult> {
    const policy = this.#policyOf(keyspace);
    if (policy.forwardedCompact === undefined) throw failedPrecondition('NOT_A_RAFT_KEYSPACE', `keyspace ${JSON.stringify(keyspace)} has no Raft group`);
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalidArgument('BAD_TIMEOUT', `a forwarded call needs a positive timeout, not ${timeoutMs}`);
    return policy.forwardedCompact(from, revision, Math.min(timeoutMs, this.settings.requestTimeoutMs * 4));
  }

  async forwardLease(from: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer> {
    const policy = this.#policyOf(call.keyspace);
    if (policy.forwardedLease === undefined) throw failedPrecondition('NOT_A_RAFT_KEYSPACE', `keyspace ${JSON.stringify(call.keyspace)} has no Raft group`);
    this.#assertServing();
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalidArgument('BAD_TIMEOUT', `a forwarded call needs a positive timeout, not ${timeoutMs}`);
    return policy.forwardedLease(from, call, Math.min(timeoutMs, this.settings.requestTimeoutMs * 4));
  }

  async forward(from: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse> {
    const policy = this.#policyOf(request.keyspace);
    if (policy.forwarded === undefined) throw failedPrecondition('NOT_A_RAFT_KEYSPACE', `keyspace ${JSON.stringify(request.keyspace)} has no Raft group`);
    this.#assertServing();
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalidArgument('BAD_TIMEOUT', `a forwarded call needs a positive timeout, not ${timeoutMs}`);
    return policy.forwarded(from, request, Math.min(timeoutMs, this.settings.requestTimeoutMs * 4));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Stops the policies' background work. The store is closed by whoever opened it. */
  async close(options: { readonly abrupt?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeServeWaiters(false);
    await Promise.all([...this.#policies.values()].map((p) => p.policy.close(options)));
  }

  /**
   * A client's request that arrives while the node starts or recovers waits for it to serve, up
   * to the request's deadline, then fails with UNAVAILABLE naming what the node waits for (so a
   * cluster's first requests, sent as its nodes come up, succeed). Resolves with the options,
   * their deadline less the time waited.
   */
  async #whenServing(options: OperationOptions): Promise<OperationOptions> {
    if (this.#phase === 'serving') return options;
    if (this.#phase === 'failed' || this.#closed || this.#serveWaiters.size >= MAX_SERVE_WAITERS) this.#assertServing();
    const { scheduler } = this.runtime;
    const started = scheduler.nowMs();
    const served = await new Promise<boolean>((resolve) => {
      const waiter = (ok: boolean) => {
        timer.cancel();
        options.signal?.removeEventListener('abort', cancel);
        this.#serveWaiters.delete(waiter);
        resolve(ok);
      };
      const cancel = () => waiter(false);
      const timer = scheduler.setTimer(options.timeoutMs, cancel);
      options.signal?.addEventListener('abort', cancel, { once: true });
      this.#serveWaiters.add(waiter);
    });
    if (!served) this.#assertServing();
    return { ...options, timeoutMs: Math.max(1, options.timeoutMs - (scheduler.nowMs() - started)) };
  }

  /** Wakes the requests waiting for the node to serve: `true` once it serves, `false` to fail them. */
  #wakeServeWaiters(served: boolean): void {
    for (const waiter of [...this.#serveWaiters]) waiter(served);
  }

  #assertServing(): void {
    if (this.#phase === 'serving') return;
    if (this.#phase === 'failed') {
      throw unavailable('STORAGE_FAILED', `node ${this.settings.nodeId} stopped after its store failed (${describeError(this.store instanceof FailStopStore ? this.store.failure : undefined)}); nothing was done: use another node`);
    }
    throw unavailable(
      this.#phase === 'recovering' ? 'RECOVERING' : 'STARTING',
      `node ${this.settings.nodeId} is ${this.#phase === 'recovering' ? 'recovering the state it lost from its peers' : 'starting'} and serves nothing yet: ${this.#waitingFor}; nothing was done: retry, here later or on another node`,
      { phase: this.#phase },
    );
  }

  #readIdentity(): boolean {
    const held = this.runtime.store.getMeta(IDENTITY_META);
    if (held === undefined) return false;
    const identity = JSON.parse(Buffer.from(held).toString('utf8')) as { nodeId: string; clusterId: string };
    if (identity.nodeId !== this.settings.nodeId || identity.clusterId !== this.settings.clusterId) {
      throw new Error(
        `this store belongs to node ${JSON.stringify(identity.nodeId)} of cluster ${JSON.stringify(identity.clusterId)}, ` +
          `not to node ${JSON.stringify(this.settings.nodeId)} of cluster ${JSON.stringify(this.settings.clusterId)}: give the right data directory or id`,
      );
    }
    return true;
  }

  async #bootstrap(): Promise<void> {
    if (this.#phase === 'serving') return this.#openPolicies();
    if (this.#phase !== 'starting') return;
    const peers = this.settings.peers.map((p) => p.id);
    const { logger } = this.runtime;
    let lastWait = '';
    const waiting = (why: string) => {
      this.#waitingFor = why;
      if (why !== lastWait) {
        logger.info(`node ${this.settings.nodeId} is waiting: ${why}`, { phase: this.#phase });
        this.runtime.onPhaseChange?.(this.#phase);
      }
      lastWait = why;
    };
    waiting('asking its peers whether the cluster is new');
    let recover = false;
    while (peers.length > 0) {
      const answers = await Promise.all(peers.map((p) => this.replicas.probe(p, PROBE_TIMEOUT_MS).catch(() => undefined)));
      if (this.#closed || this.#phase !== 'starting' || this.#serving !== undefined) return;
      const ready = this.store.getMeta(FORMING_META) !== undefined;
      const silent = peers.filter((_, i) => answers[i] === undefined);
      if (!ready && answers.some((a) => a === 'member')) {
        recover = true;
        break;
      }
      if (ready && answers.every((a) => a === 'ready' || a === 'member')) break;
      if (!ready && answers.every((a) => a === 'new' || a === 'ready')) {
        await this.store.putMeta(FORMING_META, new Uint8Array([1]));
        continue;
      }
      waiting(
        silent.length > 0
          ? `its store is empty and ${silent.join(', ')} ${silent.length === 1 ? 'has' : 'have'} not answered; it cannot tell a new cluster from one it lost its state in until every peer answers`
          : `the cluster is forming; waiting for ${peers.filter((_, i) => answers[i] === 'new').join(', ')} to see every peer`,
      );
      // While forming, every peer is up and answering: look again soon.
      await this.#pause(silent.length > 0 ? RETRY_PAUSE_MS : FORMING_PAUSE_MS);
      if (this.#closed || this.#serving !== undefined) return;
    }
    if (recover && !this.settings.unsafeSkipRecovery) {
      this.#phase = 'recovering';
      this.runtime.onPhaseChange?.('recovering');
      logger.warn(`node ${this.settings.nodeId} has an empty store in a cluster with history: it recovers from its peers before it serves`);
      for (const [name, { policy }] of this.#policies) await this.#recoverKeyspace(name, policy, waiting);
      if (this.#closed) return;
    }
    await this.#serve(recover && !this.settings.unsafeSkipRecovery ? 'recovered' : 'formed');
  }

  /**
   * Writes the node's identity and starts serving; once only, however many paths lead here (the
   * bootstrap loop, or a peer's call showing that the cluster has formed).
   */
  #serve(how: 'formed' | 'recovered'): Promise<void> {
    this.#serving ??= (async () => {
      if (how === 'recovered') await this.store.putMeta(RAFT_NO_VOTE_META, new Uint8Array([1]));
      await this.#openPolicies();
      await this.store.putMeta(IDENTITY_META, identityRecord(this.settings.nodeId, this.settings.clusterId));
      if (this.#closed || (this.#phase as NodePhase) === 'failed') return;
      this.#phase = 'serving';
      this.#waitingFor = '';
      this.runtime.onPhaseChange?.('serving');
      this.#wakeServeWaiters(true);
      this.runtime.logger.info(how === 'recovered' ? `node ${this.settings.nodeId} recovered and serves` : `node ${this.settings.nodeId} formed a new cluster and serves`);
    })();
    return this.#serving;
  }

  /**
   * A peer's replica call reached a node that is still forming: only a serving node sends one, and
   * a peer serves only once it saw this node ready, so the cluster has formed: serve now rather
   * than refuse the call and fail the peer's first requests.
   */
  async #joinIfFormed(): Promise<void> {
    if (this.#phase === 'starting' && this.store.getMeta(FORMING_META) !== undefined) await this.#serve('formed');
  }

  /**
   * Copies a keyspace's state from enough serving peers that every write acknowledged before the
   * loss is among what was copied: any majority of the cluster that acknowledged a write, less
   * this node, meets any n − majority + 1 of the others (n = 3: both of them). The causal policy
   * needs every other replica (each origin's own log is the only place its truncated writes were).
   */
  async #recoverKeyspace(name: string, policy: KeyspacePolicy, waiting: (why: string) => void): Promise<void> {
    const peers = this.settings.peers.map((p) => p.id);
    const n = peers.length + 1;
    if (policy.recoveryNeeds === 'none') return;
    const needed = policy.recoveryNeeds === 'all' ? peers.length : n - majority(n) + 1;
    const copied = new Set<string>();
    const lastError = new Map<string, string>();
    waiting(`keyspace ${name} is copying the state of ${needed} of its peers (${peers.join(', ')})`);
    while (copied.size < needed) {
      for (const peer of peers) {
        if (copied.has(peer) || this.#closed) continue;
        try {
          let afterKey: Uint8Array | undefined;
          for (;;) {
            const page = await this.replicas.snapshot(peer, name, afterKey, this.settings.maxBatchEntries, SNAPSHOT_TIMEOUT_MS);
            for (const entry of page.entries) this.clock.update(entry.version.hlc);
            await policy.absorb(page);
            if (!page.more || page.entries.length === 0) break;
            afterKey = page.entries[page.entries.length - 1]!.key;
          }
          copied.add(peer);
        } catch (error) {
          // Not serving, unreachable or failed mid-way: another round asks again (pages are idempotent).
          lastError.set(peer, describeError(error).slice(0, 200));
        }
      }
      if (this.#closed || this.#phase === 'failed') return;
      if (copied.size < needed) {
        const missing = peers.filter((p) => !copied.has(p));
        const why = missing.map((p) => (lastError.has(p) ? `${p}: ${lastError.get(p)}` : p)).join('; ');
        waiting(`keyspace ${name} has copied the state of ${copied.size} of the ${needed} peers it needs; waiting for ${why}`);
        await this.#pause(RETRY_PAUSE_MS);
      }
    }
  }

  /** Opens what keyspaces load before serving (CP keyspaces' Raft logs); once. */
  #openPolicies(): Promise<void> {
    this.#opened ??= (async () => {
      const amnesiac = this.store.getMeta(RAFT_NO_VOTE_META) !== undefined;
      for (const { policy } of this.#policies.values()) await policy.open?.({ amnesiac });
    })();
    return this.#opened;
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => this.runtime.scheduler.setTimer(ms, resolve));
  }

  #failStop(error: unknown): void {
    if (this.#phase === 'failed') return;
    this.#phase = 'failed';
    this.runtime.logger.error(`node ${this.settings.nodeId} stops: its store failed (${describeError(error)}); it acknowledges nothing more and must be restarted`, {
      error: describeError(error),
    });
    this.runtime.onPhaseChange?.('failed');
    this.#wakeServeWaiters(false);
    this.runtime.onFatal?.(error);
  }

  #policyOf(keyspace: string): KeyspacePolicy {
    if (this.#closed) throw new ReplikitError('cancelled', 'NODE_CLOSED', `node ${this.settings.nodeId} is shutting down`);
    if (typeof keyspace !== 'string' || keyspace === '') {
      throw invalidArgument('KEYSPACE_MISSING', 'the request names no keyspace');
    }
    const bound = this.#policies.get(keyspace);
    if (bound === undefined) {
      throw notFound(
        'UNKNOWN_KEYSPACE',
        `no keyspace ${JSON.stringify(shorten(keyspace))} on this cluster; it serves ${[...this.#policies.keys()].map((k) => JSON.stringify(k)).join(', ')}`,
        { keyspace: shorten(keyspace) },
      );
    }
    return bound.policy;
  }

  #checkKey(key: Uint8Array): void {
    if (!(key instanceof Uint8Array) || key.byteLength === 0) {
      throw invalidArgument('KEY_EMPTY', 'the key is empty; keys are 1 to ' + this.settings.maxKeyBytes + ' bytes');
    }
    if (key.byteLength > this.settings.maxKeyBytes) {
      throw invalidArgument(
        'KEY_TOO_LARGE',
        `the key is ${key.byteLength} bytes; the limit (maxKeyBytes) is ${this.settings.maxKeyBytes}`,
        { size: String(key.byteLength), limit: String(this.settings.maxKeyBytes) },
      );
    }
  }

  #checkBatch(count: number): void {
    if (count > this.settings.maxBatchEntries) {
      throw invalidArgument(
        'BATCH_TOO_LARGE',
        `the batch has ${count} entries; the limit (maxBatchEntries) is ${this.settings.maxBatchEntries}`,
      );
    }
  }

  #operationOptions(options: CallOptions): OperationOptions {
    const timeoutMs = options.timeoutMs ?? this.settings.requestTimeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw invalidArgument('BAD_TIMEOUT', `timeoutMs must be a positive number of milliseconds, not ${timeoutMs}`);
    }
    if (options.consistency !== undefined && options.consistency !== 'linearizable' && options.consistency !== 'serializable') {
      throw invalidArgument('BAD_CONSISTENCY', `consistency must be linearizable or serializable, not ${String(options.consistency)}`);
    }
    if (options.lease !== undefined && (!Number.isSafeInteger(options.lease) || options.lease < 0)) {
      throw invalidArgument('LEASE_INVALID', `lease must be a lease id (a positive whole number) or 0 for none, not ${options.lease}`, { field: 'lease' });
    }
    return { timeoutMs, sessionToken: options.sessionToken, ack: options.ack, signal: options.signal, consistency: options.consistency, lease: options.lease };
  }
}


function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A caller's text in an error message, cut to a readable length (it may be anything). */
function shorten(text: string, max = 80): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/** Applies {@link NODE_DEFAULTS} to the optional fields. */
export function settle(config: {
  nodeId: string;
  clusterId?: string;
  peers?: readonly PeerConfig[];
  keyspaces: Readonly<Record<string, ConsistencyPolicy>>;
  requestTimeoutMs?: number;
  maxKeyBytes?: number;
  maxValueBytes?: number;
  maxBatchEntries?: number;
  maxBatchBytes?: number;
  maxClockOffsetMs?: number;
  sessionSecret?: string;
  unsafeSkipRecovery?: boolean;
  unsafeIgnoreClockHighWater?: boolean;
}): NodeSettings {
  return {
    nodeId: config.nodeId,
    clusterId: config.clusterId ?? NODE_DEFAULTS.clusterId,
    peers: config.peers ?? [],
    keyspaces: config.keyspaces,
    requestTimeoutMs: config.requestTimeoutMs ?? NODE_DEFAULTS.requestTimeoutMs,
    maxKeyBytes: config.maxKeyBytes ?? NODE_DEFAULTS.maxKeyBytes,
    maxValueBytes: config.maxValueBytes ?? NODE_DEFAULTS.maxValueBytes,
    maxBatchEntries: config.maxBatchEntries ?? NODE_DEFAULTS.maxBatchEntries,
    maxBatchBytes: config.maxBatchBytes ?? NODE_DEFAULTS.maxBatchBytes,
    maxClockOffsetMs: config.maxClockOffsetMs ?? NODE_DEFAULTS.maxClockOffsetMs,
    sessionSecret: config.sessionSecret,
    unsafeSkipRecovery: config.unsafeSkipRecovery,
    unsafeIgnoreClockHighWater: config.unsafeIgnoreClockHighWater,
  };
}
