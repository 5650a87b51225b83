import type { HardState, LogEntry, RaftRestoredState, RaftSnapshot, SnapshotMeta } from '../raft/types.js';
import { snapshotMeta } from '../raft/membership.js';
import { MAX_RAFT_NODE_ID_BYTES } from './raft-log-codec.js';
import { INITIAL_HARD_STATE, type RaftLogWrite } from './raft-log-store.js';
import { StoreClosedError } from './store.js';

/**
 * What the three {@link RaftLogStore} implementations share: the checks every write passes
 * ({@link RaftLogTracker}), the ordering and fail-stop of their promises ({@link SaveSequencer}),
 * and, for the two without a real disk, the log as plain objects ({@link RaftLogImage}).
 */

/**
 * One write, checked and resolved into what it does to the stored log, in this order: store
 * `snapshot`; delete the entries ≤ `deleteThrough` and those ≥ `deleteFrom`; append `entries`;
 * store `hardState`. Entries and snapshot are the caller's objects, not yet copied.
 */
export interface RaftLogOp {
  readonly hardState: HardState | undefined;
  readonly snapshot: RaftSnapshot | undefined;
  /** Every entry with index ≤ this is deleted (0: none). */
  readonly deleteThrough: number;
  /** Every entry with index ≥ this is deleted (Infinity: none). */
  readonly deleteFrom: number;
  readonly entries: readonly LogEntry[];
}

/** The terms of a log's entries after its snapshot, by index: what the checks need to know. */
class TermLog {
  /** The snapshot's index and term (0, 0 when none): the entry before the first one held. */
  #base = 0;
  #baseTerm = 0;
  /** Terms of entries base+1 …, from `#head` on (a compaction moves the head, not the array). */
  #terms: number[] = [];
  #head = 0;

  get base(): number {
    return this.#base;
  }

  get baseTerm(): number {
    return this.#baseTerm;
  }

  get last(): number {
    return this.#base + this.#terms.length - this.#head;
  }

