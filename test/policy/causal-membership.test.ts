import { afterEach, describe, expect, it } from 'vitest';
import { causal, type CausalKeyspace, type CausalOptions } from '../../src/policy/causal/causal.js';
import { failure, PolicyNodes } from './membership-nodes.js';

const opened: PolicyNodes<CausalKeyspace>[] = [];
afterEach(async () => {
  for (const nodes of opened.splice(0)) await nodes.closeAll();
});

function causalNodes(options: CausalOptions = {}): PolicyNodes<CausalKeyspace> {
  const nodes = new PolicyNodes<CausalKeyspace>(causal({ callTimeoutMs: 50, retryInitialMs: 10, ...options }));
  opened.push(nodes);
  return nodes;
}

function started(ids: readonly string[]): PolicyNodes<CausalKeyspace> {
  const nodes = causalNodes();
  for (const id of ids) nodes.start(id, ids);
  return nodes;
}

const text = (bytes: Uint8Array | undefined) => (bytes === undefined ? undefined : Buffer.from(bytes).toString());

describe('causal membership: learners', () => {
  it("takes a learner's writes, its dependencies and its sessions once it is a member; the learner receives every write", async () => {
    const nodes = started(['n1', 'n2', 'n3']);
    const n4 = nodes.start('n4', ['n1', 'n2', 'n3', 'n4']);
    n4.membershipChanged({ voters: ['n1', 'n2', 'n3'], learners: ['n4'] });
    const written = await nodes.settle(nodes.put('n4', 'x', 'from-n4'));
    await nodes.scheduler.advance(200);
    // Not yet a member as the others know it: its writes are refused (and offered again), its
    // session tokens are answered "not yet" (retry), not "your fault".
    expect(nodes.values('n1').has('x')).toBe(false);
    const early = await failure(nodes.settle(nodes.node('n1').get(Buffer.from('x'), { timeoutMs: 100, sessionToken: written.sessionToken })));
    expect([early.kind, early.reason]).toEqual(['unavailable', 'UNKNOWN_SESSION_NODE']);

    nodes.members(['n1', 'n2', 'n3'], ['n4'], ['n1', 'n2', 'n3']);
    await nodes.scheduler.advance(500);
    for (const id of ['n1', 'n2', 'n3']) expect(nodes.values(id).get('x'), id).toBe('from-n4');
    const read = await nodes.settle(nodes.node('n1').get(Buffer.from('x'), { timeoutMs: 100, sessionToken: written.sessionToken }));
    expect(text(read.value)).toBe('from-n4');

    // A write that depends on the learner's write is taken in by every member, the learner too.
    await nodes.settle(nodes.put('n1', 'y', 'after-x', { sessionToken: read.sessionToken }));
    await nodes.scheduler.advance(500);
    for (const id of ['n2', 'n3', 'n4']) expect(nodes.values(id).get('y'), id).toBe('after-x');
    // Every member applied the learner's write: its log is empty.
    expect(n4.stats().unreplicatedWrites).toBe(0);
    expect(nodes.node('n1').stats().unreplicatedWrites).toBe(0);
  });

  it('a node joining empty as a learner copies every member\'s snapshot, then follows every write', async () => {
    const nodes = started(['n1', 'n2', 'n3']);
    for (let i = 0; i < 10; i++) await nodes.settle(nodes.put(`n${(i % 3) + 1}`, `k${i}`, `v${i}`));
    await nodes.scheduler.advance(500);
    expect(nodes.node('n1').stats().unreplicatedWrites).toBe(0); // truncated: only a snapshot has them now

    // The membership first, then the join (see CausalKeyspace.membershipChanged).
    nodes.members(['n1', 'n2', 'n3'], ['n4']);
    const n4 = nodes.start('n4', ['n1', 'n2', 'n3', 'n4']);
    n4.membershipChanged({ voters: ['n1', 'n2', 'n3'], learners: ['n4'] });
    for (const source of ['n1', 'n2', 'n3']) {
      let afterKey: Uint8Array | undefined;
      for (;;) {
        const page = await nodes.settle(nodes.node(source).snapshot(afterKey, 4, 'n4'));
        await nodes.settle(n4.absorb(page));
        if (!page.more) break;
        afterKey = page.entries[page.entries.length - 1]!.key;
      }
    }
    expect(nodes.values('n4')).toEqual(nodes.values('n1'));
    await nodes.settle(nodes.put('n2', 'later', 'v'));
    await nodes.scheduler.advance(500);
    expect(nodes.values('n4').get('later')).toBe('v');
    expect(n4.applied.dominates(nodes.node('n2').applied)).toBe(true);
  });
});

