import { ClockSampleWindow, clockOffsetExceeds } from './clock-sample-window.js';
import type { ClockSample } from './clock-sample-window.js';
import { validateFailureDetectorConfig } from './config.js';
import type { FailureDetectorConfig } from './config.js';
import type {
  HeartbeatOutcome,
  MemberSnapshot,
  MemberState,
  MemberStateCause,
  MembershipEvents,
  QuorumStatus,
} from './membership-types.js';
import { PhiAccrualDetector } from './phi-accrual-detector.js';
import { majorityOf, quorumStateOf } from './quorum.js';
import type { QuorumState } from './quorum.js';
import { TypedEmitter } from './typed-emitter.js';
import type { Listener } from './typed-emitter.js';

/** A peer of this node: its id and its address (HOST:PORT), as configured. */
export interface PeerAddress {
  readonly id: string;
  readonly address: string;
}

/** What a {@link MembershipView} starts from. */
export interface MembershipViewOptions {
  readonly selfId: string;
  /** This node's address, reported in its own snapshot; empty when not given. */
  readonly selfAddress?: string;
  /** This node's incarnation, reported in its own snapshot. */
  readonly selfIncarnation?: number;
  /** Every other member; none may have `selfId`, and ids are unique. */
  readonly peers: readonly PeerAddress[];
  /** Validated on construction. */
  readonly config: FailureDetectorConfig;
  /** When the view was created, in the caller's monotonic milliseconds; starts the grace period. */
  readonly startMs: number;
}

interface PeerRecord {
  readonly id: string;
  address: string;
  detector: PhiAccrualDetector;
  state: MemberState;
  /** Undefined until the first beat. */
  incarnation: number | undefined;
  /** The last beat or successful call; undefined until one arrives. */
  lastHeardMs: number | undefined;
  /** When the current suspicion began; undefined unless SUSPECT. */
  suspectSinceMs: number | undefined;
  readonly clock: ClockSampleWindow;
  clockOffsetExceeded: boolean;
}

interface TrackedQuorum {
  readonly name: string;
  readonly replicaIds: readonly string[];
  readonly quorumSize: number;
  state: QuorumState;
  aliveCount: number;
  pendingCount: number;
}

/**
 * One node's view of its cluster: a phi accrual detector and a state per peer, clock offsets,
 * and quorum reachability for named replica groups (keyspaces, later replica groups of a
 * consistent-hash ring). Pure like etcd's raft core: no I/O, no timers, no clock. The driver
 * feeds it beats, passive evidence from RPCs, ClockSync samples and periodic `tick`s, each with
 * the current time in milliseconds from a monotonic clock, and listens to its events.
 *
 * Time: every input carries `nowMs`. An input whose time is earlier than one already seen (two
 * callbacks that read the clock in one order and reach the view in the other) is taken as
 * happening at the latest time seen, so the view's time never runs backwards.
 *
 * Never-heard peers start DEAD, as the proto defines, and do not count as alive for quorums.
 * So that a CP keyspace does not refuse requests while first beats are merely on their way, a
 * group that only lacks peers never heard from is `pending` rather than `unreachable` until
 * `startupGraceMs` after `startMs`. SUSPECT peers do not count as alive either: phi at the
 * threshold means a live peer would be this late once in 10^8 beats, and a CP request sent to one
 * would most likely wait for its deadline, while the contract is to refuse at once.
 *
 * Events are emitted after the input that caused them has been fully applied, quorums
 * included, so listeners always see a consistent view. They run synchronously, before the input
 * method returns, and may call back into the view; the events of such a nested input follow the
 * ones already queued. A listener that throws does not keep the others from their events: the
 * input method rethrows its error once all have been delivered.
 */
export class MembershipView {
  readonly selfId: string;
  readonly config: Readonly<FailureDetectorConfig>;
  readonly startMs: number;
  readonly #selfAddress: string;
  readonly #selfIncarnation: number | undefined;
  readonly #peers = new Map<string, PeerRecord>();
  readonly #quorums = new Map<string, TrackedQuorum>();
  readonly #emitter = new TypedEmitter<MembershipEvents>();
  readonly #pending: (() => void)[] = [];
  #latestMs: number;

