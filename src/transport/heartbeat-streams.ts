import { Metadata, status as Status, type ClientDuplexStream, type ServerDuplexStream } from '@grpc/grpc-js';
import { repeatEvery, type HybridLogicalClock, type Scheduler, type TimerHandle, type WallClock } from '../clock/index.js';
import type { Beat, HeartbeatRequest, HeartbeatResponse } from '../gen/replikit/v1/replica_service.js';
import { NODE_ID_METADATA_KEY } from '../interceptors/metadata-keys.js';
import { observeRemoteHlc } from '../interceptors/remote-hlc.js';
import type { Logger } from '../logging/logger.js';
import type { GrpcReplicaSet } from './grpc-replica-set.js';
import { hlcFromWire, hlcToWire } from './wire.js';

/** First delay before reopening a broken stream; doubles up to the maximum, with full jitter. */
const REOPEN_BACKOFF_INITIAL_MS = 50;
/** The longest wait between attempts: a restarted peer is found again within about this long. */
const REOPEN_BACKOFF_MAX_MS = 1_000;
/**
 * Beat intervals a newly accepted stream may stay silent before it is closed: a real peer beats
 * at once on a stream it opens, so five intervals (500 ms on a LAN) is generous.
 */
export const CANDIDATE_IDLE_BEATS = 5;

/** Where accepted beats go (the membership view), and who is allowed to send them. */
export interface BeatSink {
  /** A valid beat from `peer` arrived. */
  onBeat(peer: string, incarnation: number): void;
  /** A beat or stream was refused; `reason` says why (for the counter and the log). */
  onRefused(peer: string | undefined, reason: string): void;
  /**
   * The working stream with `peer` broke (connection reset, peer gone): evidence against it,
   * unless the peer was heard from since `sinceMs` (the stream's last beat, or its opening).
   */
  onBroken(peer: string, why: string, sinceMs: number): void;
}

export interface HeartbeatStreamsOptions {
  readonly selfId: string;
  readonly clusterId: string;
  readonly incarnation: number;
  readonly knownPeerIds: ReadonlySet<string>;
  readonly heartbeatIntervalMs: number;
  readonly maxClockOffsetMs: number;
  readonly replicas: Pick<GrpcReplicaSet, 'client'>;
  readonly clock: HybridLogicalClock;
  readonly wallClock: WallClock;
  readonly scheduler: Scheduler;
  readonly random: () => number;
  readonly sink: BeatSink;
  readonly logger: Logger;
}

type AnyStream = ClientDuplexStream<HeartbeatRequest, HeartbeatResponse> | ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>;

/**
 * One bidirectional Heartbeat stream between every pair of nodes: the node with the smaller id
 * opens it (and reopens it with jittered exponential backoff when it breaks), the other accepts
 * it; both sides send a beat every heartbeat interval on it. A beat is checked before it counts:
 * it must name the stream's caller and this cluster, carry a positive incarnation and a valid
 * HLC, and that HLC must not run too far ahead. A stream that sends anything else is closed
 * without touching the others.
 */
export class HeartbeatStreams {
  readonly #o: HeartbeatStreamsOptions;
  /** The live stream per peer, whichever side opened it. */
  readonly #streams = new Map<string, AnyStream>();
  readonly #timers = new Set<TimerHandle>();
  readonly #backoffMs = new Map<string, number>();
  #sequence = 0;
  #closed = false;
  /** Per peer, the one stream it opened that has not carried a beat yet (see accept). */
  readonly #candidates = new Map<string, ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>>();

  constructor(options: HeartbeatStreamsOptions) {
    this.#o = options;
  }

  /** Opens the streams this node is responsible for and starts beating. */
  start(): void {
    for (const peer of this.#o.knownPeerIds) if (this.#o.selfId < peer) this.#open(peer);
    this.#every(this.#o.heartbeatIntervalMs, () => {
      for (const [peer, stream] of this.#streams) this.#send(peer, stream);
    });
  }

