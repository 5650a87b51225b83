/**
 * `npm run sim:watch -- [--seeds N] [--from S] [--broken drop-event-on-resume]`
 * `npm run sim:lock -- [--seeds N] [--from S] [--broken expire-by-follower-clock]`
 *
 * The campaigns of the simulations that check themselves seed by seed: Watch and Range on CP
 * (src/sim/watch-workload.ts; npm test runs seeds 1..300) and locks on leases
 * (src/sim/lock-workload.ts; npm test runs seeds 1..100). Seeds run one after another, each
 * checked (the watch checker, the Range model and the acknowledged writes; the lock checker).
 * Prints a summary line; for a failing seed, its violation and the command that replays it. Exit
 * status: 0 no violation, 1 a violation, 2 a bad command line; with --broken (a DELIBERATELY
 * BROKEN variant), 0 only when the campaign caught it.
 */
import { runLockSeed } from '../src/sim/lock-workload.js';
import { addStats } from '../src/sim/seed-check.js';
import { runWatchSeed } from '../src/sim/watch-workload.js';

interface Workload {
  readonly broken: string;
  readonly testFile: string;
  readonly shown: readonly string[];
  run(seed: number, broken: boolean): Promise<{ stats: Record<string, number>; violation?: { kind: string; explanation: string } }>;
}

const WORKLOADS: Record<string, Workload> = {
  watch: {
    broken: 'drop-event-on-resume',
    testFile: 'test/sim/cp-watch.test.ts',
    shown: ['watchesOpened', 'watchResumes', 'watchEvents', 'rangesOk', 'rangesPast', 'committedRevisions', 'leaderChanges', 'crashes', 'partitions', 'snapshotsInstalled'],
    run: (seed, broken) => runWatchSeed(seed, { unsafeDropEventOnResume: broken }),
  },
  lock: {
    broken: 'expire-by-follower-clock',
    testFile: 'test/sim/cp-lock.test.ts',
    shown: ['acquisitions', 'holderDeaths', 'handoversAfterDeath', 'leasesLostWhileHolding', 'leaderKills', 'leaderChanges', 'crashes', 'partitions', 'clockStepsBack', 'clockStepsForward', 'amnesia'],
    run: (seed, broken) => runLockSeed(seed, { unsafeExpireByFollowerClock: broken }),
  },
};

const name = process.argv[2] ?? '';
const workload = WORKLOADS[name];
const usage = (w: string) => `usage: npm run sim:${w} -- [--seeds N (default 1000)] [--from S (default 1)] [--broken ${WORKLOADS[w]?.broken ?? '…'}]`;

function parse(argv: readonly string[], w: Workload): { seeds: number; from: number; broken: boolean } {
  let seeds = 1000;
  let from = 1;
  let broken = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--broken' && value === w.broken) {
      broken = true;
      i++;
      continue;
    }
    const n = Number(value);
    if ((flag === '--seeds' || flag === '--from') && value !== undefined && Number.isSafeInteger(n) && n >= 1 && n <= 2 ** 32 - 1) {
      if (flag === '--seeds') seeds = n;
      else from = n;
      i++;
      continue;
    }
    throw new Error(flag === '--help' ? usage(name) : `${flag} ${value ?? ''}: expected --seeds N or --from S with a whole number ≥ 1, or --broken ${w.broken}\n${usage(name)}`);
  }
  return { seeds, from, broken };
}

async function main(): Promise<number> {
  if (workload === undefined) {
    process.stderr.write(`the first argument names the workload: ${Object.keys(WORKLOADS).join(' or ')} (npm run sim:watch, npm run sim:lock)\n`);
    return 2;
  }
  let options: { seeds: number; from: number; broken: boolean };
  try {
    options = parse(process.argv.slice(3), workload);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  const started = performance.now();
  const totals: Record<string, number> = {};
  for (let seed = options.from; seed < options.from + options.seeds; seed++) {
    const result = await workload.run(seed, options.broken);
    addStats(totals, result.stats);
    if (result.violation !== undefined) {
      if (options.broken) {
        process.stdout.write(`the broken variant was caught on seed ${seed}: ${result.violation.kind}\n${result.violation.explanation}\n`);
        return 0;
      }
      process.stdout.write(`seed ${seed}: ${result.violation.kind}\n${result.violation.explanation}\nreplay: REPLIKIT_SEED=${seed} npx vitest run ${workload.testFile}\n`);
      return 1;
    }
    if ((seed - options.from + 1) % 100 === 0) process.stderr.write(`${seed - options.from + 1}/${options.seeds} seeds\n`);
  }
  if (options.broken) {
    process.stdout.write(`the broken variant was NOT caught in ${options.seeds} seeds\n`);
    return 1;
  }
  process.stdout.write(`${name} campaign: ${options.seeds} seeds (${options.from}..${options.from + options.seeds - 1}) in ${((performance.now() - started) / 1000).toFixed(1)} s, 0 violations; ${workload.shown.map((k) => `${k} ${totals[k] ?? 0}`).join(', ')}\n`);
  return 0;
}

process.exitCode = await main();
