/**
 * The Range and Watch section of the benchmark report (issue #16): per-round samples → median
 * rows with ratios against etcd → Markdown lines and JSON. Pure functions, checked by
 * test/bench/watch.test.ts; bench/watch-range.ts measures, bench/report.ts places the section.
 */
import { addCounts, emptyCounts, type DeliveryCounts } from './watch-latency.js';

export type RangeWatchSystem = 'replikit-cp' | 'etcd';
export const RANGE_WATCH_SYSTEMS: readonly RangeWatchSystem[] = ['etcd', 'replikit-cp'];
/** Where a watcher sits: on a follower, or on the leader (the node that acknowledges every put). */
export type WatcherPlace = 'follower' | 'leader';

/** How the section was run: the same for both systems. */
export interface RangeWatchConfig {
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** Callers putting under the watched prefix in the latency rows. */
  readonly callers: number;
  readonly valueBytes: number;
  readonly fanoutWatchers: number;
  readonly fanoutChannels: number;
  /** Prefixes the fan-out watchers are spread over (watchers / prefixes watch each). */
  readonly fanoutPrefixes: number;
  /** Puts per second the fan-out writer aims at. */
  readonly fanoutRate: number;
  readonly rangeKeys: number;
  readonly rangeRunsPerRound: number;
  /** How long the events of the last puts may take to arrive after the load stops. */
  readonly settleMs: number;
}

/** One latency phase, one watcher: 64 callers put under `w/`, the watcher reports each event. */
export interface WatchLatencySample {
  readonly system: RangeWatchSystem;
  readonly round: number;
  readonly watcher: WatcherPlace;
  readonly counts: DeliveryCounts;
  /** Event latency, acknowledgement to arrival. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** The put load itself (the same for both watchers of a phase). */
  readonly putsPerSec: number;
  readonly putP50Ms: number;
  readonly putP99Ms: number;
  readonly putErrors: number;
  readonly firstError?: string;
  /** Server CPU (all three processes) per put in the window, watchers included. */
  readonly serverCpuUsPerPut: number | null;
}

/** One fan-out phase: many watchers on one node, a paced writer. */
export interface FanoutSample {
  readonly system: RangeWatchSystem;
  readonly round: number;
  readonly watchers: number;
  /** From the first create to the last `created`. */
  readonly openMs: number;
  /** VmRSS of the node serving the watchers: before they open, once they are open, after the writes. */
  readonly rssBeforeMb: number;
  readonly rssAfterOpenMb: number;
  readonly rssAfterLoadMb: number;
  /** Puts acknowledged in the window, per second. */
  readonly writesPerSec: number;
  readonly counts: DeliveryCounts;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Failed puts and watch streams that ended on their own. */
  readonly errors: number;
  readonly firstError?: string;
  /** CPU of the node serving the watchers, per event delivered. */
  readonly nodeCpuUsPerEvent: number | null;
}

/** One round of full prefix Ranges. */
export interface RangeSample {
  readonly system: RangeWatchSystem;
  readonly round: number;
  readonly keys: number;
  /** Each timed Range, ms. */
  readonly runsMs: readonly number[];
  /** Calls one full Range took (replikit follows `continuation`; etcd answers in one). */
  readonly pages: number;
  readonly errors: number;
  readonly firstError?: string;
  /** Server CPU (all three processes) per full Range. */
  readonly serverCpuMsPerRange: number | null;
}

export interface LatencyRow {
  readonly system: RangeWatchSystem;
  readonly watcher: WatcherPlace;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly counts: DeliveryCounts;
  readonly putsPerSec: number;
  readonly putErrors: number;
  readonly serverCpuUsPerPut: number | null;
  readonly rounds: number;
  /** replikit's p50 / p99 over etcd's, same watcher place (lower is better); null on etcd's row. */
  readonly p50VsEtcd: number | null;
  readonly p99VsEtcd: number | null;
  readonly firstError?: string;
}

