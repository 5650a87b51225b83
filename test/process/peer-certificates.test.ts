import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, LocalCluster } from '../../src/cli/local-cluster.js';
import { ClusterServiceClient, TransportSecurity, type StatusResponse } from '../../src/gen/replikit/v1/cluster_service.js';
import { ReplicaServiceClient, type ReplicateRequest } from '../../src/gen/replikit/v1/replica_service.js';
import { CLUSTER_ID_METADATA_KEY, NODE_ID_METADATA_KEY } from '../../src/interceptors/metadata-keys.js';
import { BUILT, cli } from '../support/cli.js';
import { statusOf, TestKvClient } from '../support/kv-client.js';
import { sample, scrape } from '../support/ops.js';
import { makeSpiffePki, type CertFiles, type SpiffePki } from '../support/pki.js';
import { waitFor } from '../support/status-client.js';

/**
 * Issue #19's first "Must show": with mutual TLS a peer is who its certificate says. Real serve
 * processes; forged peer calls with client certificates, another node's certificate, another
 * cluster's, malformed ones and another CA's; each refused with the right status, logged and
 * counted, and nothing they carried applied (the keyspace read back on every node). A control
 * call with the genuine certificate shows the same forged entry would have been applied.
 */

let dir: string;
let pki: SpiffePki;
let cluster: LocalCluster | undefined;
const clients: { close(): void }[] = [];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'replikit-peer-certs-'));
  pki = await makeSpiffePki(dir, 'replikit');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await cluster?.stop();
  cluster = undefined;
});

const creds = (leaf: CertFiles | undefined, ca = pki.caFile): ChannelCredentials =>
  credentials.createSsl(readFileSync(ca), leaf === undefined ? null : readFileSync(leaf.key), leaf === undefined ? null : readFileSync(leaf.cert));

function peerMetadata(claimedNodeId: string | undefined): Metadata {
  const md = new Metadata();
  md.set(CLUSTER_ID_METADATA_KEY, 'replikit');
  if (claimedNodeId !== undefined) md.set(NODE_ID_METADATA_KEY, claimedNodeId);
  return md;
}

/** An AP entry as a peer would replicate it, stamped now by `origin`. */
function forgedEntry(key: string, origin: string): ReplicateRequest {
  return {
    keyspace: 'a',
    entries: [{ key: Buffer.from(key), value: Buffer.from('forged'), version: { hlc: { wallTimeMs: BigInt(Date.now()), logical: 0 }, nodeId: origin }, tombstone: false, dependencies: undefined, originSequence: 0n }],
  };
}

type Outcome = { code: string; details: string };

function replicate(client: ReplicaServiceClient, claimed: string | undefined, request: ReplicateRequest): Promise<Outcome> {
  return new Promise((resolve) =>
    client.replicate(request, peerMetadata(claimed), { deadline: Date.now() + 3_000 }, (err) => resolve(err ? { code: statusOf(err), details: err.details } : { code: 'OK', details: '' })),
  );
}

function read(client: ReplicaServiceClient, claimed: string | undefined): Promise<Outcome> {
  return new Promise((resolve) =>
    client.read({ keyspace: 'a', keys: [Buffer.from('k0')] }, peerMetadata(claimed), { deadline: Date.now() + 3_000 }, (err) => resolve(err ? { code: statusOf(err), details: err.details } : { code: 'OK', details: '' })),
  );
}

/** Opens a stream, sends one message and resolves with how the stream ended (or OK if it stayed open and answered). */
function streamOutcome(open: () => { write(m: unknown): boolean; on(e: string, f: (x: never) => void): unknown; cancel(): void }, message: unknown): Promise<Outcome> {
  return new Promise((resolve) => {
    const stream = open();
    const timer = setTimeout(() => {
      stream.cancel();
      resolve({ code: 'OPEN', details: 'still open after 3 s' });
    }, 3_000);
    stream.on('data', () => {
      clearTimeout(timer);
      stream.cancel();
      resolve({ code: 'OK', details: '' });
    });
    stream.on('error', (err: ServiceError) => {
      clearTimeout(timer);
      resolve({ code: statusOf(err), details: err.details });
    });
    stream.write(message);
  });
}

function statusWith(address: string, c: ChannelCredentials): Promise<StatusResponse> {
  const client = new ClusterServiceClient(address, c);
  return new Promise<StatusResponse>((resolve, reject) =>
    client.status({}, new Metadata(), { deadline: Date.now() + 3_000 }, (err, res) => (err ? reject(err) : resolve(res))),
  ).finally(() => client.close());
}

