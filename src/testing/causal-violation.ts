/**
 * What the causal checker reports, and how it puts each finding into words.
 */
import { LINK_CONFLICT, LINK_READS_FROM, LINK_SESSION } from './causal-graph.js';
import type { Hop } from './causal-chain.js';
import { NONE } from './causal-history.js';
import type { CausalOperation } from './causal-history.js';
import { formatValue } from './history.js';
import type { ProcessId } from './history.js';

/**
 * - `read-your-writes`: a read returned something causally older than a write its own session
 *   had made to that key (or null, when no tombstone can explain it).
 * - `monotonic-reads`: a read returned something causally older than a write the session had
 *   already read from that key.
 * - `causal-visibility`: a read returned something causally older than a write in the session's
 *   causal past that reached it some other way: through another key (monotonic writes, writes
 *   follow reads, or a longer chain).
 * - `convergence` (causal+ only): reads saw concurrent writes in orders that no single order of
 *   conflicting writes explains, so replicas resolved the same conflict differently.
 * - `phantom-read`: a read returned a value no operation wrote to its key.
 * - `aborted-read`: a read returned a value only a failed write wrote.
 * - `future-read`: a read returned a value whose write was invoked only after the read returned.
 * - `causal-cycle`: a read returned a value whose write causally follows the read itself.
 */
export type CausalViolationKind =
  | 'read-your-writes'
  | 'monotonic-reads'
  | 'causal-visibility'
  | 'convergence'
  | 'phantom-read'
  | 'aborted-read'
  | 'future-read'
  | 'causal-cycle';

/** How a chain step follows the step before it. */
export type ChainLink = 'session-order' | 'reads-from' | 'conflict-order';

/** One step of a happened-before chain (or, for `convergence`, of a cycle of conflict orders). */
export interface ChainStep {
  readonly operation: CausalOperation;
  /**
   * How it follows the previous step: a later operation of the same session; a read of what the
   * previous step wrote; or (`conflict-order`) a write that must win over the previous one, a
   * concurrent write to the same key, because `witness` returned it with the previous one in its
   * causal past. Absent on the first step.
   */
  readonly via?: ChainLink;
  readonly witness?: CausalOperation;
}

export interface CausalViolation {
  readonly kind: CausalViolationKind;
  /** The session of the read at fault. */
  readonly session: ProcessId;
  readonly key: string;
  /** The read at fault (for `convergence`, one read that saw a conflict resolved one way). */
  readonly read: CausalOperation;
  /**
   * The write whose value the read returned, when its value names one: not for null, which may be
   * the initial state or any tombstone, nor for a phantom value.
   */
  readonly returned?: CausalOperation;
  /**
   * For the three visibility kinds: a write to the key that was already in the session's causal
   * past, and that the returned write (or every state that reads as null) happened before.
   */
  readonly newer?: CausalOperation;
  /**
   * The evidence, oldest first: for the visibility kinds, returned → … → newer → … → read (from
   * newer when the read returned null); for `causal-cycle` and `convergence`, the cycle, ending
   * where it started. Empty for phantom, aborted and future reads.
   */
  readonly chain: readonly ChainStep[];
  /** All of the above in words. */
  readonly message: string;
}

/** The most chain steps a message lists; longer chains show their two ends. */
const MAX_CHAIN_LISTED = 16;

/** The most tombstones a message about a null read accounts for one by one. */
export const MAX_TOMBSTONES_LISTED = 3;

/** `session 2`, `session "alice"`. */
export function sessionName(p: ProcessId): string {
  return `session ${formatValue(p)}`;
}

/**
 * `read "x" by session 3 at [8, 9] returned 2 (via node n2, line 12)`, `write 1 to "x" by
 * session 1 at [0, ∞) (outcome unknown)`, `delete "x" by session 2 at [4, 5]`.
 */
export function describeCausalOperation(op: CausalOperation): string {
  const who = `by ${sessionName(op.process)}`;
  const when = op.return === Infinity ? `at [${op.call}, ∞)` : `at [${op.call}, ${op.return}]`;
  const key = JSON.stringify(op.key);
  const outcome = op.outcome === 'info' ? ' (outcome unknown)' : op.outcome === 'fail' ? ' (failed)' : '';
  const notes = [
    ...(op.node === undefined ? [] : [`via node ${formatValue(op.node)}`]),
    ...(op.line === undefined ? [] : [`line ${op.line}`]),
  ];
  const suffix = notes.length === 0 ? '' : ` (${notes.join(', ')})`;
  switch (op.f) {
    case 'read':
      return `read ${key} ${who} ${when}${op.outcome === 'ok' ? ` returned ${formatValue(op.value)}` : outcome}${suffix}`;
    case 'write':
      return `write ${formatValue(op.value)} to ${key} ${who} ${when}${outcome}${suffix}`;
    case 'delete':
      return `delete ${key} ${who} ${when}${outcome}${suffix}`;
    case 'cas':
      return `cas ${key} ${who} ${when}${outcome}${suffix}`;
  }
}

/** Turns the checker's hops into public chain steps. */
export function toChainSteps(ops: readonly CausalOperation[], hops: readonly Hop[]): ChainStep[] {
  return hops.map((h) => {
    const operation = ops[h.op]!;
    if (h.via === 0) return { operation };
    const via: ChainLink = h.via === LINK_SESSION ? 'session-order' : h.via === LINK_READS_FROM ? 'reads-from' : 'conflict-order';
    return h.via === LINK_CONFLICT && h.witness !== NONE ? { operation, via, witness: ops[h.witness]! } : { operation, via };
  });
}

/** A chain as indented lines, one step each, saying how each step follows the one before. */
export function formatChain(chain: readonly ChainStep[]): string[] {
  const line = (step: ChainStep): string => {
    const what = describeCausalOperation(step.operation);
    switch (step.via) {
      case undefined:
        return `    ${what}`;
      case 'session-order':
        return `  → ${what} [later in ${sessionName(step.operation.process)}]`;
      case 'reads-from':
        return `  → ${what} [reads from the step above]`;
      case 'conflict-order':
        return `  → ${what} [must win over the step above, since ${describeCausalOperation(step.witness!)} with the step above in its causal past]`;
    }
  };
  if (chain.length <= MAX_CHAIN_LISTED) return chain.map(line);
  const head = Math.ceil((MAX_CHAIN_LISTED - 1) / 2);
  const tail = MAX_CHAIN_LISTED - 1 - head;
  return [...chain.slice(0, head).map(line), `    … ${chain.length - head - tail} more steps`, ...chain.slice(-tail).map(line)];
}
