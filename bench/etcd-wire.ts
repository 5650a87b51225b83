/**
 * The few fields of etcd's v3 gRPC API (etcdserverpb) the benchmark needs, encoded by hand with
 * @bufbuild/protobuf's wire writer, so no etcd .proto files are needed. Field numbers are those
 * of etcd 3.4's rpc.proto and kv.proto.
 */
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

export const ETCD_PUT_PATH = '/etcdserverpb.KV/Put';
export const ETCD_RANGE_PATH = '/etcdserverpb.KV/Range';
export const ETCD_STATUS_PATH = '/etcdserverpb.Maintenance/Status';

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
}

/**
 * StatusResponse { ResponseHeader header = 1; string version = 2; uint64 leader = 4; },
 * ResponseHeader { uint64 member_id = 2; }
 */
export function decodeStatusResponse(buf: Uint8Array): EtcdStatus {
  const reader = new BinaryReader(buf);
  let memberId = '0';
  let leader = '0';
  let version = '';
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
    } else if (field === 4 && wireType === WireType.Varint) {
      leader = String(reader.uint64());
    } else {
      reader.skip(wireType, field);
    }
  }
  return { memberId, leader, version };
}
