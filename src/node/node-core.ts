import { HybridLogicalClock, type Scheduler, type WallClock } from '../clock/index.js';
import { failedPrecondition, invalidArgument, notFound, ReplikitError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import type {
  ConsistencyPolicy,
  KeyspacePolicy,
  LivenessOracle,
  OperationOptions,
  PolicyName,
  ReadResult,
  WriteResult,
} from '../policy/policy.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import type { Store } from '../storage/store.js';
import type { DigestAnswer, ReplicaHandler, ReplicaSet } from '../transport/replica-set.js';
import { sessionTokenCodec, type SessionCodec } from '../transport/session-token.js';
import { BatchingReplicaSet } from '../transport/batching-replica-set.js';
import { NODE_DEFAULTS, type PeerConfig } from './config.js';
import { KeyspaceHandle } from './keyspace-handle.js';

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
}

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
  readonly maxClockOffsetMs: number;
  /** Keys the HMAC of session tokens; see sessionTokenCodec. */
  readonly sessionSecret?: string;
}

/** Per-call options of the embedding API. */
export interface CallOptions {
  /** Milliseconds before the call fails; the node's `requestTimeoutMs` when absent. */
  readonly timeoutMs?: number;
  /** The causal context of an earlier response. */
  readonly sessionToken?: Uint8Array;
  /** AP keyspaces: replicas that must hold a write before it is acknowledged. */
  readonly ack?: OperationOptions['ack'];
}

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
  readonly #policies = new Map<string, { name: PolicyName; policy: KeyspacePolicy }>();
  #closed = false;

  constructor(settings: NodeSettings, runtime: NodeRuntime) {
    this.settings = settings;
    this.runtime = runtime;
    this.clock = runtime.clock ?? new HybridLogicalClock(runtime.wallClock);
    this.sessions = sessionTokenCodec(settings.clusterId, settings.sessionSecret);
    const replicaIds = [settings.nodeId, ...settings.peers.map((p) => p.id)];
    // Calls to one peer issued in the same turn travel as one batch (see BatchingReplicaSet).
    this.replicas = new BatchingReplicaSet(runtime.replicas, runtime.scheduler, settings.maxBatchEntries);
    for (const [name, policy] of Object.entries(settings.keyspaces)) {
      this.#policies.set(name, {
        name: policy.name,
        policy: policy.create({
          keyspace: name,
          selfId: settings.nodeId,
          replicaIds,
          store: runtime.store,
          replicas: this.replicas,
          clock: this.clock,
          scheduler: runtime.scheduler,
          liveness: runtime.liveness,
          logger: runtime.logger,
          sessions: this.sessions,
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
    return policy.put(key, value, this.#operationOptions(options));
  }

  async get(keyspace: string, key: Uint8Array, options: CallOptions = {}): Promise<ReadResult> {
    const policy = this.#policyOf(keyspace);
    this.#checkKey(key);
    return policy.get(key, this.#operationOptions(options));
  }

  async delete(keyspace: string, key: Uint8Array, options: CallOptions = {}): Promise<WriteResult> {
    const policy = this.#policyOf(keyspace);
    this.#checkKey(key);
    return policy.delete(key, this.#operationOptions(options));
  }

  // The replica half, called by the transport when a peer's request arrives.

  async replicate(from: string, keyspace: string, entries: readonly Entry[]): Promise<ApplyOutcome[]> {
    const policy = this.#policyOf(keyspace);
    this.#checkBatch(entries.length);
    for (const entry of entries) this.#checkKey(entry.key);
    return policy.applyReplicated(from, entries);
  }

  async read(from: string, keyspace: string, keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]> {
    const policy = this.#policyOf(keyspace);
    this.#checkBatch(keys.length);
    for (const key of keys) this.#checkKey(key);
    return policy.readLocal(from, keys);
  }

  async syncDigests(from: string, keyspace: string, bucketHashes: readonly bigint[]): Promise<DigestAnswer> {
    const policy = this.#policyOf(keyspace);
    if (policy.syncDigests === undefined) {
      throw failedPrecondition('NOT_AP_KEYSPACE', `keyspace ${JSON.stringify(keyspace)} is not an AP keyspace; anti-entropy runs only between AP replicas`);
    }
    return policy.syncDigests(from, bucketHashes, this.settings.maxBatchEntries);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Stops the policies' background work. The store is closed by whoever opened it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#policies.values()].map((p) => p.policy.close()));
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
    return { timeoutMs, sessionToken: options.sessionToken, ack: options.ack };
  }
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
  maxClockOffsetMs?: number;
  sessionSecret?: string;
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
    maxClockOffsetMs: config.maxClockOffsetMs ?? NODE_DEFAULTS.maxClockOffsetMs,
    sessionSecret: config.sessionSecret,
  };
}
