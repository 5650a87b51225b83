import { readFileSync } from 'node:fs';
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { checkServerIdentity, type PeerCertificate, type TLSSocket } from 'node:tls';
import { describeIdentity, identityOfSubjectAltName, nodeSpiffeId } from '../interceptors/certificate-identity.js';
import { credentials, InterceptingCall, ServerCredentials, status, type ChannelCredentials, type Interceptor, type Server } from '@grpc/grpc-js';
import { BurstLimit } from '../logging/burst-limit.js';
import type { Logger } from '../logging/logger.js';

/** PEM files as given on the command line; any of them may be absent. */
export interface TlsFiles {
  /** This side's certificate chain (`--tls-cert`). */
  readonly certFile?: string;
  /** The private key of that certificate (`--tls-key`). */
  readonly keyFile?: string;
  /** The CA that signs the other side's certificate (`--tls-ca`). */
  readonly caFile?: string;
}

/** PEM contents read from {@link TlsFiles}. */
export interface TlsMaterial {
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly ca?: Buffer;
}

/** A TLS setting that cannot work; the message names the flag. */
export class TlsConfigError extends Error {
  override readonly name = 'TlsConfigError';
}

/**
 * Reads the PEM files; undefined when none is given (plaintext). Errors name the flag: a file
 * that cannot be read, a file that is not PEM, or a certificate without its key (or the reverse).
 */
export function readTlsFiles(files: TlsFiles): TlsMaterial | undefined {
  if (files.certFile === undefined && files.keyFile === undefined && files.caFile === undefined) return undefined;
  if ((files.certFile === undefined) !== (files.keyFile === undefined)) {
    throw new TlsConfigError('--tls-cert and --tls-key go together: give both, or neither');
  }
  const read = (flag: string, path: string | undefined): Buffer | undefined => (path === undefined ? undefined : readPemFile(flag, path));
  return { cert: read('tls-cert', files.certFile), key: read('tls-key', files.keyFile), ca: read('tls-ca', files.caFile) };
}

/** A PEM file's bytes; a {@link TlsConfigError} names the flag, the file and why (cannot be read, not PEM). */
export function readPemFile(flag: string, path: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err: unknown) {
    throw new TlsConfigError(`--${flag}: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!bytes.includes('-----BEGIN ')) throw new TlsConfigError(`--${flag}: ${path} is not a PEM file`);
  return bytes;
}

/**
 * The server side: TLS with this node's certificate; with a CA, also mutual TLS: every client,
 * peers and applications alike, must present a certificate that CA signed, or the handshake fails.
 */
export function serverCredentialsOf(tls: TlsMaterial): ServerCredentials {
  if (tls.cert === undefined || tls.key === undefined) {
    throw new TlsConfigError('a TLS server needs --tls-cert and --tls-key');
  }
  return ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.ca !== undefined);
}

/**
 * The client side, for peers and for CLI clients: trusts the CA (the system's roots without one)
 * and presents the certificate when given, which a mutual-TLS server requires.
 */
export function channelCredentialsOf(tls: TlsMaterial): ChannelCredentials {
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/**
 * The client side of calls to peer `nodeId`: as {@link channelCredentialsOf}, and the peer's
 * server certificate must be the node certificate of `nodeId` in `clusterId` (its SPIFFE URI),
 * as SPIFFE checks an identity instead of a host name. A peer whose certificate names another node
 * (a stolen certificate, or addresses swapped in the configuration) fails the handshake, and the
 * reason reaches the log through {@link peerTlsFailureInterceptor}. A server certificate with no
 * SPIFFE URI at all falls back to the host name check, so plain certificates still work for
 * one-way TLS.
 */
export function peerChannelCredentialsOf(tls: TlsMaterial, peer: PeerOfChannel): ChannelCredentials {
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null, { checkServerIdentity: peerServerIdentityCheck(peer) });
}

/** The peer a channel calls: its server certificate must name this node of this cluster. */
export interface PeerOfChannel {
  readonly clusterId: string;
  readonly nodeId: string;
}

/**
 * The server certificate check of calls to `peer` (see {@link peerChannelCredentialsOf}), shared by
 * the credentials read once and those that follow rotated files (ops/tls-reload.ts).
 */
export function peerServerIdentityCheck(peer: PeerOfChannel): (hostname: string, certificate: PeerCertificate) => Error | undefined {
  return (hostname, certificate) => {
    const read = identityOfSubjectAltName(certificate.subjectaltname);
    if (read.kind === 'invalid' && !/URI:spiffe:/i.test(certificate.subjectaltname ?? '')) return checkServerIdentity(hostname, certificate);
    const expected = nodeSpiffeId(peer.clusterId, peer.nodeId);
    if (read.kind === 'invalid') return new Error(`peer ${peer.nodeId}'s server certificate at ${hostname}: ${read.problem}`);
    if (read.identity.uri === expected) return undefined;
    return new Error(`peer ${peer.nodeId}'s server certificate at ${hostname} names ${describeIdentity(read.identity)}, not ${expected}: is another node at that address?`);
  };
}

