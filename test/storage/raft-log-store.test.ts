import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { DEFAULT_DISK_PROFILE, DiskSyncError, INSTANT_DISK, SimulatedDisk } from '../../src/sim/simulated-disk.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';
import { LmdbStore, StoreClosedError } from '../../src/storage/index.js';
import { LmdbRaftLogStore } from '../../src/storage/lmdb-raft-log-store.js';
import { MemoryRaftLogStore, MemorySyncError } from '../../src/storage/memory-raft-log-store.js';
import {
  crc32,
  crc32InJavaScript,
  decodeEntryRecord,
  decodeHardStateRecord,
  decodeSnapshotMetaRecord,
  encodeEntryRecord,
  encodeHardStateRecord,
  encodeSnapshotMetaRecord,
  RaftLogRecordError,
} from '../../src/storage/raft-log-codec.js';
import { RaftLogCorruptionError, type RaftLogStore } from '../../src/storage/raft-log-store.js';
import { makeEntry } from './support/make-entry.js';
import { entries, entry, hardState, plain, raftLogContract, snapshot, type RaftLogHarness } from './support/raft-log-contract.js';
import { parseStrace, fdOf, bytesOf, straceArgs, straceUnavailable } from '../support/strace.js';

const GROUP = 'raft-test';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'replikit-raft-log-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});
let dirs = 0;
const freshDir = (): string => join(root, `db-${dirs++}`);

// ---------------------------------------------------------------------------------------------
// The contract, against all three.

function memoryHarness(): RaftLogHarness {
  const log = new MemoryRaftLogStore();
  return {
    log,
    restart: async () => {
      await log.close();
      log.crash();
    },
    commits: () => log.stats.commits,
    dispose: () => log.close(),
  };
}

