import type { RaftRestoredState, RaftSnapshot } from '../raft/types.js';
import type { RaftLogStore, RaftLogWrite } from '../storage/raft-log-store.js';
import { copyOp, SaveSequencer, type RaftLogImage, type RaftLogOp, type RaftLogTracker } from '../storage/raft-log-support.js';

/** What a {@link SimulatedRaftLog} needs of its SimulatedDisk (which makes one in `openRaftLog`). */
export interface RaftLogDiskPort {
  /** The group's durable log: the same object across crashes, a fresh one after a wipe. */
  image(): RaftLogImage;
  /** False once the disk has crashed since the handle was opened. */
  live(): boolean;
  /** Throws unless the handle's process is alive and the disk usable (not failed, not closed). */
  check(): void;
  /** Queues a write whose commit runs `effect` when it makes the write durable; settles with the commit. */
  issue(effect: () => void): Promise<void>;
}

/**
 * A {@link RaftLogStore} on a SimulatedDisk: see `SimulatedDisk.openRaftLog`. Each call is one
 * disk write, so it is atomic, shares the commit of its synchronous run, and is durable, lost or
 * failed exactly as the disk's commits are.
 */
export class SimulatedRaftLog implements RaftLogStore {
  readonly #port: RaftLogDiskPort;
  readonly #sequencer = new SaveSequencer();
  readonly #tracker: RaftLogTracker;

  constructor(port: RaftLogDiskPort) {
    this.#port = port;
    this.#tracker = port.image().tracker();
  }

  load(): RaftRestoredState {
    this.#assertUsable();
    this.#sequencer.assertIdle();
    return this.#port.image().restored();
  }

  loadSnapshot(): RaftSnapshot | undefined {
    this.#assertUsable();
    return this.#port.image().snapshotCopy();
  }

  save(write: RaftLogWrite): Promise<void> {
    return this.#write(() => this.#tracker.plan(write, 'save'));
  }

  compact(snapshot: RaftSnapshot): Promise<void> {
    return this.#write(() => this.#tracker.plan({ snapshot }, 'compact'));
  }

  close(): Promise<void> {
    // A crashed process's writes never settle: there is nothing to wait for.
    return this.#port.live() ? this.#sequencer.close() : Promise.resolve();
  }

  #write(plan: () => RaftLogOp): Promise<void> {
    let committed: Promise<void>;
    try {
      this.#assertUsable();
      const op = copyOp(plan());
      const image = this.#port.image();
      committed = this.#port.issue(() => image.apply(op));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#sequencer.track(committed);
  }

  #assertUsable(): void {
    this.#port.check();
    this.#sequencer.assertUsable();
  }
}
