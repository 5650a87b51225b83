/**
 * A Raft group's membership: who votes, who only receives (learners), and what the node layer
 * keeps beside them (the members' addresses), opaque to Raft.
 *
 * Membership changes one server at a time (thesis §4.1): every configuration differs from the one
 * before it by at most one voter, so any majority of the old voters and any majority of the new
 * ones share a server, and the two can never decide differently. A configuration takes effect on
 * every server as soon as its entry is in that server's log, committed or not; the leader proposes
 * a change only once the previous one is committed and once it has committed an entry of its own
 * term (the fix Ongaro posted to raft-dev in 2015: without it, a change proposed by a new leader
 * can overlap an uncommitted one of its predecessor's). Joint consensus is not needed for these
 * single steps, and the node layer never asks for more than one at a time.
 *
 * Config entries carry the whole new membership (not a delta): a follower that receives one
 * knows the configuration from that entry alone, and a truncated suffix falls back to the
 * previous entry's.
 */
import type { RaftNodeId, SnapshotMeta } from './types.js';

export interface Membership {
  /** Who votes and whose copies count toward commitment and leadership. Never empty. */
  readonly voters: readonly RaftNodeId[];
  /** Who receives every entry but neither votes nor counts: new members catching up. */
  readonly learners: readonly RaftNodeId[];
  /** The node layer's data about the members (their addresses), opaque to Raft. */
  readonly context: string;
}

/** One step from one membership to the next. */
export type MembershipChange =
  /** A new member joins as a learner. */
  | { readonly type: 'addLearner'; readonly id: RaftNodeId }
  /** A learner becomes a voter (only once it has caught up). */
  | { readonly type: 'promote'; readonly id: RaftNodeId }
  /** A voter or a learner leaves. */
  | { readonly type: 'remove'; readonly id: RaftNodeId };

export function isVoter(m: Membership, id: RaftNodeId): boolean {
  return m.voters.includes(id);
}

export function isMember(m: Membership, id: RaftNodeId): boolean {
  return m.voters.includes(id) || m.learners.includes(id);
}

/**
 * The membership after `change`, or the reason it is not one valid single step. `context` is
 * the node layer's new data (the caller's; Raft keeps it as given).
 */
export function applyChange(m: Membership, change: MembershipChange, context: string): Membership | string {
  const { id } = change;
  switch (change.type) {
    case 'addLearner':
      if (isMember(m, id)) return `${id} is already a ${isVoter(m, id) ? 'voter' : 'learner'}`;
      return { voters: m.voters, learners: [...m.learners, id], context };
    case 'promote':
      if (isVoter(m, id)) return `${id} is already a voter`;
      if (!m.learners.includes(id)) return `${id} is not a member (add it as a learner first)`;
      return { voters: [...m.voters, id], learners: m.learners.filter((l) => l !== id), context };
    case 'remove':
      if (!isMember(m, id)) return `${id} is not a member`;
      if (m.voters.length === 1 && m.voters[0] === id) return `${id} is the last voter: a group needs at least one`;
      return { voters: m.voters.filter((v) => v !== id), learners: m.learners.filter((l) => l !== id), context };
  }
}

/**
 * A config entry's data: JSON of `{ voters, learners, context }`. Membership changes are rare and
 * small, and JSON keeps a dumped log readable by people and by other languages.
 */
export function encodeMembership(m: Membership): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ voters: m.voters, learners: m.learners, context: m.context }));
}

/** The membership in a config entry's data; throws a RangeError naming what is wrong. */
export function decodeMembership(data: Uint8Array): Membership {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (error) {
    throw new RangeError(`a config entry is not JSON: ${(error as Error).message}`);
  }
  const p = parsed as { voters?: unknown; learners?: unknown; context?: unknown };
  const ids = (v: unknown, what: string): RaftNodeId[] => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x.length > 0)) throw new RangeError(`a config entry's ${what} must be a list of node ids`);
    return v as RaftNodeId[];
  };
  const voters = ids(p.voters, 'voters');
  const learners = ids(p.learners ?? [], 'learners');
  if (voters.length === 0) throw new RangeError("a config entry's voters must not be empty");
  const all = [...voters, ...learners];
  if (new Set(all).size !== all.length) throw new RangeError(`a config entry names a member twice: ${all.join(', ')}`);
  if (p.context !== undefined && typeof p.context !== 'string') throw new RangeError("a config entry's context must be a string");
  return { voters, learners, context: (p.context as string | undefined) ?? '' };
}

/**
 * A snapshot's meta for `membership` as of `index`: learners and context only when there are
 * any, so that a group that never changed its membership stores and sends what it always did.
 */
export function snapshotMeta(index: number, term: number, membership: Membership): SnapshotMeta {
  return {
    index,
    term,
    voters: membership.voters,
    ...(membership.learners.length > 0 ? { learners: membership.learners } : {}),
    ...(membership.context !== '' ? { context: membership.context } : {}),
  };
}

/** The membership a snapshot's meta records. */
export function membershipOf(meta: SnapshotMeta): Membership {
  return { voters: meta.voters, learners: meta.learners ?? [], context: meta.context ?? '' };
}

export function sameMembers(a: Membership, b: Membership): boolean {
  const key = (m: Membership) => `${[...m.voters].sort().join(',')}|${[...m.learners].sort().join(',')}`;
  return key(a) === key(b);
}
