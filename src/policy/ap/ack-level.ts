import { majority } from '../majority.js';
import type { AckLevel } from '../policy.js';

/**
 * Ack levels over a changing membership. Pure: no I/O, no clock.
 *
 * Only voters' copies count. A write at level `one` needs one voter to hold it, `quorum` a majority
 * of the voters, `all` every voter; the coordinator's own copy counts when the coordinator is a
 * voter. So a learner coordinating a write waits for voters only: `one` needs one voter other
 * than itself, `quorum` a majority of the voters, `all` every voter. That is what makes a
 * learner's acknowledged write survive the learner leaving again (a join that is given up): a
 * learner's copy is never the one a write depended on.
 *
 * The requirement is always that of the voters now, not of those when the write began: a member
 * that leaves is no longer waited for, and a voter added meanwhile must hold it too (any majority
 * of the voters now must meet the write, or a later recovery from a majority could miss it).
 */

/** How many voters other than the coordinator must hold a write at `level`. */
export function votersToReach(level: AckLevel, voterCount: number, coordinatorVotes: boolean): number {
  const copies = level === 'all' ? voterCount : level === 'quorum' ? majority(voterCount) : 1;
  return Math.max(0, copies - (coordinatorVotes ? 1 : 0));
}

/** How many of `acked` are voters other than `selfId` (the copies that count). */
export function voterAcks(voters: ReadonlySet<string>, selfId: string, acked: ReadonlySet<string>): number {
  let count = 0;
  for (const peer of acked) if (peer !== selfId && voters.has(peer)) count++;
  return count;
}

/** True when the peers in `acked` (plus the coordinator `selfId`, if it votes) meet `level` among `voters`. */
export function ackLevelMet(level: AckLevel, voters: ReadonlySet<string>, selfId: string, acked: ReadonlySet<string>): boolean {
  return voterAcks(voters, selfId, acked) >= votersToReach(level, voters.size, voters.has(selfId));
}
