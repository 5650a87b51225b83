/**
 * The core's in-memory view of its log: the entries after the last snapshot, plus three cursors
 * that say which of them the node layer has seen, persisted and been told are committed.
 *
 *   snapshotIndex < … stable … < unstableFrom ≤ … handed out … ≤ handedOutThrough < … new …
 *
 * An entry is *stable* once a Ready that carried it was advanced (the node layer persisted it);
 * *handed out* once a Ready carried it (its persistence is under way). A truncation moves both
 * cursors back, so the replacement entries travel in the next Ready (which overwrites the stored
 * suffix, as {@link Ready.entries} says).
 */
import type { LogEntry, SnapshotMeta } from './types.js';

export class RaftLog {
  #snapshotIndex: number;
  #snapshotTerm: number;
  /** `#entries[i].index === #snapshotIndex + 1 + i`. */
  #entries: LogEntry[];
  #committed: number;
  #unstableFrom: number;
  #handedOutThrough: number;
  /** Committed entries through this index were handed out to be applied. */
  #applyHandedOutThrough: number;

  constructor(snapshot: SnapshotMeta | undefined, entries: readonly LogEntry[], committed: number) {
    this.#snapshotIndex = snapshot?.index ?? 0;
    this.#snapshotTerm = snapshot?.term ?? 0;
    entries.forEach((e, i) => {
      if (e.index !== this.#snapshotIndex + 1 + i) {
        throw new RangeError(`restored entries must follow the snapshot (index ${this.#snapshotIndex}) contiguously; found index ${e.index} at position ${i}`);
      }
    });
    this.#entries = entries.slice();
    const last = this.lastIndex();
    // A commit index below the snapshot is stale (the snapshot holds committed state only).
    this.#committed = Math.max(committed, this.#snapshotIndex);
    if (this.#committed > last) {
      throw new RangeError(`restored commit index ${committed} is past the last restored entry ${last}: the store lost entries it acknowledged`);
    }
    this.#unstableFrom = last + 1;
    this.#handedOutThrough = last;
    this.#applyHandedOutThrough = this.#snapshotIndex;
  }

  get snapshotIndex(): number {
    return this.#snapshotIndex;
  }

  get snapshotTerm(): number {
    return this.#snapshotTerm;
  }

  get committed(): number {
    return this.#committed;
  }

  firstIndex(): number {
    return this.#snapshotIndex + 1;
  }

  lastIndex(): number {
    return this.#snapshotIndex + this.#entries.length;
  }

  lastTerm(): number {
    return this.#entries.length === 0 ? this.#snapshotTerm : this.#entries[this.#entries.length - 1]!.term;
  }

  /** The last index known durable on this node: what a leader may count as its own copy (§10.2.1). */
  stableIndex(): number {
    return this.#unstableFrom - 1;
  }