  /** The term of entry `index`, the snapshot's term at its index, undefined outside. */
  termAt(index: number): number | undefined {
    if (index === this.#base) return this.#baseTerm;
    if (index < this.#base || index > this.last) return undefined;
    return this.#terms[this.#head + index - this.#base - 1];
  }

  reset(base: number, baseTerm: number): void {
    this.#base = base;
    this.#baseTerm = baseTerm;
    this.#terms = [];
    this.#head = 0;
  }

  /** Drops the entries up to `base`, which the log holds, and makes it the new base. */
  compactTo(base: number, baseTerm: number): void {
    if (base >= this.last) return this.reset(base, baseTerm);
    this.#head += base - this.#base;
    this.#base = base;
    this.#baseTerm = baseTerm;
    if (this.#head > 1024 && this.#head * 2 > this.#terms.length) {
      this.#terms = this.#terms.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Drops the entries from `index` (above the base) on. */
  truncateFrom(index: number): void {
    if (index <= this.last) this.#terms.length = this.#head + (index - this.#base - 1);
  }

  push(term: number): void {
    this.#terms.push(term);
  }
}

/**
 * The state a store has issued (durable or in flight), as far as the checks need it: the hard
 * state, the snapshot's index and term, and the term of every entry. `plan` checks a write against
 * it, resolves the write into a {@link RaftLogOp} and moves it on, so the next write issued in the
 * same turn is checked against this one's result. A write that fails a check throws `RangeError`
 * and leaves the state as it was.
 */
export class RaftLogTracker {
  #hardState: HardState;
  readonly #terms = new TermLog();

  constructor(state: { readonly hardState: HardState; readonly snapshot: SnapshotMeta | undefined; readonly entries: readonly LogEntry[] }) {
    this.#hardState = state.hardState;
    if (state.snapshot !== undefined) this.#terms.reset(state.snapshot.index, state.snapshot.term);
    for (const entry of state.entries) this.#terms.push(entry.term);
  }

  get hardState(): HardState {
    return this.#hardState;
  }

  get snapshotIndex(): number {
    return this.#terms.base;
  }

  get lastIndex(): number {
    return this.#terms.last;
  }

  termAt(index: number): number | undefined {
    return this.#terms.termAt(index);
  }

  plan(write: RaftLogWrite, kind: 'save' | 'compact'): RaftLogOp {
    if (typeof write !== 'object' || write === null) throw new RangeError('a write must be an object');
    const { hardState, snapshot } = write;
    const entries = write.entries ?? [];
    if (!Array.isArray(entries)) throw new RangeError('entries must be an array');

    // 1. The snapshot, and what the log looks like after it.
    let snapshotIndex = this.#terms.base;
    let snapshotTerm = this.#terms.baseTerm;
    let lastIndex = this.#terms.last;
    let deleteThrough = 0;
    let deleteFrom = Infinity;
    let keepsLog = true;
    if (snapshot !== undefined) {
      checkSnapshot(snapshot);
      const { index, term } = snapshot.meta;
      if (index < snapshotIndex) {
        throw new RangeError(`snapshot at index ${index} is older than the stored one at ${snapshotIndex}`);
      }
      const held = this.#terms.termAt(index);
      if (kind === 'compact') {
        if (index > lastIndex) throw new RangeError(`compact at index ${index} is past the last entry, ${lastIndex}`);
        if (held !== term) throw new RangeError(`compact at index ${index} says term ${term}; the log holds term ${held}`);
      }
      // Raft §7: entries after the snapshot stay only when the log holds its last entry.
      keepsLog = held === term;
      deleteThrough = index;
      if (!keepsLog) {
        deleteFrom = index + 1;
        lastIndex = index;
      }
      snapshotIndex = index;
      snapshotTerm = term;
    }
    const termAfterSnapshot = (index: number): number | undefined => {
      if (index === snapshotIndex) return snapshotTerm;
      if (index < snapshotIndex || !keepsLog) return undefined;
      return this.#terms.termAt(index);
    };

    // 2. The entries.
    if (entries.length > 0) {
      let previous: LogEntry | undefined;
      for (const entry of entries) {
        checkEntry(entry);
        if (previous !== undefined) {
          if (entry.index !== previous.index + 1) throw new RangeError(`entries must be contiguous: ${entry.index} follows ${previous.index}`);
          if (entry.term < previous.term) throw new RangeError(`entry ${entry.index} has term ${entry.term}, below its predecessor's ${previous.term}`);
        }
        previous = entry;
      }
      const first = entries[0]!;
      if (first.index <= snapshotIndex) {
        throw new RangeError(`entries start at ${first.index}, within the snapshot (up to ${snapshotIndex})`);
      }
      if (first.index > lastIndex + 1) throw new RangeError(`entries start at ${first.index}, leaving a gap after the last entry, ${lastIndex}`);
      const before = termAfterSnapshot(first.index - 1)!;
      if (first.term < before) throw new RangeError(`entry ${first.index} has term ${first.term}, below its predecessor's ${before}`);
      // Committed entries are never overwritten by different ones (rewriting the same is harmless).
      for (const entry of entries) {
        if (entry.index > this.#hardState.commit) break;
        const held = termAfterSnapshot(entry.index);
        if (held !== undefined && held !== entry.term) {
          throw new RangeError(`entry ${entry.index} (term ${entry.term}) would overwrite a committed entry of term ${held} (commit ${this.#hardState.commit})`);
        }
      }
      if (first.index <= lastIndex) deleteFrom = Math.min(deleteFrom, first.index);
    }

    // 3. The hard state.
    if (hardState !== undefined) {
      checkHardState(hardState);
      const held = this.#hardState;
      if (hardState.term < held.term) throw new RangeError(`hard state term ${hardState.term} is below the stored ${held.term}`);
      if (hardState.term === held.term && held.vote !== undefined && hardState.vote !== held.vote) {
        throw new RangeError(`term ${held.term} already has a vote for ${held.vote}; it cannot become ${String(hardState.vote)}`);
      }
    }

    // Every check passed: move on.
    if (snapshot !== undefined) {
      if (keepsLog) this.#terms.compactTo(snapshot.meta.index, snapshot.meta.term);
      else this.#terms.reset(snapshot.meta.index, snapshot.meta.term);
    }
    if (entries.length > 0) {
      this.#terms.truncateFrom(entries[0]!.index);
      for (const entry of entries) this.#terms.push(entry.term);
    }
    if (hardState !== undefined) this.#hardState = hardState;
    return { hardState, snapshot, deleteThrough, deleteFrom, entries };
  }
}

function checkIndex(value: unknown, what: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a safe non-negative integer, not ${String(value)}`);
  }
}

function checkEntry(entry: LogEntry): void {
  if (typeof entry !== 'object' || entry === null) throw new RangeError('an entry must be an object');
  checkIndex(entry.index, 'entry index');
  if (entry.index < 1) throw new RangeError('entry indexes start at 1');
  checkIndex(entry.term, 'entry term');
  if (entry.kind !== 'command' && entry.kind !== 'noop' && entry.kind !== 'config') throw new RangeError(`entry kind must be command, noop or config, not ${String(entry.kind)}`);
  if (!(entry.data instanceof Uint8Array)) throw new RangeError('entry data must be a Uint8Array');
}

function checkHardState(state: HardState): void {
  if (typeof state !== 'object' || state === null) throw new RangeError('a hard state must be an object');
  checkIndex(state.term, 'hard state term');
  checkIndex(state.commit, 'hard state commit');
  if (state.vote !== undefined) checkNodeId(state.vote, 'hard state vote');
}

/** Node ids are strings of at most MAX_RAFT_NODE_ID_BYTES in UTF-8 (the codec's limit). */
function checkNodeId(id: unknown, what: string): void {
  if (typeof id !== 'string') throw new RangeError(`${what} must be a string`);
  if (id.length * 3 > MAX_RAFT_NODE_ID_BYTES && Buffer.byteLength(id, 'utf8') > MAX_RAFT_NODE_ID_BYTES) {
    throw new RangeError(`${what} is at most ${MAX_RAFT_NODE_ID_BYTES} UTF-8 bytes`);
  }
}

function checkSnapshot(snapshot: RaftSnapshot): void {
  if (typeof snapshot !== 'object' || snapshot === null || typeof snapshot.meta !== 'object' || snapshot.meta === null) {
    throw new RangeError('a snapshot must be an object with meta');
  }
  checkIndex(snapshot.meta.index, 'snapshot index');
  checkIndex(snapshot.meta.term, 'snapshot term');
  if (!Array.isArray(snapshot.meta.voters)) throw new RangeError('snapshot voters must be an array of strings');
  for (const voter of snapshot.meta.voters) checkNodeId(voter, 'snapshot voter');
  if (snapshot.meta.learners !== undefined && !Array.isArray(snapshot.meta.learners)) throw new RangeError('snapshot learners must be an array of strings');
  for (const learner of snapshot.meta.learners ?? []) checkNodeId(learner, 'snapshot learner');
  if (snapshot.meta.context !== undefined && typeof snapshot.meta.context !== 'string') throw new RangeError('snapshot context must be a string');
  if (!(snapshot.data instanceof Uint8Array)) throw new RangeError('snapshot data must be a Uint8Array');
}

/**
 * The promises of one store's writes, in call order and fail-stop: each resolves only after every
 * earlier one has, and once one fails every later one (and every later call) fails with that first
 * error. Counts the writes in flight, for `load` and `close`.
 */
export class SaveSequencer {
  #tail: Promise<void> = Promise.resolve();
  #inFlight = 0;
  #failed = false;
  #failure: unknown;
  #closing: Promise<void> | undefined;

  get inFlight(): number {
    return this.#inFlight;
  }

  get failed(): boolean {
    return this.#failed;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Throws the failure that stopped the store; after `close`, {@link StoreClosedError}. */
  assertUsable(): void {
    if (this.#failed) throw this.#failure;
    if (this.#closing !== undefined) throw new StoreClosedError();
  }

  /** `load` reads a log nobody is writing (see RaftLogStore.load): throws while writes are in flight. */
  assertIdle(): void {
    if (this.#inFlight > 0) {
      throw new Error(`load() while ${this.#inFlight} writes are in flight: await them first (load is for start-up)`);
    }
  }

  /** Stops the store at once, for a store that learns of a failure before the promises do. */
  fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#failure = error;
  }

  /** The promise a caller gets for a write whose commit settles `committed`. */
  track(committed: Promise<unknown>): Promise<void> {
    this.#inFlight++;
    const done = Promise.all([this.#tail, committed]).then(
      () => {
        this.#inFlight--;
      },
      (error: unknown) => {
        this.#inFlight--;
        this.fail(error);
        throw this.#failure;
      },
    );
    this.#tail = done;
    return done;
  }

  /** Waits until every write tracked so far has settled, then refuses new ones. */
  close(): Promise<void> {
    this.#closing ??= this.#tail.then(
      () => {},
      () => {},
    );
    return this.#closing;
  }
}

/** A frozen copy of `entry` that shares no memory with it. */
export function copyLogEntry(entry: LogEntry): LogEntry {
  return Object.freeze({ term: entry.term, index: entry.index, kind: entry.kind, data: new Uint8Array(entry.data) });
}

export function copyHardState(state: HardState): HardState {
  return Object.freeze({ term: state.term, vote: state.vote, commit: state.commit });
}

export function copySnapshotMeta(meta: SnapshotMeta): SnapshotMeta {
  return Object.freeze(snapshotMeta(meta.index, meta.term, { voters: Object.freeze([...meta.voters]), learners: Object.freeze([...(meta.learners ?? [])]), context: meta.context ?? '' }));
}

export function copySnapshot(snapshot: RaftSnapshot): RaftSnapshot {
  return Object.freeze({ meta: copySnapshotMeta(snapshot.meta), data: new Uint8Array(snapshot.data) });
}

/** `op` with every byte copied, for a store that keeps the objects themselves. */
export function copyOp(op: RaftLogOp): RaftLogOp {
  return {
    hardState: op.hardState === undefined ? undefined : copyHardState(op.hardState),
    snapshot: op.snapshot === undefined ? undefined : copySnapshot(op.snapshot),
    deleteThrough: op.deleteThrough,
    deleteFrom: op.deleteFrom,
    entries: op.entries.map(copyLogEntry),
  };
}

/**
 * A Raft log as plain objects: the durable state of {@link MemoryRaftLogStore} and of a
 * SimulatedDisk's logs. Holds copies ({@link copyOp}) and hands out copies.
 */
export class RaftLogImage {
  hardState: HardState = INITIAL_HARD_STATE;
  snapshot: RaftSnapshot | undefined;
  /** Contiguous, from the snapshot's index + 1 (or 1). */
  entries: LogEntry[] = [];

  /** Applies a checked, copied op (see {@link RaftLogOp} for the order). */
  apply(op: RaftLogOp): void {
    if (op.snapshot !== undefined) this.snapshot = op.snapshot;
    const first = this.entries[0]?.index;
    if (first !== undefined) {
      const keepUpTo = Math.max(0, op.deleteFrom - first);
      if (keepUpTo < this.entries.length) this.entries.length = keepUpTo;
      const dropFront = Math.max(0, op.deleteThrough - first + 1);
      if (dropFront >= this.entries.length) this.entries = [];
      else if (dropFront > 0) this.entries.splice(0, dropFront);
    }
    const start = op.entries[0]?.index;
    if (start !== undefined) {
      // The op was checked: `start` is at most one past the last entry held.
      const first = this.entries[0]?.index ?? start;
      this.entries.length = start - first;
      for (const entry of op.entries) this.entries.push(entry);
    }
    if (op.hardState !== undefined) this.hardState = op.hardState;
  }

  /** What a restart finds, as copies. */
  restored(): RaftRestoredState {
    return Object.freeze({
      hardState: this.hardState,
      snapshot: this.snapshot?.meta,
      entries: Object.freeze(this.entries.map(copyLogEntry)),
    });
  }

  /** The snapshot, as a copy. */
  snapshotCopy(): RaftSnapshot | undefined {
    return this.snapshot === undefined ? undefined : copySnapshot(this.snapshot);
  }

  tracker(): RaftLogTracker {
    return new RaftLogTracker({ hardState: this.hardState, snapshot: this.snapshot?.meta, entries: this.entries });
  }

  clear(): void {
    this.hardState = INITIAL_HARD_STATE;
    this.snapshot = undefined;
    this.entries = [];
  }
}
