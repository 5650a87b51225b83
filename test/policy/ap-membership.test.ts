import { afterEach, describe, expect, it } from 'vitest';
import { apAsync, hintKeyspace, type ApAsyncKeyspace, type ApAsyncOptions } from '../../src/policy/ap/ap-async.js';
import { ackLevelMet, votersToReach } from '../../src/policy/ap/ack-level.js';
import { failure, KS, PolicyNodes } from './membership-nodes.js';

const INTERVAL = 200;
const opened: PolicyNodes<ApAsyncKeyspace>[] = [];
afterEach(async () => {
  for (const nodes of opened.splice(0)) await nodes.closeAll();
});

function ap(options: ApAsyncOptions = {}): PolicyNodes<ApAsyncKeyspace> {
  const nodes = new PolicyNodes<ApAsyncKeyspace>(apAsync({ antiEntropyIntervalMs: INTERVAL, callTimeoutMs: 50, hintReplayIntervalMs: 50, ...options }));
  opened.push(nodes);
  return nodes;
}

/** Nodes `ids`, each started knowing all of them, then told `voters` and `learners`. */
function started(ids: readonly string[], voters: readonly string[], learners: readonly string[], options: ApAsyncOptions = {}): PolicyNodes<ApAsyncKeyspace> {
  const nodes = ap(options);
  for (const id of ids) nodes.start(id, ids);
  nodes.members(voters, learners);
  return nodes;
}

const set = (...ids: string[]) => new Set(ids);

describe('AP ack levels over voters (ack-level.ts)', () => {
  it('counts voters only, the coordinator when it votes', () => {
    // A voter of three: quorum needs one more voter, all two, one none.
    expect([votersToReach('one', 3, true), votersToReach('quorum', 3, true), votersToReach('all', 3, true)]).toEqual([0, 1, 2]);
    // A learner coordinating with three voters: one voter, a majority of them, all of them.
    expect([votersToReach('one', 3, false), votersToReach('quorum', 3, false), votersToReach('all', 3, false)]).toEqual([1, 2, 3]);
    const voters = set('n1', 'n2');
    expect(ackLevelMet('quorum', voters, 'n1', set('n3'))).toBe(false); // n3 is no voter
    expect(ackLevelMet('quorum', voters, 'n1', set('n2', 'n3'))).toBe(true);
    expect(ackLevelMet('all', voters, 'n3', set('n1'))).toBe(false);
    expect(ackLevelMet('all', voters, 'n3', set('n1', 'n2'))).toBe(true);
  });
});

