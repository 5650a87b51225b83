/**
 * LmdbStore write throughput: `apply` awaited one by one, then with 64 and 1000 callers in flight
 * (closed loop: each caller issues its next apply when the last one resolves). Every apply carries
 * one entry with a 100-byte value and is durable (fsynced) when it resolves. Raw lmdb-js puts
 * with the same open options are measured alongside, to show what the store's bookkeeping costs.
 *
 * Run: npx tsx bench/store.ts   (`--quick`: a tenth of the operations, one repetition, for a smoke run)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { LmdbStore } from '../src/storage/index.js';

/** Size of each value, in bytes, as in the design notes' measurements. */
const VALUE_BYTES = 100;
/** Operations per run for each level of concurrency: about a second or two each on 2 cores. */
const QUICK = process.argv.includes('--quick');
const RUNS: readonly { readonly callers: number; readonly operations: number }[] = [
  { callers: 1, operations: 3_000 },
  { callers: 64, operations: 100_000 },
  { callers: 1000, operations: 200_000 },
].map((run) => (QUICK ? { ...run, operations: run.operations / 10 } : run));
/** Operations run (and thrown away) before each measurement, to warm the JIT and the map. */
const WARMUP_OPERATIONS = 500;
/** Measurements per cell; the table shows the best. */
const REPETITIONS = QUICK ? 1 : 3;

interface Row {
  readonly what: string;
  readonly callers: number;
  readonly operations: number;
  readonly opsPerSecond: number;
  readonly commits: number;
  /** CPU of this whole process (main thread, lmdb's write thread, the kernel's share) per commit. */
  readonly cpuUsPerCommit: number;
}

const value = new Uint8Array(VALUE_BYTES).fill(0x61);

/** Runs `operation(0 … count−1)` with `callers` closed-loop callers; returns the seconds taken. */
async function closedLoop(callers: number, count: number, operation: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const caller = async (): Promise<void> => {
    while (next < count) await operation(next++);
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  return (performance.now() - start) / 1000;
}

/** A way to write `i`-th operation of a run at some level of concurrency. */
interface Target {
  readonly what: string;
  /** Sets up a fresh keyspace (or key prefix) for one measurement and returns its operation. */
  operation(run: string): (i: number) => Promise<unknown>;
  lastTransactionId(): number;
  close(): Promise<void>;
}

function storeTarget(dir: string): Target {
  const store = LmdbStore.open(join(dir, 'store'));
  const encoder = new TextEncoder();
  return {
    what: 'LmdbStore.apply',
    operation: (run) => (i) =>
      store.apply(run, [
        {
          key: encoder.encode(`key-${i}`),
          value,
          version: { hlc: { wallMs: 1_732_600_000_000 + i, logical: 0 }, nodeId: 'bench' },
          tombstone: false,
        },
      ]),
    lastTransactionId: () => store.lastTransactionId(),
    close: () => store.close(),
  };
}

function rawLmdbTarget(dir: string): Target {
  // The options LmdbStore uses; see src/storage/lmdb-store.ts.
  const root = open({ path: join(dir, 'raw'), overlappingSync: false, eventTurnBatching: true });
  const db = root.openDB<Buffer, Buffer>({ name: 'raw', keyEncoding: 'binary', encoding: 'binary' });
  const bytes = Buffer.from(value);
  return {
    what: 'raw lmdb put',
    operation: (run) => (i) => db.put(Buffer.from(`${run}-key-${i}`), bytes),
    lastTransactionId: () => (root.getStats() as { lastTxnId: number }).lastTxnId,
    close: () => root.close(),
  };
}

async function measure(target: Target, run: string, callers: number, operations: number): Promise<Row> {
  const operation = target.operation(run);
  await closedLoop(callers, WARMUP_OPERATIONS, (i) => operation(operations + i));
  const firstTxn = target.lastTransactionId();
  const cpuBefore = process.cpuUsage();
  const seconds = await closedLoop(callers, operations, operation);
  const cpu = process.cpuUsage(cpuBefore);
  const commits = target.lastTransactionId() - firstTxn;
  const cpuUsPerCommit = (cpu.user + cpu.system) / Math.max(1, commits);
  return { what: target.what, callers, operations, opsPerSecond: operations / seconds, commits, cpuUsPerCommit };
}

function printTable(rows: readonly Row[]): void {
  const header = ['what', 'callers', 'operations', 'ops/s', 'commits', 'ops/commit', 'CPU µs/commit'];
  const lines = rows.map((row) => [
    row.what,
    String(row.callers),
    String(row.operations),
    Math.round(row.opsPerSecond).toLocaleString('en-US'),
    String(row.commits),
    (row.operations / row.commits).toFixed(1),
    Math.round(row.cpuUsPerCommit).toLocaleString('en-US'),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => line[i]!.length)));
  const format = (cells: readonly string[]): string =>
    `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' | ')} |`;
  console.log(format(header));
  console.log(`|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const line of lines) console.log(format(line));
}

const dir = mkdtempSync(join(tmpdir(), 'replikit-bench-store-'));
const targets = [storeTarget(dir), rawLmdbTarget(dir)];
try {
  // Other work on the machine skews single runs, so each cell is the best of several, and the two
  // targets take turns so that a busy stretch hurts both alike.
  const best = new Map<string, Row>();
  for (let repetition = 0; repetition < REPETITIONS; repetition++) {
    for (const { callers, operations } of RUNS) {
      for (const target of targets) {
        const row = await measure(target, `r${repetition}-c${callers}`, callers, operations);
        const cell = `${target.what}/${callers}`;
        if ((best.get(cell)?.opsPerSecond ?? 0) < row.opsPerSecond) best.set(cell, row);
      }
    }
  }
  console.log(`durable writes, one ${VALUE_BYTES}-byte entry each, fsync on every commit; best of ${REPETITIONS}\n`);
  printTable(targets.flatMap((target) => RUNS.map(({ callers }) => best.get(`${target.what}/${callers}`)!)));
} finally {
  await Promise.all(targets.map((target) => target.close()));
  rmSync(dir, { recursive: true, force: true });
}
