import type { Deadline } from '@grpc/grpc-js';

/**
 * The most of a caller's remaining time the node keeps for itself to answer in: its own budget
 * ends this much earlier than the caller's deadline, so the caller hears the node's precise status
 * (UNAVAILABLE "behind the session", DEADLINE_EXCEEDED "outcome unknown") rather than its own
 * transport's bare timeout. 50 ms covers a LAN round trip many times over.
 */
export const ANSWER_MARGIN_MS = 50;

/**
 * The milliseconds the node may spend on a call: the time left until the caller's deadline, less
 * a margin (at most a tenth of it) to send the answer back; undefined when the caller set no
 * deadline (the node then uses its own requestTimeoutMs). A deadline already past gives a tiny
 * positive budget, so the operation fails promptly with the right status.
 */
export function remainingMs(deadline: Deadline, nowEpochMs: number): number | undefined {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  const left = at - nowEpochMs;
  return Math.max(1, left - Math.min(ANSWER_MARGIN_MS, left / 10));
}
