/**
 * Whether a group of replicas can form a quorum, as far as this node can tell:
 * - `reachable`: enough replicas are ALIVE (this node included);
 * - `pending`: not enough are ALIVE yet, but enough could be once peers not yet heard from
 *   during the startup grace period send their first beats, so a CP keyspace should try rather
 *   than refuse;
 * - `unreachable`: not enough are ALIVE, and waiting is no longer a reason to hope.
 */
export type QuorumState = 'reachable' | 'pending' | 'unreachable';

/** The smallest majority of `replicaCount` replicas: ⌊n/2⌋ + 1. */
export function majorityOf(replicaCount: number): number {
  if (!Number.isSafeInteger(replicaCount) || replicaCount < 1) {
    throw new RangeError(`a replica count is a positive integer, not ${replicaCount}`);
  }
  return Math.floor(replicaCount / 2) + 1;
}

/**
 * The quorum state of a group with `aliveCount` replicas ALIVE and `pendingCount` not yet heard
 * from within the startup grace period, when a quorum needs `quorumSize`.
 */
export function quorumStateOf(aliveCount: number, pendingCount: number, quorumSize: number): QuorumState {
  if (aliveCount >= quorumSize) return 'reachable';
  if (aliveCount + pendingCount >= quorumSize) return 'pending';
  return 'unreachable';
}
