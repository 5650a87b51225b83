import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LMDB_OPEN_OPTIONS } from '../../src/storage/lmdb-store.js';
import { BIN, BUILT } from '../support/cli.js';
import { freePorts } from '../support/free-ports.js';
import { statusOf, TestKvClient } from '../support/kv-client.js';
import { analyzeAckDurability, straceArgs, straceUnavailable, type DurabilityReport, type Exchange } from '../support/strace.js';

/**
 * The real store's durability: its lmdb options are pinned, and a real `serve` process, traced with
 * strace, syncs LMDB's data file between reading each put and acknowledging it. The same check on
 * a process started with REPLIKIT_UNSAFE_NO_SYNC=1 (lmdb's noSync) must fail, or it proves nothing.
 */

describe('LMDB_OPEN_OPTIONS', () => {
  it('pins the open options', () => {
    // Exactly these: any option added (noSync, noMetaSync, mapAsync, useWritemap, noMemInit,
    // commitDelay, cache...) or changed fails here, and needs its reason in lmdb-store.ts.
    expect(LMDB_OPEN_OPTIONS).toStrictEqual({
      noSubdir: false,
      overlappingSync: false,
      eventTurnBatching: true,
      maxDbs: 8,
    });
    expect(Object.isFrozen(LMDB_OPEN_OPTIONS)).toBe(true);
    const options = LMDB_OPEN_OPTIONS as Record<string, unknown>;
    for (const loosening of ['noSync', 'noMetaSync', 'mapAsync', 'useWritemap', 'noMemInit', 'overlappingSync']) {
      expect(options[loosening] ?? false, `${loosening} trades durability or integrity for speed`).toBe(false);
    }
  });
});

describe('analyzeAckDurability on a hand-made trace', () => {
  const PORTS = 'TCP:[127.0.0.1:7001->127.0.0.1:50000]';
  const SOCK = `22<${PORTS}>`;
  const DATA_FD = `18<${hex(Buffer.from('/tmp/d/data.mdb'))}>`;
  const LOCK_FD = `19<${hex(Buffer.from('/tmp/d/lock.mdb'))}>`;
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const settings = frame(4, 0, 0, Buffer.alloc(0));
  const request = (stream: number, key: string) =>
    Buffer.concat([frame(1, 4, stream, Buffer.from([0x83, 0x86])), frame(0, 1, stream, grpcMessage(key))]);
  const response = (stream: number) =>
    [frame(1, 4, stream, Buffer.from([0x88])), frame(0, 0, stream, grpcMessage('ok')), frame(1, 5, stream, Buffer.from([0xc0]))];
  const at = (ms: number) => `1700000000.${String(ms * 1000).padStart(6, '0')}`;
  const read = (ms: number, bytes: Buffer) => `100  ${at(ms)} read(${SOCK}, "${hex(bytes)}", 65536) = ${bytes.length} <0.000010>`;
  const writev = (ms: number, parts: Buffer[]) =>
    `100  ${at(ms)} writev(${SOCK}, [${parts.map((p) => `{iov_base="${hex(p)}", iov_len=${p.length}}`).join(', ')}], ${parts.length}) = ${Buffer.concat(parts).length} <0.000020>`;
  const fdatasync = (tid: number, ms: number, fd = DATA_FD, ret = 0) => `${tid}  ${at(ms)} fdatasync(${fd}) = ${ret} <0.000500>`;

  it('pairs each request with its answer and counts the data-file syncs in between', () => {
    const trace = [
      // The server speaks first: its SETTINGS goes out before it reads the preface.
      `100  ${at(1)} write(${SOCK}, "${hex(settings)}", 9) = 9 <0.000010>`,
      read(2, Buffer.concat([preface, settings, request(1, 'k-one')])),
      // Put 1: synced on a worker thread, the sync interrupted by the main thread's write of the event fd.
      `201  ${at(3)} fdatasync(${DATA_FD} <unfinished ...>`,
      `100  ${at(3)} write(7<anon_inode:[eventfd]>, "\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00", 8) = 8 <0.000005>`,
      `201  ${at(4)} <... fdatasync resumed>) = 0 <0.001000>`,
      writev(5, response(1)),
      // Put 2: only a sync of another file, a failed sync and sync_file_range: not durable.
      read(10, request(3, 'k-two')),
      fdatasync(202, 11, LOCK_FD),
      fdatasync(202, 12, DATA_FD, -1).replace('= -1 <', '= -1 EIO (Input/output error) <'),
      `202  ${at(12)} sync_file_range(${DATA_FD}, 0, 0, SYNC_FILE_RANGE_WRITE) = 0 <0.000100>`,
      writev(14, response(3)),
      // Put 3: the sync ends after the answer is written (overlapping sync): not durable.
      read(20, request(5, 'k-three')),
      `203  ${at(21)} fdatasync(${DATA_FD} <unfinished ...>`,
      writev(22, response(5)),
      `203  ${at(23)} <... fdatasync resumed>) = 0 <0.002000>`,
      // Put 4: a sync that began before the request was read does not cover it.
      fdatasync(204, 29),
      read(30, request(7, 'k-four')),
      writev(31, response(7)),
      // Put 5: its frames split across two reads and two writes, and msync(MS_SYNC) counts.
      read(40, request(9, 'k-five').subarray(0, 12)),
      read(41, request(9, 'k-five').subarray(12)),
      `205  ${at(42)} msync(0x7f0000000000, 4096, MS_SYNC) = 0 <0.000300>`,
      writev(43, response(9).slice(0, 1)),
      writev(44, response(9).slice(1)),
      // Put 6: read, never answered (the process was stopped).
      read(50, request(11, 'k-six')),
      `100  ${at(51)} +++ killed by SIGKILL +++`,
    ].join('\n');

    const report = analyzeAckDurability(trace);
    expect(report.exchanges.map((e) => [e.stream, e.syncs.length])).toEqual([[1, 1], [3, 0], [5, 0], [7, 0], [9, 1]]);
    expect(report.violations.map((e) => e.stream)).toEqual([3, 5, 7]);
    expect(report.unanswered).toBe(1);
    expect(report.exchanges.map((e) => e.requestData.subarray(5).toString())).toEqual(['k-one', 'k-two', 'k-three', 'k-four', 'k-five']);
    expect(report.exchanges[0]).toMatchObject({ connection: `22<${PORTS}>`, requestUs: 1700000000_002010, responseUs: 1700000000_005000 });
    expect(report.exchanges[4]!.requestUs).toBe(1700000000_041010);
    expect(report.syncs.map((s) => [s.name, s.tid])).toEqual([['fdatasync', 201], ['fdatasync', 203], ['fdatasync', 204], ['msync', 205]]);
    expect(report.otherSyncs.map((s) => s.name)).toEqual(['fdatasync', 'fdatasync', 'sync_file_range']);
  });

  it('refuses a client connection whose bytes strace cut short', () => {
    const cut = `100  ${at(2)} read(${SOCK}, "${hex(Buffer.concat([preface, settings]))}"..., 65536) = 200 <0.000010>`;
    expect(() => analyzeAckDurability(cut)).toThrow(/raise its -s/);
  });
});