  /** Takes over a stream a peer opened to this node (the server handler). */
  accept(stream: ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>): void {
    const caller = stream.metadata.get(NODE_ID_METADATA_KEY)[0];
    const peer = typeof caller === 'string' ? caller : undefined;
    if (this.#closed || peer === undefined || !this.#o.knownPeerIds.has(peer)) {
      // The identity interceptor refuses unknown callers first; this guards direct use.
      this.#o.sink.onRefused(peer, 'unknown caller');
      stream.emit('error', { code: Status.PERMISSION_DENIED, details: 'heartbeats are accepted from members only' });
      return;
    }
    if (!(peer < this.#o.selfId)) {
      this.#o.sink.onRefused(peer, 'stream opened by the wrong side');
      stream.emit('error', {
        code: Status.FAILED_PRECONDITION,
        details: `${this.#o.selfId} opens the heartbeat stream to ${peer}, not the other way round (the smaller id opens)`,
      });
      return;
    }
    // The stream replaces the peer's current one only once it has carried a valid beat, so a
    // stream that sends garbage from the start never disturbs the one that works. At most one
    // such candidate per peer: a newer one replaces it, and one that sends no beat within a few
    // intervals is closed, so idle streams claiming a member's id cannot pile up.
    const previous = this.#candidates.get(peer);
    if (previous !== undefined) this.#drop(previous, 'replaced by a newer heartbeat stream from the same peer');
    this.#candidates.set(peer, stream);
    const idle = this.#o.scheduler.setTimer(CANDIDATE_IDLE_BEATS * this.#o.heartbeatIntervalMs, () => {
      if (this.#candidates.get(peer) !== stream) return;
      this.#candidates.delete(peer);
      this.#drop(stream, 'no beat on a new heartbeat stream');
    });
    const settle = () => {
      idle.cancel();
      if (this.#candidates.get(peer) === stream) this.#candidates.delete(peer);
    };
    stream.once('data', settle);
    stream.once('error', settle);
    stream.once('close', settle);
    this.#attach(peer, stream, false);
  }

  /**
   * The membership changed: `knownPeerIds` (the same set, updated by the caller) now names the
   * members. Streams to peers that left end; this node opens the streams it owns to new ones.
   */
  membersChanged(): void {
    if (this.#closed) return;
    for (const [peer, stream] of [...this.#streams]) {
      if (this.#o.knownPeerIds.has(peer)) continue;
      this.#streams.delete(peer);
      this.#drop(stream, `${peer} is no longer a member`);
    }
    for (const peer of this.#o.knownPeerIds) if (this.#o.selfId < peer && !this.#streams.has(peer)) this.#open(peer);
  }

  /** The peers with a live stream now. */
  connectedPeers(): string[] {
    return [...this.#streams.keys()];
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers) t.cancel();
    this.#timers.clear();
    for (const stream of this.#streams.values()) {
      if ('cancel' in stream) stream.cancel();
      else stream.end();
    }
    this.#streams.clear();
  }

  #open(peer: string): void {
    if (this.#closed) return;
    const client = this.#o.replicas.client(peer);
    const stream = client.heartbeat(new Metadata());
    this.#attach(peer, stream, true);
    this.#send(peer, stream);
  }

  #attach(peer: string, stream: AnyStream, current: boolean): void {
    const makeCurrent = () => {
      const previous = this.#streams.get(peer);
      if (previous !== undefined && previous !== stream) this.#drop(previous);
      this.#streams.set(peer, stream);
    };
    if (current) makeCurrent();
    let ended = false;
    let lastSignMs = this.#o.scheduler.nowMs();
    const end = (why: string, broken: boolean) => {
      if (ended) return;
      ended = true;
      const wasCurrent = this.#streams.get(peer) === stream;
      if (wasCurrent) this.#streams.delete(peer);
      this.#o.logger.debug('heartbeat stream ended', { peer, why });
      // A working stream that breaks under us says the peer is likely gone: tell the detector at
      // once instead of waiting for phi to notice the silence.
      if (wasCurrent && broken && !this.#closed) this.#o.sink.onBroken(peer, why, lastSignMs);
      if (wasCurrent && this.#o.selfId < peer) this.#reopenLater(peer);
    };
    stream.on('data', (message: HeartbeatRequest | HeartbeatResponse) => {
      const problem = this.#check(peer, message.beat);
      if (problem !== undefined) {
        this.#o.sink.onRefused(peer, problem);
        this.#o.logger.warn('closed a heartbeat stream that sent an invalid beat', { peer, problem });
        this.#drop(stream, problem);
        end(problem, false);
        return;
      }
      this.#backoffMs.delete(peer);
      lastSignMs = this.#o.scheduler.nowMs();
      if (this.#streams.get(peer) !== stream) makeCurrent();
      this.#o.sink.onBeat(peer, Number(message.beat!.incarnation));
    });
    stream.on('error', (err: Error) => end(err.message, true));
    stream.on('end', () => end('ended by peer', true));
    stream.on('close', () => end('closed', true));
  }

  /** Why a beat from `peer` is refused, or undefined when it is valid. */
  #check(peer: string, beat: Beat | undefined): string | undefined {
    if (beat === undefined) return 'a heartbeat message without a beat';
    if (beat.nodeId !== peer) return `a beat naming ${JSON.stringify(beat.nodeId)} on ${peer}'s stream`;
    if (beat.clusterId !== this.#o.clusterId) return `a beat from cluster ${JSON.stringify(beat.clusterId)}, not ${JSON.stringify(this.#o.clusterId)}`;
    if (beat.incarnation <= 0n || beat.incarnation > BigInt(Number.MAX_SAFE_INTEGER)) return `a beat with incarnation ${beat.incarnation}`;
    try {
      const remote = hlcFromWire(beat.hlc, 'beat');
      const observed = observeRemoteHlc(remote, this.#o.clock, { maxClockOffsetMs: this.#o.maxClockOffsetMs });
      if (observed.kind === 'too-far-ahead') return `a beat whose HLC is ${observed.aheadMs} ms ahead (limit ${observed.maxClockOffsetMs} ms)`;
      if (observed.kind === 'malformed') return `a beat with a malformed HLC: ${observed.reason}`;
    } catch (err: unknown) {
      return err instanceof Error ? err.message : String(err);
    }
    return undefined;
  }

  #send(peer: string, stream: AnyStream): void {
    const beat: Beat = {
      nodeId: this.#o.selfId,
      clusterId: this.#o.clusterId,
      incarnation: BigInt(this.#o.incarnation),
      sequence: BigInt(++this.#sequence),
      sendWallTimeMs: BigInt(Math.floor(this.#o.wallClock())),
      hlc: hlcToWire(this.#o.clock.now()),
    };
    try {
      // Beats are tiny and the interval long, so a full write buffer means the peer is stuck:
      // skip the beat rather than queue it (the bound on this queue is zero).
      if (stream.writableNeedDrain) return;
      stream.write({ beat });
    } catch (err: unknown) {
      this.#o.logger.debug('could not send a beat', { peer, error: String(err) });
    }
  }

  #drop(stream: AnyStream, why?: string): void {
    if ('cancel' in stream) stream.cancel();
    else stream.emit('error', { code: Status.INVALID_ARGUMENT, details: why ?? 'replaced by a newer stream from the same peer' });
  }

  #reopenLater(peer: string): void {
    if (this.#closed) return;
    const backoff = Math.min(REOPEN_BACKOFF_MAX_MS, (this.#backoffMs.get(peer) ?? REOPEN_BACKOFF_INITIAL_MS / 2) * 2);
    this.#backoffMs.set(peer, backoff);
    const timer = this.#o.scheduler.setTimer(this.#o.random() * backoff, () => {
      this.#timers.delete(timer);
      if (!this.#streams.has(peer) && this.#o.knownPeerIds.has(peer)) this.#open(peer);
    });
    this.#timers.add(timer);
  }

  #every(intervalMs: number, fn: () => void): void {
    this.#timers.add(repeatEvery(this.#o.scheduler, intervalMs, fn));
  }
}
