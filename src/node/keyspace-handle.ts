import type { ReadResult, WriteResult } from '../policy/policy.js';
import type { CallOptions, NodeCore } from './node-core.js';
import { CompareResult, CompareTarget, type TxnRequest, type TxnResponse } from '../gen/replikit/v1/kv_service.js';
import { keyValueOf, LocalWatch } from '../client/local-watch.js';
import type { RangeOptions, RangeResult, WatchOptions, WatchStream } from '../client/types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Keys and values may be given as text (UTF-8) or bytes. */
export type Bytes = string | Uint8Array;

function toBytes(value: Bytes): Uint8Array {
  return typeof value === 'string' ? encoder.encode(value) : value;
}

/** A read's result with a convenience for text values. */
export interface GetResult extends ReadResult {
  /** True when the key holds a value. */
  readonly found: boolean;
  /** The value decoded as UTF-8, or undefined when not found. */
  text(): string | undefined;
}

/**
 * A client session on one keyspace: carries the session token from each response to the next
 * request, so that a causal keyspace gives this session read-your-writes, monotonic reads,
 * monotonic writes and writes-follow-reads, even when it moves to another node
 * (`session.moveTo(otherNode.keyspace(name))` or by passing `token` along). Not for concurrent
 * use: one operation at a time, as a session is one client.
 */
export class Session {
  #token: Uint8Array;

  constructor(
    private handle: KeyspaceHandle,
    token: Uint8Array = new Uint8Array(0),
  ) {
    this.#token = token;
  }

  /** The current session token (opaque bytes; send them along to continue elsewhere). */
  get token(): Uint8Array {
    return this.#token;
  }

  /** Continues this session through another node's handle of the same keyspace. */
  moveTo(handle: KeyspaceHandle): void {
    if (handle.name !== this.handle.name) {
      throw new RangeError(`a session of keyspace ${this.handle.name} cannot move to keyspace ${handle.name}`);
    }
    this.handle = handle;
  }

  async put(key: Bytes, value: Bytes, options?: Omit<CallOptions, 'sessionToken'>): Promise<WriteResult> {
    return this.#track(await this.handle.put(key, value, { ...options, sessionToken: this.#token }));
  }

  async delete(key: Bytes, options?: Omit<CallOptions, 'sessionToken'>): Promise<WriteResult> {
    return this.#track(await this.handle.delete(key, { ...options, sessionToken: this.#token }));
  }

  async get(key: Bytes, options?: Omit<CallOptions, 'sessionToken'>): Promise<GetResult> {
    return this.#track(await this.handle.get(key, { ...options, sessionToken: this.#token }));
  }

  #track<T extends { sessionToken: Uint8Array }>(result: T): T {
    if (result.sessionToken.byteLength > 0) this.#token = result.sessionToken;
    return result;
  }
}

/** One keyspace of a node, as the embedding application uses it. */
export class KeyspaceHandle {
  constructor(
    readonly node: NodeCore,
    readonly name: string,
  ) {}

  /** A session on this keyspace, starting empty or from a token of an earlier session. */
  session(token?: Uint8Array): Session {
    return new Session(this, token);
  }

  put(key: Bytes, value: Bytes, options?: CallOptions): Promise<WriteResult> {
    return this.node.put(this.name, toBytes(key), toBytes(value), options);
  }

  delete(key: Bytes, options?: CallOptions): Promise<WriteResult> {
    return this.node.delete(this.name, toBytes(key), options);
  }

  async get(key: Bytes, options?: CallOptions): Promise<GetResult> {
    const result = await this.node.get(this.name, toBytes(key), options);
    return {
      ...result,
      found: result.value !== undefined,
      text: () => (result.value === undefined ? undefined : decoder.decode(result.value)),
    };
  }

