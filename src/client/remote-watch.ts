/**
 * A watch over KvService.Watch that survives the node it watches through: when the stream fails
 * in a way that a retry can mend (UNAVAILABLE: a node killed, stopping or without the history;
 * RESOURCE_EXHAUSTED: this client fell behind; a stream that went silent or ended unasked), it
 * opens the watch again on the next endpoint, round-robin, from the revision after the last one
 * the old stream was complete up to, so no event is missed; events at or below the last one
 * delivered are dropped, so none is delivered twice. A compacted start (OUT_OF_RANGE) ends the
 * iterator with a {@link WatchError} naming `compactRevision`: the caller must re-read (Range) and
 * watch again; nothing is skipped silently.
 *
 * Memory is bounded: the stream is paused while the consumer does not pull and more than
 * {@link MAX_QUEUED} messages wait, so grpc-js stops reading and HTTP/2 flow control holds the
 * node back (whose watcher then cuts the stream off with RESOURCE_EXHAUSTED past its own limit,
 * which this watch resumes from).
 */
import { Metadata, status as Status, type ClientDuplexStream, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ReplikitError, toReplikitError } from '../errors.js';
import { EventType, type KeyValue as WireKeyValue, type KvServiceClient, type WatchCreateRequest, type WatchRequest, type WatchResponse } from '../gen/replikit/v1/kv_service.js';
import { fromGrpcError, statusName } from '../transport/status.js';
import { WatchError } from './watch-error.js';
import { eventsOf, type KeyValue, type WatchEvent, type WatchItem, type WatchStream } from './types.js';

/** Messages held for a consumer that does not pull before the stream is paused. */
export const MAX_QUEUED = 4;
/** Backoff between resume attempts: doubles from the first to the last. */
export const RESUME_BACKOFF_MS = { first: 50, max: 1_000 } as const;
/** The node's progress interval when the watch does not ask for one (WatchCreateRequest). */
const NODE_DEFAULT_PROGRESS_MS = 5_000;

/**
 * Codes after which the watch is opened again elsewhere: UNAVAILABLE (a node killed, stopping, or
 * without the history), RESOURCE_EXHAUSTED (this client fell behind, or the node serves too many
 * watchers) and CANCELLED that this client did not ask for (a node that shut its server down).
 */
const RESUMABLE = new Set<number>([Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED, Status.CANCELLED]);

/** What a resume looked like, for logs and tests. */
export interface ResumeInfo {
  /** The endpoint the watch failed on, and why. */
  readonly from: string;
  readonly error: ReplikitError;
  /** The endpoint it opens on next. */
  readonly to: string;
  /** The revision it asks to start from. */
  readonly fromRevision: number;
  /** 1 for the first attempt after a failure. */
  readonly attempt: number;
}

export interface RemoteWatchSettings {
  readonly endpoints: readonly string[];
  /** The client of endpoint `i`. */
  readonly clientOf: (index: number) => KvServiceClient;
  /** The endpoint to open on first. */
  readonly firstEndpoint: number;
  /** What to watch; `startRevision` is set per attempt. */
  readonly create: Omit<WatchCreateRequest, 'startRevision'>;
  readonly fromRevision: number;
  readonly progressNotify: boolean;
  /** How long the node may take to confirm a watch (`created`). */
  readonly timeoutMs: number;
  /** How long the watch keeps trying to resume after a failure before it gives up. */
  readonly resumeTimeoutMs: number;
  readonly onResume?: (info: ResumeInfo) => void;
  /** Called when a node confirms the watch (first or resumed): events after `revision` follow. */
  readonly onCreated?: (info: { readonly endpoint: string; readonly revision: number }) => void;
  /** Called once when the watch ends, however it ends. */
  readonly onEnd?: () => void;
}

