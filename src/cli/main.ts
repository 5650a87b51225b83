import { UsageError } from './args.js';

/** One CLI command: runs with the arguments after its name and returns the exit status. */
export interface Command {
  readonly summary: string;
  readonly usage: string;
  run(argv: readonly string[]): Promise<number>;
}

/** Commands load lazily so that `replikit check` does not pull in gRPC, nor `put` the store. */
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  serve: async () => (await import('./commands/serve.js')).serveCommand,
  put: async () => (await import('./commands/kv.js')).putCommand,
  get: async () => (await import('./commands/kv.js')).getCommand,
  delete: async () => (await import('./commands/kv.js')).deleteCommand,
  txn: async () => (await import('./commands/txn.js')).txnCommand,
  watch: async () => (await import('./commands/watch.js')).watchCommand,
  compact: async () => (await import('./commands/kv.js')).compactCommand,
  lease: async () => (await import('./commands/lease.js')).leaseCommand,
  lock: async () => (await import('./commands/lock.js')).lockCommand,
  elect: async () => (await import('./commands/elect.js')).electCommand,
  status: async () => (await import('./commands/status.js')).statusCommand,
  member: async () => (await import('./commands/member.js')).memberCommand,
  certs: async () => (await import('./commands/certs.js')).certsCommand,
  demo: async () => (await import('./commands/demo.js')).demoCommand,
  check: async () => (await import('./commands/check.js')).checkCommand,
  version: async () => (await import('./commands/version.js')).versionCommand,
};

function help(): string {
  return [
    'usage: replikit <command> [flags]',
    '',
    'commands:',
    ...Object.keys(COMMANDS).map((name) => `  ${name}`),
    '',
    'Run `replikit <command> --help` for the flags of one command.',
  ].join('\n');
}

/** Runs the CLI and returns its exit status: 0 success, 2 usage error, others per command. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help() + '\n');
    return name === undefined ? 2 : 0;
  }
  const load = COMMANDS[name];
  if (load === undefined) {
    process.stderr.write(`replikit: unknown command ${JSON.stringify(name)}\n\n${help()}\n`);
    return 2;
  }
  const command = await load();
  // Flags after `--` belong to another program (`replikit lock NAME -- COMMAND --help`).
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err: unknown) {
    if (err instanceof UsageError) {
      process.stderr.write(`replikit ${name}: ${err.message}\n\n${command.usage}\n`);
      return 2;
    }
    // An operating failure (a port in use, a peer that went away): one clear line, no stack trace.
    process.stderr.write(`replikit ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
