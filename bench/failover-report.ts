/**
 * The leader-kill report as pure functions: campaign results → summary rows → verdict (what fails
 * the run) → terminal table, Markdown and JSON. No I/O here.
 */
import type { CampaignResult, KillRecord, SystemKind } from './failover-campaign.js';

export interface LeaderKillReport {
  readonly startedAt: string;
  readonly wallClockSeconds: number;
  readonly machine: string;
  readonly command: string;
  readonly settings: {
    readonly kills: number;
    readonly writers: number;
    readonly callDeadlineMs: number;
    readonly recoveryBoundMs: number;
    readonly settleMs: number;
    readonly probeIntervalMs: number;
  };
  readonly results: readonly CampaignResult[];
  /** Systems asked for that could not run, and why (e.g. etcd not installable). */
  readonly unavailable: readonly { readonly system: SystemKind; readonly reason: string }[];
  /** Systems that were available but failed to start or crashed the campaign. */
  readonly errors: readonly { readonly system: SystemKind; readonly error: string }[];
  /** What a reader must know to trust the figures, e.g. that dist/ was rebuilt during the run. */
  readonly notes: readonly string[];
}

export interface SummaryRow {
  readonly system: SystemKind;
  readonly kills: number;
  /** Kills followed by an acknowledged write within the bound. */
  readonly recovered: number;
  readonly recoveryP50Ms: number | null;
  readonly recoveryMaxMs: number | null;
  readonly acknowledged: number;
  readonly lost: number;
  readonly unreadable: number;
  readonly unknown: number;
  readonly unknownApplied: number;
  readonly refused: number;
  readonly refusedApplied: number;
}

