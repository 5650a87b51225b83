import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createCa,
  issueCertificate,
  issueClientCertificate,
  issueNodeCertificate,
  type CertificateAuthority,
  type LeafSubject,
  type PemPair,
} from '../../src/ops/certificates.js';

/** Paths of a certificate and its key written to disk. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/**
 * A throwaway PKI for tests, made in-process (no openssl needed): a CA, a rogue CA, and SPIFFE
 * node and client certificates on demand, written as PEM files into `dir`.
 */
export interface SpiffePki {
  readonly dir: string;
  readonly clusterId: string;
  /** The CA's certificate file (what `--tls-ca` names). */
  readonly caFile: string;
  readonly ca: CertificateAuthority;
  /** Another CA nobody trusts. */
  readonly rogueCaFile: string;
  /** `spiffe://<clusterId>/node/<id>` (SAN localhost, 127.0.0.1, ::1), from the CA. */
  node(nodeId: string, clusterId?: string): Promise<CertFiles>;
  /** `spiffe://<clusterId>/client/<name>`, from the CA. */
  client(name: string, clusterId?: string): Promise<CertFiles>;
  /** A node certificate from the rogue CA. */
  rogueNode(nodeId: string): Promise<CertFiles>;
  /** Any leaf from the CA (bad certificates: no SAN, two URIs, ...). */
  leaf(fileName: string, subject: LeafSubject): Promise<CertFiles>;
}

export async function makeSpiffePki(dir: string, clusterId = 'replikit'): Promise<SpiffePki> {
  const ca = await createCa('replikit test CA');
  const rogue = await createCa('rogue CA');
  const caFile = join(dir, 'ca.pem');
  const rogueCaFile = join(dir, 'rogue-ca.pem');
  writeFileSync(caFile, ca.certPem);
  writeFileSync(join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
  writeFileSync(rogueCaFile, rogue.certPem);
  const write = (fileName: string, pair: PemPair): CertFiles => {
    const cert = join(dir, `${fileName}.pem`);
    const key = join(dir, `${fileName}.key`);
    writeFileSync(cert, pair.certPem);
    writeFileSync(key, pair.keyPem, { mode: 0o600 });
    return { cert, key };
  };
  return {
    dir,
    clusterId,
    caFile,
    ca,
    rogueCaFile,
    node: async (nodeId, cluster = clusterId) => write(`node-${cluster}-${nodeId}`, await issueNodeCertificate(ca, cluster, nodeId)),
    client: async (name, cluster = clusterId) => write(`client-${cluster}-${name}`, await issueClientCertificate(ca, cluster, name)),
    rogueNode: async (nodeId) => write(`rogue-node-${nodeId}`, await issueNodeCertificate(rogue, clusterId, nodeId)),
    leaf: async (fileName, subject) => write(fileName, await issueCertificate(ca, subject)),
  };
}
