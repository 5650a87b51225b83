import type { HybridLogicalClock, Scheduler } from '../clock/index.js';
import type { Logger } from '../logging/logger.js';
import type { LeaseAnswer, LeaseCall } from '../gen/replikit/v1/replica_service.js';
import type { ApplyOutcome, Entry, Version } from '../storage/entry.js';
import type { Store } from '../storage/store.js';
import type { DigestAnswer, ReplicaSet, SnapshotPage } from '../transport/replica-set.js';
import type { TxnRequest, TxnResponse } from '../gen/replikit/v1/kv_service.js';
import type { RaftMessage } from '../raft/types.js';
import type { Membership } from '../raft/membership.js';
import type { RaftLogStore } from '../storage/raft-log-store.js';
import type { RaftGroupStatus } from './cp/raft-group.js';
import type { SessionCodec } from '../transport/session-token.js';
import type { StoredKey } from './cp/kv-state-machine.js';
import type { KeyRange } from './watch/key-range.js';
import type { RangeQuery } from './watch/range-page.js';
import type { Watcher } from './watch/watch-hub.js';

export type { RangeQuery } from './watch/range-page.js';

/** The policy names used in config, on the CLI and in Status. */
export type PolicyName = 'cp' | 'ap' | 'causal';

/** How many replicas must hold a write before it is acknowledged (AP keyspaces). */
export type AckLevel = 'one' | 'quorum' | 'all';

/** Tells a policy which replicas the failure detector currently believes alive. */
export interface LivenessOracle {
  /** True when `nodeId` (a peer) is believed alive; the local node is always alive. */
  isAlive(nodeId: string): boolean;
}

/** Everything a keyspace's policy needs, injected: no policy reads a clock or opens a socket. */
export interface PolicyContext {
  readonly keyspace: string;
  readonly selfId: string;
  /** Every replica of the keyspace, self included. */
  readonly replicaIds: readonly string[];
  readonly store: Store;
  readonly replicas: ReplicaSet;
  readonly clock: HybridLogicalClock;
  readonly scheduler: Scheduler;
  readonly liveness: LivenessOracle;
  readonly logger: Logger;
  /** Session tokens of this cluster (causal keyspaces issue and check them). */
  readonly sessions: SessionCodec;
  /** What one batch to a peer may carry (see NODE_DEFAULTS.maxBatchBytes). */
  readonly limits: BatchLimits;
  /** The largest key and value a client may write (for validating transactions). */
  readonly valueLimits: { readonly maxKeyBytes: number; readonly maxValueBytes: number };
  /** CP keyspaces: the durable home of the keyspace's Raft log (one per keyspace and node). */
  readonly raftLog?: () => RaftLogStore;
  /** Seeded in the simulation; Math.random otherwise (Raft's election timeouts). */
  readonly random: () => number;
  /** The keyspace's durable state failed: the node stops (fail-stop). */
  readonly onFatal: (error: unknown) => void;
  /**
   * CP keyspaces: this node joins a running cluster with an empty store, so its Raft group starts
   * knowing no membership and learns it from the leader (instead of bootstrapping `replicaIds`).
   */
  readonly joining?: boolean;
  /** CP keyspaces: the first membership's node-layer data (the system keyspace keeps addresses there). */
  readonly membershipContext?: string;
  /** CP keyspaces: hears the group's membership, in effect and committed, whenever either changes. */
  readonly onMembership?: (inEffect: Membership, committed: Membership) => void;
}

/** What one batch to a peer may carry: entries and bytes (one larger entry travels alone). */
export interface BatchLimits {
  readonly maxBatchEntries: number;
  readonly maxBatchBytes: number;
}

export interface OperationOptions {
  /** Milliseconds the operation may take before it fails; the node's default when absent. */
  readonly timeoutMs: number;
  /** The causal context from an earlier response (causal keyspaces); empty elsewhere. */
  readonly sessionToken?: Uint8Array;
  /** AP keyspaces: how many replicas must hold the write before it is acknowledged. */
  readonly ack?: AckLevel;
  /** Aborted when the caller gives up: a policy's waits (a session catch-up) end at once. */
  readonly signal?: AbortSignal;
  /**
   * CP keyspaces: `serializable` answers a read from the local replica at once (possibly stale);
   * `linearizable` (the default) sees every write acknowledged before the read began.
   */
  readonly consistency?: 'linearizable' | 'serializable';
  /** CP keyspaces: the lease a put attaches its key to (0 or absent: none). */
  readonly lease?: number;
}

export interface WriteResult {
  readonly version: Version;
  readonly sessionToken: Uint8Array;
  /** CP keyspaces: the keyspace's revision after the write. */
  readonly revision?: number;
}

/** What a CP keyspace says about a key and the read itself. */
export interface CpReadMeta {
  /** The keyspace's revision the read saw. */
  readonly revision: number;
  /** When found: the revision that created the key, that of its last write, writes since created. */
  readonly createRevision: number;
  readonly modRevision: number;
  readonly keyVersion: number;
  /** A serializable read: answered without confirming the replica is current. */
  readonly possiblyStale: boolean;
}

export interface ReadResult {
  /** The live entry, or undefined when the key was never written or was deleted. */
  readonly value: Uint8Array | undefined;
  /** The version read (of the value or the tombstone); undefined when never written. */
  readonly version: Version | undefined;
  readonly sessionToken: Uint8Array;
  /** CP keyspaces only. */
  readonly cp?: CpReadMeta;
}

