import { readFile } from 'node:fs/promises';
import { intFlag, parseArgs, UsageError } from '../args.js';
import type { Command } from '../main.js';
import { HistoryFormatError, parseJsonLines } from '../../testing/history.js';
import type { History } from '../../testing/history.js';
import { parseJepsenLog } from '../../testing/jepsen-log.js';
import { checkLinearizability, DEFAULT_TIMEOUT_MS } from '../../testing/linearizability.js';
import type { CheckResult } from '../../testing/linearizability.js';

/** The longest time budget accepted: a day. A search that needs more is not going to finish. */
const MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000;

type Format = 'jsonl' | 'jepsen';
const PARSERS: Readonly<Record<Format, (text: string, file: string) => History>> = {
  jsonl: parseJsonLines,
  jepsen: parseJepsenLog,
};

const USAGE = `usage: replikit check [--format jsonl|jepsen] [--timeout-ms N] [--explain] FILE...

Checks that each history FILE is linearizable, each key as a register (read, write, cas, delete),
and prints one line per file to stdout: FILE<TAB>linearizable, FILE<TAB>not linearizable or
FILE<TAB>unknown. Why a file is not linearizable, or why its verdict is unknown, goes to stderr;
so does FILE:LINE: message for a file that cannot be read or parsed (it gets no stdout line).

flags:
  --format jsonl|jepsen  jsonl: one JSON event per line (see docs/checker.md); jepsen: the
                         operation log of Jepsen's etcd test. Default: jepsen for a FILE ending
                         in .log, jsonl for any other.
  --timeout-ms N         the time budget of each file's check, in milliseconds (default
                         ${DEFAULT_TIMEOUT_MS}); past it the verdict is unknown, never a guess.
  --explain              explain each violation in full: the longest linearizable prefix found
                         and the operations that could not come after it. Without it, one line.

exit status: 0 every file is linearizable; 1 some file is not (and every other one has a
verdict); 2 a usage error, a file that cannot be read or parsed, or an unknown verdict.`;

export const checkCommand: Command = {
  summary: 'check that recorded histories are linearizable',
  usage: USAGE,
  async run(argv) {
    const args = parseArgs(argv, { format: {}, 'timeout-ms': {}, explain: { boolean: true } });
    const format = args.flags.get('format');
    if (format !== undefined && format !== 'jsonl' && format !== 'jepsen') {
      throw new UsageError(`--format must be jsonl or jepsen, not ${JSON.stringify(format)}`);
    }
    const timeoutText = args.flags.get('timeout-ms');
    const timeoutMs =
      timeoutText === undefined ? DEFAULT_TIMEOUT_MS : intFlag('timeout-ms', timeoutText, 0, MAX_TIMEOUT_MS);
    const explain = args.switches.has('explain');
    if (args.positionals.length === 0) throw new UsageError('no history FILE given');

    let violations = 0;
    let undecided = 0;
    for (const file of args.positionals) {
      const chosen: Format = (format as Format | undefined) ?? (file.endsWith('.log') ? 'jepsen' : 'jsonl');
      let result: CheckResult;
      try {
        const history = PARSERS[chosen](await readFile(file, 'utf8'), file);
        result = checkLinearizability(history.operations, { timeoutMs });
      } catch (err: unknown) {
        undecided++;
        process.stderr.write(`${describeError(file, err)}\n`);
        continue;
      }
      switch (result.verdict) {
        case 'linearizable':
          process.stdout.write(`${file}\tlinearizable\n`);
          break;
        case 'not-linearizable':
          violations++;
          process.stdout.write(`${file}\tnot linearizable\n`);
          process.stderr.write(explainViolations(file, result, explain));
          break;
        case 'unknown':
          undecided++;
          process.stdout.write(`${file}\tunknown\n`);
          for (const line of (result.explanation ?? 'unknown').split('\n')) process.stderr.write(`${file}: ${line}\n`);
          process.stderr.write(`${file}: a larger --timeout-ms may decide it\n`);
          break;
      }
    }
    return undecided > 0 ? 2 : violations > 0 ? 1 : 0;
  },
};

/** One line per violating key, or each violation's full account with `explain`. */
function explainViolations(file: string, result: CheckResult, explain: boolean): string {
  let out = '';
  for (const key of result.keys) {
    const v = key.violation;
    if (v === undefined) continue;
    const [head = '', why = ''] = v.message.split('\n');
    if (explain) {
      out += `${file}: ${head}\n${v.message.split('\n').slice(1).map((l) => `  ${l}\n`).join('')}`;
    } else {
      out += `${file}: ${head} ${why}\n`;
    }
  }
  return out;
}

/** `FILE:LINE: message` for a format error, `FILE: cannot read: ...` for I/O; never a stack. */
function describeError(file: string, err: unknown): string {
  if (err instanceof HistoryFormatError) return err.message;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string') return `${file}: cannot read: ${(err as Error).message}`;
  return `${file}: ${err instanceof Error ? err.message : String(err)}`;
}
