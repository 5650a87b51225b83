/**
 * The watchers of one keyspace on one node, and what bounds them.
 *
 * A watcher is either catching up or in step. Catching up, it reads the changes it still needs
 * from the keyspace's {@link ChangeSource} (the CP history on disk, a feed's buffer) a page at a
 * time, and only when its consumer asks for the next message: a watcher far behind costs reads,
 * never memory. Once it has read up to the source's head it is in step: {@link WatchHub.publish}
 * hands it each new revision's changes in its range as they are applied, in the same synchronous
 * run, so nothing can fall between the last page read and the first change pushed.
 *
 * An in-step watcher whose consumer does not keep up gathers messages in its buffer; past
 * {@link WatchLimits.maxPendingBytes} it is cancelled (RESOURCE_EXHAUSTED), naming the revision to
 * watch again from so that nothing is missed. A buffer never grows without end, and a client that
 * stops reading is cut off, as etcd's slow watchers are not (etcd moves them to a victim list that
 * keeps their events in memory).
 *
 * In-step watchers of a single key are found by key; those of ranges are checked one by one, as
 * etcd's watchable store does with its interval tree (ranges are few in practice).
 *
 * No I/O and no clock of its own: timers come from the scheduler it is given.
 */
import type { Scheduler, TimerHandle } from '../../clock/index.js';
import { ReplikitError, resourceExhausted, unavailable } from '../../errors.js';
import { eventBytes, type ChangeBatch, type ChangeEvent, type ChangeSource } from './change.js';
import { inRange, isSingleKey, type KeyRange } from './key-range.js';
import { latin1 } from '../../storage/key-text.js';

/** What a watcher hands its consumer, in order. */
export type WatchMessage =
  /** The first message: changes after `revision` follow. */
  | { readonly kind: 'created'; readonly revision: number }
  /** Changes, in revision order; a revision's changes are never split. Complete up to `revision`. */
  | { readonly kind: 'events'; readonly revision: number; readonly events: readonly RevisionEvent[] }
  /** Nothing more in range at or below `revision`. */
  | { readonly kind: 'progress'; readonly revision: number };

export interface RevisionEvent {
  readonly revision: number;
  readonly event: ChangeEvent;
}

export interface WatchLimits {
  /** Bytes of messages an in-step watcher may hold unread before it is cancelled. */
  readonly maxPendingBytes: number;
  /** About how many bytes of events one message carries (one larger revision travels alone). */
  readonly maxMessageBytes: number;
  /** Watchers one keyspace on one node serves at once; another is refused (RESOURCE_EXHAUSTED). */
  readonly maxWatchers: number;
  /** Progress notifications while idle, when the watch does not say. */
  readonly defaultProgressIntervalMs: number;
  /** The shortest interval a watch may ask for. */
  readonly minProgressIntervalMs: number;
}

/**
 * 4 MiB pending: four values at the 1 MiB limit, or thousands of small ones — far more than a
 * consumer that reads keeps; 1,000 watchers then hold at most 4 GiB only if every one of them
 * stops reading at once, and each is cut off when it gets there. 1 MiB messages: a quarter of
 * grpc-js's default 4 MiB receive limit, leaving room for one value and its previous value.
 * 10,000 watchers per keyspace: above etcd's practical range; every in-step watcher of a range is
 * checked for every change. Progress every 5 s while idle, as often as a client would poll.
 */
export const WATCH_DEFAULTS: WatchLimits = {
  maxPendingBytes: 4 * 1024 * 1024,
  maxMessageBytes: 1024 * 1024,
  maxWatchers: 10_000,
  defaultProgressIntervalMs: 5_000,
  minProgressIntervalMs: 100,
};

export interface WatchOptions {
  readonly range: KeyRange;
  /** The first revision to deliver (the head + 1 for "from now"). */
  readonly startRevision: number;
  /** Keep each event's previous value (otherwise dropped before it is buffered). */
  readonly prevKv: boolean;
  readonly progressIntervalMs: number;
}

/** What the hub counts, for metrics. */
export interface WatchHubStats {
  watchers: number;
  /** Events buffered in watchers, not yet taken by their consumers. */
  pendingEvents: number;
  pendingBytes: number;
  /** Watchers cancelled because their consumer fell behind. */
  slowCancellations: number;
  eventsDelivered: number;
  created: number;
}