export interface FanoutRow {
  readonly system: RangeWatchSystem;
  readonly watchers: number;
  readonly openMs: number;
  readonly rssBeforeMb: number;
  readonly rssAfterOpenMb: number;
  readonly rssAfterLoadMb: number;
  /** (after open − before) / watchers, KiB: what one idle watcher costs the node (median over rounds). */
  readonly kibPerWatcher: number;
  /** The same, round by round: a Node process whose heap an earlier phase grew absorbs the watchers without growing. */
  readonly kibPerWatcherByRound: readonly number[];
  readonly writesPerSec: number;
  readonly counts: DeliveryCounts;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly nodeCpuUsPerEvent: number | null;
  readonly rounds: number;
  readonly p50VsEtcd: number | null;
  readonly p99VsEtcd: number | null;
  readonly firstError?: string;
}

export interface RangeRow {
  readonly system: RangeWatchSystem;
  readonly keys: number;
  readonly runs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly keysPerSec: number;
  readonly pages: number;
  readonly errors: number;
  readonly serverCpuMsPerRange: number | null;
  /** replikit's median time over etcd's (lower is better). */
  readonly p50VsEtcd: number | null;
  readonly firstError?: string;
}

export interface RangeWatchReport {
  readonly config: RangeWatchConfig;
  readonly latency: readonly LatencyRow[];
  readonly fanout: readonly FanoutRow[];
  readonly range: readonly RangeRow[];
  readonly samples: { readonly latency: readonly WatchLatencySample[]; readonly fanout: readonly FanoutSample[]; readonly range: readonly RangeSample[] };
  readonly unavailable: readonly { readonly system: RangeWatchSystem; readonly reason: string }[];
  readonly notes: readonly string[];
}

function median(values: readonly number[]): number {
  const xs = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
}

/** The value at percentile `p` (nearest rank) of a list; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  const xs = [...values].sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  return xs[Math.min(xs.length - 1, Math.max(0, Math.ceil((p / 100) * xs.length) - 1))]!;
}

function medianOrNull(values: readonly (number | null)[]): number | null {
  const xs = values.filter((v): v is number => v !== null);
  return xs.length === 0 ? null : median(xs);
}

/** The latency recorded for an event that arrived before its acknowledgement (1 µs), with rounding room. */
const CLAMPED_MS = 0.0015;

function ratio(ours: number, theirs: number | undefined): number | null {
  return theirs === undefined || !(theirs > 0) || Number.isNaN(ours) ? null : ours / theirs;
}

/** A latency ratio, none when either side is at the clamp (most events beat their ack: "0" over anything says nothing). */
function latencyRatio(ours: number, theirs: number | undefined): number | null {
  return theirs === undefined || ours <= CLAMPED_MS || theirs <= CLAMPED_MS ? null : ratio(ours, theirs);
}

function sumCounts(samples: readonly { counts: DeliveryCounts }[]): DeliveryCounts {
  return samples.reduce((sum, s) => addCounts(sum, s.counts), emptyCounts());
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): T[][] {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    groups.set(k, [...(groups.get(k) ?? []), item]);
  }
  return [...groups.values()];
}

const systemOrder = (s: RangeWatchSystem) => RANGE_WATCH_SYSTEMS.indexOf(s);

