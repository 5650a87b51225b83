/**
 * The cluster's membership as data: who the members are (ids, addresses, voter or learner) lives
 * in the system keyspace {@link SYSTEM_KEYSPACE}, a CP keyspace every node runs whatever keyspaces
 * it serves. Its Raft group's membership *is* the cluster's: a change is one config entry in its
 * log (one server at a time; see raft/membership.ts for the safety argument), and the entry's
 * context carries the members' addresses, the version and the ids removed before. Every other
 * part of a node follows what that log committed: the transport's connections, heartbeats,
 * ClockSync and quorum tracking, AP and causal replication (learners receive but do not count),
 * and each CP keyspace's own Raft group, whose leader brings the group to the same membership a
 * step at a time through the group's own log (policy/cp/cp-quorum.ts).
 */
import type { Membership } from '../raft/membership.js';

/** The system keyspace: names starting with `_` are never a user's (see config.ts). */
export const SYSTEM_KEYSPACE = '_cluster';

/**
 * Removed ids remembered, so that none comes back under the same id: a node that left may have
 * voted in a term it would vote in again (its old disk gone). 10,000 ids of at most 64 bytes keep
 * the context under a megabyte; past it the oldest are forgotten (a cluster that has removed ten
 * thousand members has other ways to tell old ids from new ones).
 */
export const MAX_REMOVED_IDS = 10_000;

export type MemberRole = 'voter' | 'learner';

export interface ClusterMember {
  readonly id: string;
  readonly address: string;
  readonly role: MemberRole;
}

/** The node-layer half of a membership: what the system keyspace's config entries carry beside the ids. */
export interface MembershipContext {
  /** Changes so far: 0 for the membership the cluster was formed with. */
  readonly version: number;
  /** Every member's address, HOST:PORT. */
  readonly addresses: Readonly<Record<string, string>>;
  /** Ids removed before (see MAX_REMOVED_IDS), oldest first. */
  readonly removed: readonly string[];
}

export interface ClusterMembership extends MembershipContext {
  readonly members: readonly ClusterMember[];
  readonly voters: readonly string[];
  readonly learners: readonly string[];
}

export function encodeContext(context: MembershipContext): string {
  return JSON.stringify({ version: context.version, addresses: context.addresses, removed: context.removed.slice(-MAX_REMOVED_IDS) });
}

/** The context of a system keyspace membership; an empty one (a data keyspace's, or none) reads as version 0 and no addresses. */
export function decodeContext(text: string): MembershipContext {
  if (text === '') return { version: 0, addresses: {}, removed: [] };
  const parsed = JSON.parse(text) as Partial<MembershipContext>;
  return { version: parsed.version ?? 0, addresses: parsed.addresses ?? {}, removed: parsed.removed ?? [] };
}

/** The cluster's membership as a Raft membership of the system keyspace describes it. */
export function clusterMembershipOf(m: Membership): ClusterMembership {
  const context = decodeContext(m.context);
  const member = (id: string, role: MemberRole): ClusterMember => ({ id, address: context.addresses[id] ?? '', role });
  return {
    ...context,
    voters: m.voters,
    learners: m.learners,
    members: [...m.voters.map((id) => member(id, 'voter')), ...m.learners.map((id) => member(id, 'learner'))].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
  };
}