describe('AP membership: learners', () => {
  it('a learner receives new writes, converges by anti-entropy on what was written before it joined, and gets hints while down', async () => {
    const nodes = ap();
    for (const id of ['n1', 'n2', 'n3']) nodes.start(id, ['n1', 'n2', 'n3']);
    for (let i = 0; i < 20; i++) await nodes.settle(nodes.put('n1', `old${i}`, `v${i}`));
    await nodes.scheduler.advance(100);
    // n4 joins empty, as a learner: nothing queued before it was a member is sent to it.
    nodes.start('n4', ['n1', 'n2', 'n3', 'n4']);
    nodes.members(['n1', 'n2', 'n3'], ['n4']);
    await nodes.settle(nodes.put('n2', 'new', 'x'));
    await nodes.scheduler.advance(20);
    expect(nodes.values('n4').get('new')).toBe('x'); // replicated in the background, like to any peer
    expect(nodes.values('n4').size).toBeLessThan(21);
    await nodes.scheduler.advance(6 * INTERVAL); // anti-entropy, in both directions
    expect(nodes.values('n4')).toEqual(nodes.values('n1'));
    expect(nodes.values('n4').size).toBe(21);

    // Down (cut off): hinted for by the coordinator, delivered once it is back.
    nodes.network.partition([['n1', 'n2', 'n3'], ['n4']]);
    for (let i = 0; i < 5; i++) await nodes.settle(nodes.put('n1', `while-down${i}`, 'v'));
    await nodes.scheduler.advance(500);
    expect(nodes.stores.get('n1')!.entries(hintKeyspace(KS, 'n4')).length).toBe(5);
    nodes.network.heal();
    await nodes.scheduler.advance(500);
    expect(nodes.stores.get('n1')!.entries(hintKeyspace(KS, 'n4')).length).toBe(0);
    expect(nodes.values('n4').get('while-down4')).toBe('v');
  });

  it("a learner's acknowledgement counts toward no ack level; once promoted, it does (the waiting write succeeds)", async () => {
    // Voters n1 and n2, learner n3: quorum is both voters. Were n3 counted, one peer would do.
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2'], ['n3']);
    nodes.network.partition([['n1', 'n3'], ['n2']]);
    const refused = await failure(nodes.settle(nodes.put('n1', 'q', '1', { ack: 'quorum', timeoutMs: 300 })));
    expect([refused.kind, refused.reason, refused.details]).toEqual(['outcome-unknown', 'ACK_LEVEL_NOT_REACHED', { acked: '0', needed: '1' }]);
    expect(nodes.values('n3').get('q')).toBe('1'); // the learner did take it
    const all = await failure(nodes.settle(nodes.put('n1', 'a', '1', { ack: 'all', timeoutMs: 300 })));
    expect(all.reason).toBe('ACK_LEVEL_NOT_REACHED');

    // A write waits; n3 holds it; n3 is promoted: its acknowledgement now counts.
    const waiting = nodes.put('n1', 'q', '2', { ack: 'quorum', timeoutMs: 5_000 });
    let done = false;
    void waiting.then(() => (done = true), () => (done = true));
    await nodes.scheduler.advance(100);
    expect(nodes.values('n3').get('q')).toBe('2');
    expect(done).toBe(false);
    nodes.members(['n1', 'n2', 'n3']);
    await nodes.scheduler.advance(0);
    expect(done).toBe(true);
    expect((await waiting).version.nodeId).toBe('n1');
    expect(nodes.node('n1').stats().ackWaiters).toBe(0);

    // And the same write again, as a new request: n3 is a voter of three now.
    await nodes.settle(nodes.put('n1', 'q', '3', { ack: 'quorum', timeoutMs: 300 }));
    expect(nodes.values('n3').get('q')).toBe('3');
  });

  it('a learner coordinating a write waits for voters only: its own copy counts for nothing', async () => {
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2'], ['n3']);
    nodes.network.partition([['n1', 'n3'], ['n2']]);
    // 'one' needs one voter (n1 answers), 'quorum' both voters (n2 is cut off).
    await nodes.settle(nodes.put('n3', 'k', 'one', { ack: 'one', timeoutMs: 300 }));
    expect(nodes.values('n1').get('k')).toBe('one');
    const quorum = await failure(nodes.settle(nodes.put('n3', 'k', 'quorum', { ack: 'quorum', timeoutMs: 300 })));
    expect([quorum.reason, quorum.details]).toEqual(['ACK_LEVEL_NOT_REACHED', { acked: '1', needed: '2' }]);
    expect(quorum.message).toContain('a learner');
    // Cut off from every voter, even 'one' (the default) is not reached.
    nodes.network.heal();
    nodes.network.partition([['n1', 'n2'], ['n3']]);
    const alone = await failure(nodes.settle(nodes.put('n3', 'k', 'alone', { timeoutMs: 300 })));
    expect(alone.reason).toBe('ACK_LEVEL_NOT_REACHED');
  });

  it('waits for a learner\'s digest match before purging a tombstone', async () => {
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2'], ['n3'], { tombstoneGcGraceMs: 1_000 });
    await nodes.settle(nodes.put('n1', 'gone', 'v'));
    await nodes.scheduler.advance(50);
    nodes.network.partition([['n1', 'n2'], ['n3']]);
    await nodes.settle(nodes.node('n1').delete(Buffer.from('gone'), { timeoutMs: 1_000 }));
    await nodes.scheduler.advance(5_000);
    expect(nodes.node('n1').stats().tombstonesPurged).toBe(0); // the learner never matched
    nodes.network.heal();
    await nodes.scheduler.advance(5_000);
    expect(nodes.node('n1').stats().tombstonesPurged).toBeGreaterThanOrEqual(1);
    // The learner got the tombstone: the deleted value is nowhere.
    for (const id of ['n1', 'n2', 'n3']) expect(nodes.values(id).get('gone') ?? null, id).toBeNull();
  });
});

