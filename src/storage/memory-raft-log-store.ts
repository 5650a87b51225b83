import type { RaftRestoredState, RaftSnapshot } from '../raft/types.js';
import type { RaftLogStore, RaftLogWrite } from './raft-log-store.js';
import { copyOp, RaftLogImage, SaveSequencer, type RaftLogOp, type RaftLogTracker } from './raft-log-support.js';

/** The error a failed commit of {@link MemoryRaftLogStore} gives, shaped like Node's own (`code: 'EIO'`). */
export class MemorySyncError extends Error {
  override readonly name = 'MemorySyncError';
  readonly code = 'EIO';
  constructor() {
    super('EIO: i/o error, fdatasync (MemoryRaftLogStore.failNextSync)');
  }
}

/**
 * The reference {@link RaftLogStore}: plain objects, no I/O, no timers, for unit tests.
 *
 * Like MemoryStore it models a durable medium, not a process's memory: writes are staged and
 * become durable together in one "commit" on a microtask, which every call of the same
 * synchronous run shares (group commit); `crash()` loses what was staged and starts a new
 * process on the same medium; `failNextSync()` makes the next commit fail, which stops the store
 * (fail-stop) until the next `crash()`. No timer is involved, so outcomes follow call order alone.
 */
export class MemoryRaftLogStore implements RaftLogStore {
  /** What survives a crash. */
  readonly #durable = new RaftLogImage();
  /** Checked and copied, waiting for the commit in flight; a crash drops them. */
  #staged: RaftLogOp[] = [];
  #commit: Promise<void> | undefined;
  #tracker: RaftLogTracker;
  #sequencer = new SaveSequencer();
  #failNextSync = false;
  /** Bumped by every crash, so a commit scheduled before one knows to give up. */
  #epoch = 0;
  /** Commits that made something durable: the fsyncs a disk would have done. */
  readonly stats = { commits: 0 };

  constructor() {
    this.#tracker = this.#durable.tracker();
  }

  load(): RaftRestoredState {
    this.#sequencer.assertUsable();
    this.#sequencer.assertIdle();
    return this.#durable.restored();
  }

  loadSnapshot(): RaftSnapshot | undefined {
    this.#sequencer.assertUsable();
    return this.#durable.snapshotCopy();
  }

  save(write: RaftLogWrite): Promise<void> {
    return this.#write(() => this.#tracker.plan(write, 'save'));
  }

  compact(snapshot: RaftSnapshot): Promise<void> {
    return this.#write(() => this.#tracker.plan({ snapshot }, 'compact'));
  }

  close(): Promise<void> {
    return this.#sequencer.close();
  }

  /** Makes the next commit fail with EIO (see the class comment). */
  failNextSync(): void {
    this.#failNextSync = true;
  }

  /**
   * The process died and a new one starts on the same medium: staged writes are lost (their
   * promises never settle), resolved ones survive, a failure or close is forgotten.
   */
  crash(): void {
    this.#epoch++;
    this.#staged = [];
    this.#commit = undefined;
    this.#failNextSync = false;
    this.#sequencer = new SaveSequencer();
    this.#tracker = this.#durable.tracker();
  }

  #write(plan: () => RaftLogOp): Promise<void> {
    let op: RaftLogOp;
    try {
      this.#sequencer.assertUsable();
      op = copyOp(plan());
    } catch (error) {
      return Promise.reject(error);
    }
    this.#staged.push(op);
    return this.#sequencer.track(this.#joinCommit());
  }

  #joinCommit(): Promise<void> {
    if (this.#commit !== undefined) return this.#commit;
    const epoch = this.#epoch;
    const commit = new Promise<void>((resolve, reject) => {
      queueMicrotask(() => {
        // A crash came first: this commit never happened, and its waiters belong to a dead process.
        if (this.#epoch !== epoch) return;
        this.#commit = undefined;
        const staged = this.#staged;
        this.#staged = [];
        if (this.#failNextSync) {
          this.#failNextSync = false;
          const error = new MemorySyncError();
          // Stopped from this instant: no later call may stage a write behind the failed commit.
          this.#sequencer.fail(error);
          reject(error);
          return;
        }
        for (const op of staged) this.#durable.apply(op);
        this.stats.commits++;
        resolve();
      });
    });
    // The sequencer reports the failure to every caller; this keeps it from being unhandled here.
    commit.catch(() => {});
    this.#commit = commit;
    return commit;
  }
}