/** What a Range answers. */
export interface RangeResult {
  /** The page's keys, in the order asked for (values empty when `keysOnly`; none when `countOnly`). */
  readonly kvs: readonly StoredKey[];
  /** Keys in the whole range at the revision read. */
  readonly count: number;
  /** Keys remain after this page. */
  readonly more: boolean;
  /** CP keyspaces: the revision read at. 0 elsewhere. */
  readonly revision: number;
  readonly sessionToken: Uint8Array;
  /** Answered from a replica without confirming it is current. */
  readonly possiblyStale: boolean;
}

/** What a Watch asks for. */
export interface WatchRequestSpec {
  readonly range: KeyRange;
  /** CP: the first revision to deliver; AP and causal: a feed position. 0: from now. */
  readonly startRevision: number;
  readonly prevKv: boolean;
  /** Progress notifications while idle (already defaulted and checked by the node). */
  readonly progressIntervalMs: number;
}

/** What a Compact answers. */
export interface CompactResult {
  readonly compactRevision: number;
  readonly revision: number;
}

/** One keyspace bound to a policy: the coordinator half and the replica half. */
export interface KeyspacePolicy {
  /** Coordinator: serves a client's put. */
  put(key: Uint8Array, value: Uint8Array, options: OperationOptions): Promise<WriteResult>;
  /** Coordinator: serves a client's delete (a versioned tombstone). */
  delete(key: Uint8Array, options: OperationOptions): Promise<WriteResult>;
  /** Coordinator: serves a client's get. */
  get(key: Uint8Array, options: OperationOptions): Promise<ReadResult>;
  /** Replica: applies a peer's Replicate. */
  applyReplicated(from: string, entries: readonly Entry[]): Promise<ApplyOutcome[]>;
  /** Replica: answers a peer's Read. */
  readLocal(from: string, keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]>;
  /**
   * Replica: a page of this replica's state, entries after `afterKey` in key order, for a peer
   * that lost its own. Read-only.
   */
  snapshot(afterKey: Uint8Array | undefined, maxEntries: number, from: string): Promise<SnapshotPage>;
  /**
   * Recovery: takes in a page of a serving peer's state (idempotent; pages of several peers may
   * arrive in any order). Resolves once what it took in is durable.
   */
  absorb(page: SnapshotPage): Promise<void>;
  /**
   * Which peers a replica that lost its state must copy before it serves: enough that any
   * majority meets them (`majority`), or every other replica (`all`).
   */
  readonly recoveryNeeds: 'majority' | 'all' | 'none';
  /**
   * Called once the node knows how it starts, before it serves: `amnesiac` when its disk was lost
   * in a cluster with history (a CP keyspace then never votes again; see docs/failure-model.md).
   */
  open?(how: { readonly amnesiac: boolean }): Promise<void>;
  /** Coordinator: a client's Range (see RangeQuery; the node validated it). */
  range?(query: RangeQuery, options: OperationOptions): Promise<RangeResult>;
  /**
   * Coordinator: starts a watch on this node (the node validated the request). The watcher is an
   * async iterator of messages; it throws when the watch fails (see watch/watch-hub.ts).
   */
  watch?(request: WatchRequestSpec, options: OperationOptions): Promise<Watcher>;
  /** Coordinator: compacts a CP keyspace's history through `revision`. */
  compact?(revision: number, options: OperationOptions): Promise<CompactResult>;
  /** Leader: a Compact a follower forwarded (CP keyspaces). */
  forwardedCompact?(from: string, revision: number, timeoutMs: number): Promise<CompactResult>;
  /** Coordinator: a client's transaction (CP keyspaces). */
  txn?(request: TxnRequest, options: OperationOptions): Promise<TxnResponse>;
  /** Replica: Raft messages from a peer (CP keyspaces). */
  raftMessages?(from: string, messages: readonly RaftMessage[]): void;
  /** Coordinator: a lease operation (CP keyspaces; see LeaseService). */
  leaseCall?(call: LeaseCall, options: OperationOptions): Promise<LeaseAnswer>;
  /** Leader: a lease operation a follower forwarded (CP keyspaces). */
  forwardedLease?(from: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer>;
  /** Leader: a transaction a follower forwarded (CP keyspaces). */
  forwarded?(from: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse>;
  /** CP keyspaces: the Raft group as this node sees it, for Status and metrics. */
  raftStatus?(): RaftGroupStatus | undefined;
  /** Replica: one anti-entropy exchange (AP keyspaces only). */
  syncDigests?(from: string, bucketHashes: readonly bigint[], maxEntries: number): Promise<DigestAnswer>;
  /**
   * The cluster's membership changed (a member added, promoted or removed; see
   * node/cluster-membership.ts). `voters` and `learners` include this node when it is one. A
   * learner receives every write and every repair but counts toward no acknowledgement, quorum or
   * recovery; a member no longer listed is dropped (its hints, streams and buffers with it).
   * Called with the membership committed in the cluster's log, in order; the first call may repeat
   * what `PolicyContext.replicaIds` said.
   */
  membershipChanged?(members: MemberSet): void;
  /** Stops background work; in-flight operations finish or fail. */
  close(options?: { readonly abrupt?: boolean }): Promise<void>;
}

/** Who replicates a keyspace (see KeyspacePolicy.membershipChanged). */
export interface MemberSet {
  /** Replicas whose copies count: toward acknowledgements, quorums and recovery. */
  readonly voters: readonly string[];
  /** Replicas that receive everything and count toward nothing yet (new members catching up). */
  readonly learners: readonly string[];
}

/** A consistency policy: a factory of keyspace policies, as bound in the node's config. */
export interface ConsistencyPolicy {
  readonly name: PolicyName;
  create(context: PolicyContext): KeyspacePolicy;
}
