import type { ReadResult, WriteResult } from '../policy/policy.js';
import type { CallOptions, NodeCore } from './node-core.js';

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

/** One keyspace of a node, as the embedding application uses it. */
export class KeyspaceHandle {
  constructor(
    readonly node: NodeCore,
    readonly name: string,
  ) {}

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
}
