/**
 * A causal consistency checker for key-value histories recorded per session, beside the
 * linearizability checker and over the same history format (`process` is the session).
 *
 * Happened-before over operations is session order plus reads-from (a read follows the write
 * whose value it returned), transitively. A history is causally consistent when no read returns
 * a write that happened before another write to the same key already in the reading session's
 * causal past, no read returns a value from thin air, and happened-before has no cycle: for
 * histories with unique values per key these are the "WriteCORead", "WriteCOInitRead",
 * "ThinAirRead" and "CyclicCO" patterns that characterise causal consistency in Bouajjani,
 * Enea, Guerraoui and Hamza, "On Verifying Causal Consistency" (POPL 2017). Read-your-writes, monotonic reads,
 * monotonic writes and writes-follow-reads are all cases of that one rule; a violation is named
 * after the most specific one that applies. Causal+ (COPS) adds convergent conflict handling:
 * one order of concurrent writes, extending happened-before, that every read agrees with (a read
 * returns the last write to its key in its causal past, in that order); the checker looks for a
 * cycle in happened-before plus the orders reads imply ("CyclicCF" in the paper).
 *
 * Each write gets a vector clock over sessions — its session's causal context when it was
 * issued — so "w happened before x" is one comparison. Only `ok` reads are checked. A `fail`
 * write never happened, so a read that returns its value is a violation. An `info` write may or
 * may not have happened: a read may return it, and it then depends on what its session had seen
 * when it was issued, but its session's later operations do not depend on it (the session never
 * learned it took effect). Time matters in one way only: a read cannot return a write (or a
 * tombstone) first invoked after the read returned, which no store can do.
 *
 * A read of null read the initial state or some tombstone (a delete, or a write of null) of its
 * key, and the history does not say which. The checker takes the most lenient reading: the read
 * is a violation only if none of them could be what it read, and the session's causal past grows
 * only by what every possible source has in its past. So a violation reported is certain, and a
 * stale null read may go unreported when some other tombstone could explain it.
 */
import { chainOfEdges } from './causal-chain.js';
import type { ChainContext } from './causal-chain.js';
import { checkReads } from './causal-clocks.js';
import type { Conflict } from './causal-clocks.js';
import { GraphBuilder, LINK_CONFLICT, LINK_READS_FROM, LINK_SESSION, pathWithin, stronglyConnected, topologicalOrder } from './causal-graph.js';
import type { Graph } from './causal-graph.js';
import {
  NONE,
  READ_ABORTED,
  READ_CYCLE,
  READ_FUTURE,
  READ_PHANTOM,
  READ_RESOLVED,
  ROLE_READ,
  indexCausalHistory,
} from './causal-history.js';
import type { CausalIndex, CausalOperation } from './causal-history.js';
import { abortedRead, explain, futureRead, phantomRead, staleRead } from './causal-report.js';
import type { Located } from './causal-report.js';
import { describeCausalOperation, formatChain, sessionName, toChainSteps } from './causal-violation.js';
import type { CausalViolation } from './causal-violation.js';

/**
 * `causal+` (the default): causal consistency with convergent conflict handling, what the causal
 * policy promises. `causal`: causal consistency alone, where sessions may see concurrent writes
 * in different orders.
 */
export type CausalModel = 'causal' | 'causal+';

export interface CausalCheckOptions {
  /** What to check for; default `causal+`. */
  readonly model?: CausalModel;
}

export interface CausalStats {
  readonly operations: number;
  readonly sessions: number;
  readonly keys: number;
  /** Writes and deletes that happened or may have (`ok` or `info`). */
  readonly writes: number;
  /** `ok` reads: the ones checked. */
  readonly reads: number;
  /** Entries per vector clock: one per session, plus one per observable `info` write. */
  readonly clockEntries: number;
}

export interface CausalCheckResult {
  readonly valid: boolean;
  /** In order of the read at fault (by its place in the input). */
  readonly violations: readonly CausalViolation[];
  /** The violations in words, when there are any. */
  readonly explanation?: string;
  readonly stats: CausalStats;
}

