import { spawnSync } from 'node:child_process';

/**
 * Reading `strace` output, for tests that check what a real `serve` process does at the system-call
 * level: that every write it acknowledges over gRPC was synced to LMDB's data file first.
 *
 * The trace is taken with {@link straceArgs}: `-f` (every thread: lmdb-js commits on worker
 * threads, gRPC answers on the main thread), `-ttt -T` (entry time and duration of every call, in
 * microseconds), `-yy` (each descriptor decorated with its path, or for a TCP socket its two
 * addresses), `-xx` (every buffer in hex, so the bytes read and written can be decoded exactly).
 */

/** The system calls traced: syncs, and the calls that move bytes to and from the client. */
export const TRACED_SYSCALLS = [
  'fdatasync', 'fsync', 'msync', 'sync_file_range',
  'read', 'recvmsg', 'recvfrom', 'write', 'writev', 'sendmsg', 'sendto',
] as const;

/**
 * strace's flags (before the command) for a trace {@link analyzeAckDurability} can read.
 *
 * `syncDelayUs` holds every fdatasync and fsync that long before it starts (strace's
 * `inject=...:delay_enter`). A sync takes well under a millisecond on a fast disk, less than the
 * process takes to answer, so an answer that does not wait for its sync could still come after it
 * by luck; held for longer than an answer takes, a sync that the answer does not wait for ends
 * after the answer is written, and the check fails for every such put instead of for a few.
 */
export function straceArgs(traceFile: string, options: { syncDelayUs?: number } = {}): string[] {
  const delay = options.syncDelayUs ?? 0;
  return [
    '-f', '-ttt', '-T', '-yy', '-xx',
    // 4096 bytes of each buffer: a put's request and response take a few hundred. A longer buffer
    // on the client's connection is cut, and the analysis then throws rather than guess.
    '-s', '4096',
    ...(delay > 0 ? ['-e', `inject=fdatasync,fsync:delay_enter=${delay}`] : []),
    '-e', `trace=${TRACED_SYSCALLS.join(',')}`,
    '-o', traceFile,
  ];
}

/** Why strace cannot trace here (not installed, or ptrace not permitted), or undefined when it can. */
export function straceUnavailable(): string | undefined {
  const probe = spawnSync('strace', ['-f', '-e', 'inject=fdatasync:delay_enter=1', '-o', '/dev/null', 'true'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.error !== undefined) return `strace is not installed (${probe.error.message}); .ci/run installs Debian's strace`;
  if (probe.status !== 0) return `strace cannot trace here: ${probe.stderr.trim()}`;
  return undefined;
}

/** One finished system call; an interrupted one (`<unfinished ...>` then `resumed`) is joined. */
export interface Syscall {
  readonly tid: number;
  readonly name: string;
  /** The argument text, as strace printed it. */
  readonly args: string;
  /** The return value; undefined when strace printed `?` (the thread died in the call). */
  readonly ret: number | undefined;
  /** Wall-clock microseconds at entry. */
  readonly startUs: number;
  /** Wall-clock microseconds at exit: entry plus the `-T` duration. */
  readonly endUs: number;
}

const LINE = /^(\d+)\s+(\d+)\.(\d{6})\s+(.*)$/;
const RESUMED = /^<\.\.\. (\w+) resumed>(.*)$/;
const UNFINISHED = ' <unfinished ...>';
/** `NAME(ARGS) = RET [ERRNO (text)] [<SECONDS>]`; ARGS ends at the last `) = `. */
const FINISHED = /^(\w+)\((.*)\)\s+=\s+(-?\d+|0x[0-9a-f]+|\?)(.*?)(?:\s+<(\d+)\.(\d{6})>)?\s*$/;

/** Parses `strace -f -ttt -T` output into finished calls, in the order they were entered. */
export function parseStrace(text: string): Syscall[] {
  const calls: Syscall[] = [];
  const pending = new Map<number, { name: string; args: string; startUs: number }>();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (m === null) continue;
    const tid = Number(m[1]);
    const atUs = Number(m[2]) * 1_000_000 + Number(m[3]);
    let body = m[4]!;
    let startUs = atUs;
    const resumed = RESUMED.exec(body);
    if (resumed !== null) {
      const half = pending.get(tid);
      pending.delete(tid);
      if (half === undefined || half.name !== resumed[1]) continue;
      body = `${half.name}(${half.args}${resumed[2]}`;
      startUs = half.startUs;
    } else if (body.endsWith(UNFINISHED)) {
      const open = body.indexOf('(');
      if (open > 0) pending.set(tid, { name: body.slice(0, open), args: body.slice(open + 1, -UNFINISHED.length), startUs: atUs });
      continue;
    }
    const f = FINISHED.exec(body);
    if (f === null) continue; // signals, exits, a call cut short by the end of the trace
    const durationUs = f[5] === undefined ? 0 : Number(f[5]) * 1_000_000 + Number(f[6]);
    calls.push({
      tid,
      name: f[1]!,
      args: f[2]!,
      ret: f[3] === '?' ? undefined : Number(f[3]),
      startUs,
      endUs: startUs + durationUs,
    });
  }
  return calls.sort((a, b) => a.startUs - b.startUs);
}

