import { compareVersion } from '../storage/entry.js';
import type { SimCluster } from './sim-cluster.js';

/**
 * Whether every entry of `keyspace` on `id`'s disk is also held, at that version or a newer one,
 * on the disk of at least `copies` other nodes: then losing `id`'s disk loses nothing those
 * copies do not still hold. The simulations of AP and causal keyspaces wipe only such disks:
 * a write acknowledged by one replica alone lives on one disk until it replicates, and the failure
 * model says plainly that losing that disk loses it.
 */
export function heldElsewhere(cluster: SimCluster, id: string, keyspace: string, copies: number): boolean {
  const others = cluster.nodeIds.filter((p) => p !== id).map((p) => new Map(cluster.stores.get(p)!.durableEntries(keyspace).map((e) => [Buffer.from(e.key).toString('latin1'), e])));
  for (const entry of cluster.stores.get(id)!.durableEntries(keyspace)) {
    const k = Buffer.from(entry.key).toString('latin1');
    const holders = others.filter((held) => {
      const e = held.get(k);
      return e !== undefined && compareVersion(e.version, entry.version) >= 0;
    }).length;
    if (holders < copies) return false;
  }
  return true;
}
