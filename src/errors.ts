/**
 * The domain errors of replikit. Every failure a caller can act on is one of these; the transport
 * maps each kind to exactly one gRPC status code (src/transport/status.ts), so a client in any
 * language tells "retry" (UNAVAILABLE), "outcome unknown" (DEADLINE_EXCEEDED) and "your fault"
 * (INVALID_ARGUMENT) apart from the status alone.
 *
 * To turn any thrown value into one, use {@link toReplikitError}.
 */

/** What went wrong, in the caller's terms. */
export type ErrorKind =
  /** The request is wrong; retrying it unchanged cannot help. */
  | 'invalid-argument'
  /** The named thing (a keyspace) does not exist. */
  | 'not-found'
  /** The cluster is not in a state to serve this (foreign cluster, clock too far ahead). */
  | 'failed-precondition'
  /** The caller is not a member. */
  | 'permission-denied'
  /** A revision outside what is kept: compacted history (the details name the compaction revision). */
  | 'out-of-range'
  /** The caller fell behind a limit (a watcher that does not read): it was cut off; it may start again. */
  | 'resource-exhausted'
  /** Not enough replicas reachable, or a replica is behind; nothing took effect; safe to retry. */
  | 'unavailable'
  /** The deadline passed while a write was under way: it may or may not have taken effect. */
  | 'outcome-unknown'
  /** The node is shutting down or was closed. */
  | 'cancelled'
  /** A bug or an operating failure (disk); the message says which. */
  | 'internal';

/** One error class for every domain failure: a kind, an upper-snake reason, details and a cause. */
export class ReplikitError extends Error {
  override readonly name = 'ReplikitError';
  readonly kind: ErrorKind;
  /** Machine-readable reason, upper snake case (google.rpc.ErrorInfo style), e.g. NO_QUORUM. */
  readonly reason: string;
  /** Extra facts for programs (counts, limits), all strings as in google.rpc.ErrorInfo.metadata. */
  readonly details: Readonly<Record<string, string>>;

  constructor(
    kind: ErrorKind,
    reason: string,
    message: string,
    options: { details?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.reason = reason;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }
}

export function invalidArgument(reason: string, message: string, details?: Record<string, string>): ReplikitError {
  return new ReplikitError('invalid-argument', reason, message, { details });
}

export function notFound(reason: string, message: string, details?: Record<string, string>): ReplikitError {
  return new ReplikitError('not-found', reason, message, { details });
}

export function unavailable(reason: string, message: string, details?: Record<string, string>): ReplikitError {
  return new ReplikitError('unavailable', reason, message, { details });
}

export function outcomeUnknown(reason: string, message: string, details?: Record<string, string>): ReplikitError {
  return new ReplikitError('outcome-unknown', reason, message, { details });
}

export function outOfRange(reason: string, message: string, details?: Record<string, string>): ReplikitError {
  return new ReplikitError('out-of-range', reason, message, { details });
}

export function resourceExhausted(reason: string, message: string, details?: Record<string, string>): ReplikitError {
  return new ReplikitError('resource-exhausted', reason, message, { details });
}

export function failedPrecondition(reason: string, message: string, details?: Record<string, string>): ReplikitError {
  return new ReplikitError('failed-precondition', reason, message, { details });
}

/** The one documented way to turn any thrown value into a ReplikitError (unknown values: internal). */
export function toReplikitError(err: unknown): ReplikitError {
  if (err instanceof ReplikitError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ReplikitError('internal', 'INTERNAL', `internal error: ${message}`, { cause: err });
}