/** Medians over rounds (counts summed), ratios of replikit to etcd, in table order. */
export function aggregateRangeWatch(
  config: RangeWatchConfig,
  samples: RangeWatchReport['samples'],
  unavailable: RangeWatchReport['unavailable'] = [],
  notes: readonly string[] = [],
): RangeWatchReport {
  const latencyBare = groupBy(samples.latency, (s) => `${s.system}/${s.watcher}`).map((group) => {
    const first = group[0]!;
    return {
      system: first.system,
      watcher: first.watcher,
      p50Ms: median(group.map((s) => s.p50Ms)),
      p99Ms: median(group.map((s) => s.p99Ms)),
      maxMs: Math.max(...group.map((s) => (Number.isNaN(s.maxMs) ? -Infinity : s.maxMs))),
      counts: sumCounts(group),
      putsPerSec: median(group.map((s) => s.putsPerSec)),
      putErrors: group.reduce((n, s) => n + s.putErrors, 0),
      serverCpuUsPerPut: medianOrNull(group.map((s) => s.serverCpuUsPerPut)),
      rounds: group.length,
      ...(group.find((s) => s.firstError !== undefined)?.firstError === undefined ? {} : { firstError: group.find((s) => s.firstError !== undefined)!.firstError }),
    };
  });
  const latency: LatencyRow[] = latencyBare
    .map((r) => {
      const etcd = r.system === 'etcd' ? undefined : latencyBare.find((e) => e.system === 'etcd' && e.watcher === r.watcher);
      return { ...r, maxMs: Number.isFinite(r.maxMs) ? r.maxMs : NaN, p50VsEtcd: latencyRatio(r.p50Ms, etcd?.p50Ms), p99VsEtcd: latencyRatio(r.p99Ms, etcd?.p99Ms) };
    })
    .sort((a, b) => (a.watcher === b.watcher ? 0 : a.watcher === 'follower' ? -1 : 1) || systemOrder(a.system) - systemOrder(b.system));

  const fanoutBare = groupBy(samples.fanout, (s) => s.system).map((group) => {
    const first = group[0]!;
    const rssBeforeMb = median(group.map((s) => s.rssBeforeMb));
    const rssAfterOpenMb = median(group.map((s) => s.rssAfterOpenMb));
    const firstError = group.find((s) => s.firstError !== undefined)?.firstError;
    const kib = [...group].sort((a, b) => a.round - b.round).map((s) => ((s.rssAfterOpenMb - s.rssBeforeMb) * 1024) / s.watchers);
    return {
      system: first.system,
      watchers: first.watchers,
      openMs: median(group.map((s) => s.openMs)),
      rssBeforeMb,
      rssAfterOpenMb,
      rssAfterLoadMb: median(group.map((s) => s.rssAfterLoadMb)),
      kibPerWatcher: median(kib),
      kibPerWatcherByRound: kib,
      writesPerSec: median(group.map((s) => s.writesPerSec)),
      counts: sumCounts(group),
      p50Ms: median(group.map((s) => s.p50Ms)),
      p99Ms: median(group.map((s) => s.p99Ms)),
      errors: group.reduce((n, s) => n + s.errors, 0),
      nodeCpuUsPerEvent: medianOrNull(group.map((s) => s.nodeCpuUsPerEvent)),
      rounds: group.length,
      ...(firstError === undefined ? {} : { firstError }),
    };
  });
  const fanout: FanoutRow[] = fanoutBare
    .map((r) => {
      const etcd = r.system === 'etcd' ? undefined : fanoutBare.find((e) => e.system === 'etcd');
      return { ...r, p50VsEtcd: latencyRatio(r.p50Ms, etcd?.p50Ms), p99VsEtcd: latencyRatio(r.p99Ms, etcd?.p99Ms) };
    })
    .sort((a, b) => systemOrder(a.system) - systemOrder(b.system));

  const rangeBare = groupBy(samples.range, (s) => s.system).map((group) => {
    const first = group[0]!;
    const runs = group.flatMap((s) => s.runsMs);
    const p50Ms = median(runs);
    const firstError = group.find((s) => s.firstError !== undefined)?.firstError;
    return {
      system: first.system,
      keys: first.keys,
      runs: runs.length,
      p50Ms,
      p99Ms: percentile(runs, 99),
      keysPerSec: p50Ms > 0 ? (first.keys / p50Ms) * 1000 : NaN,
      pages: Math.max(0, ...group.map((s) => s.pages)),
      errors: group.reduce((n, s) => n + s.errors, 0),
      serverCpuMsPerRange: medianOrNull(group.map((s) => s.serverCpuMsPerRange)),
      ...(firstError === undefined ? {} : { firstError }),
    };
  });
  const range: RangeRow[] = rangeBare
    .map((r) => {
      const etcd = r.system === 'etcd' ? undefined : rangeBare.find((e) => e.system === 'etcd');
      return { ...r, p50VsEtcd: ratio(r.p50Ms, etcd?.p50Ms) };
    })
    .sort((a, b) => systemOrder(a.system) - systemOrder(b.system));

  return { config, latency, fanout, range, samples, unavailable, notes };
}

