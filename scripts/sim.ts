/**
 * `npm run sim -- --policy cp|ap|causal|all [--seeds N] [--from S] [--workers W] [--membership] [--broken VARIANT]`
 *
 * A long simulation campaign on every core (see src/sim/campaign.ts): a progress bar on stderr,
 * then a summary on stdout, and for a failing seed its fault schedule, the shortest history
 * window that shows the violation, and the command that replays it. Exit status: 0 when no seed
 * failed, 1 when one did, 2 for a bad command line; with --broken, 0 only when the campaign
 * caught the broken variant (found at least one violation for each policy run).
 */
import { availableParallelism } from 'node:os';
import { runCampaign, type CampaignProgress, type CampaignResult, type SeedViolationReport } from '../src/sim/campaign.js';
import type { BrokenVariant, SimPolicy } from '../src/sim/seed-check.js';
import { describeCausalOperation } from '../src/testing/causal-violation.js';
import type { Operation } from '../src/testing/history.js';
import { describeOperation } from '../src/testing/linearizability.js';

const POLICIES: readonly SimPolicy[] = ['cp', 'ap', 'causal'];
/** Each broken variant, its option and the policies it applies to. */
const BROKEN: Record<string, { readonly variant: BrokenVariant; readonly policies: readonly SimPolicy[] }> = {
  'skip-recovery': { variant: { skipRecovery: true }, policies: ['cp', 'ap', 'causal'] },
  'commit-without-majority': { variant: { commitWithoutMajority: true }, policies: ['cp'] },
  'read-index-without-quorum': { variant: { readIndexWithoutQuorum: true }, policies: ['cp'] },
  'skip-dependency-check': { variant: { skipDependencyCheck: true }, policies: ['causal'] },
  'read-in-flight': { variant: { readInFlight: true }, policies: ['causal'] },
  'ignore-clock-high-water': { variant: { ignoreClockHighWater: true }, policies: ['cp', 'ap', 'causal'] },
  // These three run with membership changes (--membership is implied).
  'overlapping-changes': { variant: { overlappingChanges: true }, policies: ['cp'] },
  'promote-lagging': { variant: { promoteLagging: true }, policies: ['causal'] },
  'count-removed': { variant: { countRemoved: true }, policies: ['ap'] },
};
/** Seeds are taken modulo 2^32 by the random generator, so larger ones would repeat smaller ones. */
const MAX_SEED = 2 ** 32 - 1;
/** How many violations are printed in full; the others are listed by seed. */
const SHOWN_IN_FULL = 3;
/** Fault counters, in the order the summary prints them. */
const FAULTS = [
  'crashes',
  'crashesWithWritesInFlight',
  'amnesia',
  'clockStepsBack',
  'clockStepsForward',
  'syncFailures',
  'slowDisks',
  'powerLosses',
  'partitions',
  'recoveries',
] as const;
const COMPLETIONS = ['ok', 'fail', 'info'] as const;

const USAGE = `usage: npm run sim -- --policy cp|ap|causal|all [options]

Runs a simulation campaign: seeds of one policy's simulated cluster under faults (partitions,
crashes, power losses, amnesia, clock steps, slow disks, failed syncs, lossy networks), each
checked by that policy's checkers, spread over worker threads.

  --policy P      cp, ap, causal, or all (the three in turn); required
  --seeds N       how many seeds to run (default 1000)
  --from S        the first seed (default 1): runs S … S+N-1
  --workers W     worker threads (default: all cores, ${availableParallelism()} here)
  --membership    change the cluster's membership meanwhile: nodes join as learners and are
                  promoted, voters and learners are removed and retired, dead ones replaced
                  (src/sim/membership-nemesis.ts); fewer operations per client, spread out
  --broken V      run a DELIBERATELY BROKEN variant, which the campaign should catch:
                    skip-recovery          a node with an empty disk serves at once, as new (every
                                           policy; on CP it votes again, having forgotten its votes)
                    commit-without-majority  the Raft leader commits on its own copy alone (cp)
                    read-index-without-quorum  the leader reads without confirming it leads (cp)
                    skip-dependency-check  causal writes applied before their dependencies (causal)
                    read-in-flight         replicas answer with writes not yet durable (causal)
                    ignore-clock-high-water  a restarted node's clock may go back (every policy)
                    overlapping-changes    a membership change taken while another is uncommitted
                                           (cp; caught in the membership's own Raft log)
                    promote-lagging        learners promoted before they caught up (causal, whose
                                           new members copy from every peer)
                    count-removed          a removed voter's acknowledgements still count (ap)
                  the last three change the membership (--membership is implied)
                  the exit status is then 0 only if the campaign found at least one violation
  --help          this text

Progress goes to stderr, the summary and any violations to stdout. A violation is printed with
its seed, fault schedule, a short history window and the command that replays it.
Exit status: 0 no violation (with --broken: the variant was caught), 1 violations (with
--broken: the variant was not caught), 2 bad command line, 130 interrupted.`;

