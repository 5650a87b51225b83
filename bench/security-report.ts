/**
 * The security rows (bench/security.ts measures them, issue #19) as pure functions: per-round
 * samples of the same CP cluster run plaintext and with mutual TLS + authorization → median rows
 * → the ratios secure / plaintext → Markdown lines and JSON. No I/O here, so a test checks every number.
 */
import type { LoadResult } from './load.js';
import { formatMs, formatRatio, formatTable, median, oneLine } from './report.js';

/** The two ways the same 3-node CP cluster runs. */
export type SecurityVariant = 'plaintext' | 'mtls-authz';
export const SECURITY_VARIANTS: readonly SecurityVariant[] = ['plaintext', 'mtls-authz'];
export type SecurityOp = 'put' | 'get';
export const SECURITY_OPS: readonly SecurityOp[] = ['put', 'get'];

/** How the rows were run: the same for both variants. */
export interface SecurityConfig {
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly concurrencies: readonly number[];
  /** Whether the secure variant ran with `--authz FILE` (false: mutual TLS alone, the flag missing). */
  readonly authz: boolean;
  /** Grants (allow lines) in the authorization file. */
  readonly grants: number;
  /** How to run these rows again. */
  readonly command: string;
}

/** One measured phase of one variant. */
export interface SecuritySample {
  readonly variant: SecurityVariant;
  readonly op: SecurityOp;
  readonly concurrency: number;
  readonly round: number;
  readonly result: LoadResult;
  /** CPU of the three server processes over the measured window, ms. */
  readonly serverCpuMs?: number;
  /** CPU of the bench process (the load generator, TLS client side included) over the window, ms. */
  readonly clientCpuMs?: number;
  /** 1-minute load average when the phase started. */
  readonly loadAverage: number;
}

/** Medians over rounds of one (variant, op, callers). */
export interface SecurityRow {
  readonly variant: SecurityVariant;
  readonly op: SecurityOp;
  readonly concurrency: number;
  readonly opsPerSec: number;
  readonly opsPerSecByRound: readonly number[];
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Server CPU (the three processes) per successful call, µs: median over rounds. */
  readonly serverCpuUsPerOp: number | null;
  /** The bench process's CPU per successful call, µs: median over rounds. */
  readonly clientCpuUsPerOp: number | null;
  readonly ops: number;
  readonly errors: number;
  readonly rounds: number;
  readonly firstError?: string;
}

/** mtls-authz over plaintext for one (op, callers): throughput below 1 and the others above 1 are the cost. */
export interface SecurityRatio {
  readonly op: SecurityOp;
  readonly concurrency: number;
  readonly opsPerSec: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly serverCpuUsPerOp: number | null;
  readonly clientCpuUsPerOp: number | null;
  /** The throughput ratio of each round (the variants ran back to back in it): the spread behind the median. */
  readonly opsPerSecByRound: readonly (number | null)[];
}

export interface SecurityReport {
  readonly config: SecurityConfig;
  readonly rows: readonly SecurityRow[];
  readonly ratios: readonly SecurityRatio[];
  readonly samples: readonly SecuritySample[];
  readonly unavailable: readonly { readonly variant: SecurityVariant; readonly reason: string }[];
  readonly notes: readonly string[];
}

function ratioOf(ours: number | null, theirs: number | null | undefined): number | null {
  return ours === null || theirs === null || theirs === undefined || !(theirs > 0) || !Number.isFinite(ours) ? null : ours / theirs;
}

function perOpUs(samples: readonly SecuritySample[], pick: (s: SecuritySample) => number | undefined): number | null {
  const values = samples.flatMap((s) => {
    const ms = pick(s);
    return ms === undefined || s.result.ops === 0 ? [] : [(ms * 1000) / s.result.ops];
  });
  return values.length === 0 ? null : median(values);
}

