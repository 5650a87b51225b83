import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { status } from '@grpc/grpc-js';

/**
 * Identities bound to certificates. With mutual TLS a caller is whoever its certificate's SPIFFE
 * URI SAN says: `spiffe://<cluster-id>/node/<node-id>` for a node, `spiffe://<cluster-id>/client/<name>`
 * for an application or a person. The trust domain is the cluster id, so one CA may serve several
 * clusters without one cluster's nodes passing for another's. Everything here is pure: it reads
 * the certificate the TLS layer already verified, and does no I/O.
 */

/** Node ids, client names and cluster ids: what the config accepts for ids, nothing that needs escaping. */
const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const SPIFFE_PREFIX = 'spiffe://';

/** Who a verified certificate names. */
export type CertificateIdentity =
  | { readonly kind: 'node'; readonly clusterId: string; readonly nodeId: string; readonly uri: string }
  | { readonly kind: 'client'; readonly clusterId: string; readonly name: string; readonly uri: string };

/** The outcome of reading an identity out of a certificate. */
export type CertificateIdentityResult =
  | { readonly kind: 'ok'; readonly identity: CertificateIdentity }
  /** The certificate names nobody replikit understands; `problem` says why, for a person. */
  | { readonly kind: 'invalid'; readonly problem: string };

/** The text of an identity for messages and logs: its URI. */
export function describeIdentity(identity: CertificateIdentity): string {
  return identity.kind === 'node' ? `node ${identity.nodeId} (${identity.uri})` : `client ${identity.name} (${identity.uri})`;
}

/**
 * Splits Node's `subjectaltname` string ("URI:spiffe://a/node/n1, DNS:localhost, IP Address:1.2.3.4")
 * into entries. Node quotes a value holding a comma or a quote as a JSON string, so a crafted
 * SAN cannot smuggle a second URI entry into one value.
 */
export function subjectAltNames(subjectaltname: string | undefined): { type: string; value: string }[] {
  const entries: { type: string; value: string }[] = [];
  if (subjectaltname === undefined || subjectaltname === '') return entries;
  let rest = subjectaltname;
  while (rest.length > 0) {
    const colon = rest.indexOf(':');
    if (colon < 0) break;
    const type = rest.slice(0, colon).trim();
    rest = rest.slice(colon + 1);
    let value: string;
    if (rest.startsWith('"')) {
      // A JSON string: find its closing quote, skipping escaped characters.
      let end = 1;
      while (end < rest.length && rest[end] !== '"') end += rest[end] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(rest.slice(0, end + 1)) as string;
      } catch {
        value = rest.slice(1, end);
      }
      rest = rest.slice(end + 1);
      const comma = rest.indexOf(',');
      rest = comma < 0 ? '' : rest.slice(comma + 1);
    } else {
      const comma = rest.indexOf(', ');
      value = comma < 0 ? rest : rest.slice(0, comma);
      rest = comma < 0 ? '' : rest.slice(comma + 2);
    }
    entries.push({ type, value });
  }
  return entries;
}

/**
 * The identity a certificate carries: exactly one SPIFFE URI SAN, of the node or the client shape.
 * No SAN, no SPIFFE URI, two of them, or a URI of another shape is `invalid`, saying which.
 */
