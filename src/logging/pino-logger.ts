import { pino, type DestinationStream } from 'pino';
import { DEFAULT_LOG_LEVEL, type LogFields, type Logger, type LogLevel } from './logger.js';

/** Options of {@link createPinoLogger}. */
export interface PinoLoggerOptions {
  /** Lines below this level are dropped. @default 'info' */
  readonly level?: LogLevel;
  /** Fields added to every line, such as the node id. */
  readonly base?: LogFields;
  /**
   * Where lines go. @default stderr, written synchronously: state changes are rare, and a line
   * written just before a kill -9 must not be lost in a buffer.
   */
  readonly destination?: DestinationStream;
}

/**
 * replikit's {@link Logger} on pino: one JSON object per line, in the same shape as
 * createConsoleJsonLogger (`{"level":"warn","time":"…","msg":"…",…fields}`, level names rather
 * than pino's numbers, ISO times, bigints as numbers), so that log tooling sees one format.
 * `serve` uses it; an application that already has a pino logger can adapt its own the same way.
 */
export function createPinoLogger(options: PinoLoggerOptions = {}): Logger {
  const p = pino(
    {
      level: options.level ?? DEFAULT_LOG_LEVEL,
      base: { pid: process.pid, ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 2, sync: true }),
  );
  const log = (level: LogLevel, message: string, fields: LogFields | undefined): void => {
    try {
      if (fields === undefined) p[level](message);
      else p[level]({ ...fields }, message);
    } catch {
      // Logging must never fail the caller (see Logger).
    }
  };
  return {
    debug: (message, fields) => log('debug', message, fields),
    info: (message, fields) => log('info', message, fields),
    warn: (message, fields) => log('warn', message, fields),
    error: (message, fields) => log('error', message, fields),
  };
}
