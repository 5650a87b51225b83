/**
 * The benchmark report as pure functions: per-round samples → median rows with ratios against
 * etcd and against bare echo → targets met or missed (and by how much) → Markdown, terminal text
 * and JSON. No I/O here, so test/bench/load.test.ts checks every number.
 */
import { renderCatchUp, type CatchUpReport } from './catch-up.js';
import type { LoadResult } from './load.js';
import { rangeWatchJson, renderRangeWatch, type RangeWatchReport } from './watch-report.js';
import { renderSecurity, securityJson, type SecurityReport } from './security-report.js';
import { CAS_KEYS_PER_CALLER } from './workload.js';

export type SystemName = 'echo' | 'echo-interceptors' | 'etcd' | 'replikit-cp' | 'replikit-cp-embedded' | 'replikit-ap' | 'replikit-causal';
/** `cas` is compare-and-set: replikit's KvService.Txn (or `keyspace.txn`), etcd's KV/Txn. */
export type OpName = 'echo' | 'put' | 'get' | 'cas';

/**
 * Order of systems in tables: the ceiling, then the comparison peer, then replikit's policies (CP
 * over gRPC, then CP through the embedding API inside a node's process).
 */
export const SYSTEM_ORDER: readonly SystemName[] = ['echo', 'echo-interceptors', 'etcd', 'replikit-cp', 'replikit-cp-embedded', 'replikit-ap', 'replikit-causal'];
export const OP_ORDER: readonly OpName[] = ['echo', 'put', 'get', 'cas'];
/** What each op is on etcd's side, for the side-by-side table. */
const ETCD_COUNTERPART: Readonly<Record<OpName, string>> = { echo: '—', put: 'Put', get: 'Range (linearizable)', cas: 'Txn' };

/** One measured phase: one system, one op, one concurrency, one round. */
export interface Sample {
  readonly system: SystemName;
  readonly op: OpName;
  readonly concurrency: number;
  readonly round: number;
  readonly result: LoadResult;
  /** CPU the system's server processes used during the measured window, all of them together. */
  readonly serverCpuMs?: number;
  /** CPU the load generator's process used during the measured window. */
  readonly clientCpuMs?: number;
}

/** One cell of the report: medians over the rounds of one (system, op, concurrency). */
export interface Row {
  readonly system: SystemName;
  readonly op: OpName;
  readonly concurrency: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Failed calls, summed over the rounds. */
  readonly errors: number;
  /** Compare-and-set calls whose compare did not hold (not in `ops`, not errors), summed over the rounds. */
  readonly failedCompares: number;
  /** Successful calls (compare-and-set: swaps) measured, summed over the rounds. */
  readonly ops: number;
  readonly rounds: number;
  /** Throughput of each round, in round order: the spread behind the median. */
  readonly opsPerSecByRound: readonly number[];
  /** Throughput over etcd's counterpart (Put for put, linearizable Range for get, Txn for cas) at the same concurrency. */
  readonly vsEtcd: number | null;
  /** Throughput over bare grpc-js echo at the same concurrency. */
  readonly vsEcho: number | null;
  /** Server CPU (all the system's processes) per successful call, in µs: median over rounds. */
  readonly serverCpuUsPerOp: number | null;
  /** The load generator's CPU per successful call, in µs: median over rounds. */
  readonly clientCpuUsPerOp: number | null;
  readonly firstError?: string;
}

/** A system the run could not measure, and why (e.g. "not available in this build"). */
export interface Unavailable {
  readonly system: SystemName;
  readonly reason: string;
}

export type TargetStatus = 'met' | 'missed' | 'not measured';

export interface TargetResult {
  readonly id: string;
  readonly description: string;
  readonly status: TargetStatus;
  /** The measured ratio (throughput: ours / theirs; latency: ours / theirs), when measured. */
  readonly ratio: number | null;
  /** The ratio the target asks for: at least this for throughput, at most this for latency. */
  readonly required: number;
  /** One sentence: the numbers, and by how much the target is met or missed. */
  readonly detail: string;
}

export interface BenchMeta {
  readonly mode: 'quick' | 'full';
  readonly startedAt: string;
  readonly wallSeconds: number;
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly valueBytes: number;
  readonly keys: number;
  readonly machine: string;
  /** What "durable" means on each side, stated in the report. */
  readonly durability: string;
  /** Anything a reader must know to trust the numbers (stale build, noisy machine, etcd missing). */
  readonly notes: readonly string[];
  /** The command line that ran this report, to run it again. */
  readonly command?: string;
}

export interface BenchReport {
  readonly meta: BenchMeta;
  readonly rows: readonly Row[];
  readonly unavailable: readonly Unavailable[];
  readonly targets: readonly TargetResult[];
  /** The Range and Watch rows (bench/watch-range.ts), when they ran. */
  readonly rangeWatch?: RangeWatchReport;
  /** The lock and lease rows (bench/coordination.ts), when they ran. */
  readonly coordination?: CoordinationReport;
  /** A new node catching up (bench/catch-up.ts), when it ran. */
  readonly catchUp?: CatchUpReport;
  /** Mutual TLS with authorization against plaintext (bench/security.ts), when it ran. */
  readonly security?: SecurityReport;
}

