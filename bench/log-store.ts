/**
 * Raft log appends: LmdbRaftLogStore against a minimal append-only file WAL, both durable
 * (fdatasync) before an append resolves, to choose the Raft log's medium by measurement.
 *
 * Each cell runs closed-loop writers (each issues its next append when the last one resolved) for
 * SECONDS, every append one 1 KiB entry (the entry record of raft-log-codec.ts), after a short
 * warm-up. Reported: appends/s, latency from issue to resolution (p50, p99), syncs/s (commits),
 * and appends per sync (how well writes were grouped).
 *
 * Targets:
 * - `lmdb`: LmdbRaftLogStore on an LmdbStore (the real code: one write transaction per event-loop
 *   turn, fdatasync per commit; a sync is one LMDB commit, from `lastTransactionId`).
 * - `wal`: the WAL below, appending to a growing file (`O_APPEND`): each round writes whatever
 *   arrived during the previous round's sync in one write, then fdatasyncs; the file grows, so each
 *   fdatasync also commits the new size (a journal commit on ext4).
 * - `wal-prealloc`: the same WAL on a file written full of zeros (and fsynced) beforehand, written
 *   in place: fdatasync then has no size to commit, as with etcd's preallocated WAL segments.
 *
 * Run: node --import tsx bench/log-store.ts [--seconds 5] [--writers 1,64] [--targets lmdb,wal,wal-prealloc]
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LogEntry } from '../src/raft/types.js';
import { LmdbStore } from '../src/storage/index.js';
import { LmdbRaftLogStore } from '../src/storage/lmdb-raft-log-store.js';
import { encodeEntryRecord } from '../src/storage/raft-log-codec.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    writers: { type: 'string', default: '1,64' },
    targets: { type: 'string', default: 'lmdb,wal,wal-prealloc' },
  },
});
const SECONDS = Number(args.seconds);
const WRITERS = args.writers.split(',').map(Number);
const TARGETS = args.targets.split(',');
const ENTRY_BYTES = 1024;
const WARMUP_SECONDS = Math.min(1, SECONDS / 5);
/** Size of the preallocated WAL file: more than the fastest cell writes in SECONDS. */
const PREALLOCATED_BYTES = 512 * 1024 * 1024;

interface Target {
  readonly name: string;
  append(entry: LogEntry): Promise<void>;
  syncs(): number;
  close(): Promise<void>;
}

function lmdbTarget(dir: string): Target {
  const store = LmdbStore.open(join(dir, 'lmdb'));
  const log = LmdbRaftLogStore.open(store, 'bench');
  return {
    name: 'lmdb',
    append: (entry) => log.save({ entries: [entry] }),
    syncs: () => store.lastTransactionId(),
    close: async () => {
      await log.close();
      await store.close();
    },
  };
}

/**
 * A minimal WAL: records framed by a uint32 length, written in rounds. A round takes every record
 * that arrived since the last one, writes them with one write call, fdatasyncs, and resolves their
 * appends; records arriving meanwhile wait for the next round (group commit). A round starts on a
 * microtask, so appends of one turn share it.
 */
class FileWal {
  readonly #file: FileHandle;
  /** Where the next round writes, or undefined to append (O_APPEND). */
  #position: number | undefined;
  #pending: { record: Buffer; resolve: () => void; reject: (error: unknown) => void }[] = [];
  #running = false;
  syncs = 0;

  private constructor(file: FileHandle, position: number | undefined) {
    this.#file = file;
    this.#position = position;
  }

  static async open(path: string, preallocate: number): Promise<FileWal> {
    if (preallocate === 0) return new FileWal(await open(path, 'a'), undefined);
    const file = await open(path, 'w+');
    const chunk = Buffer.alloc(8 * 1024 * 1024);
    for (let at = 0; at < preallocate; at += chunk.length) await file.write(chunk, 0, chunk.length, at);
    await file.sync();
    return new FileWal(file, 0);
  }

