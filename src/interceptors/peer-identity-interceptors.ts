import { InterceptingCall, ServerInterceptingCall, type Interceptor, type ServerInterceptor } from '@grpc/grpc-js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { callHook } from './call-hook.js';
import {
  checkPeerIdentity,
  stampPeerIdentity,
  type PeerIdentity,
  type PeerIdentityPolicy,
  type PeerIdentityResult,
} from './peer-identity.js';

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
  readonly onRefused?: (result: Exclude<PeerIdentityResult, { kind: 'ok' }>, methodPath: string) => void;
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

  return (methodDescriptor, nextCall) => {
    // Other methods pass straight through: no wrapper layer (and its per-call cost) at all.
    // grpc-js chains interceptors by calling each with the previous one's call object, so handing
    // that object back is what a no-op interceptor is.
    if (!appliesTo(methodDescriptor.path)) return nextCall as ServerInterceptingCall;
    const call: ServerInterceptingCall = new ServerInterceptingCall(nextCall, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const result = checkPeerIdentity(metadata, options);
            if (result.kind === 'ok') {
              nextMetadata(metadata);
              return;
            }
            logger.info(`refused a peer call: ${result.message}`, { method: methodDescriptor.path, reason: result.kind });
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
