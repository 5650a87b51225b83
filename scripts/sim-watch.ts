/**
 * `npm run sim:watch -- [--seeds N] [--from S] [--broken drop-event-on-resume]`
 *
 * The watch campaign: seeds of the CP Watch and Range simulation (src/sim/watch-workload.ts; npm
 * test runs seeds 1..300), one after another, each checked by the watch checker, the Range model
 * and the acknowledged writes. Prints a summary line; for a failing seed, its violation and the
 * command that replays it. Exit status: 0 no violation, 1 a violation, 2 a bad command line; with
 * --broken (a DELIBERATELY BROKEN client that drops the first change after each resume), 0 only
 * when the campaign caught it.
 */
import { addStats } from '../src/sim/seed-check.js';
import { runWatchSeed } from '../src/sim/watch-workload.js';

const USAGE = 'usage: npm run sim:watch -- [--seeds N (default 1000)] [--from S (default 1)] [--broken drop-event-on-resume]';

function parse(argv: readonly string[]): { seeds: number; from: number; broken: boolean } {
  let seeds = 1000;
  let from = 1;
  let broken = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--broken' && value === 'drop-event-on-resume') {
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
    throw new Error(flag === '--help' ? USAGE : `${flag} ${value ?? ''}: expected --seeds N or --from S with a whole number ≥ 1\n${USAGE}`);
  }
  return { seeds, from, broken };
}

async function main(): Promise<number> {
  let options: { seeds: number; from: number; broken: boolean };
  try {
    options = parse(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  const started = performance.now();
  const totals: Record<string, number> = {};
  for (let seed = options.from; seed < options.from + options.seeds; seed++) {
    const result = await runWatchSeed(seed, { unsafeDropEventOnResume: options.broken });
    addStats(totals, result.stats);
    if (result.violation !== undefined) {
      if (options.broken) {
        process.stdout.write(`the broken variant was caught on seed ${seed}: ${result.violation.kind}\n${result.violation.explanation}\n`);
        return 0;
      }
      process.stdout.write(`seed ${seed}: ${result.violation.kind}\n${result.violation.explanation}\nreplay: REPLIKIT_SEED=${seed} npx vitest run test/sim/cp-watch.test.ts\n`);
      return 1;
    }
    if ((seed - options.from + 1) % 100 === 0) process.stderr.write(`${seed - options.from + 1}/${options.seeds} seeds\n`);
  }
  if (options.broken) {
    process.stdout.write(`the broken variant was NOT caught in ${options.seeds} seeds\n`);
    return 1;
  }
  const shown = ['watchesOpened', 'watchResumes', 'watchEvents', 'rangesOk', 'rangesPast', 'committedRevisions', 'leaderChanges', 'crashes', 'partitions', 'snapshotsInstalled'];
  process.stdout.write(`watch campaign: ${options.seeds} seeds (${options.from}..${options.from + options.seeds - 1}) in ${((performance.now() - started) / 1000).toFixed(1)} s, 0 violations; ${shown.map((k) => `${k} ${totals[k] ?? 0}`).join(', ')}\n`);
  return 0;
}

process.exitCode = await main();
