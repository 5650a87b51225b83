import type { Scheduler, TimerHandle } from '../clock/scheduler.js';
import { compareVersion, type ApplyOutcome, type Entry, type Version } from '../storage/entry.js';
import { copyEntry } from '../storage/entry-copy.js';
import { assertKeySize, assertKeyspaceName } from '../storage/limits.js';
import { copiedSnapshot, keepNewer, StoreClosedError, type ConflictResolver, type Store, type StoreSnapshot } from '../storage/store.js';
import type { RaftRestoredState } from '../raft/types.js';
import type { RaftLogStore } from '../storage/raft-log-store.js';
import { RaftLogImage } from '../storage/raft-log-support.js';
import type { SeededRandom } from './seeded-random.js';
import { SimulatedRaftLog } from './simulated-raft-log.js';
import { latin1 } from '../storage/key-text.js';

/**
 * How long the simulated disk takes to commit, in virtual milliseconds, and how often it fails.
 * Most commits are fast, some slow, a few stall (as a real disk does under a neighbour's load);
 * `slowFactor` stretches every commit while a node's disk is "slow".
 */
export interface DiskProfile {
  readonly fastMs: readonly [number, number];
  readonly slowRate: number;
  readonly slowMs: readonly [number, number];
  readonly stallRate: number;
  readonly stallMs: readonly [number, number];
  /** Probability that one commit's sync fails with EIO. */
  readonly syncFailureRate: number;
  /**
   * Commit on a microtask instead of a timer, taking no virtual time: for scenario tests that
   * await a write without running the scheduler. Crashes can then never land inside a commit, so
   * the fault simulations never use it.
   */
  readonly instant?: boolean;
}

/**
 * Commits of 0.05–0.5 ms (an NVMe fdatasync), 5 % of 2–15 ms, 0.5 % stalls of 50–250 ms. The
 * network's one-way delays are 0.1–2 ms, so commits overlap messages and a crash drawn at a
 * random instant often lands inside one.
 */
export const DEFAULT_DISK_PROFILE: DiskProfile = {
  fastMs: [0.05, 0.5],
  slowRate: 0.05,
  slowMs: [2, 15],
  stallRate: 0.005,
  stallMs: [50, 250],
  syncFailureRate: 0,
};

/** A disk that commits at once (see {@link DiskProfile.instant}). */
export const INSTANT_DISK: DiskProfile = { ...DEFAULT_DISK_PROFILE, instant: true };

/** The error a failed sync gives its waiters, shaped like Node's own (`code: 'EIO'`). */
export class DiskSyncError extends Error {
  override readonly name = 'DiskSyncError';
  readonly code = 'EIO';
  constructor(what: string) {
    super(`EIO: i/o error, fdatasync (${what})`);
  }
}

/** One call's changes, waiting to become durable together. */
interface Write {
  /** Per keyspace, by latin1 key: the entry to store, or null to remove. */
  readonly entries: Map<string, Map<string, Entry | null>>;
  readonly meta: Map<string, Uint8Array>;
  /** Raft log writes (simulated-raft-log.ts): each applies itself to its group's durable log. */
  readonly effects: (() => void)[];
  readonly durable: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

/** What the disk has done, for the simulation's fault counts. */
export interface DiskStats {
  commits: number;
  /** Crashes that found writes issued and not yet durable (queued or inside a commit). */
  crashesWithWritesInFlight: number;
  /** Writes lost by crashes. */
  writesLost: number;
  syncFailures: number;
  wipes: number;
}

/**
 * A {@link Store} on a simulated disk, in the manner of FoundationDB's and TigerBeetle's
 * simulators: every call is a write that becomes durable only when a commit (write + fdatasync)
 * that includes it finishes, and a commit takes virtual time drawn from the seed. So a crash
 * drawn at any instant can land between a write being issued and being durable, and loses
 * exactly what was not yet synced; `wipe` loses everything (a replaced disk); an injected sync
 * failure rejects the commit's writes with EIO and fails every later call, as a real fsync error
 * leaves a process that must not carry on.
 *
 * Like LmdbStore, calls issued in one synchronous run join one commit (it starts on a zero-delay
 * timer), commits run one after another, and a commit is atomic. `get` sees writes in flight (the
 * contract allows it); `readDurable` waits for them.
 */
export class SimulatedDisk implements Store {
  readonly #scheduler: Scheduler;
  readonly #random: SeededRandom;
  #profile: DiskProfile;
  /** Multiplies commit durations (stalls excepted) while the disk is slow. */
  slowFactor = 1;
  readonly stats: DiskStats = { commits: 0, crashesWithWritesInFlight: 0, writesLost: 0, syncFailures: 0, wipes: 0 };

