/**
 * A checker for lock histories: did the holders of a lock really take turns at the resource it
 * protects, and did the resource see their fencing tokens grow? A lock held by a lease cannot by
 * itself stop a holder that was paused (a GC pause, SIGSTOP, a swapped-out VM) from acting after
 * its lease expired and the lock passed to someone else: the paused holder still believes it holds
 * the lock. A fencing token, larger with every acquisition, lets the resource refuse it (Martin
 * Kleppmann, "How to do distributed locking", 2016). Neither failure shows in the lock service's
 * own answers; the ground truth is what the resource saw, in the order it saw it.
 *
 * The history is that order: each holder's entry into its critical section (`start`, with the
 * token it passed), its exit (`end`), and the death of a holder process (`crash`, which ends its
 * open section). A section is keyed by (holder, token). Checked:
 *
 * - `overlap`: a section started while another was open (mutual exclusion);
 * - `token-order`: a section's token was not greater than every token started before it (fencing);
 * - `unmatched`: an end with no open section of its (holder, token), or a second start of one;
 * - `duplicate-token`: two acquisitions the lock service answered with the same token.
 *
 * A second start of a (holder, token) is reported as `unmatched` only (it is not a new section),
 * and the section is open again after it. A start can be both `overlap` and `token-order`: a
 * paused holder with an old token that enters while its successor is inside broke both mutual
 * exclusion and fencing, and both are reported. A section still open at the end of the history is
 * fine (it is still running); `stats.openAtEnd` counts them. Every start into an open section is
 * an overlap, naming the section open longest: a section that never ends (or whose end line was
 * lost) shows as a run of overlaps naming it.
 *
 * Times are only compared (any unit; equal times are allowed, the order of the events decides):
 * events out of time order are a malformed history, not a violation.
 *
 * Cost: one pass over the events, with each holder's sections in a hash map by token: a million
 * events check in about half a second.
 */
import { HistoryFormatError } from './history.js';

/** One event the resource saw. */
export type LockEvent =
  /** A holder entered its critical section using `token`. */
  | { readonly kind: 'start'; readonly holder: string; readonly token: number; readonly at: number }
  /** It left its critical section. */
  | { readonly kind: 'end'; readonly holder: string; readonly token: number; readonly at: number }
  /** The holder process died (kill -9): its open section ends here. */
  | { readonly kind: 'crash'; readonly holder: string; readonly at: number };

/** A token the lock service answered to an acquisition. */
export interface LockAcquisition {
  readonly holder: string;
  readonly token: number;
  readonly at: number;
}

export interface LockHistory {
  /** The lock's name; messages name it. */
  readonly lock?: string;
  /** In the order the resource saw them, with nondecreasing `at`. */
  readonly events: readonly LockEvent[];
  /** What the lock service answered, in any order: each token must be unique. */
  readonly acquisitions?: readonly LockAcquisition[];
}

/**
 * - `overlap`: a holder entered its section while another section (another holder's, or the same
 *   holder's with another token) was open: two holders used the resource at once.
 * - `token-order`: a holder entered its section with a token not greater than one the resource
 *   had already seen: the resource accepted a stale token.
 * - `unmatched`: an end with no open section of that (holder, token), or a second start of a
 *   (holder, token) already started.
 * - `duplicate-token`: the lock service answered two acquisitions with the same token.
 */
export type LockViolationKind = 'overlap' | 'token-order' | 'unmatched' | 'duplicate-token';

export interface LockViolation {
  readonly kind: LockViolationKind;
  /** What happened and what the guarantee requires, in words; starts with the kind. */
  readonly message: string;
  /** The holder of the event at fault (for `duplicate-token`, of the later acquisition). */
  readonly holder: string;
  readonly token: number;
  readonly at: number;
  /**
   * The other side: the open section (`overlap`), the start with the largest token before
   * (`token-order`), the earlier start or the event that closed the section (`unmatched`; absent
   * when the section never started), the earlier acquisition (`duplicate-token`).
   */
  readonly other?: { readonly holder: string; readonly token: number; readonly at: number };
}

export interface LockCheckOptions {
  /** List at most this many violations (the rest are counted in `omitted`); default 100. */
  readonly maxViolations?: number;
}

export interface LockCheckStats {
  /** Sections started: distinct (holder, token) pairs of `start` events. */
  readonly sections: number;
  /** Distinct holders named by events. */
  readonly holders: number;
  /** `crash` events. */
  readonly crashes: number;
  /** The largest token of a `start`; 0 when there is none. */
  readonly maxToken: number;
  /** Sections still open at the end of the history (neither ended nor crashed). */
  readonly openAtEnd: number;
}

