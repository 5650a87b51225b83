import { credentials, Metadata } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { VectorClock } from '../../src/clock/index.js';
import { KvServiceClient } from '../../src/gen/replikit/v1/kv_service.js';
import type { ReplicaNode } from '../../src/node/replica-node.js';
import { causal, type CausalKeyspace } from '../../src/policy/causal/causal.js';
import { apAsync, type ApAsyncKeyspace } from '../../src/policy/ap/ap-async.js';
import { AckLevel } from '../../src/gen/replikit/v1/kv_service.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';
import { waitFor } from '../support/status-client.js';

const started: ReplicaNode[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((n) => n.close(100)));
});

describe('requests that wait release what they hold when their caller gives up', () => {
  it('1,000 causal gets waiting on a session this replica cannot catch up with are released at once when the clients cancel', async () => {
    const nodes = await startInProcessCluster(3, () => ({ keyspaces: { c: causal() } }));
    started.push(...nodes);
    const n1 = nodes[0]!;
    await n1.serving;
    // A well-formed token naming a write of n2's that will never exist.
    const token = Buffer.from(n1.core.sessions.encode('c', VectorClock.from({ n2: 1_000_000 })));
    const client = new KvServiceClient(n1.address!, credentials.createInsecure());
    const calls = Array.from({ length: 1_000 }, () =>
      client.get({ keyspace: 'c', key: Buffer.from('k'), sessionToken: token , consistency: 0 }, new Metadata(), { deadline: Date.now() + 120_000 }, () => {}),
    );
    const policy = n1.core.policyOf('c') as CausalKeyspace;
    await waitFor(async () => policy.stats().waitingRequests === 1_000, 30_000, 'every get waits');
    for (const call of calls) call.cancel();
    const releasedMs = await waitFor(async () => policy.stats().waitingRequests === 0, 2_000, 'the waits end');
    console.log(`1,000 waiting gets released ${releasedMs.toFixed(0)} ms after their clients cancelled`);
    client.close();
  }, 60_000);

  it('AP writes waiting for an ack level a stopped peer never gives release their waiters at the deadline or when the client cancels', async () => {
    const nodes = await startInProcessCluster(3, () => ({ keyspaces: { a: apAsync() } }));
    started.push(...nodes);
    const [n1, , n3] = nodes as [ReplicaNode, ReplicaNode, ReplicaNode];
    await n1.serving;
    await n3.close(100); // ack level ALL can never be reached now
    const client = new KvServiceClient(n1.address!, credentials.createInsecure());
    const policy = n1.core.policyOf('a') as ApAsyncKeyspace;
    const put = (i: number, deadlineMs: number) =>
      client.put({ keyspace: 'a', key: Buffer.from(`k${i}`), value: Buffer.from('v'), sessionToken: Buffer.alloc(0), ack: AckLevel.ACK_LEVEL_ALL, lease: 0n }, new Metadata(), { deadline: Date.now() + deadlineMs }, () => {});
    const cancelled = Array.from({ length: 500 }, (_, i) => put(i, 120_000));
    await waitFor(async () => policy.stats().ackWaiters >= 500, 10_000, 'every put waits for its acks');
    for (const call of cancelled) call.cancel();
    await waitFor(async () => policy.stats().ackWaiters === 0, 2_000, 'cancelled puts stop waiting');
    for (let i = 0; i < 200; i++) put(1000 + i, 300);
    await waitFor(async () => policy.stats().ackWaiters > 0, 5_000, 'short puts wait');
    await waitFor(async () => policy.stats().ackWaiters === 0, 3_000, 'puts past their deadline stop waiting');
    client.close();
  }, 60_000);
});