/** Medians over rounds per (variant, op, callers), and the ratios mtls-authz / plaintext. */
export function aggregateSecurity(
  config: SecurityConfig,
  samples: readonly SecuritySample[],
  unavailable: SecurityReport['unavailable'] = [],
  notes: readonly string[] = [],
): SecurityReport {
  const groups = new Map<string, SecuritySample[]>();
  for (const s of samples) {
    const key = `${s.variant}/${s.op}/${s.concurrency}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const rows: SecurityRow[] = [...groups.values()]
    .map((group) => {
      const ordered = [...group].sort((a, b) => a.round - b.round);
      const first = ordered[0]!;
      const firstError = ordered.find((s) => s.result.firstError !== undefined)?.result.firstError;
      return {
        variant: first.variant,
        op: first.op,
        concurrency: first.concurrency,
        opsPerSec: median(ordered.map((s) => s.result.opsPerSec)),
        opsPerSecByRound: ordered.map((s) => s.result.opsPerSec),
        p50Ms: median(ordered.map((s) => s.result.p50Ms)),
        p99Ms: median(ordered.map((s) => s.result.p99Ms)),
        serverCpuUsPerOp: perOpUs(ordered, (s) => s.serverCpuMs),
        clientCpuUsPerOp: perOpUs(ordered, (s) => s.clientCpuMs),
        ops: ordered.reduce((sum, s) => sum + s.result.ops, 0),
        errors: ordered.reduce((sum, s) => sum + s.result.errors, 0),
        rounds: ordered.length,
        ...(firstError === undefined ? {} : { firstError }),
      };
    })
    .sort(
      (a, b) =>
        SECURITY_OPS.indexOf(a.op) - SECURITY_OPS.indexOf(b.op) ||
        a.concurrency - b.concurrency ||
        SECURITY_VARIANTS.indexOf(a.variant) - SECURITY_VARIANTS.indexOf(b.variant),
    );
  const ratios: SecurityRatio[] = [];
  for (const secure of rows.filter((r) => r.variant === 'mtls-authz')) {
    const plain = rows.find((r) => r.variant === 'plaintext' && r.op === secure.op && r.concurrency === secure.concurrency);
    if (plain === undefined) continue;
    const byRound = (variant: SecurityVariant, round: number) =>
      samples.find((s) => s.variant === variant && s.op === secure.op && s.concurrency === secure.concurrency && s.round === round)?.result.opsPerSec;
    const rounds = [...new Set(samples.map((s) => s.round))].sort((a, b) => a - b);
    ratios.push({
      op: secure.op,
      concurrency: secure.concurrency,
      opsPerSec: ratioOf(secure.opsPerSec, plain.opsPerSec),
      p50Ms: ratioOf(secure.p50Ms, plain.p50Ms),
      p99Ms: ratioOf(secure.p99Ms, plain.p99Ms),
      serverCpuUsPerOp: ratioOf(secure.serverCpuUsPerOp, plain.serverCpuUsPerOp),
      clientCpuUsPerOp: ratioOf(secure.clientCpuUsPerOp, plain.clientCpuUsPerOp),
      opsPerSecByRound: rounds.map((round) => ratioOf(byRound('mtls-authz', round) ?? null, byRound('plaintext', round))),
    });
  }
  return { config, rows, ratios, samples, unavailable, notes };
}

/** Both variants measured, no call failed: one line per problem. */
export function securityProblems(report: SecurityReport): string[] {
  const problems: string[] = report.unavailable.map((u) => `${u.variant} not measured (${u.reason})`);
  for (const r of report.rows) {
    if (r.errors > 0) problems.push(`${r.variant} ${r.op} ×${r.concurrency}: ${r.errors} errors (${r.firstError ?? 'unknown'})`);
    if (r.ops === 0) problems.push(`${r.variant} ${r.op} ×${r.concurrency}: no call completed`);
  }
  return problems;
}

function cpu(value: number | null): string {
  return value === null || !Number.isFinite(value) ? '—' : Math.round(value).toString();
}

/** The section's Markdown lines: what ran, the rows, the ratios, the check, the notes. */
export function renderSecurity(report: SecurityReport): string[] {
  const c = report.config;
  const rounds = c.rounds > 1 ? `medians of ${c.rounds} rounds, the two variants back to back in each (order reversed in even rounds)` : '1 round';
  const loads = report.samples.map((s) => s.loadAverage).filter((l) => Number.isFinite(l));
  const secure = c.authz
    ? `mutual TLS with node certificates (\`--tls-cert --tls-key --tls-ca\`) and \`--authz FILE\` (${c.grants} grants, deny by default; the bench client's certificate \`client:bench\` granted read,write on \`default\`)`
    : 'mutual TLS with node certificates (`--tls-cert --tls-key --tls-ca`), **without** `--authz` (this build\'s `serve` has no such flag)';
  const lines = [
    '## Security: mutual TLS and authorization against plaintext',
    '',
    `\`${c.command}\`; ${rounds}; ${c.durationMs / 1000} s measured after ${c.warmupMs / 1000} s of warm-up. ` +
      `The same 3-node CP cluster (\`replikit serve --policy cp\`, LmdbStore) started twice: \`plaintext\`, and \`mtls-authz\`: ${secure}; ` +
      'the bench client presents its own certificate. Calls round-robin over the 3 nodes on long-lived connections (the handshakes happen before measuring). ' +
      'Server CPU: user + system of the three server processes over the measured window, per successful call; client CPU: the bench process. ' +
      `1-minute load average at the start of the phases: ${loads.length === 0 ? '—' : `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`}.`,
    '',
    formatTable(
      ['op', 'callers', 'variant', 'ops/s', 'ops/s by round', 'p50 ms', 'p99 ms', 'server CPU µs/op', 'client CPU µs/op', 'errors'],
      report.rows.map((r) => [
        `CP ${r.op}`,
        String(r.concurrency),
        r.variant,
        Number.isFinite(r.opsPerSec) ? Math.round(r.opsPerSec).toString() : '—',
        r.opsPerSecByRound.map((v) => v.toFixed(0)).join(' / '),
        formatMs(r.p50Ms),
        formatMs(r.p99Ms),
        cpu(r.serverCpuUsPerOp),
        cpu(r.clientCpuUsPerOp),
        String(r.errors),
      ]),
      ['l', 'r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    'mtls-authz / plaintext (ops/s below 1×, latency and CPU above 1× are the cost of security):',
    '',
    formatTable(
      ['op', 'callers', 'ops/s', 'ops/s by round', 'p50', 'p99', 'server CPU/op', 'client CPU/op'],
      report.ratios.map((r) => [
        `CP ${r.op}`,
        String(r.concurrency),
        formatRatio(r.opsPerSec),
        r.opsPerSecByRound.map(formatRatio).join(' / '),
        formatRatio(r.p50Ms),
        formatRatio(r.p99Ms),
        formatRatio(r.serverCpuUsPerOp),
        formatRatio(r.clientCpuUsPerOp),
      ]),
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
  ];
  const problems = securityProblems(report);
  lines.push(problems.length === 0 ? '**Check: ok**: both variants measured, no call failed.' : `**Check: FAILED**: ${problems.join('; ')}.`, '');
  for (const u of report.unavailable) lines.push(`- ${u.variant} not measured here: ${oneLine(u.reason, 400)}`);
  for (const n of report.notes) lines.push(`- ${n}`);
  if (report.unavailable.length + report.notes.length > 0) lines.push('');
  return lines;
}

/** The section as JSON: numbers rounded, NaN as null, with the check's problems; samples summarized. */
export function securityJson(report: SecurityReport): unknown {
  const clean = (value: unknown): unknown =>
    typeof value === 'number'
      ? Number.isFinite(value)
        ? Math.round(value * 1000) / 1000
        : null
      : Array.isArray(value)
        ? value.map(clean)
        : value !== null && typeof value === 'object'
          ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clean(v)]))
          : value;
  return clean({ ...report, problems: securityProblems(report) });
}
