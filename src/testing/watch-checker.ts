/**
 * A checker for Watch histories: does what each watch received agree with what the store
 * committed? A Watch is only as useful as its guarantees. A cache, an index or a replica kept up
 * to date from a watch is silently wrong when a change is lost, repeated, reordered, half of a
 * transaction is applied, or a progress notification claims completeness too early, and none of
 * that shows in the watch's own output. The ground truth is the list of changes the store
 * committed; each watch's responses, in the order received, are compared with it.
 *
 * The guarantees are the ones etcd's robustness tests check for Watch
 * (tests/robustness/validate/watch.go): ordered, unique, reliable, atomic, resumable and
 * progress-notify ("bookmarkable"), plus "invented" for events no committed change explains.
 * A chain of watches, each resuming the one before it after a broken stream, is checked as one
 * logical watch for unique and reliable, the way an application sees it.
 *
 * One defect yields one violation where that can be told: an event is checked for, in order,
 * invented, unique, ordered and progress, and is reported under the first that applies; a change
 * missing from a half-delivered transaction is reported as `atomic`, not also as `reliable`; a
 * change lost in the gap before a resume is reported as `resumable`. An event whose revision and
 * key match a committed change but whose type or value do not is `invented`, and still counts as
 * delivered.
 *
 * Keys are compared as JavaScript strings, by UTF-16 code unit. Callers that hold keys as bytes
 * should convert them with latin1 (`Buffer.toString('latin1')`): one byte per code unit, so that
 * string order is byte order and a string prefix is a byte prefix, as the server compares them.
 *
 * Cost: committed changes are indexed by key (and the key's revisions) and by revision; each event
 * costs a binary search, and each watch's reliability check visits the committed changes in its
 * range and revision window, through whichever index is smaller. 100k changes and hundreds of
 * watches check in well under a second.
 */
import { HistoryFormatError } from './history.js';

/**
 * One change the store committed. Several changes may share a revision: one transaction (a key at
 * most once per revision). A delete of an absent key is not a change.
 */
export interface CommittedChange {
  readonly revision: number;
  readonly type: 'put' | 'delete';
  readonly key: string;
  /** The value a put wrote; ignored for a delete. */
  readonly value?: string;
}

/** One event a watch received. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  /** The value a put wrote; ignored for a delete. */
  readonly value?: string;
  readonly revision: number;
  /**
   * The key's value just before the change, when the watch asked for it; absent when it did not,
   * or when the key was absent. Checked only when present.
   */
  readonly prevValue?: string;
}

/**
 * One response of a watch: a batch of events (one or more whole revisions, in order), or a
 * progress notification meaning "every event in this watch's range with revision ≤ `revision`
 * has been delivered".
 */
export type WatchResponseRecord =
  | { readonly kind: 'events'; readonly events: readonly WatchEvent[] }
  | { readonly kind: 'progress'; readonly revision: number };

/**
 * The keys a watch covers. Neither `end` nor `prefix`: the key `key` alone. `end`: the keys in
 * [key, end). `prefix`: the keys that start with `key` (every key, for an empty `key`). Not both.
 */
export interface WatchRange {
  readonly key: string;
  readonly end?: string;
  readonly prefix?: boolean;
}

/** What one watch asked for and received. */
export interface WatchRecord {
  /** Unique per watch. */
  readonly id: string;
  /** The node that served it; messages name it. */
  readonly node?: string;
  readonly range: WatchRange;
  /** The first revision the watch asked for (≥ 1). */
  readonly startRevision: number;
  /** In the order received. */
  readonly responses: readonly WatchResponseRecord[];
  /**
   * The id of the watch this one resumes after it broke. It should start at that watch's covered
   * revision + 1 (see {@link checkWatches}) and watch the same range. A watch is resumed at most
   * once: resumes form chains, not trees.
   */
  readonly resumes?: string;
  /** The revision the server said the watch was complete up to when it ended, if it said. */
  readonly endedAtRevision?: number;
}

export interface WatchHistory {
  /** Every change the store committed, in revision order. */
  readonly committed: readonly CommittedChange[];
  readonly watches: readonly WatchRecord[];
}

/**
 * - `ordered`: a watch received a revision lower than one it had already received.
 * - `unique`: a watch, or a chain of resumed watches, received the same change twice.
 * - `reliable`: a watch never delivered a change in its range between its start revision and the
 *   revision it covered (its last event, its last progress notification or the revision it
 *   ended at, whichever is highest).
 * - `atomic`: the changes of one revision in a watch's range arrived split across responses, or
 *   only some of them arrived.
 * - `progress`: a progress notification went back, or an event at or below a progress
 *   notification's revision arrived after it.
 * - `resumable`: a watch resumed another from a revision beyond the covered one + 1 (skipping
 *   revisions), or over a different range.
 * - `invented`: an event that no committed change explains, outside the watch's range, below its
 *   start revision, or with a type, value or previous value other than the store's.
 */
