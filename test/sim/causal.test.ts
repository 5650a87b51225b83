import { describe, expect, it } from 'vitest';
import { ReplikitError } from '../../src/errors.js';
import { causal, type CausalKeyspace } from '../../src/policy/causal/causal.js';
import { CAUSAL_KEYSPACE, runCausalWorkload } from '../../src/sim/causal-workload.js';
import { runSeed } from '../../src/sim/seed-check.js';
import { expectFaultsLanded, runSeeds } from './sim-support.js';
import { SimCluster } from '../../src/sim/sim-cluster.js';
import { INSTANT_DISK } from '../../src/sim/simulated-disk.js';
import { checkCausalConsistency } from '../../src/testing/causal-checker.js';
import { CALM_NETWORK } from '../../src/transport/in-memory-network.js';
import { sessionTokenCodec } from '../../src/transport/session-token.js';
import { VectorClock } from '../../src/clock/index.js';

const SEED_COUNT = 500;
const SEEDS = process.env.REPLIKIT_SEED ? [Number(process.env.REPLIKIT_SEED)] : Array.from({ length: SEED_COUNT }, (_, i) => i + 1);
const decoder = new TextDecoder();

function stateOf(cluster: SimCluster, id: string): string {
  return JSON.stringify(cluster.stores.get(id)!.entries(CAUSAL_KEYSPACE).map((e) => [decoder.decode(e.key), e.tombstone ? null : decoder.decode(e.value)]));
}

describe('causal policy under faults', () => {
  it(`is causally consistent (causal+), converges and orders each node's versions on every one of ${SEEDS.length} seeds`, async () => {
    const totals = await runSeeds('causal', SEEDS);
    if (SEEDS.length < SEED_COUNT) return;
    expect(totals.ok).toBeGreaterThan(SEEDS.length * 200);
    expect(totals.moves).toBeGreaterThan(SEEDS.length * 50);
    expectFaultsLanded(totals, SEEDS.length, 0.03);
  }, 300_000);

  it('keeps the counterexample the disk-fault simulation found as a regression', async () => {
    // Seed 135: a wiped replica recovered its peers' state but its own origin log still started
    // at sequence 1, so its sender offered writes that were never there and stalled for good; a
    // peer never received its later writes and the replicas never converged.
    expect((await runSeed('causal', 135)).violation?.explanation).toBeUndefined();
  });

  it('keeps the dirty-read counterexamples of the 10,000-seed campaign: each fails with reads of writes in flight and passes without', async () => {
    // Seeds 6798 and 8178 (5721 until the system keyspace's traffic changed the schedules): a session read a write still committing at its node, a power loss
    // took the write away, and a later read of the session went back to an older value
    // (monotonic reads); before reads came from durable state only.
    for (const seed of [6798, 8178]) {
      expect((await runSeed('causal', seed, { readInFlight: true })).violation?.kind, `seed ${seed}`).toBe('causality');
      expect((await runSeed('causal', seed)).violation?.explanation, `seed ${seed}`).toBeUndefined();
    }
  });

  it('catches a clock that goes back across a restart (the high-water mark ignored)', async () => {
    // 6 of the first 200 seeds when this was written: 40, 44, 87, …
    for (const seed of [40, 44]) {
      expect((await runSeed('causal', seed, { ignoreClockHighWater: true })).violation?.kind, `seed ${seed}`).toBe('version-order');
      expect((await runSeed('causal', seed)).violation?.explanation, `seed ${seed}`).toBeUndefined();
    }
  });

  it('catches the deliberately broken variant that skips recovery', async () => {
    let caught = 0;
    for (let seed = 1; seed <= 60; seed++) if ((await runSeed('causal', seed, { skipRecovery: true })).violation !== undefined) caught++;
    expect(caught).toBeGreaterThan(0);
  }, 120_000);

  it('flags the variant with the dependency check switched off', async () => {
    // Rare per seed (4 of the first 150 since the system keyspace's traffic shares the network;
    // first at seed 63): the runs stop at the first two flagged.
    let flagged = 0;
    let example = '';
    for (let seed = 1; seed <= 150 && flagged < 2; seed++) {
      const run = await runCausalWorkload({ seed, policy: causal({ callTimeoutMs: 100, unsafeSkipDependencyCheck: true }) });
      const result = checkCausalConsistency(run.operations);
      if (!result.valid) {
        flagged++;
        example ||= result.explanation ?? '';
      }
    }
    console.log(`dependency check off: flagged on ${flagged} seeds; e.g.\n${example.split('\n').slice(0, 4).join('\n')}`);
    expect(flagged).toBeGreaterThan(0);
  }, 120_000);
});

