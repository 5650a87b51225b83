/**
 * A small, strict flag parser for the CLI: `--flag value`, `--flag=value`, boolean switches and
 * repeatable flags. Unknown flags and missing values are usage errors that name the flag.
 */

/** A mistake in how the command was called; printed with the usage text, exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface FlagSpec {
  /** Takes no value. */
  readonly boolean?: boolean;
  /** May be given more than once; the values are collected in order. */
  readonly repeated?: boolean;
}

export interface ParsedArgs {
  /** The last value of each single-valued flag. */
  readonly flags: ReadonlyMap<string, string>;
  /** Every value of each repeated flag. */
  readonly lists: ReadonlyMap<string, readonly string[]>;
  /** The boolean switches that were given. */
  readonly switches: ReadonlySet<string>;
  /** Arguments that are not flags, in order. */
  readonly positionals: readonly string[];
}

/** Parses `argv` against `spec` (flag names without the leading dashes). */
export function parseArgs(argv: readonly string[], spec: Readonly<Record<string, FlagSpec>>): ParsedArgs {
  const flags = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const switches = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '--') {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const flag = spec[name];
    if (flag === undefined) {
      const known = Object.keys(spec).map((n) => `--${n}`).join(', ');
      throw new UsageError(`unknown flag --${name} (known: ${known || 'none'})`);
    }
    if (flag.boolean) {
      if (eq !== -1) throw new UsageError(`flag --${name} takes no value`);
      switches.add(name);
      continue;
    }
    let value: string;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new UsageError(`flag --${name} needs a value`);
      value = next;
      i++;
    }
    if (flag.repeated) {
      const list = lists.get(name) ?? [];
      list.push(value);
      lists.set(name, list);
    } else {
      flags.set(name, value);
    }
  }
  return { flags, lists, switches, positionals };
}

/** Parses a decimal integer flag value within [min, max], or throws a UsageError naming the flag. */
export function intFlag(name: string, text: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, not ${JSON.stringify(text)}`);
  const value = Number(text);
  if (value < min || value > max) throw new UsageError(`--${name} must be between ${min} and ${max}, not ${value}`);
  return value;
}

/** Parses `HOST:PORT` (IPv6 as `[::1]:PORT`), or throws a UsageError naming the flag. */
export function hostPortFlag(name: string, text: string): string {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (m === null || Number(m[2]) > 65535) {
    throw new UsageError(`--${name} must be HOST:PORT (e.g. 127.0.0.1:7001), not ${JSON.stringify(text)}`);
  }
  return text;
}
