import { majority } from '../policy/majority.js';
import type { AckLevel } from '../policy/policy.js';
import { compareVersion, type Version } from '../storage/entry.js';
import type { SimCluster } from './sim-cluster.js';

/** An acknowledged AP write as the loss guard reasons over it. */
export interface GuardedWrite {
  readonly key: string;
  readonly version: Version;
  readonly level: AckLevel;
  /** The coordinator's voters when it acknowledged the write (the ack level was met among them). */
  readonly voters: readonly string[];
  readonly invokedAtMs: number;
}

/**
 * When may the simulation of an AP keyspace whose membership changes lose a disk (wipe a node,
 * or retire a removed one) without losing what the policy promised to keep? It trusts the one
 * promise an acknowledgement makes, and nothing more: a write acknowledged at level `one`,
 * `quorum` or `all` was durable, at that moment, on 1, a majority or all of the voters the
 * coordinator had then (ack-level.ts). A disk lost since the write was invoked may have been one
 * of those copies. So losing node `id`'s disk is allowed when, for every acknowledged write,
 *  - another node now holds it (or a newer version of its key) durably, or
 *  - the promised copies less every disk of those voters lost since (this one included) still
 *    leave one.
 *
 * The promise is checked when it is made ({@link acknowledged}): an acknowledgement without the
 * copies it promises (a removed voter's counted, say) is a violation at once, rather than a lost
 * write only if the one real copy happens to go before it replicates. Nothing else is assumed: not
 * that learners or new voters hold old writes, not that anything replicated in time.
 */
export class LossGuard {
  readonly #writes: GuardedWrite[] = [];

  constructor(
    private readonly cluster: SimCluster,
    private readonly keyspace: string,
  ) {}

  /**
   * Records an acknowledged write, and checks the promise it is trusted for: the voters it names
   * hold it durably now, as many as its ack level promised (less any of their disks lost since it
   * began). Returns what falls short, or undefined when the promise holds.
   */
  acknowledged(write: GuardedWrite): string | undefined {
    this.#writes.push(write);
    const key = Buffer.from(write.key).toString('latin1');
    const holders = write.voters.filter((v) => {
      const disk = this.cluster.stores.get(v);
      const held = disk?.durableEntries(this.keyspace).find((e) => Buffer.from(e.key).toString('latin1') === key);
      return held !== undefined && compareVersion(held.version, write.version) >= 0;
    });
    const lost = new Set(this.cluster.losses.filter((l) => l.atMs >= write.invokedAtMs).map((l) => l.id));
    const promised = promisedCopies(write);
    const counted = holders.length + write.voters.filter((v) => lost.has(v) && !holders.includes(v)).length;
    if (counted >= promised) return undefined;
    return (
      `a write of ${write.key} acknowledged at level ${write.level} with voters ${write.voters.join(', ')} promised ${promised} copies among them; ` +
      `${holders.length} hold it (${holders.join(', ') || 'none'})${lost.size > 0 ? `, and of the disks lost since it began ${[...lost].join(', ')}` : ''}`
    );
  }

  /** Whether node `id`'s disk may be lost now (see the class comment). */
  canLose(id: string): boolean {
    if (this.#writes.length === 0) return true;
    const others = this.cluster.nodeIds
      .filter((p) => p !== id)
      .map((p) => new Map(this.cluster.stores.get(p)!.durableEntries(this.keyspace).map((e) => [Buffer.from(e.key).toString('latin1'), e.version])));
    const losses = this.cluster.losses;
    for (const w of this.#writes) {
      const key = Buffer.from(w.key).toString('latin1');
      if (others.some((held) => {
        const v = held.get(key);
        return v !== undefined && compareVersion(v, w.version) >= 0;
      })) continue;
      const promised = promisedCopies(w);
      const gone = new Set([id]);
      for (const loss of losses) if (loss.atMs >= w.invokedAtMs) gone.add(loss.id);
      const left = promised - w.voters.filter((v) => gone.has(v)).length;
      if (left < 1) return false;
    }
    return true;
  }
}

/** The copies among its voters an acknowledgement at `level` promises (ack-level.ts). */
function promisedCopies(w: GuardedWrite): number {
  return w.level === 'all' ? w.voters.length : w.level === 'quorum' ? majority(w.voters.length) : 1;
}