  append(record: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const frame = Buffer.allocUnsafe(4);
      frame.writeUInt32BE(record.length);
      this.#pending.push({ record: Buffer.concat([frame, record]), resolve, reject });
      if (!this.#running) {
        this.#running = true;
        queueMicrotask(() => void this.#run());
      }
    });
  }

  async #run(): Promise<void> {
    while (this.#pending.length > 0) {
      const round = this.#pending;
      this.#pending = [];
      try {
        const bytes = Buffer.concat(round.map((p) => p.record));
        await this.#file.write(bytes, 0, bytes.length, this.#position ?? null);
        if (this.#position !== undefined) this.#position += bytes.length;
        await this.#file.datasync();
        this.syncs++;
        for (const p of round) p.resolve();
      } catch (error) {
        for (const p of round) p.reject(error);
      }
      // Let the resolved writers issue their next appends, so they join the next round together.
      await new Promise<void>((resolve) => queueMicrotask(resolve));
    }
    this.#running = false;
  }

  close(): Promise<void> {
    return this.#file.close();
  }
}

async function walTarget(dir: string, preallocated: boolean): Promise<Target> {
  const wal = await FileWal.open(join(dir, 'wal'), preallocated ? PREALLOCATED_BYTES : 0);
  return {
    name: preallocated ? 'wal-prealloc' : 'wal',
    append: (entry) => wal.append(encodeEntryRecord(entry)),
    syncs: () => wal.syncs,
    close: () => wal.close(),
  };
}

interface Cell {
  readonly target: string;
  readonly writers: number;
  readonly appends: number;
  readonly seconds: number;
  readonly syncs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

async function measure(make: () => Promise<Target>, writers: number): Promise<Cell> {
  const target = await make();
  try {
    const data = new Uint8Array(ENTRY_BYTES).fill(0x61);
    let next = 1;
    const run = async (seconds: number, latencies: number[] | undefined): Promise<{ appends: number; seconds: number }> => {
      const start = performance.now();
      const end = start + seconds * 1000;
      let appends = 0;
      const writer = async (): Promise<void> => {
        while (performance.now() < end) {
          const index = next++;
          const t0 = performance.now();
          await target.append({ index, term: 1, kind: 'command', data });
          latencies?.push(performance.now() - t0);
          appends++;
        }
      };
      await Promise.all(Array.from({ length: writers }, writer));
      return { appends, seconds: (performance.now() - start) / 1000 };
    };
    await run(WARMUP_SECONDS, undefined);
    const syncsBefore = target.syncs();
    const latencies: number[] = [];
    const { appends, seconds } = await run(SECONDS, latencies);
    const syncs = target.syncs() - syncsBefore;
    latencies.sort((a, b) => a - b);
    const quantile = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
    return { target: target.name, writers, appends, seconds, syncs, p50Ms: quantile(0.5), p99Ms: quantile(0.99) };
  } finally {
    await target.close();
  }
}

function factory(name: string, dir: () => string): () => Promise<Target> {
  switch (name) {
    case 'lmdb':
      return async () => lmdbTarget(dir());
    case 'wal':
      return () => walTarget(dir(), false);
    case 'wal-prealloc':
      return () => walTarget(dir(), true);
    default:
      throw new Error(`unknown target ${name}`);
  }
}

const scratch = mkdtempSync(join(tmpdir(), 'replikit-log-bench-'));
let cellNumber = 0;
const cellDir = (): string => {
  const dir = join(scratch, `cell-${cellNumber++}`);
  mkdirSync(dir);
  return dir;
};

console.log(`Raft log appends, ${ENTRY_BYTES} B entries, fdatasync before each append resolves; ${SECONDS} s per cell after ${WARMUP_SECONDS} s of warm-up`);
console.log(`${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Linux ${release()}, Node ${process.version}, files under ${tmpdir()}\n`);
console.log('| target | writers | appends/s | p50 ms | p99 ms | syncs/s | appends/sync |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
try {
  for (const writers of WRITERS) {
    for (const name of TARGETS) {
      const cell = await measure(factory(name, cellDir), writers);
      console.log(
        `| ${cell.target} | ${cell.writers} | ${Math.round(cell.appends / cell.seconds).toLocaleString('en')} | ${cell.p50Ms.toFixed(2)} | ${cell.p99Ms.toFixed(2)} | ` +
          `${Math.round(cell.syncs / cell.seconds).toLocaleString('en')} | ${(cell.appends / Math.max(1, cell.syncs)).toFixed(1)} |`,
      );
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
