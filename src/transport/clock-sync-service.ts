import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { HybridLogicalClock, WallClock } from '../clock/index.js';
import { invalidArgument } from '../errors.js';
import type {
  ClockSyncRequest,
  ClockSyncResponse,
  ReplicaServiceServer,
} from '../gen/replikit/v1/replica_service.js';
import { toGrpcStatus } from './status.js';
import { hlcToWire } from './wire.js';

/** What the server half of ClockSync needs from its node. */
export interface ClockSyncServerOptions {
  /** The node's wall clock: the readings the caller's offset estimate is made of. */
  readonly wallClock: WallClock;
  /** The node's HLC, stamped into the answer. */
  readonly clock: HybridLogicalClock;
  /** The node's id, returned so the caller can tell whom it measured. */
  readonly nodeId: string;
}

/**
 * Answers one ClockSync sample: the wall time the request arrived, the wall time the answer
 * leaves, and the HLC. Throws an invalid-argument ReplikitError (INVALID_ARGUMENT on the wire)
 * naming every required field the request lacks, because a sample without an origin time cannot
 * be matched to its request and one without a node id cannot be attributed to a peer.
 */
export function handleClockSync(request: ClockSyncRequest, options: ClockSyncServerOptions): ClockSyncResponse {
  const receiveMs = options.wallClock();
  const missing: string[] = [];
  if (request.nodeId === '') missing.push('node_id');
  if (request.originWallTimeMs === 0n) missing.push('origin_wall_time_ms');
  if (missing.length > 0) {
    throw invalidArgument(
      'MISSING_FIELD',
      `ClockSyncRequest lacks required ${missing.length === 1 ? 'field' : 'fields'} ${missing.join(' and ')}`,
      { fields: missing.join(',') },
    );
  }
  const hlc = options.clock.now();
  const sendMs = options.wallClock();
  return {
    originWallTimeMs: request.originWallTimeMs,
    receiveWallTimeMs: wireMs(receiveMs),
    sendWallTimeMs: wireMs(sendMs),
    hlc: hlcToWire(hlc),
    nodeId: options.nodeId,
  };
}

/**
 * The ClockSync method of ReplicaService alone, for a server that wants nothing else or for
 * merging into the full service implementation.
 */
export function clockSyncService(options: ClockSyncServerOptions): Pick<ReplicaServiceServer, 'clockSync'> {
  return {
    clockSync(call: ServerUnaryCall<ClockSyncRequest, ClockSyncResponse>, callback: sendUnaryData<ClockSyncResponse>) {
      let response: ClockSyncResponse;
      try {
        response = handleClockSync(call.request, options);
      } catch (err) {
        callback(toGrpcStatus(err));
        return;
      }
      callback(null, response);
    },
  };
}

/**
 * A wall-clock reading as the wire's uint64 milliseconds. An injected clock may return fractions
 * (virtual time, `performance`-based clocks); BigInt refuses those, so round to the nearest ms.
 */
function wireMs(ms: number): bigint {
  return BigInt(Math.round(ms));
}
