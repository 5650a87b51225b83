import type { ConsistencyPolicy } from '../policy/policy.js';
import type { Store } from '../storage/store.js';
import type { Logger } from '../logging/logger.js';

/** One other member of the cluster. */
export interface PeerConfig {
  /** The peer's node id. */
  readonly id: string;
  /** Where its gRPC server listens, HOST:PORT. */
  readonly address: string;
}

/**
 * The configuration of a {@link ReplicaNode}. Only `nodeId` is required; every other field has a
 * default in {@link NODE_DEFAULTS}, with its reason.
 */
export interface ReplicaNodeConfig {
  /** This node's id: 1 to 64 characters of [A-Za-z0-9._-], unique in the cluster. */
  readonly nodeId: string;
  /**
   * The cluster's id; peers of another cluster are refused.
   * @default 'replikit'
   */
  readonly clusterId?: string;
  /** The other members. A node without peers is a cluster of one. @default [] */
  readonly peers?: readonly PeerConfig[];
  /** Keyspace name → policy. @default { default: cpQuorum() } */
  readonly keyspaces?: Readonly<Record<string, ConsistencyPolicy>>;
  /** The replica's durable state. @default new MemoryStore() */
  readonly store?: Store;
  /** @default silentLogger */
  readonly logger?: Logger;
  /** Client operations' deadline when the caller gives none, in milliseconds. @default 3000 */
  readonly requestTimeoutMs?: number;
  /** The longest key accepted, in bytes. @default 1024 */
  readonly maxKeyBytes?: number;
  /** The longest value accepted, in bytes. @default 1048576 */
  readonly maxValueBytes?: number;
  /** The most entries one Replicate or Read call may carry. @default 1024 */
  readonly maxBatchEntries?: number;
  /**
   * The most bytes of entries one batch carries (Replicate, a Read's answer, AP and causal
   * replication, anti-entropy, hints, snapshots); one entry larger than this travels alone.
   * @default 524288
   */
  readonly maxBatchBytes?: number;
  /** How far a peer's HLC may run ahead of this node's wall clock, in milliseconds. @default 500 */
  readonly maxClockOffsetMs?: number;
  /**
   * The secret that keys session tokens' integrity tags; the same on every node of the cluster.
   * The default is derived from the cluster id: it catches altered tokens, not a determined forger.
   * @default derived from clusterId
   */
  readonly sessionSecret?: string;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: a node whose store is empty serves at
   * once instead of recovering its peers' state first (see NodeSettings.unsafeSkipRecovery).
   * @default false
   */
  readonly unsafeSkipRecovery?: boolean;
  /**
   * This node joins a running cluster with an empty store: it was (or is being) added as a learner
   * (ClusterService.AddMember, `replikit member add`, or `serve --join`, which does both), and
   * `peers` are the cluster's current members. It copies its peers' state before it serves, and
   * learns the membership from the cluster's log. Ignored once the store holds the node's identity.
   * @default false
   */
  readonly join?: boolean;
  /**
   * Whichever node leads the cluster's membership promotes each learner as soon as it has caught
   * up, instead of waiting for `replikit member promote` (`serve --auto-promote`). Give it to
   * every node. @default false
   */
  readonly autoPromote?: boolean;
  /**
   * Where peers reach this node, HOST:PORT, as recorded in the cluster's membership. The bound
   * listen address (`listen` with its real port) by default.
   */
  readonly advertiseAddress?: string;
}

