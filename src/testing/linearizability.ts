/**
 * A linearizability checker for registers (read, write, cas, delete), one register per key.
 *
 * The search is Wing & Gong's with Lowe's improvements, laid out as Porcupine's checker does it:
 * the call and return entries of a key's operations form a doubly linked list in time order; the
 * search walks it, linearizing (lifting out) an operation when the register's model accepts it,
 * and backtracks when it meets the return of an operation it has not linearized yet, since that
 * operation had to take effect before its return. A cache of (set of linearized operations,
 * register value) pairs already explored prunes the orders that reach the same configuration.
 * Two refinements: a read that fits is placed without branching (see the search loop for why
 * that is safe), and the cache stores each set only as its window of bitset words, between the
 * full ones below and the empty ones above, so that long histories cost no more per step than
 * short ones.
 *
 * Keys are independent registers, so each key's operations are checked on their own (a history
 * is linearizable exactly when every key's is). A `fail` operation had no effect and is left
 * out. An `info` operation may have taken effect at any time after its call, or never: its return
 * is infinite, so the search may place it anywhere after its call, and placing it after every
 * completed operation is the same as never. An `info` read returned nothing to check and is left
 * out too.
 */
import { formatValue } from './history.js';
import type { Operation, Value } from './history.js';

export type Verdict = 'linearizable' | 'not-linearizable' | 'unknown';

/** The time budget when none is given. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * The search reads the clock once every this many steps (a power of two), so that the budget
 * costs almost nothing; a search that finishes sooner is never interrupted.
 */
const STEPS_PER_CLOCK_READ = 1 << 12;

/**
 * The most memory the cache of explored configurations may fill, per key (its arrays may be
 * allocated up to twice that while they grow). A search that needs more answers `unknown`
 * rather than exhaust the process.
 */
const CACHE_MEMORY_LIMIT_BYTES = 512 * 1024 * 1024;

/** The most values an explanation lists for what the register held. */
const MAX_VALUES_LISTED = 8;

/** The most operations of the longest prefix an explanation lists (the last ones). */
const MAX_PREFIX_LISTED = 20;

/** The most next-operation candidates an explanation lists. */
const MAX_STUCK_LISTED = 20;

export interface CheckOptions {
  /** Past this many milliseconds, for all keys together, the search stops and answers `unknown`; default 10 000. */
  readonly timeoutMs?: number;
  /** Milliseconds from any origin, for the budget; default `performance.now`. */
  readonly clock?: () => number;
}

/** An operation that could come next after the longest prefix, and why it does not fit there. */
export interface StuckOperation {
  readonly operation: Operation;
  readonly reason: string;
}

/** An operation that fits after no valid order of the operations that can precede it. */
export interface Culprit {
  readonly operation: Operation;
  /** What the register held wherever the operation could take effect (at most 8 listed). */
  readonly valuesHeld: readonly Value[];
  /** True when the register held more values than `valuesHeld` lists. */
  readonly moreValues: boolean;
  /** How many distinct prefixes (set of operations and register value) the search tried it after. */
  readonly prefixesTried: number;
}

/** Why a key's history is not linearizable. */
export interface Violation {
  readonly key: string;
  /** The longest linearizable prefix the search found, in linearization order. */
  readonly prefix: readonly Operation[];
  /** The register's value after that prefix. */
  readonly valueAfterPrefix: Value;
  /** The operations that could come next after the prefix; none of them fits. */
  readonly stuck: readonly StuckOperation[];
  /** An operation that cannot be placed at all, when the search found one. */
  readonly culprit?: Culprit;
  /** All of the above in words. */
  readonly message: string;
}

export interface KeyResult {
  readonly key: string;
  readonly verdict: Verdict;
  /** How many operations were checked: failed operations and info reads are left out. */
  readonly operations: number;
  /** Set when the verdict is `not-linearizable`. */
  readonly violation?: Violation;
  /** Set when the verdict is `unknown`: which limit stopped the search. */
  readonly stoppedBy?: 'time' | 'memory';
}

export interface CheckResult {
  /** `not-linearizable` if any key is; else `unknown` if any key is; else `linearizable`. */
  readonly verdict: Verdict;
  /** One result per key, in order of each key's first operation. */
  readonly keys: readonly KeyResult[];
  /** Why, in words, when the verdict is not `linearizable`. */
  readonly explanation?: string;
}