/** LMDB: a restart closes the log and the whole environment, and opens both again. */
function lmdbHarness(): RaftLogHarness {
  const dir = freshDir();
  let store = LmdbStore.open(dir);
  const harness = {
    log: LmdbRaftLogStore.open(store, GROUP) as RaftLogStore,
    restart: async () => {
      await harness.log.close();
      await store.close();
      store = LmdbStore.open(dir);
      harness.log = LmdbRaftLogStore.open(store, GROUP);
    },
    commits: () => store.lastTransactionId(),
    dispose: async () => {
      await harness.log.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return harness;
}

/** The simulated disk that commits on a microtask (the contract awaits without running a scheduler). */
function instantDiskHarness(): RaftLogHarness {
  const disk = new SimulatedDisk(new VirtualScheduler(), new SeededRandom(7), INSTANT_DISK);
  const harness = {
    log: disk.openRaftLog(GROUP),
    restart: async () => {
      await harness.log.close();
      disk.crash();
      harness.log = disk.openRaftLog(GROUP);
    },
    commits: () => disk.stats.commits,
    dispose: () => harness.log.close(),
  };
  return harness;
}

raftLogContract('MemoryRaftLogStore', memoryHarness);
raftLogContract('LmdbRaftLogStore', lmdbHarness, { historyRuns: 25 });
raftLogContract('SimulatedDisk.openRaftLog (instant)', instantDiskHarness);

// ---------------------------------------------------------------------------------------------

describe('raft-log-codec', () => {
  it('round-trips every record type', () => {
    const e = { index: 2 ** 53 - 1, term: 2 ** 40 + 3, kind: 'noop' as const, data: new Uint8Array([1, 2, 3]) };
    expect(decodeEntryRecord(encodeEntryRecord(e))).toEqual(e);
    for (const state of [hardState(7, 'nœud-1', 99), hardState(0, undefined, 0), hardState(1, '', 0)]) {
      expect(decodeHardStateRecord(encodeHardStateRecord(state))).toEqual(state);
    }
    const meta = { index: 10, term: 3, voters: ['a', 'b', 'ç'], learners: ['d'], context: '{"a":"h:1"}' };
    expect(decodeSnapshotMetaRecord(encodeSnapshotMetaRecord(meta, 1234))).toEqual({ meta, dataLength: 1234 });
    const config = { index: 11, term: 3, kind: 'config' as const, data: new TextEncoder().encode('{"voters":["a"]}') };
    expect(decodeEntryRecord(encodeEntryRecord(config))).toEqual(config);
  });

  it('reads a snapshot meta written before membership changes as no learners and an empty context', () => {
    // The record as format 1 wrote it until learners and context were appended: it ends after the voters.
    const current = encodeSnapshotMetaRecord({ index: 10, term: 3, voters: ['a', 'b'], learners: [], context: '' }, 5);
    const old = Buffer.from(current.subarray(0, current.length - 8));
    old.writeUInt32BE(crc32(old.subarray(6)), 2);
    expect(decodeSnapshotMetaRecord(old)).toEqual({ meta: { index: 10, term: 3, voters: ['a', 'b'] }, dataLength: 5 });
  });

  it('pins the entry layout (it is an on-disk format)', () => {
    const bytes = encodeEntryRecord({ index: 258, term: 1, kind: 'command', data: new Uint8Array([0xab]) });
    // format 1, type 1, crc, term u64, index u64, kind 0, data.
    expect(bytes.subarray(0, 2)).toEqual(Buffer.from([1, 1]));
    expect(bytes.subarray(6).toString('hex')).toBe('0000000000000001' + '0000000000000102' + '00' + 'ab');
    expect(bytes.readUInt32BE(2)).toBe(crc32(bytes.subarray(6)));
  });

  it('catches any flipped bit, a cut, a wrong type or format', () => {
    const good = encodeEntryRecord(entry(5, 2));
    for (let bit = 0; bit < good.length * 8; bit++) {
      const bad = Buffer.from(good);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(() => decodeEntryRecord(bad), `bit ${bit}`).toThrow(RaftLogRecordError);
    }
    for (let length = 0; length < good.length; length++) expect(() => decodeEntryRecord(good.subarray(0, length))).toThrow(RaftLogRecordError);
    expect(() => decodeHardStateRecord(good)).toThrow(/type 1, expected 2/);
  });

  it('computes the same CRC-32 in JavaScript as zlib does', () => {
    const data = new Uint8Array(10_000).map((_, i) => (i * 31 + 7) & 0xff);
    expect(crc32InJavaScript(data)).toBe(crc32(data));
    expect(crc32InJavaScript(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });
});

// ---------------------------------------------------------------------------------------------

describe('MemoryRaftLogStore faults', () => {
  it('a crash loses exactly the writes whose commit had not happened', async () => {
    const log = new MemoryRaftLogStore();
    await log.save({ entries: entries(1, 3, 1), hardState: hardState(1, 'n1', 1) });
    let lostSettled = false;
    void log.save({ entries: entries(4, 5, 1) }).finally(() => (lostSettled = true));
    log.crash();
    await new Promise((resolve) => setImmediate(resolve));
    expect(lostSettled).toBe(false);
    expect(log.load().entries.map((e) => e.index)).toEqual([1, 2, 3]);
  });

  it('a failed commit rejects its writes and stops the store until the next start', async () => {
    const log = new MemoryRaftLogStore();
    await log.save({ entries: entries(1, 1, 1) });
    log.failNextSync();
    const failed = log.save({ entries: entries(2, 2, 1) });
    const sameCommit = log.save({ hardState: hardState(1, undefined, 1) });
    await expect(failed).rejects.toBeInstanceOf(MemorySyncError);
    await expect(sameCommit).rejects.toBeInstanceOf(MemorySyncError);
    const error = await failed.catch((e: unknown) => e);
    await expect(log.save({ entries: entries(2, 2, 1) })).rejects.toBe(error);
    await expect(log.compact(snapshot(1, 1))).rejects.toBe(error);
    expect(() => log.load()).toThrow(error as Error);
    expect(() => log.loadSnapshot()).toThrow(error as Error);
    log.crash();
    expect(log.load().entries.map((e) => e.index)).toEqual([1]);
    await log.save({ entries: entries(2, 2, 1) });
  });
});

// ---------------------------------------------------------------------------------------------

function timedDisk(seed = 1) {
  const scheduler = new VirtualScheduler();
  return { scheduler, disk: new SimulatedDisk(scheduler, new SeededRandom(seed), DEFAULT_DISK_PROFILE) };
}

describe('SimulatedDisk Raft logs on virtual time', () => {
  it('takes virtual time to commit, and shares commits with the Store and other groups', async () => {
    const { scheduler, disk } = timedDisk();
    const a = disk.openRaftLog('a');
    const b = disk.openRaftLog('b');
    const done = Promise.all([
      a.save({ entries: entries(1, 2, 1) }),
      b.save({ hardState: hardState(3, 'n2', 0) }),
      disk.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]),
    ]);
    expect(disk.hasWritesInFlight).toBe(true);
    expect(await scheduler.runUntilSettled(done, 1_000)).toBe(true);
    expect(scheduler.nowMs()).toBeGreaterThan(0);
    expect(disk.stats.commits).toBe(1);
    expect(disk.durableRaftLog('a').entries).toHaveLength(2);
    expect(disk.durableRaftLog('b').hardState).toEqual({ term: 3, vote: 'n2', commit: 0 });
  });

  it('a crash mid-commit loses exactly the unsynced saves, keeps the synced ones, and the log stays contiguous', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const { scheduler, disk } = timedDisk(seed);
      const log = disk.openRaftLog(GROUP);
      const random = new SeededRandom(1000 + seed);
      const acked: number[] = [];
      let next = 1;
      // Writers issuing saves over virtual time, some turns with several at once.
      for (let turn = 0; turn < 40; turn++) {
        const burst = 1 + Math.floor(random.next() * 3);
        for (let i = 0; i < burst; i++) {
          const first = next;
          const last = (next += 1 + Math.floor(random.next() * 3)) - 1;
          void log.save({ entries: entries(first, last, 1), hardState: hardState(1, 'n1', Math.max(0, first - 1)) }).then(() => acked.push(last));
        }
        await scheduler.advance(random.between(0, 0.6));
      }
      const inFlight = disk.crash();
      const survived = disk.durableRaftLog(GROUP);
      const restarted = disk.openRaftLog(GROUP);
      const loaded = restarted.load();
      expect(plain(loaded)).toEqual(plain(survived));
      const last = loaded.entries.at(-1)?.index ?? 0;
      // Every acknowledged save is there; nothing past the last commit that finished is.
      expect(last).toBeGreaterThanOrEqual(Math.max(0, ...acked));
      expect(last).toBe(Math.max(0, ...acked));
      expect(loaded.entries.map((e) => e.index)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      if (inFlight) expect(last).toBeLessThan(next - 1);
      // The old handle is fenced off; the new one carries on from what survived.
      await expect(log.save({ entries: entries(last + 1, last + 1, 1) })).rejects.toBeInstanceOf(StoreClosedError);
      expect(() => log.load()).toThrow(StoreClosedError);
      const more = restarted.save({ entries: entries(last + 1, last + 1, 2), hardState: hardState(2, undefined, last) });
      expect(await scheduler.runUntilSettled(more, 1_000)).toBe(true);
      expect(disk.durableRaftLog(GROUP).entries.at(-1)).toMatchObject({ index: last + 1, term: 2 });
    }
  });

  it('loses everything on a wipe', async () => {
    const { scheduler, disk } = timedDisk();
    const log = disk.openRaftLog(GROUP);
    expect(await scheduler.runUntilSettled(log.save({ entries: entries(1, 3, 1), snapshot: snapshot(0, 0), hardState: hardState(1, 'n1', 0) }), 1_000)).toBe(true);
    expect(await scheduler.runUntilSettled(log.compact(snapshot(2, 1)), 1_000)).toBe(true);
    disk.wipe();
    const fresh = disk.openRaftLog(GROUP);
    expect(plain(fresh.load())).toEqual({ hardState: { term: 0, vote: undefined, commit: 0 }, snapshot: undefined, entries: [] });
    expect(fresh.loadSnapshot()).toBeUndefined();
  });

  it('a failed sync rejects the commit, stops the disk (fail-stop) and leaves an atomic, contiguous log', async () => {
    let durableAfterFailure = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const { scheduler, disk } = timedDisk(seed);
      const log = disk.openRaftLog(GROUP);
      expect(await scheduler.runUntilSettled(log.save({ entries: entries(1, 2, 1) }), 1_000)).toBe(true);
      disk.failNextSync();
      const failed = log.save({ entries: entries(3, 5, 1), hardState: hardState(1, 'n1', 2) });
      const seen = failed.catch((e: unknown) => e);
      expect(await scheduler.runUntilSettled(seen, 1_000)).toBe(true);
      const error = await seen;
      expect(error).toBeInstanceOf(DiskSyncError);
      // Every later call fails: writes, compactions, reads.
      await expect(log.save({ entries: entries(3, 3, 1) })).rejects.toBeInstanceOf(DiskSyncError);
      await expect(log.compact(snapshot(1, 1))).rejects.toBeInstanceOf(DiskSyncError);
      expect(() => log.load()).toThrow(DiskSyncError);
      expect(() => disk.open().get('ks', new Uint8Array([1]))).toThrow(DiskSyncError);
      // After the restart the failed write is there whole or not at all (nobody knows which).
      disk.crash();
      const loaded = disk.openRaftLog(GROUP).load();
      const indexes = loaded.entries.map((e) => e.index);
      if (indexes.length === 5) {
        durableAfterFailure++;
        expect(loaded.hardState).toEqual({ term: 1, vote: 'n1', commit: 2 });
      } else {
        expect(indexes).toEqual([1, 2]);
        expect(loaded.hardState).toEqual({ term: 0, vote: undefined, commit: 0 });
      }
    }
    // Both outcomes happen across the seeds.
    expect(durableAfterFailure).toBeGreaterThan(0);
    expect(durableAfterFailure).toBeLessThan(12);
  });

  it('writes of later turns wait for the commit under way, and fail with it', async () => {
    const { scheduler, disk } = timedDisk(3);
    const log = disk.openRaftLog(GROUP);
    const first = log.save({ entries: entries(1, 1, 1) });
    await scheduler.advance(0); // the first commit has started
    disk.failNextSync();
    const second = log.save({ entries: entries(2, 2, 1) }).catch((e: unknown) => e);
    expect(await scheduler.runUntilSettled(first, 1_000)).toBe(true);
    expect(await scheduler.runUntilSettled(second, 1_000)).toBe(true);
    expect(await second).toBeInstanceOf(DiskSyncError);
  });
});