export type WatchViolationKind = 'ordered' | 'unique' | 'reliable' | 'atomic' | 'resumable' | 'progress' | 'invented';

export interface WatchViolation {
  readonly kind: WatchViolationKind;
  /** The watch at fault (for `resumable`, the resuming watch). */
  readonly watchId: string;
  /** The revision of the event or change at fault (for `progress`, of the notification at fault). */
  readonly revision?: number;
  /** The key of the event or change at fault. */
  readonly key?: string;
  /** The other watch involved: the resumed one (`resumable`), or the one that delivered a change first (`unique`). */
  readonly otherWatchId?: string;
  /** What happened and what the guarantee requires, in words. */
  readonly message: string;
}

export interface WatchCheckOptions {
  /** List at most this many violations (the rest are counted in `omitted`); default 100. */
  readonly maxViolations?: number;
}

export interface WatchCheckStats {
  readonly watches: number;
  /** Events received, over all watches. */
  readonly events: number;
  /** Progress notifications received, over all watches. */
  readonly progress: number;
  /** Watches that resume another. */
  readonly resumes: number;
  /** Logical watches: chains of resumed watches, a watch on its own counting as a chain of one. */
  readonly chains: number;
}

export interface WatchCheckResult {
  readonly ok: boolean;
  /** Chain by chain (in the order of each chain's first watch in the input), watch by watch. */
  readonly violations: WatchViolation[];
  /** Violations found beyond `maxViolations`, not listed. */
  readonly omitted: number;
  readonly stats: WatchCheckStats;
}

/** The most violations listed when `maxViolations` is not given. */
export const DEFAULT_MAX_WATCH_VIOLATIONS = 100;

/** The most missing changes an `atomic` message names one by one. */
const MAX_MISSING_LISTED = 3;

/**
 * Checks every watch of `history` against the changes the store committed. Throws a
 * `HistoryFormatError` for a malformed history: committed changes out of revision order or
 * repeating a key within a revision, a repeated watch id, a resume of an unknown watch, two
 * watches resuming the same one, or a cycle of resumes.
 *
 * A watch's covered revision is the highest of its start revision − 1, its last event's
 * revision, its highest progress revision and `endedAtRevision`: it promised every change in its
 * range from its start revision up to there.
 */
export function checkWatches(history: WatchHistory, options: WatchCheckOptions = {}): WatchCheckResult {
  const max = options.maxViolations ?? DEFAULT_MAX_WATCH_VIOLATIONS;
  if (!(max >= 0) || (!Number.isInteger(max) && max !== Infinity)) {
    throw new RangeError(`maxViolations must be a non-negative integer, not ${String(max)}`);
  }
  const index = new CommittedIndex(history.committed);
  const chains = resumeChains(history.watches);
  const out = new Collector(max);
  let events = 0;
  let progress = 0;
  let resumes = 0;
  for (const w of history.watches) {
    if (w.resumes !== undefined) resumes++;
    for (const r of w.responses) {
      if (r.kind === 'progress') progress++;
      else events += r.events.length;
    }
  }
  const state = new DeliveryState(history.committed.length);
  for (const chain of chains) checkChain(index, state, chain.map((i) => history.watches[i]!), out);
  return {
    ok: out.list.length === 0 && out.omitted === 0,
    violations: out.list,
    omitted: out.omitted,
    stats: { watches: history.watches.length, events, progress, resumes, chains: chains.length },
  };
}

class Collector {
  readonly list: WatchViolation[] = [];
  omitted = 0;
  constructor(private readonly max: number) {}
  /** `make` runs only when the violation will be listed. */
  add(make: () => WatchViolation): void {
    if (this.list.length < this.max) this.list.push(make());
    else this.omitted++;
  }
}

/**
 * Who delivered each committed change, by its index in `committed`. Stamps, not flags, so that
 * nothing needs clearing between chains: `chainOf[i] === chain` means some link of `chain`
 * delivered change i; `linkOf[i] === link` that the link did.
 */
