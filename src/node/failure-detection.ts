import { repeatEvery, type HybridLogicalClock, type Scheduler, type TimerHandle, type WallClock } from '../clock/index.js';
import { MembershipView, type FailureDetectorConfig } from '../failure/index.js';
import type { Logger } from '../logging/logger.js';
import type { LivenessOracle } from '../policy/policy.js';
import { sampleClock } from '../transport/clock-sync-client.js';
import type { GrpcReplicaSet } from '../transport/grpc-replica-set.js';
import { HeartbeatStreams } from '../transport/heartbeat-streams.js';
import type { PeerConfig } from './config.js';

/**
 * How often each peer's clock is sampled. The estimator keeps the best of the last 8 samples, so
 * an offset estimate follows a clock step within about 8 s; ClockSync is one tiny unary call.
 */
const CLOCK_SYNC_INTERVAL_MS = 1_000;
/** Distinct reasons the refusal counter (and its metrics label) keeps; the rest count as `other`. */
export const MAX_REFUSAL_REASONS = 32;
/** A ClockSync sample that takes longer than this is worthless for offset estimation anyway. */
const CLOCK_SYNC_DEADLINE_MS = 1_000;

export interface FailureDetectionOptions {
  readonly selfId: string;
  readonly selfAddress: string | undefined;
  readonly clusterId: string;
  readonly incarnation: number;
  readonly peers: readonly PeerConfig[];
  readonly keyspaces: readonly string[];
  readonly config: FailureDetectorConfig;
  /** Peer clients (heartbeats, ClockSync) and the calls to abandon when a peer is suspected. */
  readonly replicas: Pick<GrpcReplicaSet, 'client' | 'abandonCalls'>;
  readonly clock: HybridLogicalClock;
  readonly wallClock: WallClock;
  readonly scheduler: Scheduler;
  readonly logger: Logger;
}

/**
 * The driver of a node's failure detection: feeds the pure MembershipView with heartbeats (one
 * stream per pair of nodes), passive evidence from RPCs, ClockSync samples and periodic ticks,
 * and logs every state change once, at info (never a line per request).
 */
export class FailureDetection {
  readonly view: MembershipView;
  readonly streams: HeartbeatStreams;
  /** Beats and streams refused, by reason (unknown node, other cluster, garbage). */
  readonly refused = new Map<string, number>();
  readonly #o: FailureDetectionOptions;
  readonly #timers = new Set<TimerHandle>();
  #closed = false;
  /** The members' ids (the heartbeat streams read the same set). */
  readonly #knownPeerIds: Set<string>;
  #peers: readonly PeerConfig[];
  readonly #keyspaces: readonly string[];

  constructor(options: FailureDetectionOptions) {
    this.#o = options;
    this.#peers = options.peers;
    this.#keyspaces = options.keyspaces;
    this.#knownPeerIds = new Set(options.peers.map((p) => p.id));
    const { scheduler, logger } = options;
    this.view = new MembershipView({
      selfId: options.selfId,
      selfAddress: options.selfAddress,
      selfIncarnation: options.incarnation,
      peers: options.peers,
      config: options.config,
      startMs: scheduler.nowMs(),
    });
    const replicaIds = [options.selfId, ...options.peers.map((p) => p.id)];
    for (const name of options.keyspaces) this.view.trackQuorum(name, replicaIds);
    this.view.on('member-state', (c) =>
      logger.info(`member ${c.peer} is ${c.to}`, { peer: c.peer, from: c.from, to: c.to, cause: c.cause, phi: round(c.phi), incarnation: c.incarnation }),
    );
    // Calls that wait for a peer's channel end as soon as the peer is no longer believed alive,
    // so a quorum operation that needed it fails now rather than at its deadline.
    this.view.on('member-state', (c) => {
      if (c.to !== 'ALIVE') options.replicas.abandonCalls(c.peer, `${c.peer} is ${c.to} (${c.cause})`);
    });
    this.view.on('quorum-lost', (c) => logger.warn(`quorum lost for keyspace ${c.name}`, { keyspace: c.name, alive: c.aliveCount, quorum: c.quorumSize }));
    this.view.on('quorum-regained', (c) => logger.info(`quorum reachable for keyspace ${c.name}`, { keyspace: c.name, alive: c.aliveCount, quorum: c.quorumSize }));
    this.view.on('clock-offset-exceeded', (c) =>
      logger.warn(`clock of ${c.peer} is ${round(c.offsetMs)} ms off; the limit is ${c.maxClockOffsetMs} ms`, { peer: c.peer, offsetMs: round(c.offsetMs), rttMs: round(c.rttMs) }),
    );
    this.view.on('clock-offset-ok', (c) => logger.info(`clock of ${c.peer} is back within the limit`, { peer: c.peer, offsetMs: round(c.offsetMs) }));

    this.streams = new HeartbeatStreams({
      selfId: options.selfId,
      clusterId: options.clusterId,
      incarnation: options.incarnation,
      knownPeerIds: this.#knownPeerIds,
      heartbeatIntervalMs: options.config.heartbeatIntervalMs,
      maxClockOffsetMs: options.config.maxClockOffsetMs,
      replicas: options.replicas,
      clock: options.clock,
      wallClock: options.wallClock,
      scheduler,
      random: Math.random,
      logger,
      sink: {
        onBeat: (peer, incarnation) => {
          this.view.recordHeartbeat(peer, incarnation, scheduler.nowMs());
        },
        onRefused: (_peer, reason) => this.countRefused(reason),
        onBroken: (peer, _why, sinceMs) => this.recordEvidence(peer, false, sinceMs),
      },
    });
  }