/**
 * Whether every system meant to be measured was, every watch delivered each acknowledged put
 * exactly once and in order, and every Range read every key: one line per problem, none when all hold.
 */
export function rangeWatchProblems(report: RangeWatchReport): string[] {
  const problems: string[] = report.unavailable.map((u) => `${u.system} not measured (${u.reason})`);
  const check = (what: string, c: DeliveryCounts) => {
    if (c.missing > 0) problems.push(`${what}: ${c.missing} events missing`);
    if (c.duplicates > 0) problems.push(`${what}: ${c.duplicates} events delivered twice`);
    if (c.outOfOrder > 0) problems.push(`${what}: ${c.outOfOrder} events out of revision order`);
    if (c.events === 0) problems.push(`${what}: no events`);
  };
  for (const r of report.latency) check(`${r.system} watch latency (${r.watcher})`, r.counts);
  for (const r of report.fanout) {
    check(`${r.system} ${r.watchers} watchers`, r.counts);
    if (r.errors > 0) problems.push(`${r.system} ${r.watchers} watchers: ${r.errors} errors (${r.firstError ?? 'unknown'})`);
  }
  for (const r of report.range) {
    if (r.errors > 0) problems.push(`${r.system} Range of ${r.keys} keys: ${r.errors} errors (${r.firstError ?? 'unknown'})`);
    if (r.runs === 0) problems.push(`${r.system} Range of ${r.keys} keys: no successful run`);
  }
  return problems;
}

function ms(value: number): string {
  if (Number.isNaN(value)) return '—';
  if (value >= 100) return value.toFixed(0);
  // An event that beat its acknowledgement is recorded as 1 µs.
  if (value < 0.01) return value.toFixed(3);
  return value.toPrecision(3);
}

function x(value: number | null): string {
  return value === null ? '—' : `${value.toFixed(2)}×`;
}

function int(value: number | null): string {
  return value === null || Number.isNaN(value) ? '—' : Math.round(value).toString();
}

function table(headers: readonly string[], body: readonly (readonly string[])[], align: readonly ('l' | 'r')[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const cell = (text: string, i: number) => (align[i] === 'r' ? text.padStart(widths[i]!) : text.padEnd(widths[i]!));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => cell(c, i)).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (align[i] === 'r' ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(headers), rule, ...body.map(line)].join('\n');
}

