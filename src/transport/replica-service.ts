import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall } from '@grpc/grpc-js';
import type {
  ClockSyncRequest,
  ClockSyncResponse,
  HeartbeatRequest,
  HeartbeatResponse,
  ReadRequest,
  ReadResponse,
  ReplicaServiceServer,
  ReplicateRequest,
  ReplicateResponse,
  SyncDigestsRequest,
  SyncDigestsResponse,
} from '../gen/replikit/v1/replica_service.js';
import { invalidArgument } from '../errors.js';
import type { ReplicaHandler } from './replica-set.js';
import { respond } from './kv-service.js';
import { NODE_ID_METADATA_KEY } from '../interceptors/metadata-keys.js';
import { entryFromWire, entryToWire, missingEntryToWire, outcomeToWire } from './wire.js';

export interface ReplicaServiceHandlers {
  readonly replica: ReplicaHandler;
  /** Answers one ClockSync sample (see clock-sync-service.ts). */
  clockSync(request: ClockSyncRequest): ClockSyncResponse;
  /** Takes over an accepted Heartbeat stream. */
  heartbeat(stream: ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>): void;
  /** The most entries one call may carry. */
  readonly maxBatchEntries: number;
}

/**
 * ReplicaService over the node's replica half. The peer-identity interceptor has already checked
 * the caller's cluster and node id; here every entry is validated before the core sees it.
 */
export function replicaService(handlers: ReplicaServiceHandlers): ReplicaServiceServer {
  const callerOf = (call: ServerUnaryCall<unknown, unknown>): string => {
    const value = call.metadata.get(NODE_ID_METADATA_KEY)[0];
    return typeof value === 'string' ? value : '';
  };
  const checkBatch = (count: number, what: string): void => {
    if (count > handlers.maxBatchEntries) {
      throw invalidArgument('BATCH_TOO_LARGE', `${what} carries ${count} entries; the limit (maxBatchEntries) is ${handlers.maxBatchEntries}`);
    }
  };

  return {
    replicate(call: ServerUnaryCall<ReplicateRequest, ReplicateResponse>, callback: sendUnaryData<ReplicateResponse>) {
      respond(callback, async () => {
        const req = call.request;
        checkBatch(req.entries.length, 'Replicate');
        const entries = req.entries.map((e, i) => entryFromWire(e, `entry ${i}`));
        const outcomes = await handlers.replica.replicate(callerOf(call), req.keyspace, entries);
        return { outcomes: outcomes.map(outcomeToWire) };
      });
    },
    read(call: ServerUnaryCall<ReadRequest, ReadResponse>, callback: sendUnaryData<ReadResponse>) {
      respond(callback, async () => {
        const req = call.request;
        checkBatch(req.keys.length, 'Read');
        const entries = await handlers.replica.read(callerOf(call), req.keyspace, req.keys);
        return { entries: entries.map((e, i) => (e === undefined ? missingEntryToWire(req.keys[i]!) : entryToWire(e))) };
      });
    },
    syncDigests(call: ServerUnaryCall<SyncDigestsRequest, SyncDigestsResponse>, callback: sendUnaryData<SyncDigestsResponse>) {
      respond(callback, async () => {
        const req = call.request;
        const answer = await handlers.replica.syncDigests(callerOf(call), req.keyspace, req.bucketHashes);
        return { differingBuckets: answer.differingBuckets, entries: answer.entries.map(entryToWire), truncated: answer.truncated };
      });
    },
    clockSync(call: ServerUnaryCall<ClockSyncRequest, ClockSyncResponse>, callback: sendUnaryData<ClockSyncResponse>) {
      respond(callback, async () => handlers.clockSync(call.request));
    },
    heartbeat(stream: ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>) {
      handlers.heartbeat(stream);
    },
  };
}