/** One incoming TLS handshake that this node's server refused. */
export interface TlsRefusal {
  /** `ip:port` of the other side. */
  readonly remote: string;
  /** A short, stable name for metrics: `plaintext-client`, `untrusted-certificate`, ... */
  readonly reason: string;
  /** A sentence for people, with OpenSSL's own words. */
  readonly detail: string;
}

/** Words for the verification codes Node leaves in `authorizationError`. */
function verdictMessage(code: string): string {
  if (code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'UNABLE_TO_GET_ISSUER_CERT') return 'the certificate is not signed by a trusted CA';
  if (code === 'SELF_SIGNED_CERT_IN_CHAIN' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT') return 'the certificate chain ends in an untrusted self-signed certificate';
  return 'certificate verification failed';
}

/** OpenSSL / Node error codes of failed server handshakes, grouped into what an operator does about them. */
export function classifyTlsError(err: Error & { code?: string }): { reason: string; explanation: string } {
  const code = err.code ?? '';
  if (/WRONG_VERSION_NUMBER|HTTP_REQUEST|UNKNOWN_PROTOCOL|PACKET_LENGTH_TOO_LONG|RECORD_LAYER_FAILURE/.test(code)) {
    return { reason: 'plaintext-client', explanation: 'the client did not speak TLS (a plaintext client against a TLS node?)' };
  }
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED/.test(code)) {
    return { reason: 'no-client-certificate', explanation: 'the client presented no certificate, and this node requires one (mutual TLS)' };
  }
  if (/UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT|CERT_SIGNATURE_FAILURE|CERTIFICATE_VERIFY_FAILED|CERT_UNTRUSTED/.test(code)) {
    return { reason: 'untrusted-certificate', explanation: "the client's certificate is not signed by this node's CA (--tls-ca)" };
  }
  if (/CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/.test(code)) {
    return { reason: 'certificate-expired', explanation: "the client's certificate is expired or not yet valid" };
  }
  if (/ALERT_UNKNOWN_CA|ALERT_BAD_CERTIFICATE|ALERT_CERTIFICATE_UNKNOWN/.test(code)) {
    return { reason: 'server-certificate-refused', explanation: "the client refused this node's certificate (not signed by the CA it trusts?)" };
  }
  if (code === 'ECONNRESET') {
    return { reason: 'client-hung-up', explanation: "the client hung up during the TLS handshake (does it trust this node's certificate?)" };
  }
  return { reason: 'handshake-failed', explanation: 'the TLS handshake failed' };
}

/**
 * Calls `onRefused` for every incoming TLS handshake the server refuses (Node's `tlsClientError`).
 * grpc-js does not expose its HTTP/2 servers, so this wraps its `createHttp2Server` method on this
 * one instance, before `bindAsync`; it returns false (and changes nothing) on a grpc-js without
 * that method, where only the client sees the refusal. Other connections are unaffected: a failed
 * handshake closes only its own socket.
 */