/** The defaults, each with the reason for its value. */
export const NODE_DEFAULTS = {
  /** A name that says what it is; set your own when two clusters share a network. */
  clusterId: 'replikit',
  /**
   * Far above a LAN quorum round trip (about 1 ms) and an fsync, yet short enough that a client
   * stuck behind a partition learns within seconds.
   */
  requestTimeoutMs: 3000,
  /** Keys are identifiers, not data; 1 KiB keeps every key index and message small. */
  maxKeyBytes: 1024,
  /** Bounds the memory one request can pin on every replica; grpc-js's own default cap is 4 MiB. */
  maxValueBytes: 1024 * 1024,
  /** Bounds the work one peer message can ask for; its size in bytes is bounded by maxBatchBytes. */
  maxBatchEntries: 1024,
  /**
   * Half the peer message limit (maxValueBytes + 64 KiB): a batch and its framing always fit in
   * one gRPC message, whose limit would otherwise fail the whole Exchange stream it travels on;
   * batches of small entries are unaffected (1,024 entries of 100 bytes are 150 KiB).
   */
  maxBatchBytes: 512 * 1024,
  /** Matches CockroachDB's default max-offset spirit at LAN scale; beyond it HLC tags drift from real time. */
  maxClockOffsetMs: 500,
} as const;

const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/**
 * Keyspace names start with a letter or digit (names starting with `_` are the store's own: hints,
 * conflicts) and stay within 60 characters, so that `_h.<keyspace>.<peer id>` fits the store's
 * 128-character keyspace names.
 */
const KEYSPACE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$/;
const ADDRESS_PATTERN = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** Thrown by {@link validateNodeConfig}; the message names the field and the offending values. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Checks a config and throws a ConfigError naming the field (and both values, for conflicts). */
export function validateNodeConfig(config: ReplicaNodeConfig): void {
  if (typeof config.nodeId !== 'string' || !ID_PATTERN.test(config.nodeId)) {
    throw new ConfigError(`nodeId must be 1 to 64 characters of [A-Za-z0-9._-], not ${JSON.stringify(config.nodeId)}`);
  }
  const clusterId = config.clusterId ?? NODE_DEFAULTS.clusterId;
  if (!ID_PATTERN.test(clusterId)) {
    throw new ConfigError(`clusterId must be 1 to 64 characters of [A-Za-z0-9._-], not ${JSON.stringify(clusterId)}`);
  }
  const seen = new Set<string>();
  for (const peer of config.peers ?? []) {
    if (!ID_PATTERN.test(peer.id)) {
      throw new ConfigError(`peer id must be 1 to 64 characters of [A-Za-z0-9._-], not ${JSON.stringify(peer.id)}`);
    }
    if (peer.id === config.nodeId) {
      throw new ConfigError(`peer ${JSON.stringify(peer.id)} has this node's own id (nodeId ${JSON.stringify(config.nodeId)}); list only the other members`);
    }
    if (seen.has(peer.id)) throw new ConfigError(`peer ${JSON.stringify(peer.id)} is listed twice`);
    seen.add(peer.id);
    const m = ADDRESS_PATTERN.exec(peer.address);
    if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      throw new ConfigError(`peer ${peer.id}'s address must be HOST:PORT, not ${JSON.stringify(peer.address)}`);
    }
  }
  for (const name of Object.keys(config.keyspaces ?? {})) {
    if (!KEYSPACE_PATTERN.test(name)) {
      throw new ConfigError(`keyspace name must be 1 to 60 characters of [A-Za-z0-9._-] starting with a letter or digit, not ${JSON.stringify(name)}`);
    }
  }
  if (config.keyspaces !== undefined && Object.keys(config.keyspaces).length === 0) {
    throw new ConfigError('keyspaces is empty: bind at least one keyspace to a policy');
  }
  positive('requestTimeoutMs', config.requestTimeoutMs);
  positive('maxKeyBytes', config.maxKeyBytes);
  positive('maxValueBytes', config.maxValueBytes);
  positive('maxBatchEntries', config.maxBatchEntries);
  positive('maxBatchBytes', config.maxBatchBytes);
  positive('maxClockOffsetMs', config.maxClockOffsetMs);
  if ((config.maxKeyBytes ?? NODE_DEFAULTS.maxKeyBytes) > 64 * 1024) {
    throw new ConfigError(`maxKeyBytes (${config.maxKeyBytes}) must be at most 65536`);
  }
}

function positive(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isFinite(value) || value <= 0)) {
    throw new ConfigError(`${name} must be a positive number, not ${value}`);
  }
}

export function isValidKeyspaceName(name: string): boolean {
  return KEYSPACE_PATTERN.test(name);
}
