import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { Metadata, Server, status, type experimental, type ServiceError } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ClusterServiceClient, ClusterServiceService } from '../../src/gen/replikit/v1/cluster_service.js';
import { createCa, issueClientCertificate, issueNodeCertificate, type CertificateAuthority, type PemPair } from '../../src/ops/certificates.js';
import { ReloadingTls, type ReloadingTlsFiles } from '../../src/ops/tls-reload.js';
import { TlsConfigError } from '../../src/ops/tls.js';

/**
 * ReloadingTls with real certificates in real files: what a reload applies, what it refuses (and
 * that a refusal keeps everything in force), that listeners hear of each applied change, and that
 * a running grpc-js server and peer channels built from it follow the files.
 */

const CLUSTER = 'c1';
let root: string;
let dir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let files: Required<ReloadingTlsFiles>;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'replikit-tls-reload-'));
  ca = await createCa('test CA');
  otherCa = await createCa('other CA');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

let serial = 0;
beforeEach(() => {
  dir = mkdtempSync(join(root, `case-${++serial}-`));
  files = { certFile: join(dir, 'n1.pem'), keyFile: join(dir, 'n1.key'), caFile: join(dir, 'ca.pem'), peerCaFile: join(dir, 'peer-ca.pem') };
});

function writeLeaf(pair: PemPair, to: { certFile: string; keyFile: string } = files): void {
  writeFileSync(to.certFile, pair.certPem);
  writeFileSync(to.keyFile, pair.keyPem);
}

const serialOf = (pair: PemPair) => new X509Certificate(pair.certPem).serialNumber;
const nextTick = () => new Promise((resolve) => process.nextTick(resolve));

/** What Node's TLS socket hands the peer trust: the certificate's DER and fingerprint. */
function peerCertificateOf(pem: string): PeerCertificate {
  const x = new X509Certificate(pem);
  return { raw: x.raw, fingerprint256: x.fingerprint256 } as unknown as PeerCertificate;
}

/** Mutual TLS: node n1's certificate, the one CA, no separate peer CA. */
async function mutualTls(): Promise<{ tls: ReloadingTls; leaf: PemPair }> {
  const leaf = await issueNodeCertificate(ca, CLUSTER, 'n1');
  writeLeaf(leaf);
  writeFileSync(files.caFile, ca.certPem);
  return { tls: new ReloadingTls({ certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile }, { clusterId: CLUSTER, nodeId: 'n1' }), leaf };
}

