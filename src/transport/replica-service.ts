import type { Metadata, sendUnaryData, ServerDuplexStream, ServerUnaryCall, status as Status } from '@grpc/grpc-js';
import {
  ReplicaServiceService,
  type ClockSyncRequest,
  type ClockSyncResponse,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type ReadRequest,
  type ReadResponse,
  type ReplicaServiceServer,
  type ReplicateRequest,
  type ReplicateResponse,
  type SyncDigestsRequest,
  type SyncDigestsResponse,
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
  /**
   * Checks a call's metadata before its handler runs, answering with the returned status when it
   * refuses. For a node attached to an application's server, whose interceptors are not replikit's.
   */
  readonly guard?: (metadata: Metadata, methodPath: string) => { code: Status; details: string } | undefined;
}

/**
 * ReplicaService over the node's replica half. The peer-identity interceptor has already checked
 * the caller's cluster and node id; here every entry is validated before the core sees it.
 */
export function replicaService(handlers: ReplicaServiceHandlers): ReplicaServiceServer {
  const guarded = <Req, Res>(path: string, handle: (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const refusal = handlers.guard?.(call.metadata, path);
      if (refusal !== undefined) return callback(refusal);
      handle(call, callback);
    };
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
    replicate: guarded(ReplicaServiceService.replicate.path, (call: ServerUnaryCall<ReplicateRequest, ReplicateResponse>, callback: sendUnaryData<ReplicateResponse>) => {
      respond(callback, async () => {
        const req = call.request;
        checkBatch(req.entries.length, 'Replicate');
        const entries = req.entries.map((e, i) => entryFromWire(e, `entry ${i}`));
        const outcomes = await handlers.replica.replicate(callerOf(call), req.keyspace, entries);
        return { outcomes: outcomes.map(outcomeToWire) };
      });
    }),
    read: guarded(ReplicaServiceService.read.path, (call: ServerUnaryCall<ReadRequest, ReadResponse>, callback: sendUnaryData<ReadResponse>) => {
      respond(callback, async () => {
        const req = call.request;
        checkBatch(req.keys.length, 'Read');
        const entries = await handlers.replica.read(callerOf(call), req.keyspace, req.keys);
        return { entries: entries.map((e, i) => (e === undefined ? missingEntryToWire(req.keys[i]!) : entryToWire(e))) };
      });
    }),
    syncDigests: guarded(ReplicaServiceService.syncDigests.path, (call: ServerUnaryCall<SyncDigestsRequest, SyncDigestsResponse>, callback: sendUnaryData<SyncDigestsResponse>) => {
      respond(callback, async () => {
        const req = call.request;
        const answer = await handlers.replica.syncDigests(callerOf(call), req.keyspace, req.bucketHashes);
        return { differingBuckets: answer.differingBuckets, entries: answer.entries.map(entryToWire), truncated: answer.truncated };
      });
    }),
    clockSync: guarded(ReplicaServiceService.clockSync.path, (call: ServerUnaryCall<ClockSyncRequest, ClockSyncResponse>, callback: sendUnaryData<ClockSyncResponse>) => {
      respond(callback, async () => handlers.clockSync(call.request));
    }),
    heartbeat(stream: ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>) {
      const refusal = handlers.guard?.(stream.metadata, ReplicaServiceService.heartbeat.path);
      if (refusal !== undefined) {
        stream.emit('error', refusal);
        return;
      }
      handlers.heartbeat(stream);
    },
  };
}