export function identityOfSubjectAltName(subjectaltname: string | undefined): CertificateIdentityResult {
  const names = subjectAltNames(subjectaltname);
  if (names.length === 0) {
    return { kind: 'invalid', problem: `the certificate has no subject alternative name; replikit needs a URI SAN ${SPIFFE_PREFIX}<cluster-id>/node/<node-id> or ${SPIFFE_PREFIX}<cluster-id>/client/<name>` };
  }
  const spiffe = names.filter((n) => n.type === 'URI' && n.value.toLowerCase().startsWith(SPIFFE_PREFIX));
  if (spiffe.length === 0) {
    return { kind: 'invalid', problem: `the certificate has no ${SPIFFE_PREFIX} URI SAN (it names ${names.map((n) => `${n.type}:${n.value}`).slice(0, 4).join(', ')})` };
  }
  if (spiffe.length > 1) {
    return { kind: 'invalid', problem: `the certificate has ${spiffe.length} ${SPIFFE_PREFIX} URI SANs (${spiffe.map((n) => n.value).slice(0, 4).join(', ')}); a certificate names exactly one identity` };
  }
  const uri = spiffe[0]!.value;
  const parts = uri.slice(SPIFFE_PREFIX.length).split('/');
  const [clusterId, role, name] = parts;
  const shapeProblem = `the URI SAN ${JSON.stringify(uri)} is not of the shape ${SPIFFE_PREFIX}<cluster-id>/node/<node-id> or ${SPIFFE_PREFIX}<cluster-id>/client/<name> (each part 1 to 64 of [A-Za-z0-9._-])`;
  if (parts.length !== 3 || clusterId === undefined || name === undefined || !NAME_PATTERN.test(clusterId) || !NAME_PATTERN.test(name)) {
    return { kind: 'invalid', problem: shapeProblem };
  }
  if (role === 'node') return { kind: 'ok', identity: { kind: 'node', clusterId, nodeId: name, uri } };
  if (role === 'client') return { kind: 'ok', identity: { kind: 'client', clusterId, name, uri } };
  return { kind: 'invalid', problem: shapeProblem };
}

/** The SPIFFE id of node `nodeId` in cluster `clusterId`: the URI SAN its certificate names. */
export function nodeSpiffeId(clusterId: string, nodeId: string): string {
  return `${SPIFFE_PREFIX}${clusterId}/node/${nodeId}`;
}

/** The SPIFFE id of client `name` in cluster `clusterId`. */
export function clientSpiffeId(clusterId: string, name: string): string {
  return `${SPIFFE_PREFIX}${clusterId}/client/${name}`;
}

/** {@link identityOfSubjectAltName} of a PEM or DER certificate (serve checks its own with it). */
export function identityOfCertificate(certificate: string | Buffer): CertificateIdentityResult {
  let subjectAltName: string | undefined;
  try {
    subjectAltName = new X509Certificate(certificate).subjectAltName;
  } catch (err: unknown) {
    return { kind: 'invalid', problem: `not a certificate: ${err instanceof Error ? err.message : String(err)}` };
  }
  return identityOfSubjectAltName(subjectAltName);
}

/** What grpc-js's `getAuthContext()` answers (grpc-js does not export the type). */
export interface CallAuthContext {
  readonly transportSecurityType?: string;
  readonly sslPeerCertificate?: PeerCertificate;
}

/**
 * The certificate the caller presented on this connection, when it presented one: grpc-js's auth
 * context holds what Node's TLS socket verified. Undefined on plaintext and on TLS without client
 * certificates (one-way TLS), where no identity can be verified.
 */
export function callerCertificate(authContext: CallAuthContext | null | undefined): PeerCertificate | undefined {
  const certificate = authContext?.sslPeerCertificate;
  // Node hands an empty object when the other side sent no certificate.
  if (certificate === undefined || certificate === null || certificate.raw === undefined) return undefined;
  return certificate;
}

/**
 * Whatever decides which certificates the peer CA issued: an {@link IssuerCheck}, or one that
 * follows the CA file as it is replaced (ops/tls-reload.ts), so it is a shape, not the class.
 */
export interface IssuerTrust {
  issued(certificate: PeerCertificate): boolean;
}

/** A CA that certificates must be issued by: the peers' own CA when it differs from the clients' (`--peer-tls-ca`). */
export class IssuerCheck implements IssuerTrust {
  /** Certificates checked are remembered by their fingerprint, up to this many (a cluster has few peers). */
  static readonly MAX_KEPT = 256;
  readonly #cas: X509Certificate[];
  readonly #verdicts = new Map<string, boolean>();

