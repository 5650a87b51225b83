/**
 * The state machine of a CP keyspace: what its Raft log's committed commands build. Pure: no I/O,
 * no clock; the group driver (raft-group.ts) feeds it committed entries in log order, and every
 * replica that applies the same log reaches the same state, revision for revision.
 *
 * The model is etcd's MVCC, without the history (kept for Range and Watch at past revisions, a
 * later change): the keyspace has a revision that grows by one with every command that changes
 * something; each key holds its value, the revision that created it (since it was last absent),
 * the revision of its last write, and its version (writes since created). A delete removes the
 * key; putting it again starts a new life at version 1.
 */
import {
  CompareResult,
  CompareTarget,
  type Compare,
  type KeyValue,
  type RequestOp,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from '../../gen/replikit/v1/kv_service.js';
import { compareVersion, type Version } from '../../storage/entry.js';
import { versionToWire } from '../../transport/wire.js';

export interface StoredKey {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The leader's HLC and id when it proposed the write (what Put and Get report as `version`). */
  readonly stamp: Version;
}

/** The snapshot format's first byte: bump it when the layout changes, and keep reading the old one. */
const SNAPSHOT_FORMAT = 1;

export class KvStateMachine {
  readonly #keys = new Map<string, StoredKey>();
  #revision = 0;
  /** The log index of the last command applied (or of the snapshot restored). */
  #appliedIndex = 0;
  /** The version the last write was given: every later write's is larger (see `apply`). */
  #lastStamp: Version = { hlc: { wallMs: 0, logical: 0 }, nodeId: '' };

  get revision(): number {
    return this.#revision;
  }

  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  get size(): number {
    return this.#keys.size;
  }

  /** A key as the state holds it, or undefined when absent. */
  get(key: Uint8Array): StoredKey | undefined {
    return this.#keys.get(mapKey(key));
  }

  /**
   * Applies the command of log entry `index` (the next one: indexes only grow; an index at or
   * below the applied one is a replay after a restart and changes nothing, answering undefined).
   */
  apply(index: number, txn: TxnRequest, stamp: Version): TxnResponse | undefined {
    if (index <= this.#appliedIndex) return undefined;
    this.#appliedIndex = index;
    // Versions grow in log order, whatever the proposers' clocks did (a leader restarted with its
    // clock stepped back, or one that had not yet seen its predecessor's last stamp): a proposal's
    // stamp that is not past the last write's takes the next one after it. Every replica computes
    // the same, so versions agree everywhere and order writes as the log does.
    const effective = compareVersion(stamp, this.#lastStamp) > 0 ? stamp : { hlc: { wallMs: this.#lastStamp.hlc.wallMs, logical: this.#lastStamp.hlc.logical + 1 }, nodeId: stamp.nodeId };
    // Every command moves it, even one that changed nothing (a delete of an absent key still
    // answers with this version).
    this.#lastStamp = effective;
    return this.#run(txn, effective);
  }

  /** A log entry that carries no command (a leader's no-op): only the applied index moves. */
  skip(index: number): void {
    if (index > this.#appliedIndex) this.#appliedIndex = index;
  }

  /**
   * Answers a transaction with no writes from the current state (a linearizable read once the
   * caller has made sure the state is current, by ReadIndex; a serializable one otherwise).
   */
  read(txn: TxnRequest): TxnResponse {
    if (writes(txn)) throw new Error('read() was given a transaction that writes');
    return this.#run(txn, undefined);
  }

  /** Runs a transaction; `stamp` is undefined for a read, which then must not write. */
  #run(txn: TxnRequest, stamp: Version | undefined): TxnResponse {
    const succeeded = txn.compares.every((c) => this.#holds(c));
    const ops = succeeded ? txn.success : txn.failure;
    const next = this.#revision + 1;
    let changed = false;
    const responses: ResponseOp[] = ops.map((op) => {
      if (op.put !== undefined && stamp !== undefined) {
        const id = mapKey(op.put.key);
        const held = this.#keys.get(id);
        this.#keys.set(id, {
          key: Buffer.from(op.put.key),
          value: Buffer.from(op.put.value),
          createRevision: held?.createRevision ?? next,
          modRevision: next,
          version: (held?.version ?? 0) + 1,
          stamp,
        });
        changed = true;
        return { put: { revision: BigInt(next), version: versionToWire(stamp) } };
      }
      if (op.delete !== undefined && stamp !== undefined) {
        const deleted = this.#keys.delete(mapKey(op.delete.key));
        changed ||= deleted;
        return { delete: { deleted: deleted ? 1 : 0, version: versionToWire(stamp) } };
      }
      if (op.get !== undefined) {
        const held = this.#keys.get(mapKey(op.get.key));
        return { get: { found: held !== undefined, kv: held === undefined ? undefined : keyValue(held) } };
      }
      throw new Error('a transaction operation with nothing in it reached the state machine');
    });
    if (changed) this.#revision = next;
    return { succeeded, responses, revision: BigInt(this.#revision) };
  }

  #holds(c: Compare): boolean {
    const held = this.#keys.get(mapKey(c.key));
    let order: number;
    switch (c.target) {
      case CompareTarget.COMPARE_TARGET_VALUE:
        // As etcd: a value compare on a missing key fails, whatever the relation.
        if (held === undefined) return false;
        order = Buffer.compare(held.value, c.value);
        break;
      case CompareTarget.COMPARE_TARGET_VERSION:
        order = compareNumbers(held?.version ?? 0, c.number);
        break;
      case CompareTarget.COMPARE_TARGET_CREATE_REVISION:
        order = compareNumbers(held?.createRevision ?? 0, c.number);
        break;
      case CompareTarget.COMPARE_TARGET_MOD_REVISION:
        order = compareNumbers(held?.modRevision ?? 0, c.number);
        break;
      default:
        throw new Error(`compare target ${c.target} reached the state machine (the API validates it)`);
    }
    switch (c.result) {
      case CompareResult.COMPARE_RESULT_EQUAL:
        return order === 0;
      case CompareResult.COMPARE_RESULT_NOT_EQUAL:
        return order !== 0;
      case CompareResult.COMPARE_RESULT_GREATER:
        return order > 0;
      case CompareResult.COMPARE_RESULT_LESS:
        return order < 0;
      default:
        throw new Error(`compare result ${c.result} reached the state machine (the API validates it)`);
    }
  }

  /** The whole state, for a Raft snapshot (log compaction, and a follower that fell behind it). */
  snapshot(): Uint8Array {
    let bytes = 1 + 8 + 8 + 14 + Buffer.byteLength(this.#lastStamp.nodeId) + 4;
    for (const k of this.#keys.values()) bytes += 4 + k.key.byteLength + 4 + k.value.byteLength + 24 + 12 + 2 + Buffer.byteLength(k.stamp.nodeId);
    const out = Buffer.allocUnsafe(bytes);
    let at = out.writeUInt8(SNAPSHOT_FORMAT, 0);
    at = out.writeBigUInt64BE(BigInt(this.#revision), at);
    at = out.writeBigUInt64BE(BigInt(this.#appliedIndex), at);
    at = writeStamp(out, at, this.#lastStamp);
    at = out.writeUInt32BE(this.#keys.size, at);
    for (const k of this.#keys.values()) {
      at = out.writeUInt32BE(k.key.byteLength, at);
      at += k.key.copy(out, at);
      at = out.writeUInt32BE(k.value.byteLength, at);
      at += k.value.copy(out, at);
      at = out.writeBigUInt64BE(BigInt(k.createRevision), at);
      at = out.writeBigUInt64BE(BigInt(k.modRevision), at);
      at = out.writeBigUInt64BE(BigInt(k.version), at);
      at = writeStamp(out, at, k.stamp);
    }
    return out;
  }

  /** Replaces the state with a snapshot's. Throws on a snapshot it cannot read (nothing changes then). */
  restore(data: Uint8Array): void {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf.byteLength < 21 || buf.readUInt8(0) !== SNAPSHOT_FORMAT) throw new Error(`not a CP keyspace snapshot (format ${buf.byteLength > 0 ? buf.readUInt8(0) : 'none'})`);
    let at = 1;
    const revision = Number(buf.readBigUInt64BE(at));
    const appliedIndex = Number(buf.readBigUInt64BE((at += 8)));
    at += 8;
    const [lastStamp, afterStamp] = readStamp(buf, at);
    at = afterStamp;
    const count = buf.readUInt32BE(at);
    at += 4;
    const keys = new Map<string, StoredKey>();
    for (let i = 0; i < count; i++) {
      const keyLength = buf.readUInt32BE(at);
      const key = Buffer.from(buf.subarray((at += 4), (at += keyLength)));
      const valueLength = buf.readUInt32BE(at);
      const value = Buffer.from(buf.subarray((at += 4), (at += valueLength)));
      const createRevision = Number(buf.readBigUInt64BE(at));
      const modRevision = Number(buf.readBigUInt64BE((at += 8)));
      const version = Number(buf.readBigUInt64BE((at += 8)));
      const [stamp, next] = readStamp(buf, at + 8);
      at = next;
      keys.set(mapKey(key), { key, value, createRevision, modRevision, version, stamp });
    }
    if (at !== buf.byteLength) throw new Error(`a CP keyspace snapshot has ${buf.byteLength - at} bytes past its last key`);
    this.#keys.clear();
    for (const [k, v] of keys) this.#keys.set(k, v);
    this.#revision = revision;
    this.#appliedIndex = appliedIndex;
    this.#lastStamp = lastStamp;
  }
}

/** True when a transaction may write (either branch holds a put or a delete): it must go through the log. */
export function writes(txn: TxnRequest): boolean {
  const any = (ops: RequestOp[]) => ops.some((op) => op.put !== undefined || op.delete !== undefined);
  return any(txn.success) || any(txn.failure);
}

export function keyValue(k: StoredKey): KeyValue {
  return { key: k.key, value: k.value, createRevision: BigInt(k.createRevision), modRevision: BigInt(k.modRevision), version: BigInt(k.version), writeVersion: versionToWire(k.stamp) };
}

/** A version in the snapshot format: wall ms (u64), logical (u32), node id (u16 length, UTF-8). */
function writeStamp(out: Buffer, at: number, stamp: Version): number {
  at = out.writeBigUInt64BE(BigInt(stamp.hlc.wallMs), at);
  at = out.writeUInt32BE(stamp.hlc.logical, at);
  at = out.writeUInt16BE(Buffer.byteLength(stamp.nodeId), at);
  return at + out.write(stamp.nodeId, at);
}

function readStamp(buf: Buffer, at: number): [Version, number] {
  const wallMs = Number(buf.readBigUInt64BE(at));
  const logical = buf.readUInt32BE(at + 8);
  const length = buf.readUInt16BE(at + 12);
  const end = at + 14 + length;
  if (end > buf.byteLength) throw new RangeError('a CP keyspace snapshot ends inside a version');
  return [{ hlc: { wallMs, logical }, nodeId: buf.toString('utf8', at + 14, end) }, end];
}

function compareNumbers(held: number, operand: bigint): number {
  const h = BigInt(held);
  return h < operand ? -1 : h > operand ? 1 : 0;
}

/** One string per byte sequence (latin1 maps each byte to one char), for a Map key. */
function mapKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}
