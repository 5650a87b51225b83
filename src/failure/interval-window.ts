/**
 * A sliding window over the most recent heartbeat inter-arrival intervals, with their mean and
 * (population) standard deviation in O(1) per sample, as Akka's HeartbeatHistory keeps them.
 *
 * The running sums drift by a rounding error on every add and remove; over days of beats that
 * would add up, so the window recomputes them exactly once per `capacity` adds, which keeps the
 * amortised cost O(1) and the error bounded by one window's worth of rounding.
 */
export class IntervalWindow {
  readonly #samples: Float64Array;
  /** Where the next sample goes; once the window is full, also the oldest sample. */
  #next = 0;
  #count = 0;
  #sum = 0;
  #sumOfSquares = 0;
  #addsSinceResum = 0;

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`an interval window holds a positive integer number of samples, not ${capacity}`);
    }
    this.#samples = new Float64Array(capacity);
  }

  /** The most samples the window holds; older ones fall out. */
  get capacity(): number {
    return this.#samples.length;
  }

  /** The number of samples held. */
  get count(): number {
    return this.#count;
  }

  /** Adds one interval in milliseconds (finite, non-negative), evicting the oldest when full. */
  add(intervalMs: number): void {
    if (!Number.isFinite(intervalMs) || intervalMs < 0) {
      throw new RangeError(`an interval is a finite non-negative number of milliseconds, not ${intervalMs}`);
    }
    if (this.#count === this.capacity) {
      const evicted = this.#samples[this.#next] ?? 0;
      this.#sum -= evicted;
      this.#sumOfSquares -= evicted * evicted;
    } else {
      this.#count += 1;
    }
    this.#samples[this.#next] = intervalMs;
    this.#sum += intervalMs;
    this.#sumOfSquares += intervalMs * intervalMs;
    this.#next = (this.#next + 1) % this.capacity;
    this.#addsSinceResum += 1;
    if (this.#addsSinceResum >= this.capacity) this.#resum();
  }

  /** The mean interval in milliseconds; 0 when empty. */
  get meanMs(): number {
    return this.#count === 0 ? 0 : this.#sum / this.#count;
  }

  /** The population standard deviation in milliseconds; 0 with fewer than two samples. */
  get stdDeviationMs(): number {
    if (this.#count === 0) return 0;
    const mean = this.meanMs;
    // Rounding can make E[x²] − E[x]² slightly negative when every sample is equal.
    return Math.sqrt(Math.max(0, this.#sumOfSquares / this.#count - mean * mean));
  }

  /** The held samples, oldest first (for tests and diagnostics; allocates). */
  toArray(): number[] {
    const out: number[] = [];
    const start = this.#count === this.capacity ? this.#next : 0;
    for (let i = 0; i < this.#count; i += 1) {
      out.push(this.#samples[(start + i) % this.capacity] ?? 0);
    }
    return out;
  }

  #resum(): void {
    let sum = 0;
    let sumOfSquares = 0;
    for (const sample of this.toArray()) {
      sum += sample;
      sumOfSquares += sample * sample;
    }
    this.#sum = sum;
    this.#sumOfSquares = sumOfSquares;
    this.#addsSinceResum = 0;
  }
}
