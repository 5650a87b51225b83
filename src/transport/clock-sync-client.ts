import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { clockSample, type ClockSample, type HybridLogicalClock, type WallClock } from '../clock/index.js';
import { ReplikitError } from '../errors.js';
import type { ClockSyncResponse, ReplicaServiceClient } from '../gen/replikit/v1/replica_service.js';
import { observeRemoteHlc, type ObserveHlcResult } from '../interceptors/remote-hlc.js';
import { fromGrpcError } from './status.js';

/** What the client half of ClockSync needs from its node. */
export interface SampleClockOptions {
  /** The node's wall clock: read when the request leaves and when the answer arrives. */
  readonly wallClock: WallClock;
  /** The node's HLC, moved past the peer's HLC from the answer (see {@link observeRemoteHlc}). */
  readonly clock: HybridLogicalClock;
  /** The node's id, sent so that the peer knows who measures it. */
  readonly nodeId: string;
  /** How long to wait for the answer, in milliseconds. */
  readonly deadlineMs: number;
  /** See DEFAULT_MAX_CLOCK_OFFSET_MS. @default 500 */
  readonly maxClockOffsetMs?: number;
}

/** One ClockSync sample: the offset estimate plus the readings it was made from. */
export interface ClockSyncResult extends ClockSample {
  /** The id the peer answered with. */
  readonly remoteNodeId: string;
  /** This node's wall time when the request left, in ms. */
  readonly originMs: number;
  /** The peer's wall time when the request arrived, in ms. */
  readonly receiveMs: number;
  /** The peer's wall time when the answer left, in ms. */
  readonly sendMs: number;
  /** This node's wall time when the answer arrived, in ms. */
  readonly arrivalMs: number;
  /** What became of the peer's HLC in the answer. */
  readonly hlc: ObserveHlcResult;
}

/**
 * Takes one NTP-style sample of a peer's clock. Rejects with the peer's error turned into a
 * ReplikitError (see status.ts), or with an internal one when the answer does not belong to the
 * request (origin not echoed) or lacks its wall times. Feed the result to the peer's
 * ClockOffsetEstimator.
 */
export async function sampleClock(client: ReplicaServiceClient, options: SampleClockOptions): Promise<ClockSyncResult> {
  const originMs = Math.round(options.wallClock());
  // grpc-js measures deadlines against the machine's clock, not the injected one, so the deadline
  // is taken from Date.now() even when the node's wall clock is skewed on purpose.
  const deadline = Date.now() + options.deadlineMs;
  const response = await new Promise<ClockSyncResponse>((resolve, reject) => {
    client.clockSync(
      { nodeId: options.nodeId, originWallTimeMs: BigInt(originMs) },
      new Metadata(),
      { deadline },
      (err: ServiceError | null, value: ClockSyncResponse) => (err === null ? resolve(value) : reject(fromGrpcError(err))),
    );
  });
  const arrivalMs = options.wallClock();

  if (response.originWallTimeMs !== BigInt(originMs)) {
    throw badResponse(`echoes origin ${response.originWallTimeMs}, not this request's ${originMs}`);
  }
  const receiveMs = safeMs(response.receiveWallTimeMs, 'receive_wall_time_ms');
  const sendMs = safeMs(response.sendWallTimeMs, 'send_wall_time_ms');
  const hlc: ObserveHlcResult =
    response.hlc === undefined
      ? { kind: 'absent' }
      : observeRemoteHlc(
          { wallMs: safeMsOrInfinity(response.hlc.wallTimeMs), logical: response.hlc.logical },
          options.clock,
          { maxClockOffsetMs: options.maxClockOffsetMs },
        );
  return { ...clockSample(originMs, receiveMs, sendMs, arrivalMs), remoteNodeId: response.nodeId, originMs, receiveMs, sendMs, arrivalMs, hlc };
}

function safeMs(value: bigint, field: string): number {
  if (value === 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw badResponse(`has ${field} = ${value}`);
  return Number(value);
}

/** An unsafe wall time becomes Infinity, which observeRemoteHlc refuses as malformed. */
function safeMsOrInfinity(value: bigint): number {
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(value);
}

function badResponse(what: string): ReplikitError {
  return new ReplikitError('internal', 'CLOCK_SYNC_BAD_RESPONSE', `the ClockSync answer ${what}`);
}
