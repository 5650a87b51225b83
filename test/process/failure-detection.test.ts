import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT, cli } from '../support/cli.js';
import { statusOf, TestKvClient } from '../support/kv-client.js';
import { stateOf, waitFor } from '../support/status-client.js';

let cluster: LocalCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

async function startCluster(): Promise<LocalCluster> {
  cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100'] });
  await cluster.startAll();
  const c = cluster;
  for (const observer of c.ids) {
    for (const member of c.ids) {
      if (member === observer) continue;
      await waitFor(
        async () => {
          const m = await stateOf(c.address(observer), member);
          return m.state === 'ALIVE' && m.incarnation > 0n;
        },
        5_000,
        `${observer} hears ${member}'s beats`,
      );
    }
  }
  return c;
}

describe.skipIf(!BUILT)('failure detection between real serve processes (100 ms beats)', () => {
  it('sees a kill -9 as DEAD within 1.5 s, refuses CP in under 50 ms without a majority, and sees restarts ALIVE with a higher incarnation', async () => {
    const c = await startCluster();
    const before = await stateOf(c.address('n1'), 'n3');

    await c.kill('n3', 'SIGKILL');
    const detected = await Promise.all(
      ['n1', 'n2'].map((observer) =>
        waitFor(async () => (await stateOf(c.address(observer), 'n3')).state === 'DEAD', 1_500, `${observer} sees n3 DEAD`),
      ),
    );
    console.log(`kill -9 n3 seen DEAD after ${detected.map((ms) => ms.toFixed(0)).join(' and ')} ms`);
    // The operator's view agrees: status --json, proto3 JSON enum names.
    const json = JSON.parse((await cli(['status', '--target', c.address('n1'), '--json'])).stdout) as {
      members: { nodeId: string; state: string }[];
      keyspaces: { name: string; quorumReachable: boolean }[];
    };
    expect(json.members.find((m) => m.nodeId === 'n3')!.state).toBe('MEMBER_STATE_DEAD');
    expect(json.keyspaces[0]!.quorumReachable).toBe(true);

    await c.kill('n2', 'SIGKILL');
    await waitFor(async () => (await stateOf(c.address('n1'), 'n2')).state !== 'ALIVE', 1_500, 'n1 suspects n2');
    const kv = new TestKvClient(c.address('n1'));
    try {
      const t0 = performance.now();
      const err = await kv.put('k', 'v').catch((e: unknown) => e);
      const refusedMs = performance.now() - t0;
      expect(statusOf(err)).toBe('UNAVAILABLE');
      expect((err as Error).message).toMatch(/1 of 3 replicas are alive and a quorum needs 2/);
      console.log(`CP put with a dead majority refused in ${refusedMs.toFixed(1)} ms`);
      expect(refusedMs).toBeLessThan(50);
    } finally {
      kv.close();
    }

    await Promise.all([c.start('n2'), c.start('n3')]);
    await waitFor(
      async () => {
        const m = await stateOf(c.address('n1'), 'n3');
        return m.state === 'ALIVE' && m.incarnation > before.incarnation;
      },
      2_000,
      'n1 sees restarted n3 ALIVE with a higher incarnation',
    );
    expect((await stateOf(c.address('n1'), 'n3')).incarnation).toBe(before.incarnation + 1n);
  });

  it('ends a CP put waiting on a peer that stops answering as soon as the peer is suspected, not at the deadline', async () => {
    const c = await startCluster();
    await c.kill('n3', 'SIGKILL');
    await waitFor(async () => (await stateOf(c.address('n1'), 'n3')).state !== 'ALIVE', 1_500, 'n1 suspects n3');
    // n2 stops without closing its connections: only the failure detector can tell.
    await c.kill('n2', 'SIGSTOP');
    const kv = new TestKvClient(c.address('n1'));
    try {
      const t0 = performance.now();
      const err = await kv.put('k', 'v', { timeoutMs: 10_000 }).catch((e: unknown) => e);
      const tookMs = performance.now() - t0;
      console.log(`CP put with n3 dead and n2 stopped failed after ${tookMs.toFixed(0)} ms: ${(err as Error).message}`);
      // UNAVAILABLE when n1 had not yet proposed it (no majority, or no leader); when n1 led and
      // had proposed it, or had handed it to n2 as the leader, n2 may still hold it and commit it
      // after SIGCONT: the outcome is unknown, and says so once n1 steps down or suspects n2.
      expect(['UNAVAILABLE', 'DEADLINE_EXCEEDED']).toContain(statusOf(err));
      expect(tookMs).toBeLessThan(2_500);
    } finally {
      kv.close();
      await c.kill('n2', 'SIGCONT');
    }
  });

  it('sees SIGSTOP as SUSPECT or DEAD and SIGCONT as ALIVE within 1 s', async () => {
    const c = await startCluster();
    await c.kill('n2', 'SIGSTOP');
    await waitFor(async () => ['SUSPECT', 'DEAD'].includes((await stateOf(c.address('n1'), 'n2')).state), 1_500, 'n1 suspects stopped n2');
    await c.kill('n2', 'SIGCONT');
    const back = await waitFor(async () => (await stateOf(c.address('n1'), 'n2')).state === 'ALIVE', 1_000, 'n1 sees n2 ALIVE again');
    console.log(`SIGCONT n2 seen ALIVE after ${back.toFixed(0)} ms`);
  });
});
