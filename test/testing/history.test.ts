import { describe, expect, it } from 'vitest';
import { HistoryFormatError, HistoryRecorder, parseJepsenLog, parseJsonLines } from '../../src/testing/index.js';

const line = (o: Record<string, unknown>): string => JSON.stringify(o);
const ev = (process: number | string, type: string, f: string, value: unknown, time: number, key = 'x') =>
  line({ process, type, f, key, value, time });

/** The HistoryFormatError that parsing `text` throws. */
function formatError(parse: () => unknown): HistoryFormatError {
  try {
    parse();
  } catch (err: unknown) {
    if (err instanceof HistoryFormatError) return err;
    throw err;
  }
  throw new Error('expected a HistoryFormatError');
}

describe('HistoryRecorder', () => {
  it('records events in its clock and round-trips through JSON Lines', () => {
    let now = 100;
    const recorder = new HistoryRecorder(() => now++);
    const w = recorder.invoke(1, 'write', 'x', 'v1');
    const r = recorder.invoke('client-2', 'read', 'x');
    w.ok();
    r.ok('v1');
    recorder.invoke(1, 'cas', 'x', ['v1', 'v2']).fail();
    recorder.invoke(1, 'delete', 'x').info();
    const pending = recorder.invoke(3, 'write', 'y', 7);
    void pending;

    const events = recorder.events();
    expect(events[0]).toEqual({ process: 1, type: 'invoke', f: 'write', key: 'x', value: 'v1', time: 100 });
    expect(events[3]).toEqual({ process: 'client-2', type: 'ok', f: 'read', key: 'x', value: 'v1', time: 103 });
    const parsed = parseJsonLines(recorder.toJsonLines());
    expect(parsed.events).toEqual(events);
    expect(parsed.operations.map((op) => [op.f, op.outcome, op.call, op.return])).toEqual([
      ['write', 'ok', 100, 102],
      ['read', 'ok', 101, 103],
      ['cas', 'fail', 104, 105],
      ['delete', 'info', 106, Infinity],
      ['write', 'info', 108, Infinity],
    ]);
    expect(recorder.operations()).toEqual(parsed.operations.map(({ line: _line, ...op }) => op));
  });

  it('refuses a second invoke while one is pending, a double completion, and a clock going back', () => {
    let now = 10;
    const recorder = new HistoryRecorder(() => now);
    const h = recorder.invoke(1, 'read', 'x');
    expect(() => recorder.invoke(1, 'write', 'x', 1)).toThrow(/pending/);
    h.ok(null);
    expect(() => h.ok(null)).toThrow(/twice/);
    now = 5;
    expect(() => recorder.invoke(2, 'read', 'x')).toThrow(/backwards/);
  });

  it('lets a process invoke again after an info completion', () => {
    const recorder = new HistoryRecorder(() => 0);
    recorder.invoke(1, 'write', 'x', 1).info();
    recorder.invoke(1, 'read', 'x').ok(1);
    expect(recorder.operations().map((op) => op.outcome)).toEqual(['info', 'ok']);
  });
});

