/**
 * Keeping a lease alive from its holder's side, with the holder's own view of how long it may
 * still act: `validUntilMs` is when the last confirmed renewal was *sent* plus the TTL. The
 * leader renews only after that send (it confirms its leadership after the renewal arrived;
 * lease-keeper.ts), so by the holder's clock its lease cannot end before `validUntilMs` — given
 * clocks that run at the same rate, which monotonic clocks do closely; wall-clock steps do not
 * matter, neither side reads one. A holder that stops acting at `validUntilMs` never overlaps the
 * next holder, even when it cannot reach the cluster; fencing tokens cover what this cannot
 * (a process paused mid-action).
 *
 * Renewals are sent every third of the TTL, and retried every `retryMs` when one fails
 * (UNAVAILABLE: an election), until the lease is confirmed gone (NOT_FOUND) or `validUntilMs`
 * passes unconfirmed: then `lost` resolves and the loop stops.
 */
import type { Scheduler, TimerHandle } from '../clock/index.js';
import { ReplikitError, toReplikitError } from '../errors.js';

export interface KeepAliveOptions {
  readonly id: number;
  readonly ttlMs: number;
  readonly scheduler: Scheduler;
  /** Renews the lease once; answers the TTL renewed, throws NOT_FOUND when it is gone. */
  readonly renew: (id: number) => Promise<number>;
  /** Between a failed renewal and the next try: 100 ms by default (one Raft tick). */
  readonly retryMs?: number;
}

export class KeptLease {
  readonly id: number;
  readonly #o: KeepAliveOptions;
  #validUntilMs: number;
  #timer: TimerHandle | undefined;
  #stopped = false;
  #lostReason: ReplikitError | undefined;
  readonly #lostWaiters: ((reason: ReplikitError) => void)[] = [];
  /** Renewals confirmed, for tests and metrics. */
  renewals = 0;

  /** Starts keeping `id` alive; `grantedAtMs` is when the grant (or the last renewal) was sent. */
  constructor(options: KeepAliveOptions, grantedAtMs: number) {
    this.id = options.id;
    this.#o = options;
    this.#validUntilMs = grantedAtMs + options.ttlMs;
    this.#schedule(options.ttlMs / 3);
  }

  /** Until when (on the scheduler's clock) the holder may act under this lease. */
  get validUntilMs(): number {
    return this.#validUntilMs;
  }

  /** True while the lease is confirmed for at least `marginMs` more. */
  valid(marginMs = 0): boolean {
    return this.#lostReason === undefined && this.#o.scheduler.nowMs() + marginMs < this.#validUntilMs;
  }

  /** Resolves with the reason once the lease is lost (gone, or unconfirmed past its TTL). */
  get lost(): Promise<ReplikitError> {
    if (this.#lostReason !== undefined) return Promise.resolve(this.#lostReason);
    return new Promise((resolve) => this.#lostWaiters.push(resolve));
  }

  get lostReason(): ReplikitError | undefined {
    return this.#lostReason;
  }

  /** Stops renewing (the lease then expires after its TTL, unless revoked). */
  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = this.#o.scheduler.setTimer(Math.max(1, ms), () => void this.#renewOnce());
  }

  async #renewOnce(): Promise<void> {
    if (this.#stopped) return;
    const sentAt = this.#o.scheduler.nowMs();
    if (sentAt >= this.#validUntilMs) return this.#lose(new ReplikitError('unavailable', 'LEASE_UNCONFIRMED', `lease ${this.id} could not be renewed before its TTL ran out; treat it as lost`));
    try {
      const ttl = await this.#o.renew(this.id);
      if (this.#stopped) return;
      this.renewals++;
      this.#validUntilMs = Math.max(this.#validUntilMs, sentAt + ttl);
      this.#schedule(ttl / 3);
    } catch (error: unknown) {
      if (this.#stopped) return;
      const e = toReplikitError(error);
      if (e.kind === 'not-found' || e.kind === 'invalid-argument' || e.kind === 'failed-precondition') return this.#lose(e);
      this.#schedule(Math.min(this.#o.retryMs ?? 100, Math.max(1, this.#validUntilMs - this.#o.scheduler.nowMs())));
    }
  }

  #lose(reason: ReplikitError): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#lostReason = reason;
    for (const w of this.#lostWaiters.splice(0)) w(reason);
  }
}
