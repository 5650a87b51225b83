/** How two vector clocks relate. Exactly one holds for any pair. */
export type CausalOrder = 'before' | 'after' | 'equal' | 'concurrent';

/**
 * An immutable vector clock: a counter per node id, absent meaning zero. Every operation returns
 * a new clock, so a clock handed to another component can never change under it.
 */
export class VectorClock {
  static readonly EMPTY = new VectorClock(new Map());

  readonly #counters: ReadonlyMap<string, number>;

  private constructor(counters: ReadonlyMap<string, number>) {
    this.#counters = counters;
  }

  /** A clock from plain entries; zero counters are dropped, negative or fractional ones refused. */
  static from(entries: Iterable<readonly [string, number]> | Record<string, number>): VectorClock {
    const pairs = Symbol.iterator in entries ? entries : Object.entries(entries);
    const counters = new Map<string, number>();
    for (const [node, counter] of pairs as Iterable<readonly [string, number]>) {
      if (!Number.isSafeInteger(counter) || counter < 0) {
        throw new RangeError(`vector clock counter for ${JSON.stringify(node)} must be a non-negative integer, not ${counter}`);
      }
      if (counter > 0) counters.set(node, counter);
    }
    return new VectorClock(counters);
  }

  /** The counter of `node` (zero when absent). */
  get(node: string): number {
    return this.#counters.get(node) ?? 0;
  }

  /** The nodes with a non-zero counter. */
  nodes(): IterableIterator<string> {
    return this.#counters.keys();
  }

  /** The non-zero entries. */
  entries(): IterableIterator<[string, number]> {
    return this.#counters.entries();
  }

  /** The number of non-zero entries. */
  get size(): number {
    return this.#counters.size;
  }

  /** A copy with `node`'s counter raised by one. */
  increment(node: string): VectorClock {
    return this.with(node, this.get(node) + 1);
  }

  /** A copy with `node`'s counter raised to at least `counter`. */
  with(node: string, counter: number): VectorClock {
    if (counter <= this.get(node)) return this;
    const next = new Map(this.#counters);
    next.set(node, counter);
    return new VectorClock(next);
  }

  /** The pointwise maximum: commutative, associative and idempotent. */
  merge(other: VectorClock): VectorClock {
    let next: Map<string, number> | undefined;
    for (const [node, counter] of other.#counters) {
      if (counter > this.get(node)) {
        next ??= new Map(this.#counters);
        next.set(node, counter);
      }
    }
    return next === undefined ? this : new VectorClock(next);
  }

  /** True when every counter of this clock is at least `other`'s (equal clocks dominate each other). */
  dominates(other: VectorClock): boolean {
    for (const [node, counter] of other.#counters) {
      if (this.get(node) < counter) return false;
    }
    return true;
  }

  /** `before` when this < other strictly, `after` when this > other strictly, else equal or concurrent. */
  compare(other: VectorClock): CausalOrder {
    const geq = this.dominates(other);
    const leq = other.dominates(this);
    if (geq && leq) return 'equal';
    if (leq) return 'before';
    if (geq) return 'after';
    return 'concurrent';
  }

  /** A plain object, for logs and JSON. */
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.#counters].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  toString(): string {
    return JSON.stringify(this.toJSON());
  }
}