  /**
   * The membership changed (see node/cluster-membership.ts): beats, ClockSync and quorum tracking
   * follow `peers` (every member but this node) from now on; `voters` (this node included when
   * it is one) are whom the keyspaces' quorums count.
   */
  setPeers(peers: readonly PeerConfig[], voters: readonly string[]): void {
    if (this.#closed) return;
    const { added, removed } = this.view.setPeers(peers);
    this.#peers = peers.filter((p) => p.id !== this.#o.selfId);
    this.#knownPeerIds.clear();
    for (const p of this.#peers) this.#knownPeerIds.add(p.id);
    const quorumIds = voters.filter((id) => id === this.#o.selfId || this.#knownPeerIds.has(id));
    for (const name of this.#keyspaces) {
      this.view.untrackQuorum(name);
      if (quorumIds.length > 0) this.view.trackQuorum(name, quorumIds);
    }
    // Calls to a member that left are not abandoned here: its last messages (the one that tells
    // it of its removal) are still on their way; the transport closes its connection later.
    if (added.length > 0 || removed.length > 0) {
      this.#o.logger.info('membership changed', { added, removed, peers: this.#peers.map((p) => p.id) });
      this.streams.membersChanged();
    }
  }

  /** Liveness for the policies: ALIVE peers, plus never-heard ones while the startup grace lasts. */
  readonly liveness: LivenessOracle = {
    isAlive: (peer) => {
      if (peer !== this.#o.selfId && !this.view.hasPeer(peer)) return false;
      if (this.view.isAlive(peer)) return true;
      const now = this.#o.scheduler.nowMs();
      return now < this.view.startMs + this.#o.config.startupGraceMs && this.view.member(peer, now).lastHeardAgeMs === undefined;
    },
  };

  /**
   * Passive evidence: a call to or from `peer` ended (`ok`: it answered). `sinceMs` is when the
   * call started, so that a failure counts only if nothing was heard from the peer meanwhile.
   */
  recordEvidence(peer: string | undefined, ok: boolean, sinceMs?: number): void {
    if (peer === undefined || this.#closed || !this.view.peerIds().includes(peer)) return;
    const now = this.#o.scheduler.nowMs();
    if (!ok) {
      // A failure of our own call says little while the peer is plainly talking to us: our
      // channel may just be backing off after an earlier refused connection (grpc-js then fails
      // calls at once). Within two beat intervals of a sign of life, leave it to phi.
      const heardAgoMs = this.view.member(peer, now).lastHeardAgeMs;
      if (heardAgoMs !== undefined && heardAgoMs < 2 * this.#o.config.heartbeatIntervalMs) return;
    }
    this.view.recordEvidence(peer, ok, now, Math.min(sinceMs ?? now, now));
  }

  /**
   * Counts a refused beat or peer call under a label from a bounded set: the reason with its
   * numbers and quoted names blanked out (they come from the peer, so an incarnation per beat
   * would be a metrics series per beat), and past {@link MAX_REFUSAL_REASONS} distinct reasons,
   * `other`.
   */
  countRefused(reason: string): void {
    let key = reason.replace(/"[^"]*"/g, '…').replace(/-?\d+(\.\d+)?/g, 'N').slice(0, 80);
    if (!this.refused.has(key) && this.refused.size >= MAX_REFUSAL_REASONS) key = 'other';
    this.refused.set(key, (this.refused.get(key) ?? 0) + 1);
  }

  start(): void {
    this.streams.start();
    this.#every(this.#o.config.tickIntervalMs, () => this.view.tick(this.#o.scheduler.nowMs()));
    this.#every(CLOCK_SYNC_INTERVAL_MS, () => {
      for (const peer of this.#peers) void this.#syncClock(peer.id);
    });
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers) t.cancel();
    this.#timers.clear();
    this.streams.close();
  }

  async #syncClock(peer: string): Promise<void> {
    try {
      const sample = await sampleClock(this.#o.replicas.client(peer), {
        wallClock: this.#o.wallClock,
        clock: this.#o.clock,
        nodeId: this.#o.selfId,
        deadlineMs: CLOCK_SYNC_DEADLINE_MS,
        maxClockOffsetMs: this.#o.config.maxClockOffsetMs,
      });
      if (!this.#closed) this.view.recordClockSample(peer, { offsetMs: sample.offsetMs, rttMs: sample.rttMs }, this.#o.scheduler.nowMs());
    } catch {
      // An unreachable peer is the heartbeats' business; a missed sample changes nothing.
    }
  }

  #every(intervalMs: number, fn: () => void): void {
    this.#timers.add(repeatEvery(this.#o.scheduler, intervalMs, fn));
  }
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
