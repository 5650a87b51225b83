import { failedPrecondition, invalidArgument, outcomeUnknown, unavailable } from '../../errors.js';
import type { DigestAnswer, SnapshotPage } from '../../transport/replica-set.js';
import { pageOf } from '../snapshot-page.js';
import { entryBytes, prefixWithin } from '../../storage/entry-size.js';
import type { TimerHandle } from '../../clock/index.js';
import type { ApplyOutcome, Entry, Version } from '../../storage/entry.js';
import type { ConflictResolver } from '../../storage/store.js';
import type {
  AckLevel,
  ConsistencyPolicy,
  KeyspacePolicy,
  MemberSet,
  OperationOptions,
  PolicyContext,
  RangeQuery,
  RangeResult,
  ReadResult,
  WatchRequestSpec,
  WriteResult,
} from '../policy.js';
import { FEED_BYTES, FeedRecorder, feedEpoch, feedStats, LocalFeed, scanReplica, storedKeyOf, type FeedStats } from '../watch/local-feed.js';
import { pageOfRange } from '../watch/range-page.js';
import { WATCH_DEFAULTS, WatchHub, type Watcher, type WatchHubStats, type WatchLimits } from '../watch/watch-hub.js';
import { withDefaults } from '../options.js';
import { ackLevelMet, voterAcks, votersToReach } from './ack-level.js';
import { lastWriterWins, mergeResolver, type MergeFailure, type MergeFunction } from './conflict.js';
import { entryHash, keyId, KeyspaceDigest } from './entry-digest.js';
import { HintLog } from './hint-log.js';
import { checkedMembers, initialMembers, isMember, peersOf, sameMembers, type Members } from './members.js';
import { PeerReplicator } from './peer-replicator.js';

/** Options of {@link apAsync}; every default has its reason. */
export interface ApAsyncOptions {
  /** Merges concurrent values instead of last writer wins; see MergeFunction for the contract. */
  readonly merge?: MergeFunction;
  /**
   * How often this replica compares digests with the next peer, in ms. One second repairs what
   * hints missed within seconds, for a 2 KiB digest per round.
   * @default 1000
   */
  readonly antiEntropyIntervalMs?: number;
  /**
   * How long a tombstone is kept at least, in ms, before it may be purged (see the class comment
   * for the whole rule). Ten minutes is far beyond any request deadline and clock offset.
   * @default 600000
   */
  readonly tombstoneGcGraceMs?: number;
  /** Keys queued in memory per peer before they spill to durable hints. @default 10000 */
  readonly maxQueuedKeys?: number;
  /** Hints kept per peer; beyond it the oldest are dropped (anti-entropy repairs them). @default 100000 */
  readonly maxHintsPerPeer?: number;
  /** Entries per Replicate batch: large enough to amortise a call, small enough to stay far below 4 MiB messages of small values. @default 256 */
  readonly batchEntries?: number;
  /** Deadline of one background Replicate or SyncDigests call, in ms. @default 1000 */
  readonly callTimeoutMs?: number;
  /** First retry delay after a failed batch, doubling up to 1 s. @default 20 */
  readonly retryInitialMs?: number;
  /** Failed sends in a row before queued keys become durable hints. @default 3 */
  readonly hintAfterFailures?: number;
  /** How often hints are offered to their peer, in ms. @default 200 */
  readonly hintReplayIntervalMs?: number;
  /** Bounds on each node's watchers of the keyspace. See WATCH_DEFAULTS. */
  readonly watchLimits?: Partial<WatchLimits>;
  /** Bytes of changes each node's feed keeps for watches to resume from; see FEED_BYTES for why. @default 16777216 */
  readonly feedBytes?: number;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: a voter removed from the membership
   * is still replicated to and its acknowledgements still count toward ack levels (reckoned over
   * the voters now), as if the keyspace had not heard it left; its copy goes with its machine.
   * The membership simulation must catch this variant (test/sim/membership-ap.test.ts).
   * @default false
   */
  readonly unsafeCountRemoved?: boolean;
}

export const AP_DEFAULTS = {
  antiEntropyIntervalMs: 1_000,
  tombstoneGcGraceMs: 600_000,
  maxQueuedKeys: 10_000,
  maxHintsPerPeer: 100_000,
  batchEntries: 256,
  callTimeoutMs: 1_000,
  retryInitialMs: 20,
  retryMaxMs: 1_000,
  hintAfterFailures: 3,
  hintReplayIntervalMs: 200,
  feedBytes: FEED_BYTES,
} as const;

