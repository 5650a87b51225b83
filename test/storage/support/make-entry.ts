import type { VectorClock } from '../../../src/clock/index.js';
import type { Entry } from '../../../src/storage/index.js';

/** What a test says about an entry; everything but the key and the version has a default. */
export interface EntrySpec {
  readonly key: Uint8Array | string;
  readonly wallMs: number;
  readonly logical?: number;
  readonly nodeId?: string;
  readonly value?: Uint8Array | string;
  readonly tombstone?: boolean;
  readonly dependencies?: VectorClock;
  readonly originSequence?: number;
}

/** An entry for tests: string keys and values are UTF-8, a tombstone's value is empty. */
export function makeEntry(spec: EntrySpec): Entry {
  const tombstone = spec.tombstone ?? false;
  return {
    key: bytes(spec.key),
    value: tombstone ? new Uint8Array() : bytes(spec.value ?? `value@${spec.wallMs}`),
    version: { hlc: { wallMs: spec.wallMs, logical: spec.logical ?? 0 }, nodeId: spec.nodeId ?? 'n1' },
    tombstone,
    ...(spec.dependencies === undefined ? {} : { dependencies: spec.dependencies }),
    ...(spec.originSequence === undefined ? {} : { originSequence: spec.originSequence }),
  };
}

/** UTF-8 bytes of a string, or the bytes themselves, as a plain Uint8Array. */
export function bytes(input: Uint8Array | string): Uint8Array {
  return typeof input === 'string' ? new TextEncoder().encode(input) : new Uint8Array(input);
}