/**
 * The only place the checker reads the time. The checker is test tooling, not protocol code, so
 * the process's monotonic clock is the right default.
 */
const defaultClock = (): number => performance.now();

/** Checks that `operations` (of any number of keys) are linearizable. */
export function checkLinearizability(operations: readonly Operation[], options: CheckOptions = {}): CheckResult {
  const clock = options.clock ?? defaultClock;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const start = clock();
  const expired = (): boolean => clock() - start >= timeoutMs;

  const byKey = new Map<string, Operation[]>();
  for (const op of operations) {
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    if (op.outcome === 'fail' || (op.f === 'read' && op.outcome !== 'ok')) continue;
    list.push(op);
  }
  const keys: KeyResult[] = [];
  for (const [key, ops] of byKey) keys.push(checkKey(key, ops, expired));

  const violations = keys.filter((k) => k.violation !== undefined);
  const unknown = keys.filter((k) => k.verdict === 'unknown');
  const verdict: Verdict = violations.length > 0 ? 'not-linearizable' : unknown.length > 0 ? 'unknown' : 'linearizable';
  if (verdict === 'linearizable') return { verdict, keys };
  const lines = [
    ...violations.map((k) => k.violation!.message),
    ...unknown.map((k) =>
      k.stoppedBy === 'memory'
        ? `key ${JSON.stringify(k.key)}: unknown: the search outgrew its ${CACHE_MEMORY_LIMIT_BYTES / 2 ** 20} MiB cache`
        : `key ${JSON.stringify(k.key)}: unknown: the search ran out of its ${timeoutMs} ms time budget`,
    ),
  ];
  return { verdict, keys, explanation: lines.join('\n') };
}

/*
 * How an operation changes the register, after interning its values as small integers.
 */
/** Fits when the register holds `a`; leaves it as it is. */
const KIND_READ = 0;
/** Always fits; the register then holds `a` (a delete writes null). */
const KIND_WRITE = 1;
/** Fits when the register holds `a`; it then holds `b`. */
const KIND_CAS = 2;
/** A cas of unknown outcome: always fits; when the register holds `a` it then holds `b`. */
const KIND_CAS_UNKNOWN = 3;

/** The interned id of null; every other value gets the next free id. */
const NULL_ID = 0;
/** No list entry. */
const NIL = -1;
/** Marks a stack frame whose operation was forced (see the search loop); entries are below it. */
const FORCED = 1 << 30;
/** A bitset word with every bit set. */
const FULL_WORD = 0xffff_ffff;
/** The register state an operation that does not fit leads to. */
const NO_FIT = -1;