  readonly #durable = new Map<string, Map<string, Entry>>();
  readonly #durableMeta = new Map<string, Uint8Array>();
  /** The durable Raft log of each group (see {@link openRaftLog}). */
  readonly #raftLogs = new Map<string, RaftLogImage>();
  /** Issued, waiting for the next commit. */
  #queued: Write[] = [];
  /** Inside the commit under way. */
  #committing: Write[] = [];
  /** The newest write issued per keyspace and key (and meta name), until it is durable. */
  readonly #inFlight = new Map<string, Map<string, { value: Entry | null; write: Write }>>();
  readonly #inFlightMeta = new Map<string, { value: Uint8Array; write: Write }>();
  #commitTimer: TimerHandle | undefined;
  #failed: DiskSyncError | undefined;
  /** The next commit's sync fails (set by the simulation's fault schedule). */
  #failNextSync = false;
  #closed = false;
  /** Bumped by every crash: handles opened before it belong to a dead process. */
  #epoch = 0;

  constructor(scheduler: Scheduler, random: SeededRandom, profile: DiskProfile = DEFAULT_DISK_PROFILE) {
    this.#scheduler = scheduler;
    this.#random = random;
    this.#profile = profile;
  }

  setProfile(profile: DiskProfile): void {
    this.#profile = profile;
  }

  /** Makes the next commit's sync fail with EIO. */
  failNextSync(): void {
    this.#failNextSync = true;
  }

  /** Writes metadata straight to durable state: a disk image prepared before its node first starts. */
  prepareMeta(name: string, value: Uint8Array): void {
    this.#durableMeta.set(name, new Uint8Array(value));
  }

  /** Takes back a sync failure armed by {@link failNextSync} that has not landed yet. */
  disarmSyncFailure(): void {
    this.#failNextSync = false;
  }

  /** True while writes are issued and not yet durable. */
  get hasWritesInFlight(): boolean {
    return this.#queued.length > 0 || this.#committing.length > 0;
  }

  get failed(): boolean {
    return this.#failed !== undefined;
  }

  get(keyspace: string, key: Uint8Array): Entry | undefined {
    this.#assertUsable();
    assertKeyspaceName(keyspace);
    const k = latin1(key);
    const pending = this.#inFlight.get(keyspace)?.get(k);
    if (pending !== undefined) return pending.value ?? undefined;
    return this.#durable.get(keyspace)?.get(k);
  }

  async readDurable(keyspace: string, key: Uint8Array): Promise<Entry | undefined> {
    this.#assertUsable();
    assertKeyspaceName(keyspace);
    const k = latin1(key);
    const pending = this.#inFlight.get(keyspace)?.get(k);
    if (pending === undefined) return this.#durable.get(keyspace)?.get(k);
    await pending.write.durable;
    return pending.value ?? undefined;
  }