/**
 * The descriptor a call's first argument names, with its `-y`/`-yy` decoration: `fd` is the number,
 * `key` tells one open file or connection from another that later reuses the number, `path` is a
 * file's decoded path.
 */
export function fdOf(call: Syscall): { fd: number; key: string; path: string | undefined } | undefined {
  // The decoration ends at the first `>` that ends the argument: a TCP one holds `->` itself.
  const m = /^(\d+)(?:<(.*?)>(?=,|\)|\s|$))?/.exec(call.args);
  if (m === null) return undefined;
  const decoration = m[2];
  // A file's path starts with `/` (in hex with -xx); sockets, pipes and the like read `TYPE:[...]`.
  const path = decoration !== undefined && /^(\/|\\x2f)/.test(decoration) ? decodeCString(decoration).toString('utf8') : undefined;
  return { fd: Number(m[1]), key: decoration === undefined ? `fd ${m[1]}` : `${m[1]}<${path ?? decoration}>`, path };
}

/**
 * The bytes a read or write call moved: its buffer argument, or its `iov_base` buffers for
 * writev/sendmsg/recvmsg, cut to the return value. `truncated` when strace printed less (`"..."...`).
 */
export function bytesOf(call: Syscall): { bytes: Buffer; truncated: boolean } {
  const strings: { text: string; iov: boolean; cut: boolean }[] = [];
  const args = call.args;
  for (let i = 0; i < args.length; i++) {
    if (args[i] !== '"') continue;
    let j = i + 1;
    while (j < args.length && args[j] !== '"') j += args[j] === '\\' ? 2 : 1;
    strings.push({ text: args.slice(i + 1, j), iov: args.slice(Math.max(0, i - 9), i) === 'iov_base=', cut: args.startsWith('...', j + 1) });
    i = j;
  }
  const chosen = strings.some((s) => s.iov) ? strings.filter((s) => s.iov) : strings;
  const bytes = Buffer.concat(chosen.map((s) => decodeCString(s.text)));
  const moved = call.ret ?? 0;
  return { bytes: bytes.subarray(0, Math.max(0, moved)), truncated: chosen.some((s) => s.cut) || bytes.length < moved };
}

const ESCAPES: Record<string, number> = { n: 10, r: 13, t: 9, v: 11, f: 12, '"': 34, '\\': 92, "'": 39 };

/** Decodes a C string body as strace prints it (`\xNN`, octal, `\n`...; other characters as themselves). */
export function decodeCString(text: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\\') {
      out.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const next = text[i + 1] ?? '';
    if (next === 'x') {
      out.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else if (/[0-7]/.test(next)) {
      const octal = /^[0-7]{1,3}/.exec(text.slice(i + 1))![0];
      out.push(parseInt(octal, 8));
      i += octal.length;
    } else {
      out.push(ESCAPES[next] ?? next.charCodeAt(0));
      i += 1;
    }
  }
  return Buffer.from(out);
}

/** One request a client sent on an HTTP/2 (gRPC) connection the traced process accepted, and its answer. */
export interface Exchange {
  /** The connection, as `-yy` decorated its descriptor. */
  readonly connection: string;
  readonly stream: number;
  /** The request message bytes (its DATA frames' payloads, gRPC length prefix included). */
  readonly requestData: Buffer;
  /** When the read that delivered the request's last byte (END_STREAM) returned. */
  readonly requestUs: number;
  /** When the write that carried the first byte of the response (its first HEADERS or DATA frame) was entered. */
  readonly responseUs: number;
  /** Data-file syncs entered after `requestUs` that returned 0 before `responseUs`. */
  readonly syncs: readonly Syscall[];
}