  constructor(options: MembershipViewOptions) {
    validateFailureDetectorConfig(options.config);
    assertTime(options.startMs);
    if (options.selfIncarnation !== undefined) assertIncarnation(options.selfIncarnation);
    this.selfId = options.selfId;
    this.config = Object.freeze({ ...options.config });
    this.startMs = options.startMs;
    this.#latestMs = options.startMs;
    this.#selfAddress = options.selfAddress ?? '';
    this.#selfIncarnation = options.selfIncarnation;
    for (const { id, address } of options.peers) {
      if (id === options.selfId) throw new RangeError(`peer ${JSON.stringify(id)} is this node itself`);
      if (this.#peers.has(id)) throw new RangeError(`peer ${JSON.stringify(id)} is listed twice`);
      this.#addPeer(id, address);
    }
  }

  #addPeer(id: string, address: string): void {
    this.#peers.set(id, {
      id,
      address,
      detector: this.#newDetector(),
      state: 'DEAD',
      incarnation: undefined,
      lastHeardMs: undefined,
      suspectSinceMs: undefined,
      clock: new ClockSampleWindow(this.config.clockSampleWindow),
      clockOffsetExceeded: false,
    });
  }

  /**
   * The membership changed: from now on the peers are exactly `peers`. A new peer starts as one
   * never heard from (DEAD until its first beat); a peer that left is forgotten, and dropped from
   * every tracked quorum (re-track a quorum to give it new replicas). Returns who came and went.
   */
  setPeers(peers: readonly PeerAddress[]): { added: string[]; removed: string[] } {
    const wanted = new Map(peers.filter((p) => p.id !== this.selfId).map((p) => [p.id, p.address]));
    const removed = [...this.#peers.keys()].filter((id) => !wanted.has(id));
    const added: string[] = [];
    for (const id of removed) this.#peers.delete(id);
    for (const [id, address] of wanted) {
      const record = this.#peers.get(id);
      if (record === undefined) {
        this.#addPeer(id, address);
        added.push(id);
      } else {
        record.address = address;
      }
    }
    if (removed.length > 0) {
      for (const [name, tracked] of this.#quorums) {
        if (!tracked.replicaIds.some((id) => removed.includes(id))) continue;
        const replicaIds = tracked.replicaIds.filter((id) => !removed.includes(id));
        this.#quorums.delete(name);
        if (replicaIds.length > 0) this.trackQuorum(name, replicaIds);
      }
    }
    return { added, removed };
  }

  /** True when `id` is a peer of this node now. */
  hasPeer(id: string): boolean {
    return this.#peers.has(id);
  }

  /** Adds a listener; returns a function that removes it. See the class comment for timing. */
  on<K extends keyof MembershipEvents>(type: K, listener: Listener<MembershipEvents[K]>): () => void {
    return this.#emitter.on(type, listener);
  }

  /** Removes a listener added with {@link on}. */
  off<K extends keyof MembershipEvents>(type: K, listener: Listener<MembershipEvents[K]>): void {
    this.#emitter.off(type, listener);
  }

  /**
   * A beat from `peer` carrying `incarnation` arrived at `nowMs`.
   * - A lower incarnation than known comes from a previous life of the peer (a late message on an
   *   old stream): it is ignored entirely, and proves nothing about the current one.
   * - The first beat, or a higher incarnation, means a new life: the detector starts afresh,
   *   because the old intervals describe a process that no longer exists.
   * - Any accepted beat makes the peer ALIVE.
   */
  recordHeartbeat(peer: string, incarnation: number, nowMs: number): HeartbeatOutcome {
    const record = this.#peer(peer);
    assertIncarnation(incarnation);
    const now = this.#advance(nowMs);
    const known = record.incarnation;
    if (known !== undefined && incarnation < known) return 'stale';
    const isNew = known === undefined || incarnation > known;
    if (isNew) {
      record.detector = this.#newDetector();
      record.incarnation = incarnation;
    }
    record.detector.heartbeat(now);
    record.lastHeardMs = now;
    this.#makeAlive(record, known !== undefined && isNew ? 'new-incarnation' : 'heartbeat', now);
    this.#settle(now);
    return isNew ? 'new-incarnation' : 'accepted';
  }

  /**
   * Passive evidence from an RPC to or from `peer` that ended at `nowMs` (and started at
   * `callStartMs`, by default `nowMs`), as the interceptors record it.
   *
   * A success is life: phi measures silence from now on and a SUSPECT or DEAD peer becomes ALIVE,
   * but no interval is recorded, so RPC traffic cannot distort the beat statistics (see
   * `PhiAccrualDetector.observeLife`).
   *
   * A failure (`UNAVAILABLE`, `DEADLINE_EXCEEDED`) makes an ALIVE peer SUSPECT at once, without
   * waiting for phi, so quorum checks stop counting it within one call rather than half a second
   * later; its beats clear the suspicion if it is alive, and `deadAfterMs` confirms it if not. It
   * counts only if nothing was heard from the peer since the call started: a call that timed out
   * while beats kept arriving was slow on its own account, and says nothing about the peer.
   */
  recordEvidence(peer: string, ok: boolean, nowMs: number, callStartMs: number = nowMs): void {
    const record = this.#peer(peer);
    assertTime(callStartMs);
    const now = this.#advance(nowMs);
    if (ok) {
      record.detector.observeLife(now);
      record.lastHeardMs = now;
      this.#makeAlive(record, 'call-succeeded', now);
    } else if (record.state === 'ALIVE') {
      const heardDuringCall = record.lastHeardMs !== undefined && record.lastHeardMs >= Math.min(callStartMs, now);
      if (!heardDuringCall) this.#transition(record, 'SUSPECT', 'call-failed', now);
    }
    this.#settle(now);
  }

  /**
   * A ClockSync sample of `peer` taken at `nowMs`. The lowest-RTT of the last `clockSampleWindow`
   * samples gives the peer's offset and RTT; the peer is flagged while that offset exceeds
   * `maxClockOffsetMs` beyond its error bound (see `clockOffsetExceeds`), with an event on each
   * change of the flag.
   */
  recordClockSample(peer: string, sample: ClockSample, nowMs: number): void {
    const record = this.#peer(peer);
    const now = this.#advance(nowMs);
    record.clock.add(sample);
    const best = record.clock.best();
    if (best !== undefined) {
      const exceeded = clockOffsetExceeds(best, this.config.maxClockOffsetMs);
      if (exceeded !== record.clockOffsetExceeded) {
        record.clockOffsetExceeded = exceeded;
        const change = {
          peer: record.id,
          offsetMs: best.offsetMs,
          rttMs: best.rttMs,
          maxClockOffsetMs: this.config.maxClockOffsetMs,
          atMs: now,
        };
        this.#pending.push(() => this.#emitter.emit(exceeded ? 'clock-offset-exceeded' : 'clock-offset-ok', change));
      }
    }
    this.#settle(now);
  }

  /**
   * Re-evaluates every peer at `nowMs`: ALIVE → SUSPECT when phi reaches the threshold, SUSPECT →
   * DEAD after `deadAfterMs` of continuous suspicion, and quorums (which also end the startup
   * grace period). Call it every `tickIntervalMs`; each change lags its due time by up to a tick.
   */
  tick(nowMs: number): void {
    const now = this.#advance(nowMs);
    for (const record of this.#peers.values()) {
      if (record.state === 'ALIVE') {
        if (record.detector.phi(now) >= this.config.phiThreshold) this.#transition(record, 'SUSPECT', 'phi', now);
      } else if (record.state === 'SUSPECT') {
        const since = record.suspectSinceMs ?? now;
        if (now - since >= this.config.deadAfterMs) this.#transition(record, 'DEAD', 'confirmed', now);
      }
    }
    this.#settle(now);
  }

  /**
   * Starts tracking whether `replicaIds` (members of this view, this node possibly among them)
   * can form a quorum of `quorumSize`, by default a majority of them. Emits `quorum-lost` and
   * `quorum-regained` for `name` from now on; returns the current status (no event for it).
   */
  trackQuorum(name: string, replicaIds: readonly string[], quorumSize?: number): QuorumStatus {
    if (this.#quorums.has(name)) throw new RangeError(`quorum ${JSON.stringify(name)} is already tracked`);
    if (replicaIds.length === 0) throw new RangeError(`quorum ${JSON.stringify(name)} needs at least one replica`);
    const size = quorumSize ?? majorityOf(replicaIds.length);
    const seen = new Set<string>();
    for (const id of replicaIds) {
      if (id !== this.selfId && !this.#peers.has(id)) {
        throw new RangeError(`quorum ${JSON.stringify(name)} names ${JSON.stringify(id)}, which is not a member`);
      }
      if (seen.has(id)) throw new RangeError(`quorum ${JSON.stringify(name)} lists ${JSON.stringify(id)} twice`);
      seen.add(id);
    }
    if (!Number.isSafeInteger(size) || size < 1 || size > replicaIds.length) {
      throw new RangeError(
        `quorumSize (${size}) of ${JSON.stringify(name)} must be an integer from 1 to its replica count (${replicaIds.length})`,
      );
    }
    const tracked: TrackedQuorum = {
      name,
      replicaIds: Object.freeze([...replicaIds]),
      quorumSize: size,
      state: 'unreachable',
      aliveCount: 0,
      pendingCount: 0,
    };
    this.#measure(tracked, this.#latestMs);
    tracked.state = quorumStateOf(tracked.aliveCount, tracked.pendingCount, size);
    this.#quorums.set(name, tracked);
    return statusOf(tracked);
  }

  /** Stops tracking `name`; returns whether it was tracked. */
  untrackQuorum(name: string): boolean {
    return this.#quorums.delete(name);
  }

  /** The quorum status of a tracked group as of the latest input. */
  quorum(name: string): QuorumStatus {
    return statusOf(this.#tracked(name));
  }

  /**
   * True when enough replicas of `name` are ALIVE now. False while the group is `pending` at
   * startup too; a CP policy that should not refuse then asks {@link quorum} for the state.
   */
  isQuorumReachable(name: string): boolean {
    return this.#tracked(name).state === 'reachable';
  }

  /** True when `peer` is ALIVE; always true for this node itself. */
  isAlive(peer: string): boolean {
    return peer === this.selfId || this.#peer(peer).state === 'ALIVE';
  }

  /** The state of `peer` as of the latest input; ALIVE for this node itself. */
  stateOf(peer: string): MemberState {
    return peer === this.selfId ? 'ALIVE' : this.#peer(peer).state;
  }

  /** The number of ALIVE members, this node included. */
  aliveCount(): number {
    let count = 1;
    for (const record of this.#peers.values()) if (record.state === 'ALIVE') count += 1;
    return count;
  }

  /** The ids of the peers (this node excluded), in the order given. */
  peerIds(): string[] {
    return [...this.#peers.keys()];
  }

  /**
   * A snapshot of every member at `nowMs`, this node first. States are as of the latest input
   * (call {@link tick} first for fresh ones); phi and ages are computed at `nowMs`. A query: it
   * changes nothing and emits nothing.
   */
  members(nowMs: number): MemberSnapshot[] {
    assertTime(nowMs);
    const self: MemberSnapshot = {
      id: this.selfId,
      address: this.#selfAddress,
      self: true,
      state: 'ALIVE',
      phi: 0,
      lastHeardAgeMs: 0,
      rttMs: 0,
      clockOffsetMs: 0,
      clockOffsetExceeded: false,
      incarnation: this.#selfIncarnation,
    };
    return [self, ...[...this.#peers.values()].map((record) => this.#snapshot(record, nowMs))];
  }

  /** The snapshot of one peer at `nowMs`; see {@link members}. */
  member(peer: string, nowMs: number): MemberSnapshot {
    assertTime(nowMs);
    return this.#snapshot(this.#peer(peer), nowMs);
  }

  /** The detector of `peer`'s current incarnation, for diagnostics and tests; do not feed it. */
  detectorOf(peer: string): PhiAccrualDetector {
    return this.#peer(peer).detector;
  }

  #snapshot(record: PeerRecord, nowMs: number): MemberSnapshot {
    const best = record.clock.best();
    return {
      id: record.id,
      address: record.address,
      self: false,
      state: record.state,
      phi: record.detector.phi(nowMs),
      lastHeardAgeMs: record.lastHeardMs === undefined ? undefined : Math.max(0, nowMs - record.lastHeardMs),
      rttMs: best?.rttMs,
      clockOffsetMs: best?.offsetMs,
      clockOffsetExceeded: record.clockOffsetExceeded,
      incarnation: record.incarnation,
    };
  }

  #makeAlive(record: PeerRecord, cause: MemberStateCause, now: number): void {
    if (record.state !== 'ALIVE') this.#transition(record, 'ALIVE', cause, now);
  }

  #transition(record: PeerRecord, to: MemberState, cause: MemberStateCause, now: number): void {
    const from = record.state;
    if (from === to) return;
    record.state = to;
    record.suspectSinceMs = to === 'SUSPECT' ? now : undefined;
    const change = {
      peer: record.id,
      from,
      to,
      cause,
      phi: record.detector.phi(now),
      incarnation: record.incarnation,
      atMs: now,
    };
    this.#pending.push(() => this.#emitter.emit('member-state', change));
  }

  /** Re-measures every quorum, queues their events, then delivers every queued event. */
  #settle(now: number): void {
    for (const tracked of this.#quorums.values()) {
      this.#measure(tracked, now);
      const from = tracked.state;
      const to = quorumStateOf(tracked.aliveCount, tracked.pendingCount, tracked.quorumSize);
      if (from === to) continue;
      tracked.state = to;
      const change = {
        name: tracked.name,
        from,
        to,
        aliveCount: tracked.aliveCount,
        quorumSize: tracked.quorumSize,
        replicaCount: tracked.replicaIds.length,
        atMs: now,
      };
      if (to === 'unreachable') this.#pending.push(() => this.#emitter.emit('quorum-lost', change));
      if (to === 'reachable') this.#pending.push(() => this.#emitter.emit('quorum-regained', change));
    }
    this.#flush();
  }

  #measure(tracked: TrackedQuorum, now: number): void {
    const inGrace = now < this.startMs + this.config.startupGraceMs;
    let alive = 0;
    let pending = 0;
    for (const id of tracked.replicaIds) {
      if (id === this.selfId) {
        alive += 1;
        continue;
      }
      const record = this.#peer(id);
      if (record.state === 'ALIVE') alive += 1;
      else if (inGrace && record.lastHeardMs === undefined) pending += 1;
    }
    tracked.aliveCount = alive;
    tracked.pendingCount = pending;
  }

  /**
   * Delivers queued events in order. A listener's error is kept until every event has been
   * delivered, then rethrown, so one faulty listener cannot make others miss a state change.
   */
  #flush(): void {
    const errors: unknown[] = [];
    for (let deliver = this.#pending.shift(); deliver !== undefined; deliver = this.#pending.shift()) {
      try {
        deliver();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} membership listeners threw`);
  }

  #advance(nowMs: number): number {
    assertTime(nowMs);
    this.#latestMs = Math.max(this.#latestMs, nowMs);
    return this.#latestMs;
  }

  #peer(id: string): PeerRecord {
    const record = this.#peers.get(id);
    if (record === undefined) {
      throw new RangeError(
        id === this.selfId ? `${JSON.stringify(id)} is this node, not a peer` : `${JSON.stringify(id)} is not a peer of this node`,
      );
    }
    return record;
  }

  #tracked(name: string): TrackedQuorum {
    const tracked = this.#quorums.get(name);
    if (tracked === undefined) throw new RangeError(`quorum ${JSON.stringify(name)} is not tracked`);
    return tracked;
  }

  #newDetector(): PhiAccrualDetector {
    return new PhiAccrualDetector({
      threshold: this.config.phiThreshold,
      maxSampleSize: this.config.maxSampleSize,
      minStdDeviationMs: this.config.minStdDeviationMs,
      acceptableHeartbeatPauseMs: this.config.acceptableHeartbeatPauseMs,
      firstHeartbeatEstimateMs: this.config.heartbeatIntervalMs,
    });
  }
}

function statusOf(tracked: TrackedQuorum): QuorumStatus {
  return {
    name: tracked.name,
    replicaIds: tracked.replicaIds,
    replicaCount: tracked.replicaIds.length,
    quorumSize: tracked.quorumSize,
    aliveCount: tracked.aliveCount,
    pendingCount: tracked.pendingCount,
    state: tracked.state,
  };
}

function assertTime(nowMs: number): void {
  if (!Number.isFinite(nowMs)) throw new RangeError(`a time is a finite number of milliseconds, not ${nowMs}`);
}

function assertIncarnation(incarnation: number): void {
  if (!Number.isSafeInteger(incarnation) || incarnation < 0) {
    throw new RangeError(`an incarnation is a non-negative safe integer, not ${incarnation}`);
  }
}
