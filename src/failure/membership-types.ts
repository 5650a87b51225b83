import type { QuorumState } from './quorum.js';

/**
 * The failure detector's verdict on a peer (the proto's `MemberState` without its prefix):
 * - `ALIVE`: heard from recently enough (phi below the threshold, no failed call since);
 * - `SUSPECT`: phi reached the threshold, or a call failed with no sign of life while it ran;
 *   not counted alive for quorums; a beat or a successful call makes it ALIVE again;
 * - `DEAD`: suspected for `deadAfterMs` without a sign of life, or never heard from.
 */
export type MemberState = 'ALIVE' | 'SUSPECT' | 'DEAD';

/** Why a member changed state, for logs and metrics. */
export type MemberStateCause =
  /** A beat arrived from a SUSPECT or DEAD peer (or the first beat ever). */
  | 'heartbeat'
  /** A beat carried a higher incarnation than known: the peer restarted; its statistics were reset. */
  | 'new-incarnation'
  /** A call to or from the peer succeeded (passive evidence of life). */
  | 'call-succeeded'
  /** phi reached the threshold. */
  | 'phi'
  /** A call to or from the peer failed, and nothing was heard from it while the call ran. */
  | 'call-failed'
  /** The peer stayed SUSPECT for `deadAfterMs`. */
  | 'confirmed';

/** Payload of `member-state`: one peer changed state. */
export interface MemberStateChange {
  readonly peer: string;
  readonly from: MemberState;
  readonly to: MemberState;
  readonly cause: MemberStateCause;
  /** phi at `atMs`, after the change. */
  readonly phi: number;
  /** The peer's incarnation as known after the change; undefined if it never sent a beat. */
  readonly incarnation: number | undefined;
  /** When the change happened, in the caller's monotonic milliseconds. */
  readonly atMs: number;
}

/** Payload of `clock-offset-exceeded` and `clock-offset-ok`: a peer's clock flag changed. */
export interface ClockOffsetChange {
  readonly peer: string;
  /** The offset of the best (lowest-RTT) recent sample: the peer's wall clock minus ours, in ms. */
  readonly offsetMs: number;
  /** That sample's round trip, in milliseconds. */
  readonly rttMs: number;
  /** The configured bound, in milliseconds. */
  readonly maxClockOffsetMs: number;
  readonly atMs: number;
}

/** Payload of `quorum-lost` and `quorum-regained`: a tracked group's quorum state changed. */
export interface QuorumChange {
  /** The name given to `trackQuorum` (a keyspace, or a replica group). */
  readonly name: string;
  readonly from: QuorumState;
  readonly to: QuorumState;
  /** Replicas ALIVE after the change, this node included. */
  readonly aliveCount: number;
  readonly quorumSize: number;
  readonly replicaCount: number;
  readonly atMs: number;
}

/**
 * The events a `MembershipView` emits, by name. `quorum-lost` fires when a group becomes
 * `unreachable`, `quorum-regained` when it becomes `reachable` (also the first time, leaving
 * `pending` at startup; `from` tells). Leaving `reachable` for `pending`, possible only during the
 * startup grace period, fires neither.
 */
export interface MembershipEvents {
  'member-state': MemberStateChange;
  'clock-offset-exceeded': ClockOffsetChange;
  'clock-offset-ok': ClockOffsetChange;
  'quorum-lost': QuorumChange;
  'quorum-regained': QuorumChange;
}

/** One member as this node sees it; the fields of the proto's `Member`. */
export interface MemberSnapshot {
  readonly id: string;
  readonly address: string;
  /** True for this node itself, which is always ALIVE with phi 0. */
  readonly self: boolean;
  readonly state: MemberState;
  readonly phi: number;
  /** Milliseconds since the last beat or successful call; undefined if none ever arrived. */
  readonly lastHeardAgeMs: number | undefined;
  /** The round trip of the best recent ClockSync sample; undefined before the first. */
  readonly rttMs: number | undefined;
  /** The peer's wall clock minus ours from that sample; undefined before the first. */
  readonly clockOffsetMs: number | undefined;
  readonly clockOffsetExceeded: boolean;
  /** The incarnation from the peer's latest accepted beat; undefined before the first. */
  readonly incarnation: number | undefined;
}

/** A tracked group's quorum as of the latest input; the fields of the proto's `KeyspaceStatus`. */
export interface QuorumStatus {
  readonly name: string;
  readonly replicaIds: readonly string[];
  readonly replicaCount: number;
  readonly quorumSize: number;
  /** Replicas ALIVE, this node included when it is a replica. */
  readonly aliveCount: number;
  /** Replicas never heard from while the startup grace period lasts. */
  readonly pendingCount: number;
  readonly state: QuorumState;
}

/** What `recordHeartbeat` did with a beat. */
export type HeartbeatOutcome =
  /** A beat of the known incarnation: recorded. */
  | 'accepted'
  /** The first beat, or one of a higher incarnation: the detector was reset, then the beat recorded. */
  | 'new-incarnation'
  /** A beat of a lower incarnation than known, from a previous life of the peer: ignored. */
  | 'stale';
