export type { WallClock } from './wall-clock.js';
export { systemWallClock } from './wall-clock.js';
export { LamportClock } from './lamport-clock.js';
export type { HlcTimestamp } from './hybrid-logical-clock.js';
export {
  HybridLogicalClock,
  ZERO_HLC,
  MAX_HLC_LOGICAL,
  compareHlc,
  maxHlc,
  isValidHlc,
  formatHlc,
} from './hybrid-logical-clock.js';
export type { CausalOrder } from './vector-clock.js';
export { VectorClock } from './vector-clock.js';
export type { Scheduler, TimerHandle } from './scheduler.js';
export { systemScheduler } from './scheduler.js';
export type { ClockSample } from './clock-sync.js';
export { ClockOffsetEstimator, DEFAULT_CLOCK_SYNC_WINDOW, clockSample } from './clock-sync.js';
export { repeatEvery } from './repeat.js';