/** Counters of one AP keyspace, for Status, metrics and tests. */
export interface ApStats extends FeedStats {
  readonly queuedKeys: number;
  /** Writes waiting for peers' acknowledgements (ack levels quorum and all) now. */
  readonly ackWaiters: number;
  readonly hints: number;
  readonly hintsDropped: number;
  readonly mergeFailures: number;
  readonly antiEntropyRounds: number;
  readonly repairedEntries: number;
  readonly tombstonesPurged: number;
}

const EMPTY = new Uint8Array(0);
const NO_ACKS: ReadonlySet<string> = new Set();

/** A write waiting for its ack level (see ack-level.ts), re-evaluated when the membership changes. */
interface AckWait {
  readonly key: Uint8Array;
  readonly version: Version;
  readonly level: AckLevel;
  /** Peers that hold the write, voters or not (a learner's copy counts once it is promoted). */
  readonly acked: Set<string>;
  /** Per peer: forgets this write's waiter at that peer's replicator. */
  readonly forget: Map<string, () => void>;
  /** Ends the wait: the ack level is met. */
  readonly met: () => void;
}

/**
 * AP async: available under partition, convergent. Puts and deletes apply to the local replica
 * with an HLC version and return at once (or after a quorum or all replicas hold them, per
 * request); reads are local. Replication runs in the background per peer (PeerReplicator), with
 * durable hints while a peer is down (HintLog) and anti-entropy digest rounds that repair
 * whatever hints missed. Conflicts resolve by last writer wins on the version, or by the
 * application's merge function.
 *
 * Tombstone garbage collection. A tombstone is purged by a replica only when both hold:
 *  1. it is older than `tombstoneGcGraceMs` (by its HLC wall time against this node's HLC), and
 *  2. after that moment, every other replica's digest of the whole keyspace matched this
 *     replica's in an anti-entropy round, so every replica held the tombstone (or something newer).
 * A replica that holds a tombstone never goes back to an older value; hints and repairs ship only
 * current state; and no message outlives the grace period (deadlines are seconds). So once the
 * rule holds, no replica and no message holds a value the delete removed, and purging cannot
 * bring deleted data back. A purged tombstone may come back from a replica that has not purged it
 * yet; it is purged again by the same rule. "Every other replica" means every member, learners
 * included: a learner's copy could bring a deleted value back as well as a voter's.
 *
 * Membership (see membershipChanged). A learner is replicated to, hinted for and synced with like
 * any peer, and takes part in anti-entropy itself; only its copy counts toward no ack level (see
 * ack-level.ts, which also says what a learner coordinating a write waits for). A member removed
 * is dropped with everything kept for it: its queue, its hints (durably) and its anti-entropy
 * state; writes waiting for acks stop waiting for it; anti-entropy rounds it starts are refused.
 * A node that is no longer a member itself refuses client writes and starts no anti-entropy
 * round, but keeps replicating what it queued and hinted to the members.
 */
export function apAsync(options: ApAsyncOptions = {}): ConsistencyPolicy {
  return { name: 'ap', create: (context) => new ApAsyncKeyspace(context, options) };
}

export class ApAsyncKeyspace implements KeyspacePolicy {
  readonly #ctx: PolicyContext;
  readonly #o: Required<Omit<ApAsyncOptions, 'merge' | 'watchLimits' | 'unsafeCountRemoved'>> & { retryMaxMs: number };
  /** See ApAsyncOptions.unsafeCountRemoved: voters removed since start, whose acks still count. */
  readonly #unsafeRemovedVoters: Set<string> | undefined;
  readonly #resolve: ConflictResolver;
  readonly #digest = new KeyspaceDigest();
  readonly #replicators = new Map<string, PeerReplicator>();
  readonly #hints = new Map<string, HintLog>();
  /** The membership now: voters and learners, this node included when it is one. */
  #members: Members;
  /** Every member but this node, voters first: whom this node replicates to, hints for and syncs with. */
  #peers: string[];
  /** Writes waiting for their ack level. */
  readonly #ackWaits = new Set<AckWait>();
  /** Keys whose entry is a tombstone, for the garbage collector. */
  readonly #tombstones = new Map<string, Uint8Array>();
  /** Per peer: this node's HLC wall time at the last whole-keyspace digest match. */
  readonly #lastMatchWallMs = new Map<string, number>();
  #timer: TimerHandle | undefined;
  /** An anti-entropy round is under way (the next is scheduled when it ends). */
  #syncing = false;
  #round = 0;
  #closed = false;
  #stats = { hintsDropped: 0, mergeFailures: 0, antiEntropyRounds: 0, repairedEntries: 0, tombstonesPurged: 0 };
  /** What this replica applied, in its order, for Watch. */
  readonly #feed: LocalFeed;
  readonly #hub: WatchHub;
  /** Every apply to the keyspace goes through it, so the feed misses none. */
  readonly #recorder: FeedRecorder;