class DeliveryState {
  readonly chainOf: Int32Array;
  readonly firstLink: Int32Array;
  readonly firstResponse: Int32Array;
  readonly linkOf: Int32Array;
  /** Chain stamp of changes already reported missing (by `reliable` or `resumable`). */
  readonly reported: Int32Array;
  /**
   * By the index of a revision's first change: the link stamp of the last link that received the
   * revision, the first response it arrived in there, and another (or -1).
   */
  readonly groupLink: Int32Array;
  readonly groupFirstResponse: Int32Array;
  readonly groupOtherResponse: Int32Array;
  chain = 0;
  link = 0;
  /** The watch of each link of the current chain. */
  readonly watchOfLink = new Map<number, WatchRecord>();
  constructor(n: number) {
    this.chainOf = new Int32Array(n);
    this.firstLink = new Int32Array(n);
    this.firstResponse = new Int32Array(n);
    this.linkOf = new Int32Array(n);
    this.reported = new Int32Array(n);
    this.groupLink = new Int32Array(n);
    this.groupFirstResponse = new Int32Array(n);
    this.groupOtherResponse = new Int32Array(n);
  }
}

// ---------------------------------------------------------------------------------------------
// The committed changes, indexed.

/**
 * The committed changes indexed by key and by revision, in flat arrays: `byKey` lists the changes'
 * indices key by key (a key's changes by increasing revision, from `keyStart[k]` to
 * `keyStart[k + 1]`), and `groupStart`/`groupEnd` give each change the span of its revision.
 */
class CommittedIndex {
  private readonly keyIds = new Map<string, number>();
  private readonly keyStart: Int32Array;
  private readonly byKey: Int32Array;
  /** The revision of `byKey[p]`. */
  private readonly byKeyRevision: Float64Array;
  /** Where change i sits in `byKey`. */
  private readonly position: Int32Array;
  /** The revision of change i. */
  private readonly revisions: Float64Array;
  /** The span [groupStart[i], groupEnd[i]) of the changes of change i's revision. */
  readonly groupStart: Int32Array;
  readonly groupEnd: Int32Array;
  private sortedNames: string[] | undefined;
  private sortedIds: Int32Array | undefined;

