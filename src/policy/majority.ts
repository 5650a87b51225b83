/** A majority of `replicaCount`: the smallest number that any two such sets must share a member. */
export function majority(replicaCount: number): number {
  return Math.floor(replicaCount / 2) + 1;
}