/** The nearest-rank percentile `p` (0–100) of `xs`; null for none. */
export function percentile(xs: readonly number[], p: number): number | null {
  if (xs.length === 0) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export function summarize(result: CampaignResult): SummaryRow {
  const recoveries = result.kills.flatMap((k) => (k.recoveryMs === null ? [] : [k.recoveryMs]));
  return {
    system: result.system,
    kills: result.kills.length,
    recovered: recoveries.length,
    recoveryP50Ms: percentile(recoveries, 50),
    recoveryMaxMs: recoveries.length === 0 ? null : Math.max(...recoveries),
    acknowledged: result.writes.acknowledged,
    lost: result.readBack.lost,
    unreadable: result.readBack.unreadable,
    unknown: result.writes.unknown,
    unknownApplied: result.readBack.unknownApplied,
    refused: result.writes.refused,
    refusedApplied: result.readBack.refusedApplied,
  };
}

/**
 * Every reason the run fails, one sentence each; none means it passed. Any system: an acknowledged
 * write lost or unreadable, a kill not recovered from within the bound, fewer kills than asked
 * (the campaign stopped early). replikit also: a write refused as "nothing was done" that took
 * effect (its API promises UNAVAILABLE is safe to retry). etcd losing a write would more likely
 * be a bug of this harness than of etcd; it fails the run all the same, to be looked at.
 */
export function verdict(report: LeaderKillReport): string[] {
  const problems: string[] = [];
  for (const e of report.errors) problems.push(`${e.system}: ${e.error}`);
  for (const r of report.results) {
    const s = summarize(r);
    if (s.lost > 0) problems.push(`${r.system}: ${s.lost} acknowledged writes lost (missing or another value)`);
    if (s.unreadable > 0) problems.push(`${r.system}: ${s.unreadable} acknowledged writes could not be read back`);
    if (s.recovered < s.kills) problems.push(`${r.system}: ${s.kills - s.recovered} kills were not followed by an acknowledged write within ${report.settings.recoveryBoundMs} ms`);
    if (r.stoppedEarly !== null) problems.push(`${r.system}: stopped after ${s.kills} of ${report.settings.kills} kills: ${r.stoppedEarly}`);
    if (r.system === 'replikit' && s.refusedApplied > 0) problems.push(`${r.system}: ${s.refusedApplied} writes answered UNAVAILABLE ("nothing was done") took effect`);
  }
  return problems;
}

const ms = (x: number | null) => (x === null ? '—' : x >= 100 ? String(Math.round(x)) : x.toFixed(1));

function table(header: readonly string[], rows: readonly (readonly string[])[], rightAligned: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const cell = (text: string, i: number) => (rightAligned.has(i) ? text.padStart(widths[i]!) : text.padEnd(widths[i]!));
  return [
    `| ${header.map(cell).join(' | ')} |`,
    `|${widths.map((w, i) => (rightAligned.has(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ];
}

const SUMMARY_HEADER = ['system', 'kills', 'recovery p50 ms', 'recovery max ms', 'acknowledged', 'lost', 'unknown (applied)', 'refused (applied)'] as const;

function summaryCells(s: SummaryRow): string[] {
  return [
    s.system,
    s.recovered === s.kills ? String(s.kills) : `${s.kills} (${s.kills - s.recovered} not recovered)`,
    ms(s.recoveryP50Ms),
    ms(s.recoveryMaxMs),
    String(s.acknowledged),
    s.unreadable > 0 ? `${s.lost} (+${s.unreadable} unreadable)` : String(s.lost),
    `${s.unknown} (${s.unknownApplied})`,
    `${s.refused} (${s.refusedApplied})`,
  ];
}

/** The summary table for the terminal (the same Markdown table), then what was not run, then the verdict. */
export function renderTerminal(report: LeaderKillReport): string {
  const rows = report.results.map((r) => summaryCells(summarize(r)));
  const lines = table(SUMMARY_HEADER, rows, new Set([1, 2, 3, 4, 5]));
  for (const u of report.unavailable) lines.push(`${u.system}: not available (${u.reason})`);
  for (const n of report.notes) lines.push(`NOTE: ${n}`);
  const problems = verdict(report);
  lines.push(problems.length === 0 ? 'PASS: every acknowledged write was read back, every kill recovered from' : problems.map((p) => `FAIL: ${p}`).join('\n'));
  return `${lines.join('\n')}\n`;
}

function killRows(kills: readonly KillRecord[]): string[] {
  return table(
    ['kill', 'victim', 'term', 'at s', 'recovery ms', 'refused / unknown in window', 'restart ms', 'catch-up ms', 'new leader'],
    kills.map((k) => [
      String(k.kill),
      k.victim,
      k.term,
      (k.killedAtMs / 1000).toFixed(1),
      k.recoveryMs === null ? 'none' : ms(k.recoveryMs),
      `${k.refusedInWindow} / ${k.unknownInWindow}`,
      k.restartMs === null ? '—' : String(k.restartMs),
      k.catchUpMs === null ? '—' : String(k.catchUpMs),
      k.newLeader ?? '—',
    ]),
    new Set([0, 3, 4, 6, 7]),
  );
}

export function renderMarkdown(report: LeaderKillReport): string {
  const s = report.settings;
  const out: string[] = [
    '# Leader-kill campaign',
    '',
    `${report.startedAt}, ${Math.round(report.wallClockSeconds)} s wall clock. ${report.machine}. Command: \`${report.command}\`.`,
    '',
    `Each system: ${s.writers} callers in a closed loop plus one probe write every ${s.probeIntervalMs} ms (so that callers stuck in calls the dead leader held do not hide the recovery), each write a key of its own with a value of its own, sent to the live members in turn; ` +
      `${s.kills} times the leader every member names is SIGKILLed, then restarted from its data directory and waited for until it has applied what the cluster had committed when it came back; ` +
      `before each kill, every call sent before the last catch-up has ended (none left hanging by the last kill), then ${s.settleMs} ms with every member up and a write acknowledged. ` +
      `**Recovery** is the time from the kill to the first acknowledgement of a write sent after it, at the client (bound ${s.recoveryBoundMs} ms). ` +
      `Call deadline ${s.callDeadlineMs} ms. At the end every write is read back linearizably from the whole cluster.`,
    '',
    'Outcomes as the client sees them: **acknowledged** (OK), **refused** (nothing happened: the call never reached a member, or replikit answered UNAVAILABLE), ' +
      '**unknown** (a deadline, a dropped connection, a write its leader died holding, etcd\'s "leader changed": it may have taken effect; "applied" says how many did). ' +
      '**Lost**: acknowledged, then missing or holding another value.',
    '',
    ...table(SUMMARY_HEADER, report.results.map((r) => summaryCells(summarize(r))), new Set([1, 2, 3, 4, 5])),
    '',
  ];
  for (const u of report.unavailable) out.push(`- ${u.system}: not available: ${u.reason}`);
  for (const e of report.errors) out.push(`- ${e.system}: failed: ${e.error}`);
  for (const n of report.notes) out.push(`- **Note**: ${n}`);
  if (report.unavailable.length + report.errors.length + report.notes.length > 0) out.push('');
  const problems = verdict(report);
  out.push(problems.length === 0 ? '**PASS**: every acknowledged write was read back and every kill recovered from.' : problems.map((p) => `- **FAIL**: ${p}`).join('\n'), '');
  for (const r of report.results) {
    out.push(`## ${r.system}`, '', `${r.description}. ${r.durationSeconds} s, read-back ${r.readBack.seconds} s.`, '');
    if (r.stoppedEarly !== null) out.push(`**Stopped early**: ${r.stoppedEarly}`, '');
    out.push(...killRows(r.kills), '');
    const errors = Object.entries(r.errors);
    if (errors.length > 0) out.push('Failed writes by answer:', '', ...errors.map(([label, n]) => `- ${label}: ${n}`), '');
    if (r.readBack.lostExamples.length > 0) {
      out.push('Lost (first few):', '', ...r.readBack.lostExamples.map((l) => `- \`${l.key}\`: acknowledged \`${l.acknowledged}\`, read ${l.found === null ? 'absent' : `\`${l.found}\``}`), '');
    }
    if (r.readBack.refusedAppliedExamples.length > 0) {
      out.push('Refused but applied (first few): ' + r.readBack.refusedAppliedExamples.map((k) => `\`${k}\``).join(', '), '');
    }
  }
  return out.join('\n');
}

export function toJson(report: LeaderKillReport): string {
  return `${JSON.stringify({ ...report, summary: report.results.map(summarize), verdict: verdict(report) }, null, 2)}\n`;
}
