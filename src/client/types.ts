/**
 * What Range and Watch answer, in the same shapes for the remote client (replikit-client.ts) and
 * an embedded node's KeyspaceHandle: keys and values as Buffers (Uint8Arrays with `toString()`),
 * revisions as numbers.
 */

/** Keys and values may be given as text (UTF-8) or bytes. */
export type Bytes = string | Uint8Array;

const encoder = new TextEncoder();

export function toBytes(value: Bytes): Uint8Array {
  return typeof value === 'string' ? encoder.encode(value) : value;
}

export function toBuffer(value: Bytes): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** A key as a CP keyspace holds it. */
export interface KeyValue {
  readonly key: Buffer;
  /** Empty when the range asked for keys only. */
  readonly value: Buffer;
  /** The revision that created the key (since it was last absent). */
  readonly createRevision: number;
  /** The revision of its last write. */
  readonly modRevision: number;
  /** Writes since it was created (1 after the first put). */
  readonly version: number;
}

/** What to read: the key alone (default), every key starting with it (`prefix`) or [key, end). */
export interface RangeOptions {
  /** Every key that starts with the key given (an empty prefix: every key). */
  readonly prefix?: boolean;
  /** The end (exclusive) of the range [key, end); not with `prefix`. */
  readonly end?: Bytes;
  /** At most this many keys in the answer (a page; `rangeAll` reads every page); 0 or absent for no limit. */
  readonly limit?: number;
  /** CP keyspaces: the revision to read at (OUT_OF_RANGE once compacted); absent for the current one. */
  readonly revision?: number;
  /** Leave the values out. */
  readonly keysOnly?: boolean;
  /** Only count the keys. */
  readonly countOnly?: boolean;
  /** Keys in descending byte order. */
  readonly descending?: boolean;
  /** CP keyspaces: answer from the node's own replica without asking the leader (possibly stale). */
  readonly serializable?: boolean;
  /** The `continuation` of a previous answer, for its next page. */
  readonly continuation?: Uint8Array;
}

export interface RangeResult {
  /** This page's keys, in the order asked for. */
  readonly kvs: readonly KeyValue[];
  /** Keys in the whole range at the revision read (every page). */
  readonly count: number;
  /** CP keyspaces: the revision read at (0 elsewhere). */
  readonly revision: number;
  /** Keys remain after this page: pass `continuation` to read them. */
  readonly more: boolean;
  readonly continuation?: Uint8Array;
  readonly possiblyStale: boolean;
}

/** What to watch and from where. */
export interface WatchOptions {
  /** The first revision to deliver; absent or 0: changes after the current revision. */
  readonly fromRevision?: number;
  /** Every key that starts with the key given. */
  readonly prefix?: boolean;
  /** The end (exclusive) of the range [key, end); not with `prefix`. */
  readonly end?: Bytes;
  /** Put each key's previous value on its events (`prevValue`, `prevKv`). */
  readonly prevKv?: boolean;
  /** Milliseconds between the node's progress notifications while idle (≥ 100; the node's default is 5,000). */
  readonly progressIntervalMs?: number;
  /** Also yield progress notifications (`{ kind: 'progress' }`); otherwise they only advance the resume point. */
  readonly progressNotify?: boolean;
}

/** One change to one key. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: Buffer;
  /** The value written; empty for a delete. */
  readonly value: Buffer;
  /** The revision of the change (a put's or delete's `modRevision`). */
  readonly revision: number;
  /** 0 for a delete. */
  readonly createRevision: number;
  readonly modRevision: number;
  /** 0 for a delete. */
  readonly version: number;
  /** With `prevKv`: the value before the change, when the key was present. */
  readonly prevValue?: Buffer;
  readonly prevKv?: KeyValue;
}

/** What a watch yields, in revision order. */
export type WatchItem =
  /** The events of one or more revisions (never split), complete up to `revision`. */
  | { readonly kind: 'events'; readonly revision: number; readonly events: readonly WatchEvent[] }
  /** With `progressNotify`: nothing more in range at or below `revision`. */
  | { readonly kind: 'progress'; readonly revision: number };

/** A watch: an async iterator of {@link WatchItem}s that can also be cancelled or asked for progress. */
export interface WatchStream extends AsyncIterableIterator<WatchItem> {
  /** The revision every event at or below which has been received (where a resume starts after). */
  readonly completeRevision: number;
  /** Asks the node for a progress notification now. */
  requestProgress(): void;
  /** Ends the watch: the iterator finishes. */
  cancel(): void;
  /** The events one by one, without progress notifications. */
  events(): AsyncIterableIterator<WatchEvent>;
}

/** Flattens a watch's batches into single events (progress notifications are dropped). */
export async function* eventsOf(watch: AsyncIterableIterator<WatchItem>): AsyncGenerator<WatchEvent, void, undefined> {
  for await (const item of watch) {
    if (item.kind === 'events') yield* item.events;
  }
}
