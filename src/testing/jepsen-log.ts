/**
 * Reads the operation log that Jepsen's etcd test writes: a single register, one line per event,
 *
 *   INFO  jepsen.util - 3	:invoke	:cas	[1 4]
 *
 * i.e. `PROCESS :TYPE :F VALUE` after `jepsen.util - `, separated by tabs (or by spaces, where a
 * log was re-indented). TYPE is invoke, ok, fail or info; F is read (VALUE nil on invoke, a
 * number or nil on ok), write (a number) or cas (`[FROM TO]`). A `:fail` definitely had no effect
 * (a cas whose compare failed, a read that timed out); an `:info` (`:timed-out`) may have taken
 * effect, and its process never completes it. The line number serves as the time.
 */
import { HistoryFormatError, pairOperations } from './history.js';
import type { EventType, EventValue, History, HistoryEvent, OpFunction } from './history.js';

/** Jepsen's etcd test uses one register; it is checked under this key. */
export const JEPSEN_KEY = '';

/** Anything logged by jepsen.util, e.g. `INFO  jepsen.util - 3	:invoke	:read	nil`. */
const UTIL_LINE = /jepsen\.util\s+-\s+(.*)$/;
/**
 * The shape of an operation after `jepsen.util - `: a process, then a keyword. jepsen.util lines
 * without it (e.g. "Relative time begins now") are other messages and are skipped.
 */
const OP_SHAPE = /^(\S+)\s+:\S/;
const OP_FIELDS = /^(\S+)\s+:(\S+)\s+:(\S+)(?:\s+(.*?))?\s*$/;
const INTEGER = /^-?\d+$/;
const PAIR = /^\[\s*(-?\d+)\s+(-?\d+)\s*\]$/;

const TYPES: ReadonlySet<string> = new Set<EventType>(['invoke', 'ok', 'fail', 'info']);
/** The etcd test has no delete. */
type JepsenFunction = Exclude<OpFunction, 'delete'>;
const FUNCTIONS: ReadonlySet<string> = new Set<JepsenFunction>(['read', 'write', 'cas']);

/**
 * Parses a Jepsen etcd log into a history on key {@link JEPSEN_KEY}. Lines that are not
 * jepsen.util operation lines, and the nemesis's operations, are skipped; a malformed operation
 * line throws a {@link HistoryFormatError} naming `file` and the line.
 */
export function parseJepsenLog(text: string, file?: string): History {
  const events: HistoryEvent[] = [];
  const lines: number[] = [];
  // The value each process invoked with: `:info` and `:fail` lines often carry `:timed-out`
  // instead of repeating it.
  const invoked = new Map<number, EventValue>();
  const rows = text.split('\n');
  for (let i = 0; i < rows.length; i++) {
    const lineNo = i + 1;
    const util = UTIL_LINE.exec(rows[i]!.replace(/\r$/, ''));
    if (util === null) continue;
    const rest = util[1]!;
    if (!OP_SHAPE.test(rest) || rest.startsWith(':nemesis')) continue;
    const error = (message: string): HistoryFormatError => new HistoryFormatError(message, file, lineNo);
    const m = OP_FIELDS.exec(rest);
    if (m === null) throw error(`malformed operation line ${JSON.stringify(rest)} (expected PROCESS :TYPE :F VALUE)`);
    const [, proc = '', type = '', f = '', valueText = ''] = m;
    if (!INTEGER.test(proc)) throw error(`process ${JSON.stringify(proc)} is not a number`);
    if (!TYPES.has(type)) throw error(`unknown operation type :${type} (expected :invoke, :ok, :fail or :info)`);
    if (!FUNCTIONS.has(f)) throw error(`unknown function :${f} (expected :read, :write or :cas)`);
    if (valueText === '') throw error(`missing value after :${f}`);
    const process = Number(proc);
    const parsed = parseValue(f as JepsenFunction, type as EventType, valueText, invoked.get(process) ?? null);
    if (typeof parsed === 'string') throw error(parsed);
    if (type === 'invoke') invoked.set(process, parsed.v);
    events.push({ process, type: type as EventType, f: f as JepsenFunction, key: JEPSEN_KEY, value: parsed.v, time: lineNo });
    lines.push(lineNo);
  }
  return { events, operations: pairOperations(events, { ...(file === undefined ? {} : { file }), lines }) };
}

/**
 * The event value of `text` for `f` and `type`, or an error message. A completion that is not
 * `ok` may carry a keyword such as `:timed-out`; it then stands for the invoked value.
 */
function parseValue(f: JepsenFunction, type: EventType, text: string, invokedValue: EventValue): { v: EventValue } | string {
  const loose = type === 'fail' || type === 'info';
  if (loose && text.startsWith(':')) return { v: f === 'read' ? null : invokedValue };
  switch (f) {
    case 'read':
      if (text === 'nil') return { v: null };
      if (type === 'ok' && INTEGER.test(text)) return { v: Number(text) };
      return type === 'ok' ? `a read returns a number or nil, not ${text}` : `a read's ${type} carries nil, not ${text}`;
    case 'write':
      return INTEGER.test(text) ? { v: Number(text) } : `a write's value is a number, not ${text}`;
    case 'cas': {
      const pair = PAIR.exec(text);
      return pair !== null ? { v: [Number(pair[1]), Number(pair[2])] as const } : `a cas's value is [FROM TO], not ${text}`;
    }
  }
}