export interface LockCheckResult {
  readonly ok: boolean;
  /** In the order of the events at fault, then the duplicate tokens. */
  readonly violations: LockViolation[];
  /** Violations found beyond `maxViolations`, not listed. */
  readonly omitted: number;
  readonly stats: LockCheckStats;
}

/** The most violations listed when `maxViolations` is not given. */
export const DEFAULT_MAX_LOCK_VIOLATIONS = 100;

const KINDS: ReadonlySet<string> = new Set(['start', 'end', 'crash']);

/** A section the resource saw start. */
interface Section {
  readonly holder: string;
  readonly token: number;
  /** When it (last) started. */
  at: number;
  /** How it was closed, when it was. */
  closed?: { readonly by: 'end' | 'crash'; readonly at: number } | undefined;
}

/** What one holder did. */
interface Holder {
  /** Its sections, by token. */
  readonly sections: Map<number, Section>;
  /** Its open sections: normally at most one. */
  readonly open: Section[];
}

/**
 * Checks a lock history: mutual exclusion, fencing-token order and matching starts and ends over
 * `history.events`, unique tokens over `history.acquisitions`. Throws a `HistoryFormatError` for
 * a malformed history: an unknown kind, a missing holder, a token that is not a positive integer,
 * a time that is not a finite number, or events whose times go back.
 */
export function checkLocks(history: LockHistory, options: LockCheckOptions = {}): LockCheckResult {
  const max = options.maxViolations ?? DEFAULT_MAX_LOCK_VIOLATIONS;
  if (!(max >= 0) || (!Number.isInteger(max) && max !== Infinity)) {
    throw new RangeError(`maxViolations must be a non-negative integer, not ${String(max)}`);
  }
  const events = history.events;
  if (!Array.isArray(events)) throw new HistoryFormatError('events must be an array');
  const on = history.lock === undefined ? '' : ` on lock ${JSON.stringify(history.lock)}`;
  const out = new Collector(max);

  /** Each holder's sections, by name. */
  const holders = new Map<string, Holder>();
  /** The open sections, oldest first. */
  const open = new Set<Section>();
  let sections = 0;
  let crashes = 0;
  /** The start with the largest token so far. */
  let top: Section | undefined;
  let lastAt = -Infinity;

  for (let i = 0; i < events.length; i++) {
    const e = checkEvent(events[i], i);
    if (e.at < lastAt) {
      throw new HistoryFormatError(
        `events[${i}]: time ${e.at} is before the previous event's time ${lastAt}; events must be in the order the resource saw them, with nondecreasing times`,
      );
    }
    lastAt = e.at;
    let holder = holders.get(e.holder);
    if (holder === undefined) {
      holder = { sections: new Map(), open: [] };
      holders.set(e.holder, holder);
    }
    if (e.kind === 'crash') {
      crashes++;
      for (const s of holder.open) {
        s.closed = { by: 'crash', at: e.at };
        open.delete(s);
      }
      holder.open.length = 0;
      continue;
    }
    const section = holder.sections.get(e.token);
    if (e.kind === 'end') {
      if (section !== undefined && section.closed === undefined) {
        section.closed = { by: 'end', at: e.at };
        open.delete(section);
        holder.open.splice(holder.open.indexOf(section), 1);
        continue;
      }
      out.add(() => {
        const who = holderName(e.holder);
        const closed = section?.closed;
        const why =
          closed === undefined
            ? 'it never started'
            : closed.by === 'end'
              ? `it had already ended at ${closed.at}`
              : `${who} crashed at ${closed.at}, which ended it`;
        return {
          kind: 'unmatched',
          holder: e.holder,
          token: e.token,
          at: e.at,
          ...(closed === undefined ? {} : { other: { holder: e.holder, token: e.token, at: closed.at } }),
          message:
            `unmatched: ${who} left its critical section${on} with token ${e.token} at ${e.at}, but no section of ${who} with token ${e.token} was open: ${why}. ` +
            `Every end must close a section its holder started with the same token.`,
        };
      });
      continue;
    }

    // A start.
    if (section !== undefined) {
      const first = section.at;
      const was = section.closed;
      out.add(() => ({
        kind: 'unmatched',
        holder: e.holder,
        token: e.token,
        at: e.at,
        other: { holder: e.holder, token: e.token, at: first },
        message:
          `unmatched: ${holderName(e.holder)} entered its critical section${on} with token ${e.token} at ${e.at}, but it had already entered with that token at ${first}` +
          (was === undefined ? ' and not left' : was.by === 'end' ? ` and left at ${was.at}` : ` and crashed at ${was.at}`) +
          `. A token belongs to one acquisition, so to one section: a holder entering again must acquire the lock again.`,
      }));
      section.at = e.at;
      if (was !== undefined) {
        section.closed = undefined;
        open.add(section);
        holder.open.push(section);
      }
      continue;
    }
    const s: Section = { holder: e.holder, token: e.token, at: e.at };
    sections++;
    holder.sections.set(e.token, s);
    if (open.size > 0) {
      // The oldest open section: the one open longest.
      const inside = open.values().next().value!;
      const others = open.size - 1;
      out.add(() => ({
        kind: 'overlap',
        holder: e.holder,
        token: e.token,
        at: e.at,
        other: { holder: inside.holder, token: inside.token, at: inside.at },
        message:
          `overlap: ${holderName(e.holder)} entered its critical section${on} with token ${e.token} at ${e.at} while ${holderName(inside.holder)} ` +
          `was still in its section with token ${inside.token} (entered at ${inside.at}, neither ended nor crashed since)` +
          (others > 0 ? `, as were ${others} other section${others === 1 ? '' : 's'}` : '') +
          `. Two sections used the resource at once: the lock must let one holder in at a time, and the resource must refuse the smaller token.`,
      }));
    }
    if (top !== undefined && e.token <= top.token) {
      const before = { holder: top.holder, token: top.token, at: top.at };
      out.add(() => ({
        kind: 'token-order',
        holder: e.holder,
        token: e.token,
        at: e.at,
        other: before,
        message:
          `token-order: ${holderName(e.holder)} entered its critical section${on} with token ${e.token} at ${e.at}, after ${holderName(before.holder)} ` +
          `had entered with token ${before.token} at ${before.at}. The resource must refuse a token not greater than every token it has seen, ` +
          `or a holder whose lease expired while it was paused acts after its successor.`,
      }));
    }
    if (top === undefined || e.token > top.token) top = s;
    open.add(s);
    holder.open.push(s);
  }

  checkAcquisitions(history.acquisitions, on, out);
  return {
    ok: out.list.length === 0 && out.omitted === 0,
    violations: out.list,
    omitted: out.omitted,
    stats: { sections, holders: holders.size, crashes, maxToken: top?.token ?? 0, openAtEnd: open.size },
  };
}

