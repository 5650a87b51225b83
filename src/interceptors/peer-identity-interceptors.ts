import { InterceptingCall, ServerInterceptingCall, type Interceptor, type ServerInterceptor } from '@grpc/grpc-js';
import { BurstLimit } from '../logging/burst-limit.js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { callHook } from './call-hook.js';
import { callerCertificate, checkPeerCertificate, nodeSpiffeId, type CertificateRefusal, type PeerCertificatePolicy } from './certificate-identity.js';
import {
  checkPeerIdentity,
  readPeerNodeId,
  stampPeerIdentity,
  type PeerIdentity,
  type PeerIdentityPolicy,
  type PeerIdentityResult,
} from './peer-identity.js';

/**
 * Refused peer calls logged per {@link PEER_REFUSAL_LOG_WINDOW_MS}: a caller retrying a refused
 * call in a loop must not flood the log; beyond it they are counted (the metric, and
 * `suppressedSinceLastLine` on the next line).
 */
export const PEER_REFUSAL_LOG_BURST = 10;
export const PEER_REFUSAL_LOG_WINDOW_MS = 10_000;

/** The method path prefix of the peer protocol, whose calls must carry a peer identity. */
export const REPLICA_SERVICE_PATH_PREFIX = '/replikit.v1.ReplicaService/';

/** True for the methods of `replikit.v1.ReplicaService`: the default scope of the identity check. */
export function isReplicaServiceMethod(methodPath: string): boolean {
  return methodPath.startsWith(REPLICA_SERVICE_PATH_PREFIX);
}

/** Options of {@link peerIdentityServerInterceptor}. */
export interface PeerIdentityServerOptions extends PeerIdentityPolicy {
  /**
   * Which methods are checked, by path (`/package.Service/Method`). A node serves the client API
   * (KvService) to anyone and the peer protocol only to members. @default isReplicaServiceMethod
   */
  readonly appliesTo?: (methodPath: string) => boolean;
  /** Gets every refusal at info level (a refusal is the caller's misconfiguration, not ours). */
  readonly logger?: Logger;
  /** Called with every refusal (for a counter); must be quick and must not throw. */
  readonly onRefused?: (result: Exclude<PeerIdentityResult, { kind: 'ok' }> | CertificateRefusal, methodPath: string) => void;
  /**
   * With mutual TLS: the caller's certificate must be a node certificate of this cluster naming
   * the node id the call claims (see certificate-identity.ts). Absent, only the metadata is checked.
   */
  readonly certificates?: PeerCertificatePolicy;
  /** Called when an accepted call's certificate proved who it is: its node id and SPIFFE URI. */
  readonly onVerified?: (nodeId: string, uri: string) => void;
}

/**
 * A server interceptor that refuses calls from another cluster (FAILED_PRECONDITION) or from an
 * unknown node (PERMISSION_DENIED) before the handler runs. `knownNodeIds` is read on every call,
 * so a set that the node updates in place takes effect at once. grpc-js hands incoming metadata
 * to server interceptors in array order, so list this one before the clock interceptor: a node of
 * another cluster must not get to move this node's clock.
 */
export function peerIdentityServerInterceptor(options: PeerIdentityServerOptions): ServerInterceptor {
  const appliesTo = options.appliesTo ?? isReplicaServiceMethod;
  const logger = options.logger ?? silentLogger;
  const logLimit = new BurstLimit(PEER_REFUSAL_LOG_BURST, PEER_REFUSAL_LOG_WINDOW_MS);

  return (methodDescriptor, nextCall) => {
    // Other methods pass straight through: no wrapper layer (and its per-call cost) at all.
    // grpc-js chains interceptors by calling each with the previous one's call object, so handing
    // that object back is what a no-op interceptor is.
    if (!appliesTo(methodDescriptor.path)) return nextCall as ServerInterceptingCall;
    const call: ServerInterceptingCall = new ServerInterceptingCall(nextCall, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            // The certificate first: what a caller proved outranks what it claims, and a client
            // certificate is refused whatever node id its metadata names.
            const certificate = options.certificates === undefined ? undefined : callerCertificate(call.getAuthContext());
            const certificateRefusal = options.certificates === undefined ? undefined : checkPeerCertificate(certificate, readPeerNodeId(metadata), options.certificates);
            const result = certificateRefusal ?? checkPeerIdentity(metadata, options);
            if ('kind' in result && result.kind === 'ok') {
              // The check above passed, so the certificate names exactly this node of this
              // cluster: its identity is known without reading the SAN a second time.
              if (certificate !== undefined && options.onVerified !== undefined && options.certificates !== undefined) {
                options.onVerified(result.nodeId, nodeSpiffeId(options.certificates.clusterId, result.nodeId));
              }
              nextMetadata(metadata);
              return;
            }
            // Certificate refusals are someone holding a certificate of ours misusing it: warn.
            const admitted = logLimit.admit();
            if (admitted !== undefined) {
              const fields = { method: methodDescriptor.path, ...(admitted.suppressedBefore > 0 ? { suppressedSinceLastLine: admitted.suppressedBefore } : {}) };
              if ('reason' in result) logger.warn(`refused a peer call from ${call.getPeer()}: ${result.message}`, { ...fields, reason: result.reason });
              else logger.info(`refused a peer call: ${result.message}`, { ...fields, reason: result.kind });
            }
            const { onRefused } = options;
            if (onRefused !== undefined) callHook(logger, 'onRefused', () => onRefused(result, methodDescriptor.path));
            // Not passing the metadata on keeps the handler from ever starting.
            call.sendStatus({ code: result.code, details: result.message });
          },
        });
      },
    });
    return call;
  };
}

/** A client interceptor that stamps this node's identity on every call of the client it is on. */
export function peerIdentityClientInterceptor(identity: PeerIdentity): Interceptor {
  return (callOptions, nextCall) =>
    new InterceptingCall(nextCall(callOptions), {
      start: (metadata, listener, next) => {
        stampPeerIdentity(metadata, identity);
        next(metadata, listener);
      },
    });
}
