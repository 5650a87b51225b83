/**
 * The short piece of a failing seed's history that a campaign prints with the violation, so that
 * a reader starts from a few dozen operations instead of the run's hundreds.
 *
 * Linearizability: the failing key's history *as it stood at time T*, for the earliest T at which
 * the checker already rejects it. That history holds the operations invoked by T; an operation
 * still running at T counts as running (outcome unknown, as the checker reads an `info`), and a
 * read still running is left out, as the checker leaves out every read without a result. A
 * history that is linearizable stays so at every earlier moment (linearizability is
 * prefix-closed), so the rejection at T is a real violation, the earliest T is found by binary
 * search, and the history at any earlier completion passes. The search still starts from the empty
 * register every run starts from, so the window printed is the last operations of that history
 * (by invocation), not a history that fails on its own: cutting off the front would change what
 * the register held, and the checker cannot start from an unknown value.
 *
 * Causality: the operations of the sessions and keys that the first violation names, up to the
 * last operation it names. Other kinds (convergence, lost writes, version order) are about the
 * state after the run: the last operations of the key named, or of the whole history.
 */
import { checkCausalConsistency } from '../testing/causal-checker.js';
import type { CausalOperation } from '../testing/causal-history.js';
import type { Operation } from '../testing/history.js';
import { checkLinearizability } from '../testing/linearizability.js';
import type { SeedViolation } from './seed-check.js';

/** How many operations a window shows, besides those the violation names. */
export const WINDOW_SIZE = 30;

/** Per check while the earliest failing moment is searched; an `unknown` counts as a pass. */
const CHECK_TIMEOUT_MS = 5_000;

export interface HistoryWindow {
  /** The window's operations, in invocation order. */
  readonly operations: readonly Operation[];
  /** The ids of the window's operations that the violation names (the ones to look at first). */
  readonly named: readonly number[];
  /** What the window is, in words. */
  readonly description: string;
}

/** The operations of {@link historyWindow}: the shortest history window that shows the violation. */
export function shortestWindow(violation: SeedViolation): Operation[] {
  return historyWindow(violation).operations.slice();
}

/** The window of `violation`'s history to print with it, and what it is. */
export function historyWindow(violation: SeedViolation, size: number = WINDOW_SIZE): HistoryWindow {
  if (violation.operations.length === 0) {
    return { operations: [], named: [], description: 'no history: the run stopped before there was one to check' };
  }
  if (violation.kind === 'linearizability' && violation.key !== undefined) {
    const window = linearizabilityWindow(violation.operations, violation.key, size);
    if (window !== undefined) return window;
  }
  if (violation.kind === 'causality') {
    const window = causalityWindow(violation.operations as readonly CausalOperation[], size);
    if (window !== undefined) return window;
  }
  if (violation.kind === 'version-order' || violation.kind === 'lost-write') {
    const window = namedWritesWindow(violation, size);
    if (window !== undefined) return window;
  }
  return lastOperations(violation, size);
}

/** By call time, then by id: the order the operations were invoked in. */
function byInvocation(ops: readonly Operation[]): Operation[] {
  return ops.slice().sort((a, b) => a.call - b.call || a.id - b.id);
}

/** Whether the linearizability checker looks at `op` (it leaves out failed operations and reads without a result). */
function checked(op: Operation): boolean {
  return op.outcome !== 'fail' && !(op.f === 'read' && op.outcome !== 'ok');
}

/** The history of `ops` as it stood at time `t`: invoked by then, and still running if completed after. */
function asOf(ops: readonly Operation[], t: number): Operation[] {
  const out: Operation[] = [];
  for (const op of ops) {
    if (op.call > t) continue;
    if (op.return <= t) out.push(op);
    else out.push({ ...op, return: Infinity, outcome: 'info', value: op.f === 'read' ? null : op.value });
  }
  return out;
}

