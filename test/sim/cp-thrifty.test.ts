import { describe, expect, it } from 'vitest';
import { cpQuorum, type CpQuorumOptions, type CpStats } from '../../src/policy/cp-quorum.js';
import { SimCluster } from '../../src/sim/sim-cluster.js';
import { INSTANT_DISK } from '../../src/sim/simulated-disk.js';
import { CALM_NETWORK } from '../../src/transport/in-memory-network.js';

const KS = 'kv';
const KEY = Buffer.from('k');

/** A calm 3-node cluster with a CP keyspace; counts the store reads each node serves. */
function cluster(options: CpQuorumOptions, dead: readonly string[] = []) {
  const c = new SimCluster({
    seed: 1,
    keyspaces: { [KS]: cpQuorum(options) },
    faults: CALM_NETWORK,
    liveness: () => ({ isAlive: (id) => !dead.includes(id) }),
  });
  const reads = new Map<string, number>();
  for (const [id, store] of c.stores) {
    // Replicas answer reads from durable state (readDurable), the coordinator's own copy too.
    const readDurable = store.readDurable.bind(store);
    store.readDurable = (keyspace, key) => {
      reads.set(id, (reads.get(id) ?? 0) + 1);
      return readDurable(keyspace, key);
    };
  }
  return { c, reads };
}

async function gets(c: SimCluster, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const read = c.node('n1').get(KS, KEY);
    await c.scheduler.runUntilSettled(read, 1_000);
    expect(new TextDecoder().decode((await read).value)).toBe('v');
  }
  await c.scheduler.advance(50); // calls still in flight land, so every read is counted
}

async function prepared(options: CpQuorumOptions, dead: readonly string[] = []) {
  const { c, reads } = cluster(options, dead);
  const write = c.node('n1').put(KS, KEY, Buffer.from('v'));
  await c.scheduler.runUntilSettled(write, 1_000);
  await write;
  await c.scheduler.advance(50); // the third replica's copy lands too
  reads.clear();
  return { c, reads };
}

describe('CP thrifty reads', () => {
  it('a get reads the local replica and one peer, the peers in turn', async () => {
    const { c, reads } = await prepared({});
    await gets(c, 30);
    expect(reads.get('n1')).toBe(30);
    expect((reads.get('n2') ?? 0) + (reads.get('n3') ?? 0)).toBe(30);
    expect(reads.get('n2')).toBe(15);
  });

  it('never picks a peer the failure detector holds dead', async () => {
    const { c, reads } = await prepared({}, ['n3']);
    await gets(c, 20);
    expect(reads.get('n2')).toBe(20);
    expect(reads.get('n3') ?? 0).toBe(0);
  });

  it('asks the third replica when the chosen peer is down, and answers', async () => {
    const { c, reads } = await prepared({});
    c.crash('n2'); // the detector has not noticed: plans still pick n2 every other read
    const before = (c.node('n1').policyOf(KS) as unknown as { stats(): CpStats }).stats();
    await gets(c, 10);
    expect(reads.get('n3')).toBe(10);
    const after = (c.node('n1').policyOf(KS) as unknown as { stats(): CpStats }).stats();
    expect(after.readPhases - before.readPhases).toBe(10);
    expect(after.hedgedReads - before.hedgedReads).toBe(5);
  });

  it('with thriftyReads off, a get reads every replica', async () => {
    const { c, reads } = await prepared({ thriftyReads: false });
    await gets(c, 10);
    expect(reads.get('n2')).toBe(10);
    expect(reads.get('n3')).toBe(10);
  });

  it('refuses a hedge delay that is not a number of milliseconds', () => {
    expect(() => cluster({ hedgeAfterMs: -1 })).toThrow(/hedgeAfterMs must be a finite number/);
  });
});
