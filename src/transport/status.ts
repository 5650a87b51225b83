import { Metadata, status as Status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ReplikitError, toReplikitError, type ErrorKind } from '../errors.js';

/**
 * The one mapping between domain errors and gRPC statuses. Each kind has exactly one code, so a
 * client in any language can tell "retry" (UNAVAILABLE), "outcome unknown" (DEADLINE_EXCEEDED)
 * and "your fault" (INVALID_ARGUMENT) apart from the status alone. The reason and details travel
 * in trailing metadata (`replikit-reason`, `replikit-detail-<name>`), readable without protobuf.
 */
const CODE_OF_KIND: Readonly<Record<ErrorKind, Status>> = {
  'invalid-argument': Status.INVALID_ARGUMENT,
  'not-found': Status.NOT_FOUND,
  'failed-precondition': Status.FAILED_PRECONDITION,
  'permission-denied': Status.PERMISSION_DENIED,
  'out-of-range': Status.OUT_OF_RANGE,
  'resource-exhausted': Status.RESOURCE_EXHAUSTED,
  unavailable: Status.UNAVAILABLE,
  'outcome-unknown': Status.DEADLINE_EXCEEDED,
  cancelled: Status.CANCELLED,
  internal: Status.INTERNAL,
};

const KIND_OF_CODE = new Map<Status, ErrorKind>(
  Object.entries(CODE_OF_KIND).map(([kind, code]) => [code, kind as ErrorKind]),
);

export const REASON_METADATA_KEY = 'replikit-reason';
/** Each detail travels as `replikit-detail-<name, lower case>`; fromGrpcError gives them back under the lower-case name. */
export const DETAIL_METADATA_PREFIX = 'replikit-detail-';

/** A ServiceError-shaped status for a grpc-js handler callback. */
export function toGrpcStatus(err: unknown): Partial<StatusObject> & { code: Status; details: string } {
  const e = toReplikitError(err);
  const metadata = new Metadata();
  metadata.set(REASON_METADATA_KEY, e.reason);
  for (const [name, value] of Object.entries(e.details)) metadata.set(`${DETAIL_METADATA_PREFIX}${name.toLowerCase()}`, metadataSafe(value));
  return { code: CODE_OF_KIND[e.kind], details: e.message, metadata };
}

/**
 * A detail as a legal metadata value: grpc-js throws on anything but printable ASCII, and details
 * may echo the caller's input (an unknown keyspace name of random bytes), which must not turn a
 * bad request into an uncaught exception that ends the process. Other characters are escaped as
 * in JSON (`\u00e9`).
 */
export function metadataSafe(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A grpc-js client error turned back into a domain error (for the CLI and peer calls). */
export function fromGrpcError(err: ServiceError): ReplikitError {
  const kind = KIND_OF_CODE.get(err.code) ?? 'internal';
  const reasonValue = err.metadata?.get(REASON_METADATA_KEY)[0];
  const reason = typeof reasonValue === 'string' ? reasonValue : Status[err.code] ?? 'UNKNOWN';
  const details: Record<string, string> = {};
  for (const [name, value] of Object.entries(err.metadata?.getMap() ?? {})) {
    if (name.startsWith(DETAIL_METADATA_PREFIX) && typeof value === 'string') details[name.slice(DETAIL_METADATA_PREFIX.length)] = value;
  }
  return new ReplikitError(kind, reason, err.details || err.message, { cause: err, details });
}

/** The upper-case status name, e.g. UNAVAILABLE. */
export function statusName(code: number): string {
  return Status[code] ?? `CODE_${code}`;
}

/** An error a peer answered on an Exchange stream, as the same domain error it threw. */
export function fromExchangeError(error: { code: number; message: string; reason: string }): ReplikitError {
  const kind = KIND_OF_CODE.get(error.code as Status) ?? 'internal';
  return new ReplikitError(kind, error.reason || (Status[error.code] ?? 'UNKNOWN'), error.message);
}

/** The gRPC status code of a domain error (for answers that carry a code in-band, as keep-alive responses do). */
export function grpcCodeOf(err: unknown): number {
  return CODE_OF_KIND[toReplikitError(err).kind];
}
