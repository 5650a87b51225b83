/**
 * An embedded node's watch (NodeCore.watch's Watcher) in the client's shapes: the same
 * {@link WatchItem}s and {@link WatchError}s as a remote watch, without the network. It does not
 * resume elsewhere: it ends with the error (its `resumeRevision` says where to watch again from).
 */
import { toReplikitError } from '../errors.js';
import type { StoredKey } from '../policy/cp/kv-state-machine.js';
import type { RevisionEvent, Watcher } from '../policy/watch/watch-hub.js';
import { eventsOf, type KeyValue, type WatchEvent, type WatchItem, type WatchStream } from './types.js';
import { WatchError } from './watch-error.js';

export class LocalWatch implements WatchStream {
  readonly #watcher: Watcher;
  readonly #progressNotify: boolean;
  #complete = 0;

  constructor(watcher: Watcher, progressNotify: boolean) {
    this.#watcher = watcher;
    this.#progressNotify = progressNotify;
    this.#complete = Math.max(0, watcher.deliveredRevision);
  }

  get completeRevision(): number {
    return this.#complete;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchItem> {
    return this;
  }

  async next(): Promise<IteratorResult<WatchItem>> {
    for (;;) {
      let result: IteratorResult<Awaited<ReturnType<Watcher['next']>>['value']>;
      try {
        result = await this.#watcher.next();
      } catch (err: unknown) {
        const e = toReplikitError(err);
        const compact = e.details['compact_revision'];
        const resume = Number(e.details['resume_revision'] ?? this.#complete + 1);
        throw new WatchError(e, compact === undefined ? undefined : Number(compact), compact === undefined ? resume : Number(compact) + 1);
      }
      if (result.done === true) return { done: true, value: undefined };
      const message = result.value;
      if (message.revision > this.#complete) this.#complete = message.revision;
      if (message.kind === 'events') return { done: false, value: { kind: 'events', revision: message.revision, events: message.events.map(eventOf) } };
      if (message.kind === 'progress' && this.#progressNotify) return { done: false, value: { kind: 'progress', revision: message.revision } };
    }
  }

  async return(): Promise<IteratorResult<WatchItem>> {
    this.cancel();
    return { done: true, value: undefined };
  }

  requestProgress(): void {
    this.#watcher.requestProgress();
  }

  cancel(): void {
    this.#watcher.cancel();
  }

  events(): AsyncIterableIterator<WatchEvent> {
    return eventsOf(this);
  }
}

export function keyValueOf(k: StoredKey): KeyValue {
  return { key: k.key, value: k.value, createRevision: k.createRevision, modRevision: k.modRevision, version: k.version };
}

function eventOf(e: RevisionEvent): WatchEvent {
  const kv = keyValueOf(e.event.kv);
  const prev = e.event.prev === undefined ? undefined : keyValueOf(e.event.prev);
  return {
    type: e.event.type,
    key: kv.key,
    value: kv.value,
    revision: e.revision,
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
    ...(prev === undefined ? {} : { prevValue: prev.value, prevKv: prev }),
  };
}
