/**
 * Happened-before chains: the evidence a causal violation carries. Given a write `from` in the
 * causal past of an operation `to`, walks back from `to` one step at a time (an earlier operation
 * of the same session, or the write a read returned) to `from`, using the vector clocks the
 * checker computed, and lists the steps oldest first.
 */
import { LINK_CONFLICT, LINK_READS_FROM, LINK_SESSION } from './causal-graph.js';
import type { Graph } from './causal-graph.js';
import { NONE, READ_RESOLVED, ROLE_READ, covers } from './causal-history.js';
import type { CausalIndex } from './causal-history.js';

/** One step of a chain: an operation and how it follows the previous step (0 for the first). */
export interface Hop {
  readonly op: number;
  readonly via: number;
  /** For a conflict step, the read that implies it; `NONE` otherwise. */
  readonly witness: number;
}

/** What the checker knows once its clocks are computed. */
export interface ChainContext {
  readonly index: CausalIndex;
  /** Each write's clock (covering the write itself). */
  readonly clocks: readonly (Int32Array | undefined)[];
  /**
   * For a null read from which the checker inferred dependencies: the tombstones it may have
   * read, all of whose clocks cover what was inferred.
   */
  readonly inferredFrom: ReadonlyMap<number, readonly number[]>;
}

/**
 * The chain from write `from` to operation `to`, whose causal past holds `from`: when `to` is a
 * read, the past before it returned. Both ends are included.
 */
export function chainBetween(ctx: ChainContext, from: number, to: number): Hop[] {
  // Walking back, each hop records how its operation follows the next one found.
  const reversed: Hop[] = [];
  let at = to;
  // A read's own source counts only once the walk has moved past where it started: the chain
  // ends at what the read had seen before it returned.
  let sourceCounts = false;
  while (at !== from) {
    const source = sourceCounts ? sourceCovering(ctx, at, from) : NONE;
    if (source !== NONE) {
      reversed.push({ op: at, via: LINK_READS_FROM, witness: NONE });
      at = source;
      sourceCounts = false;
      continue;
    }
    reversed.push({ op: at, via: LINK_SESSION, witness: NONE });
    at = firstCovering(ctx, at, from);
    sourceCounts = true;
  }
  reversed.push({ op: from, via: 0, witness: NONE });
  return reversed.reverse();
}

/** Concatenates chains that share their meeting operation. */
export function joinChains(...chains: readonly (readonly Hop[])[]): Hop[] {
  const out: Hop[] = [];
  for (const chain of chains) out.push(...(out.length === 0 ? chain : chain.slice(1)));
  return out;
}

/**
 * The steps of a path of graph edges that starts at `first`; consecutive session-order steps in
 * one session are merged, since the operations between say nothing.
 */
export function chainOfEdges(g: Graph, first: number, edges: readonly number[]): Hop[] {
  const hops: Hop[] = [{ op: first, via: 0, witness: NONE }];
  for (const e of edges) {
    const hop: Hop = { op: g.to[e]!, via: g.link[e]!, witness: g.link[e] === LINK_CONFLICT ? g.witness[e]! : NONE };
    const last = hops[hops.length - 1]!;
    if (hop.via === LINK_SESSION && last.via === LINK_SESSION && hops.length > 1) {
      hops[hops.length - 1] = hop;
    } else {
      hops.push(hop);
    }
  }
  return hops;
}

/**
 * The write that read `r` returned (or, for a null read with inferred dependencies, one of the
 * tombstones it may have read) when that write's past holds `target`; `NONE` otherwise.
 */
function sourceCovering(ctx: ChainContext, r: number, target: number): number {
  const { index, clocks } = ctx;
  if (index.role[r] !== ROLE_READ) return NONE;
  if (index.readStatus[r] === READ_RESOLVED) {
    const s = index.source[r]!;
    return s === target || covers(index, clocks[s]!, target) ? s : NONE;
  }
  const candidates = ctx.inferredFrom.get(r);
  if (candidates !== undefined && candidates.every((c) => c === target || covers(index, clocks[c]!, target))) {
    return candidates.includes(target) ? target : candidates[0]!;
  }
  return NONE;
}

/**
 * The first operation of `op`'s session, before `op`, after which the session's causal past
 * holds `target`: the session's own ok write `target`, or a read that brought it in.
 */
function firstCovering(ctx: ChainContext, op: number, target: number): number {
  const { index } = ctx;
  const list = index.sessionOps[index.session[op]!]!;
  const end = index.position[op]! - 1;
  for (let k = 0; k < end; k++) {
    const q = list[k]!;
    if (index.happened[q] === 0 || index.ops[q]!.outcome !== 'ok') continue;
    if (q === target || sourceCovering(ctx, q, target) !== NONE) return q;
  }
  throw new Error(`internal error: operation ${index.ops[op]!.id} has no session step towards operation ${index.ops[target]!.id}`);
}
