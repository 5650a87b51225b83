/**
 * The few fields of etcd's v3 gRPC API (etcdserverpb) the benchmark needs, encoded by hand with
 * @bufbuild/protobuf's wire writer, so no etcd .proto files are needed. Field numbers are those
 * of etcd 3.4's rpc.proto and kv.proto.
 */
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

export const ETCD_PUT_PATH = '/etcdserverpb.KV/Put';
export const ETCD_RANGE_PATH = '/etcdserverpb.KV/Range';
export const ETCD_STATUS_PATH = '/etcdserverpb.Maintenance/Status';
export const ETCD_TXN_PATH = '/etcdserverpb.KV/Txn';

/** PutRequest { bytes key = 1; bytes value = 2; } */
export function encodePutRequest(key: Uint8Array, value: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(key).tag(2, WireType.LengthDelimited).bytes(value).finish();
}

/**
 * RangeRequest { bytes key = 1; bool serializable = 7; }. `serializable: false` (the default,
 * and then the field is left out as proto3 does) asks for a linearizable read.
 */
export function encodeRangeRequest(key: Uint8Array, serializable = false): Uint8Array {
  const writer = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(key);
  if (serializable) writer.tag(7, WireType.Varint).bool(true);
  return writer.finish();
}

/** RangeResponse { repeated KeyValue kvs = 2; int64 count = 4; }, KeyValue { bytes key = 1; bytes value = 5; } */
export function decodeRangeResponse(buf: Uint8Array): { count: number; values: Uint8Array[] } {
  const reader = new BinaryReader(buf);
  const values: Uint8Array[] = [];
  let count = 0;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 2 && wireType === WireType.LengthDelimited) {
      const kv = new BinaryReader(reader.bytes());
      while (kv.pos < kv.len) {
        const [kvField, kvWire] = kv.tag();
        if (kvField === 5 && kvWire === WireType.LengthDelimited) values.push(kv.bytes());
        else kv.skip(kvWire, kvField);
      }
    } else if (field === 4 && wireType === WireType.Varint) {
      count = Number(reader.int64());
    } else {
      reader.skip(wireType, field);
    }
  }
  return { count, values };
}

export interface EtcdStatus {
  /** This member's id (ResponseHeader.member_id), as a decimal string: ids are 64-bit. */
  readonly memberId: string;
  /** The member id of the leader this member knows, "0" when it knows none. */
  readonly leader: string;
  readonly version: string;
  /** raftIndex = 5: the member's committed index. */
  readonly raftIndex: bigint;
  /** raftTerm = 6. */
  readonly raftTerm: bigint;
  /** raftAppliedIndex = 7 (3.4 and later). */
  readonly raftAppliedIndex: bigint;
}

/**
 * StatusResponse { ResponseHeader header = 1; string version = 2; uint64 leader = 4;
 * uint64 raftIndex = 5; uint64 raftTerm = 6; uint64 raftAppliedIndex = 7; },
 * ResponseHeader { uint64 member_id = 2; }
 */
export function decodeStatusResponse(buf: Uint8Array): EtcdStatus {
  const reader = new BinaryReader(buf);
  let memberId = '0';
  let leader = '0';
  let version = '';
  let raftIndex = 0n;
  let raftTerm = 0n;
  let raftAppliedIndex = 0n;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      const header = new BinaryReader(reader.bytes());
      while (header.pos < header.len) {
        const [hField, hWire] = header.tag();
        if (hField === 2 && hWire === WireType.Varint) memberId = String(header.uint64());
        else header.skip(hWire, hField);
      }
    } else if (field === 2 && wireType === WireType.LengthDelimited) {
      version = reader.string();
    } else if (wireType === WireType.Varint && field >= 4 && field <= 7) {
      const value = BigInt(reader.uint64());
      if (field === 4) leader = String(value);
      else if (field === 5) raftIndex = value;
      else if (field === 6) raftTerm = value;
      else raftAppliedIndex = value;
    } else {
      reader.skip(wireType, field);
    }
  }
  return { memberId, leader, version, raftIndex, raftTerm, raftAppliedIndex };
}

/** Compare.CompareResult of rpc.proto: the relation `target RESULT operand`. */
export const EtcdCompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;

/**
 * One Compare of a TxnRequest. The operand names the target (Compare.CompareTarget VERSION = 0,
 * CREATE = 1, MOD = 2, VALUE = 3) and fills the oneof `target_union` field of the same name.
 */
export interface EtcdCompare {
  readonly key: Uint8Array;
  readonly result: (typeof EtcdCompareResult)[keyof typeof EtcdCompareResult];
  readonly operand:
    | { readonly version: bigint }
    | { readonly createRevision: bigint }
    | { readonly modRevision: bigint }
    | { readonly value: Uint8Array };
}

