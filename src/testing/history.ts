/**
 * The history format the linearizability checker reads: JSON Lines, one event per line,
 *
 *   {"process": 1, "type": "invoke", "f": "write", "key": "x", "value": 3, "time": 120}
 *
 * An operation is an `invoke` followed, on the same process, by at most one completion: `ok`
 * (it took effect and returned), `fail` (it certainly had no effect) or `info` (its outcome is
 * unknown). Values are strings, numbers or null (absent) and compare by JSON equality.
 */

/** A register value; null means the key is absent. */
export type Value = string | number | null;

/** The operations a register supports. */
export type OpFunction = 'read' | 'write' | 'cas' | 'delete';

/** `invoke` starts an operation; the other three complete it. */
export type EventType = 'invoke' | 'ok' | 'fail' | 'info';

/** How an operation ended. A never-completed operation counts as `info`: its outcome is unknown. */
export type Outcome = 'ok' | 'fail' | 'info';

/** A client of the system under test. Each process runs one operation at a time. */
export type ProcessId = number | string;

/**
 * An event's value, by `f`: read — the value read on `ok` (null when absent), null otherwise;
 * write — the value written; cas — `[from, to]`; delete — null.
 */
export type EventValue = Value | readonly [Value, Value];

/** One line of a history. */
export interface HistoryEvent {
  readonly process: ProcessId;
  readonly type: EventType;
  readonly f: OpFunction;
  readonly key: string;
  readonly value: EventValue;
  /** A monotonic timestamp in any unit (nanoseconds, milliseconds or a line number). */
  readonly time: number;
}

/** An invocation paired with its completion. */
export interface Operation {
  /** The operation's index in its history, in order of invocation. */
  readonly id: number;
  readonly process: ProcessId;
  readonly f: OpFunction;
  readonly key: string;
  /** As in {@link EventValue}; for a read, the value it returned (null when unknown). */
  readonly value: EventValue;
  /** When it was invoked. */
  readonly call: number;
  /** When it completed; Infinity for `info` and for an operation that never completed. */
  readonly return: number;
  readonly outcome: Outcome;
  /** The source line of its invocation, when it was read from a file. */
  readonly line?: number;
}

/** A parsed history: its events in order and the operations they pair into. */
export interface History {
  readonly events: readonly HistoryEvent[];
  readonly operations: readonly Operation[];
}

/** A history file that cannot be read as one; names the file and line when known. */
export class HistoryFormatError extends Error {
  override readonly name = 'HistoryFormatError';
  /** The message without the `file:line: ` prefix. */
  readonly detail: string;

  constructor(
    detail: string,
    readonly file?: string,
    readonly line?: number,
  ) {
    super(`${location(file, line)}${detail}`);
    this.detail = detail;
  }
}

function location(file: string | undefined, line: number | undefined): string {
  if (file !== undefined && line !== undefined) return `${file}:${line}: `;
  if (file !== undefined) return `${file}: `;
  if (line !== undefined) return `line ${line}: `;
  return '';
}

const EVENT_TYPES: ReadonlySet<string> = new Set<EventType>(['invoke', 'ok', 'fail', 'info']);
const OP_FUNCTIONS: ReadonlySet<string> = new Set<OpFunction>(['read', 'write', 'cas', 'delete']);

/** True when `a` and `b` are the same value or the same `[from, to]` pair, by JSON equality. */
export function sameValue(a: EventValue, b: EventValue): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a[0] === b[0] && a[1] === b[1];
  }
  return a === b;
}

/** `3`, `"x"`, `null` or `[1, 2]`, for messages. */
export function formatValue(value: EventValue): string {
  if (Array.isArray(value)) return `[${formatValue(value[0])}, ${formatValue(value[1])}]`;
  return JSON.stringify(value);
}