class UsageError extends Error {}

interface Options {
  readonly policies: readonly SimPolicy[];
  readonly seeds: number;
  readonly from: number;
  readonly workers: number;
  readonly broken?: string;
  readonly membership: boolean;
}

function parseArgs(argv: readonly string[]): Options | 'help' {
  const values = new Map<string, string>();
  const valued = new Set(['--policy', '--seeds', '--from', '--workers', '--broken']);
  let membership = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    if (arg === '--membership') {
      if (membership) throw new UsageError('--membership given twice');
      membership = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf('=');
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    if (!valued.has(flag)) throw new UsageError(`unknown flag ${flag}`);
    if (values.has(flag)) throw new UsageError(`${flag} given twice`);
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else value = argv[++i];
    if (value === undefined || value === '') throw new UsageError(`${flag} needs a value`);
    values.set(flag, value);
  }
  const positive = (flag: string, fallback: number): number => {
    const text = values.get(flag);
    if (text === undefined) return fallback;
    const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, not ${JSON.stringify(text)}`);
    return n;
  };
  const policy = values.get('--policy');
  if (policy === undefined) throw new UsageError('--policy is required (cp, ap, causal or all)');
  if (policy !== 'all' && !POLICIES.includes(policy as SimPolicy)) {
    throw new UsageError(`--policy must be cp, ap, causal or all, not ${JSON.stringify(policy)}`);
  }
  const policies = policy === 'all' ? POLICIES : [policy as SimPolicy];
  const seeds = positive('--seeds', 1000);
  const from = positive('--from', 1);
  if (from > MAX_SEED) throw new UsageError(`--from must be at most ${MAX_SEED}, not ${from}`);
  if (from + seeds - 1 > MAX_SEED) throw new UsageError(`--from ${from} with --seeds ${seeds} goes past the last seed, ${MAX_SEED}`);
  const workers = positive('--workers', availableParallelism());
  const broken = values.get('--broken');
  if (broken !== undefined) {
    const known = BROKEN[broken];
    if (known === undefined) throw new UsageError(`--broken must be ${Object.keys(BROKEN).join(', ')}, not ${JSON.stringify(broken)}`);
    const outside = policies.filter((p) => !known.policies.includes(p));
    if (outside.length > 0) throw new UsageError(`--broken ${broken} applies to --policy ${known.policies.join(' or ')} only, not ${outside.join(', ')}`);
  }
  return { policies, seeds, from, workers, membership, ...(broken === undefined ? {} : { broken }) };
}

/** The progress line on stderr: redrawn in place on a terminal, else a line every 10 %. */
class ProgressBar {
  readonly #tty = process.stderr.isTTY === true;
  #lastDraw = 0;
  #lastTenth = 0;
  #drawn = false;

  constructor(private readonly label: string) {}

  update(p: CampaignProgress): void {
    const rate = p.done / Math.max(p.elapsedMs / 1000, 1e-3);
    const line = (width: number): string => {
      const filled = Math.round((p.done / p.total) * width);
      const eta = rate > 0 ? Math.ceil((p.total - p.done) / rate) : 0;
      return (
        `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.floor((p.done / p.total) * 100)}% ` +
        `${p.done}/${p.total} seeds, ${rate.toFixed(1)} seeds/s, ${p.violations} ${p.violations === 1 ? 'violation' : 'violations'}` +
        (p.done < p.total ? `, ETA ${eta} s` : '')
      );
    };
    if (this.#tty) {
      const now = performance.now();
      if (p.done < p.total && now - this.#lastDraw < 100) return;
      this.#lastDraw = now;
      const columns = process.stderr.columns ?? 100;
      process.stderr.write(`\r\x1b[K${line(Math.max(10, Math.min(30, columns - 90)))}`);
      this.#drawn = true;
      return;
    }
    const tenth = Math.floor((p.done * 10) / p.total);
    if (tenth > this.#lastTenth) {
      this.#lastTenth = tenth;
      process.stderr.write(`${line(20)}\n`);
    }
  }

  /** Leaves the terminal line clean for what is printed next. */
  end(): void {
    if (this.#tty && this.#drawn) process.stderr.write('\n');
    this.#drawn = false;
  }
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function indent(text: string, by = '  '): string {
  return text
    .split('\n')
    .map((l) => by + l)
    .join('\n');
}

/** Virtual milliseconds to 0.01 ms, for printing. */
function round(t: number): number {
  return t === Infinity ? t : Math.round(t * 100) / 100;
}

function describe(policy: SimPolicy, op: Operation, showKey: boolean): string {
  const shown = { ...op, call: round(op.call), return: round(op.return) };
  if (policy === 'causal') return describeCausalOperation(shown);
  return `${showKey ? `${JSON.stringify(op.key)}: ` : ''}${describeOperation(shown)}`;
}

function replayCommand(v: SeedViolationReport, broken: string | undefined, membership: boolean): string {
  // A broken variant of the membership implies --membership: the replay needs only the variant.
  const implied = broken !== undefined && ['overlapping-changes', 'promote-lagging', 'count-removed'].includes(broken);
  return `npm run sim -- --policy ${v.policy} --seeds 1 --from ${v.seed}${membership && !implied ? ' --membership' : ''}${broken === undefined ? '' : ` --broken ${broken}`}`;
}

function printViolation(v: SeedViolationReport, n: number, total: number, broken: string | undefined, membership: boolean): void {
  const out: string[] = [];
  out.push('');
  out.push(`──── violation ${n} of ${total}: policy ${v.policy}, seed ${v.seed}, ${v.kind}${v.key === undefined ? '' : ` (key ${JSON.stringify(v.key)})`}`);
  out.push('explanation:');
  out.push(indent(v.explanation));
  out.push(`fault schedule (${plural(v.schedule.length, 'action')}, virtual ms):`);
  const width = Math.max(0, ...v.schedule.map((e) => e.atMs.toFixed(2).length));
  for (const e of v.schedule) out.push(`  ${e.atMs.toFixed(2).padStart(width)}  ${e.action}`);
  const ops = v.window.operations;
  out.push(`history window (${plural(ops.length, 'operation')} of the run's ${v.operationCount}): ${v.window.description}`);
  const named = new Set(v.window.named);
  const keys = new Set(ops.map((op) => op.key));
  for (const op of ops) out.push(`  ${named.has(op.id) ? '*' : ' '} ${describe(v.policy, op, keys.size > 1)}`);
  out.push(`replay: ${replayCommand(v, broken, membership)}`);
  process.stdout.write(out.join('\n') + '\n');
}

function printSummary(r: CampaignResult): void {
  const seconds = r.elapsedMs / 1000;
  const t = r.totals;
  const listed = new Set<string>([...FAULTS, ...COMPLETIONS]);
  const others = Object.keys(t).filter((k) => !listed.has(k)).sort();
  const lines = [
    `summary (${r.policy}): ${plural(r.seedsRun, 'seed')} run, ${plural(r.violations.length, 'violation')}, ` +
      `${seconds.toFixed(1)} s elapsed, ${(r.seedsRun / Math.max(seconds, 1e-3)).toFixed(1)} seeds/s` +
      (r.interrupted
        ? ` (interrupted: seeds ${r.from}..${r.from + r.seedsRun - 1} ran; resume with --from ${r.from + r.seedsRun} --seeds ${r.seeds - r.seedsRun})`
        : ''),
    `  faults: ${FAULTS.map((k) => `${k} ${t[k] ?? 0}`).join(', ')}`,
    `  operations: ${COMPLETIONS.map((k) => `${k} ${t[k] ?? 0}`).join(', ')}`,
  ];
  if (others.length > 0) lines.push(`  also: ${others.map((k) => `${k} ${t[k]}`).join(', ')}`);
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(): Promise<number> {
  let options: Options | 'help';
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`sim: ${error.message}\nRun with --help for the flags.\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const { policies, seeds, from, workers, broken, membership } = options;
  const variant: BrokenVariant | undefined =
    broken === undefined ? (membership ? { membershipChanges: true } : undefined) : { ...BROKEN[broken]!.variant, ...(membership ? { membershipChanges: true } : {}) };

  // Ctrl-C once: stop handing out seeds and report what ran; twice: quit now.
  const abort = new AbortController();
  process.on('SIGINT', () => {
    if (abort.signal.aborted) process.exit(130);
    abort.abort();
    process.stderr.write('\nsim: interrupted; finishing the seeds under way (Ctrl-C again to quit now)\n');
  });

  let status = 0;
  const caught: [SimPolicy, number][] = [];
  for (const policy of policies) {
    if (abort.signal.aborted) break;
    const last = from + seeds - 1;
    process.stdout.write(
      `== ${policy}: seeds ${from}..${last} on ${plural(Math.min(workers, seeds), 'worker')}` +
        (membership ? ', with membership changes' : '') +
        (broken === undefined ? '' : ` — DELIBERATELY BROKEN variant ${broken}: violations are expected`) +
        '\n',
    );
    const bar = new ProgressBar(policy);
    let result: CampaignResult;
    try {
      result = await runCampaign({
        policy,
        seeds,
        from,
        workers,
        ...(variant === undefined ? {} : { broken: variant }),
        onProgress: (p) => bar.update(p),
        signal: abort.signal,
      });
    } finally {
      bar.end();
    }
    printSummary(result);
    const { violations } = result;
    violations.slice(0, SHOWN_IN_FULL).forEach((v, i) => printViolation(v, i + 1, violations.length, broken, membership));
    if (violations.length > SHOWN_IN_FULL) {
      const rest = violations.slice(SHOWN_IN_FULL);
      const seedList = rest.slice(0, 100).map((v) => `${v.seed} (${v.kind})`).join(', ');
      process.stdout.write(`\nother failing seeds (${rest.length}): ${seedList}${rest.length > 100 ? ', …' : ''}\n`);
    }
    if (violations.length > 0) process.stdout.write('\n');
    caught.push([policy, violations.length]);
    if (result.interrupted) status = 130;
    else if (broken === undefined && violations.length > 0) status = Math.max(status, 1);
  }

  if (broken !== undefined && status !== 130) {
    const missed = caught.filter(([, n]) => n === 0).map(([p]) => p);
    for (const [p, n] of caught) {
      process.stdout.write(
        n > 0
          ? `broken variant ${broken} caught for ${p}: ${plural(n, 'violation')} found, as expected\n`
          : `broken variant ${broken} NOT caught for ${p}: no violation in ${plural(seeds, 'seed')}; the checks missed a known bug\n`,
      );
    }
    status = missed.length === 0 ? 0 : 1;
    process.stdout.write(`exit ${status}: with --broken, success means the campaign found at least one violation${policies.length > 1 ? ' for each policy' : ''}\n`);
  }
  return status;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`sim: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
