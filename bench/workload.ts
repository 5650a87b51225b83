/**
 * What every system is asked to do, whichever way it is driven (over gRPC from the load generator,
 * or through the embedding API inside a node's own process): the same values, the same keys, and
 * for compare-and-set the same ownership of keys by callers. Nothing here knows any system.
 */
import { COMPARE_FAILED, type LoadOp } from './load.js';

/** Every value written: 100 bytes, as in DESIGN.md §6. */
export const VALUE_BYTES = 100;
/** The key space every system's puts and gets spread over. */
export const KEY_COUNT = 1_000;
/**
 * The most compare-and-set callers a phase may run: every caller owns keys of its own, so the
 * callers are numbered and their keys made up front. The benchmark runs CAS at 1 and 64 callers.
 */
export const CAS_CALLERS = 64;
/**
 * Keys each compare-and-set caller owns and takes in turn: 64 × 16 = 1,024 keys in all, about the
 * size of the put/get key space, so the stores hold comparable data and no key is hot.
 */
export const CAS_KEYS_PER_CALLER = 16;

export const VALUE: Buffer = Buffer.alloc(VALUE_BYTES, 'v');
const KEYS: readonly Buffer[] = Array.from({ length: KEY_COUNT }, (_, i) => Buffer.from(`bench-key-${String(i).padStart(6, '0')}`));
/** Caller c's keys at c × CAS_KEYS_PER_CALLER …; as long as the put/get keys (16 bytes), and apart from them. */
const CAS_KEYS: readonly Buffer[] = Array.from({ length: CAS_CALLERS * CAS_KEYS_PER_CALLER }, (_, i) =>
  Buffer.from(`bench-cas-c${String(Math.floor(i / CAS_KEYS_PER_CALLER)).padStart(2, '0')}-k${String(i % CAS_KEYS_PER_CALLER).padStart(2, '0')}`),
);

/** The key of call `n`: the same sequence for every system. */
export function keyOf(n: number): Buffer {
  return KEYS[n % KEY_COUNT]!;
}

/**
 * What one compare-and-set answered. `modRevision` is what the caller knows of the key afterwards:
 * the revision its put was written at when it swapped, else the key's current mod revision (0
 * when absent), read back in the same transaction.
 */
export interface SwapOutcome {
  readonly swapped: boolean;
  readonly modRevision: bigint;
}

/**
 * One compare-and-set as a system does it: a transaction whose one compare is "the mod revision
 * of `key` equals `expectedModRevision`", whose success branch puts VALUE there, and whose failure
 * branch reads the key back. `n` numbers the call, as in a LoadOp (for spreading calls over nodes).
 */
export type Swap = (key: Buffer, expectedModRevision: bigint, n: number) => Promise<SwapOutcome>;

/**
 * The compare-and-set load, the same for every system. Every caller owns its keys and is the only
 * one that writes them, so its compare fails only when what it knows is out of date: after a call
 * whose outcome it never learnt (a deadline: the put may have happened) or one the system applied
 * twice. Such a failure still answers the key's current revision, so the caller's next swap of it
 * holds again; the failure is counted apart (COMPARE_FAILED), neither as a swap nor as an error.
 *
 * The mod revision is the operand because it is the one both systems keep per key the same way
 * and etcd's own optimistic concurrency (clientv3 concurrency.STM) compares on it; a value compare
 * would also need a fresh value per write to mean anything.
 */
export class OwnedKeySwaps {
  readonly #swap: Swap;
  /** The mod revision last learnt of each key (index into CAS_KEYS); 0 for a key never written. */
  readonly #known: bigint[] = Array.from({ length: CAS_KEYS.length }, () => 0n);
  /** How many swaps each caller has made: which of its keys comes next. */
  readonly #turns: number[] = Array.from({ length: CAS_CALLERS }, () => 0);

  constructor(swap: Swap) {
    this.#swap = swap;
  }

  /** The load op: caller `caller`'s next key, in turn; resolves to COMPARE_FAILED when the compare did not hold. */
  readonly op: LoadOp = async (n, caller) => {
    if (!Number.isInteger(caller) || caller < 0 || caller >= CAS_CALLERS) {
      throw new RangeError(`compare-and-set caller ${caller} is outside the ${CAS_CALLERS} callers that own keys`);
    }
    const slot = this.#turns[caller]!++ % CAS_KEYS_PER_CALLER;
    const outcome = await this.#attempt(caller * CAS_KEYS_PER_CALLER + slot, n);
    return outcome.swapped ? outcome : COMPARE_FAILED;
  };

  /**
   * Writes every key once by compare-and-set on "absent" (mod revision 0), so that the measured
   * swaps update existing keys as the measured puts do, and checks that every one swapped: a
   * compare that fails on a fresh key means the system and this load disagree on what the operand
   * means. Every caller writes its own keys one after the other, all callers at once: the load of
   * the widest phase, so it takes no longer than it must.
   */
  async prefill(): Promise<void> {
    const owners = Array.from({ length: CAS_CALLERS }, async (_, caller) => {
      for (let slot = 0; slot < CAS_KEYS_PER_CALLER; slot++) {
        const index = caller * CAS_KEYS_PER_CALLER + slot;
        const outcome = await this.#attempt(index, index);
        if (!outcome.swapped) {
          throw new Error(`compare-and-set of ${CAS_KEYS[index]!.toString()} on mod revision 0 (absent) did not swap: the key is at mod revision ${outcome.modRevision}`);
        }
      }
    });
    await Promise.all(owners);
  }

  async #attempt(index: number, n: number): Promise<SwapOutcome> {
    const outcome = await this.#swap(CAS_KEYS[index]!, this.#known[index]!, n);
    this.#known[index] = outcome.modRevision;
    return outcome;
  }
}