/** Acknowledged puts per traced run; sequential, so each has its own commit. */
const PUTS = 30;
/** How long strace holds each sync before it starts: longer than `serve` takes to answer (see straceArgs). */
const SYNC_DELAY_US = 20_000;
const READY_TIMEOUT_MS = 20_000;
/** How long a put may keep being refused with UNAVAILABLE ("nothing was done") while the node starts. */
const RETRY_LIMIT_MS = 10_000;

const straceProblem = straceUnavailable();
if (straceProblem !== undefined) console.warn(`skipping the traced serve tests: ${straceProblem}`);

interface TracedRun {
  /** The value of every acknowledged put: unique per attempt, so it names one request in the trace. */
  readonly acknowledged: readonly string[];
  /** Attempts refused with UNAVAILABLE and retried. */
  readonly refused: number;
  readonly report: DurabilityReport;
  readonly stderr: string;
  readonly putMs: number;
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/**
 * Runs a single-node `serve` (no peers: each acknowledged CP put must be durable on this one
 * node) under strace, makes {@link PUTS} sequential puts, stops it with SIGTERM and analyzes the trace.
 */
async function tracedServe(unsafeNoSync: boolean): Promise<TracedRun> {
  const dir = mkdtempSync(join(tmpdir(), 'replikit-durability-'));
  const [port] = await freePorts(1);
  const address = `127.0.0.1:${port}`;
  const traceFile = join(dir, 'serve.strace');
  const env = { ...process.env };
  delete env.REPLIKIT_UNSAFE_NO_SYNC;
  if (unsafeNoSync) env.REPLIKIT_UNSAFE_NO_SYNC = '1';
  const serveArgs = [BIN, 'serve', '--id', 'n1', '--listen', address, '--data-dir', join(dir, 'n1')];
  const tracer = spawn('strace', [...straceArgs(traceFile, { syncDelayUs: SYNC_DELAY_US }), process.execPath, ...serveArgs], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => tracer.once('exit', () => resolve()));
  // strace passes no signal on to the process it runs: stop `serve` itself, by its own pid.
  const servePid = (): number | undefined => {
    try {
      return Number(readFileSync(`/proc/${tracer.pid}/task/${tracer.pid}/children`, 'utf8').trim().split(/\s+/)[0]) || undefined;
    } catch {
      return undefined;
    }
  };
  const client = new TestKvClient(address);
  cleanups.push(() => {
    client.close();
    if (tracer.exitCode === null && tracer.signalCode === null) {
      const pid = servePid();
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
      tracer.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });

  let stderr = '';
  tracer.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve did not become ready within ${READY_TIMEOUT_MS} ms: ${stderr}`)), READY_TIMEOUT_MS);
    tracer.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (out.includes(' ready on ')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`serve (under strace) exited before it was ready: ${stderr}`));
    });
  });

  const acknowledged: string[] = [];
  let refused = 0;
  const t0 = performance.now();
  for (let i = 0; i < PUTS; i++) {
    // Fixed width and a closing slash, so that no value is a prefix of another in the request bytes.
    const key = `durability-${String(i).padStart(3, '0')}`;
    for (let attempt = 0; ; attempt++) {
      const value = `${key}/attempt-${attempt}/`;
      try {
        await client.put(key, value);
        acknowledged.push(value);
        break;
      } catch (err: unknown) {
        // A node still starting refuses with UNAVAILABLE, "nothing was done": retry.
        if (statusOf(err) !== 'UNAVAILABLE' || performance.now() - t0 > RETRY_LIMIT_MS) throw err;
        refused++;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }
  const putMs = performance.now() - t0;
  client.close();

  const pid = servePid();
  if (pid === undefined) throw new Error('could not find the pid of serve under strace');
  process.kill(pid, 'SIGTERM');
  await exited;
  return { acknowledged, refused, report: analyzeAckDurability(readFileSync(traceFile, 'utf8')), stderr, putMs };
}

/** The one exchange whose request carried `value`. */
function exchangeOf(report: DurabilityReport, value: string): Exchange {
  const found = report.exchanges.filter((e) => e.requestData.includes(Buffer.from(value)));
  expect(found, `one request and answer of the acknowledged put of ${value} in the trace`).toHaveLength(1);
  return found[0]!;
}

function describeExchange(e: Exchange): string {
  return `stream ${e.stream}: request read by ${e.requestUs} µs, answer written at ${e.responseUs} µs (${e.responseUs - e.requestUs} µs later), ${e.syncs.length} syncs in between`;
}

function summary(label: string, run: TracedRun, acked: readonly Exchange[]): string {
  const syncs = acked.reduce((n, e) => n + e.syncs.length, 0);
  const gaps = acked.filter((e) => e.syncs.length > 0).map((e) => e.responseUs - Math.max(...e.syncs.map((s) => s.endUs)));
  const gap = gaps.length === 0 ? '' : `; answers written ${Math.min(...gaps)}-${Math.max(...gaps)} µs after their last sync ended`;
  return `${label}: ${run.acknowledged.length} acknowledged puts in ${run.putMs.toFixed(0)} ms (${run.refused} attempts refused while starting); ` +
    `${syncs} data-file syncs between request and answer (${(syncs / acked.length).toFixed(2)} per put), ` +
    `${run.report.syncs.length} in the whole trace; ${acked.filter((e) => e.syncs.length === 0).length} acknowledgements without a sync before them${gap}`;
}

describe.skipIf(!BUILT || straceProblem !== undefined)('a real serve process under strace', () => {
  it('every acknowledgement follows an fdatasync of the LMDB data file', async () => {
    const run = await tracedServe(false);
    const acked = run.acknowledged.map((value) => exchangeOf(run.report, value));
    console.log(summary('syncing on', run, acked));
    expect(acked).toHaveLength(PUTS);
    for (const [i, exchange] of acked.entries()) {
      expect(exchange.syncs.length, `a sync between reading put ${run.acknowledged[i]} and acknowledging it: ${describeExchange(exchange)}`).toBeGreaterThanOrEqual(1);
    }
  });

  it('catches REPLIKIT_UNSAFE_NO_SYNC=1: every acknowledgement comes without a sync', async () => {
    const run = await tracedServe(true);
    const acked = run.acknowledged.map((value) => exchangeOf(run.report, value));
    console.log(summary('syncing off (REPLIKIT_UNSAFE_NO_SYNC=1)', run, acked));
    expect(run.stderr).toMatch(/syncing is OFF, acknowledged writes can be lost/);
    expect(acked).toHaveLength(PUTS);
    // The analysis reports each of them: the check fails when syncing is off.
    for (const exchange of acked) expect(run.report.violations).toContain(exchange);
    expect(acked.flatMap((e) => e.syncs)).toEqual([]);
  });
});

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** A gRPC length-prefixed message (uncompressed). */
function grpcMessage(body: string): Buffer {
  const bytes = Buffer.from(body);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([prefix, bytes]);
}

/** Bytes as strace -xx prints them. */
function hex(bytes: Buffer): string {
  return [...bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
}