/** The hub's counters under the names the metrics read (ops/metrics.ts), for a policy's `stats()`. */
export function watchStatsOf(stats: WatchHubStats): Record<string, number> {
  return {
    watchers: stats.watchers,
    watchEventsPending: stats.pendingEvents,
    watchBytesPending: stats.pendingBytes,
    watchSlowCancellations: stats.slowCancellations,
    watchEventsDelivered: stats.eventsDelivered,
  };
}

export class WatchHub {
  readonly #source: ChangeSource;
  readonly #scheduler: Scheduler;
  readonly #limits: WatchLimits;
  readonly #all = new Set<Watcher>();
  /** In-step watchers of a single key, by latin1 key. */
  readonly #byKey = new Map<string, Set<Watcher>>();
  /** In-step watchers of ranges. */
  readonly #ranges = new Set<Watcher>();
  readonly stats: WatchHubStats = { watchers: 0, pendingEvents: 0, pendingBytes: 0, slowCancellations: 0, eventsDelivered: 0, created: 0 };

  constructor(source: ChangeSource, scheduler: Scheduler, limits: WatchLimits = WATCH_DEFAULTS) {
    this.#source = source;
    this.#scheduler = scheduler;
    this.#limits = limits;
  }

  get limits(): WatchLimits {
    return this.#limits;
  }

