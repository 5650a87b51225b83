/**
 * When leases expire: the leader's business alone (etcd's lessor does the same). Every replica
 * holds the same leases (the state machine applies grants and revokes from the log), but only
 * the leader keeps deadlines, on its monotonic clock, and renews them when holders keep their
 * leases alive; a lease past its deadline is revoked through the log, so every replica deletes its
 * keys at the same revision. No replica ever decides expiry by its own clock.
 *
 * The rules that make a failover safe:
 * - A new leader does not know when its predecessor last renewed each lease, so it gives every
 *   lease its full TTL plus `extendMs` (one election time) from when it took over. A holder that
 *   was renewing keeps its lease; one that stopped loses it at most one TTL and one election
 *   time later than it would have under one leader.
 * - A lease is renewed only after the leader confirmed it still leads, with a ReadIndex round
 *   started after the renewal arrived (raft-group.ts): a deposed leader that has not noticed
 *   cannot promise a holder time the real leader does not give it.
 * - A lease past its deadline is not renewed, even before its revoke commits: its holder must
 *   grant a new one.
 *
 * Pure: times are passed in; raft-group.ts calls it from the group's scheduler.
 */
export type RenewResult = { readonly ok: true; readonly ttlMs: number } | { readonly ok: false; readonly why: 'not-leader' | 'expired' };

export class LeaseKeeper {
  /** Deadline of each lease (ms on the group's scheduler clock); empty unless leading. */
  readonly #deadlines = new Map<number, number>();
  /** Leases past their deadline whose revoke was proposed and has not been applied yet. */
  readonly #expiring = new Set<number>();
  #leading = false;

  get leading(): boolean {
    return this.#leading;
  }

  /** This node became leader at `nowMs`: every lease gets its TTL plus `extendMs` from now. */
  lead(leases: Iterable<{ readonly id: number; readonly ttlMs: number }>, nowMs: number, extendMs: number): void {
    this.#leading = true;
    this.#deadlines.clear();
    this.#expiring.clear();
    for (const l of leases) this.#deadlines.set(l.id, nowMs + l.ttlMs + extendMs);
  }

  /** This node stopped leading: it keeps no deadlines (the next leader sets its own). */
  stepDown(): void {
    this.#leading = false;
    this.#deadlines.clear();
    this.#expiring.clear();
  }

  /** A grant was applied: the lease runs from now (on the leader). */
  granted(id: number, ttlMs: number, nowMs: number): void {
    if (this.#leading) this.#deadlines.set(id, nowMs + ttlMs);
  }

  /** Leases ended (a revoke was applied). */
  revoked(ids: Iterable<number>): void {
    for (const id of ids) {
      this.#deadlines.delete(id);
      this.#expiring.delete(id);
    }
  }

  /**
   * Renews lease `id` (of `ttlMs`, as the state holds it) for its TTL from `nowMs`. The caller has
   * checked that the lease exists and confirmed leadership after the request arrived.
   */
  renew(id: number, ttlMs: number, nowMs: number): RenewResult {
    if (!this.#leading) return { ok: false, why: 'not-leader' };
    const deadline = this.#deadlines.get(id);
    if (this.#expiring.has(id) || (deadline !== undefined && deadline <= nowMs)) return { ok: false, why: 'expired' };
    this.#deadlines.set(id, nowMs + ttlMs);
    return { ok: true, ttlMs };
  }

  /** Milliseconds lease `id` has left, or undefined when this node keeps no deadline for it. */
  remaining(id: number, nowMs: number): number | undefined {
    const deadline = this.#deadlines.get(id);
    return deadline === undefined ? undefined : Math.max(0, deadline - nowMs);
  }

  /**
   * Leases past their deadline at `nowMs` whose revoke is not yet proposed, at most `max` (one log
   * entry's worth); they are marked as being revoked. Call {@link retry} if the proposal fails.
   */
  due(nowMs: number, max: number): number[] {
    const out: number[] = [];
    if (!this.#leading) return out;
    for (const [id, deadline] of this.#deadlines) {
      if (deadline > nowMs || this.#expiring.has(id)) continue;
      out.push(id);
      this.#expiring.add(id);
      if (out.length >= max) break;
    }
    return out;
  }

  /** A revoke proposal failed: its leases are due again at the next check. */
  retry(ids: Iterable<number>): void {
    for (const id of ids) this.#expiring.delete(id);
  }
}
