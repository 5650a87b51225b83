import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall } from '@grpc/grpc-js';
import { keyValue } from '../policy/cp/kv-state-machine.js';
import { serveWatch } from './watch-stream.js';
import type { WallClock } from '../clock/index.js';
import { AckLevel, Consistency, SortOrder, type CompactRequest, type CompactResponse, type RangeRequest, type RangeResponse, type WatchRequest, type WatchResponse, type KvServiceServer, type TxnRequest, type TxnResponse, type DeleteRequest, type DeleteResponse, type GetRequest, type GetResponse, type PutRequest, type PutResponse } from '../gen/replikit/v1/kv_service.js';
import { invalidArgument } from '../errors.js';
import type { NodeCore, CallOptions } from '../node/node-core.js';
import { remainingMs } from './call-deadline.js';
import { toGrpcStatus } from './status.js';
import { asBuffer, versionToWire } from './wire.js';

const EMPTY = Buffer.alloc(0);

function ackFromWire(ack: AckLevel): CallOptions['ack'] {
  switch (ack) {
    case AckLevel.ACK_LEVEL_UNSPECIFIED:
      return undefined;
    case AckLevel.ACK_LEVEL_ONE:
      return 'one';
    case AckLevel.ACK_LEVEL_QUORUM:
      return 'quorum';
    case AckLevel.ACK_LEVEL_ALL:
      return 'all';
    default:
      throw invalidArgument('ACK_LEVEL_INVALID', `unknown ack level ${ack}; use ONE, QUORUM or ALL`);
  }
}

function consistencyFromWire(c: Consistency): CallOptions['consistency'] {
  switch (c) {
    case Consistency.CONSISTENCY_UNSPECIFIED:
      return undefined;
    case Consistency.CONSISTENCY_LINEARIZABLE:
      return 'linearizable';
    case Consistency.CONSISTENCY_SERIALIZABLE:
      return 'serializable';
    default:
      throw invalidArgument('CONSISTENCY_INVALID', `unknown consistency ${c}; use LINEARIZABLE or SERIALIZABLE`);
  }
}

const CLIENT_CANCELLED = Object.freeze(new Error('the client cancelled the call'));

/**
 * KvService over a NodeCore: every node coordinates any request. Requests are validated by the
 * core; every failure becomes exactly one gRPC status (status.ts).
 */
export function kvService(core: NodeCore, wallClock: WallClock): KvServiceServer {
  const options = (call: ServerUnaryCall<unknown, unknown>, token: Buffer, ack?: AckLevel, consistency?: Consistency): CallOptions => {
    // A client that cancels (or whose deadline passes, or whose connection drops) releases what
    // its request waits for at once: a session catch-up, a node's start.
    const cancelled = new AbortController();
    // One reason for every cancellation: abort() without one builds a DOMException, stack and all,
    // which profiles showed among the hottest functions of a loaded node.
    call.once('cancelled', () => cancelled.abort(CLIENT_CANCELLED));
    return {
      timeoutMs: remainingMs(call.getDeadline(), wallClock()),
      sessionToken: token.byteLength > 0 ? token : undefined,
      ack: ack === undefined ? undefined : ackFromWire(ack),
      signal: cancelled.signal,
      consistency: consistency === undefined ? undefined : consistencyFromWire(consistency),
    };
  };

  return {
    put(call: ServerUnaryCall<PutRequest, PutResponse>, callback: sendUnaryData<PutResponse>) {
      const req = call.request;
      respond(callback, async () => {
        const result = await core.put(req.keyspace, req.key, req.value, { ...options(call, req.sessionToken, req.ack), lease: Number(req.lease) });
        return { version: versionToWire(result.version), sessionToken: asBuffer(result.sessionToken), revision: BigInt(result.revision ?? 0) };
      });
    },
    get(call: ServerUnaryCall<GetRequest, GetResponse>, callback: sendUnaryData<GetResponse>) {
      const req = call.request;
      respond(callback, async () => {
        const result = await core.get(req.keyspace, req.key, options(call, req.sessionToken, undefined, req.consistency));
        return {
          found: result.value !== undefined,
          value: result.value === undefined ? EMPTY : asBuffer(result.value),
          version: result.version === undefined ? undefined : versionToWire(result.version),
          sessionToken: asBuffer(result.sessionToken),
          revision: BigInt(result.cp?.revision ?? 0),
          createRevision: BigInt(result.cp?.createRevision ?? 0),
          modRevision: BigInt(result.cp?.modRevision ?? 0),
          keyVersion: BigInt(result.cp?.keyVersion ?? 0),
          possiblyStale: result.cp?.possiblyStale ?? false,
        };
      });
    },
    delete(call: ServerUnaryCall<DeleteRequest, DeleteResponse>, callback: sendUnaryData<DeleteResponse>) {
      const req = call.request;
      respond(callback, async () => {
        const result = await core.delete(req.keyspace, req.key, options(call, req.sessionToken, req.ack));
        return { version: versionToWire(result.version), sessionToken: asBuffer(result.sessionToken), revision: BigInt(result.revision ?? 0) };
      });
    },
    txn(call: ServerUnaryCall<TxnRequest, TxnResponse>, callback: sendUnaryData<TxnResponse>) {
      respond(callback, () => core.txn(call.request, options(call, EMPTY)));
    },
    range(call: ServerUnaryCall<RangeRequest, RangeResponse>, callback: sendUnaryData<RangeResponse>) {
      const req = call.request;
      respond(callback, async () => {
        const limit = Number(req.limit);
        const result = await core.range(
          req.keyspace,
          {
            key: req.key,
            rangeEnd: req.rangeEnd,
            prefix: req.prefix,
            limit,
            keysOnly: req.keysOnly,
            countOnly: req.countOnly,
            descending: sortOrderFromWire(req.sortOrder),
            revision: Number(req.revision),
            continuation: req.continuation,
          },
          options(call, req.sessionToken, undefined, req.consistency),
        );
        return {
          kvs: result.kvs.map(keyValue),
          count: BigInt(result.count),
          more: result.more,
          continuation: result.continuation === undefined ? EMPTY : asBuffer(result.continuation),
          revision: BigInt(result.revision),
          sessionToken: asBuffer(result.sessionToken),
          possiblyStale: result.possiblyStale,
        };
      });
    },
    compact(call: ServerUnaryCall<CompactRequest, CompactResponse>, callback: sendUnaryData<CompactResponse>) {
      const req = call.request;
      respond(callback, async () => {
        const result = await core.compact(req.keyspace, Number(req.revision), options(call, EMPTY));
        return { compactRevision: BigInt(result.compactRevision), revision: BigInt(result.revision) };
      });
    },
    watch(call: ServerDuplexStream<WatchRequest, WatchResponse>) {
      serveWatch(core, call);
    },
  };
}

function sortOrderFromWire(order: SortOrder): boolean {
  switch (order) {
    case SortOrder.SORT_ORDER_UNSPECIFIED:
    case SortOrder.SORT_ORDER_ASCENDING:
      return false;
    case SortOrder.SORT_ORDER_DESCENDING:
      return true;
    default:
      throw invalidArgument('SORT_ORDER_INVALID', `unknown sort_order ${order}; use ASCENDING or DESCENDING`, { field: 'sort_order' });
  }
}

/** Runs a handler body and answers with its result or its error's status; never throws. */
export function respond<T>(callback: sendUnaryData<T>, body: () => Promise<T>): void {
  body().then(
    (response) => callback(null, response),
    (err: unknown) => callback(toGrpcStatus(err)),
  );
}