class Collector {
  readonly list: LockViolation[] = [];
  omitted = 0;
  constructor(private readonly max: number) {}
  /** `make` runs only when the violation will be listed. */
  add(make: () => LockViolation): void {
    if (this.list.length < this.max) this.list.push(make());
    else this.omitted++;
  }
}

function holderName(holder: string): string {
  return `holder ${JSON.stringify(holder)}`;
}

function checkAcquisitions(acquisitions: readonly LockAcquisition[] | undefined, on: string, out: Collector): void {
  if (acquisitions === undefined) return;
  if (!Array.isArray(acquisitions)) throw new HistoryFormatError('acquisitions must be an array');
  const byToken = new Map<number, LockAcquisition>();
  for (let i = 0; i < acquisitions.length; i++) {
    const a = acquisitions[i];
    const where = `acquisitions[${i}]`;
    if (typeof a !== 'object' || a === null) throw new HistoryFormatError(`${where}: an acquisition is an object { holder, token, at }`);
    checkHolder(a.holder, where);
    checkToken(a.token, where);
    checkAt(a.at, where);
    const first = byToken.get(a.token);
    if (first === undefined) {
      byToken.set(a.token, a);
      continue;
    }
    out.add(() => ({
      kind: 'duplicate-token',
      holder: a.holder,
      token: a.token,
      at: a.at,
      other: { holder: first.holder, token: first.token, at: first.at },
      message:
        `duplicate-token: the lock service${on} answered token ${a.token} to holder ${JSON.stringify(a.holder)} at ${a.at}, ` +
        `and had answered it to holder ${JSON.stringify(first.holder)} at ${first.at}. Each acquisition must get a token of its own, ` +
        `larger than every token issued before, or the resource cannot tell the holders apart.`,
    }));
  }
}

