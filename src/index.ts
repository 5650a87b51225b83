/**
 * replikit: a replication framework for Node.js services over gRPC. Embed a {@link ReplicaNode},
 * name its peers, bind each keyspace to a consistency policy, and use `node.keyspace(name)`.
 *
 * Subpaths: `replikit/interceptors` (clock and identity interceptors for your own gRPC services),
 * `replikit/clock` (HLC, vector and Lamport clocks), `replikit/testing` (history recorder,
 * linearizability and causal checkers).
 */
export { ReplicaNode, type ListenOptions } from './node/replica-node.js';
export { NODE_DEFAULTS, ConfigError, validateNodeConfig, type PeerConfig, type ReplicaNodeConfig } from './node/config.js';
export { KeyspaceHandle, Session, type Bytes, type GetResult } from './node/keyspace-handle.js';
export { Leases, NodeLock, NodeElection, DEFAULT_SESSION_TTL_MS, type HeldLock, type Leadership, type LeaseInfo, type CoordinationOptions } from './coordination/embedded.js';
export { KeptLease } from './coordination/keep-alive.js';
export type { LeaderKey, LeaderChange } from './coordination/election.js';
export type { CallOptions } from './node/node-core.js';
export {
  cpQuorum,
  apAsync,
  causal,
  AP_DEFAULTS,
  CAUSAL_DEFAULTS,
  policyByName,
  type ApAsyncOptions,
  type ApStats,
  type CausalOptions,
  type CausalStats,
  type ConsistencyPolicy,
  type CpQuorumOptions,
  type MergeFunction,
  type PolicyName,
  type ReadResult,
  type WriteResult,
} from './policy/index.js';
export type { Store, ConflictResolver } from './storage/store.js';
export { MemoryStore } from './storage/memory-store.js';
export { LmdbStore } from './storage/lmdb-store.js';
export type { Entry, Version } from './storage/entry.js';
export { ReplikitError, toReplikitError, type ErrorKind } from './errors.js';
export { lanProfile, wanProfile, localProfile, type FailureDetectorConfig, type MemberSnapshot } from './failure/index.js';
export { createConsoleJsonLogger, silentLogger, type Logger } from './logging/logger.js';
export { createPinoLogger, type PinoLoggerOptions } from './logging/pino-logger.js';
export {
  NodeHealth,
  NodeMetrics,
  keyspaceHealthName,
  startMetricsEndpoint,
  addReflection,
  readTlsFiles,
  serverCredentialsOf,
  channelCredentialsOf,
  TlsConfigError,
  type MetricsEndpoint,
  type TlsFiles,
  type TlsMaterial,
} from './ops/index.js';
export {
  ReplikitClient,
  RemoteKeyspace,
  RemoteWatch,
  WatchError,
  CLIENT_DEFAULTS,
  type ReplikitClientOptions,
  type RemoteWatchOptions,
  type RemoteGetResult,
  type PutResult,
  type ResumeInfo,
  type KeyValue,
  type RangeOptions,
  type RangeResult,
  type WatchEvent,
  type WatchItem,
  type WatchOptions,
  type WatchStream,
  RemoteLeases,
  RemoteLock,
  RemoteElection,
  type RemoteCoordinationOptions,
  type RemoteKeepAliveOptions,
  type RemoteLeaseInfo,
  type RemoteHeldLock,
  type RemoteLeaderKey,
  type RemoteLeadership,
  type ElectionLeader,
  type ElectionChange,
} from './client/index.js';
// Client authorization (serve --authz; docs/security.md).
export { Authorizer, authorizationServerInterceptor, decide as decideAuthorization, type AuthzRefusal, type AuthorizationInterceptorOptions } from './auth/authorizer.js';
export { AuthzFileError, AuthzRules, MAX_AUTHZ_FILE_BYTES, MAX_GRANTS, parseAuthzRules, type Grant, type Permission } from './auth/authz-rules.js';
export { readAuthzFile, reloadAuthzFile } from './auth/authz-file.js';