  apply(keyspace: string, entries: readonly Entry[], resolve: ConflictResolver = keepNewer): Promise<ApplyOutcome[]> {
    try {
      this.#assertUsable();
      assertKeyspaceName(keyspace);
      for (const entry of entries) assertKeySize(entry.key);
    } catch (error) {
      return Promise.reject(error);
    }
    const write = this.#newWrite();
    const waits = new Set<Promise<void>>([write.durable]);
    const outcomes = entries.map((entry): ApplyOutcome => {
      const pending = this.#inFlight.get(keyspace)?.get(latin1(entry.key));
      const chosen = resolve(this.get(keyspace, entry.key), entry);
      if (chosen === undefined) {
        // "Superseded" only once the entry that won is durable.
        if (pending !== undefined) waits.add(pending.write.durable);
        return 'superseded';
      }
      this.#stage(write, keyspace, latin1(entry.key), copyEntry(chosen));
      return 'applied';
    });
    this.#issue(write);
    return Promise.all(waits).then(() => outcomes);
  }

  remove(keyspace: string, items: readonly { readonly key: Uint8Array; readonly version: Version }[]): Promise<number> {
    try {
      this.#assertUsable();
      assertKeyspaceName(keyspace);
    } catch (error) {
      return Promise.reject(error);
    }
    const write = this.#newWrite();
    let removed = 0;
    for (const item of items) {
      const held = this.get(keyspace, item.key);
      if (held === undefined || compareVersion(held.version, item.version) !== 0) continue;
      this.#stage(write, keyspace, latin1(item.key), null);
      removed++;
    }
    this.#issue(write);
    return write.durable.then(() => removed);
  }