  /** The term of the entry at `index`, or undefined when it was compacted away or is past the end. */
  term(index: number): number | undefined {
    if (index === this.#snapshotIndex) return this.#snapshotTerm;
    if (index < this.#snapshotIndex || index > this.lastIndex()) return undefined;
    return this.#entries[index - this.#snapshotIndex - 1]!.term;
  }

  entry(index: number): LogEntry | undefined {
    if (index <= this.#snapshotIndex) return undefined;
    return this.#entries[index - this.#snapshotIndex - 1];
  }

  /** §5.4.1: a candidate's log is at least as up-to-date as ours (last term first, then length). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ours = this.lastTerm();
    return lastTerm > ours || (lastTerm === ours && lastIndex >= this.lastIndex());
  }

  /** The leader appends its own new entry. */
  append(entry: LogEntry): void {
    if (entry.index !== this.lastIndex() + 1) throw new RangeError(`append at ${entry.index} after last index ${this.lastIndex()}`);
    this.#entries.push(entry);
  }

  /**
   * A follower accepts `entries`, which follow a matching `prevIndex`: entries it already holds
   * with the same term are kept (a duplicated or reordered append must not truncate what a later
   * one added, §5.3), and from the first conflict on its log is replaced. Returns false when the
   * conflict would touch a committed entry, which a correct leader never sends.
   */
  acceptEntries(entries: readonly LogEntry[]): boolean {
    const conflict = entries.findIndex((e) => this.term(e.index) !== e.term);
    if (conflict < 0) return true;
    const first = entries[conflict]!;
    if (first.index <= this.#committed) return false;
    this.#entries.length = first.index - this.#snapshotIndex - 1;
    for (let i = conflict; i < entries.length; i++) this.#entries.push(entries[i]!);
    this.#unstableFrom = Math.min(this.#unstableFrom, first.index);
    this.#handedOutThrough = Math.min(this.#handedOutThrough, first.index - 1);
    return true;
  }

  /**
   * For a rejected append at `prevIndex` with `prevTerm`: the highest index at which our log could
   * still match the leader's. Our entries of terms newer than `prevTerm` cannot be in the leader's
   * log at or below `prevIndex` (its terms there are at most `prevTerm`), so one round trip skips
   * a whole stale term instead of one entry (§5.3, "the follower can include the term of the
   * conflicting entry").
   */
  rejectHint(prevIndex: number, prevTerm: number): number {
    let index = Math.min(prevIndex, this.lastIndex());
    while (index > this.#committed && (this.term(index) ?? 0) > prevTerm) index--;
    return index;
  }

  /**
   * Up to `maxEntries` entries from `from` whose data adds up to at most `maxBytes`; the first
   * entry always comes, however big, so that no entry is too large to replicate.
   */
  slice(from: number, maxEntries: number, maxBytes: number): LogEntry[] {
    const out: LogEntry[] = [];
    let bytes = 0;
    for (let index = from; index <= this.lastIndex() && out.length < maxEntries; index++) {
      const e = this.entry(index)!;
      bytes += e.data.byteLength;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** Raises the commit index (never lowers it: a commit is forever, §5.4). */
  commitTo(index: number): boolean {
    if (index <= this.#committed) return false;
    if (index > this.lastIndex()) throw new RangeError(`commit ${index} is past the last index ${this.lastIndex()}`);
    this.#committed = index;
    return true;
  }

  /** Replaces the whole log by a leader's snapshot (§7): what we held conflicts with it or ends before it. */
  restore(meta: SnapshotMeta): void {
    this.#snapshotIndex = meta.index;
    this.#snapshotTerm = meta.term;
    this.#entries = [];
    this.#committed = meta.index;
    this.#unstableFrom = meta.index + 1;
    this.#handedOutThrough = meta.index;
    this.#applyHandedOutThrough = meta.index;
  }

  /** Drops the entries through `index`, which the application's snapshot now covers. */
  compact(index: number, term: number): void {
    this.#entries = this.#entries.slice(index - this.#snapshotIndex);
    this.#snapshotIndex = index;
    this.#snapshotTerm = term;
  }

  hasEntriesToHandOut(): boolean {
    return this.#handedOutThrough < this.lastIndex();
  }

  hasCommittedToHandOut(): boolean {
    return this.#applyHandedOutThrough < this.#committed;
  }

  /** The entries the node layer has not seen yet, now marked handed out. */
  takeEntriesToPersist(): LogEntry[] {
    const out = this.#entries.slice(this.#handedOutThrough - this.#snapshotIndex);
    this.#handedOutThrough = this.lastIndex();
    return out;
  }

  /** The committed entries not yet handed out for applying, now marked handed out. */
  takeCommittedToApply(): LogEntry[] {
    const from = this.#applyHandedOutThrough - this.#snapshotIndex;
    const out = this.#entries.slice(from, this.#committed - this.#snapshotIndex);
    this.#applyHandedOutThrough = this.#committed;
    return out;
  }

  /**
   * The entries through `index` (of `term`) are durable. When a truncation replaced that entry
   * meanwhile, nothing is: its replacement is still to be persisted. When the entry is still
   * there, the log matching property (§5.3) says everything before it is what was persisted.
   */
  stableTo(index: number, term: number): void {
    if (index >= this.#unstableFrom && this.term(index) === term) this.#unstableFrom = index + 1;
  }
}
