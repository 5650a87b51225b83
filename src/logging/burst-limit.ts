/**
 * Lets at most `burst` log lines through per `windowMs`, and counts the rest, so that a caller who
 * repeats a refused call in a loop cannot flood the log; the count of lines held back is reported
 * with the next line that gets through.
 */
export class BurstLimit {
  #windowStartMs = -Infinity;
  #inWindow = 0;
  #suppressed = 0;

  constructor(
    readonly burst: number,
    readonly windowMs: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** Undefined when this line is to be dropped; else how many were dropped since the last one let through. */
  admit(): { suppressedBefore: number } | undefined {
    const now = this.nowMs();
    if (now - this.#windowStartMs >= this.windowMs) {
      this.#windowStartMs = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow >= this.burst) {
      this.#suppressed++;
      return undefined;
    }
    this.#inWindow++;
    const suppressedBefore = this.#suppressed;
    this.#suppressed = 0;
    return { suppressedBefore };
  }
}