describe('causal membership: removal', () => {
  it("keeps a removed member's writes readable, and the sessions and writes that depend on them valid, across a restart", async () => {
    const nodes = started(['n1', 'n2', 'n3']);
    const byN3 = await nodes.settle(nodes.put('n3', 'z', 'from-n3'));
    await nodes.scheduler.advance(200);
    await nodes.crash('n3');
    nodes.members(['n1', 'n2']);

    const read = await nodes.settle(nodes.node('n1').get(Buffer.from('z'), { timeoutMs: 100, sessionToken: byN3.sessionToken }));
    expect(text(read.value)).toBe('from-n3');
    // A write depending on n3's: n2 takes it in (its dependency names a former member).
    await nodes.settle(nodes.put('n1', 'after-z', 'v', { sessionToken: read.sessionToken }));
    await nodes.scheduler.advance(200);
    expect(nodes.values('n2').get('after-z')).toBe('v');
    expect(nodes.node('n1').stats().unreplicatedWrites).toBe(0);

    // Restarted knowing only the members that remain: n3 is still known, by its applied writes.
    await nodes.crash('n1');
    nodes.start('n1', ['n1', 'n2']);
    const again = await nodes.settle(nodes.node('n1').get(Buffer.from('z'), { timeoutMs: 100, sessionToken: byN3.sessionToken }));
    expect(text(again.value)).toBe('from-n3');
    expect(nodes.node('n1').applied.get('n3')).toBe(1); // its sequence stays where it stopped
  });

  it('drops the sender of a removed member: the log no longer waits for it, nothing more is sent to it', async () => {
    const nodes = started(['n1', 'n2', 'n3']);
    nodes.network.partition([['n1', 'n2'], ['n3']]);
    for (let i = 0; i < 5; i++) await nodes.settle(nodes.put('n1', `k${i}`, 'v'));
    await nodes.scheduler.advance(200);
    expect(nodes.node('n1').stats().unreplicatedWrites).toBe(5); // n3 lacks them
    nodes.members(['n1', 'n2'], [], ['n1', 'n2']);
    await nodes.scheduler.advance(100);
    expect(nodes.node('n1').stats().unreplicatedWrites).toBe(0);
    nodes.network.heal();
    await nodes.settle(nodes.put('n1', 'after', 'v'));
    await nodes.scheduler.advance(1_000);
    expect(nodes.values('n2').get('after')).toBe('v');
    expect(nodes.values('n3').size).toBe(0);
  });

  it('a member left alone keeps no log', async () => {
    const nodes = started(['n1', 'n2']);
    nodes.network.partition([['n1'], ['n2']]);
    await nodes.settle(nodes.put('n1', 'a', 'v'));
    nodes.members(['n1'], [], ['n1']);
    await nodes.scheduler.advance(10);
    for (let i = 0; i < 5; i++) await nodes.settle(nodes.put('n1', `k${i}`, 'v'));
    await nodes.scheduler.advance(10);
    expect(nodes.node('n1').stats().unreplicatedWrites).toBe(0);
  });

  it('a node that is no longer a member refuses writes and still hands its log to the members', async () => {
    const nodes = started(['n1', 'n2', 'n3']);
    nodes.network.partition([['n1', 'n2'], ['n3']]);
    await nodes.settle(nodes.put('n3', 'late', 'v'));
    nodes.members(['n1', 'n2']);
    const refused = await failure(nodes.settle(nodes.put('n3', 'k', 'v')));
    expect([refused.kind, refused.reason]).toEqual(['unavailable', 'NOT_A_MEMBER']);
    nodes.network.heal();
    await nodes.scheduler.advance(2_000);
    for (const id of ['n1', 'n2']) expect(nodes.values(id).get('late'), id).toBe('v');
    expect(nodes.node('n3').stats().unreplicatedWrites).toBe(0);
  });
});

describe('causal membership: repeated calls', () => {
  it('the same membership again changes nothing', async () => {
    const nodes = started(['n1', 'n2', 'n3']);
    nodes.network.partition([['n1', 'n2'], ['n3']]);
    for (let i = 0; i < 3; i++) await nodes.settle(nodes.put('n1', `k${i}`, 'v'));
    await nodes.scheduler.advance(100);
    const changes = () => nodes.logger.lines.filter((l) => l.message.includes('new membership')).length;
    const before = nodes.node('n1').stats();
    nodes.members(['n1', 'n2', 'n3']); // what replicaIds said
    nodes.members(['n2', 'n3', 'n1']);
    await nodes.scheduler.advance(100);
    expect(nodes.node('n1').stats()).toEqual(before);
    expect(changes()).toBe(0);

    nodes.members(['n1', 'n2'], ['n3']);
    expect(changes()).toBe(3); // once per node
    nodes.members(['n2', 'n1'], ['n3']);
    expect(changes()).toBe(3);
    // A learner is still waited for: its log stays until n3 has the writes.
    expect(nodes.node('n1').stats().unreplicatedWrites).toBe(3);
    nodes.network.heal();
    await nodes.scheduler.advance(2_000);
    expect(nodes.node('n1').stats().unreplicatedWrites).toBe(0);
    expect(nodes.values('n3').get('k2')).toBe('v');
  });
});
