import type { Scheduler } from '../clock/index.js';

/** A call to one replica (the local one included), started by {@link callQuorum}. */
export type ReplicaCall<T> = (replicaId: string, timeoutMs: number) => Promise<T>;

/** What {@link callQuorum} gathered when it settled. */
export type QuorumOutcome<T> =
  /** `needed` replicas answered; `answers` holds exactly those first `needed` answers. */
  | { readonly kind: 'quorum'; readonly answers: ReadonlyMap<string, T>; readonly asked: number }
  /** So many replicas failed that `needed` answers can no longer come. */
  | {
      readonly kind: 'failed';
      readonly answers: ReadonlyMap<string, T>;
      readonly failures: ReadonlyMap<string, unknown>;
      readonly asked: number;
    }
  /** The timeout passed first. */
  | {
      readonly kind: 'timeout';
      readonly answers: ReadonlyMap<string, T>;
      readonly failures: ReadonlyMap<string, unknown>;
      readonly asked: number;
    };
// `asked`: how many replicas were called by the time it settled (with a thrifty plan, more than
// `plan.first` means the others were asked too: a hedge).

/**
 * Which replicas a quorum call asks first. The rest are asked only when one of those fails or the
 * quorum has not formed `hedgeAfterMs` after the start ("thrifty" quorums: a majority is asked,
 * not everyone, which halves the peer traffic of a read at n = 3; the hedge keeps a slow or dead
 * peer from costing more than the delay).
 */
export interface ThriftyPlan {
  /** Asked at once; normally exactly a majority, the local replica among them. */
  readonly first: readonly string[];
  /** When the others are asked too, if no quorum has formed by then. */
  readonly hedgeAfterMs: number;
}

/**
 * Calls the replicas and settles as soon as `needed` of them have answered, as soon as that has
 * become impossible, or when `timeoutMs` passes, whichever comes first. Without `plan` every
 * replica is called at once; with one, `plan.first` are called at once and the others only on a
 * failure or after `plan.hedgeAfterMs`. Calls still in flight when it settles are left to finish
 * on their own; their results are ignored.
 */
export function callQuorum<T>(
  replicaIds: readonly string[],
  needed: number,
  timeoutMs: number,
  scheduler: Scheduler,
  call: ReplicaCall<T>,
  plan?: ThriftyPlan,
): Promise<QuorumOutcome<T>> {
  return new Promise((resolve) => {
    const answers = new Map<string, T>();
    const failures = new Map<string, unknown>();
    const started = new Set<string>();
    let settled = false;
    let hedge: { cancel(): void } | undefined;
    const settle = (outcome: QuorumOutcome<T>): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      hedge?.cancel();
      resolve(outcome);
    };
    const timer = scheduler.setTimer(timeoutMs, () => settle({ kind: 'timeout', answers, failures, asked: started.size }));
    const start = (id: string): void => {
      if (started.has(id) || settled) return;
      started.add(id);
      let pending: Promise<T>;
      try {
        pending = call(id, timeoutMs);
      } catch (err: unknown) {
        pending = Promise.reject(err);
      }
      pending.then(
        (answer) => {
          if (settled) return;
          answers.set(id, answer);
          if (answers.size >= needed) settle({ kind: 'quorum', answers, asked: started.size });
        },
        (err: unknown) => {
          if (settled) return;
          failures.set(id, err);
          if (replicaIds.length - failures.size < needed) settle({ kind: 'failed', answers, failures, asked: started.size });
          else startTheRest();
        },
      );
    };
    const startTheRest = (): void => {
      for (const id of replicaIds) start(id);
    };
    if (plan === undefined || plan.first.length >= replicaIds.length) {
      startTheRest();
      return;
    }
    for (const id of plan.first) start(id);
    if (!settled) hedge = scheduler.setTimer(plan.hedgeAfterMs, startTheRest);
  });
}

/** A majority of `replicaCount`: the smallest number that any two such sets must share a member. */
export function majority(replicaCount: number): number {
  return Math.floor(replicaCount / 2) + 1;
}