/** One RequestOp of a Txn branch: a put (request_put = 2) or a single-key range (request_range = 1). */
export type EtcdRequestOp = { readonly put: { readonly key: Uint8Array; readonly value: Uint8Array } } | { readonly range: { readonly key: Uint8Array } };

export interface EtcdTxn {
  readonly compare: readonly EtcdCompare[];
  readonly success: readonly EtcdRequestOp[];
  readonly failure: readonly EtcdRequestOp[];
}

/**
 * TxnRequest { repeated Compare compare = 1; repeated RequestOp success = 2; repeated RequestOp
 * failure = 3; }, Compare { CompareResult result = 1; CompareTarget target = 2; bytes key = 3;
 * oneof target_union { int64 version = 4; int64 create_revision = 5; int64 mod_revision = 6;
 * bytes value = 7; } }, RequestOp { oneof request { RangeRequest request_range = 1; PutRequest
 * request_put = 2; } }. Enum fields at their zero value are left out, as proto3 does; a oneof
 * member is always written, zero or not, since its presence is what selects it.
 */
export function encodeTxnRequest(txn: EtcdTxn): Uint8Array {
  const writer = new BinaryWriter();
  for (const c of txn.compare) writer.tag(1, WireType.LengthDelimited).bytes(encodeCompare(c));
  for (const op of txn.success) writer.tag(2, WireType.LengthDelimited).bytes(encodeRequestOp(op));
  for (const op of txn.failure) writer.tag(3, WireType.LengthDelimited).bytes(encodeRequestOp(op));
  return writer.finish();
}

function encodeCompare(c: EtcdCompare): Uint8Array {
  const writer = new BinaryWriter();
  if (c.result !== 0) writer.tag(1, WireType.Varint).int32(c.result);
  const o = c.operand;
  const target = 'version' in o ? 0 : 'createRevision' in o ? 1 : 'modRevision' in o ? 2 : 3;
  if (target !== 0) writer.tag(2, WireType.Varint).int32(target);
  writer.tag(3, WireType.LengthDelimited).bytes(c.key);
  if ('version' in o) writer.tag(4, WireType.Varint).int64(o.version);
  else if ('createRevision' in o) writer.tag(5, WireType.Varint).int64(o.createRevision);
  else if ('modRevision' in o) writer.tag(6, WireType.Varint).int64(o.modRevision);
  else writer.tag(7, WireType.LengthDelimited).bytes(o.value);
  return writer.finish();
}

function encodeRequestOp(op: EtcdRequestOp): Uint8Array {
  return 'put' in op
    ? new BinaryWriter().tag(2, WireType.LengthDelimited).bytes(encodePutRequest(op.put.key, op.put.value)).finish()
    : new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(encodeRangeRequest(op.range.key)).finish();
}

/** The fields of mvccpb.KeyValue a compare-and-set reads back. */
export interface EtcdKeyValue {
  readonly key: Uint8Array;
  readonly modRevision: bigint;
  readonly version: bigint;
  readonly value: Uint8Array;
}

export interface EtcdTxnResponse {
  /** ResponseHeader.revision: the store's revision after the transaction (a put's mod_revision). */
  readonly revision: bigint;
  readonly succeeded: boolean;
  /** One per operation of the branch that ran: the keys a range found; `null` for any other op. */
  readonly responses: readonly (readonly EtcdKeyValue[] | null)[];
}

/**
 * TxnResponse { ResponseHeader header = 1; bool succeeded = 2; repeated ResponseOp responses = 3; },
 * ResponseHeader { int64 revision = 3; }, ResponseOp { oneof response { RangeResponse
 * response_range = 1; PutResponse response_put = 2; ... } }, RangeResponse { repeated KeyValue kvs = 2; },
 * KeyValue { bytes key = 1; int64 mod_revision = 3; int64 version = 4; bytes value = 5; }
 */
export function decodeTxnResponse(buf: Uint8Array): EtcdTxnResponse {
  const reader = new BinaryReader(buf);
  let revision = 0n;
  let succeeded = false;
  const responses: (EtcdKeyValue[] | null)[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      const header = new BinaryReader(reader.bytes());
      while (header.pos < header.len) {
        const [hField, hWire] = header.tag();
        if (hField === 3 && hWire === WireType.Varint) revision = BigInt(header.int64());
        else header.skip(hWire, hField);
      }
    } else if (field === 2 && wireType === WireType.Varint) {
      succeeded = reader.bool();
    } else if (field === 3 && wireType === WireType.LengthDelimited) {
      responses.push(decodeResponseOp(reader.bytes()));
    } else {
      reader.skip(wireType, field);
    }
  }
  return { revision, succeeded, responses };
}