/** Validates one event, or throws a `HistoryFormatError` naming `where`. */
function checkEvent(raw: unknown, index: number): LockEvent {
  const e = raw as Record<string, unknown> | null;
  // The common case, checked without building a message.
  if (
    typeof e === 'object' &&
    e !== null &&
    (e['kind'] === 'start' || e['kind'] === 'end' || e['kind'] === 'crash') &&
    typeof e['holder'] === 'string' &&
    e['holder'] !== '' &&
    (e['kind'] === 'crash' || (Number.isSafeInteger(e['token']) && (e['token'] as number) >= 1)) &&
    Number.isFinite(e['at'])
  ) {
    return raw as LockEvent;
  }
  return checkEventSlowly(raw, `events[${index}]`);
}

function checkEventSlowly(raw: unknown, where: string): LockEvent {
  if (typeof raw !== 'object' || raw === null) throw new HistoryFormatError(`${where}: an event is an object with a kind`);
  const e = raw as Record<string, unknown>;
  if (typeof e['kind'] !== 'string' || !KINDS.has(e['kind'])) {
    throw new HistoryFormatError(`${where}: unknown kind ${JSON.stringify(e['kind'])} (expected start, end or crash)`);
  }
  checkHolder(e['holder'], where);
  if (e['kind'] !== 'crash') checkToken(e['token'], where);
  checkAt(e['at'], where);
  return raw as LockEvent;
}

function checkHolder(holder: unknown, where: string): void {
  if (typeof holder !== 'string' || holder === '') {
    throw new HistoryFormatError(`${where}: holder must be a non-empty string, not ${holder === undefined ? 'missing' : JSON.stringify(holder)}`);
  }
}

function checkToken(token: unknown, where: string): void {
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token < 1) {
    throw new HistoryFormatError(`${where}: token must be a positive integer, not ${token === undefined ? 'missing' : String(token)}`);
  }
}

function checkAt(at: unknown, where: string): void {
  if (typeof at !== 'number' || !Number.isFinite(at)) {
    throw new HistoryFormatError(`${where}: at must be a finite number, not ${at === undefined ? 'missing' : JSON.stringify(at)}`);
  }
}

const TOKEN = /^[0-9]+$/;
const TIME = /^-?[0-9]+(\.[0-9]+)?$/;

/**
 * Parses the lines a shell critical section writes, one event per line:
 *
 *   start <holder> <token> <at>
 *   end <holder> <token> <at>
 *   crash <holder> <at>
 *
 * Fields are separated by spaces or tabs; blank lines are skipped. Throws a `HistoryFormatError`
 * naming `file` (when given) and the line for a malformed line or a time that goes back. Times
 * above 2^53 (nanoseconds since the epoch) are rounded to the nearest double, which keeps their
 * order (two may become equal, which the checker allows).
 */
export function parseLockLines(text: string, file?: string): LockEvent[] {
  const events: LockEvent[] = [];
  const rows = text.split('\n');
  let lastAt = -Infinity;
  let lastLine = 0;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!.trim();
    if (row === '') continue;
    const line = i + 1;
    const fail = (detail: string): never => {
      throw new HistoryFormatError(detail, file, line);
    };
    const f = row.split(/\s+/);
    const kind = f[0]!;
    let event: LockEvent;
    if (kind === 'start' || kind === 'end') {
      if (f.length !== 4) fail(`expected "${kind} <holder> <token> <at>", not ${JSON.stringify(row)}`);
      const [, holder, token, at] = f as [string, string, string, string];
      if (!TOKEN.test(token) || !Number.isSafeInteger(Number(token)) || Number(token) < 1) {
        fail(`the token must be a positive integer, not ${JSON.stringify(token)}`);
      }
      if (!TIME.test(at)) fail(`the time must be a number, not ${JSON.stringify(at)}`);
      event = { kind, holder, token: Number(token), at: Number(at) };
    } else if (kind === 'crash') {
      if (f.length !== 3) fail(`expected "crash <holder> <at>", not ${JSON.stringify(row)}`);
      const [, holder, at] = f as [string, string, string];
      if (!TIME.test(at)) fail(`the time must be a number, not ${JSON.stringify(at)}`);
      event = { kind, holder, at: Number(at) };
    } else {
      return fail(`unknown event ${JSON.stringify(kind)} (expected start, end or crash)`);
    }
    if (event.at < lastAt) {
      fail(`time ${f[f.length - 1]} is before the time ${lastAt} on line ${lastLine}; the lines must be in the order the resource saw them, with nondecreasing times`);
    }
    lastAt = event.at;
    lastLine = line;
    events.push(event);
  }
  return events;
}