export interface DurabilityReport {
  /** Successful fdatasync/fsync calls on the data file and msync(MS_SYNC) calls: what makes a commit durable. */
  readonly syncs: readonly Syscall[];
  /** Every other sync-like call (sync_file_range, syncs of other files, failed syncs): traced, never counted. */
  readonly otherSyncs: readonly Syscall[];
  /** Every answered request, in the order the requests arrived. */
  readonly exchanges: readonly Exchange[];
  /** The exchanges answered without a sync in between: acknowledged before they were durable. */
  readonly violations: readonly Exchange[];
  /** Requests that were read in full but never answered (still in flight when the trace ended). */
  readonly unanswered: number;
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER = 9;
const DATA = 0x0;
const HEADERS = 0x1;
const END_STREAM = 0x1;
const PADDED = 0x8;
const READS = new Set(['read', 'recvfrom', 'recvmsg']);
const WRITES = new Set(['write', 'writev', 'sendto', 'sendmsg']);

interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
  /** The calls that moved the frame's first and last bytes. */
  readonly first: Syscall;
  readonly last: Syscall;
}

/** One direction of a connection: bytes in call order, cut into HTTP/2 frames as they complete. */
class FrameStream {
  readonly #segments: { call: Syscall; bytes: Buffer }[] = [];
  #length = 0;

  push(call: Syscall, bytes: Buffer): Frame[] {
    if (bytes.length > 0) {
      this.#segments.push({ call, bytes });
      this.#length += bytes.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.#length < FRAME_HEADER) return frames;
      const header = this.#peek(FRAME_HEADER);
      const size = FRAME_HEADER + header.readUIntBE(0, 3);
      if (this.#length < size) return frames;
      const first = this.#segments[0]!.call;
      const { bytes: whole, last } = this.#take(size);
      frames.push({ type: whole[3]!, flags: whole[4]!, stream: whole.readUInt32BE(5) & 0x7fffffff, payload: whole.subarray(FRAME_HEADER), first, last });
    }
  }

  #peek(n: number): Buffer {
    const parts: Buffer[] = [];
    let have = 0;
    for (const s of this.#segments) {
      if (have >= n) break;
      parts.push(s.bytes);
      have += s.bytes.length;
    }
    return Buffer.concat(parts).subarray(0, n);
  }

  #take(n: number): { bytes: Buffer; last: Syscall } {
    const parts: Buffer[] = [];
    let last = this.#segments[0]!.call;
    while (n > 0) {
      const s = this.#segments[0]!;
      last = s.call;
      if (s.bytes.length <= n) {
        parts.push(s.bytes);
        n -= s.bytes.length;
        this.#length -= s.bytes.length;
        this.#segments.shift();
      } else {
        parts.push(s.bytes.subarray(0, n));
        s.bytes = s.bytes.subarray(n);
        this.#length -= n;
        n = 0;
      }
    }
    return { bytes: Buffer.concat(parts), last };
  }
}

interface StreamState {
  readonly data: Buffer[];
  requestUs?: number;
  responseUs?: number;
}

interface Connection {
  readonly key: string;
  readonly inbound: FrameStream;
  readonly outbound: FrameStream;
  readonly streams: Map<number, StreamState>;
}

/**
 * Checks a trace of a server for acknowledgements that came before durability: for every request
 * a client sent on an HTTP/2 connection the server accepted (one whose first bytes read are the
 * client preface), is there a successful sync of the data file that the server entered after it
 * had read the whole request and that returned before it wrote the first byte of the answer?
 *
 * A sync counts when it is an fdatasync or fsync that returned 0 on a descriptor whose path ends
 * with `dataFile`, or an msync with MS_SYNC that returned 0; sync_file_range does not count (it
 * flushes no metadata and no disk cache). Times come from strace itself, one clock for every
 * thread, and the order is causal: a thread leaves a call only after strace has timestamped its
 * exit, so a sync whose return the answer waited for ends before that answer's write begins.
 * Throws when strace cut a buffer on a client connection (the frames could not be followed).
 */