function checkKey(key: string, unsorted: readonly Operation[], expired: () => boolean): KeyResult {
  const ops = unsorted.slice().sort((x, y) => x.call - y.call || x.id - y.id);
  const n = ops.length;
  if (n === 0) return { key, verdict: 'linearizable', operations: 0 };

  // Values become small integers, so that the register's state and comparisons are cheap.
  const values: Value[] = [null];
  const ids = new Map<string, number>([['null', NULL_ID]]);
  const intern = (v: Value): number => {
    const text = JSON.stringify(v);
    let id = ids.get(text);
    if (id === undefined) {
      id = values.length;
      values.push(v);
      ids.set(text, id);
    }
    return id;
  };
  const kind = new Uint8Array(n);
  const argA = new Int32Array(n);
  const argB = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    const v = op.value;
    switch (op.f) {
      case 'read':
        kind[i] = KIND_READ;
        argA[i] = intern(v as Value);
        break;
      case 'write':
        kind[i] = KIND_WRITE;
        argA[i] = intern(v as Value);
        break;
      case 'delete':
        kind[i] = KIND_WRITE;
        argA[i] = NULL_ID;
        break;
      case 'cas': {
        const [from, to] = v as readonly [Value, Value];
        kind[i] = op.outcome === 'ok' ? KIND_CAS : KIND_CAS_UNKNOWN;
        argA[i] = intern(from);
        argB[i] = intern(to);
        break;
      }
    }
  }

  // Entry 2i is operation i's call and 2i + 1 its return; HEAD is the list's sentinel.
  const HEAD = 2 * n;
  const next = new Int32Array(2 * n + 1);
  const prev = new Int32Array(2 * n + 1);
  const order = Array.from({ length: 2 * n }, (_, e) => e);
  const timeOf = (e: number): number => ((e & 1) === 0 ? ops[e >> 1]!.call : ops[e >> 1]!.return);
  // At equal times calls go first: operations that touch at an instant count as concurrent.
  order.sort((x, y) => {
    const tx = timeOf(x);
    const ty = timeOf(y);
    if (tx !== ty) return tx < ty ? -1 : 1;
    if ((x & 1) !== (y & 1)) return (x & 1) - (y & 1);
    return x - y;
  });
  let last = HEAD;
  prev[HEAD] = NIL;
  for (const e of order) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  next[last] = NIL;

  // The linearized set as a bitset, with the bounds of its window: every word below `lowWord` is
  // full and every word above `highWord` empty, so the cache need only store the words between.
  const words = (n + 31) >>> 5;
  const linearized = new Uint32Array(words);
  let lowWord = 0;
  let highWord = -1;
  const zobrist = zobristKeys(n);
  const cache = new ConfigCache(CACHE_MEMORY_LIMIT_BYTES);

  // For explanations: which operations ever fitted, and what the register held when one did not.
  const fitted = new Uint8Array(n);
  const misfits = new Uint32Array(n);
  const heldAtMisfit: (Set<number> | undefined)[] = new Array(n);

  // One frame per linearized operation: its call entry, and the register and window before it.
  const stackEntry = new Int32Array(n);
  const stackState = new Int32Array(n);
  const stackLow = new Int32Array(n);
  const stackHigh = new Int32Array(n);
  let depth = 0;
  let state = NULL_ID;
  let hash = 0;
  let steps = 0;
  // The longest prefix so far. Only the frames above the lowest depth the stack has fallen to
  // since the last copy have changed, so only those are copied again.
  const bestPrefix = new Int32Array(n);
  let bestLength = -1;
  let bestState = NULL_ID;
  let bestCandidates: number[] = [];
  let unchangedBelow = 0;

  let entry = next[HEAD]!;
  search: while (next[HEAD] !== NIL) {
    if ((++steps & (STEPS_PER_CLOCK_READ - 1)) === 0 && expired()) {
      return { key, verdict: 'unknown', operations: n, stoppedBy: 'time' };
    }
    if ((entry & 1) === 0) {
      const op = entry >> 1;
      const a = argA[op]!;
      let after: number;
      switch (kind[op]) {
        case KIND_READ:
          after = state === a ? state : NO_FIT;
          break;
        case KIND_WRITE:
          after = a;
          break;
        case KIND_CAS:
          after = state === a ? argB[op]! : NO_FIT;
          break;
        default:
          after = state === a ? argB[op]! : state;
      }
      if (after === NO_FIT) {
        misfits[op]!++;
        let held = heldAtMisfit[op];
        if (held === undefined) heldAtMisfit[op] = held = new Set();
        if (held.size <= MAX_VALUES_LISTED) held.add(state);
        entry = next[entry]!;
        continue;
      }
      fitted[op] = 1;
      // An operation that never changes the register (a read, or a cas from v to v) and fits
      // here can go first in any order that completes from here: wherever that order puts it,
      // the register holds this same value, and moving it earlier only loosens real-time
      // constraints. So it is no choice: if nothing completes after it, nothing completes from
      // here either, and the search backtracks past this configuration. (A write of the value
      // the register holds is no such operation: later on it may change the register.)
      const forced = kind[op] === KIND_READ || (kind[op] === KIND_CAS && a === argB[op]);
      const h = (hash ^ zobrist[op]!) >>> 0;
      const w = op >>> 5;
      const bit = 1 << (op & 31);
      let low = lowWord;
      if (w === low && (linearized[w]! | bit) >>> 0 === FULL_WORD) {
        low++;
        while (low < words && linearized[low] === FULL_WORD) low++;
      }
      const high = w > highWord ? w : highWord;
      if (!cache.has(h, after, linearized, w, bit, low, high)) {
        if (!cache.add(h, after, linearized, w, bit, low, high)) {
          return { key, verdict: 'unknown', operations: n, stoppedBy: 'memory' };
        }
        stackEntry[depth] = forced ? entry | FORCED : entry;
        stackState[depth] = state;
        stackLow[depth] = lowWord;
        stackHigh[depth] = highWord;
        depth++;
        state = after;
        hash = h;
        linearized[w]! |= bit;
        lowWord = low;
        highWord = high;
        lift(next, prev, entry);
        entry = next[HEAD]!;
        continue;
      }
      // Already explored from there, without success.
      if (!forced) {
        entry = next[entry]!;
        continue;
      }
    } else if (depth > bestLength) {
      // An operation still pending returns here, so it had to take effect already: backtrack.
      bestPrefix.set(stackEntry.subarray(unchangedBelow, depth), unchangedBelow);
      unchangedBelow = bestLength = depth;
      bestState = state;
      // The pending operation that returns here is among them: its call comes before its return.
      bestCandidates = [];
      for (let e = next[HEAD]!; e !== entry; e = next[e]!) if ((e & 1) === 0) bestCandidates.push(e >> 1);
    }
    // Nothing completes from this configuration: undo the operation that led here, and keep
    // undoing while that was a forced one.
    let frame: number;
    do {
      if (depth === 0) break search;
      depth--;
      if (depth < unchangedBelow) unchangedBelow = depth;
      frame = stackEntry[depth]!;
      entry = frame & ~FORCED;
      state = stackState[depth]!;
      lowWord = stackLow[depth]!;
      highWord = stackHigh[depth]!;
      const op = entry >> 1;
      linearized[op >>> 5]! &= ~(1 << (op & 31));
      hash = (hash ^ zobrist[op]!) >>> 0;
      unlift(next, prev, entry);
    } while ((frame & FORCED) !== 0);
    entry = next[entry]!;
  }
  if (next[HEAD] === NIL) return { key, verdict: 'linearizable', operations: n };

  const prefix = Array.from(bestPrefix.subarray(0, bestLength), (e) => (e & ~FORCED) >> 1);
  const best = { prefix, state: bestState, candidates: bestCandidates };
  const violation = explain(key, ops, values, kind, argA, best, fitted, misfits, heldAtMisfit);
  return { key, verdict: 'not-linearizable', operations: n, violation };
}