  /** `pem` may hold several CA certificates (a bundle, as during a CA rotation). */
  constructor(pem: string | Buffer) {
    const text = pem.toString();
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    this.#cas = blocks.map((block) => new X509Certificate(block));
    if (this.#cas.length === 0) throw new Error('no certificate in the peer CA file');
  }

  /** True when one of the CAs issued (and signed) `certificate`. */
  issued(certificate: PeerCertificate): boolean {
    const key = certificate.fingerprint256;
    const known = this.#verdicts.get(key);
    if (known !== undefined) return known;
    let verdict = false;
    try {
      const leaf = new X509Certificate(certificate.raw);
      verdict = this.#cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
    } catch {
      verdict = false;
    }
    if (this.#verdicts.size >= IssuerCheck.MAX_KEPT) this.#verdicts.clear();
    this.#verdicts.set(key, verdict);
    return verdict;
  }
}

/** What a peer call's certificate must satisfy. */
export interface PeerCertificatePolicy {
  /** This node's cluster: a node certificate of another is FAILED_PRECONDITION. */
  readonly clusterId: string;
  /** With separate peer trust (`--peer-tls-ca`): peer calls need a certificate this CA issued. */
  readonly peerIssuer?: IssuerTrust;
}

/** A refused peer call: its status and a message naming what the certificate says and what the call claims. */
export interface CertificateRefusal {
  readonly code: typeof status.PERMISSION_DENIED | typeof status.FAILED_PRECONDITION;
  /** Stable, for metrics: `invalid-certificate`, `client-certificate`, `other-cluster`, `other-node`, `untrusted-issuer`. */
  readonly reason: string;
  readonly message: string;
}

/**
 * Checks a peer call (ReplicaService) against the caller's certificate: it must be a node
 * certificate of this cluster naming the very node id the call claims in its metadata. Without a
 * certificate (plaintext, one-way TLS) there is nothing to check and the metadata is all there is.
 */
export function checkPeerCertificate(
  certificate: PeerCertificate | undefined,
  claimedNodeId: string | undefined,
  policy: PeerCertificatePolicy,
): CertificateRefusal | undefined {
  if (certificate === undefined) return undefined;
  const claim = claimedNodeId === undefined ? 'no node id' : `node id ${JSON.stringify(claimedNodeId)}`;
  if (policy.peerIssuer !== undefined && !policy.peerIssuer.issued(certificate)) {
    return {
      code: status.PERMISSION_DENIED,
      reason: 'untrusted-issuer',
      message: `peer calls need a certificate issued by the peer CA (--peer-tls-ca); this one was issued by ${JSON.stringify(issuerName(certificate))}`,
    };
  }
  const read = identityOfSubjectAltName(certificate.subjectaltname);
  if (read.kind === 'invalid') {
    return { code: status.PERMISSION_DENIED, reason: 'invalid-certificate', message: `refused a peer call claiming ${claim}: ${read.problem}` };
  }
  const identity = read.identity;
  if (identity.kind === 'client') {
    return {
      code: status.PERMISSION_DENIED,
      reason: 'client-certificate',
      message: `${describeIdentity(identity)} may not call the peer protocol (the call claims ${claim}); only node certificates (${SPIFFE_PREFIX}${policy.clusterId}/node/<id>) may`,
    };
  }
  if (identity.clusterId !== policy.clusterId) {
    return {
      code: status.FAILED_PRECONDITION,
      reason: 'other-cluster',
      message: `the caller's certificate is for cluster ${JSON.stringify(identity.clusterId)} (${identity.uri}), but this node belongs to cluster ${JSON.stringify(policy.clusterId)}`,
    };
  }
  if (identity.nodeId !== claimedNodeId) {
    return {
      code: status.PERMISSION_DENIED,
      reason: 'other-node',
      message: `the caller's certificate is node ${JSON.stringify(identity.nodeId)}'s (${identity.uri}), but the call claims ${claim}`,
    };
  }
  return undefined;
}

function issuerName(certificate: PeerCertificate): string {
  const issuer = certificate.issuer as unknown as Record<string, string | string[]> | undefined;
  const cn = issuer?.CN;
  return Array.isArray(cn) ? cn.join(',') : (cn ?? 'an unknown issuer');
}

/**
 * Checks this node's own certificate at start: it must name this node of this cluster, or every
 * peer would refuse it. Returns the problem in words, or undefined when it is right.
 */
export function checkOwnNodeCertificate(certificatePem: string | Buffer, clusterId: string, nodeId: string): string | undefined {
  const read = identityOfCertificate(certificatePem);
  if (read.kind === 'invalid') return read.problem;
  const identity = read.identity;
  const expected = nodeSpiffeId(clusterId, nodeId);
  if (identity.kind !== 'node' || identity.clusterId !== clusterId || identity.nodeId !== nodeId) {
    return `the certificate names ${describeIdentity(identity)}, but this is node ${nodeId} of cluster ${clusterId}: its certificate needs the URI SAN ${expected}`;
  }
  return undefined;
}