/** The most violations the explanation spells out; `violations` holds them all. */
export const MAX_VIOLATIONS_EXPLAINED = 20;

/**
 * The most vector-clock entries (writes × entries per clock) each of the checker's two passes may
 * hold: 256 MiB each. A history that needs more is refused rather than allowed to exhaust the
 * process.
 */
const MAX_CLOCK_ENTRIES = 64 * 2 ** 20;

/** Checks that `operations` (of any number of sessions and keys) are causally consistent. */
export function checkCausalConsistency(operations: readonly CausalOperation[], options: CausalCheckOptions = {}): CausalCheckResult {
  const model = options.model ?? 'causal+';
  const index = indexCausalHistory(operations);
  const n = operations.length;
  const writes = countWhere(n, (v) => index.happened[v] === 1 && index.role[v] !== ROLE_READ);
  const reads = countWhere(n, (v) => index.happened[v] === 1 && index.role[v] === ROLE_READ);
  if (writes * index.dimensions > MAX_CLOCK_ENTRIES) {
    throw new RangeError(
      `the causal checker would need ${writes} clocks of ${index.dimensions} entries, more than its limit of ${MAX_CLOCK_ENTRIES} entries; ` +
        'check a shorter history, or one with fewer sessions or fewer info writes that reads observed',
    );
  }
  const stats: CausalStats = {
    operations: n,
    sessions: index.sessionIds.length,
    keys: index.keyCount,
    writes,
    reads,
    clockEntries: index.dimensions,
  };

  const violations: Located[] = [];
  for (let v = 0; v < n; v++) {
    if (index.readStatus[v] === READ_PHANTOM) violations.push(phantomRead(index, v));
    if (index.readStatus[v] === READ_ABORTED) violations.push(abortedRead(index, v));
    if (index.readStatus[v] === READ_FUTURE) violations.push(futureRead(index, v));
  }
  const happenedBefore = breakCycles(index, violations);
  const order = topologicalOrder(happenedBefore, index.happened, (v) => operations[v]!.call);
  const checked = checkReads(index, order, model === 'causal+');
  const ctx: ChainContext = { index, clocks: checked.clocks, inferredFrom: checked.inferredFrom };
  for (const finding of checked.findings) violations.push(staleRead(ctx, finding));
  if (model === 'causal+' && checked.conflicts.length > 0) findConflictCycles(index, happenedBefore, checked.conflicts, violations);

  violations.sort((a, b) => a.at - b.at);
  const list = violations.map((v) => v.violation);
  if (list.length === 0) return { valid: true, violations: list, stats };
  return { valid: false, violations: list, explanation: explain(list, stats.reads, MAX_VIOLATIONS_EXPLAINED), stats };
}

/**
 * Builds happened-before's generating edges: each session's `ok` operations in a chain, an `info`
 * write after its session's previous `ok` operation (but before nothing), and a write before each
 * read that returned it. A cycle means some read returned a value whose write follows the read;
 * each such cycle is reported, and its reads-from edges are dropped, so that what remains is
 * acyclic and the rest of the history can still be checked.
 */