  entries(keyspace: string): Entry[] {
    this.#assertUsable();
    assertKeyspaceName(keyspace);
    const merged = new Map<string, Entry | null>(this.#durable.get(keyspace));
    for (const [k, pending] of this.#inFlight.get(keyspace) ?? []) merged.set(k, pending.value);
    for (const [k, entry] of merged) if (entry === null) merged.delete(k);
    return [...merged.keys()].sort().map((k) => merged.get(k)!);
  }

  /** What a crash now would leave of `keyspace`: durable entries only (for the simulation's oracles). */
  durableEntries(keyspace: string): Entry[] {
    const held = this.#durable.get(keyspace);
    return held === undefined ? [] : [...held.keys()].sort().map((k) => held.get(k)!);
  }

  snapshot(keyspace: string, metaName: string): StoreSnapshot {
    this.#assertUsable();
    assertKeyspaceName(keyspace);
    return copiedSnapshot(this.durableEntries(keyspace), this.#durableMeta.get(metaName));
  }

  getMeta(name: string): Uint8Array | undefined {
    this.#assertUsable();
    return this.#inFlightMeta.get(name)?.value ?? this.#durableMeta.get(name);
  }

  putMeta(name: string, value: Uint8Array): Promise<void> {
    try {
      this.#assertUsable();
    } catch (error) {
      return Promise.reject(error);
    }
    const write = this.#newWrite();
    const copy = new Uint8Array(value);
    write.meta.set(name, copy);
    this.#inFlightMeta.set(name, { value: copy, write });
    this.#issue(write);
    return write.durable;
  }

  async close(): Promise<void> {
    this.#closed = true;
    while (this.hasWritesInFlight && this.#failed === undefined) {
      await Promise.allSettled([...this.#queued, ...this.#committing].map((w) => w.durable));
    }
  }

  /**
   * The disk as one process sees it: a handle that fails every call once the disk has crashed
   * since it was opened. The simulation gives each node start its own handle, so code of a
   * crashed node still finishing (a continuation that wakes after the crash) cannot write to the
   * disk its restarted successor uses, which no real process could do.
   */
  open(): Store {
    const epoch = this.#epoch;
    const check = (): void => {
      if (this.#epoch !== epoch) throw new StoreClosedError();
    };
    const guard = <T>(call: () => Promise<T>): Promise<T> => {
      try {
        check();
      } catch (error) {
        return Promise.reject(error);
      }
      return call();
    };
    return {
      get: (keyspace, key) => (check(), this.get(keyspace, key)),
      readDurable: (keyspace, key) => guard(() => this.readDurable(keyspace, key)),
      apply: (keyspace, entries, resolve) => guard(() => this.apply(keyspace, entries, resolve)),
      remove: (keyspace, items) => guard(() => this.remove(keyspace, items)),
      entries: (keyspace) => (check(), this.entries(keyspace)),
      snapshot: (keyspace, metaName) => (check(), this.snapshot(keyspace, metaName)),
      getMeta: (name) => (check(), this.getMeta(name)),
      putMeta: (name, value) => guard(() => this.putMeta(name, value)),
      close: () => (this.#epoch === epoch ? this.close() : Promise.resolve()),
    };
  }

  /**
   * The Raft log of group `keyspace` as one process sees it (a {@link RaftLogStore}; one per group
   * per node start). Its writes go through this disk's commits like every other write: they
   * share commits with the Store's writes and with each other, take the commit's virtual time,
   * are lost by a crash until their commit is done and by a wipe always, and fail with the
   * commit when its sync fails (stopping the disk, as for the Store). Like {@link open}, the
   * handle is fenced: once the disk has crashed its calls throw `StoreClosedError`. Closing it
   * leaves the disk open; closing the disk (the Store) closes it.
   */
  openRaftLog(keyspace: string): RaftLogStore {
    assertKeyspaceName(keyspace);
    const epoch = this.#epoch;
    const live = (): boolean => this.#epoch === epoch;
    return new SimulatedRaftLog({
      image: () => {
        let image = this.#raftLogs.get(keyspace);
        if (image === undefined) this.#raftLogs.set(keyspace, (image = new RaftLogImage()));
        return image;
      },
      live,
      check: () => {
        if (!live()) throw new StoreClosedError();
        this.#assertUsable();
      },
      issue: (effect) => {
        const write = this.#newWrite();
        write.effects.push(effect);
        this.#issue(write);
        return write.durable;
      },
    });
  }

  /** What a crash now would leave of group `keyspace`'s Raft log (for the simulation's oracles). */
  durableRaftLog(keyspace: string): RaftRestoredState {
    return (this.#raftLogs.get(keyspace) ?? new RaftLogImage()).restored();
  }

  /**
   * The process using the disk died: every write not yet durable is lost (its promise never
   * settles: nobody is left to hear), a commit under way never finishes, and the disk is ready for
   * the restarted process. Returns true when writes were in flight.
   */
  crash(): boolean {
    const inFlight = this.hasWritesInFlight;
    if (inFlight) this.stats.crashesWithWritesInFlight++;
    this.stats.writesLost += this.#queued.length + this.#committing.length;
    this.#epoch++;
    this.#commitTimer?.cancel();
    this.#commitTimer = undefined;
    this.#queued = [];
    this.#committing = [];
    this.#inFlight.clear();
    this.#inFlightMeta.clear();
    this.#failed = undefined;
    this.#failNextSync = false;
    this.#closed = false;
    return inFlight;
  }

  /** The disk was replaced by an empty one (amnesia); implies a crash. */
  wipe(): void {
    this.crash();
    this.stats.wipes++;
    this.#durable.clear();
    this.#durableMeta.clear();
    this.#raftLogs.clear();
  }

  #newWrite(): Write {
    let resolve!: () => void;
    let reject!: (error: Error) => void;
    const durable = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A write whose apply was abandoned must not crash the simulation as an unhandled rejection.
    durable.catch(() => {});
    return { entries: new Map(), meta: new Map(), effects: [], durable, resolve, reject };
  }

  #stage(write: Write, keyspace: string, k: string, value: Entry | null): void {
    let staged = write.entries.get(keyspace);
    if (staged === undefined) write.entries.set(keyspace, (staged = new Map()));
    staged.set(k, value);
    let inFlight = this.#inFlight.get(keyspace);
    if (inFlight === undefined) this.#inFlight.set(keyspace, (inFlight = new Map()));
    inFlight.set(k, { value, write });
  }

  #issue(write: Write): void {
    this.#queued.push(write);
    // Every call of this synchronous run joins the commit, as lmdb-js's event-turn batching does.
    if (this.#profile.instant) {
      if (this.#queued.length === 1) queueMicrotask(() => this.#commitInstantly());
      return;
    }
    if (this.#commitTimer === undefined) this.#commitTimer = this.#scheduler.setTimer(0, () => this.#startCommit());
  }

  #commitInstantly(): void {
    if (this.#queued.length === 0 || this.#committing.length > 0) return;
    this.#committing = this.#queued;
    this.#queued = [];
    this.#finishCommit();
  }

  #startCommit(): void {
    this.#commitTimer = undefined;
    if (this.#committing.length > 0 || this.#queued.length === 0) return;
    this.#committing = this.#queued;
    this.#queued = [];
    this.#commitTimer = this.#scheduler.setTimer(this.#commitDurationMs(), () => this.#finishCommit());
  }

  #finishCommit(): void {
    this.#commitTimer = undefined;
    const writes = this.#committing;
    this.#committing = [];
    if (this.#failNextSync || this.#random.chance(this.#profile.syncFailureRate)) {
      this.#failNextSync = false;
      this.stats.syncFailures++;
      // After a failed fsync nobody knows which pages reached the disk: the commit may or may not
      // be there after a restart. Every waiter, now and later, hears EIO.
      if (this.#random.chance(0.5)) for (const w of writes) this.#makeDurable(w);
      this.#failed = new DiskSyncError(`${writes.length} writes`);
      for (const w of [...writes, ...this.#queued]) w.reject(this.#failed);
      this.#queued = [];
      this.#inFlight.clear();
      this.#inFlightMeta.clear();
      return;
    }
    this.stats.commits++;
    for (const w of writes) this.#makeDurable(w);
    for (const w of writes) this.#forget(w);
    for (const w of writes) w.resolve();
    if (this.#queued.length > 0) {
      if (this.#profile.instant) queueMicrotask(() => this.#commitInstantly());
      else this.#commitTimer = this.#scheduler.setTimer(0, () => this.#startCommit());
    }
  }

  #makeDurable(write: Write): void {
    for (const [keyspace, staged] of write.entries) {
      let durable = this.#durable.get(keyspace);
      if (durable === undefined) this.#durable.set(keyspace, (durable = new Map()));
      for (const [k, entry] of staged) {
        if (entry === null) durable.delete(k);
        else durable.set(k, entry);
      }
    }
    for (const [name, value] of write.meta) this.#durableMeta.set(name, value);
    for (const effect of write.effects) effect();
  }

  /** Drops the in-flight marks that still point at `write` (a newer write of the key keeps its own). */
  #forget(write: Write): void {
    for (const [keyspace, staged] of write.entries) {
      const inFlight = this.#inFlight.get(keyspace);
      for (const k of staged.keys()) if (inFlight?.get(k)?.write === write) inFlight.delete(k);
    }
    for (const name of write.meta.keys()) if (this.#inFlightMeta.get(name)?.write === write) this.#inFlightMeta.delete(name);
  }

  #commitDurationMs(): number {
    const p = this.#profile;
    const roll = this.#random.next();
    // A stall is the worst a disk does: a slow disk stretches its other commits, not its stalls
    // (which would make single commits of seconds).
    if (roll < p.stallRate) return this.#random.between(p.stallMs[0], p.stallMs[1]);
    const range = roll < p.stallRate + p.slowRate ? p.slowMs : p.fastMs;
    return this.#random.between(range[0], range[1]) * this.slowFactor;
  }

  #assertUsable(): void {
    if (this.#closed) throw new StoreClosedError();
    // A fresh error each time, so its stack shows the call that met the failed disk.
    if (this.#failed !== undefined) throw new DiskSyncError(`the disk failed earlier: ${this.#failed.message}`);
  }
}

