import { isValidHlc, VectorClock, type HlcTimestamp } from '../clock/index.js';
import { invalidArgument } from '../errors.js';
import type { ApplyOutcome, Entry, Version } from '../storage/entry.js';
import { ApplyOutcome as WireApplyOutcome } from '../gen/replikit/v1/replica_service.js';
import type {
  Entry as WireEntry,
  Hlc as WireHlc,
  Version as WireVersion,
  VectorClock as WireVectorClock,
} from '../gen/replikit/v1/types.js';

/**
 * Conversions between the domain types and the generated wire types. Only the transport uses
 * src/gen; everything that comes off the wire is validated here before the core sees it, so a
 * malformed message is an INVALID_ARGUMENT, never a crash deeper down.
 */

const EMPTY = Buffer.alloc(0);

export function hlcToWire(t: HlcTimestamp): WireHlc {
  return { wallTimeMs: BigInt(t.wallMs), logical: t.logical };
}

export function hlcFromWire(w: WireHlc | undefined, what: string): HlcTimestamp {
  if (w === undefined) throw invalidArgument('HLC_MISSING', `${what} has no HLC`);
  const t = { wallMs: Number(w.wallTimeMs), logical: w.logical };
  if (w.wallTimeMs > BigInt(Number.MAX_SAFE_INTEGER) || !isValidHlc(t)) {
    throw invalidArgument('HLC_INVALID', `${what} has an invalid HLC (wall ${w.wallTimeMs}, logical ${w.logical})`);
  }
  return t;
}

export function versionToWire(v: Version): WireVersion {
  return { hlc: hlcToWire(v.hlc), nodeId: v.nodeId };
}

export function versionFromWire(w: WireVersion | undefined, what: string): Version {
  if (w === undefined) throw invalidArgument('VERSION_MISSING', `${what} has no version`);
  if (w.nodeId === '') throw invalidArgument('VERSION_INVALID', `${what} has a version without a node id`);
  return { hlc: hlcFromWire(w.hlc, what), nodeId: w.nodeId };
}

export function vectorClockToWire(vc: VectorClock | undefined): WireVectorClock | undefined {
  if (vc === undefined || vc.size === 0) return undefined;
  const counters: Record<string, bigint> = {};
  for (const [node, counter] of vc.entries()) counters[node] = BigInt(counter);
  return { counters };
}

export function vectorClockFromWire(w: WireVectorClock | undefined, what: string): VectorClock {
  if (w === undefined) return VectorClock.EMPTY;
  const pairs: [string, number][] = [];
  for (const [node, counter] of Object.entries(w.counters)) {
    if (node === '' || counter > BigInt(Number.MAX_SAFE_INTEGER) || counter < 0n) {
      throw invalidArgument('VECTOR_CLOCK_INVALID', `${what} has an invalid vector clock entry ${JSON.stringify(node)}=${counter}`);
    }
    pairs.push([node, Number(counter)]);
  }
  return VectorClock.from(pairs);
}

export function entryToWire(e: Entry): WireEntry {
  return {
    key: asBuffer(e.key),
    value: asBuffer(e.value),
    version: versionToWire(e.version),
    tombstone: e.tombstone,
    dependencies: vectorClockToWire(e.dependencies),
    originSequence: BigInt(e.originSequence ?? 0),
  };
}

/** An entry that must carry a version (Replicate). */
export function entryFromWire(w: WireEntry, what: string): Entry {
  if (w.key.byteLength === 0) throw invalidArgument('KEY_EMPTY', `${what} has an empty key`);
  if (w.tombstone && w.value.byteLength > 0) {
    throw invalidArgument('TOMBSTONE_WITH_VALUE', `${what} is a tombstone but carries a ${w.value.byteLength}-byte value`);
  }
  const entry: { -readonly [K in keyof Entry]: Entry[K] } = {
    key: w.key,
    value: w.value,
    version: versionFromWire(w.version, what),
    tombstone: w.tombstone,
  };
  if (w.dependencies !== undefined) entry.dependencies = vectorClockFromWire(w.dependencies, what);
  if (w.originSequence > 0n) {
    if (w.originSequence > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw invalidArgument('SEQUENCE_INVALID', `${what} has an out-of-range origin sequence ${w.originSequence}`);
    }
    entry.originSequence = Number(w.originSequence);
  }
  return entry;
}

/** An entry of a ReadResponse: no version means the replica holds nothing. */
export function optionalEntryFromWire(w: WireEntry, what: string): Entry | undefined {
  return w.version === undefined ? undefined : entryFromWire(w, what);
}

export function missingEntryToWire(key: Uint8Array): WireEntry {
  return { key: asBuffer(key), value: EMPTY, version: undefined, tombstone: false, dependencies: undefined, originSequence: 0n };
}

export function outcomeToWire(o: ApplyOutcome): WireApplyOutcome {
  switch (o) {
    case 'applied':
      return WireApplyOutcome.APPLY_OUTCOME_APPLIED;
    case 'superseded':
      return WireApplyOutcome.APPLY_OUTCOME_SUPERSEDED;
    case 'buffered':
      return WireApplyOutcome.APPLY_OUTCOME_BUFFERED;
  }
}

export function outcomeFromWire(o: WireApplyOutcome): ApplyOutcome {
  switch (o) {
    case WireApplyOutcome.APPLY_OUTCOME_APPLIED:
      return 'applied';
    case WireApplyOutcome.APPLY_OUTCOME_SUPERSEDED:
      return 'superseded';
    case WireApplyOutcome.APPLY_OUTCOME_BUFFERED:
      return 'buffered';
    default:
      throw invalidArgument('OUTCOME_INVALID', `unknown apply outcome ${o}`);
  }
}

/** A Buffer view of the same bytes (no copy), as the generated code expects for bytes fields. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