describe.skipIf(!BUILT)('peers are who their certificate says (mutual TLS, SPIFFE node URIs, real serve processes)', () => {
  it('refuses peer calls made with client certificates, another node\'s, another cluster\'s, malformed ones and another CA\'s; applies nothing; logs and counts every refusal', async () => {
    const logs = new Map<string, string[]>([['n1', []], ['n2', []], ['n3', []]]);
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap'], onLog: (id, line) => logs.get(id)!.push(line) });
    const c = cluster;
    const [metricsPort] = await freePorts(1);
    const nodeArgs = async (id: string) => {
      const leaf = await pki.node(id);
      return ['--tls-cert', leaf.cert, '--tls-key', leaf.key, '--tls-ca', pki.caFile];
    };
    await Promise.all([c.start('n1', await nodeArgs('n1')), c.start('n2', [...(await nodeArgs('n2')), '--metrics-listen', `127.0.0.1:${metricsPort}`]), c.start('n3', await nodeArgs('n3'))]);

    const app = await pki.client('app');
    const appCreds = creds(app);
    const kv = (id: string) => {
      const client = new TestKvClient(c.address(id), appCreds);
      clients.push(client);
      return client;
    };
    await kv('n1').put('k0', 'genuine', { keyspace: 'a' });

    // Every member shows the identity its certificate proved, and the node runs mutual TLS.
    await waitFor(async () => (await statusWith(c.address('n1'), appCreds)).members.every((m) => m.verifiedIdentity !== ''), 5_000, 'n1 has verified every member');
    const status = await statusWith(c.address('n1'), appCreds);
    expect(status.transportSecurity).toBe(TransportSecurity.TRANSPORT_SECURITY_MUTUAL_TLS);
    expect(status.members.map((m) => [m.nodeId, m.verifiedIdentity])).toEqual([
      ['n1', 'spiffe://replikit/node/n1'],
      ['n2', 'spiffe://replikit/node/n2'],
      ['n3', 'spiffe://replikit/node/n3'],
    ]);
    const statusCli = await cli(['status', '--target', c.address('n1'), '--tls-ca', pki.caFile, '--tls-cert', app.cert, '--tls-key', app.key]);
    expect(statusCli.code, statusCli.stderr).toBe(0);
    expect(statusCli.stdout).toMatch(/mutual-tls/);
    expect(statusCli.stdout).toMatch(/spiffe:\/\/replikit\/node\/n2/);

    const n2 = c.address('n2');
    const peerClient = (leaf: CertFiles | undefined, ca?: string) => {
      const client = new ReplicaServiceClient(n2, creds(leaf, ca));
      clients.push(client);
      return client;
    };

    // 1. An application's client certificate, whatever node id it claims: Replicate, Read, Exchange, Heartbeat.
    const asApp = peerClient(app);
    for (const claimed of ['n1', 'n3', 'n2', 'n9', undefined]) {
      const r = await replicate(asApp, claimed, forgedEntry(`forged-by-app-as-${claimed ?? 'nobody'}`, claimed ?? 'n1'));
      expect(r.code, `Replicate claiming ${claimed}`).toBe('PERMISSION_DENIED');
      expect(r.details).toMatch(/client app \(spiffe:\/\/replikit\/client\/app\) may not call the peer protocol/);
      expect((await read(asApp, claimed)).code, `Read claiming ${claimed}`).toBe('PERMISSION_DENIED');
    }
    const exchange = await streamOutcome(() => asApp.exchange(peerMetadata('n1')) as never, { callId: 1n, hlc: undefined, replicate: forgedEntry('forged-by-app-on-exchange', 'n1') });
    expect(exchange.code).toBe('PERMISSION_DENIED');
    const beat = { beat: { nodeId: 'n1', clusterId: 'replikit', incarnation: 1n, sequence: 1n, sendWallTimeMs: BigInt(Date.now()) } };
    const heartbeat = await streamOutcome(() => asApp.heartbeat(peerMetadata('n1')) as never, beat);
    expect(heartbeat.code).toBe('PERMISSION_DENIED');

    // 2. n3's genuine certificate, claiming to be n1.
    const asN3 = peerClient(await pki.node('n3'));
    const impersonation = await replicate(asN3, 'n1', forgedEntry('forged-by-n3-as-n1', 'n1'));
    expect(impersonation.code).toBe('PERMISSION_DENIED');
    expect(impersonation.details).toMatch(/certificate is node "n3"'s \(spiffe:\/\/replikit\/node\/n3\), but the call claims node id "n1"/);
    expect((await streamOutcome(() => asN3.heartbeat(peerMetadata('n1')) as never, beat)).code).toBe('PERMISSION_DENIED');

    // 3. A node certificate of another cluster, from the same CA.
    const otherCluster = await replicate(peerClient(await pki.node('n1', 'other')), 'n1', forgedEntry('forged-by-other-cluster', 'n1'));
    expect(otherCluster.code).toBe('FAILED_PRECONDITION');
    expect(otherCluster.details).toMatch(/certificate is for cluster "other".*this node belongs to cluster "replikit"/);

    // 4. Malformed certificates (bad input): no SAN, two node URIs, a URI of the wrong shape.
    const malformed: [string, CertFiles, RegExp][] = [
      ['no SAN', await pki.leaf('no-san', { commonName: 'n1', dnsNames: [], ipAddresses: [] }), /no subject alternative name/],
      ['two node URIs', await pki.leaf('two-uris', { commonName: 'n1', uris: ['spiffe://replikit/node/n1', 'spiffe://replikit/node/n3'] }), /2 spiffe:\/\/ URI SANs/],
      ['wrong shape', await pki.leaf('wrong-shape', { commonName: 'n1', uris: ['spiffe://replikit/nodes/n1/extra'] }), /is not of the shape/],
    ];
    for (const [what, leaf, pattern] of malformed) {
      const r = await replicate(peerClient(leaf), 'n1', forgedEntry(`forged-${what}`, 'n1'));
      expect(r.code, what).toBe('PERMISSION_DENIED');
      expect(r.details, what).toMatch(pattern);
    }

    // 5. A node certificate from another CA: the handshake itself is refused.
    const rogue = await replicate(peerClient(await pki.rogueNode('n1'), pki.caFile), 'n1', forgedEntry('forged-by-rogue', 'n1'));
    expect(rogue.code).toBe('UNAVAILABLE');
    await waitFor(async () => logs.get('n2')!.some((l) => /refused a TLS connection from 127\.0\.0\.1:\d+: the client's certificate is not signed by this node's CA/.test(l)), 3_000, 'n2 logs the rogue handshake');

    // The control: the genuine n1 certificate claiming n1 gets the same kind of entry applied.
    const control = await replicate(peerClient(await pki.node('n1')), 'n1', forgedEntry('control-by-n1', 'n1'));
    expect(control.code).toBe('OK');
    expect((await kv('n2').get('control-by-n1', { keyspace: 'a' })).found).toBe(true);

    // Nothing forged was applied anywhere (AP replicates in the background: give it time to).
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const id of ['n1', 'n2', 'n3']) {
      for (const key of ['forged-by-app-as-n1', 'forged-by-app-as-n3', 'forged-by-app-as-nobody', 'forged-by-app-on-exchange', 'forged-by-n3-as-n1', 'forged-by-other-cluster', 'forged-no SAN', 'forged-two node URIs', 'forged-by-rogue']) {
        expect((await kv(id).get(key, { keyspace: 'a' })).found, `${key} on ${id}`).toBe(false);
      }
      expect((await kv(id).get('k0', { keyspace: 'a' })).found, `k0 on ${id}`).toBe(true);
    }

    // Logged (warn, naming the certificate) and counted.
    const refusedLines = logs.get('n2')!.filter((l) => l.includes('refused a peer call from'));
    expect(refusedLines.some((l) => /"level":"warn".*client app/.test(l))).toBe(true);
    // At most 10 lines per 10 s: a caller retrying in a loop cannot flood the log; the metrics count every one.
    expect(refusedLines.length).toBeGreaterThanOrEqual(10);
    expect(refusedLines.length).toBeLessThanOrEqual(20);
    const metrics = (await scrape(`127.0.0.1:${metricsPort}`)).body;
    const counted = (reason: string) =>
      metrics.split('\n').filter((l) => l.startsWith('replikit_peer_calls_refused_total{') && l.includes(`reason="${reason} on`)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    expect(counted('client-certificate')).toBeGreaterThanOrEqual(12);
    expect(counted('other-node')).toBeGreaterThanOrEqual(2);
    expect(counted('other-cluster')).toBeGreaterThanOrEqual(1);
    expect(counted('invalid-certificate')).toBeGreaterThanOrEqual(3);
    expect(sample(metrics, 'replikit_tls_handshakes_refused_total', { reason: 'untrusted-certificate' })).toBeGreaterThanOrEqual(1);
    expect(sample(metrics, 'replikit_transport_security', { mode: 'mutual-tls' })).toBe(1);

    // The cluster is undisturbed.
    await kv('n3').put('after', 'ok', { keyspace: 'a' });
  }, 60_000);

  it('--peer-tls-ca: peers trust their own CA; clients keep theirs, and a node certificate from the clients\' CA is refused on the peer protocol', async () => {
    mkdirSync(join(dir, 'clients'), { recursive: true });
    const clientPki = await makeSpiffePki(join(dir, 'clients'), 'replikit');
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap'] });
    const c = cluster;
    const nodeArgs = async (id: string) => {
      const leaf = await pki.node(id);
      return ['--tls-cert', leaf.cert, '--tls-key', leaf.key, '--tls-ca', clientPki.caFile, '--peer-tls-ca', pki.caFile];
    };
    await Promise.all(['n1', 'n2', 'n3'].map(async (id) => c.start(id, await nodeArgs(id))));
    const app = await clientPki.client('app');
    const kv = new TestKvClient(c.address('n1'), creds(app, pki.caFile));
    clients.push(kv);
    await kv.put('via-client-ca', 'ok', { keyspace: 'a' });
    await waitFor(async () => (await statusWith(c.address('n2'), creds(app, pki.caFile))).members.every((m) => m.verifiedIdentity !== ''), 5_000, 'n2 verified its peers');
    // Someone who can sign with the clients' CA mints a certificate for node n1.
    const forged = await clientPki.node('n1');
    const peer = new ReplicaServiceClient(c.address('n2'), creds(forged, pki.caFile));
    clients.push(peer);
    const r = await replicate(peer, 'n1', forgedEntry('forged-with-client-ca', 'n1'));
    expect(r.code).toBe('PERMISSION_DENIED');
    expect(r.details).toMatch(/peer calls need a certificate issued by the peer CA \(--peer-tls-ca\); this one was issued by "replikit test CA"/);
    const n2kv = new TestKvClient(c.address('n2'), creds(app, pki.caFile));
    clients.push(n2kv);
    expect((await n2kv.get('forged-with-client-ca', { keyspace: 'a' })).found).toBe(false);
    expect((await n2kv.get('via-client-ca', { keyspace: 'a' })).found).toBe(true);
  }, 60_000);

  it('serve refuses to start with a certificate that does not name it, names the problem, and exits 2', async () => {
    const [port] = await freePorts(1);
    const base = ['serve', '--id', 'n1', '--listen', `127.0.0.1:${port}`, '--memory', '--tls-ca', pki.caFile];
    const n3 = await pki.node('n3');
    const wrongNode = await cli([...base, '--tls-cert', n3.cert, '--tls-key', n3.key]);
    expect(wrongNode.code).toBe(2);
    expect(wrongNode.stderr).toMatch(/--tls-cert: the certificate names node n3 \(spiffe:\/\/replikit\/node\/n3\), but this is node n1 of cluster replikit: its certificate needs the URI SAN spiffe:\/\/replikit\/node\/n1/);
    const noSan = await pki.leaf('serve-no-san', { commonName: 'n1', dnsNames: [], ipAddresses: [] });
    const bare = await cli([...base, '--tls-cert', noSan.cert, '--tls-key', noSan.key]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/--tls-cert: the certificate has no subject alternative name/);
    const app = await pki.client('app');
    const clientCert = await cli([...base, '--tls-cert', app.cert, '--tls-key', app.key]);
    expect(clientCert.code).toBe(2);
    expect(clientCert.stderr).toMatch(/names client app/);
    const peerCaWithoutMutual = await cli(['serve', '--id', 'n1', '--listen', `127.0.0.1:${port}`, '--memory', '--peer-tls-ca', pki.caFile]);
    expect(peerCaWithoutMutual.code).toBe(2);
    expect(peerCaWithoutMutual.stderr).toMatch(/--peer-tls-ca needs mutual TLS/);
  }, 30_000);

  it('a node without TLS warns at start, in one line, and Status and the metrics say it runs in plaintext', async () => {
    const logs: string[] = [];
    cluster = await LocalCluster.create({ size: 1, onLog: (_id, line) => logs.push(line) });
    const [metricsPort] = await freePorts(1);
    await cluster.start('n1', ['--metrics-listen', `127.0.0.1:${metricsPort}`]);
    const warnings = logs.filter((l) => l.includes('runs without TLS'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/"level":"warn".*anyone who can reach 127\.0\.0\.1:\d+ can read and write every keyspace and act as a peer/);
    const status = await statusWith(cluster.address('n1'), credentials.createInsecure());
    expect(status.transportSecurity).toBe(TransportSecurity.TRANSPORT_SECURITY_PLAINTEXT);
    expect(status.members[0]!.verifiedIdentity).toBe('');
    expect(sample((await scrape(`127.0.0.1:${metricsPort}`)).body, 'replikit_transport_security', { mode: 'plaintext' })).toBe(1);
    const statusCli = await cli(['status', '--target', cluster.address('n1')]);
    expect(statusCli.stdout).toMatch(/plaintext/);
  }, 30_000);
});
