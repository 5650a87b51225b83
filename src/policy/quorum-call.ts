import type { Scheduler } from '../clock/index.js';

/** A call to one replica (the local one included), started by {@link callQuorum}. */
export type ReplicaCall<T> = (replicaId: string, timeoutMs: number) => Promise<T>;

/** What {@link callQuorum} gathered when it settled. */
export type QuorumOutcome<T> =
  /** `needed` replicas answered; `answers` holds exactly those first `needed` answers. */
  | { readonly kind: 'quorum'; readonly answers: ReadonlyMap<string, T> }
  /** So many replicas failed that `needed` answers can no longer come. */
  | { readonly kind: 'failed'; readonly answers: ReadonlyMap<string, T>; readonly failures: ReadonlyMap<string, unknown> }
  /** The timeout passed first. */
  | { readonly kind: 'timeout'; readonly answers: ReadonlyMap<string, T>; readonly failures: ReadonlyMap<string, unknown> };

/**
 * Calls every replica at once and settles as soon as `needed` of them have answered, as soon as
 * that has become impossible, or when `timeoutMs` passes, whichever comes first. Calls still in
 * flight when it settles are left to finish on their own; their results are ignored.
 */
export function callQuorum<T>(
  replicaIds: readonly string[],
  needed: number,
  timeoutMs: number,
  scheduler: Scheduler,
  call: ReplicaCall<T>,
): Promise<QuorumOutcome<T>> {
  return new Promise((resolve) => {
    const answers = new Map<string, T>();
    const failures = new Map<string, unknown>();
    let settled = false;
    const settle = (outcome: QuorumOutcome<T>): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      resolve(outcome);
    };
    const timer = scheduler.setTimer(timeoutMs, () => settle({ kind: 'timeout', answers, failures }));
    for (const id of replicaIds) {
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
          if (answers.size >= needed) settle({ kind: 'quorum', answers });
        },
        (err: unknown) => {
          if (settled) return;
          failures.set(id, err);
          if (replicaIds.length - failures.size < needed) settle({ kind: 'failed', answers, failures });
        },
      );
    }
  });
}

/** A majority of `replicaCount`: the smallest number that any two such sets must share a member. */
export function majority(replicaCount: number): number {
  return Math.floor(replicaCount / 2) + 1;
}
