/**
 * How long the linearizability checker takes on a large linearizable history: 10 000 operations
 * over 10 keys from 8 processes, recorded from a simulated register that is linearizable by
 * construction (each operation takes effect at a random instant between its call and return).
 * Prints the median of 5 checks. Run with `npx tsx bench/checker.ts`.
 */
import { pairOperations } from '../src/testing/history.js';
import type { EventValue, HistoryEvent, OpFunction, Value } from '../src/testing/history.js';
import { checkLinearizability } from '../src/testing/linearizability.js';
import { SeededRandom } from '../src/sim/seeded-random.js';

const OPERATIONS = 10_000;
const KEYS = 10;
const PROCESSES = 8;
const RUNS = 5;
/** Values come from a small range, so that reads and cas often match more than one write. */
const VALUE_RANGE = 10;
/** One operation in this many times out (`info`); half of those take effect anyway. */
const INFO_ONE_IN = 100;
/** An operation lasts between 1 and this many time units; a process waits up to as long between two. */
const MAX_DURATION = 100;

interface Planned {
  process: number;
  f: OpFunction;
  key: string;
  input: EventValue;
  call: number;
  effect: number;
  ret: number;
  /** `info` operations that never take effect have no effect instant. */
  takesEffect: boolean;
  info: boolean;
  output: Value;
  applied: boolean;
}

function generate(seed: number): HistoryEvent[] {
  // Seeded, so that every run checks the same history.
  const seeded = new SeededRandom(seed);
  const rand = (): number => seeded.next();
  const pick = (n: number): number => Math.floor(rand() * n);
  const planned: Planned[] = [];
  const clocks = new Array<number>(PROCESSES).fill(0);
  // Jepsen's convention: a process whose operation timed out is replaced by a fresh one.
  const ids = Array.from({ length: PROCESSES }, (_, i) => i);
  for (let i = 0; i < OPERATIONS; i++) {
    const slot = pick(PROCESSES);
    const call = clocks[slot]! + 1 + pick(MAX_DURATION);
    const ret = call + 1 + pick(MAX_DURATION);
    const effect = call + rand() * (ret - call);
    clocks[slot] = ret;
    const r = rand();
    const f: OpFunction = r < 0.5 ? 'read' : r < 0.8 ? 'write' : r < 0.95 ? 'cas' : 'delete';
    const input: EventValue =
      f === 'write' ? pick(VALUE_RANGE) : f === 'cas' ? [pick(VALUE_RANGE), pick(VALUE_RANGE)] : null;
    const info = pick(INFO_ONE_IN) === 0;
    planned.push({
      process: ids[slot]!,
      f,
      key: `k${pick(KEYS)}`,
      input,
      call,
      effect,
      ret,
      takesEffect: !info || rand() < 0.5,
      info,
      output: null,
      applied: false,
    });
    if (info) ids[slot]! += PROCESSES;
  }
  // The register itself: apply each operation at its effect instant.
  const register = new Map<string, Value>();
  for (const op of planned.filter((p) => p.takesEffect).sort((x, y) => x.effect - y.effect)) {
    const held = register.get(op.key) ?? null;
    if (op.f === 'read') op.output = held;
    else if (op.f === 'write') register.set(op.key, op.input as Value);
    else if (op.f === 'delete') register.set(op.key, null);
    else {
      const [from, to] = op.input as readonly [Value, Value];
      op.applied = held === from;
      if (op.applied) register.set(op.key, to);
    }
  }
  const events: HistoryEvent[] = [];
  for (const op of planned) {
    const base = { process: op.process, f: op.f, key: op.key };
    events.push({ ...base, type: 'invoke', value: op.input, time: op.call });
    if (op.info) {
      events.push({ ...base, type: 'info', value: op.input, time: op.ret });
    } else {
      const type = op.f === 'cas' && !op.applied ? 'fail' : 'ok';
      events.push({ ...base, type, value: op.f === 'read' ? op.output : op.input, time: op.ret });
    }
  }
  // In time order, invocations first at equal times, as a recorder would have written them.
  return events.sort((x, y) => x.time - y.time || (x.type === 'invoke' ? 0 : 1) - (y.type === 'invoke' ? 0 : 1));
}

const operations = pairOperations(generate(1));
const timings: number[] = [];
for (let run = 0; run < RUNS; run++) {
  const start = performance.now();
  const result = checkLinearizability(operations, { timeoutMs: 60_000 });
  timings.push(performance.now() - start);
  if (result.verdict !== 'linearizable') {
    console.error(`expected linearizable, got ${result.verdict}\n${result.explanation ?? ''}`);
    process.exit(1);
  }
}
timings.sort((x, y) => x - y);
const median = timings[Math.floor(RUNS / 2)]!;
console.log(
  `linearizability check: ${operations.length} operations, ${KEYS} keys, ${PROCESSES} processes: ` +
    `median ${median.toFixed(1)} ms of ${RUNS} runs (min ${timings[0]!.toFixed(1)}, max ${timings[RUNS - 1]!.toFixed(1)})`,
);
