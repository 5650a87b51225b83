import { describe, expect, it } from 'vitest';
import type { Logger } from '../../src/logging/logger.js';
import { FORMING_META, RAFT_NO_VOTE_META } from '../../src/node/node-core.js';
import { apAsync } from '../../src/policy/ap/ap-async.js';
import { causal } from '../../src/policy/causal/causal.js';
import { cpQuorum } from '../../src/policy/cp/cp-quorum.js';
import type { ConsistencyPolicy } from '../../src/policy/policy.js';
import { SimCluster } from '../../src/sim/sim-cluster.js';
import { INSTANT_DISK } from '../../src/sim/simulated-disk.js';
import { CALM_NETWORK } from '../../src/transport/in-memory-network.js';

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  return { lines, debug: () => undefined, info: log('info'), warn: log('warn'), error: log('error') };
}

/**
 * A new cluster forms only once every node has seen every other new: a node serves when each peer
 * answers `ready` (it saw every peer new too) or `member`. A node that still holds nothing and sees
 * a `member` concludes it lost its state in a cluster with history, recovers from its peers and
 * never votes again from that disk. So no node may become a member of a cluster that is still
 * forming on the strength of a call that does not prove its caller serves.
 *
 * CI caught the case on three real `serve --policy ap` processes of a loaded machine: n1's probes
 * of n2 timed out for a while; meanwhile n3's AP anti-entropy (which runs from a node's start)
 * sent n2 a SyncDigests, which n2 took as proof that the cluster had formed. n2 served; n1 then
 * saw a member and "recovered", and so did n3, each waiting for the other's state: neither ever
 * served.
 */
describe('forming a new cluster', () => {
  const policies: Record<string, () => ConsistencyPolicy> = {
    ap: () => apAsync({ antiEntropyIntervalMs: 200, callTimeoutMs: 50, hintReplayIntervalMs: 50 }),
    causal: () => causal(),
    cp: () => cpQuorum(),
  };
  for (const [name, policy] of Object.entries(policies)) {
    it(`(${name}) while one node cannot reach another: nobody serves before every node is ready, then all form it, none "recovers"`, async () => {
      const logger = recordingLogger();
      const cluster = new SimCluster({ seed: 7, formed: false, keyspaces: { ks: policy() }, faults: CALM_NETWORK, logger, disk: INSTANT_DISK });
      // n2 and n3 have seen every peer new (they are ready); n1 has not yet, and cannot reach n2.
      for (const id of ['n2', 'n3']) cluster.stores.get(id)!.prepareMeta(FORMING_META, new Uint8Array([1]));
      cluster.network.partition([['n1'], ['n2']]);
      await cluster.scheduler.advance(5_000);
      expect(['n1', 'n2', 'n3'].map((id) => cluster.node(id).phase), 'nobody serves while n1 is not ready').toEqual(['starting', 'starting', 'starting']);

      cluster.network.heal();
      expect(await cluster.untilAllServing(10_000)).toBe(true);
      for (const id of ['n1', 'n2', 'n3']) expect(cluster.stores.get(id)!.getMeta(RAFT_NO_VOTE_META), `${id} believes it lost a disk`).toBeUndefined();
      expect(logger.lines.filter((l) => /formed a new cluster/.test(l))).toHaveLength(3);
      expect(logger.lines.filter((l) => /recover/.test(l))).toEqual([]);
    });
  }
});
