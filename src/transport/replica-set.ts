import type { CompactResult } from '../policy/policy.js';
import type { VectorClock } from '../clock/index.js';
import type { LeaseAnswer, LeaseCall } from '../gen/replikit/v1/replica_service.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import type { TxnRequest, TxnResponse } from '../gen/replikit/v1/kv_service.js';
import type { RaftMessage } from '../raft/types.js';

/**
 * Where a node stands, as it tells a peer that probes it: `new` (an empty store, not yet part of
 * a cluster), `ready` (new, and it has seen every peer new too, so the cluster is forming), or
 * `member` (it belongs to a cluster with history: serving, recovering, or stopped on a failure).
 */
export type ProbeAnswer = 'new' | 'ready' | 'member';

/** One page of a replica's state for a peer that lost its own (see NodeCore's recovery). */
export interface SnapshotPage {
  /** Entries in byte-wise key order, tombstones included. */
  readonly entries: Entry[];
  /** True when entries past the last one remain: ask again after it. */
  readonly more: boolean;
  /** Causal keyspaces: what the replica had applied, per origin, when the page was taken. */
  readonly applied?: VectorClock;
}

/**
 * The peers of one node, as the policies see them: reliable request/response calls with a timeout.
 * Implemented over gRPC (grpc-replica-set.ts) and in memory with virtual time and injected faults
 * (in-memory-network.ts); the policies run unchanged on both.
 *
 * Every call either resolves with the peer's answer or rejects with a {@link PeerCallError}.
 * A rejection does not mean the peer did nothing: a `replicate` that timed out may have been
 * applied. Calls to one peer may be reordered, duplicated by the network or lost; the replica
 * protocol is idempotent and order-free so that none of that matters.
 */
export interface ReplicaSet {
  /** This node's id. */
  readonly selfId: string;
  /** The other members' ids, in a fixed order (until the membership changes: see setPeers). */
  readonly peerIds: readonly string[];

  /**
   * The membership changed: reach exactly these peers from now on. A new peer (or one at a new
   * address) gets a new connection; a peer no longer listed loses its connection, and its calls
   * in flight fail as unreachable.
   */
  setPeers?(peers: readonly { readonly id: string; readonly address: string }[]): void;

  /** Offers entries of `keyspace` to `peer`; resolves with one outcome per entry once durable there. */
  replicate(peer: string, keyspace: string, entries: readonly Entry[], timeoutMs: number): Promise<ApplyOutcome[]>;

  /** Reads `peer`'s entries for `keys` (undefined where it holds none). */
  read(peer: string, keyspace: string, keys: readonly Uint8Array[], timeoutMs: number): Promise<(Entry | undefined)[]>;

  /** One anti-entropy exchange: sends this node's bucket digests, gets `peer`'s differing buckets and entries. */
  syncDigests(peer: string, keyspace: string, bucketHashes: readonly bigint[], timeoutMs: number): Promise<DigestAnswer>;

  /** Asks `peer` where it stands (a node with an empty store asks, to tell a new cluster from a rejoin). */
  probe(peer: string, timeoutMs: number): Promise<ProbeAnswer>;

  /** Asks `peer` how far it has caught up (the same Probe call; see MemberProgress). */
  progress?(peer: string, timeoutMs: number): Promise<MemberProgress>;

  /** Copies a page of `peer`'s entries of `keyspace` after `afterKey` (from the start when undefined). */
  snapshot(peer: string, keyspace: string, afterKey: Uint8Array | undefined, maxEntries: number, timeoutMs: number): Promise<SnapshotPage>;

  /**
   * Raft messages of a CP keyspace's group to `peer`, one way: resolves once the peer took them
   * in. Raft resends whatever matters, so a caller may ignore failures. Absent on transports that
   * carry no Raft (the unary one).
   */
  raft?(peer: string, keyspace: string, messages: readonly RaftMessage[], timeoutMs: number): Promise<void>;

  /**
   * A client's transaction, to the leader `peer` of its CP keyspace. Rejects with the leader's
   * ReplikitError when it answered with one, or a PeerCallError when the call itself failed.
   */
  forward?(peer: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse>;

  /** A client's Compact, to the leader `peer` of its CP keyspace; rejects as `forward` does. */
  forwardCompact?(peer: string, keyspace: string, revision: number, timeoutMs: number): Promise<CompactResult>;

  /** A client's lease call, to the leader `peer` of its CP keyspace; rejects as `forward` does. */
  forwardLease?(peer: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer>;

  /**
   * False when the connection to `peer` broke and has not come back (a refused or dropped
   * connection: the peer's process is gone, as far as the network can tell), true when it is up,
   * undefined when the transport cannot tell (never connected yet). Faster than the failure
   * detector, which needs missed heartbeats; a partition that silently drops packets is the
   * detector's to find.
   */
  isConnected?(peer: string): boolean | undefined;
}

/** How far a member has caught up: before a learner is promoted, the leader asks it. */
export interface MemberProgress {
  /** It serves: its AP and causal keyspaces hold the state it copied from its peers. */
  readonly serving: boolean;
  /** The highest index it applied, per CP keyspace (the system keyspace included). */
  readonly applied: Readonly<Record<string, number>>;
}

/** A replica's answer to a digest exchange. */
export interface DigestAnswer {
  /** Buckets whose hashes differ, ascending. */
  readonly differingBuckets: number[];
  /** The answering replica's entries in those buckets (possibly truncated). */
  readonly entries: Entry[];
  readonly truncated: boolean;
}

/** Why a call to a peer failed. */
export type PeerFailure =
  /** The peer could not be reached (connection refused, not running): the request was not delivered. */
  | 'unreachable'
  /** The connection broke while the call was in flight: the request may have been delivered. */
  | 'lost'
  /** No answer within the timeout; the request may or may not have been applied. */
  | 'timeout'
  /** The peer answered with an error (its message is kept). */
  | 'rejected';

export class PeerCallError extends Error {
  override readonly name = 'PeerCallError';
  constructor(
    readonly peer: string,
    readonly failure: PeerFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${peer}: ${message}`, options);
  }
}

/**
 * The replica half of a node, which a transport's server side calls when a peer's request
 * arrives. Errors it throws are ReplikitErrors, mapped to gRPC statuses by the transport.
 */
export interface ReplicaHandler {
  replicate(from: string, keyspace: string, entries: readonly Entry[]): Promise<ApplyOutcome[]>;
  read(from: string, keyspace: string, keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]>;
  syncDigests(from: string, keyspace: string, bucketHashes: readonly bigint[]): Promise<DigestAnswer>;
  probe(from: string): Promise<ProbeAnswer>;
  progress?(from: string): Promise<MemberProgress>;
  snapshot(from: string, keyspace: string, afterKey: Uint8Array | undefined, maxEntries: number): Promise<SnapshotPage>;
  raft(from: string, keyspace: string, messages: readonly RaftMessage[]): Promise<void>;
  forward(from: string, request: TxnRequest, timeoutMs: number): Promise<TxnResponse>;
  forwardCompact(from: string, keyspace: string, revision: number, timeoutMs: number): Promise<CompactResult>;
  forwardLease(from: string, call: LeaseCall, timeoutMs: number): Promise<LeaseAnswer>;
}