function decodeResponseOp(buf: Uint8Array): EtcdKeyValue[] | null {
  const reader = new BinaryReader(buf);
  let kvs: EtcdKeyValue[] | null = null;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      kvs = [];
      const range = new BinaryReader(reader.bytes());
      while (range.pos < range.len) {
        const [rField, rWire] = range.tag();
        if (rField === 2 && rWire === WireType.LengthDelimited) kvs.push(decodeKeyValue(range.bytes()));
        else range.skip(rWire, rField);
      }
    } else {
      reader.skip(wireType, field);
    }
  }
  return kvs;
}

function decodeKeyValue(buf: Uint8Array): EtcdKeyValue {
  const reader = new BinaryReader(buf);
  let key: Uint8Array = new Uint8Array(0);
  let modRevision = 0n;
  let version = 0n;
  let value: Uint8Array = new Uint8Array(0);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) key = reader.bytes();
    else if (field === 3 && wireType === WireType.Varint) modRevision = BigInt(reader.int64());
    else if (field === 4 && wireType === WireType.Varint) version = BigInt(reader.int64());
    else if (field === 5 && wireType === WireType.LengthDelimited) value = reader.bytes();
    else reader.skip(wireType, field);
  }
  return { key, modRevision, version, value };
}

// ---------------------------------------------------------------------------------------------
// Range over a prefix and Watch (the Range and Watch rows, bench/watch-range.ts). Field numbers
// checked against etcd's api/etcdserverpb/rpc.proto and api/mvccpb/kv.proto (3.4 and later).
// ---------------------------------------------------------------------------------------------

export const ETCD_WATCH_PATH = '/etcdserverpb.Watch/Watch';

/**
 * The range_end that makes [key, range_end) every key starting with `prefix`, as clientv3's
 * GetPrefixRangeEnd does: the prefix with its last byte below 0xff incremented and the bytes
 * after it dropped; a prefix of 0xff bytes only has no end (range_end "\0": every key ≥ key).
 */
export function etcdPrefixRangeEnd(prefix: Uint8Array): Uint8Array {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      // A copy: Buffer's slice() is a view, and the caller's prefix must stay as it is.
      const end = Uint8Array.from(prefix.subarray(0, i + 1));
      end[i]!++;
      return end;
    }
  }
  return new Uint8Array([0]);
}

/** What a RangeRequest of {@link encodeEtcdRangeRequest} asks. */
export interface EtcdRangeOptions {
  readonly key: Uint8Array;
  /** Empty or absent: only `key`. */
  readonly rangeEnd?: Uint8Array;
  /** At most this many keys; 0 or absent: no limit. */
  readonly limit?: number;
  /** false (the default): linearizable. */
  readonly serializable?: boolean;
  readonly keysOnly?: boolean;
  readonly countOnly?: boolean;
}

/**
 * RangeRequest { bytes key = 1; bytes range_end = 2; int64 limit = 3; int64 revision = 4;
 * SortOrder sort_order = 5; SortTarget sort_target = 6; bool serializable = 7; bool keys_only = 8;
 * bool count_only = 9; }. Fields at their zero value are left out, as proto3 does.
 */
export function encodeEtcdRangeRequest(options: EtcdRangeOptions): Uint8Array {
  const writer = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(options.key);
  if (options.rangeEnd !== undefined && options.rangeEnd.length > 0) writer.tag(2, WireType.LengthDelimited).bytes(options.rangeEnd);
  if (options.limit !== undefined && options.limit !== 0) writer.tag(3, WireType.Varint).int64(options.limit);
  if (options.serializable === true) writer.tag(7, WireType.Varint).bool(true);
  if (options.keysOnly === true) writer.tag(8, WireType.Varint).bool(true);
  if (options.countOnly === true) writer.tag(9, WireType.Varint).bool(true);
  return writer.finish();
}

export interface EtcdRangeResult {
  /** ResponseHeader.revision: the revision the range was read at. */
  readonly revision: bigint;
  readonly kvs: readonly EtcdKeyValue[];
  readonly more: boolean;
  readonly count: number;
}

/**
 * RangeResponse { ResponseHeader header = 1; repeated mvccpb.KeyValue kvs = 2; bool more = 3;
 * int64 count = 4; }, ResponseHeader { int64 revision = 3; }.
 */
export function decodeEtcdRangeResult(buf: Uint8Array): EtcdRangeResult {
  const reader = new BinaryReader(buf);
  let revision = 0n;
  const kvs: EtcdKeyValue[] = [];
  let more = false;
  let count = 0;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) revision = decodeHeaderRevision(reader.bytes());
    else if (field === 2 && wireType === WireType.LengthDelimited) kvs.push(decodeKeyValue(reader.bytes()));
    else if (field === 3 && wireType === WireType.Varint) more = reader.bool();
    else if (field === 4 && wireType === WireType.Varint) count = Number(reader.int64());
    else reader.skip(wireType, field);
  }
  return { revision, kvs, more, count };
}