function breakCycles(index: CausalIndex, violations: Located[]): Graph {
  const build = (): Graph => {
    const b = new GraphBuilder();
    for (const list of index.sessionOps) {
      let lastOk = NONE;
      for (const v of list) {
        if (index.happened[v] === 0) continue;
        if (lastOk !== NONE) b.add(lastOk, v, LINK_SESSION);
        if (index.ops[v]!.outcome === 'ok') lastOk = v;
      }
    }
    for (let v = 0; v < index.ops.length; v++) {
      if (index.readStatus[v] === READ_RESOLVED) b.add(index.source[v]!, v, LINK_READS_FROM);
    }
    return b.build(index.ops.length);
  };
  const g = build();
  const { component, sizes } = stronglyConnected(g);
  if (sizes.every((size) => size === 1)) return g;
  const reported = new Set<number>();
  for (let r = 0; r < index.ops.length; r++) {
    if (index.readStatus[r] !== READ_RESOLVED) continue;
    const w = index.source[r]!;
    const c = component[r]!;
    if (component[w] !== c) continue;
    if (!reported.has(c)) {
      reported.add(c);
      // The cycle: the write, the read of it, and back to the write.
      const hops = chainOfEdges(g, w, [edgeSlot(g, w, r), ...pathWithin(g, component, c, r, w)]);
      const chain = toChainSteps(index.ops, hops);
      const read = index.ops[r]!;
      violations.push({
        at: r,
        violation: {
          kind: 'causal-cycle',
          session: read.process,
          key: read.key,
          read,
          returned: index.ops[w]!,
          chain,
          message: [
            `causal-cycle: ${describeCausalOperation(read)}, a value whose write causally follows the read itself, so ` +
              'happened-before would be a cycle:',
            ...formatChain(chain),
          ].join('\n'),
        },
      });
    }
    index.readStatus[r] = READ_CYCLE;
  }
  return build();
}

/** The slot of the edge from `from` to `to`, which must exist. */
function edgeSlot(g: Graph, from: number, to: number): number {
  for (let e = g.start[from]!; e < g.start[from + 1]!; e++) if (g.to[e] === to) return e;
  throw new Error('internal error: missing edge');
}


/**
 * Causal+ needs one order of conflicting writes that extends happened-before and that every read
 * agrees with. Each read that returned a write with a concurrent write to its key in its causal
 * past says the returned one comes later; a cycle through happened-before and those orders means
 * there is no such order. One violation per strongly connected component.
 */
function findConflictCycles(index: CausalIndex, happenedBefore: Graph, conflicts: readonly Conflict[], violations: Located[]): void {
  const b = new GraphBuilder();
  const g0 = happenedBefore;
  for (let v = 0; v < g0.nodes; v++) for (let e = g0.start[v]!; e < g0.start[v + 1]!; e++) b.add(v, g0.to[e]!, g0.link[e]!);
  for (const c of conflicts) b.add(c.loser, c.winner, LINK_CONFLICT, c.witness);
  const g = b.build(index.ops.length);
  const { component, sizes } = stronglyConnected(g);
  const reported = new Set<number>();
  for (const c of conflicts) {
    const comp = component[c.loser]!;
    if (component[c.winner] !== comp || sizes[comp]! === 1 || reported.has(comp)) continue;
    reported.add(comp);
    const conflictEdge = conflictSlot(g, c);
    const hops = chainOfEdges(g, c.loser, [conflictEdge, ...pathWithin(g, component, comp, c.winner, c.loser)]);
    const chain = toChainSteps(index.ops, hops);
    const keys = [...new Set(hops.filter((h) => h.via === LINK_CONFLICT).map((h) => JSON.stringify(index.ops[h.op]!.key)))];
    const read = index.ops[c.witness]!;
    violations.push({
      at: c.witness,
      violation: {
        kind: 'convergence',
        session: read.process,
        key: read.key,
        read,
        returned: index.ops[c.winner]!,
        newer: index.ops[c.loser]!,
        chain,
        message: [
          `convergence: reads saw concurrent writes to ${keys.join(', ')} in orders that no single resolution of conflicts ` +
            `explains. Causal+ needs one order of concurrent writes, consistent with happened-before, that every read ` +
            `agrees with (${sessionName(read.process)} and others); these steps form a cycle:`,
          ...formatChain(chain),
        ].join('\n'),
      },
    });
  }
}

function conflictSlot(g: Graph, c: Conflict): number {
  for (let e = g.start[c.loser]!; e < g.start[c.loser + 1]!; e++) {
    if (g.to[e] === c.winner && g.link[e] === LINK_CONFLICT) return e;
  }
  throw new Error('internal error: missing conflict edge');
}


function countWhere(n: number, test: (v: number) => boolean): number {
  let count = 0;
  for (let v = 0; v < n; v++) if (test(v)) count++;
  return count;
}
