import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaNode } from '../../src/node/replica-node.js';
import { ReplikitError } from '../../src/errors.js';
import { freePorts } from '../support/free-ports.js';

const started: ReplicaNode[] = [];

async function startCluster(size = 3): Promise<ReplicaNode[]> {
  const ports = await freePorts(size);
  const ids = ports.map((_, i) => `n${i + 1}`);
  const nodes = await Promise.all(
    ids.map((id, i) =>
      ReplicaNode.start({
        nodeId: id,
        listen: `127.0.0.1:${ports[i]}`,
        peers: ids.filter((p) => p !== id).map((p) => ({ id: p, address: `127.0.0.1:${ports[ids.indexOf(p)]}` })),
      }),
    ),
  );
  started.push(...nodes);
  return nodes;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((n) => n.close(100)));
});

describe('a CP cluster of in-process nodes over real gRPC', () => {
  it('writes through one node and reads through the others', async () => {
    const [n1, n2, n3] = await startCluster();
    await n1!.keyspace('default').put('greeting', 'hello');
    expect((await n2!.keyspace('default').get('greeting')).text()).toBe('hello');
    await n3!.keyspace('default').delete('greeting');
    expect((await n1!.keyspace('default').get('greeting')).found).toBe(false);
  });

  it('keeps serving with one node down and refuses fast with two down', async () => {
    const [n1, n2, n3] = await startCluster();
    await n1!.keyspace('default').put('k', 'v1');
    await n3!.close(100);
    await n1!.keyspace('default').put('k', 'v2');
    expect((await n2!.keyspace('default').get('k')).text()).toBe('v2');
    await n2!.close(100);
    const t0 = performance.now();
    const err = await n1!.keyspace('default').put('k', 'v3').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplikitError);
    expect((err as ReplikitError).kind).toBe('unavailable');
    expect((err as ReplikitError).message).toMatch(/quorum needs 2/);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