describe('AP membership: removal', () => {
  it("drops a removed member's hints (durably) and stops replicating and syncing with it", async () => {
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2', 'n3'], [], { hintAfterFailures: 1 });
    nodes.network.partition([['n1', 'n2'], ['n3']]);
    for (let i = 0; i < 20; i++) await nodes.settle(nodes.put('n1', `k${i}`, 'v'));
    await nodes.scheduler.advance(500);
    expect(nodes.node('n1').stats().hints).toBe(20);
    expect(nodes.stores.get('n1')!.entries(hintKeyspace(KS, 'n3')).length).toBe(20);

    // n3 is not told (it may be dead or lagging): the members alone cut it off.
    nodes.members(['n1', 'n2'], [], ['n1', 'n2']);
    expect(nodes.node('n1').stats().hints).toBe(0);
    await nodes.scheduler.advance(0);
    expect(nodes.stores.get('n1')!.entries(hintKeyspace(KS, 'n3')).length).toBe(0);
    expect(nodes.node('n1').stats().queuedKeys).toBe(0);

    // n3 is reachable again (once what was in flight to it is gone), but no member sends it
    // anything: no replication, hints or anti-entropy.
    await nodes.scheduler.advance(100);
    nodes.network.heal();
    await nodes.settle(nodes.put('n1', 'after', 'v'));
    await nodes.scheduler.advance(10 * INTERVAL);
    expect(nodes.values('n2').get('after')).toBe('v');
    expect(nodes.values('n3').size).toBe(0);
    expect(nodes.node('n1').stats().hints).toBe(0);
    // Its own anti-entropy rounds are refused; the members' rounds between themselves go on.
    expect(nodes.node('n3').stats().repairedEntries).toBe(0);
    expect(nodes.node('n1').stats().antiEntropyRounds).toBeGreaterThan(0);
  });

  it("a waiting 'all' write completes once the dead member is removed, if the voters that remain acked", async () => {
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2', 'n3'], []);
    await nodes.crash('n3');
    const waiting = nodes.put('n1', 'k', 'v', { ack: 'all', timeoutMs: 5_000 });
    let done = false;
    void waiting.then(() => (done = true), () => (done = true));
    await nodes.scheduler.advance(200);
    expect(done).toBe(false);
    expect(nodes.values('n2').get('k')).toBe('v');
    nodes.members(['n1', 'n2']);
    await nodes.scheduler.advance(0);
    expect(done).toBe(true);
    await waiting;
    expect(nodes.node('n1').stats().ackWaiters).toBe(0);
  });

  it("a waiting write whose acks the voters that remain do not meet goes on waiting, and times out as before", async () => {
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2', 'n3'], []);
    nodes.network.partition([['n1'], ['n2', 'n3']]);
    const waiting = nodes.put('n1', 'k', 'v', { ack: 'all', timeoutMs: 1_000 });
    let done = false;
    void waiting.then(() => (done = true), () => (done = true));
    await nodes.scheduler.advance(200);
    nodes.members(['n1', 'n2']);
    await nodes.scheduler.advance(200);
    expect(done).toBe(false); // n2 has not acked
    const timedOut = await failure(nodes.settle(waiting));
    expect([timedOut.reason, timedOut.details]).toEqual(['ACK_LEVEL_NOT_REACHED', { acked: '0', needed: '1' }]);
  });

  it('a waiting write is queued to a voter added meanwhile and waits for it too', async () => {
    const nodes = ap();
    for (const id of ['n1', 'n2']) nodes.start(id, ['n1', 'n2']);
    nodes.network.partition([['n1', 'n2'], ['n3']]);
    nodes.start('n3', ['n1', 'n2', 'n3']);
    const waiting = nodes.put('n1', 'k', 'v', { ack: 'all', timeoutMs: 5_000 });
    let done = false;
    void waiting.then(() => (done = true), () => (done = true));
    await nodes.scheduler.advance(0);
    nodes.members(['n1', 'n2', 'n3']);
    await nodes.scheduler.advance(200);
    expect(done).toBe(false); // n2 acked, n3 (a voter now) is cut off
    nodes.network.heal();
    await nodes.settle(waiting);
    expect(nodes.values('n3').get('k')).toBe('v');
  });

  it('a node that is no longer a member refuses writes, and still hands what it holds to the members', async () => {
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2', 'n3'], [], { hintAfterFailures: 1 });
    nodes.network.partition([['n3'], ['n1', 'n2']]);
    await nodes.settle(nodes.put('n3', 'late', 'v'));
    await nodes.scheduler.advance(200);
    nodes.members(['n1', 'n2']);
    const refused = await failure(nodes.settle(nodes.put('n3', 'k', 'v')));
    expect([refused.kind, refused.reason]).toEqual(['unavailable', 'NOT_A_MEMBER']);
    nodes.network.heal();
    await nodes.scheduler.advance(5 * INTERVAL);
    expect(nodes.values('n1').get('late')).toBe('v');
    expect(nodes.values('n2').get('late')).toBe('v');
  });
});

