/**
 * A Lamport clock (Lamport 1978): a counter that ticks on every local event and send, and on a
 * receive jumps past the sender's value, so that a happened-before b implies clock(a) < clock(b).
 */
export class LamportClock {
  #time: number;

  constructor(initial = 0) {
    if (!Number.isSafeInteger(initial) || initial < 0) {
      throw new RangeError(`a Lamport clock starts at a non-negative integer, not ${initial}`);
    }
    this.#time = initial;
  }

  /** The current value, without advancing. */
  get time(): number {
    return this.#time;
  }

  /** A local event or a send: advance by one and return the new value. */
  tick(): number {
    this.#time += 1;
    return this.#time;
  }

  /** A receive of a message stamped `remote`: max(local, remote) + 1. */
  receive(remote: number): number {
    if (!Number.isSafeInteger(remote) || remote < 0) {
      throw new RangeError(`a Lamport timestamp is a non-negative integer, not ${remote}`);
    }
    this.#time = Math.max(this.#time, remote) + 1;
    return this.#time;
  }
}