/** The section's Markdown lines: three tables, the check, the systems left out, the notes. */
export function renderRangeWatch(report: RangeWatchReport): string[] {
  const c = report.config;
  const rounds = c.rounds > 1 ? `medians of ${c.rounds} rounds (counts summed)` : '1 round';
  const lines = [
    '## Range and Watch',
    '',
    `${rounds}; × etcd is replikit over etcd, so below 1 is better for every column here. Events are matched to puts in the ` +
      'bench process: latency runs from the put\'s acknowledgement at its caller to the event\'s arrival at the watcher; an event ' +
      'that arrives before the acknowledgement counts as 0 (shown as 0.001) and as "early". "missing" are puts acknowledged in the ' +
      `window whose event had not arrived ${c.settleMs / 1000} s after the load stopped; "dup / order" are events delivered twice ` +
      'or below the revision of one delivered before (both must be 0).',
    '',
    `### Event latency under put load: ${c.callers} callers, one watcher on the prefix through a follower and one through the leader`,
    '',
  ];
  lines.push(
    table(
      ['watcher', 'system', 'events', 'early', 'missing', 'dup / order', 'p50 ms', 'p99 ms', 'max ms', 'p50 × etcd', 'p99 × etcd', 'puts/s', 'server CPU µs/put'],
      report.latency.map((r) => [
        r.watcher,
        r.system,
        String(r.counts.events),
        String(r.counts.early),
        String(r.counts.missing),
        String(r.counts.duplicates + r.counts.outOfOrder),
        ms(r.p50Ms),
        ms(r.p99Ms),
        ms(r.maxMs),
        x(r.p50VsEtcd),
        x(r.p99VsEtcd),
        int(r.putsPerSec),
        int(r.serverCpuUsPerPut),
      ]),
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    `### ${c.fanoutWatchers} watchers on one follower (${c.fanoutChannels} channels, ${c.fanoutWatchers / c.fanoutPrefixes} watchers on each of ` +
      `${c.fanoutPrefixes} prefixes), one writer at ${c.fanoutRate} puts/s`,
    '',
    'RSS: VmRSS of the node serving the watchers before they open, once all are created, and after the writes. KiB/watcher: ' +
      'the growth once they are open, over the watchers (by round: round 1 opens them on a node fresh from loading the Range ' +
      'keys; later rounds on one whose heap the 64-caller phase already grew, which Node does not hand back at once).',
    '',
    table(
      ['system', 'watchers', 'open ms', 'RSS before MB', 'after open MB', 'after writes MB', 'KiB/watcher (by round)', 'puts/s', 'events', 'missing', 'dup / order', 'p50 ms', 'p99 ms', 'p50 × etcd', 'p99 × etcd', 'node CPU µs/event', 'errors'],
      report.fanout.map((r) => [
        r.system,
        String(r.watchers),
        int(r.openMs),
        r.rssBeforeMb.toFixed(0),
        r.rssAfterOpenMb.toFixed(0),
        r.rssAfterLoadMb.toFixed(0),
        r.kibPerWatcherByRound.length === 0 ? '—' : r.kibPerWatcherByRound.map((k) => (Number.isNaN(k) ? '—' : k.toFixed(1))).join(' / '),
        int(r.writesPerSec),
        String(r.counts.events),
        String(r.counts.missing),
        String(r.counts.duplicates + r.counts.outOfOrder),
        ms(r.p50Ms),
        ms(r.p99Ms),
        x(r.p50VsEtcd),
        x(r.p99VsEtcd),
        r.nodeCpuUsPerEvent === null ? '—' : r.nodeCpuUsPerEvent.toFixed(1),
        String(r.errors),
      ]),
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    `### Linearizable prefix Range of ${c.rangeKeys.toLocaleString('en-US')} keys (${c.valueBytes}-byte values)`,
    '',
    'Every key of the prefix read in full: replikit follows `continuation` while `more`; etcd answers in one response. p99 of ' +
      `${c.rangeRunsPerRound * c.rounds} runs is close to their maximum.`,
    '',
    table(
      ['system', 'keys', 'runs', 'p50 ms', 'p99 ms', 'keys/s', 'p50 × etcd', 'calls per Range', 'server CPU ms/Range', 'errors'],
      report.range.map((r) => [
        r.system,
        String(r.keys),
        String(r.runs),
        ms(r.p50Ms),
        ms(r.p99Ms),
        int(r.keysPerSec),
        x(r.p50VsEtcd),
        String(r.pages),
        r.serverCpuMsPerRange === null ? '—' : r.serverCpuMsPerRange.toFixed(1),
        String(r.errors),
      ]),
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
  );
  const problems = rangeWatchProblems(report);
  lines.push(
    problems.length === 0
      ? '**Check: ok**: every watcher saw every acknowledged put once, in revision order, and every Range read every key.'
      : `**Check: FAILED**: ${problems.join('; ')}.`,
    '',
  );
  for (const u of report.unavailable) lines.push(`- ${u.system} not measured here: ${u.reason}`);
  for (const n of report.notes) lines.push(`- ${n}`);
  if (report.unavailable.length + report.notes.length > 0) lines.push('');
  return lines;
}

function round(value: number | null, digits: number): number | null {
  if (value === null || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** The section as JSON: the rows with NaN as null, the config, the per-round samples, the check. */
export function rangeWatchJson(report: RangeWatchReport): unknown {
  const clean = (value: unknown): unknown =>
    typeof value === 'number' ? round(value, 3) : Array.isArray(value) ? value.map(clean) : value !== null && typeof value === 'object' ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clean(v)])) : value;
  return clean({ ...report, problems: rangeWatchProblems(report) });
}