  /**
   * Reads a key, a range (`end`) or a prefix (`prefix`), a page of at most `limit` keys (pass the
   * answer's `continuation` for the next), on CP keyspaces at `revision` or the current one.
   */
  async range(key: Bytes, options: RangeOptions = {}, callOptions?: CallOptions): Promise<RangeResult> {
    const result = await this.node.range(
      this.name,
      {
        key: toBytes(key),
        ...(options.end === undefined ? {} : { rangeEnd: toBytes(options.end) }),
        prefix: options.prefix === true,
        limit: options.limit ?? 0,
        keysOnly: options.keysOnly === true,
        countOnly: options.countOnly === true,
        descending: options.descending === true,
        revision: options.revision ?? 0,
        ...(options.continuation === undefined ? {} : { continuation: options.continuation }),
      },
      options.serializable === true ? { ...callOptions, consistency: 'serializable' } : callOptions,
    );
    return {
      kvs: result.kvs.map(keyValueOf),
      count: result.count,
      revision: result.revision,
      more: result.more,
      ...(result.continuation === undefined ? {} : { continuation: result.continuation }),
      possiblyStale: result.possiblyStale,
    };
  }

  /**
   * Watches a key, a range (`end`) or a prefix (`prefix`) on this node, from `fromRevision` or
   * from now: event batches in revision order (progress notifications too with
   * `progressNotify`). It ends with a WatchError when its start is compacted (`compactRevision`),
   * it falls behind or the node stops (`resumeRevision`: watch again from there).
   */
  async watch(key: Bytes, options: WatchOptions = {}, callOptions?: CallOptions): Promise<WatchStream> {
    const watcher = await this.node.watch(
      this.name,
      {
        key: toBytes(key),
        ...(options.end === undefined ? {} : { rangeEnd: toBytes(options.end) }),
        prefix: options.prefix === true,
        startRevision: options.fromRevision ?? 0,
        prevKv: options.prevKv === true,
        progressIntervalMs: options.progressIntervalMs ?? 0,
      },
      callOptions,
    );
    return new LocalWatch(watcher, options.progressNotify === true);
  }

  /** Discards a CP keyspace's history at and below `revision`. */
  compact(revision: number, options?: CallOptions): ReturnType<NodeCore['compact']> {
    return this.node.compact(this.name, revision, options);
  }

  /** A transaction (CP keyspaces): compares, then the success or the failure operations, atomically. */
  txn(request: Omit<TxnRequest, 'keyspace'>, options?: CallOptions): Promise<TxnResponse> {
    return this.node.txn({ ...request, keyspace: this.name }, options);
  }

  /**
   * Compare-and-set (CP keyspaces): writes `value` only if the key holds exactly `expected` (null:
   * only if the key is absent). Answers whether it swapped, the revision, and otherwise what the
   * key holds now (undefined when absent).
   */
  async compareAndSet(key: Bytes, expected: Bytes | null, value: Bytes, options?: CallOptions): Promise<CompareAndSetResult> {
    const k = Buffer.from(toBytes(key));
    const compare =
      expected === null
        ? { key: k, target: CompareTarget.COMPARE_TARGET_CREATE_REVISION, result: CompareResult.COMPARE_RESULT_EQUAL, value: Buffer.alloc(0), number: 0n }
        : { key: k, target: CompareTarget.COMPARE_TARGET_VALUE, result: CompareResult.COMPARE_RESULT_EQUAL, value: Buffer.from(toBytes(expected)), number: 0n };
    const response = await this.txn({ compares: [compare], success: [{ put: { key: k, value: Buffer.from(toBytes(value)), lease: 0n } }], failure: [{ get: { key: k } }] }, options);
    const current = response.responses[0]?.get?.kv;
    return {
      swapped: response.succeeded,
      revision: Number(response.revision),
      current: response.succeeded || current === undefined ? undefined : { value: current.value, keyVersion: Number(current.version), modRevision: Number(current.modRevision) },
    };
  }
}

export interface CompareAndSetResult {
  readonly swapped: boolean;
  /** The keyspace's revision after the transaction. */
  readonly revision: number;
  /** When it did not swap: what the key holds (undefined when absent). */
  readonly current?: { readonly value: Uint8Array; readonly keyVersion: number; readonly modRevision: number };
}