describe('parseJsonLines', () => {
  const valid = [ev(1, 'invoke', 'write', 1, 0), ev(1, 'ok', 'write', 1, 1)];

  it('skips blank lines and gives each operation its invocation line', () => {
    const { operations } = parseJsonLines(['', valid[0], '', valid[1], ''].join('\n'));
    expect(operations).toEqual([
      { id: 0, process: 1, f: 'write', key: 'x', value: 1, call: 0, return: 1, outcome: 'ok', line: 2 },
    ]);
  });

  it.each([
    ['malformed JSON', '{"process": 1,', /malformed JSON/],
    ['unknown type', ev(1, 'done', 'write', 1, 2), /unknown "type" "done"/],
    ['unknown f', ev(1, 'invoke', 'append', 1, 2), /unknown "f" "append"/],
    ['a bad process', line({ process: 1.5, type: 'invoke', f: 'read', key: 'x', value: null, time: 2 }), /"process"/],
    ['a missing time', line({ process: 1, type: 'invoke', f: 'read', key: 'x', value: null }), /"time"/],
    ['a non-string key', line({ process: 1, type: 'invoke', f: 'read', key: 3, value: null, time: 2 }), /"key"/],
    ['a cas value that is not a pair', ev(2, 'invoke', 'cas', 1, 2), /\[from, to\]/],
    ['an object value', ev(2, 'invoke', 'write', { a: 1 }, 2), /a write's value/],
    ['a completion without an invocation', ev(2, 'ok', 'read', 1, 2), /ok of read by process 2 without an invocation/],
    ['a second invoke while pending', ev(1, 'invoke', 'read', null, 2), /pending/],
    ['a completion of another f', ev(3, 'ok', 'read', null, 2), /completes a write/],
    ['a completion on another key', ev(3, 'ok', 'write', 5, 2, 'y'), /completes an operation on key "x"/],
    ['a completion with another value', ev(3, 'ok', 'write', 6, 2), /invoked with 5/],
    ['a completion before its invocation', ev(3, 'ok', 'write', 5, -1), /precedes its invocation/],
  ])('rejects %s, naming the file and line', (_name, bad, message) => {
    const setup = [ev(3, 'invoke', 'write', 5, 0), ev(1, 'invoke', 'read', null, 1)];
    // Process 3's write and process 1's read are pending when the bad line comes.
    const text = [...setup, bad].join('\n');
    const err = formatError(() => parseJsonLines(text, 'h.jsonl'));
    expect(err.file).toBe('h.jsonl');
    expect(err.line).toBe(3);
    expect(err.message).toMatch(/^h\.jsonl:3: /);
    expect(err.detail).toMatch(message);
  });
});

describe('parseJepsenLog', () => {
  const log = [
    'INFO  jepsen.util - 0\t:invoke\t:read\tnil',
    'INFO  jepsen.util - 1\t:invoke\t:cas\t[1 4]',
    'INFO  jepsen.core - Worker 2 starting',
    'INFO  jepsen.util - 0\t:ok\t:read\tnil',
    'INFO  jepsen.util - :nemesis\t:info\t:start\tnil',
    'INFO  jepsen.util - 2   :invoke :write  3',
    'INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]',
    'INFO  jepsen.util - 2\t:info\t:write\t:timed-out',
    'INFO  jepsen.util - 3\t:invoke\t:read\tnil',
    'INFO  jepsen.util - 3\t:fail\t:read\t:timed-out',
    '',
  ].join('\n');

  it('reads operations on one register, with line numbers as time', () => {
    const { operations } = parseJepsenLog(log, 'etcd.log');
    expect(operations.map((op) => [op.process, op.f, op.value, op.call, op.return, op.outcome, op.key])).toEqual([
      [0, 'read', null, 1, 4, 'ok', ''],
      [1, 'cas', [1, 4], 2, 7, 'fail', ''],
      [2, 'write', 3, 6, Infinity, 'info', ''],
      [3, 'read', null, 9, 10, 'fail', ''],
    ]);
  });

  it.each([
    ['an unknown type', 'INFO  jepsen.util - 5\t:done\t:read\tnil', /unknown operation type :done/],
    ['an unknown function', 'INFO  jepsen.util - 5\t:invoke\t:append\t3', /unknown function :append/],
    ['a malformed cas', 'INFO  jepsen.util - 5\t:invoke\t:cas\t[1]', /\[FROM TO\]/],
    ['a malformed write', 'INFO  jepsen.util - 5\t:invoke\t:write\tabc', /a write's value is a number/],
    ['a missing value', 'INFO  jepsen.util - 5\t:invoke\t:write', /missing value/],
    ['a completion without an invocation', 'INFO  jepsen.util - 5\t:ok\t:read\t3', /without an invocation/],
  ])('rejects %s with the file and line', (_name, bad, message) => {
    const err = formatError(() => parseJepsenLog(`${log}${bad}\n`, 'etcd.log'));
    expect(err.message).toMatch(/^etcd\.log:11: /);
    expect(err.detail).toMatch(message);
  });
});
