import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { PeerCertificate, SecureContextOptions } from 'node:tls';
import { experimental, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { checkOwnNodeCertificate, IssuerCheck, type IssuerTrust } from '../interceptors/certificate-identity.js';
import { peerChannelCredentialsOf, peerServerIdentityCheck, readPemFile, TlsConfigError, type PeerOfChannel } from './tls.js';

/**
 * Certificate rotation without a restart. Short-lived certificates (SPIRE's SVIDs live an hour,
 * cert-manager renews at two thirds of the lifetime) are replaced in their files while a node
 * runs; {@link ReloadingTls} re-reads the files on demand (serve: SIGHUP and a timer), checks the
 * new set as a whole, and hands it to grpc-js through certificate providers: new handshakes use
 * the new certificates, connections already open keep theirs.
 */

/** The files `serve` was given; they are re-read by path, so a file replaced in place is picked up. */
export interface ReloadingTlsFiles {
  /** This node's certificate chain (`--tls-cert`). */
  readonly certFile: string;
  /** Its private key (`--tls-key`). */
  readonly keyFile: string;
  /** The CA that signs clients and peers (`--tls-ca`); with it, mutual TLS. */
  readonly caFile?: string;
  /** The peers' own CA (`--peer-tls-ca`); needs `caFile`. */
  readonly peerCaFile?: string;
}

/** Whose certificate this is: with mutual TLS it must name this node of this cluster. */
export interface ReloadingTlsIdentity {
  readonly clusterId: string;
  readonly nodeId: string;
}

/** What one {@link ReloadingTls.reload} did. */
export type TlsReloadResult =
  /** The files changed and passed every check: new handshakes use them. */
  | { readonly outcome: 'applied' }
  /** The files hold what is in force already. */
  | { readonly outcome: 'unchanged' }
  /** The files changed but cannot be used; everything in force stays. `problem` names the flag and file. */
  | { readonly outcome: 'refused'; readonly problem: string };

/** The contents of the files, byte for byte, as last read. */
interface FileContents {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
  readonly peerCa?: Buffer;
}

/** A set of files that passed the checks, with what was derived from it. */
interface Material {
  readonly contents: FileContents;
  readonly certificate: X509Certificate;
  /** What the server trusts: the clients' CA and the peers' CA, as one bundle. */
  readonly serverCa?: Buffer;
  /** What peer calls trust: the peers' CA, else the one CA. */
  readonly peerCa?: Buffer;
  readonly peerIssuer?: IssuerCheck;
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * This node's TLS files, kept in force and re-read by {@link reload}. A set of files is applied as
 * a whole or not at all: a certificate renewed before its key is written, a key that is not the
 * certificate's, a certificate naming another node (with mutual TLS), a CA file without a
 * certificate, or a file that cannot be read is refused, and what is in force stays until the
 * files agree again.
 */
export class ReloadingTls {
  readonly #files: ReloadingTlsFiles;
  readonly #identity: ReloadingTlsIdentity;
  #material: Material;
  /** Certificates of the server side: this node's identity and the server CA bundle. */
  readonly serverCertificates: MaterialProvider;
  /** Certificates of calls to peers: this node's identity and the peer CA. */
  readonly peerCertificates: MaterialProvider;
  /**
   * With `--peer-tls-ca`: whether the peer CA in force issued a certificate, following the file
   * as it changes (replica-node's `peerTrust`); undefined without a peer CA.
   */
  readonly peerTrust: IssuerTrust | undefined;

  /** Reads and checks the files; a {@link TlsConfigError} naming the flag when they cannot be used. */
  constructor(files: ReloadingTlsFiles, identity: ReloadingTlsIdentity) {
    if (files.peerCaFile !== undefined && files.caFile === undefined) {
      throw new TlsConfigError('--peer-tls-ca needs --tls-ca: separate peer trust is a part of mutual TLS');
    }
    this.#files = files;
    this.#identity = identity;
    const loaded = this.#load();
    if (typeof loaded === 'string') throw new TlsConfigError(loaded);
    this.#material = loaded;
    this.serverCertificates = new MaterialProvider(() => this.#material.contents, () => this.#material.serverCa);
    this.peerCertificates = new MaterialProvider(() => this.#material.contents, () => this.#material.peerCa);
    this.peerTrust = files.peerCaFile === undefined ? undefined : { issued: (certificate: PeerCertificate) => this.#material.peerIssuer?.issued(certificate) ?? false };
  }

  /** True with a CA file: clients and peers must present a certificate it signed. */
  get mutual(): boolean {
    return this.#files.caFile !== undefined;
  }

  /** The serial number of the certificate in force (hex, as OpenSSL and `getPeerCertificate()` print it). */
  get serialNumber(): string {
    return this.#material.certificate.serialNumber;
  }

  /** When the certificate in force expires. */
  get notAfter(): Date {
    return new Date(this.#material.certificate.validTo);
  }

  /**
   * Re-reads every file. Unchanged files change nothing; changed ones are applied when the whole
   * set passes the checks (listeners of both providers hear of it at once, before any other
   * handshake can start), and refused otherwise, with everything in force kept. Never throws.
   */
  reload(): TlsReloadResult {
    const loaded = this.#load(this.#material.contents);
    if (loaded === 'unchanged') return { outcome: 'unchanged' };
    if (typeof loaded === 'string') return { outcome: 'refused', problem: loaded };
    // A renewal that has already expired would break every handshake, while the certificate in
    // force may still be good for a while: keep it, and let the expiry metric say when it is not.
    if (new Date(loaded.certificate.validTo).getTime() < Date.now()) {
      return { outcome: 'refused', problem: `--tls-cert: ${this.#files.certFile} expired at ${loaded.certificate.validTo}` };
    }
    const before = this.#material;
    this.#material = loaded;
    const identityChanged = !loaded.contents.cert.equals(before.contents.cert) || !loaded.contents.key.equals(before.contents.key);
    this.serverCertificates.changed(identityChanged, !sameBytes(loaded.serverCa, before.serverCa));
    this.peerCertificates.changed(identityChanged, !sameBytes(loaded.peerCa, before.peerCa));
    return { outcome: 'applied' };
  }

  /**
   * Server credentials that follow {@link serverCertificates}: mutual TLS (client certificates
   * required, checked against the server CA bundle) with a CA file, one-way TLS without.
   */
  serverCredentials(): ServerCredentials {
    return new ReloadingServerCredentials(this.serverCertificates, this.mutual);
  }

  /**
   * Credentials of calls to `peer`: this node's certificate in force, the peer CA in force, and
   * the peer's server certificate checked against the node called. Without a CA file (one-way
   * TLS) no server asks for a client certificate and the system's roots are trusted, so nothing
   * of the files is used and the credentials are the fixed ones.
   */
  peerChannelCredentials(peer: PeerOfChannel): ChannelCredentials {
    if (!this.mutual) {
      const { cert, key } = this.#material.contents;
      return peerChannelCredentialsOf({ cert, key }, peer);
    }
    // The same provider for both roles: grpc-js then reads each from the object that has it.
    return experimental.createCertificateProviderChannelCredentials(this.peerCertificates, this.peerCertificates, {
      checkServerIdentity: peerServerIdentityCheck(peer),
    });
  }

  /** Reads and checks the files: the material, 'unchanged' when they hold `current`, or the problem. */
  #load(current?: FileContents): Material | 'unchanged' | string {
    const files = this.#files;
    let contents: FileContents;
    try {
      contents = {
        cert: readPemFile('tls-cert', files.certFile),
        key: readPemFile('tls-key', files.keyFile),
        ca: files.caFile === undefined ? undefined : readPemFile('tls-ca', files.caFile),
        peerCa: files.peerCaFile === undefined ? undefined : readPemFile('peer-tls-ca', files.peerCaFile),
      };
    } catch (err: unknown) {
      return err instanceof Error ? err.message : String(err);
    }
    if (
      current !== undefined &&
      contents.cert.equals(current.cert) &&
      contents.key.equals(current.key) &&
      sameBytes(contents.ca, current.ca) &&
      sameBytes(contents.peerCa, current.peerCa)
    ) {
      return 'unchanged';
    }
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(contents.cert);
    } catch (err: unknown) {
      return `--tls-cert: ${files.certFile} holds no usable certificate (${err instanceof Error ? err.message : String(err)})`;
    }
    let matches: boolean;
    try {
      matches = certificate.checkPrivateKey(createPrivateKey(contents.key));
    } catch (err: unknown) {
      return `--tls-key: ${files.keyFile} holds no usable private key (${err instanceof Error ? err.message : String(err)})`;
    }
    if (!matches) {
      // The usual cause is a rotation caught half way: the certificate is written before its key.
      return `--tls-key: ${files.keyFile} is not the private key of the certificate in ${files.certFile} (serial ${certificate.serialNumber}); waiting for both files of the rotation`;
    }
    if (files.caFile !== undefined) {
      const problem = checkOwnNodeCertificate(contents.cert, this.#identity.clusterId, this.#identity.nodeId);
      if (problem !== undefined) return `--tls-cert: ${files.certFile}: ${problem}`;
    }
    for (const [flag, path, pem] of [['tls-ca', files.caFile, contents.ca], ['peer-tls-ca', files.peerCaFile, contents.peerCa]] as const) {
      if (path === undefined || pem === undefined) continue;
      const problem = caBundleProblem(pem);
      if (problem !== undefined) return `--${flag}: ${path} ${problem}`;
    }
    const { ca, peerCa } = contents;
    return {
      contents,
      certificate,
      serverCa: ca === undefined ? undefined : peerCa === undefined ? ca : Buffer.concat([ca, Buffer.from('\n'), peerCa]),
      peerCa: peerCa ?? ca,
      peerIssuer: peerCa === undefined ? undefined : new IssuerCheck(peerCa),
    };
  }
}

/** Why a CA file cannot be trusted: it holds no certificate, or one that does not parse. */
function caBundleProblem(pem: Buffer): string | undefined {
  const blocks = pem.toString().match(CERTIFICATE_BLOCK) ?? [];
  if (blocks.length === 0) return 'holds no certificate';
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (err: unknown) {
      return `holds a certificate that cannot be read (${err instanceof Error ? err.message : String(err)})`;
    }
  }
  return undefined;
}

function sameBytes(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

/**
 * A grpc-js certificate provider over the material in force: identity updates carry this node's
 * certificate and key, CA updates one CA bundle (null when there is none: one-way TLS). As grpc-js's
 * FileWatcherCertificateProvider does, a listener gets the current value on the next tick after
 * it is added, and every applied change after that.
 */
export class MaterialProvider implements experimental.CertificateProvider {
  readonly #identity: () => FileContents;
  readonly #ca: () => Buffer | undefined;
  readonly #caListeners = new Set<experimental.CaCertificateUpdateListener>();
  readonly #identityListeners = new Set<experimental.IdentityCertificateUpdateListener>();

  constructor(identity: () => FileContents, ca: () => Buffer | undefined) {
    this.#identity = identity;
    this.#ca = ca;
  }

  /** The identity in force, as grpc-js takes it. */
  identityUpdate(): experimental.IdentityCertificateUpdate {
    const { cert, key } = this.#identity();
    return { certificate: cert, privateKey: key };
  }

  /** The CA bundle in force, or null without one. */
  caUpdate(): experimental.CaCertificateUpdate | null {
    const ca = this.#ca();
    return ca === undefined ? null : { caCertificate: ca };
  }

  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.#caListeners.add(listener);
    process.nextTick(() => {
      if (this.#caListeners.has(listener)) listener(this.caUpdate());
    });
  }

  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.#identityListeners.add(listener);
    process.nextTick(() => {
      if (this.#identityListeners.has(listener)) listener(this.identityUpdate());
    });
  }

  removeIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.#identityListeners.delete(listener);
  }

  /** Tells the listeners what changed (ReloadingTls calls it once the new set is in force). */
  changed(identity: boolean, ca: boolean): void {
    if (identity) for (const listener of [...this.#identityListeners]) listener(this.identityUpdate());
    if (ca) for (const listener of [...this.#caListeners]) listener(this.caUpdate());
  }
}

/**
 * Server credentials fed by a {@link MaterialProvider}; the grpc-js server applies each update
 * with `setSecureContext`. Not grpc-js's createCertificateProviderServerCredentials: in 1.14.7 its
 * arguments reach the constructor swapped, and it asks for client certificates whenever it has an
 * identity provider (verifying them only when required), where one-way TLS must not ask at all.
 * These are createSsl's options, with the certificates in force from the start.
 */
class ReloadingServerCredentials extends ServerCredentials {
  constructor(provider: MaterialProvider, mutual: boolean) {
    const optionsInForce = (): { cert: Buffer; key: Buffer; ca: Buffer | undefined } => {
      const { certificate, privateKey } = provider.identityUpdate();
      return { cert: certificate, key: privateKey, ca: mutual ? provider.caUpdate()?.caCertificate : undefined };
    };
    const contextOptions = (o: { cert: Buffer; key: Buffer; ca: Buffer | undefined }): SecureContextOptions => ({
      ...(o.ca === undefined ? {} : { ca: o.ca }),
      cert: [o.cert],
      key: [o.key],
    });
    let applied = optionsInForce();
    // GRPC_SSL_CIPHER_SUITES: the cipher list grpc-js's own createSsl honours.
    super({ requestCert: mutual, ciphers: process.env.GRPC_SSL_CIPHER_SUITES }, contextOptions(applied));
    // One applied reload calls both listeners; the server's context is set once, and listeners
    // repeating what is in force (the first call after adding one) change nothing. The
    // credentials live as long as the process's server, so the listeners stay.
    const update = () => {
      const next = optionsInForce();
      if (next.cert === applied.cert && next.key === applied.key && next.ca === applied.ca) return;
      applied = next;
      this.updateSecureContextOptions(contextOptions(next));
    };
    provider.addIdentityCertificateListener(update);
    if (mutual) provider.addCaCertificateListener(update);
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}
