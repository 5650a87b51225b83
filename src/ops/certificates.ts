import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { clientSpiffeId, nodeSpiffeId } from '../interceptors/certificate-identity.js';

/**
 * Certificates for development and tests: a CA, node certificates and client certificates with
 * the SPIFFE URIs replikit checks (`spiffe://<cluster>/node/<id>`, `spiffe://<cluster>/client/<name>`).
 * Production deployments get the same shape from cert-manager or SPIRE (docs/security.md).
 * Keys are ECDSA P-256: fast to make and to handshake with, and what SPIRE issues by default.
 */

// The library's types name the DOM's Crypto, absent from this project's lib: Node's webcrypto is it.
x509.cryptoProvider.set(webcrypto as never);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A certificate and its private key, both PEM. */
export interface PemPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** What a leaf certificate says about its holder. */
export interface LeafSubject {
  /** The subject's common name (informational: replikit reads only the URI SANs). */
  readonly commonName: string;
  /** URI SANs, e.g. the SPIFFE id; any number, so tests can make malformed certificates too. */
  readonly uris?: readonly string[];
  /** DNS SANs the certificate is valid for as a server. @default ['localhost'] */
  readonly dnsNames?: readonly string[];
  /** IP SANs the certificate is valid for as a server. @default ['127.0.0.1', '::1'] */
  readonly ipAddresses?: readonly string[];
  /** Days of validity. @default 365 */
  readonly days?: number;
  /** Valid from this moment (tests make expired certificates with it). @default now, less an hour of clock skew */
  readonly notBefore?: Date;
}

// Spelled where identities are read (certificate-identity.ts), written here.
export { clientSpiffeId, nodeSpiffeId };

/** A signing CA: its certificate, its key, and the same as PEM for writing out. */
export interface CertificateAuthority extends PemPair {
  readonly certificate: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyPemOf(key: CryptoKey): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
}

/** Reads a CA written by {@link createCa} (or any ECDSA P-256 CA with a PKCS#8 key) back for signing. */
export async function loadCa(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  const certificate = new x509.X509Certificate(certPem);
  const der = x509.PemConverter.decodeFirst(keyPem);
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, true, ['sign']);
  const publicKey = (await certificate.publicKey.export(KEY_ALGORITHM, ['verify'])) as CryptoKey;
  return { certificate, keys: { privateKey, publicKey }, certPem, keyPem };
}

/** A self-signed CA valid for `days` (default ten years: a development CA outlives its leaves). */
export async function createCa(commonName: string, days = 3650): Promise<CertificateAuthority> {
  const keys = await newKeys();
  const now = Date.now();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${escapeDn(commonName)}`,
    notBefore: new Date(now - HOUR_MS),
    notAfter: new Date(now + days * DAY_MS),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificate, keys, certPem: certificate.toString('pem'), keyPem: await keyPemOf(keys.privateKey) };
}

/**
 * A leaf certificate signed by `ca`, usable both as a server and as a client certificate: a node
 * serves with it and calls its peers with it, and the CLI can present it too.
 */
export async function issueCertificate(ca: CertificateAuthority, subject: LeafSubject): Promise<PemPair> {
  const keys = await newKeys();
  const notBefore = subject.notBefore ?? new Date(Date.now() - HOUR_MS);
  const names: x509.JsonGeneralName[] = [
    ...(subject.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(subject.dnsNames ?? ['localhost']).map((value) => ({ type: 'dns' as const, value })),
    ...(subject.ipAddresses ?? ['127.0.0.1', '::1']).map((value) => ({ type: 'ip' as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  // A certificate without any name gets no SAN extension at all (an empty one is invalid DER).
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${escapeDn(subject.commonName)}`,
    issuer: ca.certificate.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + (subject.days ?? 365) * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
  return { certPem: certificate.toString('pem'), keyPem: await keyPemOf(keys.privateKey) };
}

/** A node's certificate: the node URI plus the DNS names and addresses it serves on. */
export function issueNodeCertificate(
  ca: CertificateAuthority,
  clusterId: string,
  nodeId: string,
  options: Omit<LeafSubject, 'commonName' | 'uris'> = {},
): Promise<PemPair> {
  return issueCertificate(ca, { ...options, commonName: nodeId, uris: [nodeSpiffeId(clusterId, nodeId)] });
}

/** A client's certificate: the client URI only (a client serves nothing, so no DNS or IP names). */
export function issueClientCertificate(
  ca: CertificateAuthority,
  clusterId: string,
  name: string,
  options: Omit<LeafSubject, 'commonName' | 'uris'> = {},
): Promise<PemPair> {
  return issueCertificate(ca, { dnsNames: [], ipAddresses: [], ...options, commonName: name, uris: [clientSpiffeId(clusterId, name)] });
}

/** A positive 128-bit serial (RFC 5280 allows up to 20 octets; a leading 0x01 keeps it positive). */
function randomSerial(): string {
  return '01' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex');
}

/** Escapes the characters RFC 4514 reserves in a DN attribute value. */
function escapeDn(value: string): string {
  return value.replace(/[,+"\\<>;=]/g, (c) => `\\${c}`);
}