  constructor(readonly committed: readonly CommittedChange[]) {
    const n = committed.length;
    const keyOf = new Int32Array(n);
    const lastRevision: number[] = [];
    this.revisions = new Float64Array(n);
    this.groupStart = new Int32Array(n);
    this.groupEnd = new Int32Array(n);
    let last = 0;
    let start = 0;
    for (let i = 0; i < n; i++) {
      const c = committed[i]!;
      const where = `committed[${i}]`;
      if (!Number.isSafeInteger(c.revision) || c.revision < 1) throw new HistoryFormatError(`${where}: revision must be an integer ≥ 1, not ${String(c.revision)}`);
      if (c.revision < last) throw new HistoryFormatError(`${where}: revision ${c.revision} after revision ${last}; committed changes must be in revision order`);
      if (c.type !== 'put' && c.type !== 'delete') throw new HistoryFormatError(`${where}: type must be 'put' or 'delete', not ${JSON.stringify(c.type)}`);
      if (typeof c.key !== 'string') throw new HistoryFormatError(`${where}: key must be a string`);
      if (c.revision !== last) {
        for (let j = start; j < i; j++) this.groupEnd[j] = i;
        start = i;
      }
      this.groupStart[i] = start;
      last = c.revision;
      this.revisions[i] = c.revision;
      let id = this.keyIds.get(c.key);
      if (id === undefined) {
        id = lastRevision.length;
        this.keyIds.set(c.key, id);
        lastRevision.push(0);
      }
      if (lastRevision[id] === c.revision) {
        throw new HistoryFormatError(`${where}: key ${JSON.stringify(c.key)} changes twice at revision ${c.revision}; a transaction changes a key at most once`);
      }
      lastRevision[id] = c.revision;
      keyOf[i] = id;
    }
    for (let j = start; j < n; j++) this.groupEnd[j] = n;
    // A counting sort by key keeps each key's changes in revision order.
    const keys = lastRevision.length;
    this.keyStart = new Int32Array(keys + 1);
    for (let i = 0; i < n; i++) this.keyStart[keyOf[i]! + 1]!++;
    for (let k = 0; k < keys; k++) this.keyStart[k + 1]! += this.keyStart[k]!;
    const fill = this.keyStart.slice(0, keys);
    this.byKey = new Int32Array(n);
    this.byKeyRevision = new Float64Array(n);
    this.position = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const p = fill[keyOf[i]!]!++;
      this.byKey[p] = i;
      this.byKeyRevision[p] = this.revisions[i]!;
      this.position[i] = p;
    }
  }

  /**
   * The index of the change to `key` at `revision`, or -1. `near` is the index of a change at a
   * nearby revision (the previous event's, say), or -1: a watch's events mostly come in revision
   * order, so the search gallops out from there.
   */
  find(revision: number, key: string, near: number): number {
    const revisions = this.revisions;
    const n = revisions.length;
    let lo: number;
    let hi: number;
    if (near < 0 || near >= n) [lo, hi] = [0, n];
    else if (revisions[near]! < revision) {
      let step = 1;
      lo = near + 1;
      while (lo + step < n && revisions[lo + step]! < revision) step *= 2;
      hi = Math.min(n, lo + step + 1);
    } else {
      let step = 1;
      hi = near + 1;
      while (hi - step > 0 && revisions[hi - step - 1]! >= revision) step *= 2;
      lo = Math.max(0, hi - step - 1);
    }
    const g = lowerBound(revisions, lo, hi, revision);
    if (g === n || revisions[g] !== revision) return -1;
    const end = this.groupEnd[g]!;
    if (end - g <= 8) {
      for (let i = g; i < end; i++) if (this.committed[i]!.key === key) return i;
      return -1;
    }
    return this.findByKey(revision, key);
  }

  private findByKey(revision: number, key: string): number {
    const id = this.keyIds.get(key);
    if (id === undefined) return -1;
    const end = this.keyStart[id + 1]!;
    const p = lowerBound(this.byKeyRevision, this.keyStart[id]!, end, revision);
    return p < end && this.byKeyRevision[p] === revision ? this.byKey[p]! : -1;
  }

  /** The change to the same key before change `i`, if the history holds one. */
  previous(i: number): CommittedChange | undefined {
    const p = this.position[i]!;
    const id = this.keyIds.get(this.committed[i]!.key)!;
    return p === this.keyStart[id]! ? undefined : this.committed[this.byKey[p - 1]!];
  }

  /** The indices of the changes of `revision`: [start, end), empty when there are none. */
  revisionSpan(revision: number): [number, number] {
    const i = lowerBound(this.revisions, 0, this.revisions.length, revision);
    return i < this.revisions.length && this.revisions[i] === revision ? [i, this.groupEnd[i]!] : [i, i];
  }

  /** Calls `visit` with the index of each change in `range` with `from` ≤ revision ≤ `to`, in no particular order. */
  forEach(range: WatchRange, from: number, to: number, visit: (i: number) => void): void {
    if (from > to) return;
    if (range.prefix !== true && range.end === undefined) {
      const id = this.keyIds.get(range.key);
      if (id !== undefined) this.visitKey(id, from, to, visit);
      return;
    }
    // Either scan the revision window, testing each change's key, or visit each key in the range
    // and search its revisions: whichever touches fewer entries.
    const lo = lowerBound(this.revisions, 0, this.revisions.length, from);
    const hi = lowerBound(this.revisions, lo, this.revisions.length, to + 1);
    const names = this.sortedKeys();
    const kLo = lowerBound(names, 0, names.length, range.key);
    const kHi = range.prefix === true ? firstNotPrefixed(names, kLo, range.key) : range.end! > range.key ? lowerBound(names, kLo, names.length, range.end!) : kLo;
    if (hi - lo <= (kHi - kLo) * 8) {
      for (let i = lo; i < hi; i++) if (inRange(range, this.committed[i]!.key)) visit(i);
      return;
    }
    const ids = this.sortedIds!;
    for (let k = kLo; k < kHi; k++) this.visitKey(ids[k]!, from, to, visit);
  }

  private visitKey(id: number, from: number, to: number, visit: (i: number) => void): void {
    const end = this.keyStart[id + 1]!;
    for (let p = lowerBound(this.byKeyRevision, this.keyStart[id]!, end, from); p < end && this.byKeyRevision[p]! <= to; p++) visit(this.byKey[p]!);
  }

  private sortedKeys(): string[] {
    if (this.sortedNames === undefined) {
      // The default sort compares by UTF-16 code unit, as `<` does.
      this.sortedNames = [...this.keyIds.keys()].sort();
      this.sortedIds = Int32Array.from(this.sortedNames, (name) => this.keyIds.get(name)!);
    }
    return this.sortedNames;
  }
}

/** The first index in [lo, hi) of `sorted` whose entry is ≥ `value` (`hi` when none is). */
function lowerBound<T extends number | string>(sorted: ArrayLike<T>, lo: number, hi: number, value: T): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** In sorted `keys`, from `from` (the first key ≥ `prefix`), the first key that does not start with `prefix`. */
function firstNotPrefixed(keys: readonly string[], from: number, prefix: string): number {
  let lo = from;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]!.startsWith(prefix)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function inRange(range: WatchRange, key: string): boolean {
  if (range.prefix === true) return key.startsWith(range.key);
  if (range.end !== undefined) return key >= range.key && key < range.end;
  return key === range.key;
}

function sameRange(a: WatchRange, b: WatchRange): boolean {
  return a.key === b.key && a.end === b.end && (a.prefix === true) === (b.prefix === true);
}