describe('ReloadingTls: reading, applying and refusing', () => {
  it('starts from the files; listeners get the identity and the CA in force on the next tick, as grpc-js expects', async () => {
    const { tls, leaf } = await mutualTls();
    expect(tls.serialNumber).toBe(serialOf(leaf));
    expect(tls.notAfter.getTime()).toBe(new Date(new X509Certificate(leaf.certPem).validTo).getTime());
    const identities: (experimental.IdentityCertificateUpdate | null)[] = [];
    const cas: (experimental.CaCertificateUpdate | null)[] = [];
    tls.serverCertificates.addIdentityCertificateListener((u) => identities.push(u));
    tls.serverCertificates.addCaCertificateListener((u) => cas.push(u));
    expect(identities).toEqual([]);
    await nextTick();
    expect(identities.map((u) => u?.certificate.toString())).toEqual([leaf.certPem]);
    expect(identities[0]?.privateKey.toString()).toBe(leaf.keyPem);
    expect(cas.map((u) => u?.caCertificate.toString())).toEqual([ca.certPem]);
  });

  it('unchanged files are "unchanged" and tell no listener anything', async () => {
    const { tls, leaf } = await mutualTls();
    const heard: unknown[] = [];
    tls.peerCertificates.addIdentityCertificateListener((u) => heard.push(u));
    await nextTick();
    heard.length = 0;
    // Rewritten with the same bytes: still unchanged.
    writeLeaf(leaf);
    expect(tls.reload()).toEqual({ outcome: 'unchanged' });
    expect(heard).toEqual([]);
  });

  it('applies a renewed certificate and key together: new serial, and both providers\' identity listeners get it', async () => {
    const { tls, leaf } = await mutualTls();
    const server: string[] = [];
    const peer: string[] = [];
    const cas: unknown[] = [];
    tls.serverCertificates.addIdentityCertificateListener((u) => server.push(u!.certificate.toString()));
    tls.peerCertificates.addIdentityCertificateListener((u) => peer.push(u!.certificate.toString()));
    tls.serverCertificates.addCaCertificateListener((u) => cas.push(u));
    await nextTick();
    const renewed = await issueNodeCertificate(ca, CLUSTER, 'n1', { days: 1 });
    writeLeaf(renewed);
    expect(tls.reload()).toEqual({ outcome: 'applied' });
    expect(tls.serialNumber).toBe(serialOf(renewed));
    expect(tls.serialNumber).not.toBe(serialOf(leaf));
    expect(tls.notAfter.getTime()).toBeLessThan(Date.now() + 24 * 3_600_000);
    expect(server).toEqual([leaf.certPem, renewed.certPem]);
    expect(peer).toEqual([leaf.certPem, renewed.certPem]);
    // The CA did not change: its listeners heard only the first value.
    expect(cas).toHaveLength(1);
    expect(tls.reload()).toEqual({ outcome: 'unchanged' });
  });

  it('refuses a rotation caught half way (new certificate, old key), keeps the old pair, and applies once the key arrives', async () => {
    const { tls, leaf } = await mutualTls();
    const heard: string[] = [];
    tls.serverCertificates.addIdentityCertificateListener((u) => heard.push(u!.certificate.toString()));
    await nextTick();
    const renewed = await issueNodeCertificate(ca, CLUSTER, 'n1');
    writeFileSync(files.certFile, renewed.certPem);
    const half = tls.reload();
    expect(half.outcome).toBe('refused');
    expect(half.outcome === 'refused' && half.problem).toMatch(new RegExp(`^--tls-key: ${files.keyFile} is not the private key of the certificate in ${files.certFile}`));
    expect(tls.serialNumber).toBe(serialOf(leaf));
    expect(tls.serverCertificates.identityUpdate().certificate.toString()).toBe(leaf.certPem);
    expect(tls.serverCertificates.identityUpdate().privateKey.toString()).toBe(leaf.keyPem);
    expect(heard).toEqual([leaf.certPem]);
    // Refused again while the key is still missing, never half applied.
    expect(tls.reload().outcome).toBe('refused');
    writeFileSync(files.keyFile, renewed.keyPem);
    expect(tls.reload()).toEqual({ outcome: 'applied' });
    expect(tls.serialNumber).toBe(serialOf(renewed));
    expect(heard).toEqual([leaf.certPem, renewed.certPem]);
  });

  it('refuses unreadable and non-PEM files, another certificate\'s key, a certificate naming another node, and a CA file without a certificate, keeping everything in force', async () => {
    const { tls, leaf } = await mutualTls();
    const heard: unknown[] = [];
    tls.serverCertificates.addIdentityCertificateListener((u) => heard.push(u));
    tls.serverCertificates.addCaCertificateListener((u) => heard.push(u));
    await nextTick();
    heard.length = 0;
    const restore = () => {
      writeLeaf(leaf);
      writeFileSync(files.caFile, ca.certPem);
      expect(tls.reload()).toEqual({ outcome: 'unchanged' });
    };
    const refusedWith = (pattern: RegExp) => {
      const result = tls.reload();
      expect(result.outcome).toBe('refused');
      expect(result.outcome === 'refused' ? result.problem : '').toMatch(pattern);
      expect(tls.serialNumber).toBe(serialOf(leaf));
      expect(tls.serverCertificates.caUpdate()?.caCertificate.toString()).toBe(ca.certPem);
      restore();
    };

    unlinkSync(files.keyFile);
    refusedWith(new RegExp(`^--tls-key: cannot read ${files.keyFile}: ENOENT`));
    writeFileSync(files.certFile, 'not a certificate\n');
    refusedWith(new RegExp(`^--tls-cert: ${files.certFile} is not a PEM file`));
    writeFileSync(files.keyFile, (await issueNodeCertificate(ca, CLUSTER, 'n2')).keyPem);
    refusedWith(/^--tls-key: .* is not the private key of the certificate/);
    writeLeaf(await issueNodeCertificate(ca, CLUSTER, 'n2'));
    refusedWith(/^--tls-cert: .*: the certificate names node n2 \(spiffe:\/\/c1\/node\/n2\), but this is node n1 of cluster c1/);
    writeLeaf(await issueNodeCertificate(ca, 'other-cluster', 'n1'));
    refusedWith(/but this is node n1 of cluster c1/);
    writeLeaf(await issueClientCertificate(ca, CLUSTER, 'n1'));
    refusedWith(/the certificate names client n1/);
    // PEM, but a key where the CA certificate should be.
    writeFileSync(files.caFile, leaf.keyPem);
    refusedWith(new RegExp(`^--tls-ca: ${files.caFile} holds no certificate`));
    unlinkSync(files.caFile);
    refusedWith(/^--tls-ca: cannot read/);
    expect(heard).toEqual([]);
  });

  it('with one-way TLS (no CA) a certificate naming another node is fine: only mutual TLS binds identities', async () => {
    writeLeaf(await issueNodeCertificate(ca, CLUSTER, 'n1'));
    const tls = new ReloadingTls({ certFile: files.certFile, keyFile: files.keyFile }, { clusterId: CLUSTER, nodeId: 'n1' });
    expect(tls.mutual).toBe(false);
    expect(tls.serverCertificates.caUpdate()).toBeNull();
    const other = await issueNodeCertificate(ca, CLUSTER, 'n2');
    writeLeaf(other);
    expect(tls.reload()).toEqual({ outcome: 'applied' });
    expect(tls.serialNumber).toBe(serialOf(other));
  });

  it('refuses to start from files that cannot be used, naming the flag', async () => {
    const leaf = await issueNodeCertificate(ca, CLUSTER, 'n1');
    writeFileSync(files.certFile, leaf.certPem);
    writeFileSync(files.keyFile, (await issueNodeCertificate(ca, CLUSTER, 'n1')).keyPem);
    const start = (f: ReloadingTlsFiles) => () => new ReloadingTls(f, { clusterId: CLUSTER, nodeId: 'n1' });
    expect(start({ certFile: files.certFile, keyFile: files.keyFile })).toThrow(TlsConfigError);
    expect(start({ certFile: files.certFile, keyFile: files.keyFile })).toThrow(/^--tls-key: .* is not the private key/);
    writeFileSync(files.keyFile, leaf.keyPem);
    expect(start({ certFile: files.certFile, keyFile: files.keyFile, peerCaFile: files.caFile })).toThrow(/--peer-tls-ca needs --tls-ca/);
  });

  it('the peer trust follows the peer CA file; the server trusts both CAs, peer calls the peer CA', async () => {
    writeLeaf(await issueNodeCertificate(ca, CLUSTER, 'n1'));
    writeFileSync(files.caFile, ca.certPem);
    writeFileSync(files.peerCaFile, ca.certPem);
    const tls = new ReloadingTls(files, { clusterId: CLUSTER, nodeId: 'n1' });
    const fromCa = peerCertificateOf((await issueNodeCertificate(ca, CLUSTER, 'n2')).certPem);
    const fromOther = peerCertificateOf((await issueNodeCertificate(otherCa, CLUSTER, 'n2')).certPem);
    expect(tls.peerTrust!.issued(fromCa)).toBe(true);
    expect(tls.peerTrust!.issued(fromOther)).toBe(false);
    const peerCas: string[] = [];
    tls.peerCertificates.addCaCertificateListener((u) => peerCas.push(u!.caCertificate.toString()));
    await nextTick();

    // Peers move to the other CA: the check follows at once (even for a certificate it has judged).
    writeFileSync(files.peerCaFile, otherCa.certPem);
    expect(tls.reload()).toEqual({ outcome: 'applied' });
    expect(tls.peerTrust!.issued(fromOther)).toBe(true);
    expect(tls.peerTrust!.issued(fromCa)).toBe(false);
    expect(peerCas).toEqual([ca.certPem, otherCa.certPem]);
    const serverCa = tls.serverCertificates.caUpdate()!.caCertificate.toString();
    expect(serverCa).toContain(ca.certPem.trim());
    expect(serverCa).toContain(otherCa.certPem.trim());

    // A peer CA file that holds no certificate is refused; the trust stays.
    writeFileSync(files.peerCaFile, '-----BEGIN NOTHING-----\n');
    expect(tls.reload()).toMatchObject({ outcome: 'refused', problem: expect.stringMatching(/^--peer-tls-ca: .* holds no certificate/) });
    expect(tls.peerTrust!.issued(fromOther)).toBe(true);
  });

  it('without a peer CA file there is no separate peer trust, and peer calls trust the one CA', async () => {
    const { tls } = await mutualTls();
    expect(tls.peerTrust).toBeUndefined();
    expect(tls.peerCertificates.caUpdate()?.caCertificate.toString()).toBe(ca.certPem);
  });
});