export function observeTlsRefusals(server: Server, onRefused: (refusal: TlsRefusal) => void): boolean {
  const internal = server as unknown as { createHttp2Server?: (this: Server, creds: ServerCredentials) => EventEmitter };
  const original = internal.createHttp2Server;
  if (typeof original !== 'function') return false;
  internal.createHttp2Server = function (this: Server, creds: ServerCredentials): EventEmitter {
    const http2Server = original.call(this, creds);
    // Reading the address caches it on the socket, so that it can still be named after a
    // refused handshake has destroyed the socket.
    http2Server.prependListener('connection', (raw: Socket) => void raw.remoteAddress);
    http2Server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket | undefined) => {
      // A client certificate that fails verification is refused by Node after the handshake,
      // silently; the event that follows is a "socket hang up", with the verdict left on the socket.
      const verdict = socket?.authorizationError;
      const cause: Error & { code?: string } =
        err.code === 'ECONNRESET' && verdict !== undefined && verdict !== null
          ? Object.assign(new Error(verdictMessage(String(verdict))), { code: String(verdict) })
          : err;
      const { reason, explanation } = classifyTlsError(cause);
      const parent = (socket as unknown as { _parent?: Socket } | undefined)?._parent;
      const address = socket?.remoteAddress ?? parent?.remoteAddress;
      const port = socket?.remotePort ?? parent?.remotePort;
      const remote = address === undefined ? 'an unknown address' : `${address}:${port ?? '?'}`;
      onRefused({ remote, reason, detail: `${explanation} (${cause.code ?? cause.name}: ${cause.message})` });
    });
    return http2Server;
  };
  return true;
}

/** Lines per window before refusals are only counted: a port scanner must not flood the log. */
const REFUSAL_LOG_BURST = 10;
const REFUSAL_LOG_WINDOW_MS = 10_000;

/**
 * Logs refused handshakes at warn, one clear line each, up to {@link REFUSAL_LOG_BURST} per
 * {@link REFUSAL_LOG_WINDOW_MS}; beyond that they are counted and the count is reported with the
 * next line that gets through.
 */
export function tlsRefusalLogger(logger: Logger, nowMs: () => number = () => performance.now()): (refusal: TlsRefusal) => void {
  const limit = new BurstLimit(REFUSAL_LOG_BURST, REFUSAL_LOG_WINDOW_MS, nowMs);
  return (refusal) => {
    const admitted = limit.admit();
    if (admitted === undefined) return;
    logger.warn(`refused a TLS connection from ${refusal.remote}: ${refusal.detail}`, {
      remote: refusal.remote,
      reason: refusal.reason,
      ...(admitted.suppressedBefore > 0 ? { suppressedSinceLastLine: admitted.suppressedBefore } : {}),
    });
  };
}

/** A TLS failure to a peer is logged again after this long if it persists. */
const PEER_TLS_FAILURE_RELOG_MS = 60_000;
/** What grpc-js puts in the details of a call that failed because the TLS handshake did. */
const TLS_FAILURE_DETAILS = /certificate|SSL|TLS|handshake|self[- ]signed|unable to verify|Hostname\/IP does not match|ERR_TLS/i;

/**
 * A client interceptor for the calls to one peer that logs, at warn, when they fail because the
 * TLS handshake with that peer failed (its certificate not signed by our CA, a name mismatch, a
 * plaintext server...): once when it starts, again every minute while it lasts, and at info once
 * calls succeed again. The server on the other side can only see a client that hung up; this is
 * the side that knows why.
 */
export function peerTlsFailureInterceptor(peerId: string, logger: Logger, nowMs: () => number = () => performance.now()): Interceptor {
  let failingSinceMs: number | undefined;
  let lastLoggedMs = -Infinity;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        next(metadata, {
          onReceiveStatus: (statusObject, nextStatus) => {
            const now = nowMs();
            if (statusObject.code === status.UNAVAILABLE && TLS_FAILURE_DETAILS.test(statusObject.details)) {
              failingSinceMs ??= now;
              if (now - lastLoggedMs >= PEER_TLS_FAILURE_RELOG_MS) {
                lastLoggedMs = now;
                logger.warn(`cannot reach peer ${peerId} over TLS: ${statusObject.details}`, { peer: peerId });
              }
            } else if (statusObject.code !== status.UNAVAILABLE && failingSinceMs !== undefined) {
              failingSinceMs = undefined;
              lastLoggedMs = -Infinity;
              logger.info(`peer ${peerId} is reachable over TLS again`, { peer: peerId });
            }
            nextStatus(statusObject);
          },
        });
      },
    });
}