  /** Starts a watcher; throws RESOURCE_EXHAUSTED past the watcher limit. */
  open(options: WatchOptions): Watcher {
    if (this.#all.size >= this.#limits.maxWatchers) {
      throw resourceExhausted('TOO_MANY_WATCHERS', `this node already serves ${this.#all.size} watchers of the keyspace (the limit); cancel some or watch through another node`, { limit: String(this.#limits.maxWatchers) });
    }
    const watcher = new Watcher(this, options);
    this.#all.add(watcher);
    this.stats.watchers = this.#all.size;
    this.stats.created++;
    return watcher;
  }

  /**
   * Hands the changes of a revision just applied (the source's head is now `batch.revision`) to
   * the in-step watchers whose ranges they touch.
   */
  publish(batch: ChangeBatch): void {
    if (this.#all.size === 0) return;
    let touched: Map<Watcher, ChangeEvent[]> | undefined;
    const add = (w: Watcher, e: ChangeEvent) => {
      touched ??= new Map();
      const list = touched.get(w);
      if (list === undefined) touched.set(w, [e]);
      else list.push(e);
    };
    for (const event of batch.events) {
      const keyed = this.#byKey.get(latin1(event.kv.key));
      if (keyed !== undefined) for (const w of keyed) add(w, event);
      for (const w of this.#ranges) if (inRange(w.range, event.kv.key)) add(w, event);
    }
    if (touched === undefined) return;
    for (const [w, events] of touched) w.push(batch.revision, events);
  }

  /**
   * The source lost the changes up to its new floor without their being published (a snapshot
   * replaced the state): every watcher that still needed one of them ends.
   */
  reset(): void {
    for (const w of [...this.#all]) w.sourceReset();
  }

  /** Ends every watcher (the node stops, or the keyspace closes). */
  close(reason: ReplikitError): void {
    for (const w of [...this.#all]) w.end(reason);
  }

  /** @internal */
  get source(): ChangeSource {
    return this.#source;
  }

  /** @internal */
  get scheduler(): Scheduler {
    return this.#scheduler;
  }

  /** @internal the watcher reached the head: changes are pushed to it from now on. */
  enterStep(w: Watcher): void {
    if (isSingleKey(w.range)) {
      const k = latin1(w.range.start);
      let set = this.#byKey.get(k);
      if (set === undefined) this.#byKey.set(k, (set = new Set()));
      set.add(w);
    } else {
      this.#ranges.add(w);
    }
  }

  /** @internal */
  forget(w: Watcher): void {
    this.#all.delete(w);
    this.stats.watchers = this.#all.size;
    this.#ranges.delete(w);
    const k = latin1(w.range.start);
    const set = this.#byKey.get(k);
    if (set !== undefined && set.delete(w) && set.size === 0) this.#byKey.delete(k);
  }
}

/** Catch-up pages read in one pull before the watcher answers with a progress notification instead. */
const CATCH_UP_PAGES_PER_PULL = 16;

/**
 * One watch: an async iterator of {@link WatchMessage}s. It ends normally after {@link cancel}, and
 * throws when the watch fails (compacted start, a consumer that fell behind, the node stopping);
 * the error's details carry `compact_revision` or `resume_revision`.
 */
export class Watcher implements AsyncIterableIterator<WatchMessage> {
  readonly range: KeyRange;
  readonly #hub: WatchHub;
  readonly #prevKv: boolean;
  readonly #progressIntervalMs: number;
  /** The next revision this watcher needs; while in step, the head + 1. */
  #next: number;
  #inStep = false;
  #created = false;
  readonly #queue: { message: WatchMessage; bytes: number; events: number }[] = [];
  #queuedBytes = 0;
  /** The revision of the last message the consumer took: it has everything up to it. */
  #delivered: number;
  #waiting: (() => void) | undefined;
  #ended: ReplikitError | 'cancelled' | undefined;
  #progressTimer: TimerHandle | undefined;
  #progressWanted = false;

  /** @internal use {@link WatchHub.open} */
  constructor(hub: WatchHub, options: WatchOptions) {
    this.#hub = hub;
    this.range = options.range;
    this.#prevKv = options.prevKv;
    this.#progressIntervalMs = options.progressIntervalMs;
    this.#next = options.startRevision;
    this.#delivered = options.startRevision - 1;
    this.#armProgress();
  }

  /** The revision the consumer has everything up to (what a resume starts after). */
  get deliveredRevision(): number {
    return this.#delivered;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchMessage> {
    return this;
  }

  async next(): Promise<IteratorResult<WatchMessage>> {
    for (;;) {
      if (!this.#created) {
        this.#created = true;
        return this.#take({ kind: 'created', revision: this.#next - 1 });
      }
      const queued = this.#queue.shift();
      if (queued !== undefined) {
        this.#queuedBytes -= queued.bytes;
        this.#hub.stats.pendingBytes -= queued.bytes;
        this.#hub.stats.pendingEvents -= queued.events;
        this.#hub.stats.eventsDelivered += queued.events;
        return this.#take(queued.message);
      }
      if (this.#ended === 'cancelled') return { done: true, value: undefined };
      if (this.#ended !== undefined) throw this.#ended;
      if (this.#progressWanted) {
        this.#progressWanted = false;
        // In step, with its buffer taken, the watcher has everything up to the head.
        return this.#take({ kind: 'progress', revision: this.#inStep ? this.#hub.source.head : this.#next - 1 });
      }
      if (!this.#inStep) {
        const caught = this.#catchUp();
        if (caught !== undefined) return this.#take(caught);
        continue;
      }
      await new Promise<void>((resolve) => (this.#waiting = resolve));
    }
  }

  async return(): Promise<IteratorResult<WatchMessage>> {
    this.cancel();
    return { done: true, value: undefined };
  }

  /** Asks for a progress notification (after what is already buffered). */
  requestProgress(): void {
    if (this.#ended !== undefined) return;
    this.#progressWanted = true;
    this.#wake();
  }

  /** Ends the watch at once: the iterator finishes; what was buffered is dropped. */
  cancel(): void {
    this.#finish('cancelled');
  }

  /** @internal ends the watch with an error (buffered messages are dropped: resume from deliveredRevision + 1). */
  end(error: ReplikitError): void {
    this.#finish(error);
  }

  /** @internal changes of `revision` in range, for an in-step watcher. */
  push(revision: number, events: ChangeEvent[]): void {
    if (this.#ended !== undefined || !this.#inStep) return;
    this.#next = revision + 1;
    const kept = this.#prevKv ? events : events.map(withoutPrev);
    let bytes = 0;
    for (const e of kept) bytes += eventBytes(e);
    if (this.#queuedBytes + bytes > this.#hub.limits.maxPendingBytes) {
      this.#hub.stats.slowCancellations++;
      this.end(
        resourceExhausted(
          'WATCH_TOO_SLOW',
          `the watcher fell behind: ${this.#queuedBytes + bytes} bytes of events waited unread, over the limit of ${this.#hub.limits.maxPendingBytes}; watch again from revision ${this.#delivered + 1} to miss nothing`,
          { resume_revision: String(this.#delivered + 1) },
        ),
      );
      return;
    }
    const last = this.#queue[this.#queue.length - 1];
    const tagged = kept.map((event) => ({ revision, event }));
    // Joins the message not yet taken, while it stays within the message size.
    if (last !== undefined && last.message.kind === 'events' && last.bytes + bytes <= this.#hub.limits.maxMessageBytes) {
      last.message = { kind: 'events', revision, events: [...last.message.events, ...tagged] };
      last.bytes += bytes;
      last.events += tagged.length;
    } else {
      this.#queue.push({ message: { kind: 'events', revision, events: tagged }, bytes, events: tagged.length });
    }
    this.#queuedBytes += bytes;
    this.#hub.stats.pendingBytes += bytes;
    this.#hub.stats.pendingEvents += tagged.length;
    this.#wake();
  }

  /** @internal the source's floor moved past changes never published. */
  sourceReset(): void {
    const source = this.#hub.source;
    // An in-step watcher needed the old head + 1, which the new floor is past (a snapshot is
    // taken in only by a replica behind it): it lost revisions. One catching up may have too.
    if (this.#inStep || this.#next <= source.floor) this.end(asReplikit(source.floorError(this.#delivered + 1)));
  }

  /** Reads what the watcher still needs from the source; undefined when the page held nothing in range. */
  #catchUp(): WatchMessage | undefined {
    const source = this.#hub.source;
    if (this.#next <= source.floor) {
      this.end(asReplikit(source.floorError(this.#next)));
      return undefined;
    }
    for (let page = 0; page < CATCH_UP_PAGES_PER_PULL; page++) {
      if (this.#next > source.head) {
        this.#inStep = true;
        this.#hub.enterStep(this);
        return undefined;
      }
      let batches: ChangeBatch[];
      try {
        batches = source.read(this.#next, this.#hub.limits.maxMessageBytes);
      } catch (error: unknown) {
        // Compacted (or the node's history replaced) while it caught up.
        this.end(asReplikit(error instanceof Error ? error : new Error(String(error))));
        return undefined;
      }
      if (batches.length === 0) {
        // The source holds nothing up to its head (no change after `next`): in step.
        this.#next = source.head + 1;
        continue;
      }
      const events: RevisionEvent[] = [];
      let bytes = 0;
      for (const batch of batches) {
        const inBatch = batch.events.filter((e) => inRange(this.range, e.kv.key)).map((e) => (this.#prevKv ? e : withoutPrev(e)));
        let batchBytes = 0;
        for (const e of inBatch) batchBytes += eventBytes(e);
        // Within one message's size; the rest is read again at the next pull.
        if (events.length > 0 && bytes + batchBytes > this.#hub.limits.maxMessageBytes) break;
        for (const event of inBatch) events.push({ revision: batch.revision, event });
        bytes += batchBytes;
        this.#next = batch.revision + 1;
      }
      // Caught up: in step at once, so that what is published next is pushed to it (after
      // these events, which its consumer takes first).
      if (this.#next > source.head) {
        this.#inStep = true;
        this.#hub.enterStep(this);
      }
      if (events.length > 0) {
        this.#hub.stats.eventsDelivered += events.length;
        return { kind: 'events', revision: this.#next - 1, events };
      }
      if (this.#inStep) return undefined;
    }
    // Many pages and nothing in range: say how far it got, then carry on at the next pull.
    return { kind: 'progress', revision: this.#next - 1 };
  }

  #take(message: WatchMessage): IteratorResult<WatchMessage> {
    this.#delivered = message.revision;
    this.#armProgress();
    return { done: false, value: message };
  }

  #armProgress(): void {
    this.#progressTimer?.cancel();
    if (this.#ended !== undefined) return;
    this.#progressTimer = this.#hub.scheduler.setTimer(this.#progressIntervalMs, () => {
      this.#progressTimer = undefined;
      // Only while idle: a consumer still reading its buffer hears the revision from its events.
      if (this.#queue.length === 0) this.requestProgress();
      else this.#armProgress();
    });
  }

  #wake(): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.();
  }

  #finish(how: ReplikitError | 'cancelled'): void {
    if (this.#ended !== undefined) return;
    // Every failed watch says where to watch again from to miss nothing.
    if (how !== 'cancelled' && how.details['resume_revision'] === undefined) {
      how = new ReplikitError(how.kind, how.reason, how.message, { details: { ...how.details, resume_revision: String(this.#delivered + 1) }, cause: how });
    }
    this.#ended = how;
    this.#progressTimer?.cancel();
    this.#progressTimer = undefined;
    // What was buffered is dropped: a consumer that resumes starts from deliveredRevision + 1.
    for (const q of this.#queue) {
      this.#hub.stats.pendingBytes -= q.bytes;
      this.#hub.stats.pendingEvents -= q.events;
    }
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    this.#hub.forget(this);
    this.#wake();
  }
}

function withoutPrev(event: ChangeEvent): ChangeEvent {
  return event.prev === undefined ? event : { type: event.type, kv: event.kv };
}

function asReplikit(error: Error): ReplikitError {
  return error instanceof ReplikitError ? error : unavailable('WATCH_SOURCE_FAILED', error.message);
}

