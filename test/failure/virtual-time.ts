import type { MembershipView } from '../../src/failure/index.js';

/** One beat delivered to one view. */
export interface Delivery {
  readonly atMs: number;
  readonly to: MembershipView;
  readonly from: string;
  readonly incarnation: number;
}

/**
 * Runs views in virtual time from `fromMs` to `untilMs`: every delivery at its exact time, and a
 * tick of every view every `tickIntervalMs`, in time order (deliveries first on a tie). Nothing
 * sleeps; ten virtual minutes take milliseconds.
 */
export function runVirtual(
  views: readonly MembershipView[],
  deliveries: readonly Delivery[],
  options: { readonly fromMs: number; readonly untilMs: number; readonly tickIntervalMs: number },
): void {
  const sorted = [...deliveries].sort((a, b) => a.atMs - b.atMs);
  let next = 0;
  for (let tickAt = options.fromMs + options.tickIntervalMs; tickAt <= options.untilMs; tickAt += options.tickIntervalMs) {
    for (let d = sorted[next]; d !== undefined && d.atMs <= tickAt; d = sorted[++next]) {
      d.to.recordHeartbeat(d.from, d.incarnation, d.atMs);
    }
    for (const view of views) view.tick(tickAt);
  }
}

/** Deliveries of beats at `arrivals` from `from` to `to`. */
export function deliveriesOf(arrivals: readonly number[], to: MembershipView, from: string, incarnation = 1): Delivery[] {
  return arrivals.map((atMs) => ({ atMs, to, from, incarnation }));
}