// ---------------------------------------------------------------------------------------------
// Resume chains.

/** The watches as chains of resumes (indices, first watch first), ordered by their first watch. */
function resumeChains(watches: readonly WatchRecord[]): number[][] {
  const byId = new Map<string, number>();
  watches.forEach((w, i) => {
    const where = `watch ${JSON.stringify(w.id)}`;
    if (typeof w.id !== 'string') throw new HistoryFormatError(`watches[${i}]: id must be a string`);
    if (byId.has(w.id)) throw new HistoryFormatError(`${where}: the id is used by two watches (watches[${byId.get(w.id)}] and watches[${i}])`);
    byId.set(w.id, i);
    if (!Number.isSafeInteger(w.startRevision) || w.startRevision < 1) {
      throw new HistoryFormatError(`${where}: startRevision must be an integer ≥ 1, not ${String(w.startRevision)}`);
    }
    if (w.range === undefined || typeof w.range.key !== 'string') throw new HistoryFormatError(`${where}: range.key must be a string`);
    if (w.range.prefix === true && w.range.end !== undefined) throw new HistoryFormatError(`${where}: a range has either an end or prefix, not both`);
    for (const [r, resp] of w.responses.entries()) {
      if (resp.kind !== 'events' && resp.kind !== 'progress') throw new HistoryFormatError(`${where}: response ${r + 1} has kind ${JSON.stringify((resp as { kind: unknown }).kind)}`);
    }
  });
  const next = new Int32Array(watches.length).fill(-1);
  for (const [i, w] of watches.entries()) {
    if (w.resumes === undefined) continue;
    const p = byId.get(w.resumes);
    const where = `watch ${JSON.stringify(w.id)}`;
    if (p === undefined) throw new HistoryFormatError(`${where} resumes watch ${JSON.stringify(w.resumes)}, which is not in the history`);
    if (p === i) throw new HistoryFormatError(`${where} resumes itself`);
    if (next[p] !== -1) {
      throw new HistoryFormatError(`watches ${JSON.stringify(watches[next[p]!]!.id)} and ${JSON.stringify(w.id)} both resume watch ${JSON.stringify(w.resumes)}; a watch is resumed at most once`);
    }
    next[p] = i;
  }
  const chains: number[][] = [];
  let placed = 0;
  for (const [i, w] of watches.entries()) {
    if (w.resumes !== undefined) continue;
    const chain: number[] = [];
    for (let j = i; j !== -1; j = next[j]!) chain.push(j);
    placed += chain.length;
    chains.push(chain);
  }
  if (placed < watches.length) {
    const stuck = watches.filter((w, i) => w.resumes !== undefined && !chains.some((c) => c.includes(i))).map((w) => JSON.stringify(w.id));
    throw new HistoryFormatError(`watches ${stuck.join(', ')} resume each other in a cycle`);
  }
  return chains;
}

// ---------------------------------------------------------------------------------------------
// Checking.

/** What one link of a chain covered: every change in its range with revision in [start, covered]. */
interface Span {
  readonly watch: WatchRecord;
  readonly start: number;
  readonly covered: number;
  /** Why `covered`, for messages: "its last event", … */
  readonly coveredBy: string;
}

function checkChain(index: CommittedIndex, state: DeliveryState, chain: readonly WatchRecord[], out: Collector): void {
  state.chain++;
  state.watchOfLink.clear();
  const spans: Span[] = [];
  /** Revisions reported as partly delivered (atomic): their missing changes are not reported again. */
  const partial = new Set<number>();
  for (const [j, w] of chain.entries()) {
    const before = j === 0 ? undefined : spans[j - 1]!;
    if (before !== undefined && !sameRange(before.watch.range, w.range)) {
      out.add(() => ({
        kind: 'resumable',
        watchId: w.id,
        otherWatchId: before.watch.id,
        message:
          `resumable: ${watchName(w)} resumes ${watchName(before.watch)} but watches ${rangeText(w.range)} where the resumed watch watched ` +
          `${rangeText(before.watch.range)}. A resumed watch must watch the same keys, or changes to the others are lost or invented.`,
      }));
    }
    state.link++;
    state.watchOfLink.set(state.link, w);
    spans.push(checkLink(index, state, w, before, partial, out));
  }
  checkReliable(index, state, spans, partial, out);
}