  constructor(context: PolicyContext, options: ApAsyncOptions) {
    this.#ctx = context;
    const { watchLimits, unsafeCountRemoved, ...rest } = options;
    this.#o = withDefaults(AP_DEFAULTS, rest);
    this.#unsafeRemovedVoters = unsafeCountRemoved === true ? new Set() : undefined;
    this.#feed = new LocalFeed(feedEpoch(context.store), { keyspace: context.keyspace, maxBytes: this.#o.feedBytes });
    this.#hub = new WatchHub(this.#feed, context.scheduler, { ...WATCH_DEFAULTS, ...watchLimits });
    this.#recorder = new FeedRecorder(context.store, context.keyspace, (events) => {
      // Published in the same run as appended: a watcher between catching up and in step misses nothing.
      const batch = this.#feed.append(events);
      this.#hub.publish(batch);
    });
    this.#resolve = options.merge === undefined ? lastWriterWins : mergeResolver(options.merge, (f) => this.#mergeFailed(f));
    this.#members = initialMembers(context.replicaIds);
    this.#peers = peersOf(this.#members, context.selfId);
    for (const entry of context.store.entries(context.keyspace)) this.#track(entry.key, entry);
    for (const peer of this.#peers) this.#addPeer(peer);
    this.#scheduleAntiEntropy();
  }

  /**
   * Follows the cluster's membership (see KeyspacePolicy.membershipChanged). Members added are
   * replicated to, hinted for and synced with from now on (anti-entropy brings them what was
   * written before). Members removed are dropped with their queue and their hints, in memory and
   * on disk: a hint for a removed member is dropped only because that member is gone for good,
   * and nothing acknowledged is lost by it, since a hint names a key whose entry this replica
   * still holds and replicates to every member that remains. Writes waiting for acks are
   * re-evaluated against the voters now: one whose ack level the acks it already has meet among
   * the new voters succeeds at once; the others go on waiting (and time out as before), now also
   * for any voter added meanwhile, to which they are queued. The same membership again changes
   * nothing.
   */
  membershipChanged(members: MemberSet): void {
    const next = checkedMembers(members);
    if (this.#closed || sameMembers(next, this.#members)) return;
    const { selfId, keyspace, logger } = this.#ctx;
    if (this.#unsafeRemovedVoters !== undefined) {
      for (const id of this.#members.voters) if (!next.voters.has(id) && !next.learners.has(id)) this.#unsafeRemovedVoters.add(id);
      for (const id of [...next.voters, ...next.learners]) this.#unsafeRemovedVoters.delete(id);
    }
    this.#members = next;
    this.#peers = peersOf(next, selfId);
    const peers = new Set(this.#peers);
    // The broken variant keeps the removed voters (see unsafeCountRemoved).
    const kept = (peer: string) => peers.has(peer) || this.#unsafeRemovedVoters?.has(peer) === true;
    for (const peer of [...this.#replicators.keys()]) if (!kept(peer)) this.#removePeer(peer);
    for (const peer of this.#peers) if (!this.#replicators.has(peer)) this.#addPeer(peer);
    for (const wait of this.#ackWaits) {
      for (const [peer, forget] of wait.forget) {
        if (kept(peer)) continue;
        forget();
        wait.forget.delete(peer);
        // Should it come back, it comes back empty: what it held then says nothing now.
        wait.acked.delete(peer);
      }
      for (const r of this.#replicators.values()) if (!wait.forget.has(r.peer)) this.#awaitAck(wait, r);
      if (this.#ackMet(wait)) wait.met();
    }
    logger.info('the keyspace follows a new membership', { keyspace, voters: [...next.voters].join(','), learners: [...next.learners].join(',') });
    this.#scheduleAntiEntropy();
  }

  /** Counters for Status, metrics and tests. */
  stats(): ApStats {
    let queuedKeys = 0;
    let ackWaiters = 0;
    for (const r of this.#replicators.values()) {
      queuedKeys += r.queued;
      ackWaiters += r.waiting;
    }
    let hints = 0;
    for (const h of this.#hints.values()) hints += h.size;
    return { queuedKeys, ackWaiters, hints, ...this.#stats, ...feedStats(this.#hub, this.#feed) };
  }

  /** The watchers' counters (live: the hub's own object). */
  watchStats(): WatchHubStats {
    return this.#hub.stats;
  }

  put(key: Uint8Array, value: Uint8Array, options: OperationOptions): Promise<WriteResult> {
    return this.#write({ key, value, version: { hlc: this.#ctx.clock.now(), nodeId: this.#ctx.selfId }, tombstone: false }, options);
  }

  delete(key: Uint8Array, options: OperationOptions): Promise<WriteResult> {
    return this.#write({ key, value: EMPTY, version: { hlc: this.#ctx.clock.now(), nodeId: this.#ctx.selfId }, tombstone: true }, options);
  }

  async get(key: Uint8Array): Promise<ReadResult> {
    // From durable state, like every answer a replica gives: never a write a crash could take away.
    const entry = await this.#ctx.store.readDurable(this.#ctx.keyspace, key);
    return {
      value: entry === undefined || entry.tombstone ? undefined : entry.value,
      version: entry?.version,
      sessionToken: EMPTY,
    };
  }

  applyReplicated(_from: string, entries: readonly Entry[]): Promise<ApplyOutcome[]> {
    return this.#apply(entries);
  }

  /**
   * The keys of the range in the local replica's durable state (which holds every write this node
   * acknowledged), deleted keys left out. Eventual: nothing is said about other replicas, so the
   * answer is always `possiblyStale`.
   */
  async range(query: RangeQuery): Promise<RangeResult> {
    if (query.revision !== 0) throw invalidArgument('REVISION_NOT_SUPPORTED', 'only CP keyspaces keep revisions: leave revision 0 (the local replica now)', { field: 'revision' });
    const { store, keyspace } = this.#ctx;
    const page = pageOfRange(query, (visit) =>
      scanReplica(store, keyspace, FEED_SCAN_META, query.range, (entry) => entry.tombstone || visit(storedKeyOf(entry))),
    );
    return { ...page, revision: 0, sessionToken: EMPTY, possiblyStale: true };
  }

  /**
   * A watch of this node's change feed: from position `startRevision` (0: from now), the changes
   * this replica applies, in the order it applies them. Positions are this node's.
   */
  async watch(request: WatchRequestSpec): Promise<Watcher> {
    if (this.#closed) throw unavailable('NODE_STOPPING', `keyspace ${this.#ctx.keyspace} is closing on this node; watch through another node`);
    const start = this.#feed.startPosition(request.startRevision);
    return this.#hub.open({ range: request.range, startRevision: start, prevKv: request.prevKv, progressIntervalMs: request.progressIntervalMs });
  }

  /** From durable state only, like every replica's answer to a peer (see CP's readLocal). */
  async readLocal(_from: string, keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]> {
    return Promise.all(keys.map((key) => this.#ctx.store.readDurable(this.#ctx.keyspace, key)));
  }

  /**
   * A majority of the others holds every write acknowledged at ack level quorum or all. Counted
   * over the voters: a learner's copy counts toward no acknowledgement, so none is needed here.
   */
  readonly recoveryNeeds = 'majority';

  async snapshot(afterKey: Uint8Array | undefined, maxEntries: number, _from: string): Promise<SnapshotPage> {
    return pageOf(this.#ctx.store.entries(this.#ctx.keyspace), afterKey, maxEntries, this.#ctx.limits.maxBatchBytes);
  }

  async absorb(page: SnapshotPage): Promise<void> {
    if (page.entries.length > 0) await this.#apply(page.entries);
  }

  /**
   * The replica half of an anti-entropy round (SyncDigests). Only with members: a node this replica
   * does not hold as a member (removed, or added but not yet known here) is refused; replication
   * from it is still taken in (its data is data), but it is no longer synced with.
   */
  async syncDigests(from: string, hashes: readonly bigint[], maxEntries: number): Promise<DigestAnswer> {
    if (hashes.length !== this.#digest.buckets) {
      throw invalidArgument('DIGEST_SIZE', `the digest has ${hashes.length} bucket hashes; this replica uses ${this.#digest.buckets}`);
    }
    if (!this.#replicators.has(from)) {
      throw failedPrecondition('NOT_A_MEMBER', `node ${JSON.stringify(from.slice(0, 80))} is not a member of keyspace ${this.#ctx.keyspace} as this replica knows it; anti-entropy runs between members only`);
    }
    const differingBuckets = this.#digest.differing(hashes);
    if (differingBuckets.length === 0) this.#lastMatchWallMs.set(from, this.#ctx.clock.now().wallMs);
    const { entries, truncated } = this.#entriesIn(differingBuckets, maxEntries, this.#ctx.limits.maxBatchBytes);
    return { differingBuckets, entries, truncated };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    for (const r of this.#replicators.values()) r.close();
    this.#hub.close(unavailable('NODE_STOPPING', `keyspace ${this.#ctx.keyspace} closed on this node (it is stopping); watch again through another node, from now`));
  }

  async #write(entry: Entry, options: OperationOptions): Promise<WriteResult> {
    const { selfId, keyspace, scheduler } = this.#ctx;
    if (!isMember(this.#members, selfId)) {
      throw unavailable('NOT_A_MEMBER', `node ${selfId} is no longer a member of keyspace ${keyspace}; nothing was written: write through a member`);
    }
    await this.#apply([entry]);
    const level = options.ack ?? 'one';
    if (ackLevelMet(level, this.#members.voters, selfId, NO_ACKS)) {
      for (const r of this.#replicators.values()) r.enqueue(entry.key, entry.version);
      return { version: entry.version, sessionToken: EMPTY };
    }
    let met: () => void = () => {};
    const acked = new Promise<void>((resolve) => (met = resolve));
    const wait: AckWait = { key: entry.key, version: entry.version, level, acked: new Set(), forget: new Map(), met: () => met() };
    this.#ackWaits.add(wait);
    for (const r of this.#replicators.values()) this.#awaitAck(wait, r);
    let timer: TimerHandle | undefined;
    let giveUp: () => void = () => {};
    const timedOut = new Promise<'timeout'>((resolve) => {
      giveUp = () => resolve('timeout');
      timer = scheduler.setTimer(options.timeoutMs, giveUp);
      options.signal?.addEventListener('abort', giveUp, { once: true });
    });
    const outcome = await Promise.race([acked, timedOut]);
    timer?.cancel();
    options.signal?.removeEventListener('abort', giveUp);
    // The write stops waiting, so its acknowledgement callbacks go too (it still replicates).
    this.#ackWaits.delete(wait);
    for (const forget of wait.forget.values()) forget();
    if (outcome === 'timeout') {
      const { voters } = this.#members;
      const reached = voterAcks(voters, selfId, wait.acked);
      const needed = votersToReach(level, voters.size, voters.has(selfId));
      throw outcomeUnknown(
        'ACK_LEVEL_NOT_REACHED',
        `the write is durable on this replica${voters.has(selfId) ? '' : ' (a learner, whose copy counts toward no ack level)'} and on ${reached} of the ` +
          `${needed} other replicas (voters) it had to reach before the deadline; it will still replicate in the background, so do not retry it blindly`,
        { acked: String(reached), needed: String(needed) },
      );
    }
    return { version: entry.version, sessionToken: EMPTY };
  }

  /** Queues `wait`'s write to `r`'s peer and counts the peer's acknowledgement toward it. */
  #awaitAck(wait: AckWait, r: PeerReplicator): void {
    const forget = r.enqueue(wait.key, wait.version, () => {
      wait.acked.add(r.peer);
      if (this.#ackMet(wait)) wait.met();
    });
    wait.forget.set(r.peer, forget);
  }

  /** Whether `wait`'s acknowledgements meet its ack level among the voters now. */
  #ackMet(wait: AckWait): boolean {
    const { voters } = this.#members;
    const selfId = this.#ctx.selfId;
    if (this.#unsafeRemovedVoters === undefined || this.#unsafeRemovedVoters.size === 0) return ackLevelMet(wait.level, voters, selfId, wait.acked);
    // DELIBERATELY BROKEN (unsafeCountRemoved): removed voters' acknowledgements still count.
    const counted = new Set([...voters, ...this.#unsafeRemovedVoters]);
    return voterAcks(counted, selfId, wait.acked) >= votersToReach(wait.level, voters.size, voters.has(selfId));
  }

  /** Starts replicating to `peer`, with its durable hints (reloaded if an earlier run left some). */
  #addPeer(peer: string): void {
    const { store, keyspace, logger, replicas, scheduler, limits } = this.#ctx;
    const hints = HintLog.open(store, hintKeyspace(keyspace, peer), this.#o.maxHintsPerPeer, (count) => {
      this.#stats.hintsDropped += count;
      logger.warn(`dropped the ${count} oldest hints for ${peer}: the hint bound (${this.#o.maxHintsPerPeer}) is reached; anti-entropy will repair them`, { keyspace, peer });
    });
    this.#hints.set(peer, hints);
    this.#replicators.set(
      peer,
      new PeerReplicator(
        peer,
        keyspace,
        (key) => store.get(keyspace, key),
        replicas,
        scheduler,
        hints,
        { ...this.#o, batchEntries: this.#o.batchEntries, batchBytes: limits.maxBatchBytes },
        logger,
      ),
    );
  }

  /**
   * Stops replicating to `peer`, which left the cluster for good: its queue and waiters go, its
   * hints are dropped from memory at once and from the store soon, and its anti-entropy state goes.
   */
  #removePeer(peer: string): void {
    const { keyspace, logger } = this.#ctx;
    this.#replicators.get(peer)?.discard();
    this.#replicators.delete(peer);
    this.#lastMatchWallMs.delete(peer);
    const hints = this.#hints.get(peer);
    this.#hints.delete(peer);
    if (hints === undefined) return;
    const count = hints.size;
    // A store failure here has already stopped the node (fail-stop); the log says so.
    void hints.drop().catch((error: unknown) => logger.debug('dropping the hints of a removed member failed', { keyspace, peer, error: String(error) }));
    if (count > 0) logger.info(`dropped ${count} hints for ${peer}: it is no longer a member`, { keyspace, peer });
  }

  /**
   * Applies entries through the resolver and keeps the digest and the tombstone set current: the
   * one path by which this keyspace's entries change (client writes, replication, hints,
   * anti-entropy, recovery), so the change feed records them all.
   */
  async #apply(entries: readonly Entry[]): Promise<ApplyOutcome[]> {
    const { store, keyspace } = this.#ctx;
    const outcomes = await this.#recorder.apply(entries, this.#resolve);
    for (const e of entries) this.#track(e.key, store.get(keyspace, e.key));
    return outcomes;
  }

  #track(key: Uint8Array, entry: Entry | undefined): void {
    const id = keyId(key);
    // A copy of exactly its size (see KeyspaceDigest.set): not a slice of a shared pool or message.
    if (entry?.tombstone) this.#tombstones.set(id, Uint8Array.prototype.slice.call(key));
    else this.#tombstones.delete(id);
    this.#digest.set(key, entry === undefined ? 0n : entryHash(entry));
  }

  /** The entries in `buckets`, at most `maxEntries` and `maxBytes` of them (one larger entry alone). */
  #entriesIn(buckets: readonly number[], maxEntries: number, maxBytes: number): { entries: Entry[]; truncated: boolean } {
    const entries: Entry[] = [];
    let bytes = 0;
    for (const b of buckets) {
      for (const key of this.#digest.keysIn(b)) {
        if (entries.length >= maxEntries) return { entries, truncated: true };
        const entry = this.#ctx.store.get(this.#ctx.keyspace, key);
        if (entry === undefined) continue;
        if (entries.length > 0 && bytes + entryBytes(entry) > maxBytes) return { entries, truncated: true };
        entries.push(entry);
        bytes += entryBytes(entry);
      }
    }
    return { entries, truncated: false };
  }

  /**
   * Schedules the next anti-entropy round, unless one is scheduled or under way, or there is no one
   * to sync with: no peer, or this node is no longer a member (the members refuse it).
   */
  #scheduleAntiEntropy(): void {
    if (!this.#syncsNow() || this.#timer !== undefined || this.#syncing) return;
    this.#timer = this.#ctx.scheduler.setTimer(this.#o.antiEntropyIntervalMs, () => {
      this.#timer = undefined;
      // Nobody to sync with any more: the next membership that has someone schedules rounds again.
      if (!this.#syncsNow()) return;
      this.#syncing = true;
      void this.#antiEntropyRound(this.#peers[this.#round++ % this.#peers.length]!)
        .catch((err: unknown) => this.#ctx.logger.debug('anti-entropy round failed', { keyspace: this.#ctx.keyspace, error: String(err) }))
        .finally(() => {
          this.#syncing = false;
          this.#scheduleAntiEntropy();
        });
    });
  }

  #syncsNow(): boolean {
    return !this.#closed && this.#peers.length > 0 && isMember(this.#members, this.#ctx.selfId);
  }

  /** One round with `peer`: exchange digests, pull theirs, push ours, then collect garbage. */
  async #antiEntropyRound(peer: string): Promise<void> {
    const { replicas, keyspace, clock } = this.#ctx;
    this.#stats.antiEntropyRounds++;
    const answer = await replicas.syncDigests(peer, keyspace, this.#digest.hashes(), this.#o.callTimeoutMs);
    if (this.#closed) return;
    // Its entries are kept even if it left meanwhile: they are data a member wrote or held.
    if (answer.entries.length > 0) {
      const outcomes = await this.#apply(answer.entries);
      this.#stats.repairedEntries += outcomes.filter((o) => o === 'applied').length;
    }
    if (!this.#replicators.has(peer)) return; // it left during the round: nothing more for it
    if (answer.differingBuckets.length === 0) {
      this.#lastMatchWallMs.set(peer, clock.now().wallMs);
    } else {
      // Ours in the same buckets, in batches within both limits; a round sends at most ten of
      // them, and the next round carries on where the digests still differ.
      let { entries } = this.#entriesIn(answer.differingBuckets, 10 * this.#o.batchEntries, 10 * this.#ctx.limits.maxBatchBytes);
      while (entries.length > 0 && !this.#closed && this.#replicators.has(peer)) {
        const batch = prefixWithin(entries, entryBytes, this.#ctx.limits.maxBatchBytes, this.#o.batchEntries);
        await replicas.replicate(peer, keyspace, batch, this.#o.callTimeoutMs);
        entries = entries.slice(batch.length);
      }
    }
    await this.#collectGarbage();
  }

  async #collectGarbage(): Promise<void> {
    if (this.#tombstones.size === 0) return;
    let horizon = Number.POSITIVE_INFINITY;
    for (const peer of this.#peers) horizon = Math.min(horizon, this.#lastMatchWallMs.get(peer) ?? Number.NEGATIVE_INFINITY);
    const nowWall = this.#ctx.clock.now().wallMs;
    const purge: Entry[] = [];
    for (const key of this.#tombstones.values()) {
      const entry = this.#ctx.store.get(this.#ctx.keyspace, key);
      if (entry === undefined || !entry.tombstone) continue;
      const expiresAt = entry.version.hlc.wallMs + this.#o.tombstoneGcGraceMs;
      if (expiresAt < nowWall && expiresAt < horizon) purge.push(entry);
    }
    if (purge.length === 0) return;
    const removed = await this.#ctx.store.remove(this.#ctx.keyspace, purge);
    for (const entry of purge) {
      if (this.#ctx.store.get(this.#ctx.keyspace, entry.key) === undefined) {
        this.#tombstones.delete(keyId(entry.key));
        this.#digest.forget(entry.key);
      }
    }
    this.#stats.tombstonesPurged += removed;
  }

  #mergeFailed(f: MergeFailure): void {
    this.#stats.mergeFailures++;
    this.#ctx.logger.error('the merge function threw; kept the later value and set the other aside', {
      keyspace: this.#ctx.keyspace,
      key: Buffer.from(f.key).toString('base64'),
      error: f.error instanceof Error ? f.error.message : String(f.error),
    });
    // Keep the loser durably beside the keyspace, so that no acknowledged value is ever lost. The
    // resolver runs inside the store's atomic step, which must not call the store: defer.
    const { store, keyspace } = this.#ctx;
    queueMicrotask(() => void store.apply(conflictKeyspace(keyspace), [f.loser]).catch(() => {}));
  }
}

/** The metadata a Range's view of the store carries: none that AP reads. */
const FEED_SCAN_META = 'ap-range';

/** The store keyspace of the hints of `keyspace` for `peer`. */
export function hintKeyspace(keyspace: string, peer: string): string {
  return `_h.${keyspace}.${peer}`;
}

/** The store keyspace where values that lost a failed merge are kept. */
export function conflictKeyspace(keyspace: string): string {
  return `_c.${keyspace}`;
}
