import type { Scheduler, TimerHandle } from '../clock/scheduler.js';

interface TimerEvent {
  readonly atMs: number;
  readonly seq: number;
  readonly callback: () => void;
  cancelled: boolean;
}

/** Lets every promise continuation that is ready run (no real I/O happens in a simulation). */
function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Virtual time for simulations: timers fire in (time, creation order), time jumps from one timer
 * to the next, and after each timer every promise continuation runs before the next one fires.
 * Nothing sleeps, and with seeded inputs a run is the same every time.
 */
export class VirtualScheduler implements Scheduler {
  #nowMs = 0;
  #seq = 0;
  readonly #heap: TimerEvent[] = [];

  nowMs(): number {
    return this.#nowMs;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const event: TimerEvent = { atMs: this.#nowMs + Math.max(0, delayMs), seq: this.#seq++, callback, cancelled: false };
    this.#push(event);
    return {
      cancel: () => {
        event.cancelled = true;
      },
    };
  }

  /** In virtual time "soon" is a zero-delay timer: after everything already due at this instant. */
  runSoon(callback: () => void): void {
    this.setTimer(0, callback);
  }

  /** The number of timers waiting (cancelled ones included until they come up). */
  get pendingTimers(): number {
    return this.#heap.length;
  }

  /** Runs every timer due up to `untilMs`, then sets the time to `untilMs`. */
  async runUntil(untilMs: number): Promise<void> {
    await flushMicrotasks();
    for (;;) {
      const next = this.#heap[0];
      if (next === undefined || next.atMs > untilMs) break;
      this.#pop();
      if (next.cancelled) continue;
      this.#nowMs = next.atMs;
      next.callback();
      await flushMicrotasks();
    }
    this.#nowMs = Math.max(this.#nowMs, untilMs);
  }

  /** Advances by `ms` of virtual time. */
  advance(ms: number): Promise<void> {
    return this.runUntil(this.#nowMs + ms);
  }

  /** Runs timers until `done` resolves or `limitMs` of virtual time passes; true when it resolved. */
  async runUntilSettled(done: Promise<unknown>, limitMs: number): Promise<boolean> {
    let finished = false;
    done.then(
      () => (finished = true),
      () => (finished = true),
    );
    const deadline = this.#nowMs + limitMs;
    await flushMicrotasks();
    while (!finished) {
      const next = this.#heap[0];
      if (next === undefined || next.atMs > deadline) break;
      this.#pop();
      if (next.cancelled) continue;
      this.#nowMs = next.atMs;
      next.callback();
      await flushMicrotasks();
    }
    return finished;
  }

  #push(event: TimerEvent): void {
    const heap = this.#heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  #pop(): TimerEvent | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: TimerEvent, b: TimerEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
