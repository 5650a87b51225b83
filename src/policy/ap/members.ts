import type { MemberSet } from '../policy.js';

/*
 * A keyspace's membership as the AP and causal policies hold it (see
 * KeyspacePolicy.membershipChanged). Pure. Shared by both policies; it would sit better in
 * src/policy/ beside policy.ts, which this change may not touch.
 */

/** A membership as two disjoint sets, checked: at least one voter, nobody listed twice. */
export interface Members {
  readonly voters: ReadonlySet<string>;
  readonly learners: ReadonlySet<string>;
}

/**
 * Checks `members` and returns it as sets. A membership without voters, or with an id listed twice
 * (as voter and learner, or twice in one list), is a programmer error of the caller: it throws.
 */
export function checkedMembers(members: MemberSet): Members {
  const voters = new Set(members.voters);
  const learners = new Set(members.learners);
  if (voters.size === 0) throw new RangeError('a membership needs at least one voter');
  if (voters.size !== members.voters.length || learners.size !== members.learners.length) {
    throw new RangeError(`a membership lists a member twice: voters ${JSON.stringify(members.voters)}, learners ${JSON.stringify(members.learners)}`);
  }
  for (const id of learners) {
    if (voters.has(id)) throw new RangeError(`member ${JSON.stringify(id)} is listed both as a voter and as a learner`);
  }
  return { voters, learners };
}

/** True when both memberships hold the same voters and the same learners (in any order). */
export function sameMembers(a: Members, b: Members): boolean {
  const same = (x: ReadonlySet<string>, y: ReadonlySet<string>) => x.size === y.size && [...x].every((id) => y.has(id));
  return same(a.voters, b.voters) && same(a.learners, b.learners);
}

/** True when `id` is a voter or a learner of `members`. */
export function isMember(members: Members, id: string): boolean {
  return members.voters.has(id) || members.learners.has(id);
}

/** Every member but `selfId`, voters first: the peers a node replicates to. */
export function peersOf(members: Members, selfId: string): string[] {
  return [...members.voters, ...members.learners].filter((id) => id !== selfId);
}

/** The membership a keyspace starts with: every replica named in its context votes. */
export function initialMembers(replicaIds: readonly string[]): Members {
  return { voters: new Set(replicaIds), learners: new Set() };
}