describe('AP membership: repeated calls', () => {
  it('the same membership again (in any order, or as the constructor had it) changes nothing', async () => {
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2', 'n3'], [], { hintAfterFailures: 1 });
    nodes.network.partition([['n1', 'n2'], ['n3']]);
    for (let i = 0; i < 10; i++) await nodes.settle(nodes.put('n1', `k${i}`, 'v'));
    await nodes.scheduler.advance(500);
    const before = nodes.node('n1').stats();
    const logged = nodes.logger.lines.length;
    nodes.members(['n1', 'n2', 'n3']); // what replicaIds said
    nodes.members(['n3', 'n2', 'n1']);
    expect(nodes.node('n1').stats()).toEqual(before);
    expect(nodes.logger.lines.length).toBe(logged);
    expect(before.hints).toBe(10);

    nodes.members(['n1', 'n2'], ['n3']);
    const demoted = nodes.logger.lines.length;
    expect(demoted).toBeGreaterThan(logged);
    nodes.members(['n2', 'n1'], ['n3']);
    nodes.members(['n1', 'n2'], ['n3']);
    expect(nodes.logger.lines.length).toBe(demoted);
    expect(nodes.node('n1').stats().hints).toBe(10); // a demotion keeps a member's hints
  });

  it('refuses a membership without voters or with a member listed twice', () => {
    const nodes = started(['n1', 'n2'], ['n1', 'n2'], []);
    const n1 = nodes.node('n1');
    expect(() => n1.membershipChanged({ voters: [], learners: ['n1'] })).toThrow(RangeError);
    expect(() => n1.membershipChanged({ voters: ['n1', 'n2'], learners: ['n2'] })).toThrow(RangeError);
    expect(() => n1.membershipChanged({ voters: ['n1', 'n1'], learners: [] })).toThrow(RangeError);
  });
});

describe('AP membership: recovery', () => {
  it('a learner that lost its disk takes in the voters\' snapshots and converges', async () => {
    const nodes = started(['n1', 'n2', 'n3'], ['n1', 'n2'], ['n3']);
    for (let i = 0; i < 10; i++) await nodes.settle(nodes.put('n1', `k${i}`, 'v'));
    await nodes.scheduler.advance(100);
    await nodes.crash('n3');
    nodes.stores.delete('n3');
    const n3 = nodes.start('n3', ['n1', 'n2', 'n3']);
    n3.membershipChanged({ voters: ['n1', 'n2'], learners: ['n3'] });
    for (const source of ['n1', 'n2']) {
      let afterKey: Uint8Array | undefined;
      for (;;) {
        const page = await nodes.node(source).snapshot(afterKey, 4, 'n3');
        await n3.absorb(page);
        if (!page.more) break;
        afterKey = page.entries[page.entries.length - 1]!.key;
      }
    }
    expect(nodes.values('n3')).toEqual(nodes.values('n1'));
  });
});