function isValue(v: unknown): v is Value {
  return v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

/**
 * Checks that `value` fits `f` and `type`, and returns it; throws a bare message otherwise. Only
 * a read's `ok` carries a result, so a read's other events carry null.
 */
function checkValue(f: OpFunction, type: EventType, value: unknown): EventValue {
  switch (f) {
    case 'read':
      if (type === 'ok') {
        if (!isValue(value)) throw new Error(`a read returns a string, a number or null, not ${JSON.stringify(value)}`);
      } else if (value !== null) {
        throw new Error(`a read's ${type} event has value null, not ${JSON.stringify(value)}`);
      }
      return value;
    case 'write':
      if (!isValue(value)) throw new Error(`a write's value is a string, a number or null, not ${JSON.stringify(value)}`);
      return value;
    case 'cas':
      if (!Array.isArray(value) || value.length !== 2 || !isValue(value[0]) || !isValue(value[1])) {
        throw new Error(`a cas's value is [from, to] of strings, numbers or nulls, not ${JSON.stringify(value)}`);
      }
      return [value[0], value[1]] as const;
    case 'delete':
      if (value !== null) throw new Error(`a delete's value is null, not ${JSON.stringify(value)}`);
      return null;
  }
}

/** Validates one decoded JSON line as an event, or throws a bare message. */
function toEvent(raw: unknown): HistoryEvent {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('an event is a JSON object');
  const o = raw as Record<string, unknown>;
  const { process, type, f, key, time } = o;
  if (!(typeof process === 'string' || (typeof process === 'number' && Number.isSafeInteger(process)))) {
    throw new Error(`"process" is an integer or a string, not ${JSON.stringify(process)}`);
  }
  if (typeof type !== 'string' || !EVENT_TYPES.has(type)) {
    throw new Error(`unknown "type" ${JSON.stringify(type)} (expected invoke, ok, fail or info)`);
  }
  if (typeof f !== 'string' || !OP_FUNCTIONS.has(f)) {
    throw new Error(`unknown "f" ${JSON.stringify(f)} (expected read, write, cas or delete)`);
  }
  if (typeof key !== 'string') throw new Error(`"key" is a string, not ${JSON.stringify(key)}`);
  if (typeof time !== 'number' || !Number.isFinite(time)) {
    throw new Error(`"time" is a finite number, not ${JSON.stringify(time)}`);
  }
  // A missing value means null: JSON writers often drop null fields.
  const value = checkValue(f as OpFunction, type as EventType, o['value'] ?? null);
  return { process, type: type as EventType, f: f as OpFunction, key, value, time };
}

/** Where events came from, so that pairing errors can name the file and line. */
export interface EventSource {
  readonly file?: string;
  /** The source line of each event, index for index. */
  readonly lines?: readonly number[];
}

/**
 * Pairs each invocation with its process's next completion. A completion must match its
 * invocation's f and key (and its value, except for a read) and must not come before it; a
 * process may not invoke while its previous operation is pending. An invocation left without a
 * completion at the end is treated as `info`: it may have taken effect.
 */
export function pairOperations(events: readonly HistoryEvent[], source: EventSource = {}): Operation[] {
  const fail = (index: number, message: string): never => {
    const line = source.lines?.[index];
    throw new HistoryFormatError(line === undefined ? `event ${index + 1}: ${message}` : message, source.file, line);
  };
  interface Pending {
    readonly index: number;
    readonly event: HistoryEvent;
    readonly slot: number;
  }
  const pending = new Map<string, Pending>();
  const slots: (Operation | Pending)[] = [];
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const who = processKey(e.process);
    const open = pending.get(who);
    if (e.type === 'invoke') {
      if (open !== undefined) {
        const since = where(source, open.index);
        fail(i, `process ${formatValue(e.process)} invokes ${e.f} while its ${open.event.f} from ${since} is pending`);
      }
      const p: Pending = { index: i, event: e, slot: slots.length };
      pending.set(who, p);
      slots.push(p);
      continue;
    }
    if (open === undefined) fail(i, `${e.type} of ${e.f} by process ${formatValue(e.process)} without an invocation`);
    const call = open!.event;
    if (e.f !== call.f) fail(i, `${e.type} of ${e.f} completes a ${call.f} by process ${formatValue(e.process)}`);
    if (e.key !== call.key) {
      fail(i, `${e.type} on key ${JSON.stringify(e.key)} completes an operation on key ${JSON.stringify(call.key)}`);
    }
    if (e.f !== 'read' && !sameValue(e.value, call.value)) {
      fail(i, `${e.type} of ${e.f} has value ${formatValue(e.value)} but was invoked with ${formatValue(call.value)}`);
    }
    if (e.time < call.time) fail(i, `completion at time ${e.time} precedes its invocation at time ${call.time}`);
    pending.delete(who);
    slots[open!.slot] = operation(open!.slot, call, e, source.lines?.[open!.index]);
  }
  return slots.map((s, id) => ('index' in s ? operation(id, s.event, undefined, source.lines?.[s.index]) : s));
}

function where(source: EventSource, index: number): string {
  const line = source.lines?.[index];
  return line !== undefined ? `line ${line}` : `event ${index + 1}`;
}

/** Numbers and strings are different processes: 1 is not "1". */
function processKey(p: ProcessId): string {
  return typeof p === 'number' ? `n${p}` : `s${p}`;
}

