import type { Database } from 'lmdb';
import type { HardState, LogEntry, RaftRestoredState, RaftSnapshot, SnapshotMeta } from '../raft/types.js';
import {
  decodeEntryRecord,
  decodeHardStateRecord,
  decodeSnapshotDataRecord,
  decodeSnapshotMetaRecord,
  encodeEntryRecord,
  encodeHardStateRecord,
  encodeSnapshotDataRecord,
  encodeSnapshotMetaRecord,
  RaftLogRecordError,
} from './raft-log-codec.js';
import { assertKeyspaceName } from './limits.js';
import type { LmdbStore } from './lmdb-store.js';
import { INITIAL_HARD_STATE, RaftLogCorruptionError, type RaftLogStore, type RaftLogWrite } from './raft-log-store.js';
import { RaftLogTracker, SaveSequencer, type RaftLogOp } from './raft-log-support.js';

/** Ends the group's name in a key; keyspace names never contain it (see limits.ts). */
const GROUP_SEPARATOR = 0x00;
/** The byte after the group's name and separator, telling the records apart. */
const TAG_HARD_STATE = 0x01;
const TAG_SNAPSHOT_META = 0x02;
const TAG_SNAPSHOT_DATA = 0x03;
const TAG_ENTRY = 0x04;
/** Above every entry key of the group: the end of its range scans. */
const TAG_END = 0x05;

/**
 * A {@link RaftLogStore} on the LMDB environment of an {@link LmdbStore}, in its named database
 * `raft` ({@link LmdbStore.raftLogDatabase}). Every group of the node shares that database; its
 * keys are
 *
 * | key | value (raft-log-codec.ts) |
 * |---|---|
 * | `<group> 0x00 0x01` | hard state record |
 * | `<group> 0x00 0x02` | snapshot meta record |
 * | `<group> 0x00 0x03` | snapshot data record |
 * | `<group> 0x00 0x04 <index, uint64 BE>` | entry record |
 *
 * so a group's entries sort by index and one range scan reads them. (One database for all groups
 * rather than one per group: lmdb's `maxDbs` is fixed when the environment opens — 8, pinned by
 * test/storage/lmdb-durability.test.ts — and each transaction pays for every slot, while the
 * number of CP keyspaces is the user's choice.)
 *
 * Atomic, durable, group-committed. A `save` issues all its puts and removes in one synchronous
 * run; lmdb-js puts every write of one event-loop turn into one write transaction (see
 * LMDB_OPEN_OPTIONS), which cannot close while the turn is still adding to it, so a save is in
 * one transaction, shares it with every other save (and LmdbStore `apply`) of the turn, and
 * resolves when that transaction has committed and been fsynced: the environment is opened with
 * `overlappingSync: false` (LmdbStore explains), or with `noSync` under the store's
 * `unsafeNoSync`, which this store then shares. Transactions commit one after another, so the
 * promises already come in call order; {@link SaveSequencer} makes that, and fail-stop, explicit.
 *
 * Checksums. LMDB is copy-on-write, so a crash leaves no torn record; a CRC-32 per record still
 * catches bit rot, a bad copy or a write from elsewhere. On open the whole log is read and
 * checked: an entry that fails (or a missing one) cuts the log there, and the records after the
 * cut are deleted by the next write (in its transaction). A bad hard state or snapshot record
 * cannot be cut, so opening throws {@link RaftLogCorruptionError}.
 *
 * The store keeps in memory only what its checks need (the term of each entry, the hard state)
 * and the range of indexes present in the database, so that deleting a suffix or a prefix is a
 * remove per index known to be there. One instance per group per process: a second one would not
 * see the first one's writes in flight.
 */
export class LmdbRaftLogStore implements RaftLogStore {
  readonly #store: LmdbStore;
  /** The group's name and separator: the start of every key of the group. */
  readonly #prefix: Buffer;
  readonly #sequencer = new SaveSequencer();
  #tracker!: RaftLogTracker;
  /** What `load` returns until the first write: the state read on open. */
  #recovered: RaftRestoredState | undefined;
  /** The lowest and highest entry index present in the database (0, 0 when none). */
  #storedFirst = 0;
  #storedLast = 0;
  /** Entries from here to `#storedLast` were cut off on load, and the next write deletes them. */
  #cutFrom: number | undefined;

  private constructor(store: LmdbStore, group: string) {
    this.#store = store;
    this.#prefix = Buffer.concat([Buffer.from(group, 'latin1'), Buffer.from([GROUP_SEPARATOR])]);
  }

  /**
   * Opens the log of group `keyspace` (a valid keyspace name) in `store`'s environment, reading
   * and checking it (see the class comment). Synchronous, like LMDB's own reads. Throws
   * {@link RaftLogCorruptionError} when the hard state or snapshot record is corrupt.
   */
  static open(store: LmdbStore, keyspace: string): LmdbRaftLogStore {
    assertKeyspaceName(keyspace);
    const log = new LmdbRaftLogStore(store, keyspace);
    log.#recover();
    return log;
  }