describe('the COPS access-list example', () => {
  async function scenario(unsafeSkipDependencyCheck: boolean): Promise<{ sawPostWhileListed: boolean; finalPost: string | undefined }> {
    const c = new SimCluster({ seed: 7, keyspaces: { social: causal({ unsafeSkipDependencyCheck, callTimeoutMs: 50, retryInitialMs: 10 }) }, faults: CALM_NETWORK, disk: INSTANT_DISK });
    const run = <T>(p: Promise<T>) => c.scheduler.runUntilSettled(p, 5_000).then(() => p);
    // n1's writes cannot reach n3 for now; n2's can.
    c.network.partition([['n1'], ['n3']]);
    const owner = c.node('n1').keyspace('social');
    await run(owner.put('acl', 'alice,bob'));
    await c.scheduler.advance(5);
    // n3 got the first ACL through... nothing: make sure n3 knows the original list.
    const removed = await run(owner.put('acl', 'alice', { sessionToken: (await run(owner.get('acl'))).sessionToken }));
    // The owner moves to n2 (which has the new ACL), and posts there: the post depends on it.
    const atN2 = c.node('n2').keyspace('social');
    await c.scheduler.advance(20);
    const post = await run(atN2.put('post', 'bob is fired', { sessionToken: removed.sessionToken }));
    expect(post.sessionToken.byteLength).toBeGreaterThan(0);
    await c.scheduler.advance(50);
    // Bob reads at n3: the post may be there only if the ACL without him is there too.
    const bob = c.node('n3').keyspace('social');
    const seenPost = await run(bob.get('post'));
    const seenAcl = await run(bob.get('acl', { sessionToken: seenPost.sessionToken }).catch(() => bob.get('acl')));
    const sawPostWhileListed = seenPost.found && seenAcl.text() !== 'alice';
    c.network.heal();
    await c.scheduler.advance(500);
    return { sawPostWhileListed, finalPost: (await run(bob.get('post'))).text() };
  }

  it('never shows the post to a member still on the list, and shows it after the list change arrives', async () => {
    const safe = await scenario(false);
    expect(safe.sawPostWhileListed).toBe(false);
    expect(safe.finalPost).toBe('bob is fired');
  });

  it('does show it without the dependency check (so the test above can fail)', async () => {
    const broken = await scenario(true);
    expect(broken.sawPostWhileListed).toBe(true);
  });
});