function operation(id: number, call: HistoryEvent, done: HistoryEvent | undefined, line: number | undefined): Operation {
  const outcome: Outcome = done === undefined ? 'info' : (done.type as Outcome);
  const value = call.f === 'read' ? (outcome === 'ok' ? done!.value : null) : call.value;
  const op: Operation = {
    id,
    process: call.process,
    f: call.f,
    key: call.key,
    value,
    call: call.time,
    return: outcome === 'info' ? Infinity : done!.time,
    outcome,
  };
  return line === undefined ? op : { ...op, line };
}

/**
 * Parses a JSON Lines history. Blank lines are skipped; every other line must be a valid event,
 * and the events must pair into operations. Throws a {@link HistoryFormatError} naming `file`
 * and the line.
 */
export function parseJsonLines(text: string, file?: string): History {
  const events: HistoryEvent[] = [];
  const lines: number[] = [];
  const rows = text.split('\n');
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!.trim();
    if (row === '') continue;
    let raw: unknown;
    try {
      raw = JSON.parse(row);
    } catch (err: unknown) {
      throw new HistoryFormatError(`malformed JSON: ${(err as Error).message}`, file, i + 1);
    }
    try {
      events.push(toEvent(raw));
    } catch (err: unknown) {
      throw new HistoryFormatError((err as Error).message, file, i + 1);
    }
    lines.push(i + 1);
  }
  return { events, operations: pairOperations(events, { ...(file === undefined ? {} : { file }), lines }) };
}

/** Serializes events as JSON Lines, one per line, each line ending in a newline. */
export function toJsonLines(events: readonly HistoryEvent[]): string {
  return events
    .map((e) => JSON.stringify({ process: e.process, type: e.type, f: e.f, key: e.key, value: e.value, time: e.time }) + '\n')
    .join('');
}

/** Completes one recorded invocation; exactly one of its methods may be called, once. */
export interface OperationHandle {
  /** It took effect. A read passes the value it read (omitted means absent). */
  ok(value?: Value): void;
  /** It certainly had no effect (e.g. a cas whose compare failed, or a refused request). */
  fail(): void;
  /** Its outcome is unknown (e.g. a timeout): it may take effect at any later time, or never. */
  info(): void;
}

/**
 * Records a history as a test workload runs. The clock is injected so that a simulation can
 * record in virtual time; it must never go backwards.
 */
export class HistoryRecorder {
  readonly #clock: () => number;
  readonly #events: HistoryEvent[] = [];
  readonly #pending = new Set<string>();

  constructor(clock: () => number) {
    this.#clock = clock;
  }

  /** Records an invocation. `value` is as in {@link EventValue}: null for read and delete. */
  invoke(process: ProcessId, f: OpFunction, key: string, value: EventValue = null): OperationHandle {
    const who = processKey(process);
    if (this.#pending.has(who)) {
      throw new Error(`process ${formatValue(process)} invokes ${f} while its previous operation is pending`);
    }
    const invoked = checkValue(f, 'invoke', value);
    this.#record({ process, type: 'invoke', f, key, value: invoked });
    this.#pending.add(who);
    let done = false;
    const complete = (type: Exclude<EventType, 'invoke'>, result: EventValue): void => {
      if (done) throw new Error(`process ${formatValue(process)} completes its ${f} twice`);
      done = true;
      this.#pending.delete(who);
      this.#record({ process, type, f, key, value: result });
    };
    return {
      ok: (result?: Value) => {
        if (f === 'read') return complete('ok', checkValue('read', 'ok', result ?? null));
        if (result !== undefined && !sameValue(result, invoked)) {
          throw new Error(`${f} invoked with ${formatValue(invoked)} completes with ${formatValue(result)}`);
        }
        return complete('ok', invoked);
      },
      fail: () => complete('fail', f === 'read' ? null : invoked),
      info: () => complete('info', f === 'read' ? null : invoked),
    };
  }

  #record(e: Omit<HistoryEvent, 'time'>): void {
    const time = this.#clock();
    const last = this.#events[this.#events.length - 1];
    if (last !== undefined && time < last.time) {
      throw new Error(`the recorder's clock went backwards, from ${last.time} to ${time}`);
    }
    this.#events.push({ ...e, time });
  }

  /** The events recorded so far, in order. */
  events(): readonly HistoryEvent[] {
    return this.#events.slice();
  }

  /** The operations recorded so far; those still pending count as `info`. */
  operations(): Operation[] {
    return pairOperations(this.#events);
  }

  /** The history as JSON Lines. */
  toJsonLines(): string {
    return toJsonLines(this.#events);
  }
}
