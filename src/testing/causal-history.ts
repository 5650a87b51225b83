/**
 * A history as the causal checker sees it: the same operations the linearizability checker
 * reads (`process` is the session), grouped into sessions, each read resolved to the write whose
 * value it returned, and a vector-clock layout for the writes.
 *
 * Reads name their write by value, so the writes to one key must write distinct values; a history
 * that repeats one is refused rather than guessed at. A delete, and a write of null, is a write of
 * a tombstone: a read that returns null read the initial state or one of the key's tombstones,
 * and which one is decided later, by the checker, as leniently as the history allows.
 */
import { HistoryFormatError, formatValue } from './history.js';
import type { Operation, ProcessId } from './history.js';

/**
 * An operation of a session. `node`, when a workload records it, is the replica that served the
 * operation: messages name it, and the check itself ignores it, since causal consistency is a
 * promise to sessions whichever replica serves them.
 */
export interface CausalOperation extends Operation {
  readonly node?: string | number;
}

/** What an operation is to the checker. */
export const ROLE_OTHER = 0;
export const ROLE_READ = 1;
export const ROLE_WRITE = 2;
/** A delete, or a write of null: both leave the key absent. */
export const ROLE_TOMBSTONE = 3;

/** How an `ok` read was resolved. Other reads are `READ_UNCHECKED`. */
export const READ_UNCHECKED = 0;
/** It returned a value, and `source` is the write (ok or info) that wrote it. */
export const READ_RESOLVED = 1;
/** It returned null: the initial state or a tombstone. */
export const READ_NULL = 2;
/** It returned a value no operation wrote to its key. */
export const READ_PHANTOM = 3;
/** It returned a value only a failed write wrote; `source` is that write. */
export const READ_ABORTED = 4;
/** Its write causally follows it; the checker drops the dependency (see the causal graph). */
export const READ_CYCLE = 5;
/**
 * It returned a value whose write was invoked only after the read returned, which no store can
 * do; `source` is that write. Times are one timeline, as the history format requires.
 */
export const READ_FUTURE = 6;

/** No operation. */
export const NONE = -1;

/**
 * The indexed history. Operations are referred to by their index in the input array, so that ids
 * need not be dense or unique.
 */
export interface CausalIndex {
  readonly ops: readonly CausalOperation[];
  /** Each session's id, by session number. */
  readonly sessionIds: readonly ProcessId[];
  /** Each session's operations in session order (by call time, then input order). */
  readonly sessionOps: readonly Int32Array[];
  /** Each operation's session number. */
  readonly session: Int32Array;
  /** Each operation's place in its session, from 1. */
  readonly position: Int32Array;
  readonly role: Uint8Array;
  /**
   * 1 for the operations that happened or may have: `ok` operations and `info` writes and
   * deletes. Only they take part in happened-before.
   */
  readonly happened: Uint8Array;
  /** For reads: one of the `READ_*` constants. */
  readonly readStatus: Uint8Array;
  /** For a resolved, aborted or future read, the write whose value it returned; `NONE` otherwise. */
  readonly source: Int32Array;
  /** Per key, its writes and tombstones that happened or may have, in input order. */
  readonly writesByKey: ReadonlyMap<string, Int32Array>;
  /** Per key, its tombstones that happened or may have, in input order. */
  readonly tombstonesByKey: ReadonlyMap<string, Int32Array>;
  /**
   * The dot of each write: the clock entry that says a clock has seen it, `clock[dotIndex] >=
   * dotValue`. An ok write's dot is its session's entry and its position (a session's ok
   * operations form a chain). An info write does not precede its session's later operations, so
   * it gets an entry of its own when anything can observe it (a read returned it, or it is a
   * tombstone a null read may have read); `NONE` otherwise.
   */
  readonly dotIndex: Int32Array;
  readonly dotValue: Int32Array;
  /** The length of a vector clock: one entry per session, then one per observable info write. */
  readonly dimensions: number;
  readonly keyCount: number;
}

/**
 * Indexes `ops`. Throws a {@link HistoryFormatError} (with the operation's line when known) for a
 * cas, which a causal store does not offer, and for two writes of one value to one key.
 */
