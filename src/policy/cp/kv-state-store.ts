/**
 * Where a CP keyspace's applied state lives: in the node's {@link Store}, so that it is on disk,
 * not in memory, and a restart replays only the log entries applied after the last commit that
 * reached the disk (the checkpoint is every commit: applied index and state change together).
 *
 * Layout. The state is kept in one of two store keyspaces, its generations `_cp0.<keyspace>` and
 * `_cp1.<keyspace>` (a configured keyspace name starts with a letter or digit, so these can never
 * clash with one), each key as an entry whose value holds its revisions, version and value and
 * whose version is the write's stamp. The metadata value `cp-state/<keyspace>` names the live
 * generation and what the state covers: applied index and its term, revision, last stamp.
 *
 * Batching. The log makes every applied command durable already, so the state need not be: its
 * changes gather in memory (where reads see them) and go to the store together, with the
 * metadata, every {@link STATE_FLUSH_INTERVAL_MS} or {@link STATE_FLUSH_BYTES}, and before the log
 * is compacted — one commit, and one sync, for many commands, as etcd's backend batches its
 * transactions. A crash loses the changes not yet flushed; the restart applies their log entries
 * again.
 *
 * Atomicity. Every write of one synchronous run joins one store commit (the Store contract's
 * group commit, on LMDB one transaction), and a flush issues its changes and the metadata in one
 * run: a crash leaves the state as of some applied index, never half of an entry. Commits are
 * ordered, so the state on disk never runs ahead of the Raft log, whose entries were made durable
 * before they were applied.
 *
 * Snapshots. Installing a leader's snapshot writes it, piece by piece, into the other generation
 * (cleared first), then switches the metadata to it in the same commit as the log's snapshot
 * record (raft-group.ts): a crash in the middle leaves the old state and the old log, both whole.
 * The generation left behind is cleared in the background.
 */
import type { Scheduler, TimerHandle } from '../../clock/index.js';
import type { Entry, Version } from '../../storage/entry.js';
import type { Store, StoreSnapshot } from '../../storage/store.js';
import type { ChangeBatch } from '../watch/change.js';
import { prefixEnd, type KeyRange } from '../watch/key-range.js';
import { KvHistory } from './kv-history.js';
import { LEASE_KEY_PREFIX, RESERVED_KEY_PREFIX, type StoredKey } from './kv-state-machine.js';
import { latin1 } from '../../storage/key-text.js';

/** What the applied state covers, written with every change to it. */
export interface KvStateMeta {
  /** Which of the two store keyspaces holds the live state. */
  readonly generation: 0 | 1;
  /** The log index of the last command applied (or of the snapshot installed). */
  readonly appliedIndex: number;
  /** That entry's term (a snapshot sent from this state names it). */
  readonly appliedTerm: number;
  /** The keyspace's revision. */
  readonly revision: number;
  /** The version the last write was given (later writes' versions are larger). */
  readonly lastStamp: Version;
  /** History is compacted through this revision, on every replica (a Compact command). */
  readonly compactRevision: number;
  /** This node keeps history after this revision (≥ compactRevision; raised by a snapshot taken in). */
  readonly historyFloor: number;
}

/**
 * Longest a change to the state waits in memory before it is written to the store: 100 ms,
 * etcd's backend batch interval. Short enough that a restart replays little; long enough that
 * one commit carries many commands under load.
 */
export const STATE_FLUSH_INTERVAL_MS = 100;
/** Bytes of changed keys and values that flush at once, whatever the interval: bounds the memory they hold. */
export const STATE_FLUSH_BYTES = 8 * 1024 * 1024;

/** Format 2 adds the compaction revision and the history floor; format 1 (none of either) is still read. */
const META_FORMAT = 2;
/** The first byte of every snapshot chunk: bump it when the layout changes, and keep reading the old one. */
const CHUNK_FORMAT = 1;
/** Keys and values per page a scan reads from the store. */
const SCAN_PAGE_BYTES = 256 * 1024;
/** Keys and values per background-clearing step: small enough that a step is a short commit. */
const CLEAR_PAGE_BYTES = 4 * 1024 * 1024;

export const EMPTY_META: KvStateMeta = { generation: 0, appliedIndex: 0, appliedTerm: 0, revision: 0, lastStamp: { hlc: { wallMs: 0, logical: 0 }, nodeId: '' }, compactRevision: 0, historyFloor: 0 };

