import type { Scheduler, TimerHandle } from '../../clock/index.js';
import type { Logger } from '../../logging/logger.js';
import { compareVersion, type Entry, type Version } from '../../storage/entry.js';
import { entryBytes, prefixWithin } from '../../storage/entry-size.js';
import type { ReplicaSet } from '../../transport/replica-set.js';
import { keyId } from './entry-digest.js';
import type { HintLog } from './hint-log.js';

/** The limits and pacing of one peer's replication; see ApAsyncOptions for the reasons. */
export interface ReplicatorLimits {
  readonly maxQueuedKeys: number;
  readonly batchEntries: number;
  /** Bytes of entries per batch; one larger entry travels alone. */
  readonly batchBytes: number;
  readonly callTimeoutMs: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  /** Consecutive failed sends after which queued keys become durable hints. */
  readonly hintAfterFailures: number;
  readonly hintReplayIntervalMs: number;
}

interface Waiter {
  readonly version: Version;
  readonly resolve: () => void;
}

/**
 * Replicates one AP keyspace to one peer in the background. It ships state, not operations: the
 * queue holds keys, and a batch carries each key's entry as the local store holds it when the
 * batch leaves, so many writes to a hot key cost one entry, a merged value travels merged, and a
 * stale write is never sent after a newer one.
 *
 * One batch is in flight at a time. A failed batch is retried with exponential backoff; after
 * `hintAfterFailures` failures in a row, or when the queue passes `maxQueuedKeys`, queued keys
 * move to the peer's durable hint log, which is replayed every `hintReplayIntervalMs` until the
 * peer takes it. Memory is bounded by the queue limit; the hint log has its own bound.
 */
export class PeerReplicator {
  readonly #queue = new Map<string, Uint8Array>();
  readonly #waiters = new Map<string, Waiter[]>();
  #inFlight = false;
  #failures = 0;
  #timer: TimerHandle | undefined;
  #replayTimer: TimerHandle | undefined;
  #closed = false;
  /** The peer left the cluster: nothing more is queued, hinted or acknowledged for it. */
  #discarded = false;

  constructor(
    readonly peer: string,
    private readonly keyspace: string,
    private readonly read: (key: Uint8Array) => Entry | undefined,
    private readonly replicas: ReplicaSet,
    private readonly scheduler: Scheduler,
    private readonly hints: HintLog,
    private readonly limits: ReplicatorLimits,
    private readonly logger: Logger,
  ) {
    this.#scheduleReplay();
  }

  /** Keys waiting in memory. */
  get queued(): number {
    return this.#queue.size;
  }

