import { invalidArgument, outcomeUnknown, unavailable } from '../../errors.js';
import type { DigestAnswer, SnapshotPage } from '../../transport/replica-set.js';
import { pageOf } from '../snapshot-page.js';
import { entryBytes, prefixWithin } from '../../storage/entry-size.js';
import type { TimerHandle } from '../../clock/index.js';
import type { ApplyOutcome, Entry } from '../../storage/entry.js';
import type { ConflictResolver } from '../../storage/store.js';
import type {
  ConsistencyPolicy,
  KeyspacePolicy,
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
import { majority } from '../majority.js';
import { withDefaults } from '../options.js';
import { lastWriterWins, mergeResolver, type MergeFailure, type MergeFunction } from './conflict.js';
import { entryHash, keyId, KeyspaceDigest } from './entry-digest.js';
import { HintLog } from './hint-log.js';
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
 * yet; it is purged again by the same rule.
 */
export function apAsync(options: ApAsyncOptions = {}): ConsistencyPolicy {
  return { name: 'ap', create: (context) => new ApAsyncKeyspace(context, options) };
}

export class ApAsyncKeyspace implements KeyspacePolicy {
  readonly #ctx: PolicyContext;
  readonly #o: Required<Omit<ApAsyncOptions, 'merge' | 'watchLimits'>> & { retryMaxMs: number };
  readonly #resolve: ConflictResolver;
  readonly #digest = new KeyspaceDigest();
  readonly #replicators = new Map<string, PeerReplicator>();
  readonly #hints = new Map<string, HintLog>();
  readonly #peers: string[];
  /** Keys whose entry is a tombstone, for the garbage collector. */
  readonly #tombstones = new Map<string, Uint8Array>();
  /** Per peer: this node's HLC wall time at the last whole-keyspace digest match. */
  readonly #lastMatchWallMs = new Map<string, number>();
  #timer: TimerHandle | undefined;
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
    const { watchLimits, ...rest } = options;
    this.#o = withDefaults(AP_DEFAULTS, rest);
    this.#feed = new LocalFeed(feedEpoch(context.store), { keyspace: context.keyspace, maxBytes: this.#o.feedBytes });
    this.#hub = new WatchHub(this.#feed, context.scheduler, { ...WATCH_DEFAULTS, ...watchLimits });
    this.#recorder = new FeedRecorder(context.store, context.keyspace, (events) => {
      // Published in the same run as appended: a watcher between catching up and in step misses nothing.
      const batch = this.#feed.append(events);
      this.#hub.publish(batch);
    });
    this.#resolve = options.merge === undefined ? lastWriterWins : mergeResolver(options.merge, (f) => this.#mergeFailed(f));
    this.#peers = context.replicaIds.filter((id) => id !== context.selfId);
    for (const entry of context.store.entries(context.keyspace)) this.#track(entry.key, entry);
    for (const peer of this.#peers) {
      const hints = HintLog.open(context.store, hintKeyspace(context.keyspace, peer), this.#o.maxHintsPerPeer, (count) => {
        this.#stats.hintsDropped += count;
        context.logger.warn(`dropped the ${count} oldest hints for ${peer}: the hint bound (${this.#o.maxHintsPerPeer}) is reached; anti-entropy will repair them`, {
          keyspace: context.keyspace,
          peer,
        });
      });
      this.#hints.set(peer, hints);
      this.#replicators.set(
        peer,
        new PeerReplicator(
          peer,
          context.keyspace,
          (key) => context.store.get(context.keyspace, key),
          context.replicas,
          context.scheduler,
          hints,
          { ...this.#o, batchEntries: this.#o.batchEntries, batchBytes: context.limits.maxBatchBytes },
          context.logger,
        ),
      );
    }
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

  /** A majority of the others holds every write acknowledged at ack level quorum or all. */
  readonly recoveryNeeds = 'majority';

  async snapshot(afterKey: Uint8Array | undefined, maxEntries: number, _from: string): Promise<SnapshotPage> {
    return pageOf(this.#ctx.store.entries(this.#ctx.keyspace), afterKey, maxEntries, this.#ctx.limits.maxBatchBytes);
  }

  async absorb(page: SnapshotPage): Promise<void> {
    if (page.entries.length > 0) await this.#apply(page.entries);
  }

  /** The replica half of an anti-entropy round (SyncDigests). */
  async syncDigests(from: string, hashes: readonly bigint[], maxEntries: number): Promise<DigestAnswer> {
    if (hashes.length !== this.#digest.buckets) {
      throw invalidArgument('DIGEST_SIZE', `the digest has ${hashes.length} bucket hashes; this replica uses ${this.#digest.buckets}`);
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
    await this.#apply([entry]);
    const needed = options.ack === 'all' ? this.#peers.length : options.ack === 'quorum' ? majority(this.#peers.length + 1) - 1 : 0;
    let acked = 0;
    let done: () => void = () => {};
    const allAcked = new Promise<void>((resolve) => (done = resolve));
    if (needed === 0) done();
    const forget: (() => void)[] = [];
    for (const r of this.#replicators.values()) {
      forget.push(r.enqueue(entry.key, entry.version, needed === 0 ? undefined : () => ++acked >= needed && done()));
    }
    if (needed > 0) {
      let timer: TimerHandle | undefined;
      let giveUp: () => void = () => {};
      const timedOut = new Promise<'timeout'>((resolve) => {
        giveUp = () => resolve('timeout');
        timer = this.#ctx.scheduler.setTimer(options.timeoutMs, giveUp);
        options.signal?.addEventListener('abort', giveUp, { once: true });
      });
      const outcome = await Promise.race([allAcked, timedOut]);
      timer?.cancel();
      options.signal?.removeEventListener('abort', giveUp);
      // The write stops waiting, so its acknowledgement callbacks go too (it still replicates).
      for (const f of forget) f();
      if (outcome === 'timeout') {
        throw outcomeUnknown(
          'ACK_LEVEL_NOT_REACHED',
          `the write is durable on this replica and on ${acked} of the ${needed} other replicas it had to reach before the deadline; ` +
            'it will still replicate in the background, so do not retry it blindly',
          { acked: String(acked), needed: String(needed) },
        );
      }
    }
    return { version: entry.version, sessionToken: EMPTY };
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

  #scheduleAntiEntropy(): void {
    if (this.#closed || this.#peers.length === 0) return;
    this.#timer = this.#ctx.scheduler.setTimer(this.#o.antiEntropyIntervalMs, () => {
      void this.#antiEntropyRound()
        .catch((err: unknown) => this.#ctx.logger.debug('anti-entropy round failed', { keyspace: this.#ctx.keyspace, error: String(err) }))
        .finally(() => this.#scheduleAntiEntropy());
    });
  }

  /** One round with the next peer in turn: exchange digests, pull theirs, push ours, then collect garbage. */
  async #antiEntropyRound(): Promise<void> {
    const { replicas, keyspace, clock } = this.#ctx;
    const peer = this.#peers[this.#round++ % this.#peers.length]!;
    this.#stats.antiEntropyRounds++;
    const answer = await replicas.syncDigests(peer, keyspace, this.#digest.hashes(), this.#o.callTimeoutMs);
    if (this.#closed) return;
    if (answer.entries.length > 0) {
      const outcomes = await this.#apply(answer.entries);
      this.#stats.repairedEntries += outcomes.filter((o) => o === 'applied').length;
    }
    if (answer.differingBuckets.length === 0) {
      this.#lastMatchWallMs.set(peer, clock.now().wallMs);
    } else {
      // Ours in the same buckets, in batches within both limits; a round sends at most ten of
      // them, and the next round carries on where the digests still differ.
      let { entries } = this.#entriesIn(answer.differingBuckets, 10 * this.#o.batchEntries, 10 * this.#ctx.limits.maxBatchBytes);
      while (entries.length > 0 && !this.#closed) {
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
