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
export type { CausalOperation } from './causal-history.js';
export type { CausalModel, CausalCheckOptions, CausalCheckResult, CausalStats } from './causal-checker.js';
export { checkCausalConsistency, MAX_VIOLATIONS_EXPLAINED } from './causal-checker.js';
export type { CausalViolation, CausalViolationKind, ChainStep, ChainLink } from './causal-violation.js';
export { describeCausalOperation } from './causal-violation.js';
export type {
  CommittedChange,
  WatchEvent,
  WatchResponseRecord,
  WatchRange,
  WatchRecord,
  WatchHistory,
  WatchViolationKind,
  WatchViolation,
  WatchCheckOptions,
  WatchCheckStats,
  WatchCheckResult,
} from './watch-checker.js';
export { checkWatches, DEFAULT_MAX_WATCH_VIOLATIONS } from './watch-checker.js';
export type {
  LockEvent,
  LockAcquisition,
  LockHistory,
  LockViolationKind,
  LockViolation,
  LockCheckOptions,
  LockCheckStats,
  LockCheckResult,
} from './lock-checker.js';
export { checkLocks, parseLockLines, DEFAULT_MAX_LOCK_VIOLATIONS } from './lock-checker.js';