/** Removes call entry `e` and its return from the list; their own links stay, for `unlift`. */
function lift(next: Int32Array, prev: Int32Array, e: number): void {
  const r = e | 1;
  next[prev[e]!] = next[e]!;
  prev[next[e]!] = prev[e]!;
  next[prev[r]!] = next[r]!;
  if (next[r] !== NIL) prev[next[r]!] = prev[r]!;
}

/** Undoes the `lift` of `e`; lifts must be undone in reverse order. */
function unlift(next: Int32Array, prev: Int32Array, e: number): void {
  const r = e | 1;
  next[prev[r]!] = r;
  if (next[r] !== NIL) prev[next[r]!] = r;
  next[prev[e]!] = e;
  prev[next[e]!] = e;
}

/**
 * A random 32-bit key per operation; a set's hash is the xor of its members' keys, so adding or
 * removing one operation updates it in O(1). Seeded, so that runs repeat exactly.
 */
function zobristKeys(n: number): Uint32Array {
  const keys = new Uint32Array(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    // xorshift32
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    keys[i] = x >>> 0;
  }
  return keys;
}

/**
 * The set of explored configurations (linearized set, register value): a chained hash table over
 * flat typed arrays, with no object per entry. Each entry keeps only its set's window of words,
 * from the first that is not full to the last that is not empty; sets are equal exactly when
 * their windows are, since the words below are all full and those above all empty.
 */
class ConfigCache {
  /** Bytes per entry besides its words: hash, state, chain link, window start and length. */
  static readonly #ENTRY_BYTES = 5 * 4;
  readonly #limitBytes: number;
  #count = 0;
  #buckets = new Int32Array(1 << 10).fill(NIL);
  #chain = new Int32Array(1 << 10);
  #hashes = new Uint32Array(1 << 10);
  #states = new Int32Array(1 << 10);
  #offsets = new Int32Array(1 << 10);
  #lows = new Int32Array(1 << 10);
  #words = new Uint32Array(1 << 12);
  #wordsUsed = 0;

  constructor(limitBytes: number) {
    this.#limitBytes = limitBytes;
  }

