import {
  InterceptingCall,
  Metadata,
  ServerInterceptingCall,
  status,
  type Interceptor,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { HybridLogicalClock } from '../clock/index.js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { callHook } from './call-hook.js';
import { observeHlc, stampHlc } from './hlc-metadata.js';
import {
  DEFAULT_MAX_CLOCK_OFFSET_MS,
  assertMaxClockOffsetMs,
  describeTooFarAhead,
  type ObserveHlcResult,
} from './remote-hlc.js';

/** Options of the clock interceptors; see {@link createClockInterceptors}. */
export interface ClockInterceptorOptions {
  /** This node's clock: stamped on everything sent, moved past everything received. */
  readonly clock: HybridLogicalClock;
  /** See {@link DEFAULT_MAX_CLOCK_OFFSET_MS}. @default 500 */
  readonly maxClockOffsetMs?: number;
  /** Gets malformed HLCs at debug level and refused ones at warn. @default silentLogger */
  readonly logger?: Logger;
  /**
   * Called with the outcome of every HLC received, with the gRPC method path, e.g. so that the
   * node can flag a peer whose clock runs too far ahead. Runs inside gRPC callbacks: it must be
   * quick and must not throw (a throw is logged and ignored).
   */
  readonly onObservation?: (result: ObserveHlcResult, methodPath: string) => void;
  /**
   * Server side: methods whose callers are answered even when their HLC is too far ahead (the HLC
   * is still not merged). A node uses it for ClockSync, so that a node whose clock runs ahead can
   * still measure its offset against its peers, see that it is the one off, and say so.
   * @default none
   */
  readonly answerDespiteSkew?: (methodPath: string) => boolean;
}

/** The pair of interceptors that carries HLCs on every call of a client and a server. */
export interface ClockInterceptors {
  /** For `new Client(address, credentials, { interceptors: [client] })`. */
  readonly client: Interceptor;
  /** For `new Server({ interceptors: [server] })`. */
  readonly server: ServerInterceptor;
}

/**
 * The one documented way to carry replikit's hybrid logical clock on an application's own gRPC
 * services: put `client` on its clients and `server` on its server, and every call carries the
 * sender's HLC in `replikit-hlc-bin` both ways, so the application's events and replikit's are
 * ordered by one clock.
 *
 * ```ts
 * const clocks = createClockInterceptors({ clock: node.clock });
 * const server = new Server({ interceptors: [clocks.server] });
 * const client = new EchoClient(address, credentials.createInsecure(), { interceptors: [clocks.client] });
 * ```
 */
export function createClockInterceptors(options: ClockInterceptorOptions): ClockInterceptors {
  return { client: clockClientInterceptor(options), server: clockServerInterceptor(options) };
}

/**
 * A server interceptor that moves this node's clock past the caller's HLC before the handler runs
 * and stamps this node's HLC into the response headers. A caller whose HLC is more than
 * `maxClockOffsetMs` ahead of this node's wall clock gets FAILED_PRECONDITION naming the offset
 * and the limit, and the handler never runs: accepting it would drag this node's clock (and every
 * version it mints) into the future. A malformed HLC is ignored and the call goes on.
 */
export function clockServerInterceptor(options: ClockInterceptorOptions): ServerInterceptor {
  const { clock } = options;
  const maxClockOffsetMs = options.maxClockOffsetMs ?? DEFAULT_MAX_CLOCK_OFFSET_MS;
  assertMaxClockOffsetMs(maxClockOffsetMs);
  const logger = options.logger ?? silentLogger;

  return (methodDescriptor, nextCall) => {
    let headersSent = false;
    const call: ServerInterceptingCall = new ServerInterceptingCall(nextCall, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const result = observeHlc(metadata, clock, { maxClockOffsetMs, logger, whose: "caller's" });
            const { onObservation } = options;
            if (onObservation !== undefined) {
              callHook(logger, 'onObservation', () => onObservation(result, methodDescriptor.path));
            }
            if (result.kind === 'too-far-ahead' && !(options.answerDespiteSkew?.(methodDescriptor.path) ?? false)) {
              // Not passing the metadata on keeps the handler from ever starting.
              call.sendStatus({ code: status.FAILED_PRECONDITION, details: describeTooFarAhead(result, "caller's") });
              return;
            }
            nextMetadata(metadata);
          },
        });
      },
      // A unary handler never sends headers itself; grpc-js sends them through this hook when the
      // response message goes out, so the stamp reaches unary responses too.
      sendMetadata: (metadata, next) => {
        headersSent = true;
        stampHlc(metadata, clock);
        next(metadata);
      },
      // A call that ends without a message (an error, or the refusal above) goes out as a
      // trailers-only response: no headers, so the stamp rides in the trailers instead.
      sendStatus: (statusObject, next) => {
        if (headersSent) {
          next(statusObject);
          return;
        }
        const trailers = statusObject.metadata?.clone() ?? new Metadata();
        stampHlc(trailers, clock);
        next({ ...statusObject, metadata: trailers });
      },
    });
    return call;
  };
}

/**
 * A client interceptor that stamps the caller's HLC into the request metadata and moves the
 * caller's clock past the server's HLC from the response headers (or, for a trailers-only
 * response, the trailers). A server whose HLC is too far ahead is not merged and is logged at
 * warn, but the call goes on: the server already did the work, and failing the answer would not
 * undo it.
 */
export function clockClientInterceptor(options: ClockInterceptorOptions): Interceptor {
  const { clock } = options;
  const maxClockOffsetMs = options.maxClockOffsetMs ?? DEFAULT_MAX_CLOCK_OFFSET_MS;
  assertMaxClockOffsetMs(maxClockOffsetMs);
  const logger = options.logger ?? silentLogger;

  return (callOptions, nextCall) => {
    const methodPath = callOptions.method_definition.path;
    let observed = false;
    const observe = (metadata: Metadata): void => {
      observed = true;
      const result = observeHlc(metadata, clock, { maxClockOffsetMs, logger, whose: "server's" });
      const { onObservation } = options;
      if (onObservation !== undefined) callHook(logger, 'onObservation', () => onObservation(result, methodPath));
    };
    return new InterceptingCall(nextCall(callOptions), {
      start: (metadata, _listener, next) => {
        stampHlc(metadata, clock);
        next(metadata, {
          onReceiveMetadata: (headers, nextHeaders) => {
            observe(headers);
            nextHeaders(headers);
          },
          onReceiveStatus: (statusObject, nextStatus) => {
            if (!observed) observe(statusObject.metadata);
            nextStatus(statusObject);
          },
        });
      },
    });
  };
}