/** The two store keyspaces of a CP keyspace's state. Exported for tests. */
export function generationKeyspace(keyspace: string, generation: 0 | 1): string {
  return `_cp${generation}.${keyspace}`;
}

export function stateMetaName(keyspace: string): string {
  return `cp-state/${keyspace}`;
}

export class KvStateStore {
  readonly #store: Store;
  readonly #keyspace: string;
  readonly #onWriteFailed: (error: unknown) => void;
  readonly #scheduler: Scheduler;
  #meta: KvStateMeta;
  /** Changes not yet written to the store, by latin1 key (null: deleted); reads see them first. */
  readonly #pending = new Map<string, StoredKey | null>();
  /** Changes written by a flush whose commit has not yet resolved: a snapshot view of the store may not show them. */
  #flushing: Map<string, StoredKey | null>[] = [];
  #pendingBytes = 0;
  /** The keyspace's history (kv-history.ts), flushed with the state. */
  readonly history: KvHistory;
  #metaPending = false;
  #flushTimer: TimerHandle | undefined;
  /** The latest write issued: commits are ordered, so once it settles every earlier one has. */
  #lastWrite: Promise<unknown> = Promise.resolve();
  /** Clearing the generation not in use (after an install, or leftovers found at open). */
  #clearing: Promise<void> = Promise.resolve();

  private constructor(store: Store, keyspace: string, meta: KvStateMeta, scheduler: Scheduler, onWriteFailed: (error: unknown) => void) {
    this.#store = store;
    this.#scheduler = scheduler;
    this.#keyspace = keyspace;
    this.#meta = meta;
    this.#onWriteFailed = onWriteFailed;
    this.history = new KvHistory(store, keyspace, stateMetaName(keyspace), meta.revision, meta.compactRevision, meta.historyFloor);
  }

  /**
   * Opens the state as the store holds it. `onWriteFailed` hears a write that failed (the store
   * failed: the node stops, as for any failed durable write).
   */
  static open(store: Store, keyspace: string, scheduler: Scheduler, onWriteFailed: (error: unknown) => void): KvStateStore {
    const stored = store.getMeta(stateMetaName(keyspace));
    const state = new KvStateStore(store, keyspace, stored === undefined ? EMPTY_META : decodeMeta(stored), scheduler, onWriteFailed);
    // A crash may have left a half-installed snapshot, or an old generation not yet cleared.
    state.#clearing = state.#clear(otherGeneration(state.#meta.generation));
    return state;
  }

  get meta(): KvStateMeta {
    return this.#meta;
  }

  get(key: Uint8Array): StoredKey | undefined {
    const pending = this.#pending.get(latin1(key));
    if (pending !== undefined) return pending ?? undefined;
    const entry = this.#store.get(this.#live(), key);
    return entry === undefined ? undefined : storedFromEntry(entry);
  }

  /**
   * Visits the keys of `range` in ascending key order, as `get` would show each, until `visit`
   * answers false. One synchronous run: it sees one state.
   */
  scan(range: KeyRange, visit: (record: StoredKey) => boolean): void {
    // Client keys end before the reserved prefix (lease records): a scan never shows what follows.
    if (Buffer.compare(range.start, RESERVED_KEY_PREFIX) >= 0) return;
    const end = range.end === null || Buffer.compare(range.end, RESERVED_KEY_PREFIX) > 0 ? RESERVED_KEY_PREFIX : range.end;
    this.#scanRaw({ start: range.start, end }, visit);
  }

  scanLeases(visitLease: (record: StoredKey) => void, visitKey: (record: StoredKey) => void): void {
    let leases = 0;
    this.#scanRaw({ start: LEASE_KEY_PREFIX, end: prefixEnd(LEASE_KEY_PREFIX) }, (record) => (leases++, visitLease(record), true));
    if (leases > 0) this.scan({ start: Buffer.alloc(0), end: null }, (record) => (visitKey(record), true));
  }