/** Checks one watch's responses event by event (invented, unique, ordered, progress), then its transactions (atomic). */
function checkLink(index: CommittedIndex, state: DeliveryState, w: WatchRecord, before: Span | undefined, partial: Set<number>, out: Collector): Span {
  const committed = index.committed;
  const link = state.link;
  /** The revisions received, by the index of their first change, in the order they first arrived. */
  const groups: number[] = [];
  /** The change the last event matched, where the next search starts. */
  let near = -1;
  let maxRevision = 0;
  let maxRevisionResponse = -1;
  let progress = -Infinity;
  let progressResponse = -1;
  for (let r = 0; r < w.responses.length; r++) {
    const resp = w.responses[r]!;
    if (resp.kind === 'progress') {
      if (resp.revision < progress) {
        const last = progress;
        const lastResponse = progressResponse;
        out.add(() => ({
          kind: 'progress',
          watchId: w.id,
          revision: resp.revision,
          message:
            `progress: ${watchName(w)} received a progress notification for revision ${resp.revision} in response ${r + 1}, after one for ` +
            `revision ${last} in response ${lastResponse + 1}. Progress revisions must never go back.`,
        }));
      } else {
        progress = resp.revision;
        progressResponse = r;
      }
      continue;
    }
    let orderedReported = false;
    for (let e = 0; e < resp.events.length; e++) {
      const ev = resp.events[e]!;
      // invented: below the start, outside the range, or no such change.
      if (!(ev.revision >= w.startRevision)) {
        out.add(() => ({
          kind: 'invented',
          watchId: w.id,
          revision: ev.revision,
          key: ev.key,
          message:
            `invented: ${watchName(w)} asked for revisions from ${w.startRevision} but received the ${eventText(ev)} in response ${r + 1}. ` +
            'A watch must deliver only changes at or after its start revision.',
        }));
        continue;
      }
      if (!inRange(w.range, ev.key)) {
        out.add(() => ({
          kind: 'invented',
          watchId: w.id,
          revision: ev.revision,
          key: ev.key,
          message:
            `invented: ${watchName(w)} on ${rangeText(w.range)} received the ${eventText(ev)} in response ${r + 1}, a key outside its range. ` +
            'A watch must deliver only changes to keys in its range.',
        }));
        continue;
      }
      const i = index.find(ev.revision, ev.key, near);
      if (i < 0) {
        out.add(() => ({
          kind: 'invented',
          watchId: w.id,
          revision: ev.revision,
          key: ev.key,
          message:
            `invented: ${watchName(w)} received the ${eventText(ev)} in response ${r + 1}, but the store committed no change to ` +
            `${JSON.stringify(ev.key)} at revision ${ev.revision} (${whatHappenedAt(index, ev.revision)}). A watch must deliver only committed changes.`,
        }));
        continue;
      }
      near = i;
      let reported = false;
      const c = committed[i]!;
      if (c.type !== ev.type || (c.type === 'put' && c.value !== ev.value)) {
        reported = true;
        out.add(() => ({
          kind: 'invented',
          watchId: w.id,
          revision: ev.revision,
          key: ev.key,
          message:
            `invented: ${watchName(w)} received the ${eventText(ev)} in response ${r + 1}, but the store committed the ${changeText(c)}. ` +
            'An event must carry the change as committed: its type and value.',
        }));
      } else if (ev.prevValue !== undefined) {
        const prev = index.previous(i);
        const held = prev?.type === 'put' ? prev.value : undefined;
        if (held !== ev.prevValue) {
          reported = true;
          out.add(() => ({
            kind: 'invented',
            watchId: w.id,
            revision: ev.revision,
            key: ev.key,
            message:
              `invented: ${watchName(w)} received the ${eventText(ev)} in response ${r + 1} with previous value ${JSON.stringify(ev.prevValue)}, ` +
              `but just before revision ${ev.revision} ${JSON.stringify(ev.key)} ${held === undefined ? 'was absent' : `held ${JSON.stringify(held)}`}. ` +
              "An event's previous value must be what the key held just before the change.",
          }));
        }
      }
      // unique: within this watch, then within its chain.
      if (state.linkOf[i] === link) {
        if (!reported) {
          const first = state.firstResponse[i]!;
          out.add(() => ({
            kind: 'unique',
            watchId: w.id,
            revision: ev.revision,
            key: ev.key,
            message:
              `unique: ${watchName(w)} received the ${changeText(c)} twice: in response ${first + 1} and again in response ${r + 1}. ` +
              'A watch must deliver each change once.',
          }));
        }
        continue;
      }
      state.linkOf[i] = link;
      if (state.chainOf[i] === state.chain) {
        if (!reported) {
          reported = true;
          const firstWatch = state.watchOfLink.get(state.firstLink[i]!)!;
          const first = state.firstResponse[i]!;
          const earlier = before!;
          const hint =
            w.startRevision <= earlier.covered
              ? ` It started at revision ${w.startRevision}, but ${watchName(earlier.watch)}, which it resumes, had covered up to revision ` +
                `${earlier.covered} (${earlier.coveredBy}): a resume must start at ${earlier.covered + 1}.`
              : '';
          out.add(() => ({
            kind: 'unique',
            watchId: w.id,
            revision: ev.revision,
            key: ev.key,
            otherWatchId: firstWatch.id,
            message:
              `unique: ${watchName(w)} received the ${changeText(c)} in response ${r + 1}, already delivered in response ${first + 1} of ${watchName(firstWatch)}. ` +
              `A chain of resumed watches is one logical watch and must deliver each change once.${hint}`,
          }));
        }
      } else {
        state.chainOf[i] = state.chain;
        state.firstLink[i] = link;
        state.firstResponse[i] = r;
      }
      // ordered, then progress.
      if (ev.revision < maxRevision) {
        if (!reported && !orderedReported) {
          orderedReported = true;
          const after = maxRevision;
          const afterResponse = maxRevisionResponse;
          out.add(() => ({
            kind: 'ordered',
            watchId: w.id,
            revision: ev.revision,
            key: ev.key,
            message:
              `ordered: ${watchName(w)} received revision ${ev.revision} (the ${changeText(c)}) in response ${r + 1}, after revision ${after} ` +
              `had arrived${afterResponse === r ? ' earlier in the same response' : ` in response ${afterResponse + 1}`}. ` +
              'A watch must deliver revisions in increasing order.',
          }));
        }
      } else {
        if (ev.revision <= progress && !reported) {
          const claimed = progress;
          const claimedResponse = progressResponse;
          out.add(() => ({
            kind: 'progress',
            watchId: w.id,
            revision: ev.revision,
            key: ev.key,
            message:
              `progress: ${watchName(w)} received the ${changeText(c)} in response ${r + 1}, after the progress notification for revision ` +
              `${claimed} in response ${claimedResponse + 1} said every event up to revision ${claimed} had been delivered. A progress ` +
              'notification must come only after every event at or below its revision.',
          }));
        }
        maxRevision = ev.revision;
        maxRevisionResponse = r;
      }
      // atomic: which responses carried this revision.
      const g = index.groupStart[i]!;
      if (state.groupLink[g] !== link) {
        state.groupLink[g] = link;
        state.groupFirstResponse[g] = r;
        state.groupOtherResponse[g] = -1;
        groups.push(g);
      } else if (r !== state.groupFirstResponse[g] && state.groupOtherResponse[g] === -1) state.groupOtherResponse[g] = r;
    }
  }

  for (const g of groups) {
    const revision = committed[g]!.revision;
    const firstResponse = state.groupFirstResponse[g]!;
    const otherResponse = state.groupOtherResponse[g]!;
    let missing: CommittedChange[] | undefined;
    let expected = 0;
    for (let i = g; i < index.groupEnd[g]!; i++) {
      if (state.linkOf[i] === link) expected++;
      else if (inRange(w.range, committed[i]!.key)) {
        expected++;
        (missing ??= []).push(committed[i]!);
      }
    }
    if (otherResponse === -1 && missing === undefined) continue;
    missing ??= [];
    if (missing.length > 0) partial.add(revision);
    const delivered = expected - missing.length;
    const listed = missing.slice(0, MAX_MISSING_LISTED).map(changeText).join(', ');
    const more = missing.length > MAX_MISSING_LISTED ? ` and ${missing.length - MAX_MISSING_LISTED} more` : '';
    const missed = missing.length === 0 ? '' : `, and it never received the ${listed}${more}`;
    const how =
      otherResponse === -1
        ? `received only ${delivered} of the ${expected} changes of revision ${revision} in its range (in response ${firstResponse + 1})`
        : `received the changes of revision ${revision} in its range split across responses ${firstResponse + 1} and ${otherResponse + 1}`;
    out.add(() => ({
      kind: 'atomic',
      watchId: w.id,
      revision,
      ...(missing.length > 0 ? { key: missing[0]!.key } : {}),
      message:
        `atomic: ${watchName(w)} ${how}${missed}. All of a revision's changes in the watch's range (one transaction) must arrive ` +
        'together, in one response.',
    }));
  }

  const candidates: Array<[number, string]> = [
    [w.startRevision - 1, 'nothing delivered yet'],
    [maxRevision, 'its last event'],
    [progress, 'its last progress notification'],
    [w.endedAtRevision ?? -Infinity, 'the revision it ended at'],
  ];
  let [covered, coveredBy] = candidates[0]!;
  for (const [rev, why] of candidates) {
    if (rev > covered) [covered, coveredBy] = [rev, why];
  }
  return { watch: w, start: w.startRevision, covered, coveredBy };
}