/** The median of a non-empty list (mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const xs = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
}

/** Groups samples by (system, op, concurrency), takes medians over rounds, adds ratios, sorts. */
export function aggregate(samples: readonly Sample[]): Row[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const key = `${s.system}\u0000${s.op}\u0000${s.concurrency}`;
    const group = groups.get(key) ?? [];
    group.push(s);
    groups.set(key, group);
  }
  const bare = [...groups.values()].map((group) => {
    const ordered = [...group].sort((a, b) => a.round - b.round);
    const first = ordered[0]!;
    const firstError = ordered.find((s) => s.result.firstError !== undefined)?.result.firstError;
    const perOp = (pick: (s: Sample) => number | undefined) => {
      const values = ordered.flatMap((s) => {
        const ms = pick(s);
        return ms === undefined || s.result.ops === 0 ? [] : [(ms * 1000) / s.result.ops];
      });
      return values.length === 0 ? null : median(values);
    };
    return {
      system: first.system,
      op: first.op,
      concurrency: first.concurrency,
      opsPerSec: median(ordered.map((s) => s.result.opsPerSec)),
      p50Ms: median(ordered.map((s) => s.result.p50Ms)),
      p99Ms: median(ordered.map((s) => s.result.p99Ms)),
      errors: ordered.reduce((sum, s) => sum + s.result.errors, 0),
      failedCompares: ordered.reduce((sum, s) => sum + (s.result.failedCompares ?? 0), 0),
      ops: ordered.reduce((sum, s) => sum + s.result.ops, 0),
      rounds: ordered.length,
      opsPerSecByRound: ordered.map((s) => s.result.opsPerSec),
      vsEtcd: null,
      vsEcho: null,
      serverCpuUsPerOp: perOp((s) => s.serverCpuMs),
      clientCpuUsPerOp: perOp((s) => s.clientCpuMs),
      ...(firstError === undefined ? {} : { firstError }),
    } satisfies Row;
  });
  return sortRows(withRatios(bare));
}

/** Fills `vsEtcd` and `vsEcho` from the other rows at the same concurrency. */
export function withRatios(rows: readonly Row[]): Row[] {
  const find = (system: SystemName, op: OpName, concurrency: number) =>
    rows.find((r) => r.system === system && r.op === op && r.concurrency === concurrency);
  const ratio = (ours: number, theirs: number | undefined) =>
    theirs === undefined || !(theirs > 0) || Number.isNaN(ours) ? null : ours / theirs;
  return rows.map((r) => ({
    ...r,
    vsEtcd: r.op === 'echo' ? null : ratio(r.opsPerSec, find('etcd', r.op, r.concurrency)?.opsPerSec),
    vsEcho: ratio(r.opsPerSec, find('echo', 'echo', r.concurrency)?.opsPerSec),
  }));
}

/** Sorts rows so that the systems compared sit together: by op, then concurrency, then system. */
export function sortRows(rows: readonly Row[]): Row[] {
  return [...rows].sort(
    (a, b) =>
      OP_ORDER.indexOf(a.op) - OP_ORDER.indexOf(b.op) ||
      a.concurrency - b.concurrency ||
      SYSTEM_ORDER.indexOf(a.system) - SYSTEM_ORDER.indexOf(b.system),
  );
}

function findRow(rows: readonly Row[], system: SystemName, op: OpName, concurrency: number): Row | undefined {
  return rows.find((r) => r.system === system && r.op === op && r.concurrency === concurrency);
}

/** Formats a ratio as `0.38×`. */
export function formatRatio(ratio: number | null): string {
  return ratio === null ? '—' : `${ratio.toFixed(2)}×`;
}

/** Formats milliseconds with three significant digits (0.172, 4.41, 22.0, 135). */
export function formatMs(ms: number): string {
  if (Number.isNaN(ms)) return '—';
  if (ms >= 100) return ms.toFixed(0);
  return ms.toPrecision(3);
}

function formatOps(opsPerSec: number): string {
  return Number.isNaN(opsPerSec) ? '—' : Math.round(opsPerSec).toString();
}

/**
 * A throughput target: `row.opsPerSec / base.opsPerSec >= required`. A miss says how far short
 * the ratio falls, as a share of the target, and how many times faster the row must get.
 */
export function throughputTarget(
  id: string,
  description: string,
  row: Row | undefined,
  base: Row | undefined,
  required: number,
  baseName: string,
  missingReason: string,
): TargetResult {
  if (row === undefined || base === undefined || !(base.opsPerSec > 0)) {
    return { id, description, status: 'not measured', ratio: null, required, detail: missingReason };
  }
  const ratio = row.opsPerSec / base.opsPerSec;
  const numbers = `${formatOps(row.opsPerSec)}/s vs ${baseName} ${formatOps(base.opsPerSec)}/s = ${formatRatio(ratio)} (target ≥ ${required.toFixed(2)}×)`;
  if (ratio >= required) {
    return { id, description, status: 'met', ratio, required, detail: `met by a margin of ${percent(ratio / required - 1)}: ${numbers}` };
  }
  const shortfall = 1 - ratio / required;
  return {
    id,
    description,
    status: 'missed',
    ratio,
    required,
    detail: `missed by ${percent(shortfall)}: ${numbers}; needs ${(required / ratio).toFixed(1)}× its throughput`,
  };
}

