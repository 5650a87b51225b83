import type { ServiceError } from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT } from '../support/cli.js';
import { healthCheck } from '../support/ops.js';
import { stateOf, status, waitFor } from '../support/status-client.js';

let cluster: LocalCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/** Every node hears every other (ALIVE), so that the test starts from a settled cluster. */
async function allAlive(c: LocalCluster, ids = c.ids): Promise<void> {
  for (const observer of ids) {
    for (const member of ids) {
      if (member !== observer) await waitFor(async () => (await stateOf(c.address(observer), member)).state === 'ALIVE', 5_000, `${observer} hears ${member}`);
    }
  }
}

function lines(logs: string[], pattern: RegExp): string[] {
  return logs.filter((l) => pattern.test(l));
}

describe.skipIf(!BUILT)('grpc.health.v1 on real serve processes', () => {
  it('is SERVING with a quorum, NOT_SERVING on the minority side of a quorum loss (CP keyspaces only, the reason in Status and one log line), SERVING after the heal', async () => {
    const logs: string[] = [];
    cluster = await LocalCluster.create({
      size: 3,
      serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap'],
      onLog: (id, line) => id === 'n1' && logs.push(line),
    });
    const c = cluster;
    await c.startAll();
    await allAlive(c);
    const n1 = c.address('n1');
    for (const name of ['', 'replikit.v1.KvService', 'replikit.v1.KvService/default', 'replikit.v1.KvService/a', 'replikit.v1.ClusterService']) {
      expect(await healthCheck(n1, name), `health of ${JSON.stringify(name)}`).toBe('SERVING');
    }
    const unknown = await healthCheck(n1, 'replikit.v1.KvService/nope').catch((e: unknown) => e as ServiceError);
    expect((unknown as ServiceError).code).toBe(grpcStatus.NOT_FOUND);
    expect((await status(n1)).notServingReasons).toEqual([]);

    // The minority side: n1 alone once n2 and n3 stop answering.
    await c.kill('n2', 'SIGSTOP');
    await c.kill('n3', 'SIGSTOP');
    const lostMs = await waitFor(async () => (await healthCheck(n1)) === 'NOT_SERVING', 3_000, 'n1 reports NOT_SERVING');
    console.log(`n1 NOT_SERVING ${lostMs.toFixed(0)} ms after SIGSTOP of n2 and n3`);
    expect(await healthCheck(n1, 'replikit.v1.KvService')).toBe('NOT_SERVING');
    expect(await healthCheck(n1, 'replikit.v1.KvService/default')).toBe('NOT_SERVING');
    // An AP keyspace serves from the local replica without a quorum; Status always answers.
    expect(await healthCheck(n1, 'replikit.v1.KvService/a')).toBe('SERVING');
    expect(await healthCheck(n1, 'replikit.v1.ClusterService')).toBe('SERVING');
    const why = await status(n1);
    expect(why.notServingReasons).toEqual(['quorum lost for CP keyspace default: 1 of 3 replicas alive, a quorum needs 2']);
    expect(lines(logs, /is NOT_SERVING/)).toHaveLength(1);
    expect(lines(logs, /is NOT_SERVING/)[0]).toMatch(/"level":"warn".*node n1 is NOT_SERVING: quorum lost for CP keyspace default/);

    await c.kill('n2', 'SIGCONT');
    await c.kill('n3', 'SIGCONT');
    const backMs = await waitFor(async () => (await healthCheck(n1)) === 'SERVING', 3_000, 'n1 reports SERVING again');
    console.log(`n1 SERVING again ${backMs.toFixed(0)} ms after SIGCONT`);
    expect(await healthCheck(n1, 'replikit.v1.KvService/default')).toBe('SERVING');
    expect((await status(n1)).notServingReasons).toEqual([]);
    // One line per change: NOT_SERVING and SERVING alternate, ending with SERVING.
    const changes = lines(logs, /is NOT_SERVING|is SERVING again/).map((l) => (l.includes('NOT_SERVING') ? 'NOT_SERVING' : 'SERVING'));
    expect(changes.filter((s, i) => i > 0 && s === changes[i - 1]), changes.join(' → ')).toEqual([]);
    expect(changes.at(-1)).toBe('SERVING');
  });

  it.each([-3000, 3000])('reports NOT_SERVING, and why, on the node whose clock is off (%i ms) against a majority of peers, and keeps it running', async (skewMs) => {
    const logs: string[] = [];
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100'], onLog: (id, line) => id === 'n3' && logs.push(line) });
    const c = cluster;
    await Promise.all([c.start('n1'), c.start('n2'), c.start('n3', ['--clock-skew-ms', String(skewMs)])]);
    const n3 = c.address('n3');
    await waitFor(async () => (await healthCheck(n3)) === 'NOT_SERVING', 5_000, 'n3 reports NOT_SERVING');
    // Other reasons may come first (a node 3 s behind refuses its peers' beats as too far ahead).
    await waitFor(async () => (await status(n3)).notServingReasons.some((r) => r.includes('clock is off')), 5_000, 'n3 names its clock');
    const reasons = (await status(n3)).notServingReasons;
    // A peer's offset is its clock minus ours: +3000 when ours runs 3 s behind, -3000 when ahead.
    const sign = skewMs < 0 ? '\\+' : '-';
    expect(reasons.join('\n')).toMatch(
      new RegExp(`this node's clock is off by more than 500 ms against 2 of 2 peers \\(n1 ${sign}(29|30)\\d\\d ms, n2 ${sign}(29|30)\\d\\d ms\\)`),
    );
    expect(lines(logs, /is NOT_SERVING: .*clock is off/).length).toBeGreaterThanOrEqual(1);
    // Only the skewed node says so: each of the others sees one peer of two off, which is that peer's problem.
    expect(await healthCheck(c.address('n1'))).toBe('SERVING');
    expect(await healthCheck(c.address('n2'))).toBe('SERVING');
    // It keeps running (unlike stores that exit on clock skew) and keeps answering Status.
    expect(c.isRunning('n3')).toBe(true);
    expect((await status(n3)).nodeId).toBe('n3');
  });
});
