/**
 * The history of a CP keyspace: the changes of every revision after the compaction point, kept
 * in the node's store beside the state, for Watch (changes since a revision) and Range at a past
 * revision (the state then: today's, with the later changes undone).
 *
 * Layout. One store keyspace `_cph.<keyspace>`, one entry per revision: the key is the revision
 * (8 bytes, big-endian, so key order is revision order), the value the revision's changes, each
 * with the key's previous record, and the version the revision's stamp. Every revision after
 * {@link KvHistory.floor} up to the head has its entry.
 *
 * Durability. New revisions wait in memory, where reads see them, and are written by the state's
 * flush in the same commit as the state and its metadata (kv-state-store.ts): history and state
 * on disk always stand at the same revision, and a restart rebuilds what a crash lost by applying
 * the log again.
 *
 * Compaction. The compaction revision comes from the log (a Compact command, the same on every
 * replica) and is recorded in the state's metadata; entries at or below it are removed a page per
 * flush. A node that takes in a leader's snapshot has no history before the snapshot's revision:
 * its own floor (also in the metadata) rises to it, and a watch from further back is sent
 * elsewhere (UNAVAILABLE), not told the history was compacted.
 */
import { outOfRange, unavailable } from '../../errors.js';
import type { Entry, Version } from '../../storage/entry.js';
import type { Store } from '../../storage/store.js';
import type { ChangeBatch, ChangeEvent, ChangeSource } from '../watch/change.js';
import type { StoredKey } from './kv-state-machine.js';
import { bounded, LEASE_FLAG, readStamp, stampBytes, writeStamp } from './kv-state-store.js';

const RECORD_FORMAT = 1;
/** History entries removed per flush after a compaction: a short commit, however much goes. */
const REMOVE_PAGE_BYTES = 1024 * 1024;

export function historyKeyspace(keyspace: string): string {
  return `_cph.${keyspace}`;
}

export class KvHistory implements ChangeSource {
  readonly #store: Store;
  readonly #keyspace: string;
  readonly #metaName: string;
  #head: number;
  /** Kept after this revision (history compacted through it, cluster-wide). */
  #compactRevision: number;
  /** This node's own floor: ≥ the compaction revision; the revision of the last snapshot it took in. */
  #floor: number;
  /** Revisions not yet written, in order. */
  #unflushed: ChangeBatch[] = [];
  /** Revisions written but not yet known durable (a snapshot view of the store may not show them). */
  #inFlight: ChangeBatch[][] = [];
  /** Entries at or below this revision are known gone from the store. */
  #removedThrough: number;

  constructor(store: Store, keyspace: string, metaName: string, head: number, compactRevision: number, floor: number) {
    this.#store = store;
    this.#keyspace = historyKeyspace(keyspace);
    this.#metaName = metaName;
    this.#head = head;
    this.#compactRevision = compactRevision;
    this.#floor = Math.max(floor, compactRevision);
    // Whatever was removed before a restart, the first flush looks again.
    this.#removedThrough = 0;
  }

  get head(): number {
    return this.#head;
  }

  get floor(): number {
    return this.#floor;
  }

  get compactRevision(): number {
    return this.#compactRevision;
  }

