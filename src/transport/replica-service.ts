import type { CallAuthContext } from '../interceptors/certificate-identity.js';
import type { Metadata, sendUnaryData, ServerDuplexStream, ServerUnaryCall, status as Status } from '@grpc/grpc-js';
import {
  ProbeState,
  ReplicaServiceService,
  type ProbeRequest,
  type ProbeResponse,
  type SnapshotRequest,
  type SnapshotResponse,
  type ClockSyncRequest,
  type ClockSyncResponse,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type ReadRequest,
  type RaftRequest,
  type ForwardRequest,
  type ReadResponse,
  type ReplicaServiceServer,
  type ReplicateRequest,
  type ReplicateResponse,
  type SyncDigestsRequest,
  type SyncDigestsResponse,
  type ExchangeRequest,
  type ExchangeResponse,
} from '../gen/replikit/v1/replica_service.js';
import type { Hlc } from '../gen/replikit/v1/types.js';
import { REASON_METADATA_KEY, toGrpcStatus } from './status.js';
import { invalidArgument } from '../errors.js';
import type { ReplicaHandler } from './replica-set.js';
import { respond } from './kv-service.js';
import { NODE_ID_METADATA_KEY } from '../interceptors/metadata-keys.js';
import { entryFromWire, entryToWire, missingEntryToWire, outcomeToWire, vectorClockToWire } from './wire.js';
import { raftMessageFromWire } from './raft-wire.js';
import type { TxnResponse } from '../gen/replikit/v1/kv_service.js';

export interface ReplicaServiceHandlers {
  readonly replica: ReplicaHandler;
  /** Answers one ClockSync sample (see clock-sync-service.ts). */
  clockSync(request: ClockSyncRequest): ClockSyncResponse;
  /** Takes over an accepted Heartbeat stream. */
  heartbeat(stream: ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>): void;
  /** The most entries one call may carry. */
  readonly maxBatchEntries: number;
  /** This node's id: Raft messages must be addressed to it. */
  readonly selfId: string;
  /**
   * Checks a call's metadata before its handler runs, answering with the returned status when it
   * refuses. For a node attached to an application's server, whose interceptors are not replikit's.
   */
  readonly guard?: (metadata: Metadata, methodPath: string, authContext: CallAuthContext | null) => { code: Status; details: string } | undefined;
  /**
   * Exchange streams: reads the HLC a message carries and merges it into this node's clock, or
   * returns a refusal (the HLC is too far ahead) that answers that one call.
   */
  readonly observeMessageHlc: (hlc: Hlc | undefined) => { code: Status; details: string } | undefined;
  /** Stamps this node's HLC on an answer. */
  readonly stampMessageHlc: () => Hlc;
  /** Told when a stream is cut off or replaced, for a log line. */
  readonly onStreamCut?: (peer: string, why: string) => void;
}

/**
 * Calls one Exchange stream may have in flight at once; beyond it a call is answered
 * RESOURCE_EXHAUSTED. Batches from one peer's coordinator arrive a turn at a time, so this is far
 * above normal use and only bounds a misbehaving peer's memory.
 */
export const MAX_EXCHANGE_CALLS_IN_FLIGHT = 4096;

/**
 * Bytes of answers one Exchange stream may have written and not yet flushed to its peer. Eight
 * full batches (maxBatchBytes, 512 KiB): a peer that reads keeps far below it, and a peer that
 * stops reading is cut off at it instead of holding the node's memory for as long as it likes.
 */
export const MAX_EXCHANGE_UNSENT_BYTES = 8 * 512 * 1024;

/**
 * ReplicaService over the node's replica half. The peer-identity interceptor has already checked
 * the caller's cluster and node id; here every entry is validated before the core sees it.
 */
/**
 * The most Raft messages one RaftRequest may carry: a node sends each peer what one Ready holds
 * (a handful, unless it is catching up many ReadIndex rounds), so 1,024 is far above honest use
 * and bounds what a forged request costs.
 */
export const MAX_RAFT_MESSAGES_PER_CALL = 1024;