/** A latency target: `pick(row) / pick(base) <= 1` (no worse than the base). */
export function latencyTarget(
  id: string,
  description: string,
  row: Row | undefined,
  base: Row | undefined,
  which: 'p50Ms' | 'p99Ms',
  baseName: string,
  missingReason: string,
): TargetResult {
  const required = 1;
  if (row === undefined || base === undefined || !(base[which] > 0) || Number.isNaN(row[which])) {
    return { id, description, status: 'not measured', ratio: null, required, detail: missingReason };
  }
  const ratio = row[which] / base[which];
  const label = which === 'p50Ms' ? 'p50' : 'p99';
  const numbers = `${label} ${formatMs(row[which])} ms vs ${baseName} ${formatMs(base[which])} ms = ${formatRatio(ratio)} (target ≤ 1.00×)`;
  if (ratio <= required) {
    return { id, description, status: 'met', ratio, required, detail: `met, ${percent(1 - ratio)} lower: ${numbers}` };
  }
  return { id, description, status: 'missed', ratio, required, detail: `missed, ${percent(ratio - 1)} higher: ${numbers}` };
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(0)} %`;
}

/** The issue's targets, evaluated on the (median) rows. */
export function evaluateTargets(rows: readonly Row[], unavailable: readonly Unavailable[]): TargetResult[] {
  const why = (system: SystemName, fallback: string) => unavailable.find((u) => u.system === system)?.reason ?? fallback;
  const etcdMissing = `etcd not measured: ${why('etcd', 'no etcd rows in this run')}`;
  const cpMissing = `replikit CP not measured: ${why('replikit-cp', 'no replikit-cp rows in this run')}`;
  const cpOrEtcd = (system: SystemName) => (system === 'etcd' ? etcdMissing : cpMissing);
  const missing = (a: Row | undefined, aSystem: SystemName, b: Row | undefined, bSystem: SystemName) =>
    a === undefined ? cpOrEtcd(aSystem) : b === undefined ? cpOrEtcd(bSystem) : '';
  const cpPut64 = findRow(rows, 'replikit-cp', 'put', 64);
  const etcdPut64 = findRow(rows, 'etcd', 'put', 64);
  const cpPut1 = findRow(rows, 'replikit-cp', 'put', 1);
  const etcdPut1 = findRow(rows, 'etcd', 'put', 1);
  const cpGet64 = findRow(rows, 'replikit-cp', 'get', 64);
  const etcdGet64 = findRow(rows, 'etcd', 'get', 64);
  const cpCas64 = findRow(rows, 'replikit-cp', 'cas', 64);
  const etcdCas64 = findRow(rows, 'etcd', 'cas', 64);
  const apPut64 = findRow(rows, 'replikit-ap', 'put', 64);
  const echo64 = findRow(rows, 'echo', 'echo', 64);
  const echoI64 = findRow(rows, 'echo-interceptors', 'echo', 64);
  return [
    throughputTarget(
      'cp-put-64-throughput', 'CP put at 64 callers ≥ 1.0× etcd Put throughput', cpPut64, etcdPut64, 1.0, 'etcd',
      missing(cpPut64, 'replikit-cp', etcdPut64, 'etcd'),
    ),
    latencyTarget(
      'cp-put-64-p99', 'CP put at 64 callers: p99 no worse than etcd Put', cpPut64, etcdPut64, 'p99Ms', 'etcd',
      missing(cpPut64, 'replikit-cp', etcdPut64, 'etcd'),
    ),
    latencyTarget(
      'cp-put-1-p50', 'CP put at 1 caller: p50 no worse than etcd Put', cpPut1, etcdPut1, 'p50Ms', 'etcd',
      missing(cpPut1, 'replikit-cp', etcdPut1, 'etcd'),
    ),
    throughputTarget(
      'cp-get-64-throughput', 'CP get at 64 callers ≥ 1.0× etcd linearizable Range', cpGet64, etcdGet64, 1.0, 'etcd',
      missing(cpGet64, 'replikit-cp', etcdGet64, 'etcd'),
    ),
    throughputTarget(
      'cp-cas-64-throughput', 'CP compare-and-set at 64 callers ≥ 1.0× etcd Txn (successful swaps per second)', cpCas64, etcdCas64, 1.0, 'etcd',
      missing(cpCas64, 'replikit-cp', etcdCas64, 'etcd'),
    ),
    throughputTarget(
      'ap-put-64-vs-echo', 'AP put at 64 callers ≥ 0.8× raw echo', apPut64, echo64, 0.8, 'echo',
      apPut64 === undefined ? `replikit AP not measured: ${why('replikit-ap', 'no replikit-ap rows in this run')}` : 'echo not measured',
    ),
    throughputTarget(
      'interceptors-vs-echo', 'Echo with replikit interceptors at 64 callers ≥ 0.95× bare echo', echoI64, echo64, 0.95, 'echo',
      'echo with interceptors not measured',
    ),
  ];
}

/** Pads columns so the Markdown table also reads as a plain table on a terminal. */
export function formatTable(headers: readonly string[], body: readonly (readonly string[])[], align: readonly ('l' | 'r')[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const cell = (text: string, i: number) => (align[i] === 'r' ? text.padStart(widths[i]!) : text.padEnd(widths[i]!));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => cell(c, i)).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (align[i] === 'r' ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(headers), rule, ...body.map(line)].join('\n');
}

/**
 * The results table: one line per row, then one per system that could not be measured, with the
 * reason in the last column (e.g. "not available in this build").
 */
export function renderTable(rows: readonly Row[], unavailable: readonly Unavailable[]): string {
  const headers = ['system', 'op', 'callers', 'ops/s', 'p50 ms', 'p99 ms', '× etcd', '× echo', 'server CPU µs/op', 'errors', 'rounds', 'note'];
  const body = rows.map((r) => [
    r.system,
    r.op,
    String(r.concurrency),
    formatOps(r.opsPerSec),
    formatMs(r.p50Ms),
    formatMs(r.p99Ms),
    formatRatio(r.vsEtcd),
    formatRatio(r.vsEcho),
    r.serverCpuUsPerOp === null ? '—' : Math.round(r.serverCpuUsPerOp).toString(),
    String(r.errors),
    String(r.rounds),
    r.op === 'cas' ? `${r.failedCompares} failed compares` : '',
  ]);
  for (const u of unavailable) body.push([u.system, '—', '—', '—', '—', '—', '—', '—', '—', '—', '—', oneLine(u.reason, MAX_NOTE_CHARS)]);
  return formatTable(headers, body, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l']);
}

/**
 * replikit CP (over gRPC and embedded) next to etcd, one line per op and callers that both ran:
 * throughput and its ratio, p50 and p99, and server CPU per call, each with etcd's beside it.
 * Nothing (no heading either) when etcd or replikit CP was not measured.
 */
export function renderVsEtcd(rows: readonly Row[]): string[] {
  const body: string[][] = [];
  for (const r of rows) {
    if ((r.system !== 'replikit-cp' && r.system !== 'replikit-cp-embedded') || r.op === 'echo') continue;
    const etcd = findRow(rows, 'etcd', r.op, r.concurrency);
    if (etcd === undefined) continue;
    const cpu = (x: Row) => (x.serverCpuUsPerOp === null ? '—' : Math.round(x.serverCpuUsPerOp).toString());
    body.push([
      `${r.op} / ${ETCD_COUNTERPART[r.op]}`,
      String(r.concurrency),
      r.system === 'replikit-cp' ? 'gRPC' : 'embedded',
      formatOps(r.opsPerSec),
      formatOps(etcd.opsPerSec),
      formatRatio(r.vsEtcd),
      `${formatMs(r.p50Ms)} / ${formatMs(etcd.p50Ms)}`,
      `${formatMs(r.p99Ms)} / ${formatMs(etcd.p99Ms)}`,
      `${cpu(r)} / ${cpu(etcd)}`,
      r.op === 'cas' ? `${r.failedCompares} / ${etcd.failedCompares}` : '',
    ]);
  }
  if (body.length === 0) return [];
  const headers = ['op / etcd', 'callers', 'replikit', 'ops/s', 'etcd ops/s', '× etcd', 'p50 ms (vs etcd)', 'p99 ms (vs etcd)', 'server CPU µs/op (vs etcd)', 'failed compares (vs etcd)'];
  return [
    '## replikit CP next to etcd',
    '',
    'Medians over rounds. `embedded`: the same calls through `node.keyspace(\'default\')` inside one node\'s own process ' +
      '(one of three, the other two `replikit serve`); its server CPU includes its callers\' loop, which runs in that process. ' +
      'Compare-and-set ops/s count successful swaps only.',
    '',
    formatTable(headers, body, ['l', 'r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
    '',
  ];
}

/** How much of a reason fits in the table's note column; the JSON keeps all of it. */
const MAX_NOTE_CHARS = 160;

/** Folds whitespace (a child's stderr has newlines, which would break a table row) and shortens. */
export function oneLine(text: string, maxChars: number): string {
  const flat = text.replace(/\s+/g, ' ').replace(/\|/g, '\\|').trim();
  return flat.length <= maxChars ? flat : `${flat.slice(0, maxChars - 1)}…`;
}

/** The whole report as Markdown (also what the terminal shows). */
export function renderMarkdown(report: BenchReport): string {
  const { meta } = report;
  const lines = [
    `# replikit benchmark (${meta.mode})`,
    '',
    `${meta.startedAt}, ${meta.wallSeconds.toFixed(0)} s wall clock. ${meta.machine}.${meta.command === undefined ? '' : ` Command: \`${meta.command}\`.`}`,
    `Each cell: ${meta.rounds} round${meta.rounds === 1 ? '' : 's'} of ${meta.durationMs / 1000} s measured after ${meta.warmupMs / 1000} s warm-up` +
      `${meta.rounds > 1 ? ', systems alternating within each round; medians over rounds' : ''}. ` +
      `${meta.valueBytes}-byte values over ${meta.keys} keys (compare-and-set: ${CAS_KEYS_PER_CALLER} keys owned by each caller); the same closed-loop ` +
      'load (bench/load.ts) for every system, over grpc-js from the bench process, or for replikit-cp-embedded inside its node\'s process.',
    '',
    `**Durability:** ${meta.durability}`,
    '',
    'Server CPU µs/op: CPU time (user + system) of all the system\'s server processes during the measured window, per ' +
      'successful call; unlike throughput it hardly depends on what else the shared machine runs.',
    '',
    renderTable(report.rows, report.unavailable),
    '',
    ...renderVsEtcd(report.rows),
    ...(report.rangeWatch === undefined ? [] : renderRangeWatch(report.rangeWatch)),
    ...(report.coordination === undefined ? [] : renderCoordination(report.coordination)),
    ...(report.catchUp === undefined ? [] : renderCatchUp(report.catchUp)),
    ...(report.security === undefined ? [] : renderSecurity(report.security)),
    '## Targets',
    '',
    ...report.targets.map((t) => `- **${t.status}** — ${t.description}: ${t.detail}`),
  ];
  const errorRows = report.rows.filter((r) => r.errors > 0);
  if (errorRows.length > 0) {
    lines.push('', '## Errors', '');
    for (const r of errorRows) lines.push(`- ${r.system} ${r.op} ×${r.concurrency}: ${r.errors} failed calls, first: ${r.firstError ?? 'unknown'}`);
  }
  if (meta.notes.length > 0) lines.push('', '## Notes', '', ...meta.notes.map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}

/**
 * The JSON other tools read: `rows` with the fixed names (system, op, concurrency, opsPerSec,
 * p50Ms, p99Ms) plus extra fields, the systems not measured, the targets and the run's metadata.
 */
export function toJson(report: BenchReport): string {
  const rows = report.rows.map((r) => ({
    system: r.system,
    op: r.op,
    concurrency: r.concurrency,
    opsPerSec: round(r.opsPerSec, 1),
    p50Ms: round(r.p50Ms, 3),
    p99Ms: round(r.p99Ms, 3),
    vsEtcd: r.vsEtcd === null ? null : round(r.vsEtcd, 3),
    vsEcho: r.vsEcho === null ? null : round(r.vsEcho, 3),
    serverCpuUsPerOp: r.serverCpuUsPerOp === null ? null : round(r.serverCpuUsPerOp, 1),
    clientCpuUsPerOp: r.clientCpuUsPerOp === null ? null : round(r.clientCpuUsPerOp, 1),
    errors: r.errors,
    failedCompares: r.failedCompares,
    ops: r.ops,
    rounds: r.rounds,
    opsPerSecByRound: r.opsPerSecByRound.map((v) => round(v, 1)),
    ...(r.firstError === undefined ? {} : { firstError: r.firstError }),
  }));
  const rangeWatch = report.rangeWatch === undefined ? {} : { rangeWatch: rangeWatchJson(report.rangeWatch) };
  const coordination = report.coordination === undefined ? {} : { coordination: coordinationJson(report.coordination) };
  const catchUp = report.catchUp === undefined ? {} : { catchUp: report.catchUp };
  const security = report.security === undefined ? {} : { security: securityJson(report.security) };
  return `${JSON.stringify({ rows, unavailable: report.unavailable, targets: report.targets, meta: report.meta, ...rangeWatch, ...coordination, ...catchUp, ...security }, null, 2)}\n`;
}

/** Rounds for JSON; NaN (nothing measured) becomes null, which JSON can carry. */
function round(value: number, digits: number): number | null {
  if (!Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

// ---------------------------------------------------------------------------------------------
// The lock and lease rows (bench/coordination.ts measures them): per-round samples → median rows
// with ratios against etcd → Markdown lines and JSON.
// ---------------------------------------------------------------------------------------------

export type CoordinationSystem = 'replikit-cp' | 'etcd';
const COORDINATION_SYSTEMS: readonly CoordinationSystem[] = ['etcd', 'replikit-cp'];

/** How the lock and lease rows were run: the same for both systems. */
export interface CoordinationConfig {
  readonly rounds: number;
  readonly lockDurationMs: number;
  readonly keepAliveDurationMs: number;
  readonly warmupMs: number;
  /** The keep-alive phase's warm-up: one renewal period, so every lease is on its spread slot. */
  readonly keepAliveWarmupMs: number;
  /** How long the idle cluster's CPU was read before each round's phases. */
  readonly idleMs: number;
  readonly leaseTtlMs: number;
  readonly renewEveryMs: number;
  readonly contenders: readonly number[];
  readonly keepAliveLeases: number;
  readonly keepAliveStreams: number;
  /** How to run these rows again. */
  readonly command: string;
}

/** One lock phase: N contenders looping Lock → Unlock on one name. */
export interface LockSample {
  readonly system: CoordinationSystem;
  readonly round: number;
  readonly contenders: number;
  /** Acquire + release pairs whose Unlock returned inside the window. */
  readonly pairs: number;
  readonly pairsPerSec: number;
  /** The Lock call, from asking to holding (queueing included), of locks acquired in the window. */
  readonly acquireP50Ms: number;
  readonly acquireP99Ms: number;
  readonly acquireMaxMs: number;
  /** One whole pair, Lock and Unlock. */
  readonly pairP50Ms: number;
  readonly errors: number;
  /** Keep-alive answers of the contenders' leases that did not renew them. */
  readonly leasesNotRenewed: number;
  /** Server CPU (the three processes) per pair, ms. */
  readonly serverCpuMsPerPair: number | null;
  /** The same less what the idle cluster spends in as long (read before the round's phases). */
  readonly serverCpuMsPerPairAboveIdle: number | null;
  /** The bench process's CPU per pair, ms. */
  readonly clientCpuMsPerPair: number | null;
  /** 1-minute load average when the phase started. */
  readonly loadAverage: number;
  readonly firstError?: string;
}

/** One keep-alive phase: many leases renewed every TTL/3 over a few streams. */
export interface KeepAliveSample {
  readonly system: CoordinationSystem;
  readonly round: number;
  /** Leases granted and kept alive. */
  readonly leases: number;
  readonly streams: number;
  readonly windowMs: number;
  readonly grantsPerSec: number;
  readonly grantErrors: number;
  /** Renewals per second the schedule sends (leases / period). */
  readonly askedPerSec: number;
  /** Renewals answered "renewed" per second in the window. */
  readonly renewalsPerSec: number;
  /** A renewal's round trip, send to answer, on its stream. */
  readonly renewalP50Ms: number;
  readonly renewalP99Ms: number;
  /** Server CPU (the three processes), ms per second of the window. */
  readonly serverCpuMsPerSec: number;
  /** The same cluster idle, before the round's phases (null when it could not be read). */
  readonly idleCpuMsPerSec: number | null;
  readonly serverCpuUsPerRenewal: number | null;
  /** The same less what the idle cluster spends in as long. */
  readonly serverCpuUsPerRenewalAboveIdle: number | null;
  readonly clientCpuMsPerSec: number;
  /** Counted client-side: message bytes plus gRPC's 5-byte prefix, requests and answers. */
  readonly bytesPerSec: number;
  readonly bytesPerRenewal: number | null;
  /** Answers that did not renew (replikit: code ≠ 0; etcd: TTL ≤ 0), over the whole phase. */
  readonly notRenewed: number;
  /** Most renewals sent and not yet answered at once. */
  readonly maxBacklog: number;
  /** Renewals still unanswered when the drain gave up. */
  readonly backlogLeft: number;
  /** Leases of the phase missing from the cluster's list after it (NaN: not checked). */
  readonly missingAfter: number;
  readonly sampleChecked: number;
  /** Leases of the TimeToLive sample with no time left (NaN: not checked). */
  readonly sampleExpired: number;
  /** Keep-alive streams that failed, and a failed check. */
  readonly errors: number;
  readonly loadAverage: number;
  readonly firstError?: string;
}

export interface LockRow {
  readonly system: CoordinationSystem;
  readonly contenders: number;
  readonly pairsPerSec: number;
  readonly pairsPerSecByRound: readonly number[];
  readonly pairs: number;
  readonly acquireP50Ms: number;
  readonly acquireP99Ms: number;
  readonly serverCpuMsPerPair: number | null;
  readonly serverCpuMsPerPairAboveIdle: number | null;
  readonly errors: number;
  readonly leasesNotRenewed: number;
  readonly rounds: number;
  /** replikit's pairs/s over etcd's (higher is better); null on etcd's row. */
  readonly pairsVsEtcd: number | null;
  /** replikit's acquire p99 over etcd's (lower is better). */
  readonly p99VsEtcd: number | null;
  /** replikit's server CPU per pair over etcd's (lower is better). */
  readonly cpuVsEtcd: number | null;
  readonly firstError?: string;
}

export interface KeepAliveRow {
  readonly system: CoordinationSystem;
  readonly leases: number;
  readonly streams: number;
  readonly grantsPerSec: number;
  readonly askedPerSec: number;
  readonly renewalsPerSec: number;
  readonly renewalP50Ms: number;
  readonly renewalP99Ms: number;
  readonly serverCpuMsPerSec: number;
  readonly idleCpuMsPerSec: number | null;
  readonly serverCpuUsPerRenewal: number | null;
  readonly serverCpuUsPerRenewalAboveIdle: number | null;
  readonly bytesPerSec: number;
  readonly bytesPerRenewal: number | null;
  readonly notRenewed: number;
  readonly missingAfter: number;
  readonly sampleChecked: number;
  readonly sampleExpired: number;
  readonly maxBacklog: number;
  readonly errors: number;
  readonly rounds: number;
  /** replikit over etcd (lower is better for both). */
  readonly cpuPerRenewalVsEtcd: number | null;
  readonly bytesVsEtcd: number | null;
  readonly firstError?: string;
}

export interface CoordinationReport {
  readonly config: CoordinationConfig;
  readonly lock: readonly LockRow[];
  readonly keepAlive: readonly KeepAliveRow[];
  readonly samples: { readonly lock: readonly LockSample[]; readonly keepAlive: readonly KeepAliveSample[] };
  readonly unavailable: readonly { readonly system: CoordinationSystem; readonly reason: string }[];
  readonly notes: readonly string[];
}

function medianOrNull(values: readonly (number | null)[]): number | null {
  const xs = values.filter((v): v is number => v !== null && !Number.isNaN(v));
  return xs.length === 0 ? null : median(xs);
}

function ratioOf(ours: number | null, theirs: number | null | undefined): number | null {
  return ours === null || theirs === null || theirs === undefined || !(theirs > 0) || Number.isNaN(ours) ? null : ours / theirs;
}

/** A sum that stays NaN when any part is (not checked). */
function sumOf(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** Medians over rounds (counts summed), ratios of replikit to etcd, etcd first. */
export function aggregateCoordination(
  config: CoordinationConfig,
  samples: CoordinationReport['samples'],
  unavailable: CoordinationReport['unavailable'] = [],
  notes: readonly string[] = [],
): CoordinationReport {
  const order = (s: CoordinationSystem) => COORDINATION_SYSTEMS.indexOf(s);
  const lockGroups = new Map<string, LockSample[]>();
  for (const s of samples.lock) lockGroups.set(`${s.system}/${s.contenders}`, [...(lockGroups.get(`${s.system}/${s.contenders}`) ?? []), s]);
  const lockBare = [...lockGroups.values()].map((group) => {
    const ordered = [...group].sort((a, b) => a.round - b.round);
    const first = ordered[0]!;
    const firstError = ordered.find((s) => s.firstError !== undefined)?.firstError;
    return {
      system: first.system,
      contenders: first.contenders,
      pairsPerSec: median(ordered.map((s) => s.pairsPerSec)),
      pairsPerSecByRound: ordered.map((s) => s.pairsPerSec),
      pairs: sumOf(ordered.map((s) => s.pairs)),
      acquireP50Ms: median(ordered.map((s) => s.acquireP50Ms)),
      acquireP99Ms: median(ordered.map((s) => s.acquireP99Ms)),
      serverCpuMsPerPair: medianOrNull(ordered.map((s) => s.serverCpuMsPerPair)),
      serverCpuMsPerPairAboveIdle: medianOrNull(ordered.map((s) => s.serverCpuMsPerPairAboveIdle ?? null)),
      errors: sumOf(ordered.map((s) => s.errors)),
      leasesNotRenewed: sumOf(ordered.map((s) => s.leasesNotRenewed)),
      rounds: ordered.length,
      ...(firstError === undefined ? {} : { firstError }),
    };
  });
  const lock: LockRow[] = lockBare
    .map((r) => {
      const etcd = r.system === 'etcd' ? undefined : lockBare.find((e) => e.system === 'etcd' && e.contenders === r.contenders);
      return {
        ...r,
        pairsVsEtcd: etcd === undefined ? null : ratioOf(r.pairsPerSec, etcd.pairsPerSec),
        p99VsEtcd: etcd === undefined ? null : ratioOf(r.acquireP99Ms, etcd.acquireP99Ms),
        cpuVsEtcd: etcd === undefined ? null : ratioOf(r.serverCpuMsPerPair, etcd.serverCpuMsPerPair),
      };
    })
    .sort((a, b) => a.contenders - b.contenders || order(a.system) - order(b.system));

  const kaGroups = new Map<CoordinationSystem, KeepAliveSample[]>();
  for (const s of samples.keepAlive) kaGroups.set(s.system, [...(kaGroups.get(s.system) ?? []), s]);
  const kaBare = [...kaGroups.values()].map((group) => {
    const ordered = [...group].sort((a, b) => a.round - b.round);
    const first = ordered[0]!;
    const firstError = ordered.find((s) => s.firstError !== undefined)?.firstError;
    return {
      system: first.system,
      leases: first.leases,
      streams: first.streams,
      grantsPerSec: median(ordered.map((s) => s.grantsPerSec)),
      askedPerSec: median(ordered.map((s) => s.askedPerSec)),
      renewalsPerSec: median(ordered.map((s) => s.renewalsPerSec)),
      renewalP50Ms: median(ordered.map((s) => s.renewalP50Ms)),
      renewalP99Ms: median(ordered.map((s) => s.renewalP99Ms)),
      serverCpuMsPerSec: median(ordered.map((s) => s.serverCpuMsPerSec)),
      idleCpuMsPerSec: medianOrNull(ordered.map((s) => s.idleCpuMsPerSec)),
      serverCpuUsPerRenewal: medianOrNull(ordered.map((s) => s.serverCpuUsPerRenewal)),
      serverCpuUsPerRenewalAboveIdle: medianOrNull(ordered.map((s) => s.serverCpuUsPerRenewalAboveIdle ?? null)),
      bytesPerSec: median(ordered.map((s) => s.bytesPerSec)),
      bytesPerRenewal: medianOrNull(ordered.map((s) => s.bytesPerRenewal)),
      notRenewed: sumOf(ordered.map((s) => s.notRenewed)),
      missingAfter: sumOf(ordered.map((s) => s.missingAfter)),
      sampleChecked: sumOf(ordered.map((s) => s.sampleChecked)),
      sampleExpired: sumOf(ordered.map((s) => s.sampleExpired)),
      maxBacklog: Math.max(...ordered.map((s) => s.maxBacklog)),
      errors: sumOf(ordered.map((s) => s.errors + s.grantErrors)),
      rounds: ordered.length,
      ...(firstError === undefined ? {} : { firstError }),
    };
  });
  const keepAlive: KeepAliveRow[] = kaBare
    .map((r) => {
      const etcd = r.system === 'etcd' ? undefined : kaBare.find((e) => e.system === 'etcd');
      return {
        ...r,
        cpuPerRenewalVsEtcd: etcd === undefined ? null : ratioOf(r.serverCpuUsPerRenewal, etcd.serverCpuUsPerRenewal),
        bytesVsEtcd: etcd === undefined ? null : ratioOf(r.bytesPerSec, etcd.bytesPerSec),
      };
    })
    .sort((a, b) => order(a.system) - order(b.system));
  return { config, lock, keepAlive, samples, unavailable, notes };
}

/** Every system meant to be measured was, no call failed and no lease was lost: one line per problem. */
export function coordinationProblems(report: CoordinationReport): string[] {
  const problems: string[] = report.unavailable.map((u) => `${u.system} not measured (${u.reason})`);
  for (const r of report.lock) {
    if (r.errors > 0) problems.push(`${r.system} lock ×${r.contenders}: ${r.errors} errors (${r.firstError ?? 'unknown'})`);
    if (r.leasesNotRenewed > 0) problems.push(`${r.system} lock ×${r.contenders}: ${r.leasesNotRenewed} keep-alive answers did not renew`);
    if (r.pairs === 0) problems.push(`${r.system} lock ×${r.contenders}: no pair completed`);
  }
  for (const r of report.keepAlive) {
    if (r.errors > 0) problems.push(`${r.system} keep-alive: ${r.errors} errors (${r.firstError ?? 'unknown'})`);
    if (r.notRenewed > 0) problems.push(`${r.system} keep-alive: ${r.notRenewed} renewals answered not renewed (${r.firstError ?? 'unknown'})`);
    if (Number.isNaN(r.missingAfter)) problems.push(`${r.system} keep-alive: the leases could not be listed after the phase`);
    else if (r.missingAfter > 0) problems.push(`${r.system} keep-alive: ${r.missingAfter} leases lost (missing from the list after the phase)`);
    if (r.sampleExpired > 0) problems.push(`${r.system} keep-alive: ${r.sampleExpired} of ${r.sampleChecked} sampled leases had no time left`);
  }
  return problems;
}

function fixed(value: number | null, digits: number): string {
  return value === null || Number.isNaN(value) ? '—' : value.toFixed(digits);
}

function count(value: number): string {
  return Number.isNaN(value) ? '—' : Math.round(value).toLocaleString('en-US');
}

/** The section's Markdown lines: the command, two tables, the check, the notes. */
export function renderCoordination(report: CoordinationReport): string[] {
  const c = report.config;
  const rounds = c.rounds > 1 ? `medians of ${c.rounds} rounds (counts summed)` : '1 round';
  const loads = [...report.samples.lock, ...report.samples.keepAlive].map((s) => s.loadAverage).filter((l) => Number.isFinite(l));
  const lines = [
    '## Locks and leases',
    '',
    `\`${c.command}\`; ${rounds}; × etcd is replikit over etcd. 1-minute load average at the start of the phases: ` +
      (loads.length === 0 ? '—' : `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`) +
      '. Server CPU: user + system of the three server processes over the measured window (`/proc/PID/stat`, 10 ms ticks).',
    '',
    `### Lock acquire + release, one lock name, each contender with its own lease (TTL ${c.leaseTtlMs / 1000} s, kept alive)`,
    '',
    `Each contender loops Lock → Unlock for ${c.lockDurationMs / 1000} s after ${c.warmupMs / 1000} s of warm-up. Acquire: the Lock ` +
      'call from asking to holding, queueing behind the other contenders included. Server CPU per pair, and in brackets the same less ' +
      `what the idle cluster spends in as long (read for ${c.idleMs / 1000} s before the round's phases; at a few dozen pairs/s a replikit ` +
      'cluster\'s idle heartbeats and clock sync are a good part of it). pairs/s × etcd above 1 is better; CPU × etcd (of the totals) below 1.',
    '',
    formatTable(
      ['contenders', 'system', 'pairs/s', 'pairs/s by round', '× etcd', 'acquire p50 ms', 'acquire p99 ms', 'p99 × etcd', 'server CPU ms/pair (above idle)', 'CPU × etcd', 'pairs', 'errors'],
      report.lock.map((r) => [
        String(r.contenders),
        r.system,
        fixed(r.pairsPerSec, 1),
        r.pairsPerSecByRound.map((v) => v.toFixed(0)).join(' / '),
        formatRatio(r.pairsVsEtcd),
        formatMs(r.acquireP50Ms),
        formatMs(r.acquireP99Ms),
        formatRatio(r.p99VsEtcd),
        `${fixed(r.serverCpuMsPerPair, 2)} (${fixed(r.serverCpuMsPerPairAboveIdle, 2)})`,
        formatRatio(r.cpuVsEtcd),
        String(r.pairs),
        String(r.errors),
      ]),
      ['r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    `### Keep-alive of ${c.keepAliveLeases.toLocaleString('en-US')} leases (TTL ${c.leaseTtlMs / 1000} s), each renewed every ${(c.renewEveryMs / 1000).toFixed(2)} s ` +
      `over ${c.keepAliveStreams} LeaseKeepAlive streams`,
    '',
    `Measured for ${c.keepAliveDurationMs / 1000} s after one renewal period. Server CPU ms/s next to the same cluster idle ` +
      `(read for ${c.idleMs / 1000} s before the round's phases). Bytes: counted in the bench process, protobuf message bytes plus gRPC's ` +
      '5-byte message prefix of every request and answer (HTTP/2 frame and header bytes not counted). renewal ms: a renewal\'s round trip ' +
      'on its stream. Lost: renewals answered "not renewed" (replikit code ≠ 0, etcd TTL ≤ 0), leases missing from LeaseList / ' +
      'LeaseLeases after the phase, and sampled leases whose LeaseTimeToLive had no time left. × etcd below 1 is better.',
    '',
    formatTable(
      ['system', 'leases', 'grants/s', 'renewals/s (asked)', 'renewal p50 / p99 ms', 'server CPU ms/s (idle)', 'CPU µs/renewal (above idle)', 'CPU × etcd', 'bytes/s', 'bytes/renewal', 'bytes × etcd', 'not renewed', 'lost after', 'sample expired', 'max backlog'],
      report.keepAlive.map((r) => [
        r.system,
        String(r.leases),
        count(r.grantsPerSec),
        `${count(r.renewalsPerSec)} (${count(r.askedPerSec)})`,
        `${formatMs(r.renewalP50Ms)} / ${formatMs(r.renewalP99Ms)}`,
        `${count(r.serverCpuMsPerSec)} (${r.idleCpuMsPerSec === null ? '—' : count(r.idleCpuMsPerSec)})`,
        `${fixed(r.serverCpuUsPerRenewal, 1)} (${fixed(r.serverCpuUsPerRenewalAboveIdle, 1)})`,
        formatRatio(r.cpuPerRenewalVsEtcd),
        count(r.bytesPerSec),
        fixed(r.bytesPerRenewal, 1),
        formatRatio(r.bytesVsEtcd),
        String(r.notRenewed),
        count(r.missingAfter),
        `${count(r.sampleExpired)} of ${r.sampleChecked}`,
        String(r.maxBacklog),
      ]),
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
  ];
  const problems = coordinationProblems(report);
  lines.push(
    problems.length === 0
      ? '**Check: ok**: no call failed, every renewal renewed, and every lease was still there after its phase.'
      : `**Check: FAILED**: ${problems.join('; ')}.`,
    '',
  );
  for (const u of report.unavailable) lines.push(`- ${u.system} not measured here: ${oneLine(u.reason, 400)}`);
  for (const n of report.notes) lines.push(`- ${n}`);
  if (report.unavailable.length + report.notes.length > 0) lines.push('');
  return lines;
}

/** The section as JSON: numbers rounded, NaN as null, with the check's problems. */
export function coordinationJson(report: CoordinationReport): unknown {
  const clean = (value: unknown): unknown =>
    typeof value === 'number'
      ? round(value, 3)
      : Array.isArray(value)
        ? value.map(clean)
        : value !== null && typeof value === 'object'
          ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clean(v)]))
          : value;
  return clean({ ...report, problems: coordinationProblems(report) });
}
