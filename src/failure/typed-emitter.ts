/** A listener for one event type. */
export type Listener<E> = (event: E) => void;

/**
 * A minimal synchronous event emitter typed by an event map (`{ 'member-state': MemberStateChange,
 * ... }`), so a misspelt event name or a wrong payload is a compile error. It needs nothing from
 * `node:events`, which keeps the failure layer free of Node APIs.
 *
 * Listener contract: listeners run synchronously, in the order they were added. One that throws
 * does not stop the others; after all have run, `emit` rethrows the first error (or an
 * `AggregateError` when several threw), so a faulty listener is loud but cannot starve the rest.
 */
export class TypedEmitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds `listener` for `type` (once, however often it is added); returns a function that removes it. */
  on<K extends keyof Events>(type: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(type, listener);
  }

  /** Removes `listener` for `type`; does nothing when it was not added. */
  off<K extends keyof Events>(type: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(type)?.delete(listener as Listener<never>);
  }

  /** The number of listeners for `type`. */
  listenerCount(type: keyof Events): number {
    return this.#listeners.get(type)?.size ?? 0;
  }

  /** Calls every listener of `type` with `event`; see the class comment for errors. */
  emit<K extends keyof Events>(type: K, event: Events[K]): void {
    const set = this.#listeners.get(type);
    if (set === undefined || set.size === 0) return;
    const errors: unknown[] = [];
    // A copy, so listeners that add or remove listeners affect the next emit, not this one.
    for (const listener of [...set] as Listener<Events[K]>[]) {
      try {
        listener(event);
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} listeners of ${String(type)} threw`);
  }
}