interface Attempt {
  readonly call: ClientDuplexStream<WatchRequest, WatchResponse>;
  readonly endpoint: number;
  created: boolean;
  /** Why this client ended the call itself, if it did. */
  abandoned: 'cancel' | 'silent' | undefined;
  readableEnded: boolean;
  /** The call's end was acted on (resumed, or the watch ended). */
  settled: boolean;
  status: StatusObject | undefined;
  error: ServiceError | undefined;
  canceled: { reason: string; compactRevision: number; resumeRevision: number } | undefined;
}

export class RemoteWatch implements WatchStream {
  readonly #s: RemoteWatchSettings;
  #attempt: Attempt | undefined;
  #endpoint: number;
  /** Every event at or below this revision has been received; -1 before the first `created` (from now). */
  #complete: number;
  /** The revision of the last event handed to the consumer. */
  #lastDelivered: number;
  readonly #queue: WatchItem[] = [];
  #paused = false;
  #waiting: (() => void) | undefined;
  #ended: { error?: WatchError } | undefined;
  #silenceTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #failingSince: number | undefined;

  constructor(settings: RemoteWatchSettings) {
    this.#s = settings;
    this.#endpoint = settings.firstEndpoint % settings.endpoints.length;
    this.#complete = settings.fromRevision > 0 ? settings.fromRevision - 1 : -1;
    this.#lastDelivered = settings.fromRevision > 0 ? settings.fromRevision - 1 : 0;
    this.#open();
  }

