import type { LogFields, Logger, LogLevel } from '../../../src/logging/logger.js';

export interface LogRecord {
  readonly level: LogLevel;
  readonly message: string;
  readonly fields: LogFields | undefined;
}

/** A logger that keeps every line, so tests can assert what was logged and at which level. */
export class RecordingLogger implements Logger {
  readonly records: LogRecord[] = [];

  debug(message: string, fields?: LogFields): void {
    this.records.push({ level: 'debug', message, fields });
  }
  info(message: string, fields?: LogFields): void {
    this.records.push({ level: 'info', message, fields });
  }
  warn(message: string, fields?: LogFields): void {
    this.records.push({ level: 'warn', message, fields });
  }
  error(message: string, fields?: LogFields): void {
    this.records.push({ level: 'error', message, fields });
  }

  at(level: LogLevel): LogRecord[] {
    return this.records.filter((r) => r.level === level);
  }
}