  /**
   * Queues `key` for shipping; calls `onAck` (if given) once the peer holds `version` or newer.
   * Returns a function that forgets `onAck` (the writer stopped waiting: its deadline passed or
   * its caller left), so waiters never outlive their write's request.
   */
  enqueue(key: Uint8Array, version: Version, onAck?: () => void): () => void {
    if (this.#closed) return () => {};
    const id = keyId(key);
    this.#queue.set(id, key);
    let forget = () => {};
    if (onAck !== undefined) {
      const waiter: Waiter = { version, resolve: onAck };
      const list = this.#waiters.get(id) ?? [];
      list.push(waiter);
      this.#waiters.set(id, list);
      forget = () => {
        const left = (this.#waiters.get(id) ?? []).filter((w) => w !== waiter);
        if (left.length === 0) this.#waiters.delete(id);
        else this.#waiters.set(id, left);
      };
    }
    if (this.#queue.size > this.limits.maxQueuedKeys) this.#spill('queue full').catch(() => {});
    this.#kick(0);
    return forget;
  }

  /** Writers waiting for this peer's acknowledgement (for stats and tests). */
  get waiting(): number {
    let count = 0;
    for (const list of this.#waiters.values()) count += list.length;
    return count;
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#replayTimer?.cancel();
  }

  /**
   * Stops for good because the peer left the cluster: its queue goes, its waiters never hear from
   * it (their writers count their ack level over the members that remain), and a batch still in
   * flight puts nothing back and spills nothing. The peer's hint log is the caller's to drop.
   */
  discard(): void {
    this.#discarded = true;
    this.close();
    this.#queue.clear();
    this.#waiters.clear();
  }

  #kick(delayMs: number): void {
    if (this.#closed || this.#inFlight || this.#timer !== undefined) return;
    this.#timer = this.scheduler.setTimer(delayMs, () => {
      this.#timer = undefined;
      // A store failure here has already stopped the node (fail-stop); nothing is left to do.
      this.#sendBatch().catch(() => {});
    });
  }

  async #sendBatch(): Promise<void> {
    if (this.#closed || this.#inFlight || this.#queue.size === 0) return;
    this.#inFlight = true;
    const ids: string[] = [];
    const entries: Entry[] = [];
    let bytes = 0;
    for (const [id, key] of this.#queue) {
      if (entries.length >= this.limits.batchEntries) break;
      const entry = this.read(key);
      // The batch is full in bytes: this key waits for the next one (one larger entry goes alone).
      if (entry !== undefined && entries.length > 0 && bytes + entryBytes(entry) > this.limits.batchBytes) break;
      this.#queue.delete(id);
      if (entry === undefined) continue;
      ids.push(id);
      entries.push(entry);
      bytes += entryBytes(entry);
    }
    try {
      if (entries.length > 0) {
        await this.replicas.replicate(this.peer, this.keyspace, entries, this.limits.callTimeoutMs);
        entries.forEach((entry, i) => this.#acknowledge(ids[i]!, entry.version));
      }
      this.#failures = 0;
      this.#inFlight = false;
      if (this.#queue.size > 0) this.#kick(0);
    } catch (err: unknown) {
      this.#failures++;
      this.#inFlight = false;
      if (this.#discarded) return;
      // Put the keys back unless a newer write queued them again meanwhile (same key, same effect).
      entries.forEach((entry) => {
        const id = keyId(entry.key);
        if (!this.#queue.has(id)) this.#queue.set(id, entry.key);
      });
      if (this.#failures >= this.limits.hintAfterFailures) {
        await this.#spill(`${this.#failures} failed sends: ${err instanceof Error ? err.message : String(err)}`);
      } else {
        const backoff = Math.min(this.limits.retryMaxMs, this.limits.retryInitialMs * 2 ** (this.#failures - 1));
        this.#kick(backoff);
      }
    }
  }

  #acknowledge(id: string, version: Version): void {
    const list = this.#waiters.get(id);
    if (list === undefined) return;
    const remaining = list.filter((w) => {
      if (compareVersion(w.version, version) <= 0) {
        w.resolve();
        return false;
      }
      return true;
    });
    if (remaining.length === 0) this.#waiters.delete(id);
    else this.#waiters.set(id, remaining);
  }

  /** Moves every queued key to the durable hint log. */
  async #spill(why: string): Promise<void> {
    if (this.#discarded) return;
    const keys = [...this.#queue.values()];
    this.#queue.clear();
    if (keys.length === 0) return;
    this.logger.debug('peer unreachable: queued writes become hints', { peer: this.peer, keyspace: this.keyspace, keys: keys.length, why });
    await this.hints.add(keys.map((key) => ({ key, entry: this.read(key) })).filter((k) => k.entry !== undefined).map((k) => k.entry!));
  }

  #scheduleReplay(): void {
    if (this.#closed) return;
    this.#replayTimer = this.scheduler.setTimer(this.limits.hintReplayIntervalMs, () => {
      this.#replay()
        .catch(() => {})
        .finally(() => this.#scheduleReplay());
    });
  }

  /** Offers the hint log to the peer, a batch at a time, while it takes them. */
  async #replay(): Promise<void> {
    while (!this.#closed && this.hints.size > 0 && !this.#inFlight) {
      const offered = this.hints.oldest(this.limits.batchEntries).map((hint) => ({ hint, entry: this.read(hint.key) }));
      const taken = prefixWithin(offered, (o) => (o.entry === undefined ? 0 : entryBytes(o.entry)), this.limits.batchBytes);
      const hinted = taken.map((o) => o.hint);
      const entries = taken.map((o) => o.entry).filter((e): e is Entry => e !== undefined);
      try {
        if (entries.length > 0) await this.replicas.replicate(this.peer, this.keyspace, entries, this.limits.callTimeoutMs);
        entries.forEach((entry) => this.#acknowledge(keyId(entry.key), entry.version));
        await this.hints.remove(hinted);
        this.#failures = 0;
      } catch {
        return; // Still unreachable; the next replay tries again.
      }
    }
  }
}