describe('session tokens', () => {
  const cluster = () => new SimCluster({ seed: 3, keyspaces: { c: causal({ callTimeoutMs: 50 }) }, faults: CALM_NETWORK, disk: INSTANT_DISK });

  it('refuse a malformed or altered token with INVALID_ARGUMENT and another cluster\'s with FAILED_PRECONDITION', async () => {
    const c = cluster();
    const ks = c.node('n1').keyspace('c');
    const { sessionToken } = await ks.put('k', 'v');
    const kindOf = async (token: Uint8Array) => {
      const p = ks.get('k', { sessionToken: token });
      await c.scheduler.runUntilSettled(p, 1_000);
      return p.then(() => 'ok', (e: unknown) => (e as ReplikitError).kind + ': ' + (e as Error).message);
    };
    expect(await kindOf(sessionToken)).toBe('ok');
    expect(await kindOf(new Uint8Array([0xff, 0xff, 0xff]))).toMatch(/^invalid-argument: the session token is malformed/);
    const altered = Uint8Array.from(sessionToken);
    altered[altered.length - 1] ^= 0x01;
    expect(await kindOf(altered)).toMatch(/^invalid-argument: the session token was altered or forged/);
    const foreign = sessionTokenCodec('another-cluster').encode('c', VectorClock.from({ n1: 1 }));
    expect(await kindOf(foreign)).toMatch(/^failed-precondition: the session token was issued by cluster "another-cluster"/);
  });

  it('bound forged or runaway input: far-future sequences cannot keep an origin\'s real writes out, and made-up dependency nodes are refused', async () => {
    const c = cluster();
    const forged = (seq: number) => ({
      key: Buffer.from(`forged-${seq}`),
      value: Buffer.from('x'),
      version: { hlc: { wallMs: 1_800_000_000_000, logical: 0 }, nodeId: 'n2' },
      tombstone: false,
      originSequence: seq,
    });
    // Ten calls of 1,000 entries each, as if from n2, far ahead of anything n2 wrote.
    for (let call = 0; call < 10; call++) {
      const outcomes = await c.node('n1').replicate('n2', 'c', Array.from({ length: 1000 }, (_, i) => forged(5_000 + call * 1000 + i)));
      expect(new Set(outcomes)).toEqual(new Set(['buffered']));
    }
    expect((c.node('n1').policyOf('c') as CausalKeyspace).stats().bufferedEntries).toBe(0);
    // n2's real writes still reach n1.
    const write = c.node('n2').keyspace('c').put('real', 'v');
    await c.scheduler.runUntilSettled(write, 1_000);
    await c.scheduler.advance(500);
    const read = c.node('n1').keyspace('c').get('real', { sessionToken: (await write).sessionToken, timeoutMs: 500 });
    await c.scheduler.runUntilSettled(read, 1_000);
    expect((await read).text()).toBe('v');
    // A dependency clock naming nodes that are not replicas is refused outright.
    const made = { ...forged(1), dependencies: VectorClock.from(Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`ghost-${i}`, 1]))) };
    const refused = await c.node('n1').replicate('n2', 'c', [made]).catch((e: unknown) => e);
    expect((refused as ReplikitError).kind).toBe('invalid-argument');
    expect((refused as Error).message).toMatch(/depends on node "ghost-0", which is not a replica/);
  });

  it('make a replica that is behind wait, then answer UNAVAILABLE saying it is behind the session', async () => {
    const c = cluster();
    c.network.partition([['n1'], ['n2', 'n3']]);
    const write = c.node('n1').keyspace('c').put('k', 'v');
    await c.scheduler.runUntilSettled(write, 100);
    const read = c.node('n2').keyspace('c').get('k', { sessionToken: (await write).sessionToken, timeoutMs: 200 });
    read.catch(() => {});
    await c.scheduler.runUntilSettled(read, 1_000);
    const err = await read.catch((e: unknown) => e);
    expect((err as ReplikitError).kind).toBe('unavailable');
    expect((err as Error).message).toMatch(/this replica is behind the session/);
    // After the heal the same token is served.
    c.network.heal();
    const again = c.node('n2').keyspace('c').get('k', { sessionToken: (await write).sessionToken, timeoutMs: 1_000 });
    await c.scheduler.runUntilSettled(again, 2_000);
    expect((await again).text()).toBe('v');
  });
});

describe('sessions in the embedding API', () => {
  it('carry the token across nodes: read-your-writes through another node', async () => {
    const c = new SimCluster({ seed: 11, keyspaces: { c: causal({ callTimeoutMs: 50 }) }, faults: { dropRate: 0, duplicateRate: 0, minDelayMs: 20, maxDelayMs: 40 }, disk: INSTANT_DISK });
    const session = c.node('n1').keyspace('c').session();
    const put = session.put('k', 'mine');
    await c.scheduler.runUntilSettled(put, 100);
    await put;
    session.moveTo(c.node('n2').keyspace('c'));
    // Replication to n2 takes 20-40 ms; the read waits for it instead of missing the write.
    const read = session.get('k', { timeoutMs: 1_000 });
    await c.scheduler.runUntilSettled(read, 1_000);
    expect((await read).text()).toBe('mine');
    // Without the session, n2 might answer before the write arrives.
    expect(session.token.byteLength).toBeGreaterThan(0);
  });
});