/**
 * reliable and resumable: every change in each link's range from its start up to its covered
 * revision must reach some link of the chain; a resume must not start past the covered revision
 * + 1 of the watch it resumes, and whatever was committed in such a gap is reported with it.
 */
function checkReliable(index: CommittedIndex, state: DeliveryState, spans: readonly Span[], partial: Set<number>, out: Collector): void {
  const committed = index.committed;
  const chain = state.chain;
  const missed = (i: number): boolean => state.chainOf[i] !== chain && state.reported[i] !== chain && !partial.has(committed[i]!.revision);
  for (const [j, span] of spans.entries()) {
    const w = span.watch;
    if (j > 0) {
      const before = spans[j - 1]!;
      if (span.start > before.covered + 1) {
        const from = before.covered + 1;
        const to = span.start - 1;
        let count = 0;
        let first = -1;
        index.forEach(before.watch.range, from, to, (i) => {
          if (!missed(i)) return;
          state.reported[i] = chain;
          count++;
          if (first === -1 || i < first) first = i;
        });
        const revisions = from === to ? `revision ${from} was` : `revisions ${from} to ${to} were`;
        const loss =
          count === 0
            ? `no change in its range was committed there this time, but one could have been lost`
            : `the ${changeText(committed[first]!)} was never delivered${count > 1 ? ` (the first of ${count} changes lost)` : ''}`;
        out.add(() => ({
          kind: 'resumable',
          watchId: w.id,
          otherWatchId: before.watch.id,
          revision: count === 0 ? from : committed[first]!.revision,
          ...(count === 0 ? {} : { key: committed[first]!.key }),
          message:
            `resumable: ${watchName(w)} resumes ${watchName(before.watch)} from revision ${span.start}, but the resumed watch had covered only up to ` +
            `revision ${before.covered} (${before.coveredBy}), so ${revisions} watched by neither: ${loss}. A resume must start at the covered ` +
            `revision + 1, here ${from}.`,
        }));
      }
    }
    let count = 0;
    let first = -1;
    index.forEach(w.range, span.start, span.covered, (i) => {
      if (!missed(i)) return;
      state.reported[i] = chain;
      count++;
      if (first === -1 || i < first) first = i;
    });
    if (count === 0) continue;
    const c = committed[first]!;
    out.add(() => ({
      kind: 'reliable',
      watchId: w.id,
      revision: c.revision,
      key: c.key,
      message:
        `reliable: ${watchName(w)} on ${rangeText(w.range)} from revision ${span.start} covered up to revision ${span.covered} (${span.coveredBy}) ` +
        `but never delivered the ${changeText(c)}${count > 1 ? `, the first of ${count} changes it missed` : ''}. A watch must deliver every change in ` +
        'its range from its start revision up to the revision it has covered.',
    }));
  }
}