  get completeRevision(): number {
    return Math.max(this.#complete, 0);
  }

  /** Messages received and not yet taken by the consumer (at most {@link MAX_QUEUED}, plus one). */
  get queued(): number {
    return this.#queue.length;
  }

  /** The endpoint the watch currently runs on. */
  get endpoint(): string {
    return this.#s.endpoints[this.#endpoint]!;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchItem> {
    return this;
  }

  async next(): Promise<IteratorResult<WatchItem>> {
    for (;;) {
      const item = this.#queue.shift();
      if (item !== undefined) {
        if (this.#paused && this.#queue.length < MAX_QUEUED) this.#resumeReading();
        return { done: false, value: item };
      }
      if (this.#ended !== undefined) {
        if (this.#ended.error !== undefined) throw this.#ended.error;
        return { done: true, value: undefined };
      }
      if (this.#paused) this.#resumeReading();
      await new Promise<void>((resolve) => (this.#waiting = resolve));
    }
  }

  async return(): Promise<IteratorResult<WatchItem>> {
    this.cancel();
    return { done: true, value: undefined };
  }

  events(): AsyncIterableIterator<WatchEvent> {
    return eventsOf(this);
  }

  requestProgress(): void {
    const a = this.#attempt;
    if (a !== undefined && a.created && this.#ended === undefined && a.call.writable) a.call.write({ progress: {} });
  }

  cancel(): void {
    if (this.#ended !== undefined) return;
    this.#queue.length = 0;
    this.#end({});
  }

  #open(): void {
    const start = this.#resumeFrom();
    let call: ClientDuplexStream<WatchRequest, WatchResponse>;
    try {
      call = this.#s.clientOf(this.#endpoint).watch(new Metadata());
    } catch (err: unknown) {
      // The client was closed.
      const e = toReplikitError(err);
      return this.#end({ error: new WatchError(e, undefined, start) });
    }
    const attempt: Attempt = { call, endpoint: this.#endpoint, created: false, abandoned: undefined, readableEnded: false, settled: false, status: undefined, error: undefined, canceled: undefined };
    this.#attempt = attempt;
    this.#paused = false;
    call.on('data', (response: WatchResponse) => this.#onResponse(attempt, response));
    call.on('error', (error: ServiceError) => {
      attempt.error = error;
      this.#settle(attempt);
    });
    call.on('status', (status: StatusObject) => {
      attempt.status = status;
      this.#settle(attempt);
    });
    call.on('end', () => {
      attempt.readableEnded = true;
      this.#settle(attempt);
    });
    call.write({ create: { ...this.#s.create, startRevision: BigInt(start) } });
    this.#armSilence(attempt);
  }

  #onResponse(attempt: Attempt, response: WatchResponse): void {
    if (attempt !== this.#attempt || attempt.settled || this.#ended !== undefined) return;
    const revision = Number(response.revision);
    if (response.canceled) {
      attempt.canceled = { reason: response.cancelReason, compactRevision: Number(response.compactRevision), resumeRevision: Number(response.resumeRevision) };
      return;
    }
    if (response.created) {
      attempt.created = true;
      this.#failures = 0;
      this.#failingSince = undefined;
      this.#s.onCreated?.({ endpoint: this.#s.endpoints[attempt.endpoint]!, revision: Math.max(revision, this.#complete) });
    }
    if (response.events.length > 0) {
      const events: WatchEvent[] = [];
      for (const e of response.events) {
        const event = eventFromWire(e.type, e.kv, e.prevKv, revision);
        // A node behind the one before may send again what was delivered: drop it.
        if (event.revision <= this.#lastDelivered) continue;
        events.push(event);
      }
      if (events.length > 0) {
        this.#lastDelivered = events[events.length - 1]!.revision;
        this.#queue.push({ kind: 'events', revision: Math.max(revision, this.#lastDelivered), events });
      }
    } else if (response.progressNotify && this.#s.progressNotify && revision >= this.#complete) {
      this.#queue.push({ kind: 'progress', revision });
    }
    // Complete-up-to never goes back, even on a node that is behind the one before.
    if (revision > this.#complete) this.#complete = revision;
    if (this.#queue.length >= MAX_QUEUED && !this.#paused) {
      this.#paused = true;
      attempt.call.pause();
      this.#clearSilence();
    } else {
      this.#armSilence(attempt);
    }
    this.#wake();
  }

  /** Acts once the call has both ended its messages (all handed over) and its status. */
  #settle(attempt: Attempt): void {
    if (attempt !== this.#attempt || this.#ended !== undefined) return;
    const failed = attempt.error !== undefined || (attempt.status !== undefined && attempt.status.code !== Status.OK);
    // Messages received before the status still wait in the stream while it is paused; they go
    // first. A failed call whose stream was abandoned needs no draining.
    if (!attempt.readableEnded && !(failed && attempt.abandoned !== undefined)) return;
    if (attempt.status === undefined && attempt.error === undefined) return;
    if (attempt.settled) return;
    attempt.settled = true;
    this.#clearSilence();
    if (attempt.abandoned === 'cancel') return this.#end({});
    const code = attempt.error?.code ?? attempt.status!.code;
    const error = attempt.error !== undefined ? fromGrpcError(attempt.error) : new ReplikitError('unavailable', 'WATCH_ENDED', `the watch stream on ${this.#s.endpoints[attempt.endpoint]} ended without being cancelled`);
    if (attempt.abandoned === 'silent') {
      return this.#retry(attempt, new ReplikitError('unavailable', 'WATCH_SILENT', `${this.#s.endpoints[attempt.endpoint]} sent nothing on the watch for too long (${attempt.created ? 'no progress notification' : 'no created response'})`));
    }
    if (code === Status.OK || RESUMABLE.has(code)) return this.#retry(attempt, error);
    if (code === Status.OUT_OF_RANGE) {
      const compact = attempt.canceled?.compactRevision || Number(error.details['compact_revision'] ?? 0);
      return this.#end({
        error: new WatchError(
          error,
          compact,
          compact + 1,
          `watch from revision ${this.#resumeFrom()}: ${error.message}`,
        ),
      });
    }
    this.#end({ error: new WatchError(error, undefined, this.#resumeFrom(), `${statusName(code)}: ${error.message}`) });
  }

  #retry(attempt: Attempt, error: ReplikitError): void {
    const now = Date.now();
    this.#failingSince ??= now;
    this.#failures++;
    const resumeFrom = this.#resumeFrom();
    if (now - this.#failingSince >= this.#s.resumeTimeoutMs) {
      const message = `the watch could not be resumed from revision ${resumeFrom} on any of ${this.#s.endpoints.join(', ')} within ${this.#s.resumeTimeoutMs} ms (${this.#failures} attempts); last error on ${this.#s.endpoints[attempt.endpoint]}: ${error.message}`;
      return this.#end({ error: new WatchError(new ReplikitError('unavailable', 'WATCH_RESUME_FAILED', message, { cause: error, details: error.details }), undefined, resumeFrom, message) });
    }
    this.#endpoint = (attempt.endpoint + 1) % this.#s.endpoints.length;
    const delay = Math.min(RESUME_BACKOFF_MS.max, RESUME_BACKOFF_MS.first * 2 ** Math.min(this.#failures - 1, 10));
    this.#s.onResume?.({ from: this.#s.endpoints[attempt.endpoint]!, error, to: this.#s.endpoints[this.#endpoint]!, fromRevision: resumeFrom, attempt: this.#failures });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#ended === undefined) this.#open();
    }, delay);
  }

  #resumeFrom(): number {
    return this.#complete >= 0 ? this.#complete + 1 : this.#s.fromRevision;
  }

  #end(ended: { error?: WatchError }): void {
    if (this.#ended !== undefined) return;
    this.#ended = ended;
    this.#s.onEnd?.();
    this.#clearSilence();
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    const a = this.#attempt;
    if (a !== undefined && a.status === undefined) {
      a.abandoned = 'cancel';
      a.call.cancel();
    }
    this.#wake();
  }

  #resumeReading(): void {
    const a = this.#attempt;
    this.#paused = false;
    if (a === undefined) return;
    a.call.resume();
    this.#armSilence(a);
  }

  /** A call that says nothing for too long (a node that hangs, a lost connection) is given up and resumed elsewhere. */
  #armSilence(attempt: Attempt): void {
    this.#clearSilence();
    if (attempt.status !== undefined || attempt.error !== undefined) return;
    const interval = this.#s.create.progressIntervalMs > 0 ? this.#s.create.progressIntervalMs : NODE_DEFAULT_PROGRESS_MS;
    const limit = attempt.created ? 2 * interval + this.#s.timeoutMs : this.#s.timeoutMs;
    this.#silenceTimer = setTimeout(() => {
      this.#silenceTimer = undefined;
      if (attempt !== this.#attempt || attempt.status !== undefined || this.#ended !== undefined) return;
      attempt.abandoned = 'silent';
      attempt.call.cancel();
    }, limit);
  }

  #clearSilence(): void {
    if (this.#silenceTimer !== undefined) clearTimeout(this.#silenceTimer);
    this.#silenceTimer = undefined;
  }

  #wake(): void {
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.();
  }
}

export function keyValueFromWire(kv: WireKeyValue): KeyValue {
  return { key: kv.key, value: kv.value, createRevision: Number(kv.createRevision), modRevision: Number(kv.modRevision), version: Number(kv.version) };
}

function eventFromWire(type: EventType, kv: WireKeyValue | undefined, prev: WireKeyValue | undefined, responseRevision: number): WatchEvent {
  const k = kv === undefined ? { key: Buffer.alloc(0), value: Buffer.alloc(0), createRevision: 0, modRevision: 0, version: 0 } : keyValueFromWire(kv);
  const p = prev === undefined ? undefined : keyValueFromWire(prev);
  return {
    type: type === EventType.EVENT_TYPE_DELETE ? 'delete' : 'put',
    key: k.key,
    value: k.value,
    revision: k.modRevision > 0 ? k.modRevision : responseRevision,
    createRevision: k.createRevision,
    modRevision: k.modRevision,
    version: k.version,
    ...(p === undefined ? {} : { prevValue: p.value, prevKv: p }),
  };
}
