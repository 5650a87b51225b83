/**
 * KvService.Watch on one gRPC stream: the first request creates the watch, later ones ask for
 * progress or cancel it; the watcher's messages go out with backpressure — the next is taken from
 * the watcher only once the stream has room, so a client that stops reading leaves them in the
 * watcher's bounded buffer, which cancels it when full (watch-hub.ts), instead of in the stream's.
 */
import { Metadata, type ServerDuplexStream } from '@grpc/grpc-js';
import { failedPrecondition, invalidArgument, toReplikitError } from '../errors.js';
import { maxSendBytes } from '../node/range-watch-args.js';
import { EventType, type WatchEvent, type WatchRequest, type WatchResponse } from '../gen/replikit/v1/kv_service.js';
import type { NodeCore } from '../node/node-core.js';
import { keyValue } from '../policy/cp/kv-state-machine.js';
import type { RevisionEvent, WatchMessage, Watcher } from '../policy/watch/watch-hub.js';
import { toGrpcStatus } from './status.js';

const CLIENT_CANCELLED = Object.freeze(new Error('the client cancelled the watch'));

export function serveWatch(core: NodeCore, call: ServerDuplexStream<WatchRequest, WatchResponse>): void {
  const sendLimit = maxSendBytes(core.settings.maxValueBytes);
  let watcher: Watcher | undefined;
  let creating = false;
  let finished = false;
  const aborted = new AbortController();

  const fail = (error: unknown, lastRevision: number) => {
    if (finished) return;
    finished = true;
    const e = toReplikitError(error);
    const compact = e.details['compact_revision'];
    const resume = e.details['resume_revision'];
    const last: WatchResponse = {
      revision: BigInt(lastRevision),
      events: [],
      created: false,
      progressNotify: false,
      canceled: true,
      cancelReason: e.message,
      compactRevision: BigInt(compact ?? 0),
      resumeRevision: BigInt(resume ?? 0),
    };
    // The last response says why in fields any client reads; the status says it to gRPC.
    if (lastRevision >= 0 && call.writable) call.write(last);
    const status = toGrpcStatus(e);
    call.emit('error', { code: status.code, details: status.details, metadata: status.metadata ?? new Metadata() });
  };

  const pump = async (w: Watcher) => {
    try {
      for await (const message of w) {
        if (finished) return;
        if (message.kind === 'events' && wireBytes(message) > sendLimit) {
          // grpc-js would fail the stream on it, and a client that watched again would meet it again.
          const first = message.events[0]!.revision;
          throw failedPrecondition('WATCH_REVISION_TOO_LARGE', `revision ${first}'s changes in this watch's range, with their previous values, are about ${wireBytes(message)} bytes, over the ${sendLimit} a message may carry; watch without prev_kv, or from revision ${first + 1}`, { revision: String(first) });
        }
        if (!call.write(toWire(message))) await drained(call);
      }
      if (finished) return;
      finished = true;
      call.write({ revision: BigInt(w.deliveredRevision), events: [], created: false, progressNotify: false, canceled: true, cancelReason: 'canceled by the client', compactRevision: 0n, resumeRevision: 0n });
      call.end();
    } catch (error: unknown) {
      fail(error, w.deliveredRevision);
    }
  };

  call.on('data', (request: WatchRequest) => {
    if (finished) return;
    if (request.create !== undefined) {
      if (watcher !== undefined || creating) return fail(invalidArgument('WATCH_ALREADY_CREATED', 'this stream already carries a watch; open another stream for another watch', { field: 'create' }), -1);
      creating = true;
      const c = request.create;
      core
        .watch(c.keyspace, { key: c.key, rangeEnd: c.rangeEnd, prefix: c.prefix, startRevision: Number(c.startRevision), prevKv: c.prevKv, progressIntervalMs: c.progressIntervalMs }, { signal: aborted.signal })
        .then(
          (w) => {
            if (finished) return w.cancel();
            watcher = w;
            void pump(w);
          },
          (error: unknown) => fail(error, -1),
        );
      return;
    }
    if (watcher === undefined) {
      if (!creating) fail(invalidArgument('WATCH_NOT_CREATED', 'the first request on a Watch stream must be create', { field: 'create' }), -1);
      return;
    }
    if (request.progress !== undefined) watcher.requestProgress();
    else if (request.cancel !== undefined) watcher.cancel();
    else fail(invalidArgument('WATCH_REQUEST_EMPTY', 'a WatchRequest must hold create, progress or cancel'), watcher.deliveredRevision);
  });
  const stop = () => {
    aborted.abort(CLIENT_CANCELLED);
    finished = true;
    watcher?.cancel();
  };
  call.on('cancelled', stop);
  call.on('error', stop);
  // A client that half-closes is done asking; the watch goes on until it cancels or the call ends.
  call.on('end', () => {});
}

function drained(call: ServerDuplexStream<WatchRequest, WatchResponse>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('cancelled', done);
      call.off('close', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
    call.on('close', done);
  });
}

/** An upper bound on a message's encoded size: its keys and values, and room for each event's numbers and version. */
function wireBytes(message: Extract<WatchMessage, { kind: 'events' }>): number {
  let bytes = 64;
  for (const { event } of message.events) {
    bytes += 128 + event.kv.key.byteLength + event.kv.value.byteLength;
    if (event.prev !== undefined) bytes += 128 + event.prev.key.byteLength + event.prev.value.byteLength;
  }
  return bytes;
}

export function toWire(message: WatchMessage): WatchResponse {
  const base = { revision: BigInt(message.revision), events: [] as WatchEvent[], created: false, progressNotify: false, canceled: false, cancelReason: '', compactRevision: 0n, resumeRevision: 0n };
  switch (message.kind) {
    case 'created':
      return { ...base, created: true };
    case 'progress':
      return { ...base, progressNotify: true };
    case 'events':
      return { ...base, events: message.events.map(eventToWire) };
  }
}

function eventToWire(e: RevisionEvent): WatchEvent {
  return {
    type: e.event.type === 'put' ? EventType.EVENT_TYPE_PUT : EventType.EVENT_TYPE_DELETE,
    kv: keyValue(e.event.kv),
    prevKv: e.event.prev === undefined ? undefined : keyValue(e.event.prev),
  };
}