function rejects(ops: readonly Operation[]): boolean {
  return checkLinearizability(ops, { timeoutMs: CHECK_TIMEOUT_MS }).verdict === 'not-linearizable';
}

function linearizabilityWindow(all: readonly Operation[], key: string, size: number): HistoryWindow | undefined {
  const ops = byInvocation(all.filter((op) => op.key === key));
  if (!rejects(ops)) return undefined; // e.g. the checker's verdict was `unknown`: no window to cut
  // The moments the history gains a constraint: each completion. At the last one every completed
  // operation has completed, so that history is the whole key's.
  const moments = [...new Set(ops.filter((op) => op.return !== Infinity).map((op) => op.return))].sort((a, b) => a - b);
  let lo = 0;
  let hi = moments.length - 1;
  if (hi < 0 || !rejects(asOf(ops, moments[hi]!))) return undefined;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rejects(asOf(ops, moments[mid]!))) hi = mid;
    else lo = mid + 1;
  }
  const t = moments[hi]!;
  // What the checker looks at: failed operations had no effect and reads without a result say
  // nothing, so it leaves both out, and so does the window.
  const prefix = byInvocation(asOf(ops, t)).filter(checked);
  const result = checkLinearizability(prefix, { timeoutMs: CHECK_TIMEOUT_MS });
  const violation = result.keys.find((k) => k.violation !== undefined)?.violation;
  // The operations whose completion at t made the history fail, and those the checker names.
  const completing = prefix.filter((op) => op.return === t).map((op) => op.id);
  const culprit = violation?.culprit?.operation.id;
  const stuck = violation?.stuck.map((s) => s.operation.id) ?? [];
  const indexOf = new Map(prefix.map((op, i) => [op.id, i]));
  let start = Math.max(0, prefix.length - size);
  for (const id of [...completing, ...(culprit === undefined ? [] : [culprit])]) start = Math.min(start, indexOf.get(id)!);
  const window = prefix.slice(start);
  const inWindow = new Set(window.map((op) => op.id));
  const named = [...new Set([...completing, ...(culprit === undefined ? [] : [culprit]), ...stuck])].filter((id) => inWindow.has(id));
  const running = prefix.filter((op) => op.return === Infinity).length;
  const at = `${ms(t)} ms`;
  const description =
    `key ${JSON.stringify(key)}: its history as of ${at} is the shortest prefix the checker rejects (from the empty register ` +
    `the run starts with); as of every earlier completion it passes. That prefix: the ${prefix.length} operations invoked by ` +
    `${at} that the checker looks at (failed operations and reads without a result left out), ${running} of them still ` +
    `running or of unknown outcome at ${at}. The window is ` +
    (window.length === prefix.length
      ? 'that whole prefix'
      : `the last ${window.length} of them by invocation (the ${start} before set the register's value at its start)`) +
    `, as the checker saw them: an operation still running at ${at} shows outcome unknown. ` +
    `Marked *: what completed at ${at}, and the operations the checker names.`;
  return { operations: window, named, description };
}