export function analyzeAckDurability(trace: string, options: { dataFile?: string } = {}): DurabilityReport {
  const dataFile = options.dataFile ?? '/data.mdb';
  const calls = parseStrace(trace);
  const syncs: Syscall[] = [];
  const otherSyncs: Syscall[] = [];
  const connections = new Map<string, Connection>();
  /** Writes on descriptors not yet known to be client connections (a server speaks first). */
  const earlyWrites = new Map<string, { call: Syscall; bytes: Buffer }[]>();
  const order: { connection: Connection; stream: number; state: StreamState }[] = [];
  let unanswered = 0;

  for (const call of calls) {
    if (call.name === 'fdatasync' || call.name === 'fsync' || call.name === 'msync' || call.name === 'sync_file_range') {
      const durable = call.ret === 0 && (call.name === 'msync' ? /\bMS_SYNC\b/.test(call.args) : (call.name !== 'sync_file_range' && fdOf(call)?.path?.endsWith(dataFile) === true));
      (durable ? syncs : otherSyncs).push(call);
      continue;
    }
    const isRead = READS.has(call.name);
    if ((!isRead && !WRITES.has(call.name)) || call.ret === undefined || call.ret <= 0) continue;
    const fd = fdOf(call);
    if (fd === undefined) continue;
    const { bytes, truncated } = bytesOf(call);
    let connection = connections.get(fd.key);
    if (isRead && bytes.subarray(0, PREFACE.length).equals(PREFACE)) {
      if (truncated) throw new Error(`strace cut the bytes read on ${fd.key}; raise its -s`);
      connection = { key: fd.key, inbound: new FrameStream(), outbound: new FrameStream(), streams: new Map() };
      connections.set(fd.key, connection);
      for (const early of earlyWrites.get(fd.key) ?? []) connection.outbound.push(early.call, early.bytes);
      earlyWrites.delete(fd.key);
      onFrames(connection, 'in', connection.inbound.push(call, bytes.subarray(PREFACE.length)));
      continue;
    }
    if (connection === undefined) {
      if (isRead) earlyWrites.delete(fd.key);
      else earlyWrites.set(fd.key, [...(earlyWrites.get(fd.key) ?? []), { call, bytes }]);
      continue;
    }
    if (truncated) throw new Error(`strace cut the bytes ${isRead ? 'read' : 'written'} on ${fd.key}; raise its -s`);
    onFrames(connection, isRead ? 'in' : 'out', (isRead ? connection.inbound : connection.outbound).push(call, bytes));
  }

  function onFrames(connection: Connection, direction: 'in' | 'out', frames: Frame[]): void {
    for (const frame of frames) {
      if (frame.stream === 0 || (frame.type !== DATA && frame.type !== HEADERS)) continue;
      let state = connection.streams.get(frame.stream);
      if (direction === 'in') {
        if (state === undefined) {
          state = { data: [] };
          connection.streams.set(frame.stream, state);
          order.push({ connection, stream: frame.stream, state });
        }
        if (frame.type === DATA) {
          const pad = (frame.flags & PADDED) !== 0 ? frame.payload[0]! : -1;
          state.data.push(pad < 0 ? frame.payload : frame.payload.subarray(1, frame.payload.length - pad));
        }
        if ((frame.flags & END_STREAM) !== 0) state.requestUs ??= frame.last.endUs;
      } else if (state !== undefined && state.requestUs !== undefined) {
        state.responseUs ??= frame.first.startUs;
      }
    }
  }

  const exchanges: Exchange[] = [];
  for (const { connection, stream, state } of order) {
    if (state.requestUs === undefined) continue;
    if (state.responseUs === undefined) {
      unanswered++;
      continue;
    }
    const requestUs = state.requestUs;
    const responseUs = state.responseUs;
    exchanges.push({
      connection: connection.key,
      stream,
      requestData: Buffer.concat(state.data),
      requestUs,
      responseUs,
      syncs: syncs.filter((s) => s.startUs >= requestUs && s.endUs <= responseUs),
    });
  }
  return { syncs, otherSyncs, exchanges, violations: exchanges.filter((e) => e.syncs.length === 0), unanswered };
}
