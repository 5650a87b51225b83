export { phiOf, standardScoreAtPhi } from './phi.js';
export { IntervalWindow } from './interval-window.js';
export type { PhiAccrualDetectorOptions } from './phi-accrual-detector.js';
export { PhiAccrualDetector } from './phi-accrual-detector.js';
export type { FailureDetectorConfig } from './config.js';
export {
  DEFAULT_FAILURE_DETECTOR_CONFIG,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_TICK_INTERVAL_MS,
  DEFAULT_PHI_THRESHOLD,
  DEFAULT_MAX_SAMPLE_SIZE,
  DEFAULT_MIN_STD_DEVIATION_MS,
  DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_MS,
  DEFAULT_DEAD_AFTER_MS,
  DEFAULT_STARTUP_GRACE_MS,
  DEFAULT_MAX_CLOCK_OFFSET_MS,
  DEFAULT_CLOCK_SAMPLE_WINDOW,
  lanProfile,
  wanProfile,
  localProfile,
  failureDetectorConfigProblems,
  validateFailureDetectorConfig,
  InvalidFailureDetectorConfigError,
} from './config.js';
export type { ClockSample } from './clock-sample-window.js';
export { ClockSampleWindow, clockOffsetExceeds } from './clock-sample-window.js';
export type { QuorumState } from './quorum.js';
export { majorityOf, quorumStateOf } from './quorum.js';
export type { Listener } from './typed-emitter.js';
export { TypedEmitter } from './typed-emitter.js';
export type {
  MemberState,
  MemberStateCause,
  MemberStateChange,
  ClockOffsetChange,
  QuorumChange,
  MembershipEvents,
  MemberSnapshot,
  QuorumStatus,
  HeartbeatOutcome,
} from './membership-types.js';
export type { PeerAddress, MembershipViewOptions } from './membership.js';
export { MembershipView } from './membership.js';
