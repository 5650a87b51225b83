/**
 * The causal checker's main pass: every write's vector clock, computed in a topological order of
 * happened-before, and every `ok` read checked against its session's causal context as it goes.
 * See the checker's header for the rules, and for how null reads are read leniently.
 */
import { NONE, READ_NULL, READ_RESOLVED, READ_UNCHECKED, ROLE_TOMBSTONE, ROLE_WRITE, covers } from './causal-history.js';
import type { CausalIndex } from './causal-history.js';

/** A read that returned something causally older than a write already in its session's past. */
export interface Finding {
  readonly read: number;
  /** Null reads: `NONE`. */
  readonly returned: number;
  /**
   * The writes to the key in the session's past that make it stale: for a value, those the
   * returned write happened before; for null, the maximal writes to the key in that past.
   */
  readonly newer: readonly number[];
}

/** A conflict edge: `winner` must come after `loser` in the order of conflicting writes. */
export interface Conflict {
  readonly loser: number;
  readonly winner: number;
  readonly witness: number;
}

/** What the pass learned. */
export interface Checked {
  /** Each write's clock, by operation index (covering the write itself). */
  readonly clocks: readonly (Int32Array | undefined)[];
  /** Null reads from which dependencies were inferred, and the tombstones they may have read. */
  readonly inferredFrom: ReadonlyMap<number, readonly number[]>;
  readonly findings: readonly Finding[];
  readonly conflicts: readonly Conflict[];
}

/**
 * Computes every write's vector clock in `order` (topological) and checks each `ok` read against
 * its session's causal context. With `collectConflicts`, also notes the order of concurrent
 * writes each read implies, for the causal+ convergence check.
 */
export function checkReads(index: CausalIndex, order: Int32Array, collectConflicts: boolean): Checked {
  const { ops, session, position, role, readStatus, source, writesByKey, tombstonesByKey } = index;
  const n = ops.length;
  // Null reads need, for a tombstone not yet reached in `order`, to know whether it follows the
  // read; a first pass without inference answers that.
  const needsBase = order.some((v) => readStatus[v] === READ_NULL && (tombstonesByKey.get(ops[v]!.key)?.length ?? 0) > 0);
  const base = needsBase ? baseClocks(index, order) : [];

  const contexts = index.sessionIds.map(() => new Int32Array(index.dimensions));
  const clocks: (Int32Array | undefined)[] = new Array<Int32Array | undefined>(n);
  const inferredFrom = new Map<number, number[]>();
  const findings: Finding[] = [];
  const conflicts: Conflict[] = [];
  const conflictSeen = new Set<number>();

  for (const v of order) {
    const s = session[v]!;
    const ctx = contexts[s]!;
    if (role[v] === ROLE_WRITE || role[v] === ROLE_TOMBSTONE) {
      clocks[v] = stamp(index, ctx, v);
      continue;
    }
    const key = ops[v]!.key;
    const keyWrites = writesByKey.get(key)!;
    if (readStatus[v] === READ_RESOLVED) {
      const w = source[v]!;
      const wClock = clocks[w]!;
      const newer: number[] = [];
      const concurrent: number[] = [];
      for (const x of keyWrites) {
        if (x === w || !covers(index, ctx, x)) continue;
        if (covers(index, clocks[x]!, w)) newer.push(x);
        else if (!covers(index, wClock, x)) concurrent.push(x);
      }
      if (newer.length > 0) {
        findings.push({ read: v, returned: w, newer });
      } else if (collectConflicts) {
        for (const x of concurrent) {
          const pair = x * n + w;
          if (conflictSeen.has(pair)) continue;
          conflictSeen.add(pair);
          conflicts.push({ loser: x, winner: w, witness: v });
        }
      }
      mergeInto(ctx, wClock);
    } else if (readStatus[v] === READ_NULL) {
      const seen = Array.from(keyWrites).filter((x) => covers(index, ctx, x));
      const candidates: number[] = [];
      let allReached = true;
      for (const d of tombstonesByKey.get(key)!) {
        // A tombstone first sent after the read returned cannot be what it read.
        if (ops[d]!.call > ops[v]!.return) continue;
        const dClock = clocks[d];
        if (dClock !== undefined) {
          // Reached already, so not after the read; stale if something seen follows it.
          if (!seen.some((x) => x !== d && covers(index, clocks[x]!, d))) candidates.push(d);
        } else if (base[d]![s]! < position[v]!) {
          // Not reached yet, so nothing seen follows it; it qualifies unless it follows the read.
          candidates.push(d);
          allReached = false;
        }
      }
      if (seen.length > 0 && candidates.length === 0) {
        findings.push({ read: v, returned: NONE, newer: maximal(index, clocks, seen) });
      } else if (seen.length > 0 && allReached) {
        // The initial state is ruled out, so the read saw one of the candidates: whatever they
        // all have in their past is in the session's past now.
        inferredFrom.set(v, candidates);
        mergeInto(ctx, meet(candidates.map((d) => clocks[d]!)));
      }
    }
    if (readStatus[v] !== READ_UNCHECKED) ctx[s] = position[v]!;
  }
  return { clocks, inferredFrom, findings, conflicts };
}

/** Every write's clock, with happened-before from session order and reads-from alone. */
function baseClocks(index: CausalIndex, order: Int32Array): (Int32Array | undefined)[] {
  const contexts = index.sessionIds.map(() => new Int32Array(index.dimensions));
  const clocks: (Int32Array | undefined)[] = new Array<Int32Array | undefined>(index.ops.length);
  for (const v of order) {
    const ctx = contexts[index.session[v]!]!;
    if (index.role[v] === ROLE_WRITE || index.role[v] === ROLE_TOMBSTONE) {
      clocks[v] = stamp(index, ctx, v);
    } else if (index.readStatus[v] !== READ_UNCHECKED) {
      if (index.readStatus[v] === READ_RESOLVED) mergeInto(ctx, clocks[index.source[v]!]!);
      ctx[index.session[v]!] = index.position[v]!;
    }
  }
  return clocks;
}

/**
 * The clock of write `v` issued in session context `ctx`: the context plus the write itself. An
 * `ok` write also enters its session's context; an `info` write does not.
 */
function stamp(index: CausalIndex, ctx: Int32Array, v: number): Int32Array {
  const clock = ctx.slice();
  const d = index.dotIndex[v]!;
  if (d !== NONE && clock[d]! < index.dotValue[v]!) clock[d] = index.dotValue[v]!;
  if (index.ops[v]!.outcome === 'ok') ctx[index.session[v]!] = index.position[v]!;
  return clock;
}

function mergeInto(target: Int32Array, other: Int32Array): void {
  for (let i = 0; i < target.length; i++) if (other[i]! > target[i]!) target[i] = other[i]!;
}

/** The entry-wise minimum: what every one of the clocks has seen. */
function meet(clocks: readonly Int32Array[]): Int32Array {
  const out = clocks[0]!.slice();
  for (const c of clocks.slice(1)) for (let i = 0; i < out.length; i++) if (c[i]! < out[i]!) out[i] = c[i]!;
  return out;
}

/** The writes of `writes` that no other of them happened before. */
export function maximal(index: CausalIndex, clocks: readonly (Int32Array | undefined)[], writes: readonly number[]): number[] {
  return writes.filter((x) => !writes.some((y) => y !== x && covers(index, clocks[y]!, x)));
}
