/**
 * Raft's safety properties over what the nodes' disks hold at the end of a simulated run (the
 * pure core's harness, raft/raft-simulation.ts, asserts them after every step; this checks the
 * node layer's persistence did not break them):
 * - log matching: two logs with an entry of the same index and term hold the same entry there,
 *   and the same entries before it;
 * - state machine safety: at every index both nodes know committed, they hold the same entry.
 */
import type { LogEntry, RaftRestoredState } from '../raft/types.js';

export function checkRaftAgreement(logs: ReadonlyMap<string, RaftRestoredState>): string | undefined {
  const nodes = [...logs.keys()].sort();
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i]!;
      const b = nodes[j]!;
      const problem = comparePair(logs.get(a)!, logs.get(b)!);
      if (problem !== undefined) return `${a} and ${b}: ${problem}`;
    }
  }
  return undefined;
}

function comparePair(a: RaftRestoredState, b: RaftRestoredState): string | undefined {
  const byIndex = new Map<number, LogEntry>(b.entries.map((e) => [e.index, e]));
  const committed = Math.min(a.hardState.commit, b.hardState.commit);
  // Walk a's entries from the highest down: once an entry matches, every earlier one must.
  let matchedAt: number | undefined;
  for (let k = a.entries.length - 1; k >= 0; k--) {
    const ea = a.entries[k]!;
    const eb = byIndex.get(ea.index);
    if (eb === undefined) continue;
    const same = ea.term === eb.term && ea.kind === eb.kind && Buffer.compare(Buffer.from(ea.data), Buffer.from(eb.data)) === 0;
    if (ea.term === eb.term && !same) return `index ${ea.index} term ${ea.term} holds different entries`;
    if (same) matchedAt ??= ea.index;
    if (!same && matchedAt !== undefined) return `they agree at index ${matchedAt} but differ at ${ea.index} before it (log matching)`;
    if (!same && ea.index <= committed) return `both know index ${ea.index} committed but hold different entries there (terms ${ea.term} and ${eb.term})`;
  }
  return undefined;
}
