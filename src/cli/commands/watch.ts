import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { ReplikitClient } from '../../client/replikit-client.js';
import type { WatchEvent } from '../../client/types.js';
import { ReplikitError } from '../../errors.js';
import { parseArgs, UsageError } from '../args.js';
import { CLIENT_FLAGS, clientSettings, TLS_CLIENT_USAGE } from '../client.js';
import type { Command } from '../main.js';

/** A flag that must be a positive whole number (a revision, a count), or a UsageError naming it. */
export function positiveIntFlag(name: string, text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < 1) {
    throw new UsageError(`--${name} must be a positive integer, not ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** Prints a failed client call as `STATUS_NAME: message` and returns exit status 1. */
export function reportClientError(command: string, err: unknown): number {
  if (err instanceof ReplikitError) {
    const cause = err.cause as Partial<ServiceError> | undefined;
    const name = typeof cause?.code === 'number' ? (Status[cause.code] ?? String(cause.code)) : err.kind.toUpperCase().replace(/-/g, '_');
    process.stderr.write(`replikit ${command}: ${name}: ${err.message}\n`);
    return 1;
  }
  throw err;
}

/** Writes to stdout, waiting when the pipe is full (a reader that does not keep up slows the watch down). */
export function writeOut(text: string): Promise<void> {
  if (process.stdout.write(text)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      process.stdout.off('drain', done);
      process.stdout.off('close', done);
      process.stdout.off('error', done);
      resolve();
    };
    process.stdout.once('drain', done);
    process.stdout.once('close', done);
    process.stdout.once('error', done);
  });
}

function eventLine(e: WatchEvent, json: boolean): string {
  const type = e.type === 'put' ? 'PUT' : 'DELETE';
  const key = e.key.toString('utf8');
  const value = e.value.toString('utf8');
  if (json) return JSON.stringify({ type, key, value, revision: e.revision }) + '\n';
  return e.type === 'put' ? `${type} ${key} ${value} ${e.revision}\n` : `${type} ${key} ${e.revision}\n`;
}

const SPEC = { ...CLIENT_FLAGS, keyspace: {}, prefix: { boolean: true }, rev: {} } as const;

export const watchCommand: Command = {
  summary: 'print the changes to a key or prefix as they happen, until SIGINT/SIGTERM',
  usage: [
    `usage: replikit watch --target HOST:PORT [--keyspace K] [--prefix] [--rev R] [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE} KEY`,
    '  One line per change: `PUT KEY VALUE REVISION` or `DELETE KEY REVISION` (--json: {"type","key","value","revision"}).',
    '  --prefix: every key that starts with KEY.  --rev R: from revision R (default: changes from now).',
    '  Resumes without a gap when the node drops the stream; exits 0 on SIGINT or SIGTERM, 1 when the',
    '  watch fails (e.g. OUT_OF_RANGE: revision R is compacted).',
  ].join('\n'),
  async run(argv) {
    const args = parseArgs(argv, SPEC);
    const settings = clientSettings(args);
    if (args.positionals.length !== 1) throw new UsageError(`watch takes KEY; got ${args.positionals.length} argument(s)`);
    const key = args.positionals[0]!;
    const prefix = args.switches.has('prefix');
    if (key === '' && !prefix) throw new UsageError('KEY is empty; give a key, or --prefix with an empty KEY for every key');
    const rev = args.flags.has('rev') ? positiveIntFlag('rev', args.flags.get('rev')!) : 0;
    const keyspace = args.flags.get('keyspace') ?? 'default';

    let stopped = false;
    let client: ReplikitClient | undefined;
    let cancel: () => void = () => {};
    const stop = () => {
      stopped = true;
      cancel();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      client = await ReplikitClient.connect({ endpoints: [settings.target], credentials: settings.credentials, timeoutMs: settings.timeoutMs });
      if (stopped) return 0;
      const watch = client.keyspace(keyspace).watch(key, {
        prefix,
        fromRevision: rev,
        onCreated: ({ endpoint, revision }) => process.stderr.write(`watching ${JSON.stringify(key)}${prefix ? ' (prefix)' : ''} on ${endpoint}: changes after revision ${revision}\n`),
        onResume: ({ error, to, fromRevision }) => process.stderr.write(`watch interrupted (${error.message}); resuming on ${to} from revision ${fromRevision}\n`),
      });
      cancel = () => watch.cancel();
      for await (const item of watch) {
        if (item.kind !== 'events') continue;
        for (const e of item.events) await writeOut(eventLine(e, settings.json));
      }
      return 0;
    } catch (err: unknown) {
      if (stopped) return 0;
      return reportClientError('watch', err);
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      client?.close();
    }
  },
};
