import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { Server, ServerCredentials, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import { ClusterServiceClient, ClusterServiceService } from '../../src/gen/replikit/v1/cluster_service.js';
import {
  checkOwnNodeCertificate,
  checkPeerCertificate,
  identityOfCertificate,
  identityOfSubjectAltName,
  IssuerCheck,
  subjectAltNames,
} from '../../src/interceptors/certificate-identity.js';
import { createCa, issueCertificate, issueClientCertificate, issueNodeCertificate, type CertificateAuthority } from '../../src/ops/certificates.js';
import { peerChannelCredentialsOf } from '../../src/ops/tls.js';

/** What Node's TLS socket hands grpc-js for a certificate: enough of a PeerCertificate for the checks. */
function peerCertificateOf(pem: string): PeerCertificate {
  const x = new X509Certificate(pem);
  return { raw: x.raw, subjectaltname: x.subjectAltName, fingerprint256: x.fingerprint256, issuer: { CN: x.issuer.replace(/^CN=/, '') } } as unknown as PeerCertificate;
}

let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
beforeAll(async () => {
  ca = await createCa('test CA');
  otherCa = await createCa('other CA');
});

describe('reading identities out of certificates', () => {
  it('splits Node\'s subjectaltname string, JSON-quoted values included, so a crafted value cannot smuggle a second URI', () => {
    expect(subjectAltNames('URI:spiffe://c/node/n1, DNS:localhost, IP Address:127.0.0.1')).toEqual([
      { type: 'URI', value: 'spiffe://c/node/n1' },
      { type: 'DNS', value: 'localhost' },
      { type: 'IP Address', value: '127.0.0.1' },
    ]);
    expect(subjectAltNames('URI:"spiffe://c/node/n1, URI:spiffe://c/node/n2", DNS:x')).toEqual([
      { type: 'URI', value: 'spiffe://c/node/n1, URI:spiffe://c/node/n2' },
      { type: 'DNS', value: 'x' },
    ]);
    const smuggled = identityOfSubjectAltName('URI:"spiffe://c/node/n1, URI:spiffe://c/node/n2"');
    expect(smuggled.kind).toBe('invalid');
    expect(subjectAltNames(undefined)).toEqual([]);
  });

  it('accepts exactly one SPIFFE URI of the node or client shape, and says what is wrong with anything else', async () => {
    const node = identityOfCertificate((await issueNodeCertificate(ca, 'c1', 'n1')).certPem);
    expect(node).toEqual({ kind: 'ok', identity: { kind: 'node', clusterId: 'c1', nodeId: 'n1', uri: 'spiffe://c1/node/n1' } });
    const client = identityOfCertificate((await issueClientCertificate(ca, 'c1', 'reporting')).certPem);
    expect(client).toEqual({ kind: 'ok', identity: { kind: 'client', clusterId: 'c1', name: 'reporting', uri: 'spiffe://c1/client/reporting' } });
    const problems: [string, string[] | undefined, RegExp][] = [
      ['no SAN', undefined, /no subject alternative name/],
      ['two node URIs', ['spiffe://c1/node/n1', 'spiffe://c1/node/n2'], /2 spiffe:\/\/ URI SANs \(spiffe:\/\/c1\/node\/n1, spiffe:\/\/c1\/node\/n2\); a certificate names exactly one identity/],
      ['a node URI and a client URI', ['spiffe://c1/node/n1', 'spiffe://c1/client/x'], /2 spiffe:\/\/ URI SANs/],
      ['another role', ['spiffe://c1/admin/n1'], /is not of the shape/],
      ['an extra path segment', ['spiffe://c1/node/n1/x'], /is not of the shape/],
      ['an empty node id', ['spiffe://c1/node/'], /is not of the shape/],
      ['a node id with a space', ['spiffe://c1/node/n 1'], /is not of the shape/],
      ['a https URI only', ['https://example.com/n1'], /no spiffe:\/\/ URI SAN \(it names URI:https:\/\/example.com\/n1\)/],
    ];
    for (const [what, uris, pattern] of problems) {
      const leaf = await issueCertificate(ca, { commonName: 'x', uris, dnsNames: [], ipAddresses: [] });
      const read = identityOfCertificate(leaf.certPem);
      expect(read.kind, what).toBe('invalid');
      if (read.kind === 'invalid') expect(read.problem, what).toMatch(pattern);
    }
    expect(identityOfCertificate('not a certificate')).toMatchObject({ kind: 'invalid', problem: expect.stringMatching(/^not a certificate/) });
  });
});

describe('checking a peer call against its certificate', () => {
  it('accepts only the node certificate of the node id the call claims, of this cluster', async () => {
    const n1 = peerCertificateOf((await issueNodeCertificate(ca, 'c1', 'n1')).certPem);
    const policy = { clusterId: 'c1' };
    expect(checkPeerCertificate(n1, 'n1', policy)).toBeUndefined();
    expect(checkPeerCertificate(undefined, 'n1', policy)).toBeUndefined(); // plaintext: nothing to check
    expect(checkPeerCertificate(n1, 'n2', policy)).toMatchObject({ code: status.PERMISSION_DENIED, reason: 'other-node' });
    expect(checkPeerCertificate(n1, undefined, policy)).toMatchObject({ code: status.PERMISSION_DENIED, reason: 'other-node', message: expect.stringMatching(/claims no node id/) });
    expect(checkPeerCertificate(n1, 'n1', { clusterId: 'c2' })).toMatchObject({ code: status.FAILED_PRECONDITION, reason: 'other-cluster' });
    const app = peerCertificateOf((await issueClientCertificate(ca, 'c1', 'app')).certPem);
    for (const claimed of ['n1', 'app', undefined]) {
      expect(checkPeerCertificate(app, claimed, policy)).toMatchObject({ code: status.PERMISSION_DENIED, reason: 'client-certificate' });
    }
    const bare = peerCertificateOf((await issueCertificate(ca, { commonName: 'n1', dnsNames: [], ipAddresses: [] })).certPem);
    expect(checkPeerCertificate(bare, 'n1', policy)).toMatchObject({ code: status.PERMISSION_DENIED, reason: 'invalid-certificate' });
  });

  it('with a separate peer CA, refuses node certificates the client CA issued', async () => {
    const byClientCa = peerCertificateOf((await issueNodeCertificate(otherCa, 'c1', 'n1')).certPem);
    const byPeerCa = peerCertificateOf((await issueNodeCertificate(ca, 'c1', 'n1')).certPem);
    const peerIssuer = new IssuerCheck(ca.certPem);
    expect(checkPeerCertificate(byPeerCa, 'n1', { clusterId: 'c1', peerIssuer })).toBeUndefined();
    expect(checkPeerCertificate(byClientCa, 'n1', { clusterId: 'c1', peerIssuer })).toMatchObject({
      code: status.PERMISSION_DENIED,
      reason: 'untrusted-issuer',
      message: expect.stringMatching(/issued by the peer CA \(--peer-tls-ca\); this one was issued by "other CA"/),
    });
    // A bundle of CAs (a rotation) trusts both.
    expect(checkPeerCertificate(byClientCa, 'n1', { clusterId: 'c1', peerIssuer: new IssuerCheck(ca.certPem + otherCa.certPem) })).toBeUndefined();
    expect(() => new IssuerCheck('nothing here')).toThrow(/no certificate/);
  });

  it('checks a node\'s own certificate at start', async () => {
    const n1 = (await issueNodeCertificate(ca, 'c1', 'n1')).certPem;
    expect(checkOwnNodeCertificate(n1, 'c1', 'n1')).toBeUndefined();
    expect(checkOwnNodeCertificate(n1, 'c1', 'n2')).toMatch(/names node n1 \(spiffe:\/\/c1\/node\/n1\), but this is node n2 of cluster c1: its certificate needs the URI SAN spiffe:\/\/c1\/node\/n2/);
    expect(checkOwnNodeCertificate(n1, 'c2', 'n1')).toMatch(/needs the URI SAN spiffe:\/\/c2\/node\/n1/);
    expect(checkOwnNodeCertificate((await issueClientCertificate(ca, 'c1', 'n1')).certPem, 'c1', 'n1')).toMatch(/names client n1/);
  });
});

describe("a peer's server certificate must name the node called (peerChannelCredentialsOf)", () => {
  it('connects to the node named, and refuses the handshake with a server whose certificate names another node', async () => {
    const serverLeaf = await issueNodeCertificate(ca, 'c1', 'n3');
    const clientLeaf = await issueNodeCertificate(ca, 'c1', 'n1');
    const server = new Server();
    server.addService(ClusterServiceService, {
      status: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, { nodeId: 'n3', clusterId: 'c1', incarnation: 0n, members: [], keyspaces: [], version: '', notServingReasons: [], transportSecurity: 0 }),
    } as never);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createSsl(Buffer.from(ca.certPem), [{ cert_chain: Buffer.from(serverLeaf.certPem), private_key: Buffer.from(serverLeaf.keyPem) }], true), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const tls = { ca: Buffer.from(ca.certPem), cert: Buffer.from(clientLeaf.certPem), key: Buffer.from(clientLeaf.keyPem) };
    const call = (nodeId: string) => {
      const client = new ClusterServiceClient(`127.0.0.1:${port}`, peerChannelCredentialsOf(tls, { clusterId: 'c1', nodeId }));
      return new Promise<ServiceError | null>((resolve) => client.status({}, (err) => resolve(err))).finally(() => client.close());
    };
    try {
      expect(await call('n3')).toBeNull();
      const err = await call('n2');
      expect(err?.code).toBe(status.UNAVAILABLE);
      expect(err?.details).toMatch(/peer n2's server certificate at 127\.0\.0\.1 names node n3 \(spiffe:\/\/c1\/node\/n3\), not spiffe:\/\/c1\/node\/n2/);
      // A plain TLS client (no identity check) still reaches it: the check is the peer credentials'.
      const plain = new ClusterServiceClient(`127.0.0.1:${port}`, credentials.createSsl(tls.ca, tls.key, tls.cert));
      expect(await new Promise((resolve) => plain.status({}, (e) => resolve(e))).finally(() => plain.close())).toBeNull();
    } finally {
      server.forceShutdown();
    }
  });
});
