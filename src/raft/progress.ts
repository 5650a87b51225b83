/**
 * What a leader knows of one follower's log, and how it sends to it (the flow control of etcd's
 * raft, §10.2.1 of Ongaro's thesis on pipelining):
 *
 * - `probe`: the leader does not know where the follower's log matches its own. It sends one
 *   append at a time (next heartbeat response or append response unpauses it) and walks `next`
 *   back on each rejection, using the follower's hint to skip.
 * - `replicate`: the match point is known; appends stream optimistically, `next` moving ahead of
 *   the acknowledgements, at most `maxInflight` of them unacknowledged.
 * - `snapshot`: the follower needs entries the leader compacted; a snapshot is on its way and
 *   nothing else is sent until the follower acknowledges it (or the leader gives up waiting).
 */

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  /** The highest index known to match the leader's log. */
  match = 0;
  /** The next index to send. Invariant: `match < next`. */
  next: number;
  state: ProgressState = 'probe';
  /** In probe: an append is out and unanswered, so the next one waits. */
  probeSent = false;
  /** In snapshot: the index of the snapshot sent. */
  pendingSnapshot = 0;
  /** In snapshot: ticks since it was sent, to retry one that was lost. */
  snapshotElapsed = 0;
  /** The highest commit index sent that the follower can apply (it holds the entries), so as to tell it of newer ones. */
  sentCommit = 0;
  /** Heard from since the leader's last check-quorum round (§6.2). */
  recentActive = false;
  /** The last index of each unacknowledged append, oldest first (replicate state only). */
  readonly #inflight: number[] = [];

  constructor(
    next: number,
    private readonly maxInflight: number,
  ) {
    this.next = next;
  }

  get inflight(): number {
    return this.#inflight.length;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.#inflight.length >= this.maxInflight;
      case 'snapshot':
        return true;
    }
  }

  becomeProbe(): void {
    // After a snapshot, assume it landed: if it did not, the follower's rejection walks `next` back.
    this.next = this.state === 'snapshot' ? Math.max(this.match + 1, this.pendingSnapshot + 1) : this.match + 1;
    this.#reset('probe');
  }

  becomeReplicate(): void {
    this.next = this.match + 1;
    this.#reset('replicate');
  }

  becomeSnapshot(index: number): void {
    this.#reset('snapshot');
    this.pendingSnapshot = index;
    this.next = index + 1;
  }

  #reset(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotElapsed = 0;
    this.#inflight.length = 0;
  }

  /** An append through `lastIndex` was sent (undefined: an empty one). */
  sentAppend(lastIndex: number | undefined): void {
    if (this.state === 'replicate') {
      if (lastIndex === undefined) return;
      this.next = lastIndex + 1;
      this.#inflight.push(lastIndex);
    } else {
      this.probeSent = true;
    }
  }

  /** The follower acknowledged entries through `index`. False when that tells nothing new (stale or duplicate). */
  maybeUpdate(index: number): boolean {
    if (this.state === 'replicate') this.#freeThrough(index);
    if (index <= this.match) return false;
    this.match = index;
    this.next = Math.max(this.next, index + 1);
    this.probeSent = false;
    return true;
  }

  /**
   * The follower rejected an append whose `prevIndex` was `rejected`; `hint` is the highest index
   * where its log could match. False when the rejection is stale (it answers an append sent before
   * the leader last moved `next`), so that a delayed or duplicated rejection changes nothing.
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    switch (this.state) {
      case 'replicate':
        if (rejected <= this.match) return false;
        // Something in the pipeline was lost or refused: restart from the known match point.
        this.next = this.match + 1;
        return true;
      case 'probe':
        if (rejected !== this.next - 1) return false;
        this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1);
        this.probeSent = false;
        return true;
      case 'snapshot':
        // Only the snapshot's acknowledgement (or its retry timer) moves a follower on from here.
        return false;
    }
  }

  /**
   * A heartbeat response shows the follower alive but, with a full pipeline, nothing may be
   * lost-and-unanswered forever: release the oldest slot so one more append goes out, and its
   * rejection (if the pipeline lost something) puts the follower back to probe.
   */
  heardFrom(): void {
    this.recentActive = true;
    if (this.state === 'probe') this.probeSent = false;
    else if (this.state === 'replicate' && this.#inflight.length >= this.maxInflight) this.#inflight.shift();
  }

  #freeThrough(index: number): void {
    let drop = 0;
    while (drop < this.#inflight.length && this.#inflight[drop]! <= index) drop++;
    if (drop > 0) this.#inflight.splice(0, drop);
  }
}
