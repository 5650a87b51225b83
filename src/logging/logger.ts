/**
 * The one logging interface of replikit. Library code never writes to the console itself: the
 * embedding application passes a logger (its own, adapted in a few lines, or
 * {@link createConsoleJsonLogger}), and tests pass a recording one to assert what was logged.
 */

/** Structured facts attached to a log line; values should be JSON-serializable. */
export type LogFields = Readonly<Record<string, unknown>>;

/** A log level, from the most verbose to the most severe. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Levels in increasing severity, so that a threshold can be compared by index. */
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/**
 * A structured logger. Implementations must not throw: a failing log line must never fail the
 * request that wrote it. `message` is a full sentence for people; `fields` carry the values.
 */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** A logger that drops everything: the default wherever a logger is optional. */
export const silentLogger: Logger = Object.freeze({
  debug(): void {},
  info(): void {},
  warn(): void {},
  error(): void {},
});

/** The default threshold of {@link createConsoleJsonLogger}: debug lines are too many for production. */
export const DEFAULT_LOG_LEVEL: LogLevel = 'info';

/** Options of {@link createConsoleJsonLogger}. */
export interface ConsoleJsonLoggerOptions {
  /** Lines below this level are dropped. @default 'info' */
  readonly level?: LogLevel;
  /** Fields added to every line, such as the node id. */
  readonly base?: LogFields;
  /** Where a finished line goes; defaults to stderr, so that stdout stays free for command output. */
  readonly write?: (line: string) => void;
  /** The time stamped on each line, in milliseconds since the Unix epoch; injectable for tests. */
  readonly now?: () => number;
}

/**
 * A logger that writes one JSON object per line: `{"time":"…","level":"warn","msg":"…",…fields}`.
 * Fields that cannot be serialized (cycles, bigints) are replaced by their string form rather than
 * losing the line.
 */
export function createConsoleJsonLogger(options: ConsoleJsonLoggerOptions = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? DEFAULT_LOG_LEVEL);
  const base = options.base ?? {};
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const now = options.now ?? Date.now;

  const log = (level: LogLevel, message: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    const record = { time: new Date(now()).toISOString(), level, msg: message, ...base, ...fields };
    let line: string;
    try {
      line = JSON.stringify(record, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
    } catch {
      // A cyclic field cannot be serialized; the message itself is still worth having.
      line = JSON.stringify({ time: record.time, level, msg: message, fields: String(fields) });
    }
    try {
      write(line);
    } catch {
      // Logging must never fail the caller (see Logger); a closed stderr is not its problem.
    }
  };

  return {
    debug: (message, fields) => log('debug', message, fields),
    info: (message, fields) => log('info', message, fields),
    warn: (message, fields) => log('warn', message, fields),
    error: (message, fields) => log('error', message, fields),
  };
}