function causalityWindow(ops: readonly CausalOperation[], size: number): HistoryWindow | undefined {
  let result;
  try {
    result = checkCausalConsistency(ops);
  } catch {
    return undefined;
  }
  const first = result.violations[0];
  if (first === undefined) return undefined;
  const involved: CausalOperation[] = [first.read];
  if (first.returned !== undefined) involved.push(first.returned);
  if (first.newer !== undefined) involved.push(first.newer);
  for (const step of first.chain) {
    involved.push(step.operation);
    if (step.witness !== undefined) involved.push(step.witness);
  }
  const namedIds = new Set(involved.map((op) => op.id));
  const sessions = new Set(involved.map((op) => String(op.process)));
  const keys = new Set(involved.map((op) => op.key));
  const sorted = byInvocation(ops);
  const last = byInvocation(involved).at(-1)!;
  const lastIndex = sorted.findIndex((op) => op.id === last.id);
  const related = sorted.slice(0, lastIndex + 1).filter((op) => sessions.has(String(op.process)) || keys.has(op.key));
  const tail = related.slice(Math.max(0, related.length - size));
  const tailIds = new Set(tail.map((op) => op.id));
  const earlierNamed = related.filter((op) => namedIds.has(op.id) && !tailIds.has(op.id));
  const window = byInvocation([...earlierNamed, ...tail]);
  const sessionList = [...sessions].sort().join(', ');
  const keyList = [...keys].sort().map((k) => JSON.stringify(k)).join(', ');
  const more = result.violations.length > 1 ? ` (the first of ${result.violations.length} violations)` : '';
  const description =
    `the ${first.kind} violation${more} at the read of ${JSON.stringify(first.key)} by session ${String(first.read.process)}: ` +
    `the operations of sessions ${sessionList} or on keys ${keyList}, up to the last operation the violation names (invoked at ${ms(last.call)} ms), ` +
    `the last ${tail.length} of ${related.length}` +
    (earlierNamed.length > 0 ? `, plus ${earlierNamed.length} earlier ${earlierNamed.length === 1 ? 'one' : 'ones'} it names` : '') +
    `. Marked *: the operations the violation names.`;
  return { operations: window, named: window.filter((op) => namedIds.has(op.id)).map((op) => op.id), description };
}

/**
 * Version order and lost writes: their explanations name a key and acknowledged writes by the
 * virtual times they began and completed at (see version-order.ts and seed-check.ts). The window:
 * the key's operations up to the last of those writes.
 */
function namedWritesWindow(violation: SeedViolation, size: number): HistoryWindow | undefined {
  const text = violation.explanation;
  const key = violation.key ?? /\bof (\S+) (?:with|share) version\b/.exec(text)?.[1];
  if (key === undefined) return undefined;
  const times = new Set([...text.matchAll(/(\d+(?:\.\d+)?(?:e[+-]?\d+)?) ms\b/g)].map((m) => Number(m[1])));
  const ops = byInvocation(violation.operations.filter((op) => op.key === key));
  const named = ops.filter((op) => op.f !== 'read' && (times.has(op.call) || times.has(op.return)));
  if (named.length === 0) return undefined;
  const last = named.at(-1)!;
  const upTo = ops.slice(0, ops.indexOf(last) + 1);
  const tail = upTo.slice(Math.max(0, upTo.length - size));
  const earlier = named.filter((op) => !tail.includes(op));
  const window = [...earlier, ...tail];
  const description =
    `the operations on key ${JSON.stringify(key)} up to the last write the explanation names (invoked at ${ms(last.call)} ms): ` +
    `the last ${tail.length} of ${upTo.length}` +
    (earlier.length > 0 ? `, plus ${earlier.length} earlier ${earlier.length === 1 ? 'one' : 'ones'} it names` : '') +
    `. Marked *: the writes the explanation names (found by their times).`;
  return { operations: window, named: named.map((op) => op.id), description };
}

function lastOperations(violation: SeedViolation, size: number): HistoryWindow {
  const { key } = violation;
  const ops = byInvocation(key === undefined ? violation.operations : violation.operations.filter((op) => op.key === key));
  const window = ops.slice(Math.max(0, ops.length - size));
  const of = key === undefined ? 'of the whole history' : `on key ${JSON.stringify(key)}`;
  const why =
    violation.kind === 'linearizability'
      ? 'the checker did not reject any shorter history of the key within its time budget, so no shorter window was cut'
      : violation.kind === 'convergence'
        ? 'the check is about the replicas\' state after the heal, so no shorter window is cut'
        : 'no operation named by the explanation was found, so no shorter window is cut';
  return { operations: window, named: [], description: `the last ${window.length} of the ${ops.length} operations ${of}, by invocation: ${why}.` };
}

/** Virtual milliseconds to 0.01 ms, as the fault schedule shows them. */
function ms(t: number): string {
  return String(Math.round(t * 100) / 100);
}
