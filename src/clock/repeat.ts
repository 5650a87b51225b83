import type { Scheduler, TimerHandle } from './scheduler.js';

/**
 * Runs `fn` now and then every `intervalMs` (measured from the end of each run), until the
 * returned handle is cancelled. For the periodic work of a node (beats, ticks, clock samples) on
 * whatever time the scheduler keeps, real or virtual.
 */
export function repeatEvery(scheduler: Scheduler, intervalMs: number, fn: () => void): TimerHandle {
  let timer: TimerHandle | undefined;
  let cancelled = false;
  const loop = (): void => {
    if (cancelled) return;
    fn();
    if (!cancelled) timer = scheduler.setTimer(intervalMs, loop);
  };
  loop();
  return {
    cancel: () => {
      cancelled = true;
      timer?.cancel();
    },
  };
}
