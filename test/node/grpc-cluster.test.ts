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

describe("a node attached to an application's own grpc-js server with mutual TLS", () => {
  it('checks peer calls against the caller\'s certificate in the handlers (the guard), as its own server\'s interceptor does', async () => {
    const { Server, ServerCredentials, Client, credentials, Metadata, status } = await import('@grpc/grpc-js');
    const { createCa, issueClientCertificate, issueNodeCertificate } = await import('../../src/ops/certificates.js');
    const ca = await createCa('app CA');
    const serverLeaf = await issueNodeCertificate(ca, 'replikit', 'solo');
    const [port] = await freePorts(1);
    const appServer = new Server();
    const node = await ReplicaNode.start({
      nodeId: 'solo',
      peers: [{ id: 'n2', address: '127.0.0.1:1' }],
      server: appServer,
      transportSecurity: 'mutual-tls',
      ownCertificate: serverLeaf.certPem,
    });
    started.push(node);
    const creds = ServerCredentials.createSsl(Buffer.from(ca.certPem), [{ cert_chain: Buffer.from(serverLeaf.certPem), private_key: Buffer.from(serverLeaf.keyPem) }], true);
    await new Promise<void>((resolve, reject) => appServer.bindAsync(`127.0.0.1:${port}`, creds, (e) => (e ? reject(e) : resolve())));
    const identity = (b: Buffer) => b;
    const callWith = async (leaf: { certPem: string; keyPem: string }, claimed: string) => {
      const client = new Client(`127.0.0.1:${port}`, credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(leaf.keyPem), Buffer.from(leaf.certPem)));
      const md = new Metadata();
      md.set('replikit-cluster-id', 'replikit');
      md.set('replikit-node-id', claimed);
      const outcome = await new Promise<{ code: number; details: string }>((resolve) =>
        client.makeUnaryRequest('/replikit.v1.ReplicaService/Read', identity, identity, Buffer.alloc(0), md, (err) => resolve({ code: err?.code ?? status.OK, details: err?.details ?? '' })),
      );
      client.close();
      return outcome;
    };
    const app = await callWith(await issueClientCertificate(ca, 'replikit', 'app'), 'solo');
    expect(app.code).toBe(status.PERMISSION_DENIED);
    expect(app.details).toMatch(/client app .* may not call the peer protocol/);
    const other = await callWith(await issueNodeCertificate(ca, 'other', 'solo'), 'solo');
    expect(other.code).toBe(status.FAILED_PRECONDITION);
    const impersonation = await callWith(await issueNodeCertificate(ca, 'replikit', 'n3'), 'n2');
    expect(impersonation.code).toBe(status.PERMISSION_DENIED);
    expect(impersonation.details).toMatch(/certificate is node "n3"'s/);
    // Member n2's own certificate gets through to the handler (which answers the empty request).
    const genuine = await callWith(await issueNodeCertificate(ca, 'replikit', 'n2'), 'n2');
    expect([status.PERMISSION_DENIED, status.FAILED_PRECONDITION]).not.toContain(genuine.code);
    await node.close(100);
    appServer.forceShutdown();
  });

  it('refuses to start with its own certificate naming another node', async () => {
    const { Server } = await import('@grpc/grpc-js');
    const { createCa, issueNodeCertificate } = await import('../../src/ops/certificates.js');
    const ca = await createCa('app CA');
    const wrong = await issueNodeCertificate(ca, 'replikit', 'n2');
    await expect(ReplicaNode.start({ nodeId: 'n1', server: new Server(), transportSecurity: 'mutual-tls', ownCertificate: wrong.certPem })).rejects.toThrow(
      /this node's certificate cannot be used with mutual TLS: the certificate names node n2/,
    );
  });
});