  #scanRaw(range: KeyRange, visit: (record: StoredKey) => boolean): void {
    // Changes the store's view may not show, newest last: pending wins over flushing.
    const overlay = new Map<string, StoredKey | null>();
    for (const m of [...this.#flushing, this.#pending]) for (const [k, v] of m) overlay.set(k, v);
    const start = range.start.toString('latin1');
    const end = range.end === null ? undefined : range.end.toString('latin1');
    // Latin1 strings compare code unit by code unit, which is byte by byte.
    const changed = [...overlay.keys()].filter((k) => k >= start && (end === undefined || k < end)).sort();
    let c = 0;
    const view = this.#store.snapshot(this.#live(), stateMetaName(this.#keyspace));
    try {
      let after: Uint8Array | undefined = range.start;
      let inclusive = true;
      for (;;) {
        const page = view.page(after, SCAN_PAGE_BYTES, inclusive);
        inclusive = false;
        let ended = page.length === 0;
        for (const entry of page) {
          if (range.end !== null && Buffer.compare(asBuffer(entry.key), range.end) >= 0) {
            ended = true;
            break;
          }
          // Most scans meet no change still in memory: then no key needs turning into text.
          if (c >= changed.length) {
            if (!visit(storedFromEntry(entry))) return;
            continue;
          }
          const k = latin1(entry.key);
          // Overlay keys before this one come first.
          while (c < changed.length && changed[c]! < k) {
            const record = overlay.get(changed[c++]!);
            if (record && !visit(record)) return;
          }
          if (c < changed.length && changed[c] === k) {
            const record = overlay.get(changed[c++]!);
            if (record && !visit(record)) return;
            continue;
          }
          if (!visit(storedFromEntry(entry))) return;
        }
        if (ended) break;
        after = page[page.length - 1]!.key;
      }
    } finally {
      view.close();
    }
    while (c < changed.length) {
      const record = overlay.get(changed[c++]!);
      if (record && !visit(record)) return;
    }
  }

  /** Records `record` as what its key holds (written to the store at the next flush). */
  put(record: StoredKey): void {
    this.#change(latin1(record.key), record, record.key.byteLength + record.value.byteLength + 64);
  }

  /** Records `key` as absent; true when it was present. */
  delete(key: Uint8Array): boolean {
    if (this.get(key) === undefined) return false;
    this.#change(latin1(key), null, key.byteLength + 64);
    return true;
  }

  /** Records the changes of the revision just applied, in the history. */
  record(batch: ChangeBatch): void {
    this.history.append(batch);
  }

  /** Compacts the history through `revision` (a Compact command applied). */
  compact(revision: number): number {
    if (revision > this.history.compactRevision) {
      this.history.compact(revision);
      this.#metaPending = true;
      this.#scheduleFlush();
    }
    return this.history.compactRevision;
  }

  /** Records what the state covers; written with the changes before it, in one commit. */
  setMeta(meta: KvStateMeta): void {
    this.#meta = meta;
    this.#metaPending = true;
    this.#scheduleFlush();
  }

  /**
   * Writes every change recorded so far to the store, with the metadata, in one commit; resolves
   * once it and every earlier write are durable (before the log drops what they cover).
   */
  flush(): Promise<void> {
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
    if (this.#pending.size > 0 || this.#metaPending) {
      // From here to the end of the run every write joins one commit.
      const live = this.#live();
      this.history.flushInto((write) => this.#track(write));
      this.#meta = { ...this.#meta, compactRevision: this.history.compactRevision, historyFloor: this.history.floor };
      const puts: Entry[] = [];
      const removals: { key: Uint8Array; version: Version }[] = [];
      for (const [k, record] of this.#pending) {
        if (record !== null) {
          puts.push(entryFromStored(record));
          continue;
        }
        const held = this.#store.get(live, Buffer.from(k, 'latin1'));
        if (held !== undefined) removals.push({ key: held.key, version: held.version });
      }
      if (puts.length > 0) this.#track(this.#store.apply(live, puts, takeOffered));
      if (removals.length > 0) this.#track(this.#store.remove(live, removals));
      this.#track(this.#store.putMeta(stateMetaName(this.#keyspace), encodeMeta(this.#meta)));
      const flushed = new Map(this.#pending);
      this.#flushing.push(flushed);
      void this.#lastWrite.then(
        () => (this.#flushing = this.#flushing.filter((m) => m !== flushed)),
        () => undefined,
      );
      this.#pending.clear();
      this.#pendingBytes = 0;
      this.#metaPending = false;
    }
    return this.#lastWrite.then(() => undefined);
  }

  /** Stops the flush timer (the node is closing or crashed: what is not flushed, the log replays). */
  close(): void {
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
  }

  #change(k: string, record: StoredKey | null, bytes: number): void {
    this.#pending.set(k, record);
    this.#pendingBytes += bytes;
    if (this.#pendingBytes >= STATE_FLUSH_BYTES) void this.flush().catch(() => {});
    else this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    this.#flushTimer ??= this.#scheduler.setTimer(STATE_FLUSH_INTERVAL_MS, () => {
      this.#flushTimer = undefined;
      void this.flush().catch(() => {});
    });
  }

  /**
   * A point-in-time reader of the durable state, for a snapshot sent to a follower: its meta says
   * which index the chunks stand for. Close it when done.
   */
  openSnapshot(): KvSnapshotReader {
    for (let attempt = 0; attempt < 2; attempt++) {
      const generation = this.#meta.generation;
      const view = this.#store.snapshot(generationKeyspace(this.#keyspace, generation), stateMetaName(this.#keyspace));
      const meta = view.meta === undefined ? EMPTY_META : decodeMeta(view.meta);
      // An install switched generations after the view's commit: the view's meta names the other.
      if (meta.generation === generation) return new KvSnapshotReader(view, meta);
      view.close();
    }
    throw new Error(`the state of ${this.#keyspace} switched generations twice while a snapshot was being opened`);
  }

  /** Starts taking a snapshot in: resolves once the generation it goes to is empty. */
  async beginInstall(): Promise<void> {
    await this.#clearing;
    this.#clearing = this.#clear(otherGeneration(this.#meta.generation));
    await this.#clearing;
  }

  /** Writes one chunk of an incoming snapshot (after {@link beginInstall}); resolves once durable. */
  async stage(records: readonly StoredKey[]): Promise<void> {
    if (records.length === 0) return;
    const target = generationKeyspace(this.#keyspace, otherGeneration(this.#meta.generation));
    await this.#track(this.#store.apply(target, records.map(entryFromStored), takeOffered));
  }

  /**
   * Issues the switch to the staged snapshot (call in the same synchronous run as the log's
   * snapshot record, so both commit together), then clears the old generation in the background.
   */
  install(meta: Omit<KvStateMeta, 'generation' | 'historyFloor'>): void {
    const old = this.#meta.generation;
    // Changes still in memory belong to the state the snapshot replaces.
    this.#pending.clear();
    this.#flushing = [];
    this.#pendingBytes = 0;
    this.history.reset(meta.revision, meta.compactRevision);
    this.#meta = { ...meta, generation: otherGeneration(old), historyFloor: this.history.floor };
    this.#metaPending = true;
    void this.flush().catch(() => {});
    const written = this.#lastWrite;
    this.#clearing = written.then(() => this.#clear(old), () => undefined);
  }

  #live(): string {
    return generationKeyspace(this.#keyspace, this.#meta.generation);
  }

  #track<T>(write: Promise<T>): Promise<T> {
    this.#lastWrite = write;
    write.catch((error: unknown) => this.#onWriteFailed(error));
    return write;
  }

  /** Removes everything in `generation`, a page per commit. */
  async #clear(generation: 0 | 1): Promise<void> {
    const keyspace = generationKeyspace(this.#keyspace, generation);
    try {
      for (;;) {
        const view = this.#store.snapshot(keyspace, stateMetaName(this.#keyspace));
        let page: Entry[];
        try {
          page = view.page(undefined, CLEAR_PAGE_BYTES);
        } finally {
          view.close();
        }
        if (page.length === 0) return;
        await this.#track(this.#store.remove(keyspace, page.map((e) => ({ key: e.key, version: e.version }))));
      }
    } catch (error) {
      this.#onWriteFailed(error);
    }
  }
}

/** The durable state as of one commit, read in chunks (see {@link KvStateStore.openSnapshot}). */
export class KvSnapshotReader {
  readonly #view: StoreSnapshot;
  readonly meta: KvStateMeta;
  #after: Uint8Array | undefined;
  #chunks = 0;
  #done = false;

  constructor(view: StoreSnapshot, meta: KvStateMeta) {
    this.#view = view;
    this.meta = meta;
  }

  /**
   * The next chunk, about `maxBytes` (a single larger key travels alone), or undefined after the
   * last. The first carries the state's metadata; every chunk's records follow in key order.
   */
  next(maxBytes: number): { readonly data: Uint8Array; readonly last: boolean } | undefined {
    if (this.#done) return undefined;
    const page = this.#view.page(this.#after, maxBytes);
    const first = this.#chunks++ === 0;
    if (page.length > 0) this.#after = page[page.length - 1]!.key;
    const last = page.length === 0 || this.#view.page(this.#after, 1).length === 0;
    if (last) this.#done = true;
    return { data: encodeChunk(first ? this.meta : undefined, page.map(storedFromEntry)), last };
  }

  close(): void {
    this.#view.close();
  }
}

/** Decodes a chunk made by {@link KvSnapshotReader.next}; throws on one it cannot read. */
export function decodeChunk(data: Uint8Array): { readonly meta: KvStateMeta | undefined; readonly records: StoredKey[] } {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.byteLength < 5 || buf.readUInt8(0) !== CHUNK_FORMAT) throw new RangeError(`not a CP snapshot chunk (format ${buf.byteLength > 0 ? buf.readUInt8(0) : 'none'})`);
  const metaLength = buf.readUInt32BE(1);
  let at = 5;
  const meta = metaLength === 0 ? undefined : decodeMeta(bounded(buf, at, metaLength));
  at += metaLength;
  const records: StoredKey[] = [];
  while (at < buf.byteLength) {
    const keyLength = buf.readUInt32BE(at);
    const key = Buffer.from(bounded(buf, at + 4, keyLength));
    at += 4 + keyLength;
    const recordLength = buf.readUInt32BE(at);
    const record = bounded(buf, at + 4, recordLength);
    at += 4 + recordLength;
    const [stamp, next] = readStamp(buf, at);
    at = next;
    records.push(decodeRecord(key, record, stamp));
  }
  return { meta, records };
}

function encodeChunk(meta: KvStateMeta | undefined, records: readonly StoredKey[]): Uint8Array {
  const metaBytes = meta === undefined ? Buffer.alloc(0) : encodeMeta(meta);
  const encoded = records.map((r) => ({ key: r.key, record: encodeRecord(r), stamp: r.stamp }));
  let bytes = 5 + metaBytes.byteLength;
  for (const e of encoded) bytes += 8 + e.key.byteLength + e.record.byteLength + stampBytes(e.stamp);
  const out = Buffer.allocUnsafe(bytes);
  let at = out.writeUInt8(CHUNK_FORMAT, 0);
  at = out.writeUInt32BE(metaBytes.byteLength, at);
  at += metaBytes.copy(out, at);
  for (const e of encoded) {
    at = out.writeUInt32BE(e.key.byteLength, at);
    at += Buffer.from(e.key.buffer, e.key.byteOffset, e.key.byteLength).copy(out, at);
    at = out.writeUInt32BE(e.record.byteLength, at);
    at += e.record.copy(out, at);
    at = writeStamp(out, at, e.stamp);
  }
  return out;
}

function asBuffer(key: Uint8Array): Buffer {
  return Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
}


function otherGeneration(generation: 0 | 1): 0 | 1 {
  return generation === 0 ? 1 : 0;
}

/** The state machine decided what a key holds: the store keeps it whatever it held. */
function takeOffered(_held: Entry | undefined, offered: Entry): Entry {
  return offered;
}

/**
 * A key's record as the store keeps it: create revision, mod revision, version (u64 each), then
 * the value. A key attached to a lease has the top bit of its create revision set (a revision
 * never reaches it) and the lease (u64) after the version: records written before leases existed
 * read unchanged.
 */
export const LEASE_FLAG = 1n << 63n;

function encodeRecord(k: StoredKey): Buffer {
  const header = k.lease ? 32 : 24;
  const out = Buffer.allocUnsafe(header + k.value.byteLength);
  out.writeBigUInt64BE(k.lease ? BigInt(k.createRevision) | LEASE_FLAG : BigInt(k.createRevision), 0);
  out.writeBigUInt64BE(BigInt(k.modRevision), 8);
  out.writeBigUInt64BE(BigInt(k.version), 16);
  if (k.lease) out.writeBigUInt64BE(BigInt(k.lease), 24);
  Buffer.from(k.value.buffer, k.value.byteOffset, k.value.byteLength).copy(out, header);
  return out;
}

function decodeRecord(key: Uint8Array, record: Uint8Array, stamp: Version): StoredKey {
  const buf = Buffer.from(record.buffer, record.byteOffset, record.byteLength);
  const create = buf.byteLength >= 8 ? buf.readBigUInt64BE(0) : 0n;
  const leased = (create & LEASE_FLAG) !== 0n;
  const header = leased ? 32 : 24;
  if (buf.byteLength < header) throw new RangeError(`a CP key's record is ${buf.byteLength} bytes, shorter than its header`);
  return {
    key: Buffer.from(key.buffer, key.byteOffset, key.byteLength),
    value: buf.subarray(header),
    createRevision: Number(create & ~LEASE_FLAG),
    modRevision: Number(buf.readBigUInt64BE(8)),
    version: Number(buf.readBigUInt64BE(16)),
    stamp,
    ...(leased ? { lease: Number(buf.readBigUInt64BE(24)) } : {}),
  };
}

function entryFromStored(k: StoredKey): Entry {
  return { key: k.key, value: encodeRecord(k), version: k.stamp, tombstone: false };
}

function storedFromEntry(e: Entry): StoredKey {
  return decodeRecord(e.key, e.value, e.version);
}

function encodeMeta(meta: KvStateMeta): Buffer {
  const out = Buffer.allocUnsafe(2 + 24 + stampBytes(meta.lastStamp) + 16);
  let at = out.writeUInt8(META_FORMAT, 0);
  at = out.writeUInt8(meta.generation, at);
  at = out.writeBigUInt64BE(BigInt(meta.appliedIndex), at);
  at = out.writeBigUInt64BE(BigInt(meta.appliedTerm), at);
  at = out.writeBigUInt64BE(BigInt(meta.revision), at);
  at = writeStamp(out, at, meta.lastStamp);
  at = out.writeBigUInt64BE(BigInt(meta.compactRevision), at);
  out.writeBigUInt64BE(BigInt(meta.historyFloor), at);
  return out;
}

function decodeMeta(data: Uint8Array): KvStateMeta {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const format = buf.byteLength > 0 ? buf.readUInt8(0) : 0;
  if (buf.byteLength < 26 || (format !== 1 && format !== META_FORMAT)) throw new RangeError(`not a CP state record (format ${buf.byteLength > 0 ? format : 'none'})`);
  const generation = buf.readUInt8(1);
  if (generation !== 0 && generation !== 1) throw new RangeError(`a CP state record names generation ${generation}`);
  const [lastStamp, afterStamp] = readStamp(buf, 26);
  let end = afterStamp;
  let compactRevision = 0;
  // Format 1 kept no history: there is none before the state's revision.
  let historyFloor = Number(buf.readBigUInt64BE(18));
  if (format === META_FORMAT) {
    const history = bounded(buf, afterStamp, 16);
    compactRevision = Number(history.readBigUInt64BE(0));
    historyFloor = Number(history.readBigUInt64BE(8));
    end += 16;
  }
  if (end !== buf.byteLength) throw new RangeError(`a CP state record has ${buf.byteLength - end} bytes past its end`);
  return {
    generation,
    appliedIndex: Number(buf.readBigUInt64BE(2)),
    appliedTerm: Number(buf.readBigUInt64BE(10)),
    revision: Number(buf.readBigUInt64BE(18)),
    lastStamp,
    compactRevision,
    historyFloor,
  };
}

export function stampBytes(stamp: Version): number {
  return 14 + Buffer.byteLength(stamp.nodeId);
}

/** A version: wall ms (u64), logical (u32), node id (u16 length, UTF-8). */
export function writeStamp(out: Buffer, at: number, stamp: Version): number {
  at = out.writeBigUInt64BE(BigInt(stamp.hlc.wallMs), at);
  at = out.writeUInt32BE(stamp.hlc.logical, at);
  at = out.writeUInt16BE(Buffer.byteLength(stamp.nodeId), at);
  return at + out.write(stamp.nodeId, at);
}

export function readStamp(buf: Buffer, at: number): [Version, number] {
  const header = bounded(buf, at, 14);
  const length = header.readUInt16BE(12);
  const nodeId = bounded(buf, at + 14, length).toString('utf8');
  return [{ hlc: { wallMs: Number(header.readBigUInt64BE(0)), logical: header.readUInt32BE(8) }, nodeId }, at + 14 + length];
}

export function bounded(buf: Buffer, at: number, length: number): Buffer {
  if (at + length > buf.byteLength) throw new RangeError(`a CP snapshot ends ${at + length - buf.byteLength} bytes early`);
  return buf.subarray(at, at + length);
}