describe('grpc-js servers and channels built from ReloadingTls follow the files', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const close of closers.splice(0)) close();
  });

  /** Node n3 serving ClusterService/Status with mutual TLS from its files in `at`. */
  async function serveN3(at: string, leaf: PemPair, caPem: string): Promise<{ tls: ReloadingTls; port: number; files: ReloadingTlsFiles }> {
    const n3 = { certFile: join(at, 'n3.pem'), keyFile: join(at, 'n3.key'), caFile: join(at, 'n3-ca.pem') };
    writeLeaf(leaf, n3);
    writeFileSync(n3.caFile, caPem);
    const tls = new ReloadingTls(n3, { clusterId: CLUSTER, nodeId: 'n3' });
    const server = new Server();
    server.addService(ClusterServiceService, {
      status: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, { nodeId: 'n3', clusterId: CLUSTER, incarnation: 0n, members: [], keyspaces: [], version: '', notServingReasons: [], transportSecurity: 0 }),
    } as never);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', tls.serverCredentials(), (e, p) => (e ? reject(e) : resolve(p))));
    closers.push(() => server.forceShutdown());
    return { tls, port, files: n3 };
  }

  /** A raw TLS handshake with a client certificate: the server certificate's serial, and the socket. */
  function handshake(port: number, client: PemPair, caPem: string): Promise<{ serial: string; socket: TLSSocket }> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, ca: caPem, cert: client.certPem, key: client.keyPem, ALPNProtocols: ['h2'] }, () =>
        resolve({ serial: socket.getPeerCertificate().serialNumber, socket }),
      );
      socket.once('error', reject);
      closers.push(() => socket.destroy());
    });
  }

  it('a running server hands new handshakes the renewed certificate, while a connection already open keeps going', async () => {
    const first = await issueNodeCertificate(ca, CLUSTER, 'n3');
    const { tls, port, files: n3 } = await serveN3(dir, first, ca.certPem);
    const app = await issueClientCertificate(ca, CLUSTER, 'app');
    const before = await handshake(port, app, ca.certPem);
    expect(before.serial).toBe(serialOf(first));
    const renewed = await issueNodeCertificate(ca, CLUSTER, 'n3');
    writeLeaf(renewed, n3);
    expect(tls.reload()).toEqual({ outcome: 'applied' });
    expect((await handshake(port, app, ca.certPem)).serial).toBe(serialOf(renewed));
    expect(before.socket.destroyed).toBe(false);
    expect(before.socket.getPeerCertificate().serialNumber).toBe(serialOf(first));
  });

  it('peer channels: a channel made before a CA rotation trusts the new CA on its next handshake, and the server identity check still names the node called', async () => {
    // n3 moves to another CA first; n1 still trusts only the old one.
    const { port } = await serveN3(dir, await issueNodeCertificate(otherCa, CLUSTER, 'n3'), `${ca.certPem}\n${otherCa.certPem}`);
    writeLeaf(await issueNodeCertificate(ca, CLUSTER, 'n1'));
    writeFileSync(files.caFile, ca.certPem);
    const n1 = new ReloadingTls({ certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile }, { clusterId: CLUSTER, nodeId: 'n1' });
    const statusOf = (client: ClusterServiceClient) =>
      new Promise<ServiceError | null>((resolve) => client.status({}, new Metadata(), { deadline: Date.now() + 3_000 }, (err) => resolve(err)));
    const call = (nodeId: string) => {
      const client = new ClusterServiceClient(`127.0.0.1:${port}`, n1.peerChannelCredentials({ clusterId: CLUSTER, nodeId }));
      return statusOf(client).finally(() => client.close());
    };
    // A peer's channel is made once and lives on: it must follow the files, not what they held when it was made.
    const toN3 = new ClusterServiceClient(`127.0.0.1:${port}`, n1.peerChannelCredentials({ clusterId: CLUSTER, nodeId: 'n3' }));
    closers.push(() => toN3.close());
    expect((await statusOf(toN3))?.code).toBe(status.UNAVAILABLE);
    // n1's CA file becomes the bundle of both: the channel's next handshake (after its reconnect backoff) trusts n3's certificate.
    writeFileSync(files.caFile, `${ca.certPem}\n${otherCa.certPem}`);
    expect(n1.reload()).toEqual({ outcome: 'applied' });
    let outcome: ServiceError | null = null;
    for (const until = Date.now() + 8_000; Date.now() < until; await new Promise((resolve) => setTimeout(resolve, 100))) {
      outcome = await statusOf(toN3);
      if (outcome === null) break;
    }
    expect(outcome).toBeNull();
    expect(await call('n3')).toBeNull();
    const wrongNode = await call('n2');
    expect(wrongNode?.code).toBe(status.UNAVAILABLE);
    expect(wrongNode?.details).toMatch(/peer n2's server certificate at 127\.0\.0\.1 names node n3 \(spiffe:\/\/c1\/node\/n3\), not spiffe:\/\/c1\/node\/n2/);
  });
});