// ---------------------------------------------------------------------------------------------
// Words.

/** `watch "w1"`, `watch "w1" (node "n2")`. */
function watchName(w: WatchRecord): string {
  return `watch ${JSON.stringify(w.id)}${w.node === undefined ? '' : ` (node ${JSON.stringify(w.node)})`}`;
}

/** `key "x"`, `range ["a", "c")`, `prefix "a/"`. */
function rangeText(range: WatchRange): string {
  if (range.prefix === true) return `prefix ${JSON.stringify(range.key)}`;
  if (range.end !== undefined) return `range [${JSON.stringify(range.key)}, ${JSON.stringify(range.end)})`;
  return `key ${JSON.stringify(range.key)}`;
}

/** `put of "x" = "1" at revision 4`, `delete of "x" at revision 5`. */
function changeText(c: { readonly type: 'put' | 'delete'; readonly key: string; readonly value?: string; readonly revision: number }): string {
  const value = c.type === 'put' ? ` = ${c.value === undefined ? '(no value)' : JSON.stringify(c.value)}` : '';
  return `${c.type} of ${JSON.stringify(c.key)}${value} at revision ${c.revision}`;
}

function eventText(ev: WatchEvent): string {
  return changeText(ev);
}

/** What the store committed at `revision`, for an invented event's message. */
function whatHappenedAt(index: CommittedIndex, revision: number): string {
  const [start, end] = index.revisionSpan(revision);
  if (start === end) {
    const last = index.committed.length === 0 ? 0 : index.committed[index.committed.length - 1]!.revision;
    return revision > last ? `the last committed revision is ${last}` : `no change at all was committed at revision ${revision}`;
  }
  const keys = index.committed.slice(start, Math.min(end, start + MAX_MISSING_LISTED)).map((c) => JSON.stringify(c.key));
  return `revision ${revision} changed ${keys.join(', ')}${end - start > MAX_MISSING_LISTED ? ` and ${end - start - MAX_MISSING_LISTED} more keys` : ''}`;
}
