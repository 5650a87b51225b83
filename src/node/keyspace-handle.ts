import type { ReadResult, WriteResult } from '../policy/policy.js';
import type { CallOptions, NodeCore } from './node-core.js';
import { CompareResult, CompareTarget, type TxnRequest, type TxnResponse } from '../gen/replikit/v1/kv_service.js';

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
    const response = await this.txn({ compares: [compare], success: [{ put: { key: k, value: Buffer.from(toBytes(value)) } }], failure: [{ get: { key: k } }] }, options);
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
