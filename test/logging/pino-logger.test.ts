import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createPinoLogger } from '../../src/logging/pino-logger.js';

function sink(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

describe('createPinoLogger', () => {
  it('writes the same line shape as the console logger: level names, ISO time, msg, base fields, bigints', async () => {
    const { lines, stream } = sink();
    const logger = createPinoLogger({ base: { node: 'n1' }, destination: stream });
    logger.warn('quorum lost for keyspace default', { keyspace: 'default', big: 10n });
    logger.debug('dropped at info');
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', msg: 'quorum lost for keyspace default', node: 'n1', keyspace: 'default', big: 10 });
    expect(new Date(lines[0]!['time'] as string).toISOString()).toBe(lines[0]!['time']);
  });

  it('honours the level and never throws on cyclic fields', async () => {
    const { lines, stream } = sink();
    const logger = createPinoLogger({ level: 'error', destination: stream });
    logger.warn('dropped');
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => logger.error('cyclic', cyclic)).not.toThrow();
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((l) => l['msg'])).toEqual(['cyclic']);
  });
});
