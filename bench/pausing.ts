/**
 * Pausing the system not being measured (SIGSTOP) and continuing it before its turn, shared by
 * the benchmarks that run systems side by side (run.ts, coordination.ts, watch-range.ts,
 * security.ts): a paused system's background work (heartbeats, elections, compaction) takes no
 * CPU from the one measured on a 2-core machine.
 */

/** How long a continued system may take to serve again: a replikit node sees every peer as silent until their beats arrive, and an etcd member may hold an election. */
export const RESUME_TIMEOUT_MS = 15_000;

/** Sends `signal` to every process of a system; one already gone is skipped (its phases count the errors). */
export function signalAll(system: { pids(): readonly number[] }, signal: NodeJS.Signals): void {
  for (const pid of system.pids()) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone.
    }
  }
}

/** A system that can be paused and continued. */
export interface Pausable {
  pids(): readonly number[];
  /** What to do once continued, before each probe (e.g. find etcd's leader); none by default. */
  afterResume?(): Promise<void>;
  /** One call that succeeds only when the system serves again. */
  probe(): Promise<unknown>;
}

/**
 * Continues a paused system and waits until a probe succeeds, up to RESUME_TIMEOUT_MS; throws
 * naming `name` and the last error otherwise.
 */
export async function resume(system: Pausable, name: string): Promise<void> {
  signalAll(system, 'SIGCONT');
  const until = performance.now() + RESUME_TIMEOUT_MS;
  for (;;) {
    try {
      // Each attempt: an etcd cluster continued may elect a new leader after the first look.
      await system.afterResume?.();
      await system.probe();
      return;
    } catch (err: unknown) {
      if (performance.now() > until) throw new Error(`${name} did not serve again within ${RESUME_TIMEOUT_MS} ms of SIGCONT: ${err instanceof Error ? err.message : String(err)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
