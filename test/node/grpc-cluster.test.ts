import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaNode } from '../../src/node/replica-node.js';
import { ReplikitError } from '../../src/errors.js';
import { freePorts } from '../support/free-ports.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';

const started: ReplicaNode[] = [];

async function startCluster(size = 3): Promise<ReplicaNode[]> {
  const nodes = await startInProcessCluster(size);
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

describe('a node attached to an application\'s own grpc-js server', () => {
  it('serves beside the application\'s services and still refuses a foreign peer', async () => {
    const { Server, ServerCredentials, Client, credentials, Metadata, status } = await import('@grpc/grpc-js');
    const [port] = await freePorts(1);
    const appServer = new Server();
    const identity = (b: Buffer) => b;
    appServer.addService(
      { ping: { path: '/app.Ping/Ping', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
      { ping: (call: { request: Buffer }, cb: (e: null, r: Buffer) => void) => cb(null, call.request) },
    );
    const node = await ReplicaNode.start({ nodeId: 'solo', server: appServer });
    started.push(node);
    await new Promise<void>((resolve, reject) => appServer.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
    await node.keyspace('default').put('k', 'v');
    const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    const call = (path: string, md: InstanceType<typeof Metadata>) =>
      new Promise<number>((resolve) => client.makeUnaryRequest(path, identity, identity, Buffer.alloc(0), md, (err) => resolve(err?.code ?? status.OK)));
    expect(await call('/app.Ping/Ping', new Metadata())).toBe(status.OK);
    const foreign = new Metadata();
    foreign.set('replikit-cluster-id', 'other');
    foreign.set('replikit-node-id', 'x');
    expect(await call('/replikit.v1.ReplicaService/Read', foreign)).toBe(status.FAILED_PRECONDITION);
    const stranger = new Metadata();
    stranger.set('replikit-cluster-id', 'replikit');
    stranger.set('replikit-node-id', 'mallory');
    expect(await call('/replikit.v1.ReplicaService/Read', stranger)).toBe(status.PERMISSION_DENIED);
    client.close();
    await node.close(100);
    appServer.forceShutdown();
  });
});
