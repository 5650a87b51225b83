import type { Scheduler, TimerHandle } from '../../clock/index.js';
import type { Logger } from '../../logging/logger.js';
import type { Entry } from '../../storage/entry.js';
import { entryBytes } from '../../storage/entry-size.js';
import type { ReplicaSet } from '../../transport/replica-set.js';
import type { OriginLog } from './origin-log.js';

export interface SenderLimits {
  readonly batchEntries: number;
  /** Bytes of entries per batch; one larger entry travels alone. */
  readonly batchBytes: number;
  readonly callTimeoutMs: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
}

/**
 * Sends this node's writes of one causal keyspace to one peer, in sequence order, from the
 * durable origin log. The cursor moves only over writes the peer has applied (or already had):
 * a write the peer buffers, waiting for a dependency from another origin, is offered again after
 * a backoff, so a crash of the peer loses nothing. One batch is in flight at a time.
 */
export class PeerSender {
  /** The highest sequence the peer is known to have applied. */
  acknowledgedSeq: number;
  #inFlight = false;
  #failures = 0;
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(
    readonly peer: string,
    private readonly keyspace: string,
    private readonly log: OriginLog,
    private readonly replicas: ReplicaSet,
    private readonly scheduler: Scheduler,
    private readonly limits: SenderLimits,
    private readonly logger: Logger,
    private readonly onAcknowledged: () => void,
  ) {
    // After a restart the peer may lack anything still in the log: start from its beginning.
    this.acknowledgedSeq = log.firstSeq - 1;
    this.kick();
  }

  /** New writes are durable: send them soon. */
  kick(delayMs = 0): void {
    if (this.#closed || this.#inFlight || this.#timer !== undefined) return;
    if (this.acknowledgedSeq >= this.log.durableSeq) return;
    this.#timer = this.scheduler.setTimer(delayMs, () => {
      this.#timer = undefined;
      // A store failure here has already stopped the node (fail-stop); nothing is left to do.
      this.#send().catch(() => {});
    });
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
  }

  async #send(): Promise<void> {
    if (this.#closed || this.#inFlight) return;
    this.acknowledgedSeq = Math.max(this.acknowledgedSeq, this.log.firstSeq - 1);
    const from = this.acknowledgedSeq + 1;
    const to = Math.min(this.log.durableSeq, from + this.limits.batchEntries - 1);
    if (from > to) return;
    const batch: Entry[] = [];
    let bytes = 0;
    for (let seq = from; seq <= to; seq++) {
      const entry = this.log.read(seq);
      if (entry === undefined) break;
      if (batch.length > 0 && bytes + entryBytes(entry) > this.limits.batchBytes) break;
      batch.push(entry);
      bytes += entryBytes(entry);
    }
    if (batch.length === 0) return;
    this.#inFlight = true;
    let retry = false;
    try {
      const outcomes = await this.replicas.replicate(this.peer, this.keyspace, batch, this.limits.callTimeoutMs);
      let advanced = 0;
      for (const outcome of outcomes) {
        if (outcome === 'buffered') break;
        advanced++;
      }
      if (advanced > 0) {
        this.acknowledgedSeq = batch[advanced - 1]!.originSequence!;
        this.onAcknowledged();
      }
      retry = advanced < batch.length;
      this.#failures = retry ? this.#failures + 1 : 0;
    } catch (err: unknown) {
      this.#failures++;
      retry = true;
      if (this.#failures === 1) this.logger.debug('causal replication to a peer failed; retrying', { peer: this.peer, keyspace: this.keyspace, error: String(err) });
    } finally {
      this.#inFlight = false;
    }
    if (this.#closed) return;
    const backoff = retry ? Math.min(this.limits.retryMaxMs, this.limits.retryInitialMs * 2 ** Math.max(0, this.#failures - 1)) : 0;
    this.kick(backoff);
  }
}
