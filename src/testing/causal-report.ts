/**
 * Turns the causal checker's findings into violations: the guarantee broken, the evidence as a
 * happened-before chain, and the whole in words.
 */
import { chainBetween, joinChains } from './causal-chain.js';
import type { ChainContext, Hop } from './causal-chain.js';
import { maximal } from './causal-clocks.js';
import type { Finding } from './causal-clocks.js';
import { NONE, READ_RESOLVED, ROLE_READ, covers } from './causal-history.js';
import type { CausalIndex } from './causal-history.js';
import { MAX_TOMBSTONES_LISTED, describeCausalOperation, formatChain, toChainSteps } from './causal-violation.js';
import type { CausalViolation, CausalViolationKind } from './causal-violation.js';
import { formatValue } from './history.js';

/** A violation and the input index it sorts by. */
export interface Located {
  readonly at: number;
  readonly violation: CausalViolation;
}

/**
 * Turns a finding into a violation, named after the most specific guarantee it breaks: the
 * session's own write (read-your-writes), a write it had read from the key (monotonic reads), or
 * anything else in its past (causal visibility).
 */
export function staleRead(ctx: ChainContext, finding: Finding): Located {
  const { index } = ctx;
  const r = finding.read;
  const read = index.ops[r]!;
  const list = index.sessionOps[index.session[r]!]!;
  const candidates = new Set(finding.newer);
  let kind: CausalViolationKind = 'causal-visibility';
  let newer = NONE;
  for (let k = index.position[r]! - 2; k >= 0 && newer === NONE; k--) {
    const q = list[k]!;
    if (candidates.has(q) && index.ops[q]!.outcome === 'ok') {
      kind = 'read-your-writes';
      newer = q;
    }
  }
  for (let k = index.position[r]! - 2; k >= 0 && newer === NONE; k--) {
    const q = list[k]!;
    if (index.role[q] !== ROLE_READ || index.ops[q]!.key !== read.key) continue;
    if (index.readStatus[q] === READ_RESOLVED && candidates.has(index.source[q]!)) {
      kind = 'monotonic-reads';
      newer = index.source[q]!;
      continue;
    }
    // A null read that can only have read tombstones at or past a newer write counts as having
    // read that write.
    const inferred = ctx.inferredFrom.get(q);
    if (inferred === undefined) continue;
    const x = finding.newer.find((w) => inferred.every((c) => c === w || covers(index, ctx.clocks[c]!, w)));
    if (x !== undefined) {
      kind = 'monotonic-reads';
      newer = x;
    }
  }
  if (newer === NONE) {
    const top = maximal(index, ctx.clocks, finding.newer);
    newer = top[top.length - 1]!;
  }

  const hops: Hop[] =
    finding.returned === NONE
      ? chainBetween(ctx, newer, r)
      : joinChains(chainBetween(ctx, finding.returned, newer), chainBetween(ctx, newer, r));
  const chain = toChainSteps(index.ops, hops);
  const newerOp = index.ops[newer]!;
  const how =
    kind === 'read-your-writes'
      ? 'which the session had written itself'
      : kind === 'monotonic-reads'
        ? 'which the session had already read'
        : "which was already in the session's causal past";
  const rule =
    kind === 'read-your-writes'
      ? 'A session must see its own writes, or something newer.'
      : kind === 'monotonic-reads'
        ? 'A session must not go back to older state.'
        : "Everything in a session's causal past must stay visible to it (monotonic writes and writes-follow-reads are cases of this).";
  const lines: string[] = [];
  if (finding.returned === NONE) {
    lines.push(
      `${kind}: ${describeCausalOperation(read)}, but ${describeCausalOperation(newerOp)}, ${how}, is newer than every ` +
        `state that reads as null: the initial state precedes every write, and ${tombstoneAccount(ctx, r, finding.newer)} ${rule}`,
    );
  } else {
    lines.push(
      `${kind}: ${describeCausalOperation(read)}, older than ${describeCausalOperation(newerOp)}, ${how}: the write of ` +
        `${formatValue(read.value)} happened before it. ${rule}`,
    );
  }
  lines.push('Happened-before chain:', ...formatChain(chain));
  const base = { kind, session: read.process, key: read.key, read, newer: newerOp, chain, message: lines.join('\n') };
  return { at: r, violation: finding.returned === NONE ? base : { ...base, returned: index.ops[finding.returned]! } };
}

/** Why no tombstone of the read's key explains a null read, for the message. */
function tombstoneAccount(ctx: ChainContext, r: number, newest: readonly number[]): string {
  const { index, clocks } = ctx;
  const read = index.ops[r]!;
  const key = JSON.stringify(read.key);
  const tombstones = Array.from(index.tombstonesByKey.get(read.key) ?? []);
  if (tombstones.length === 0) return `no operation deleted ${key}.`;
  const reasons = tombstones.slice(0, MAX_TOMBSTONES_LISTED).map((d) => {
    const tombstone = describeCausalOperation(index.ops[d]!);
    if (index.ops[d]!.call > read.return) return `${tombstone} was invoked after the read returned`;
    const blocker = newest.find((m) => covers(index, clocks[m]!, d));
    // Otherwise it was ruled out because it causally follows the read.
    return blocker === undefined ? `${tombstone} causally follows this read` : `${tombstone} happened before ${describeCausalOperation(index.ops[blocker]!)}`;
  });
  const more = tombstones.length - reasons.length;
  return (
    `no delete of ${key} is as new as what the session had seen: ${reasons.join('; ')}` +
    (more > 0 ? `; and ${more} more, likewise.` : '.')
  );
}


export function phantomRead(index: CausalIndex, r: number): Located {
  const read = index.ops[r]!;
  return {
    at: r,
    violation: {
      kind: 'phantom-read',
      session: read.process,
      key: read.key,
      read,
      chain: [],
      message: `phantom-read: ${describeCausalOperation(read)}, a value no operation wrote to ${JSON.stringify(read.key)}.`,
    },
  };
}

export function abortedRead(index: CausalIndex, r: number): Located {
  const read = index.ops[r]!;
  const write = index.ops[index.source[r]!]!;
  return {
    at: r,
    violation: {
      kind: 'aborted-read',
      session: read.process,
      key: read.key,
      read,
      returned: write,
      chain: [],
      message: `aborted-read: ${describeCausalOperation(read)}, a value only ${describeCausalOperation(write)} wrote; a failed write never took effect.`,
    },
  };
}

export function futureRead(index: CausalIndex, r: number): Located {
  const read = index.ops[r]!;
  const write = index.ops[index.source[r]!]!;
  return {
    at: r,
    violation: {
      kind: 'future-read',
      session: read.process,
      key: read.key,
      read,
      returned: write,
      chain: [],
      message: `future-read: ${describeCausalOperation(read)}, a value only ${describeCausalOperation(write)} wrote, and that write was invoked after the read returned.`,
    },
  };
}

/** The violations in words: a summary line, then each violation's message, up to `limit` of them. */
export function explain(violations: readonly CausalViolation[], readsChecked: number, limit: number): string {
  const counts = new Map<CausalViolationKind, number>();
  for (const v of violations) counts.set(v.kind, (counts.get(v.kind) ?? 0) + 1);
  const summary = [...counts].map(([kind, count]) => `${count} ${kind}`).join(', ');
  const lines = [`The history is not causally consistent: ${summary} (${readsChecked} reads checked).`];
  for (const v of violations.slice(0, limit)) lines.push('', v.message);
  if (violations.length > limit) lines.push('', `… ${violations.length - limit} more violations`);
  return lines.join('\n');
}
