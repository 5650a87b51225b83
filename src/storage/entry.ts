import { compareHlc, formatHlc, type HlcTimestamp, type VectorClock } from '../clock/index.js';

/**
 * The tag of one write: (HLC, node id), totally ordered. Of two versions of a key the larger HLC
 * wins; equal HLCs fall back to the node id, so two coordinators can never mint equal versions.
 */
export interface Version {
  readonly hlc: HlcTimestamp;
  readonly nodeId: string;
}

/** Negative when a < b, zero when equal, positive when a > b. */
export function compareVersion(a: Version, b: Version): number {
  const byHlc = compareHlc(a.hlc, b.hlc);
  if (byHlc !== 0) return byHlc;
  return a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0;
}

/** `1732600000000.3@n1`, for logs and error messages. */
export function formatVersion(v: Version): string {
  return `${formatHlc(v.hlc)}@${v.nodeId}`;
}

/** One versioned key as a replica stores it. Immutable once created. */
export interface Entry {
  readonly key: Uint8Array;
  /** Empty for a tombstone. */
  readonly value: Uint8Array;
  readonly version: Version;
  /** True when the entry records a delete. */
  readonly tombstone: boolean;
  /** Causal keyspaces: what the write depends on. Absent elsewhere. */
  readonly dependencies?: VectorClock;
  /** Causal keyspaces: the write's position among its origin's writes, from 1. Absent elsewhere. */
  readonly originSequence?: number;
}

/** What a replica did with one entry offered to it. */
export type ApplyOutcome = 'applied' | 'superseded' | 'buffered';
