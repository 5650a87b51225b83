import type { Deadline } from '@grpc/grpc-js';

/**
 * The milliseconds left until a call's deadline, or undefined when the caller set none (the node
 * then uses its own requestTimeoutMs). A deadline already past gives a tiny positive budget, so
 * the operation fails promptly with the right status rather than being refused as malformed.
 */
export function remainingMs(deadline: Deadline, nowEpochMs: number): number | undefined {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  return Math.max(1, at - nowEpochMs);
}
