import { ReplikitError } from '../errors.js';

/** A watch that ended for good; `compactRevision` is set when the revision it needed was compacted. */
export class WatchError extends ReplikitError {
  /** History is kept only after this revision (OUT_OF_RANGE): Range at the current revision, then watch from it + 1. */
  readonly compactRevision: number | undefined;
  /** Watching again from this revision misses nothing. */
  readonly resumeRevision: number;

  constructor(cause: ReplikitError, compactRevision: number | undefined, resumeRevision: number, message = cause.message) {
    const details: Record<string, string> = { ...cause.details, resume_revision: String(resumeRevision) };
    if (compactRevision !== undefined) details['compact_revision'] = String(compactRevision);
    super(cause.kind, cause.reason, message, { cause, details });
    this.compactRevision = compactRevision;
    this.resumeRevision = resumeRevision;
  }
}