  /** The changes of the next revision (the state machine's, as it applies them). */
  append(batch: ChangeBatch): void {
    if (batch.revision !== this.#head + 1) throw new Error(`history of ${this.#keyspace}: revision ${batch.revision} follows ${this.#head}`);
    this.#head = batch.revision;
    this.#unflushed.push(batch);
  }

  /** Discards the history at and below `revision` (a Compact command applied). */
  compact(revision: number): void {
    const through = Math.min(revision, this.#head);
    if (through <= this.#compactRevision) return;
    this.#compactRevision = through;
    this.#floor = Math.max(this.#floor, through);
  }

  /** A snapshot replaced the state: history starts after its revision on this node. */
  reset(revision: number, compactRevision: number): void {
    this.#unflushed = [];
    this.#inFlight = [];
    this.#head = revision;
    this.#compactRevision = compactRevision;
    this.#floor = Math.max(revision, compactRevision);
  }

  /**
   * Issues the writes of the revisions gathered since the last flush, and the removal of a page
   * of compacted ones (called by the state's flush, in its synchronous run: one commit). Returns
   * the writes, for the flush to wait on.
   */
  flushInto(track: <T>(write: Promise<T>) => Promise<T>): void {
    const batches = this.#unflushed.filter((b) => b.revision > this.#floor);
    this.#unflushed = [];
    if (batches.length > 0) {
      this.#inFlight.push(batches);
      const written = track(this.#store.apply(this.#keyspace, batches.map(entryOfBatch), takeOffered));
      void written.then(
        () => (this.#inFlight = this.#inFlight.filter((b) => b !== batches)),
        () => undefined,
      );
    }
    if (this.#removedThrough < this.#floor) {
      const view = this.#store.snapshot(this.#keyspace, this.#metaName);
      let page: Entry[];
      try {
        page = view.page(undefined, REMOVE_PAGE_BYTES).filter((e) => revisionOfKey(e.key) <= this.#floor);
      } finally {
        view.close();
      }
      if (page.length === 0) this.#removedThrough = this.#floor;
      else track(this.#store.remove(this.#keyspace, page.map((e) => ({ key: e.key, version: e.version }))));
    }
  }

  read(from: number, maxBytes: number): ChangeBatch[] {
    if (from <= this.#floor) throw this.floorError(from);
    if (from > this.#head) return [];
    const out: ChangeBatch[] = [];
    let bytes = 0;
    const view = this.#store.snapshot(this.#keyspace, this.#metaName);
    try {
      for (const entry of view.page(revisionKey(from), maxBytes, true)) {
        const revision = revisionOfKey(entry.key);
        if (revision < from) continue;
        out.push(decodeBatch(revision, entry.value));
        bytes += entry.value.byteLength;
      }
    } finally {
      view.close();
    }
    // What the store does not show yet is in memory, in order. It goes on only from where the
    // page stopped: a batch past a gap means the store holds more than this page read.
    let next = out.length === 0 ? from : out[out.length - 1]!.revision + 1;
    for (const group of [...this.#inFlight, this.#unflushed]) {
      for (const batch of group) {
        if (batch.revision < next) continue;
        if (batch.revision > next || (out.length > 0 && bytes >= maxBytes)) return out;
        out.push(batch);
        bytes += batchBytes(batch);
        next++;
      }
    }
    return out;
  }

  floorError(revision: number): Error {
    if (revision <= this.#compactRevision) {
      return outOfRange('REVISION_COMPACTED', `revision ${revision} of keyspace ${this.#keyspace.slice(5)} is compacted: history is kept after revision ${this.#compactRevision}; read the current state (Range) and watch from the revision it answers at + 1`, {
        compact_revision: String(this.#compactRevision),
      });
    }
    return unavailable('HISTORY_NOT_ON_THIS_NODE', `this node took in a snapshot at revision ${this.#floor} and holds no history of keyspace ${this.#keyspace.slice(5)} before it; ask another node for revision ${revision}`, {
      node_history_floor: String(this.#floor),
    });
  }
}

function takeOffered(_held: Entry | undefined, offered: Entry): Entry {
  return offered;
}

export function revisionKey(revision: number): Buffer {
  const key = Buffer.allocUnsafe(8);
  key.writeBigUInt64BE(BigInt(revision));
  return key;
}

function revisionOfKey(key: Uint8Array): number {
  return Number(Buffer.from(key.buffer, key.byteOffset, key.byteLength).readBigUInt64BE(0));
}

function batchBytes(batch: ChangeBatch): number {
  let bytes = 16;
  for (const e of batch.events) bytes += 64 + e.kv.key.byteLength + e.kv.value.byteLength + (e.prev === undefined ? 0 : e.prev.value.byteLength + e.prev.key.byteLength);
  return bytes;
}

function entryOfBatch(batch: ChangeBatch): Entry {
  const stamp = batch.events[0]?.kv.stamp ?? { hlc: { wallMs: 0, logical: 0 }, nodeId: '' };
  return { key: revisionKey(batch.revision), value: encodeBatch(batch), version: stamp, tombstone: false };
}

/** A revision's changes: format (u8), count (u32), then each change: type (u8), whether a previous record follows (u8), the record, the previous record. */
export function encodeBatch(batch: ChangeBatch): Buffer {
  let bytes = 5;
  for (const e of batch.events) bytes += 2 + recordBytes(e.kv) + (e.prev === undefined ? 0 : recordBytes(e.prev));
  const out = Buffer.allocUnsafe(bytes);
  let at = out.writeUInt8(RECORD_FORMAT, 0);
  at = out.writeUInt32BE(batch.events.length, at);
  for (const e of batch.events) {
    at = out.writeUInt8(e.type === 'put' ? 1 : 2, at);
    at = out.writeUInt8(e.prev === undefined ? 0 : 1, at);
    at = writeRecord(out, at, e.kv);
    if (e.prev !== undefined) at = writeRecord(out, at, e.prev);
  }
  return out;
}

export function decodeBatch(revision: number, data: Uint8Array): ChangeBatch {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.byteLength < 5 || buf.readUInt8(0) !== RECORD_FORMAT) throw new RangeError(`not a CP history record (format ${buf.byteLength > 0 ? buf.readUInt8(0) : 'none'})`);
  const count = buf.readUInt32BE(1);
  let at = 5;
  const events: ChangeEvent[] = [];
  for (let i = 0; i < count; i++) {
    const header = bounded(buf, at, 2);
    at += 2;
    const [kv, afterKv] = readRecord(buf, at);
    at = afterKv;
    let prev: StoredKey | undefined;
    if (header.readUInt8(1) === 1) [prev, at] = readRecord(buf, at);
    events.push({ type: header.readUInt8(0) === 1 ? 'put' : 'delete', kv, ...(prev === undefined ? {} : { prev }) });
  }
  return { revision, events };
}

function recordBytes(k: StoredKey): number {
  return 4 + k.key.byteLength + (k.lease ? 32 : 24) + stampBytes(k.stamp) + 4 + k.value.byteLength;
}

function writeRecord(out: Buffer, at: number, k: StoredKey): number {
  at = out.writeUInt32BE(k.key.byteLength, at);
  at += Buffer.from(k.key.buffer, k.key.byteOffset, k.key.byteLength).copy(out, at);
  // As the state's records (kv-state-store.ts): a lease sets the create revision's top bit and follows the version.
  at = out.writeBigUInt64BE(k.lease ? BigInt(k.createRevision) | LEASE_FLAG : BigInt(k.createRevision), at);
  at = out.writeBigUInt64BE(BigInt(k.modRevision), at);
  at = out.writeBigUInt64BE(BigInt(k.version), at);
  if (k.lease) at = out.writeBigUInt64BE(BigInt(k.lease), at);
  at = writeStamp(out, at, k.stamp);
  at = out.writeUInt32BE(k.value.byteLength, at);
  return at + Buffer.from(k.value.buffer, k.value.byteOffset, k.value.byteLength).copy(out, at);
}

function readRecord(buf: Buffer, at: number): [StoredKey, number] {
  const keyLength = bounded(buf, at, 4).readUInt32BE(0);
  const key = Buffer.from(bounded(buf, at + 4, keyLength));
  at += 4 + keyLength;
  const leased = (bounded(buf, at, 8).readBigUInt64BE(0) & LEASE_FLAG) !== 0n;
  const numbers = bounded(buf, at, leased ? 32 : 24);
  at += leased ? 32 : 24;
  const [stamp, afterStamp] = readStamp(buf, at);
  at = afterStamp;
  const valueLength = bounded(buf, at, 4).readUInt32BE(0);
  const value = Buffer.from(bounded(buf, at + 4, valueLength));
  at += 4 + valueLength;
  const version: Version = stamp;
  const createRevision = Number(numbers.readBigUInt64BE(0) & ~LEASE_FLAG);
  return [{ key, value, createRevision, modRevision: Number(numbers.readBigUInt64BE(8)), version: Number(numbers.readBigUInt64BE(16)), stamp: version, ...(leased ? { lease: Number(numbers.readBigUInt64BE(24)) } : {}) }, at];
}
