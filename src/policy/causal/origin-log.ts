import type { Entry } from '../../storage/entry.js';
import type { Store } from '../../storage/store.js';

/**
 * This node's own writes to one causal keyspace, by sequence number, kept durably in a store
 * keyspace of their own until every peer has applied them. Peers must apply an origin's writes
 * in sequence, so none may be lost: an acknowledged write is in this log before the client hears
 * back, and it is sent again after a restart until every peer has it.
 */
export class OriginLog {
  /** Sequences whose record is durable, as a contiguous range [firstSeq, durableSeq]. */
  #firstSeq: number;
  #lastSeq: number;
  #durableSeq: number;

  private constructor(
    private readonly store: Store,
    readonly name: string,
    firstSeq: number,
    lastSeq: number,
  ) {
    this.#firstSeq = firstSeq;
    this.#lastSeq = lastSeq;
    this.#durableSeq = lastSeq;
  }

  /**
   * Opens the log kept in store keyspace `name`, with the records an earlier run left.
   * `appliedSeq` is the highest of this node's own sequences known applied (from the keyspace's
   * applied clock): when every record was truncated, the log resumes after it.
   */
  static open(store: Store, name: string, appliedSeq: number): OriginLog {
    const held = store.entries(name);
    const last = Math.max(appliedSeq, held.length === 0 ? 0 : seqOf(held[held.length - 1]!.key));
    const first = held.length === 0 ? last + 1 : seqOf(held[0]!.key);
    return new OriginLog(store, name, first, last);
  }

  /** The highest sequence ever appended (0 for none). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** The highest sequence whose record, and every earlier one, is durable. */
  get durableSeq(): number {
    return this.#durableSeq;
  }

  /** The lowest sequence still kept. */
  get firstSeq(): number {
    return this.#firstSeq;
  }

  /** Records kept: writes some peer may still lack. */
  get size(): number {
    return Math.max(0, this.#lastSeq - this.#firstSeq + 1);
  }

  /**
   * Moves an empty log past `seq`: after a wiped replica recovered, its peers have applied its
   * writes up to `seq`, and its next write is `seq + 1`.
   */
  resumeAfter(seq: number): void {
    if (this.size > 0 && this.#lastSeq > this.#durableSeq) throw new Error('resumeAfter on a log with writes in flight');
    if (seq <= this.#lastSeq) return;
    this.#firstSeq = seq + 1;
    this.#lastSeq = seq;
    this.#durableSeq = seq;
  }

  /** Appends the write `entry` (its originSequence is the record's key); resolves once durable. */
  async append(entry: Entry): Promise<void> {
    const seq = entry.originSequence!;
    this.#lastSeq = Math.max(this.#lastSeq, seq);
    await this.store.apply(this.name, [{ ...entry, key: seqKey(seq), value: packRecord(entry.key, entry.value) }]);
  }

  /** Marks `seq` durable; the durable range grows once every earlier record is durable too. */
  markDurable(seq: number): void {
    this.#pending.add(seq);
    while (this.#pending.has(this.#durableSeq + 1)) {
      this.#pending.delete(this.#durableSeq + 1);
      this.#durableSeq++;
    }
  }
  readonly #pending = new Set<number>();

  /** The write with sequence `seq`, as it was appended, or undefined when truncated. */
  read(seq: number): Entry | undefined {
    const record = this.store.get(this.name, seqKey(seq));
    if (record === undefined) return undefined;
    const { key, value } = unpackRecord(record.value);
    return { ...record, key, value };
  }

  /** Drops the records up to and including `seq`. */
  async truncateThrough(seq: number): Promise<void> {
    const items = [];
    for (let s = this.#firstSeq; s <= Math.min(seq, this.#durableSeq); s++) {
      const record = this.store.get(this.name, seqKey(s));
      if (record !== undefined) items.push({ key: record.key, version: record.version });
    }
    if (items.length === 0) return;
    this.#firstSeq = Math.max(this.#firstSeq, Math.min(seq, this.#durableSeq) + 1);
    await this.store.remove(this.name, items);
  }
}

/** A record's key: the sequence as 8 big-endian bytes, so that records sort by sequence. */
function seqKey(seq: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(seq));
  return out;
}

/** A record's value: the write's key (length-prefixed, 2 bytes) and then its value. */
function packRecord(key: Uint8Array, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + key.byteLength + value.byteLength);
  new DataView(out.buffer).setUint16(0, key.byteLength);
  out.set(key, 2);
  out.set(value, 2 + key.byteLength);
  return out;
}

function unpackRecord(bytes: Uint8Array): { key: Uint8Array; value: Uint8Array } {
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(0);
  return { key: bytes.slice(2, 2 + length), value: bytes.slice(2 + length) };
}

function seqOf(key: Uint8Array): number {
  return Number(new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(0));
}
