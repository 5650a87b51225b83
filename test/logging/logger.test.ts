import { describe, expect, it } from 'vitest';
import { createConsoleJsonLogger, silentLogger } from '../../src/logging/logger.js';

describe('createConsoleJsonLogger', () => {
  const now = (): number => Date.UTC(2025, 0, 2, 3, 4, 5);

  it('writes one JSON object per line with time, level, message, base and fields', () => {
    const lines: string[] = [];
    const logger = createConsoleJsonLogger({ write: (l) => lines.push(l), now, base: { node: 'n1' } });
    logger.warn('clock too far ahead', { aheadMs: 2003, big: 10n });
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      { time: '2025-01-02T03:04:05.000Z', level: 'warn', msg: 'clock too far ahead', node: 'n1', aheadMs: 2003, big: '10' },
    ]);
  });

  it('drops lines below its level (info by default)', () => {
    const lines: string[] = [];
    const logger = createConsoleJsonLogger({ write: (l) => lines.push(l), now });
    logger.debug('noise');
    logger.info('kept');
    createConsoleJsonLogger({ write: (l) => lines.push(l), now, level: 'error' }).warn('dropped');
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['kept']);
  });

  it('never throws: not on cyclic fields, not when the sink fails', () => {
    const lines: string[] = [];
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    createConsoleJsonLogger({ write: (l) => lines.push(l), now }).error('cyclic', cyclic);
    expect((JSON.parse(lines[0]!) as { msg: string }).msg).toBe('cyclic');
    const failing = createConsoleJsonLogger({
      write: () => {
        throw new Error('EPIPE');
      },
    });
    expect(() => failing.error('lost')).not.toThrow();
    expect(() => silentLogger.error('nothing')).not.toThrow();
  });
});
