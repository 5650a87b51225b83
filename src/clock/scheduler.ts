/** A cancellable timer. */
export interface TimerHandle {
  cancel(): void;
}

/**
 * Monotonic time and timers for protocol code. A real node uses {@link systemScheduler}; a
 * simulation passes virtual time so that a whole cluster runs in one process and a seed replays
 * exactly. Nothing else in the protocol layers reads a clock or sets a timer.
 */
export interface Scheduler {
  /** Monotonic milliseconds; only differences mean anything. */
  nowMs(): number;
  /** Runs `callback` once after `delayMs` (clamped to ≥ 0) unless cancelled first. */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
  /**
   * Runs `callback` once the work of the current turn (including I/O callbacks already due) is
   * done, without the ~1 ms that a zero-delay timer costs in Node. For gathering work into batches.
   */
  runSoon(callback: () => void): void;
}

/** Real time: performance.now() and setTimeout. Timers are unref'd so they never hold a process open. */
export const systemScheduler: Scheduler = {
  nowMs: () => performance.now(),
  setTimer(delayMs, callback) {
    const timer = setTimeout(callback, Math.max(0, delayMs));
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
  runSoon(callback) {
    setImmediate(callback);
  },
};
