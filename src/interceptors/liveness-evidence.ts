import {
  InterceptingCall,
  ServerInterceptingCall,
  status,
  type Interceptor,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { callHook } from './call-hook.js';
import { readPeerNodeId } from './peer-identity.js';

/**
 * Receives passive liveness evidence about a peer from ordinary RPCs: `ok` true means the peer
 * was evidently alive, false that it could not be reached in time. `peerNodeId` is undefined when
 * the peer did not say who it is. Runs inside gRPC callbacks: it must be quick and must not throw.
 */
export type EvidenceListener = (peerNodeId: string | undefined, ok: boolean, code: status, startedAtMs?: number) => void;

/**
 * What a call's final status says about the peer: a failure sample when the peer could not be
 * reached or did not answer in time, life for any answer it gave (an error answer included: the
 * peer was up to give it), and nothing when this side cancelled the call itself.
 */
export function evidenceOf(code: status): 'alive' | 'failed' | 'none' {
  if (code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED) return 'failed';
  if (code === status.CANCELLED) return 'none';
  return 'alive';
}

/** Options of the liveness evidence interceptors. */
export interface EvidenceInterceptorOptions {
  readonly onEvidence: EvidenceListener;
  /** Gets hook failures. @default silentLogger */
  readonly logger?: Logger;
  /**
   * The clock that dates each call's start, passed to the listener as `startedAtMs`, so that a
   * failure is weighed against life heard from the peer while the call ran (the node's scheduler).
   * @default none: no start time is passed
   */
  readonly now?: () => number;
}

/**
 * A client interceptor for the client of one peer: reports each finished call as evidence about
 * that peer (see {@link evidenceOf}).
 */
export function livenessEvidenceClientInterceptor(
  options: EvidenceInterceptorOptions & { readonly peerNodeId: string },
): Interceptor {
  const logger = options.logger ?? silentLogger;
  return (callOptions, nextCall) =>
    new InterceptingCall(nextCall(callOptions), {
      start: (metadata, _listener, next) => {
        const startedAtMs = options.now?.();
        next(metadata, {
          onReceiveStatus: (statusObject, nextStatus) => {
            const evidence = evidenceOf(statusObject.code);
            if (evidence !== 'none') {
              callHook(logger, 'onEvidence', () =>
                options.onEvidence(options.peerNodeId, evidence === 'alive', statusObject.code, startedAtMs),
              );
            }
            nextStatus(statusObject);
          },
        });
      },
    });
}

/**
 * A server interceptor that reports every call this server answers as evidence that the caller
 * (named by its `replikit-node-id` metadata) is alive: it reached this node moments ago.
 */
export function livenessEvidenceServerInterceptor(
  options: EvidenceInterceptorOptions & {
    /** Which methods report evidence (by path); others pass through untouched. @default every method */
    readonly appliesTo?: (methodPath: string) => boolean;
  },
): ServerInterceptor {
  const logger = options.logger ?? silentLogger;
  return (methodDescriptor, nextCall) => {
    if (options.appliesTo !== undefined && !options.appliesTo(methodDescriptor.path)) return nextCall as ServerInterceptingCall;
    let callerNodeId: string | undefined;
    return new ServerInterceptingCall(nextCall, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            callerNodeId = readPeerNodeId(metadata);
            nextMetadata(metadata);
          },
        });
      },
      sendStatus: (statusObject, next) => {
        callHook(logger, 'onEvidence', () => options.onEvidence(callerNodeId, true, statusObject.code));
        next(statusObject);
      },
    });
  };
}