function decodeHeaderRevision(buf: Uint8Array): bigint {
  const header = new BinaryReader(buf);
  let revision = 0n;
  while (header.pos < header.len) {
    const [field, wireType] = header.tag();
    if (field === 3 && wireType === WireType.Varint) revision = BigInt(header.int64());
    else header.skip(wireType, field);
  }
  return revision;
}

/** What a WatchCreateRequest of {@link encodeEtcdWatchCreate} asks. */
export interface EtcdWatchCreate {
  readonly key: Uint8Array;
  /** Empty or absent: only `key`; {@link etcdPrefixRangeEnd} for a prefix. */
  readonly rangeEnd?: Uint8Array;
  /** The first revision to deliver; 0 or absent: changes after now. */
  readonly startRevision?: bigint;
  readonly progressNotify?: boolean;
  readonly prevKv?: boolean;
}

/**
 * WatchRequest { oneof request_union { WatchCreateRequest create_request = 1; WatchCancelRequest
 * cancel_request = 2; WatchProgressRequest progress_request = 3; } }, WatchCreateRequest { bytes
 * key = 1; bytes range_end = 2; int64 start_revision = 3; bool progress_notify = 4; repeated
 * FilterType filters = 5; bool prev_kv = 6; int64 watch_id = 7; bool fragment = 8; }.
 */
export function encodeEtcdWatchCreate(create: EtcdWatchCreate): Uint8Array {
  const inner = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(create.key);
  if (create.rangeEnd !== undefined && create.rangeEnd.length > 0) inner.tag(2, WireType.LengthDelimited).bytes(create.rangeEnd);
  if (create.startRevision !== undefined && create.startRevision !== 0n) inner.tag(3, WireType.Varint).int64(create.startRevision);
  if (create.progressNotify === true) inner.tag(4, WireType.Varint).bool(true);
  if (create.prevKv === true) inner.tag(6, WireType.Varint).bool(true);
  return new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(inner.finish()).finish();
}

/** mvccpb.Event.EventType. */
export const EtcdEventType = { PUT: 0, DELETE: 1 } as const;

export interface EtcdWatchEvent {
  readonly type: (typeof EtcdEventType)[keyof typeof EtcdEventType];
  readonly kv: EtcdKeyValue;
}

export interface EtcdWatchResponse {
  /** ResponseHeader.revision. */
  readonly revision: bigint;
  readonly watchId: bigint;
  readonly created: boolean;
  readonly canceled: boolean;
  readonly compactRevision: bigint;
  readonly cancelReason: string;
  readonly events: readonly EtcdWatchEvent[];
}

/**
 * WatchResponse { ResponseHeader header = 1; int64 watch_id = 2; bool created = 3; bool canceled = 4;
 * int64 compact_revision = 5; string cancel_reason = 6; bool fragment = 7; repeated mvccpb.Event
 * events = 11; }, Event { EventType type = 1; KeyValue kv = 2; KeyValue prev_kv = 3; }.
 */
export function decodeEtcdWatchResponse(buf: Uint8Array): EtcdWatchResponse {
  const reader = new BinaryReader(buf);
  let revision = 0n;
  let watchId = 0n;
  let created = false;
  let canceled = false;
  let compactRevision = 0n;
  let cancelReason = '';
  const events: EtcdWatchEvent[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) revision = decodeHeaderRevision(reader.bytes());
    else if (field === 2 && wireType === WireType.Varint) watchId = BigInt(reader.int64());
    else if (field === 3 && wireType === WireType.Varint) created = reader.bool();
    else if (field === 4 && wireType === WireType.Varint) canceled = reader.bool();
    else if (field === 5 && wireType === WireType.Varint) compactRevision = BigInt(reader.int64());
    else if (field === 6 && wireType === WireType.LengthDelimited) cancelReason = reader.string();
    else if (field === 11 && wireType === WireType.LengthDelimited) events.push(decodeEtcdEvent(reader.bytes()));
    else reader.skip(wireType, field);
  }
  return { revision, watchId, created, canceled, compactRevision, cancelReason, events };
}

function decodeEtcdEvent(buf: Uint8Array): EtcdWatchEvent {
  const reader = new BinaryReader(buf);
  let type: EtcdWatchEvent['type'] = EtcdEventType.PUT;
  let kv: EtcdKeyValue = { key: new Uint8Array(0), modRevision: 0n, version: 0n, value: new Uint8Array(0) };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) type = reader.int32() === 1 ? EtcdEventType.DELETE : EtcdEventType.PUT;
    else if (field === 2 && wireType === WireType.LengthDelimited) kv = decodeKeyValue(reader.bytes());
    else reader.skip(wireType, field);
  }
  return { type, kv };
}
