/**
 * `replikit/testing`: record a workload's history and check that it is linearizable.
 */
export type {
  Value,
  OpFunction,
  EventType,
  Outcome,
  ProcessId,
  EventValue,
  HistoryEvent,
  Operation,
  History,
  EventSource,
  OperationHandle,
} from './history.js';
export { HistoryRecorder, HistoryFormatError, parseJsonLines, pairOperations, toJsonLines } from './history.js';
export { parseJepsenLog, JEPSEN_KEY } from './jepsen-log.js';
export type { Verdict, CheckOptions, CheckResult, KeyResult, Violation, StuckOperation, Culprit } from './linearizability.js';
export { checkLinearizability, describeOperation, DEFAULT_TIMEOUT_MS } from './linearizability.js';