export function replicaService(handlers: ReplicaServiceHandlers): ReplicaServiceServer {
  /** The live Exchange stream of each peer, by the function that cuts it. */
  const exchanges = new Map<string, (why: string) => void>();
  const guarded = <Req, Res>(path: string, handle: (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const refusal = handlers.guard?.(call.metadata, path, call.getAuthContext());
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

  const replicate = async (caller: string, req: ReplicateRequest): Promise<ReplicateResponse> => {
    checkBatch(req.entries.length, 'Replicate');
    const entries = req.entries.map((e, i) => entryFromWire(e, `entry ${i}`));
    const outcomes = await handlers.replica.replicate(caller, req.keyspace, entries);
    return { outcomes: outcomes.map(outcomeToWire) };
  };
  const raft = async (caller: string, req: RaftRequest): Promise<void> => {
    if (req.messages.length > MAX_RAFT_MESSAGES_PER_CALL) {
      throw invalidArgument('BATCH_TOO_LARGE', `a RaftRequest carries ${req.messages.length} messages; the limit is ${MAX_RAFT_MESSAGES_PER_CALL}`);
    }
    const messages = req.messages.map((m) => raftMessageFromWire(m, caller, handlers.selfId));
    await handlers.replica.raft(caller, req.keyspace, messages);
  };
  const forward = (caller: string, req: ForwardRequest): Promise<TxnResponse> => {
    if (req.txn === undefined) return Promise.reject(invalidArgument('FORWARD_EMPTY', 'a ForwardRequest carries no transaction'));
    return handlers.replica.forward(caller, req.txn, req.timeoutMs);
  };
  const read = async (caller: string, req: ReadRequest): Promise<ReadResponse> => {
    checkBatch(req.keys.length, 'Read');
    const entries = await handlers.replica.read(caller, req.keyspace, req.keys);
    return { entries: entries.map((e, i) => (e === undefined ? missingEntryToWire(req.keys[i]!) : entryToWire(e))) };
  };

  return {
    replicate: guarded(ReplicaServiceService.replicate.path, (call: ServerUnaryCall<ReplicateRequest, ReplicateResponse>, callback: sendUnaryData<ReplicateResponse>) => {
      respond(callback, () => replicate(callerOf(call), call.request));
    }),
    read: guarded(ReplicaServiceService.read.path, (call: ServerUnaryCall<ReadRequest, ReadResponse>, callback: sendUnaryData<ReadResponse>) => {
      respond(callback, () => read(callerOf(call), call.request));
    }),
    exchange(stream: ServerDuplexStream<ExchangeRequest, ExchangeResponse>) {
      const refusal = handlers.guard?.(stream.metadata, ReplicaServiceService.exchange.path, stream.getAuthContext());
      if (refusal !== undefined) {
        stream.emit('error', refusal);
        return;
      }
      const callerValue = stream.metadata.get(NODE_ID_METADATA_KEY)[0];
      const caller = typeof callerValue === 'string' ? callerValue : '';
      let inFlight = 0;
      let open = true;
      /** The peer half-closed: it sends no more calls, and the stream ends once the last answer is written. */
      let halfClosed = false;
      let unsentBytes = 0;
      const cut = (code: Status, why: string): void => {
        if (!open) return;
        open = false;
        if (exchanges.get(caller) === cutThis) exchanges.delete(caller);
        handlers.onStreamCut?.(caller, why);
        stream.emit('error', { code, details: why });
      };
      const cutThis = (why: string) => cut(10 as Status, why); // ABORTED: the peer opens a new one
      // One live Exchange stream per peer: a node opens one at a time, so a newer one replaces
      // the older (a reconnect after a break, or a misbehaving caller opening thousands).
      exchanges.get(caller)?.('replaced by a newer Exchange stream from the same peer');
      exchanges.set(caller, cutThis);
      const answer = (callId: bigint, body: Omit<ExchangeResponse, 'callId' | 'hlc'>): void => {
        if (!open) return;
        const message: ExchangeResponse = { callId, hlc: handlers.stampMessageHlc(), ...body };
        const bytes = answerBytes(message);
        if (unsentBytes + bytes > MAX_EXCHANGE_UNSENT_BYTES) {
          // Backpressure: the peer is not reading its answers.
          cut(8 as Status, `the peer read none of ${Math.round(unsentBytes / 1024)} KiB of answers (the limit is ${MAX_EXCHANGE_UNSENT_BYTES / 1024} KiB); stream cut off`);
          return;
        }
        unsentBytes += bytes;
        try {
          stream.write(message, () => (unsentBytes -= bytes));
        } catch {
          // The stream closed while the call ran; the caller has already failed it.
        }
      };
      const fail = (callId: bigint, err: unknown): void => {
        const status = toGrpcStatus(err);
        const reason = status.metadata?.get(REASON_METADATA_KEY)[0];
        answer(callId, { error: { code: status.code, message: status.details, reason: typeof reason === 'string' ? reason : '' } });
      };
      stream.on('data', (req: ExchangeRequest) => {
        const refused = handlers.observeMessageHlc(req.hlc);
        if (refused !== undefined) return answer(req.callId, { error: { code: refused.code, message: refused.details, reason: 'CLOCK_TOO_FAR_AHEAD' } });
        if (inFlight >= MAX_EXCHANGE_CALLS_IN_FLIGHT) {
          return answer(req.callId, {
            error: { code: 8, message: `more than ${MAX_EXCHANGE_CALLS_IN_FLIGHT} calls in flight on this stream`, reason: 'TOO_MANY_CALLS' },
          });
        }
        inFlight++;
        const work =
          req.replicate !== undefined
            ? replicate(caller, req.replicate).then((r) => answer(req.callId, { replicate: r }))
            : req.read !== undefined
              ? read(caller, req.read).then((r) => answer(req.callId, { read: r }))
              : req.raft !== undefined
                ? raft(caller, req.raft).then(() => answer(req.callId, { raft: {} }))
                : req.forward?.lease !== undefined
                  ? handlers.replica.forwardLease(caller, req.forward.lease, req.forward.timeoutMs).then((r) => answer(req.callId, { lease: r }))
                : req.forward?.compact !== undefined
                  ? handlers.replica
                      .forwardCompact(caller, req.forward.compact.keyspace, Number(req.forward.compact.revision), req.forward.timeoutMs)
                      .then((r) => answer(req.callId, { compact: { compactRevision: BigInt(r.compactRevision), revision: BigInt(r.revision) } }))
                  : req.forward !== undefined
                  ? forward(caller, req.forward).then((r) => answer(req.callId, { forward: r }))
                  : Promise.reject(invalidArgument('EXCHANGE_EMPTY', 'an Exchange request carries no call'));
        work
          .catch((err: unknown) => fail(req.callId, err))
          .finally(() => {
            inFlight--;
            if (halfClosed && inFlight === 0) close();
          });
      });
      const close = () => {
        if (!open) return;
        open = false;
        if (exchanges.get(caller) === cutThis) exchanges.delete(caller);
        stream.end();
      };
      // A half-close ends the peer's calls, not its interest in their answers: those in flight are
      // still answered (each ends: a forwarded transaction within its timeout), then the stream.
      stream.on('end', () => {
        halfClosed = true;
        if (inFlight === 0) close();
      });
      stream.on('error', () => {
        open = false;
        if (exchanges.get(caller) === cutThis) exchanges.delete(caller);
      });
    },
    syncDigests: guarded(ReplicaServiceService.syncDigests.path, (call: ServerUnaryCall<SyncDigestsRequest, SyncDigestsResponse>, callback: sendUnaryData<SyncDigestsResponse>) => {
      respond(callback, async () => {
        const req = call.request;
        const answer = await handlers.replica.syncDigests(callerOf(call), req.keyspace, req.bucketHashes);
        return { differingBuckets: answer.differingBuckets, entries: answer.entries.map(entryToWire), truncated: answer.truncated };
      });
    }),
    probe: guarded(ReplicaServiceService.probe.path, (call: ServerUnaryCall<ProbeRequest, ProbeResponse>, callback: sendUnaryData<ProbeResponse>) => {
      respond(callback, async () => {
        const answer = await handlers.replica.probe(callerOf(call));
        const state = answer === 'new' ? ProbeState.PROBE_STATE_NEW : answer === 'ready' ? ProbeState.PROBE_STATE_READY : ProbeState.PROBE_STATE_MEMBER;
        const progress = (await handlers.replica.progress?.(callerOf(call))) ?? { serving: false, applied: {} };
        const keyspaces = Object.entries(progress.applied).map(([keyspace, applied]) => ({ keyspace, appliedIndex: BigInt(applied) }));
        return { state, serving: progress.serving, keyspaces };
      });
    }),
    snapshot: guarded(ReplicaServiceService.snapshot.path, (call: ServerUnaryCall<SnapshotRequest, SnapshotResponse>, callback: sendUnaryData<SnapshotResponse>) => {
      respond(callback, async () => {
        const req = call.request;
        const page = await handlers.replica.snapshot(callerOf(call), req.keyspace, req.afterKey.length === 0 ? undefined : req.afterKey, req.maxEntries);
        return { entries: page.entries.map(entryToWire), more: page.more, applied: vectorClockToWire(page.applied) };
      });
    }),
    clockSync: guarded(ReplicaServiceService.clockSync.path, (call: ServerUnaryCall<ClockSyncRequest, ClockSyncResponse>, callback: sendUnaryData<ClockSyncResponse>) => {
      respond(callback, async () => handlers.clockSync(call.request));
    }),
    heartbeat(stream: ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>) {
      const refusal = handlers.guard?.(stream.metadata, ReplicaServiceService.heartbeat.path, stream.getAuthContext());
      if (refusal !== undefined) {
        stream.emit('error', refusal);
        return;
      }
      handlers.heartbeat(stream);
    },
  };
}

/** An answer's size on the wire, near enough for the unsent-bytes budget. */
function answerBytes(message: ExchangeResponse): number {
  let bytes = 64;
  for (const e of message.read?.entries ?? []) bytes += e.key.byteLength + e.value.byteLength + 48;
  for (const r of message.forward?.responses ?? []) bytes += (r.get?.kv?.key.byteLength ?? 0) + (r.get?.kv?.value.byteLength ?? 0) + 48;
  bytes += (message.replicate?.outcomes.length ?? 0) * 2 + (message.error?.message.length ?? 0);
  return bytes;
}