  /**
   * Whether the set `linearized` plus bit `bit` of word `w`, with window [`low`, `high`], is
   * cached with register value `state`; `hash` is that set's hash.
   */
  has(hash: number, state: number, linearized: Uint32Array, w: number, bit: number, low: number, high: number): boolean {
    const length = high >= low ? high - low + 1 : 0;
    const words = this.#words;
    for (let i = this.#buckets[slot(hash, state, this.#buckets.length)]!; i !== NIL; i = this.#chain[i]!) {
      if (this.#hashes[i] !== hash || this.#states[i] !== state || this.#lows[i] !== low) continue;
      const offset = this.#offsets[i]!;
      if ((i + 1 < this.#count ? this.#offsets[i + 1]! : this.#wordsUsed) - offset !== length) continue;
      let same = true;
      for (let k = 0; k < length; k++) {
        const word = low + k === w ? (linearized[low + k]! | bit) >>> 0 : linearized[low + k]!;
        if (words[offset + k] !== word) {
          same = false;
          break;
        }
      }
      if (same) return true;
    }
    return false;
  }

  /** Adds what {@link has} looks up; false when the memory limit is reached. */
  add(hash: number, state: number, linearized: Uint32Array, w: number, bit: number, low: number, high: number): boolean {
    const length = high >= low ? high - low + 1 : 0;
    if ((this.#count + 1) * ConfigCache.#ENTRY_BYTES + (this.#wordsUsed + length) * 4 > this.#limitBytes) return false;
    if (this.#count === this.#chain.length) this.#growEntries();
    while (this.#wordsUsed + length > this.#words.length) {
      this.#words = grown(this.#words, Math.min(this.#words.length * 2, Math.ceil(this.#limitBytes / 4)));
    }
    const i = this.#count++;
    const offset = this.#wordsUsed;
    this.#words.set(linearized.subarray(low, low + length), offset);
    if (w >= low && w <= high) this.#words[offset + w - low]! |= bit;
    this.#wordsUsed += length;
    this.#hashes[i] = hash;
    this.#states[i] = state;
    this.#offsets[i] = offset;
    this.#lows[i] = low;
    const s = slot(hash, state, this.#buckets.length);
    this.#chain[i] = this.#buckets[s]!;
    this.#buckets[s] = i;
    return true;
  }

  #growEntries(): void {
    const capacity = Math.min(this.#chain.length * 2, Math.ceil(this.#limitBytes / ConfigCache.#ENTRY_BYTES));
    this.#chain = grown(this.#chain, capacity);
    this.#hashes = grown(this.#hashes, capacity);
    this.#states = grown(this.#states, capacity);
    this.#offsets = grown(this.#offsets, capacity);
    this.#lows = grown(this.#lows, capacity);
    this.#buckets = new Int32Array(capacity).fill(NIL);
    for (let i = 0; i < this.#count; i++) {
      const s = slot(this.#hashes[i]!, this.#states[i]!, capacity);
      this.#chain[i] = this.#buckets[s]!;
      this.#buckets[s] = i;
    }
  }
}

/** A copy of `old` with room for `size` elements. */
function grown<T extends Int32Array | Uint32Array>(old: T, size: number): T {
  const copy = new (old.constructor as new (n: number) => T)(size);
  copy.set(old);
  return copy;
}

/** The bucket of a configuration, in a table of `size` (a power of two) buckets. */
function slot(hash: number, state: number, size: number): number {
  return (hash ^ Math.imul(state + 1, 0x9e3779b1)) & (size - 1);
}

function explain(
  key: string,
  ops: readonly Operation[],
  values: readonly Value[],
  kind: Uint8Array,
  argA: Int32Array,
  best: { prefix: readonly number[]; state: number; candidates: readonly number[] },
  fitted: Uint8Array,
  misfits: Uint32Array,
  heldAtMisfit: readonly (Set<number> | undefined)[],
): Violation {
  const held = values[best.state]!;
  const stuck: StuckOperation[] = best.candidates.map((i) => ({
    operation: ops[i]!,
    reason:
      kind[i] === KIND_READ
        ? `it returned ${formatValue(values[argA[i]!]!)} but the register held ${formatValue(held)}`
        : kind[i] === KIND_CAS
          ? `it needs the register to hold ${formatValue(values[argA[i]!]!)} but it held ${formatValue(held)}`
          : 'it fits here, but no order of the operations after it does',
  }));

  // An operation that never fitted anywhere it was tried cannot be placed in any order. Prefer
  // one of those stuck after the longest prefix; then the one that returned first.
  const never = (i: number): boolean => misfits[i]! > 0 && fitted[i] === 0;
  const byReturn = (x: number, y: number): number => ops[x]!.return - ops[y]!.return || x - y;
  const pick =
    best.candidates.filter(never).sort(byReturn)[0] ??
    Array.from(ops.keys()).filter(never).sort(byReturn)[0];
  let culprit: Culprit | undefined;
  if (pick !== undefined) {
    const seen = [...heldAtMisfit[pick]!].sort((x, y) => x - y);
    culprit = {
      operation: ops[pick]!,
      valuesHeld: seen.slice(0, MAX_VALUES_LISTED).map((v) => values[v]!),
      moreValues: seen.length > MAX_VALUES_LISTED,
      prefixesTried: misfits[pick]!,
    };
  }

  const lines = [`key ${JSON.stringify(key)} is not linearizable.`];
  if (culprit !== undefined) {
    const op = culprit.operation;
    const needed = kind[pick!] === KIND_READ ? '' : ' succeeded';
    const want = formatValue(values[argA[pick!]!]!);
    const list = orList(culprit.valuesHeld.map((v) => formatValue(v)), culprit.moreValues);
    lines.push(
      `Why: ${describeOperation(op)}${needed}, so the register held ${want} when it took effect; but wherever it could ` +
        `take effect, after every valid order of the operations that can precede it ` +
        `(${culprit.prefixesTried} distinct ${plural(culprit.prefixesTried, 'prefix', 'prefixes')} tried), ` +
        `the register held ${list}, never ${want}.`,
    );
  } else {
    lines.push(
      'Why: every order of the operations fails; the one that gets furthest is below. Each operation fits ' +
        'after some orders of the others, but no order fits them all.',
    );
  }
  const prefix = best.prefix.map((i) => ops[i]!);
  lines.push(
    `Longest linearizable prefix found: ${prefix.length} ${plural(prefix.length, 'operation', 'operations')}, ` +
      `after which the register held ${formatValue(held)}${prefix.length > 0 ? ':' : '.'}`,
  );
  const shown = prefix.length > MAX_PREFIX_LISTED ? prefix.length - MAX_PREFIX_LISTED : 0;
  if (shown > 0) lines.push(`  … ${shown} earlier operations`);
  prefix.slice(shown).forEach((op, k) => lines.push(`  ${shown + k + 1}. ${describeOperation(op)}`));
  lines.push('Operations that could come next, none of which fits:');
  for (const s of stuck.slice(0, MAX_STUCK_LISTED)) lines.push(`  ${describeOperation(s.operation)}: ${s.reason}`);
  if (stuck.length > MAX_STUCK_LISTED) lines.push(`  … ${stuck.length - MAX_STUCK_LISTED} more`);

  const violation: Violation = { key, prefix, valueAfterPrefix: held, stuck, message: lines.join('\n') };
  return culprit === undefined ? violation : { ...violation, culprit };
}

/** `read by process 2 at [4, 9] returned 3`, `cas 1 → 2 by process 0 at [7, ∞) (outcome unknown)`. */
export function describeOperation(op: Operation): string {
  const who = `by process ${formatValue(op.process)}`;
  const when = op.return === Infinity ? `at [${op.call}, ∞)` : `at [${op.call}, ${op.return}]`;
  const line = op.line !== undefined ? ` (line ${op.line})` : '';
  const unknown = op.outcome === 'info' ? ' (outcome unknown)' : op.outcome === 'fail' ? ' (failed)' : '';
  switch (op.f) {
    case 'read':
      return `read ${who} ${when}${op.outcome === 'ok' ? ` returned ${formatValue(op.value)}` : unknown}${line}`;
    case 'write':
      return `write ${formatValue(op.value)} ${who} ${when}${unknown}${line}`;
    case 'cas': {
      const [from, to] = op.value as readonly [Value, Value];
      return `cas ${formatValue(from)} → ${formatValue(to)} ${who} ${when}${unknown}${line}`;
    }
    case 'delete':
      return `delete ${who} ${when}${unknown}${line}`;
  }
}

function orList(items: readonly string[], more: boolean): string {
  if (more) return `${items.join(', ')} and others`;
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

function plural(count: number, one: string, many: string): string {
  return count === 1 ? one : many;
}
