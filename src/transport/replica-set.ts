import type { ApplyOutcome, Entry } from '../storage/entry.js';

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
  /** The other members' ids, in a fixed order. */
  readonly peerIds: readonly string[];

  /** Offers entries of `keyspace` to `peer`; resolves with one outcome per entry once durable there. */
  replicate(peer: string, keyspace: string, entries: readonly Entry[], timeoutMs: number): Promise<ApplyOutcome[]>;

  /** Reads `peer`'s entries for `keys` (undefined where it holds none). */
  read(peer: string, keyspace: string, keys: readonly Uint8Array[], timeoutMs: number): Promise<(Entry | undefined)[]>;

  /** One anti-entropy exchange: sends this node's bucket digests, gets `peer`'s differing buckets and entries. */
  syncDigests(peer: string, keyspace: string, bucketHashes: readonly bigint[], timeoutMs: number): Promise<DigestAnswer>;
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
  /** The peer could not be reached (connection refused, crashed); the request was likely not delivered. */
  | 'unreachable'
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
}