export function indexCausalHistory(ops: readonly CausalOperation[]): CausalIndex {
  const n = ops.length;
  const role = new Uint8Array(n);
  const happened = new Uint8Array(n);
  const readStatus = new Uint8Array(n);
  const source = new Int32Array(n).fill(NONE);
  const session = new Int32Array(n);
  const position = new Int32Array(n);
  const dotIndex = new Int32Array(n).fill(NONE);
  const dotValue = new Int32Array(n);

  const sessionNumbers = new Map<string, number>();
  const sessionIds: ProcessId[] = [];
  const sessionLists: number[][] = [];
  // Per key, per value (as JSON, so that 1 and "1" differ), the write that wrote it.
  const writers = new Map<string, Map<string, number>>();
  const writes = new Map<string, number[]>();
  const tombstones = new Map<string, number[]>();

  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    const who = `${typeof op.process}:${op.process}`;
    let s = sessionNumbers.get(who);
    if (s === undefined) {
      s = sessionIds.length;
      sessionNumbers.set(who, s);
      sessionIds.push(op.process);
      sessionLists.push([]);
    }
    session[i] = s;
    sessionLists[s]!.push(i);
    if (!writes.has(op.key)) {
      writes.set(op.key, []);
      tombstones.set(op.key, []);
      writers.set(op.key, new Map());
    }
    switch (op.f) {
      case 'cas':
        throw new HistoryFormatError(
          `the causal checker does not take cas operations (${describeBriefly(op)}): a causal store offers no compare-and-set`,
          undefined,
          op.line,
        );
      case 'read':
        role[i] = ROLE_READ;
        if (op.outcome === 'ok') happened[i] = 1;
        break;
      case 'delete':
      case 'write': {
        const tombstone = op.f === 'delete' || op.value === null;
        role[i] = tombstone ? ROLE_TOMBSTONE : ROLE_WRITE;
        if (op.outcome !== 'fail') {
          happened[i] = 1;
          writes.get(op.key)!.push(i);
          if (tombstone) tombstones.get(op.key)!.push(i);
        }
        if (!tombstone) {
          const byValue = writers.get(op.key)!;
          const value = JSON.stringify(op.value);
          const earlier = byValue.get(value);
          if (earlier !== undefined) {
            throw new HistoryFormatError(
              `two writes to key ${JSON.stringify(op.key)} write ${formatValue(op.value)} (${describeBriefly(ops[earlier]!)} and ` +
                `${describeBriefly(op)}); the causal checker tells which write a read saw by its value, so values must be unique per key`,
              undefined,
              op.line,
            );
          }
          byValue.set(value, i);
        }
        break;
      }
    }
  }

  // Session order: by call time, then input order. A session runs one operation at a time, so
  // this is the order it issued them in.
  const sessionOps = sessionLists.map((list) => {
    list.sort((a, b) => ops[a]!.call - ops[b]!.call || a - b);
    list.forEach((op, k) => (position[op] = k + 1));
    return Int32Array.from(list);
  });

  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    if (role[i] !== ROLE_READ || op.outcome !== 'ok') continue;
    if (op.value === null) {
      readStatus[i] = READ_NULL;
      continue;
    }
    const w = writers.get(op.key)?.get(JSON.stringify(op.value));
    if (w === undefined) {
      readStatus[i] = READ_PHANTOM;
    } else {
      const write = ops[w]!;
      readStatus[i] = write.outcome === 'fail' ? READ_ABORTED : write.call > op.return ? READ_FUTURE : READ_RESOLVED;
      source[i] = w;
    }
  }

  let dimensions = sessionIds.length;
  for (let i = 0; i < n; i++) {
    if (happened[i] === 0 || (role[i] !== ROLE_WRITE && role[i] !== ROLE_TOMBSTONE)) continue;
    if (ops[i]!.outcome === 'ok') {
      dotIndex[i] = session[i]!;
      dotValue[i] = position[i]!;
    }
  }
  const observable = new Uint8Array(n);
  for (let i = 0; i < n; i++) if (readStatus[i] === READ_RESOLVED) observable[source[i]!] = 1;
  for (let i = 0; i < n; i++) {
    if (happened[i] === 0 || ops[i]!.outcome !== 'info') continue;
    if (observable[i] === 1 || role[i] === ROLE_TOMBSTONE) {
      dotIndex[i] = dimensions++;
      dotValue[i] = 1;
    }
  }

  return {
    ops,
    sessionIds,
    sessionOps,
    session,
    position,
    role,
    happened,
    readStatus,
    source,
    writesByKey: new Map([...writes].map(([k, list]) => [k, Int32Array.from(list)])),
    tombstonesByKey: new Map([...tombstones].map(([k, list]) => [k, Int32Array.from(list)])),
    dotIndex,
    dotValue,
    dimensions,
    keyCount: writes.size,
  };
}

/** True when `clock` has seen write `w`. */
export function covers(index: CausalIndex, clock: Int32Array, w: number): boolean {
  const d = index.dotIndex[w]!;
  return d !== NONE && clock[d]! >= index.dotValue[w]!;
}

/** `write 3 by process 1 (line 7)`, for format errors, before sessions are known. */
function describeBriefly(op: Operation): string {
  const what = op.f === 'write' ? `write ${formatValue(op.value)}` : op.f;
  return `${what} by process ${formatValue(op.process)}${op.line === undefined ? '' : ` (line ${op.line})`}`;
}