  load(): RaftRestoredState {
    this.#sequencer.assertUsable();
    this.#sequencer.assertIdle();
    this.#recovered ??= this.#recover();
    return this.#recovered;
  }

  loadSnapshot(): RaftSnapshot | undefined {
    this.#sequencer.assertUsable();
    const db = this.#store.raftLogDatabase();
    const metaBytes = db.getBinary(this.#key(TAG_SNAPSHOT_META));
    if (metaBytes === undefined) return undefined;
    const meta = this.#decodeSingle(metaBytes, 'snapshot meta', decodeSnapshotMetaRecord);
    const dataBytes = db.getBinary(this.#key(TAG_SNAPSHOT_DATA));
    if (dataBytes === undefined) throw new RaftLogCorruptionError(`group ${this.#group}: snapshot ${meta.meta.index} has no data record`);
    const data = this.#decodeSingle(dataBytes, 'snapshot data', decodeSnapshotDataRecord);
    if (data.index !== meta.meta.index || data.term !== meta.meta.term || data.data.length !== meta.dataLength) {
      throw new RaftLogCorruptionError(
        `group ${this.#group}: snapshot data (index ${data.index}, term ${data.term}, ${data.data.length} bytes) does not match its meta ` +
          `(index ${meta.meta.index}, term ${meta.meta.term}, ${meta.dataLength} bytes)`,
      );
    }
    return Object.freeze({ meta: meta.meta, data: data.data });
  }

  save(write: RaftLogWrite): Promise<void> {
    return this.#write(() => this.#tracker.plan(write, 'save'));
  }

  compact(snapshot: RaftSnapshot): Promise<void> {
    return this.#write(() => this.#tracker.plan({ snapshot }, 'compact'));
  }

  /** Waits for this group's writes in flight; the environment stays open (it is the LmdbStore's). */
  close(): Promise<void> {
    return this.#sequencer.close();
  }

  #write(plan: () => RaftLogOp): Promise<void> {
    let db: Database<Buffer, Buffer>;
    let op: RaftLogOp;
    let records: EncodedOp;
    try {
      this.#sequencer.assertUsable();
      db = this.#store.raftLogDatabase();
      // The checks throw before anything is issued, and cover every field the encoding limits,
      // so once `plan` has moved the tracker on nothing below can fail but the medium.
      op = plan();
      records = encodeOp(op);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#recovered = undefined;
    let committed: Promise<unknown>;
    try {
      // From here to the end of the run, every write joins one lmdb transaction.
      committed = this.#issue(db, op, records);
    } catch (error) {
      // lmdb refused a write after others of this save were issued: they may commit without it,
      // and the tracker has moved on. Nothing about the log can be trusted any more: stop.
      this.#sequencer.fail(error);
      return Promise.reject(error);
    }
    return this.#sequencer.track(committed);
  }

  /** Issues the puts and removes of `op`; returns when they are all committed. */
  #issue(db: Database<Buffer, Buffer>, op: RaftLogOp, records: EncodedOp): Promise<unknown> {
    const commits = new Set<Promise<boolean>>();
    const remove = (from: number, to: number): void => {
      for (let index = from; index <= to; index++) commits.add(db.remove(this.#entryKey(index)));
    };
    // Records a load cut off go first: whatever this write is, they must not outlive it.
    if (this.#cutFrom !== undefined) {
      if (this.#storedLast >= this.#cutFrom) {
        remove(Math.max(this.#cutFrom, this.#storedFirst), this.#storedLast);
        this.#setStored(this.#storedFirst, this.#cutFrom - 1);
      }
      this.#cutFrom = undefined;
    }
    if (op.snapshot !== undefined) {
      commits.add(db.put(this.#key(TAG_SNAPSHOT_META), records.snapshotMeta!));
      commits.add(db.put(this.#key(TAG_SNAPSHOT_DATA), records.snapshotData!));
    }
    if (this.#storedLast > 0 && op.deleteThrough >= this.#storedFirst) {
      remove(this.#storedFirst, Math.min(op.deleteThrough, this.#storedLast));
      this.#setStored(op.deleteThrough + 1, this.#storedLast);
    }
    if (this.#storedLast > 0 && op.deleteFrom <= this.#storedLast) {
      remove(Math.max(op.deleteFrom, this.#storedFirst), this.#storedLast);
      this.#setStored(this.#storedFirst, op.deleteFrom - 1);
    }
    for (const [i, entry] of op.entries.entries()) commits.add(db.put(this.#entryKey(entry.index), records.entries[i]!));
    if (op.entries.length > 0) {
      const first = op.entries[0]!.index;
      const last = op.entries[op.entries.length - 1]!.index;
      this.#setStored(this.#storedLast === 0 ? first : Math.min(this.#storedFirst, first), Math.max(this.#storedLast, last));
    }
    if (op.hardState !== undefined) commits.add(db.put(this.#key(TAG_HARD_STATE), records.hardState!));
    return Promise.all(commits);
  }

  #setStored(first: number, last: number): void {
    if (last < first) {
      this.#storedFirst = 0;
      this.#storedLast = 0;
    } else {
      this.#storedFirst = first;
      this.#storedLast = last;
    }
  }

  /**
   * Reads and checks the group's log: the state a start recovers. Sets up the checks' state, the
   * range of stored indexes and the cut, if any.
   */
  #recover(): RaftRestoredState {
    const db = this.#store.raftLogDatabase();
    const hardBytes = db.getBinary(this.#key(TAG_HARD_STATE));
    const hardState: HardState = hardBytes === undefined ? INITIAL_HARD_STATE : this.#decodeSingle(hardBytes, 'hard state', decodeHardStateRecord);
    const metaBytes = db.getBinary(this.#key(TAG_SNAPSHOT_META));
    const snapshot: SnapshotMeta | undefined =
      metaBytes === undefined ? undefined : this.#decodeSingle(metaBytes, 'snapshot meta', decodeSnapshotMetaRecord).meta;

    const start = this.#entryKey(0);
    const end = this.#key(TAG_END);
    const firstKey = first(db.getKeys({ start, end, limit: 1 }));
    const lastKey = first(db.getKeys({ start: end, end: start, reverse: true, limit: 1 }));
    const storedFirst = firstKey === undefined ? 0 : this.#indexOf(firstKey);
    const storedLast = lastKey === undefined ? 0 : this.#indexOf(lastKey);

    const base = snapshot?.index ?? 0;
    const entries: LogEntry[] = [];
    let expected = base + 1;
    let previousTerm = snapshot?.term ?? 0;
    let cut: number | undefined;
    for (const { key, value } of db.getRange({ start: this.#entryKey(expected), end })) {
      const index = this.#indexOf(key);
      if (index !== expected) {
        cut = expected;
        break;
      }
      let entry: LogEntry;
      try {
        entry = decodeEntryRecord(value);
      } catch (error) {
        if (!(error instanceof RaftLogRecordError)) throw error;
        cut = index;
        break;
      }
      // A record moved under another key, or one whose term goes back, is as bad as a torn one.
      if (entry.index !== index || entry.term < previousTerm) {
        cut = index;
        break;
      }
      entries.push(entry);
      previousTerm = entry.term;
      expected++;
    }
    if (cut === undefined && storedLast >= expected) cut = expected;

    this.#storedFirst = storedFirst;
    this.#storedLast = storedLast;
    this.#cutFrom = cut;
    const recovered: RaftRestoredState = Object.freeze({ hardState, snapshot, entries: Object.freeze(entries) });
    this.#tracker = new RaftLogTracker(recovered);
    this.#recovered = recovered;
    return recovered;
  }

  #decodeSingle<T>(bytes: Uint8Array, what: string, decode: (bytes: Uint8Array) => T): T {
    try {
      return decode(bytes);
    } catch (error) {
      if (!(error instanceof RaftLogRecordError)) throw error;
      throw new RaftLogCorruptionError(`group ${this.#group}: the ${what} record is corrupt (${error.message})`, { cause: error });
    }
  }

  get #group(): string {
    return this.#prefix.toString('latin1', 0, this.#prefix.length - 1);
  }

  #key(tag: number): Buffer {
    const key = Buffer.allocUnsafe(this.#prefix.length + 1);
    this.#prefix.copy(key);
    key[this.#prefix.length] = tag;
    return key;
  }

  #entryKey(index: number): Buffer {
    const key = Buffer.allocUnsafe(this.#prefix.length + 9);
    this.#prefix.copy(key);
    let at = key.writeUInt8(TAG_ENTRY, this.#prefix.length);
    at = key.writeUInt32BE(Math.floor(index / 0x1_0000_0000), at);
    key.writeUInt32BE(index >>> 0, at);
    return key;
  }

  /** The index in an entry key; a key of any other shape reads as index 0, which no entry has. */
  #indexOf(key: Buffer): number {
    if (key.length !== this.#prefix.length + 9 || key[this.#prefix.length] !== TAG_ENTRY) return 0;
    return key.readUInt32BE(this.#prefix.length + 1) * 0x1_0000_0000 + key.readUInt32BE(this.#prefix.length + 5);
  }
}

interface EncodedOp {
  readonly hardState: Buffer | undefined;
  readonly snapshotMeta: Buffer | undefined;
  readonly snapshotData: Buffer | undefined;
  readonly entries: readonly Buffer[];
}

function encodeOp(op: RaftLogOp): EncodedOp {
  return {
    hardState: op.hardState === undefined ? undefined : encodeHardStateRecord(op.hardState),
    snapshotMeta: op.snapshot === undefined ? undefined : encodeSnapshotMetaRecord(op.snapshot.meta, op.snapshot.data.byteLength),
    snapshotData: op.snapshot === undefined ? undefined : encodeSnapshotDataRecord(op.snapshot.meta, op.snapshot.data),
    entries: op.entries.map(encodeEntryRecord),
  };
}

function first<T>(items: Iterable<T>): T | undefined {
  for (const item of items) return item;
  return undefined;
}