// ---------------------------------------------------------------------------------------------

describe('LmdbRaftLogStore on disk', () => {
  /** The raw key of entry `index` of GROUP, as lmdb-raft-log-store.ts lays keys out. */
  const entryKey = (index: number): Buffer => {
    const key = Buffer.alloc(GROUP.length + 2 + 8);
    key.write(GROUP, 'latin1');
    key[GROUP.length + 1] = 0x04;
    key.writeUInt32BE(Math.floor(index / 2 ** 32), GROUP.length + 2);
    key.writeUInt32BE(index >>> 0, GROUP.length + 6);
    return key;
  };
  const tagKey = (tag: number): Buffer => Buffer.concat([Buffer.from(GROUP, 'latin1'), Buffer.from([0, tag])]);

  it('survives closing the environment: a new process finds every write', async () => {
    const dir = freshDir();
    let store = LmdbStore.open(dir);
    let log = LmdbRaftLogStore.open(store, GROUP);
    await log.save({ entries: entries(1, 100, 1), hardState: hardState(1, 'n1', 50) });
    await log.compact(snapshot(40, 1));
    await log.save({ entries: entries(90, 120, 2), hardState: hardState(2, undefined, 60) });
    await store.close();
    // Closing the store closes the environment under the log.
    await expect(log.save({ entries: entries(121, 121, 2) })).rejects.toBeInstanceOf(StoreClosedError);
    store = LmdbStore.open(dir);
    log = LmdbRaftLogStore.open(store, GROUP);
    const loaded = log.load();
    expect(loaded.snapshot?.index).toBe(40);
    expect(loaded.entries.map((e) => e.index)).toEqual(Array.from({ length: 80 }, (_, i) => i + 41));
    expect(loaded.entries.filter((e) => e.term === 2).map((e) => e.index)).toEqual(Array.from({ length: 31 }, (_, i) => i + 90));
    expect(loaded.hardState).toEqual({ term: 2, vote: undefined, commit: 60 });
    // Only the records the log holds are in the database: the compaction and overwrite deleted the rest.
    expect([...store.raftLogDatabase().getKeys({ start: entryKey(0), end: tagKey(0x05) })]).toHaveLength(80);
    await store.close();
  });

  it('keeps groups apart, and shares transactions with LmdbStore.apply', async () => {
    const dir = freshDir();
    const store = LmdbStore.open(dir);
    const a = LmdbRaftLogStore.open(store, 'a');
    const ab = LmdbRaftLogStore.open(store, 'a.b');
    await Promise.all([a.save({ entries: entries(1, 3, 1) }), ab.save({ entries: entries(1, 1, 5) })]);
    const before = store.lastTransactionId();
    await Promise.all([
      a.save({ entries: entries(4, 4, 1), hardState: hardState(1, 'n1', 3) }),
      ab.save({ hardState: hardState(5, undefined, 1) }),
      store.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]),
    ]);
    expect(store.lastTransactionId() - before).toBe(1);
    expect(a.load().entries.map((e) => [e.index, e.term])).toEqual([[1, 1], [2, 1], [3, 1], [4, 1]]);
    expect(ab.load().entries.map((e) => [e.index, e.term])).toEqual([[1, 5]]);
    expect(ab.load().hardState.term).toBe(5);
    await store.close();
  });

  it('cuts the log at a corrupt entry, and the next write deletes what was cut', async () => {
    const dir = freshDir();
    const store = LmdbStore.open(dir);
    const db = store.raftLogDatabase();
    let log = LmdbRaftLogStore.open(store, GROUP);
    await log.save({ entries: entries(1, 10, 1), hardState: hardState(1, 'n1', 3) });
    await log.close();
    // One flipped bit in entry 6, straight through the database.
    const record = Buffer.from(db.getBinary(entryKey(6))!);
    record[record.length - 1]! ^= 0x10;
    await db.put(entryKey(6), record);

    log = LmdbRaftLogStore.open(store, GROUP);
    expect(log.load().entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5]);
    // Entries 7-10 decode fine but follow the cut: never returned, deleted by the next write,
    // even one that writes only the hard state.
    expect(db.getBinary(entryKey(8))).toBeDefined();
    await log.save({ hardState: hardState(2, undefined, 3) });
    for (let i = 6; i <= 10; i++) expect(db.getBinary(entryKey(i)), `entry ${i}`).toBeUndefined();
    await log.save({ entries: entries(6, 7, 2) });
    await log.close();
    log = LmdbRaftLogStore.open(store, GROUP);
    expect(log.load().entries.map((e) => [e.index, e.term])).toEqual([[1, 1], [2, 1], [3, 1], [4, 1], [5, 1], [6, 2], [7, 2]]);
    await store.close();
  });

  it('cuts the log at a gap, at a record under the wrong key, and at a term going back', async () => {
    const dir = freshDir();
    const store = LmdbStore.open(dir);
    const db = store.raftLogDatabase();
    const reopen = (): RaftLogStore => LmdbRaftLogStore.open(store, GROUP);
    const log = reopen();
    await log.save({ entries: entries(1, 10, 2) });
    await log.close();

    await db.remove(entryKey(8));
    expect(reopen().load().entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    await db.put(entryKey(5), encodeEntryRecord(entry(4, 2)));
    expect(reopen().load().entries.map((e) => e.index)).toEqual([1, 2, 3, 4]);
    await db.put(entryKey(3), encodeEntryRecord(entry(3, 1)));
    expect(reopen().load().entries.map((e) => e.index)).toEqual([1, 2]);
    await store.close();
  });

  it('stops at a failed commit: the save, those issued with and after it, and every later call fail with its error', async () => {
    const dir = freshDir();
    const store = LmdbStore.open(dir);
    const log = LmdbRaftLogStore.open(store, GROUP);
    await log.save({ entries: entries(1, 2, 1) });
    // lmdb reports a failed commit by rejecting its writes' promise: stand in for an EIO there.
    const db = store.raftLogDatabase();
    const put = db.put.bind(db);
    const eio = Object.assign(new Error('EIO: i/o error (injected)'), { code: 'EIO' });
    let failing = true;
    db.put = ((key: Buffer, value: Buffer) => {
      const committed = put(key, value);
      return failing ? committed.then(() => Promise.reject(eio)) : committed;
    }) as typeof db.put;
    const failed = log.save({ entries: entries(3, 3, 1) });
    failing = false;
    const next = log.save({ entries: entries(4, 4, 1) });
    await expect(failed).rejects.toBe(eio);
    // Its own commit went through, but it was issued after a failure: it fails too.
    await expect(next).rejects.toBe(eio);
    await expect(log.save({ hardState: hardState(1, undefined, 0) })).rejects.toBe(eio);
    await expect(log.compact(snapshot(1, 1))).rejects.toBe(eio);
    expect(() => log.load()).toThrow(eio);
    expect(() => log.loadSnapshot()).toThrow(eio);
    await log.close();
    await store.close();
  });

  it('refuses to open over a corrupt hard state, and loadSnapshot over corrupt snapshot data', async () => {
    const dir = freshDir();
    const store = LmdbStore.open(dir);
    const db = store.raftLogDatabase();
    const log = LmdbRaftLogStore.open(store, GROUP);
    await log.save({ entries: entries(1, 4, 1), hardState: hardState(1, 'n1', 4) });
    await log.compact(snapshot(2, 1));
    await log.close();

    const data = Buffer.from(db.getBinary(tagKey(0x03))!);
    data[data.length - 1]! ^= 1;
    await db.put(tagKey(0x03), data);
    const reopened = LmdbRaftLogStore.open(store, GROUP);
    expect(reopened.load().snapshot?.index).toBe(2);
    expect(() => reopened.loadSnapshot()).toThrow(RaftLogCorruptionError);

    const hard = Buffer.from(db.getBinary(tagKey(0x01))!);
    hard[8]! ^= 1;
    await db.put(tagKey(0x01), hard);
    expect(() => LmdbRaftLogStore.open(store, GROUP)).toThrow(RaftLogCorruptionError);
    await store.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Real processes: SIGKILL, and what the system calls say.

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WRITER = fileURLToPath(new URL('./fixtures/raft-log-writer.ts', import.meta.url));

interface WriterRound {
  readonly acked: number[];
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
}

/** Runs the writer for `term` on `dir` until it has acknowledged `acksBeforeKill` saves, then SIGKILLs it. */
function runWriterUntilKilled(dir: string, term: number, acksBeforeKill: number): Promise<WriterRound> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, String(term)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const acked: number[] = [];
    let pending = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line.startsWith('ack ')) acked.push(Number(line.slice(4)));
      if (acked.length >= acksBeforeKill && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code ?? signal} before the kill: ${stderr}`));
      else resolve({ acked, signal, stderr });
    });
  });
}

describe('LmdbRaftLogStore across a real crash (SIGKILL)', () => {
  it('keeps every acknowledged index, round after round, each round a new term that overwrites a suffix', async () => {
    const dir = freshDir();
    let everAcked = 0;
    for (const [round, acks] of [300, 800, 1500].entries()) {
      const term = round + 1;
      const { acked, signal } = await runWriterUntilKilled(dir, term, acks);
      expect(signal).toBe('SIGKILL');
      expect(acked.length).toBeGreaterThanOrEqual(acks);
      everAcked = Math.max(everAcked, ...acked);

      const store = LmdbStore.open(dir);
      try {
        const log = LmdbRaftLogStore.open(store, 'raft-crash');
        const loaded = log.load();
        const base = loaded.snapshot?.index ?? 0;
        const last = loaded.entries.at(-1)?.index ?? base;
        expect(last, `acknowledged up to ${everAcked}`).toBeGreaterThanOrEqual(everAcked);
        // Contiguous, whole, and each record what the writer of its term wrote at its index.
        expect(loaded.entries.map((e) => e.index)).toEqual(Array.from({ length: last - base }, (_, i) => base + i + 1));
        for (const e of loaded.entries) expect(new TextDecoder().decode(e.data)).toBe(`t${e.term}-i${e.index}`.padEnd(64, '.'));
        expect(loaded.hardState.term).toBe(term);
        if (loaded.snapshot !== undefined) expect(new TextDecoder().decode(log.loadSnapshot()!.data)).toBe(`snap-${loaded.snapshot.index}`);
      } finally {
        await store.close();
      }
    }
  });
});

const straceProblem = straceUnavailable();

/**
 * The writer in sequential mode under strace: between printing one acknowledgement and the next,
 * LMDB's data file must be fdatasynced (the save is issued right after the previous
 * acknowledgement). With REPLIKIT_UNSAFE_NO_SYNC=1 it opens the store with `unsafeNoSync`, which
 * this check must catch, or it proves nothing.
 */
async function tracedWriter(unsafeNoSync: boolean): Promise<{ acks: number; syncedAcks: number; syncs: number }> {
  const dir = freshDir();
  const traceFile = `${dir}.strace`;
  const env = { ...process.env };
  delete env.REPLIKIT_UNSAFE_NO_SYNC;
  if (unsafeNoSync) env.REPLIKIT_UNSAFE_NO_SYNC = '1';
  const child = spawn('strace', [...straceArgs(traceFile, { syncDelayUs: 5_000 }), process.execPath, '--import', 'tsx', WRITER, dir, '1', '--sequential', '20'], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  expect(code, stderr).toBe(0);
  const calls = parseStrace(readFileSync(traceFile, 'utf8'));
  // The writer's lines on stdout, in order: "ready", then "ack <n>" per save.
  const stdoutWrites = calls.filter((c) => c.name === 'write' && fdOf(c)?.fd === 1 && /^(ready|ack )/.test(bytesOf(c).bytes.toString()));
  const dataSyncs = calls.filter((c) => (c.name === 'fdatasync' || c.name === 'fsync') && c.ret === 0 && fdOf(c)?.path?.endsWith('data.mdb'));
  let syncedAcks = 0;
  for (let i = 1; i < stdoutWrites.length; i++) {
    const from = stdoutWrites[i - 1]!.endUs;
    const to = stdoutWrites[i]!.startUs;
    if (dataSyncs.some((s) => s.startUs >= from && s.endUs <= to)) syncedAcks++;
  }
  rmSync(traceFile, { force: true });
  return { acks: stdoutWrites.length - 1, syncedAcks, syncs: dataSyncs.length };
}

describe.skipIf(straceProblem !== undefined)('LmdbRaftLogStore under strace', () => {
  it('fdatasyncs the data file between issuing each save and acknowledging it', async () => {
    const run = await tracedWriter(false);
    expect(run.acks).toBe(20);
    expect(run.syncedAcks).toBe(20);
  });

  it('catches REPLIKIT_UNSAFE_NO_SYNC=1 (lmdb noSync, shared with LmdbStore): no acknowledgement follows a sync', async () => {
    const run = await tracedWriter(true);
    expect(run.acks).toBe(20);
    expect(run.syncedAcks).toBe(0);
    expect(run.syncs).toBe(0);
  });
});
