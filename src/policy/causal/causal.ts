import type { TimerHandle } from '../../clock/index.js';
import { VectorClock } from '../../clock/index.js';
import { failedPrecondition, invalidArgument, unavailable } from '../../errors.js';
import type { SnapshotPage } from '../../transport/replica-set.js';
import { pageOf } from '../snapshot-page.js';
import { entryBytes } from '../../storage/entry-size.js';
import type { ApplyOutcome, Entry } from '../../storage/entry.js';
import type {
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
import { checkedMembers, initialMembers, isMember, peersOf, sameMembers, type Members } from '../ap/members.js';
import { OriginLog } from './origin-log.js';
import { PeerSender } from './peer-sender.js';

/** Options of {@link causal}; every default has its reason. */
export interface CausalOptions {
  /**
   * Remote writes held back at most, waiting for their dependencies; beyond it new ones are
   * refused (their sender retries), so memory stays bounded. 10,000 covers seconds of a busy
   * peer's writes.
   * @default 10000
   */
  readonly maxBufferedEntries?: number;
  /**
   * The bytes those writes may take together: 64 MiB holds thousands of ordinary writes and a
   * few dozen maximal ones, and bounds a replica's memory whatever its peers send.
   * @default 67108864
   */
  readonly maxBufferedBytes?: number;
  /**
   * This node's writes not yet acknowledged by every peer. Beyond it new writes are refused with
   * UNAVAILABLE: a peer that is down that long is better caught up by an operator than by an
   * unbounded log.
   * @default 100000
   */
  readonly maxUnreplicatedWrites?: number;
  /** Entries per Replicate batch. @default 256 */
  readonly batchEntries?: number;
  /**
   * How far past what it has applied from an origin a replica accepts that origin's writes into
   * its buffer; later ones are refused for now (their sender offers them again). Four batches:
   * a sender with one batch in flight never needs more, and a forged or runaway origin can hold
   * at most this many buffer places, so the others' writes always find room.
   * @default 1024
   */
  readonly sequenceWindow?: number;
  /**
   * Requests that may wait at once for this replica to catch up with their session; beyond it
   * they are refused at once (UNAVAILABLE). Each waiter is a closure and a timer: 10,000 cost
   * about a megabyte, and a replica that far behind is better left for another.
   * @default 10000
   */
  readonly maxSessionWaiters?: number;
  /** Deadline of one background Replicate call, in ms. @default 1000 */
  readonly callTimeoutMs?: number;
  /** First retry delay after a failed or partly buffered batch, doubling up to 1 s. @default 20 */
  readonly retryInitialMs?: number;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: apply remote writes in per-origin
   * order but without waiting for their dependencies. The causal checker must flag it.
   * @default false
   */
  readonly unsafeSkipDependencyCheck?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: reads answer the store's latest write
   * of a key, durable or not (as before reads came from durable state only). The disk-fault
   * simulation must catch it: a session sees a write that a crash then takes away.
   * @default false
   */
  readonly unsafeReadInFlight?: boolean;
  /** Bounds on each node's watchers of the keyspace. See WATCH_DEFAULTS. */
  readonly watchLimits?: Partial<WatchLimits>;
  /** Bytes of changes each node's feed keeps for watches to resume from; see FEED_BYTES for why. @default 16777216 */
  readonly feedBytes?: number;
}

export const CAUSAL_DEFAULTS = {
  maxBufferedEntries: 10_000,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxUnreplicatedWrites: 100_000,
  batchEntries: 256,
  sequenceWindow: 1_024,
  maxSessionWaiters: 10_000,
  callTimeoutMs: 1_000,
  retryInitialMs: 20,
  retryMaxMs: 1_000,
  feedBytes: FEED_BYTES,
} as const;

/** Counters of one causal keyspace. */
export interface CausalStats extends FeedStats {
  /** Remote writes waiting for their dependencies now. */
  readonly bufferedEntries: number;
  /** The most that ever waited at once. */
  readonly maxBufferedEntries: number;
  /** Remote writes refused because the buffer was full. */
  readonly bufferRefusals: number;
  /** This node's writes not yet acknowledged by every peer. */
  readonly unreplicatedWrites: number;
  /** Requests that waited for this replica to catch up with their session. */
  readonly sessionWaits: number;
  /** Requests waiting for it now. */
  readonly waitingRequests: number;
}

const EMPTY = new Uint8Array(0);
const APPLIED_META = (keyspace: string) => `causal.${keyspace}.applied`;
/** Rounds a recovery snapshot waits for writes in flight before it gives up (the caller retries). */
const SNAPSHOT_QUIESCE_ROUNDS = 50;
/** How long a snapshot a recovering peer copies in pages is kept: far beyond copying a page at a time. */
const SNAPSHOT_KEPT_MS = 60_000;

/**
 * Causal+ consistency, after COPS (Lloyd et al. 2011). Writes apply to the local replica and
 * replicate in the background; each carries its dependencies (the writer's causal context, a
 * vector clock) and its position in its origin's sequence. A replica applies a remote write only
 * after every write it depends on and every earlier write of its origin, buffering it otherwise.
 * Concurrent writes to one key converge by version (HLC, node id): causal+.
 *
 * Every response carries the client's causal context as a session token; a request that brings
 * one waits until this replica has applied everything in it (bounded by the deadline, then
 * UNAVAILABLE), which gives read-your-writes, monotonic reads, monotonic writes and
 * writes-follow-reads to a client that moves between nodes.
 *
 * Each node keeps its own writes in a durable per-origin log (OriginLog) until every peer has
 * applied them, so a write acknowledged to a client reaches every replica even across crashes.
 *
 * Membership (see membershipChanged). Causal writes wait for no peer, so voters and learners are
 * treated alike here: both receive every write, and both may coordinate writes (a learner's
 * writes replicate to every member; its log keeps them until every member has applied them, so
 * they outlive the learner leaving again as long as it drains first). A member removed is dropped
 * with its sender (nothing more is sent to it, and its acknowledgements no longer hold this
 * node's log back) and any snapshot kept for it. The origins, dependencies and session tokens a
 * replica accepts are those of every node it knows as a member or a former member: a removed
 * member's writes stay (their origin sequence just stops growing), and so do the writes and
 * sessions that depend on them. A node that is no longer a member refuses client writes and keeps
 * sending its log to the members until they hold it.
 */
export function causal(options: CausalOptions = {}): ConsistencyPolicy {
  return { name: 'causal', create: (context) => new CausalKeyspace(context, options) };
}

interface Waiter {
  readonly needed: VectorClock;
  readonly resolve: () => void;
}

export class CausalKeyspace implements KeyspacePolicy {
  readonly #ctx: PolicyContext;
  readonly #o: Required<Omit<CausalOptions, 'unsafeSkipDependencyCheck' | 'unsafeReadInFlight' | 'watchLimits'>> & {
    retryMaxMs: number;
    unsafeSkipDependencyCheck?: boolean;
    unsafeReadInFlight?: boolean;
  };
  readonly #log: OriginLog;
  readonly #senders = new Map<string, PeerSender>();
  /** The membership now: voters and learners, this node included when it is one. */
  #members: Members;
  /**
   * Every node this replica knew as a member since it started, removed ones included. With the
   * origins in the applied clock (which outlives restarts) these are the nodes an entry, a
   * dependency or a session token may name: bounded by the membership changes, not by peers.
   */
  readonly #known: Set<string>;
  /** What this replica has applied, per origin: contiguous sequences (some may still be committing). */
  #applied: VectorClock;
  /** What of that is durable: "already applied" is answered only for these. */
  #durableApplied: VectorClock;
  /** Snapshots being copied by recovering peers, by peer (see snapshot). */
  readonly #snapshots = new Map<string, { entries: Entry[]; applied: VectorClock; expiry: TimerHandle }>();
  /** Local writes and drains under way (a recovery snapshot waits for none to be). */
  readonly #inFlight = new Set<Promise<unknown>>();
  /** The next sequence number of this node's own writes. */
  #nextSeq: number;
  /** The bytes of the writes waiting (see maxBufferedBytes). */
  #bufferedBytes = 0;
  /** Remote writes waiting, by `origin:seq`. */
  readonly #buffer = new Map<string, Entry>();
  #waiters: Waiter[] = [];
  #draining: Promise<void> = Promise.resolve();
  #closed = false;
  #stats = { maxBufferedEntries: 0, bufferRefusals: 0, sessionWaits: 0 };
  readonly #timers = new Set<TimerHandle>();
  /** What this replica applied, in its order, for Watch. */
  readonly #feed: LocalFeed;
  readonly #hub: WatchHub;
  /** Every apply to the keyspace goes through it, so the feed misses none. */
  readonly #recorder: FeedRecorder;

  constructor(context: PolicyContext, options: CausalOptions) {
    this.#ctx = context;
    const { watchLimits, ...rest } = options;
    this.#o = withDefaults(CAUSAL_DEFAULTS, rest);
    this.#feed = new LocalFeed(feedEpoch(context.store), { keyspace: context.keyspace, maxBytes: this.#o.feedBytes });
    this.#hub = new WatchHub(this.#feed, context.scheduler, { ...WATCH_DEFAULTS, ...watchLimits });
    this.#recorder = new FeedRecorder(context.store, context.keyspace, (events) => {
      // Published in the same run as appended: a watcher between catching up and in step misses nothing.
      const batch = this.#feed.append(events);
      this.#hub.publish(batch);
    });
    const held = context.store.getMeta(APPLIED_META(context.keyspace));
    this.#applied = held === undefined ? VectorClock.EMPTY : VectorClock.from(JSON.parse(Buffer.from(held).toString('utf8')) as Record<string, number>);
    this.#durableApplied = this.#applied;
    this.#log = OriginLog.open(context.store, `_l.${context.keyspace}`, this.#applied.get(context.selfId));
    this.#nextSeq = Math.max(this.#applied.get(context.selfId), this.#log.lastSeq) + 1;
    this.#members = initialMembers(context.replicaIds);
    this.#known = new Set(context.replicaIds);
    for (const peer of peersOf(this.#members, context.selfId)) this.#addSender(peer);
  }

  /**
   * Follows the cluster's membership (see KeyspacePolicy.membershipChanged and the class comment).
   * A member added gets a sender, which offers it every write still in this node's log; what was
   * truncated before it is the snapshot's it copies when it joins, so it must join (copy its
   * snapshot) after every member has been told it is one. A member removed loses its sender and
   * its snapshot, and the log is truncated through what the members that remain have applied.
   * The same membership again changes nothing.
   *
   * Only an origin sends its own writes. So a member that dies for good with writes that reached
   * some members and not others leaves those others without them, and every write that depends on
   * them buffered there. A live node that learns it was removed keeps sending its log to the
   * members until they hold it; a dead one is best removed once the members hold the same of its
   * writes (a recovery copy between them would do). Writes that exist on no member are gone.
   */
  membershipChanged(members: MemberSet): void {
    const next = checkedMembers(members);
    if (this.#closed || sameMembers(next, this.#members)) return;
    const { selfId, keyspace, logger } = this.#ctx;
    this.#members = next;
    const peers = peersOf(next, selfId);
    for (const id of [...next.voters, ...next.learners]) this.#known.add(id);
    for (const [peer, sender] of this.#senders) {
      if (peers.includes(peer)) continue;
      sender.close();
      this.#senders.delete(peer);
      const snapshot = this.#snapshots.get(peer);
      snapshot?.expiry.cancel();
      this.#snapshots.delete(peer);
    }
    for (const peer of peers) if (!this.#senders.has(peer)) this.#addSender(peer);
    logger.info('the keyspace follows a new membership', { keyspace, voters: [...next.voters].join(','), learners: [...next.learners].join(',') });
    // A member removed may have been the one holding the log back.
    this.#truncateLog();
  }

  stats(): CausalStats {
    return {
      bufferedEntries: this.#buffer.size,
      unreplicatedWrites: this.#log.size,
      waitingRequests: this.#waiters.length,
      ...this.#stats,
      ...feedStats(this.#hub, this.#feed),
    };
  }

  /** The watchers' counters (live: the hub's own object). */
  watchStats(): WatchHubStats {
    return this.#hub.stats;
  }

  /** What this replica has applied, per origin (for tests and Status). */
  get applied(): VectorClock {
    return this.#applied;
  }

  put(key: Uint8Array, value: Uint8Array, options: OperationOptions): Promise<WriteResult> {
    return this.#write(key, value, false, options);
  }

  delete(key: Uint8Array, options: OperationOptions): Promise<WriteResult> {
    return this.#write(key, EMPTY, true, options);
  }

  async get(key: Uint8Array, options: OperationOptions): Promise<ReadResult> {
    const context = await this.#catchUp(options);
    // From durable state: a session that saw a write a crash then took away would go back in
    // time (and the lost write's sequence number would be reused by the next one).
    const entry = this.#o.unsafeReadInFlight ? this.#ctx.store.get(this.#ctx.keyspace, key) : await this.#ctx.store.readDurable(this.#ctx.keyspace, key);
    const after = entry === undefined ? context : context.merge(observed(entry));
    return {
      value: entry === undefined || entry.tombstone ? undefined : entry.value,
      version: entry?.version,
      sessionToken: this.#ctx.sessions.encode(this.#ctx.keyspace, after),
    };
  }

  /**
   * The keys of the range in this replica's durable state, deleted keys left out, once the
   * replica holds durably everything the session has seen (waiting as get does, with the same
   * errors). The session token it answers covers every write the scan saw.
   */
  async range(query: RangeQuery, options: OperationOptions): Promise<RangeResult> {
    if (query.revision !== 0) throw invalidArgument('REVISION_NOT_SUPPORTED', 'only CP keyspaces keep revisions: leave revision 0 (the local replica now)', { field: 'revision' });
    const context = await this.#catchUp(options);
    // The scan reads durable state only: wait for the commits of what the session needs.
    await this.#durableThrough(context);
    const seen = new Map<string, number>();
    const page = pageOfRange(query, (visit) =>
      scanReplica(this.#ctx.store, this.#ctx.keyspace, APPLIED_META(this.#ctx.keyspace), query.range, (entry) => {
        const origin = entry.version.nodeId;
        const seq = entry.originSequence;
        if (seq !== undefined && seq > (seen.get(origin) ?? 0)) seen.set(origin, seq);
        return entry.tombstone || visit(storedKeyOf(entry));
      }),
    );
    const after = seen.size === 0 ? context : context.merge(VectorClock.from(seen));
    return { ...page, revision: 0, sessionToken: this.#ctx.sessions.encode(this.#ctx.keyspace, after), possiblyStale: false };
  }

  /**
   * A watch of this node's change feed: from position `startRevision` (0: from now), the changes
   * this replica applies, in the order it applies them. Positions are this node's. A session token
   * is honoured as by get: the watch starts once this replica has applied what the session saw.
   */
  async watch(request: WatchRequestSpec, options: OperationOptions): Promise<Watcher> {
    await this.#catchUp(options);
    if (this.#closed) throw unavailable('NODE_STOPPING', `keyspace ${this.#ctx.keyspace} is closing on this node; watch through another node`);
    const start = this.#feed.startPosition(request.startRevision);
    return this.#hub.open({ range: request.range, startRevision: start, prevKv: request.prevKv, progressIntervalMs: request.progressIntervalMs });
  }

  async applyReplicated(_from: string, entries: readonly Entry[]): Promise<ApplyOutcome[]> {
    const outcomes: ApplyOutcome[] = [];
    for (const entry of entries) {
      const seq = entry.originSequence;
      const origin = entry.version.nodeId;
      if (seq === undefined || seq < 1) {
        throw invalidArgument('NOT_CAUSAL_ENTRY', `an entry replicated to causal keyspace ${this.#ctx.keyspace} lacks its origin sequence`);
      }
      // A member this replica has not been told of yet is refused too: its sender offers it again.
      if (!this.#isKnown(origin)) {
        throw invalidArgument('UNKNOWN_ORIGIN', `an entry names origin ${JSON.stringify(origin.slice(0, 80))}, which is not a replica of this keyspace, nor was one`);
      }
      // A dependency clock names members and former members of the keyspace only: a clock of
      // thousands of made-up node ids would cost its size in memory for as long as the entry waits.
      for (const node of entry.dependencies?.nodes() ?? []) {
        if (!this.#isKnown(node)) {
          throw invalidArgument('UNKNOWN_DEPENDENCY', `an entry depends on node ${JSON.stringify(node.slice(0, 80))}, which is not a replica of this keyspace, nor was one`);
        }
      }
      // Only a window ahead of what is applied: entries far in an origin's future (forged, or
      // from a runaway sender) would fill the buffer and keep the origin's real next writes out.
      if (seq > this.#applied.get(origin) + this.#o.sequenceWindow) {
        this.#stats.bufferRefusals++;
        outcomes.push('buffered');
        continue;
      }
      if (seq <= this.#durableApplied.get(origin)) {
        outcomes.push('superseded');
        continue;
      }
      if (seq <= this.#applied.get(origin)) {
        // Applied, but its commit is still under way: answered once the drain below has made it durable.
        outcomes.push('buffered');
        continue;
      }
      const id = `${origin}:${seq}`;
      if (!this.#buffer.has(id)) {
        if (this.#buffer.size >= this.#o.maxBufferedEntries || this.#bufferedBytes + entryBytes(entry) > this.#o.maxBufferedBytes) {
          // Refused for now: the sender keeps it and offers it again later.
          this.#stats.bufferRefusals++;
          outcomes.push('buffered');
          continue;
        }
        this.#buffer.set(id, entry);
        this.#bufferedBytes += entryBytes(entry);
        this.#stats.maxBufferedEntries = Math.max(this.#stats.maxBufferedEntries, this.#buffer.size);
      }
      outcomes.push('buffered');
    }
    await this.#drain();
    // Report as applied whatever the drains have made durable by now.
    return outcomes.map((o, i) => {
      const e = entries[i]!;
      return o === 'buffered' && e.originSequence! <= this.#durableApplied.get(e.version.nodeId) ? 'applied' : o;
    });
  }

  /** From durable state only, like every replica's answer to a peer (see CP's readLocal). */
  async readLocal(_from: string, keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]> {
    return Promise.all(keys.map((key) => this.#ctx.store.readDurable(this.#ctx.keyspace, key)));
  }

  /**
   * Every other replica: an origin truncates its log once every peer has applied a write, so the
   * writes a wiped replica had applied may exist nowhere but in the others' state. Every other
   * member, learners included: a learner's own writes may be held by no voter yet.
   */
  readonly recoveryNeeds = 'all';

  /**
   * A page of a consistent snapshot: the whole keyspace and the applied clock, taken together (on
   * the first page a peer asks for) at a moment when no write or apply is in flight, so that the
   * entries hold exactly the writes the clock names and all of it is durable. The store has no
   * snapshot isolation, so the snapshot is kept (one per asking peer, for at most a minute) and
   * served in pages from it; a later page whose snapshot expired is refused and the peer starts
   * over. Every page carries the clock.
   */
  async snapshot(afterKey: Uint8Array | undefined, maxEntries: number, from: string): Promise<SnapshotPage> {
    let taken = this.#snapshots.get(from);
    if (afterKey === undefined) {
      for (let round = 0; this.#inFlight.size > 0; round++) {
        if (round >= SNAPSHOT_QUIESCE_ROUNDS) {
          throw unavailable('REPLICA_BUSY', `keyspace ${this.#ctx.keyspace} had writes in flight through ${round} rounds; nothing was done: retry`);
        }
        await Promise.allSettled([...this.#inFlight]);
      }
      taken?.expiry.cancel();
      const snapshot = { entries: this.#ctx.store.entries(this.#ctx.keyspace), applied: this.#applied };
      const expiry = this.#ctx.scheduler.setTimer(SNAPSHOT_KEPT_MS, () => {
        if (this.#snapshots.get(from) === taken) this.#snapshots.delete(from);
      });
      taken = { ...snapshot, expiry };
      this.#snapshots.set(from, taken);
    } else if (taken === undefined) {
      throw failedPrecondition('SNAPSHOT_EXPIRED', `the snapshot of keyspace ${this.#ctx.keyspace} being copied expired or was never taken; start again from its first page`);
    }
    const page = pageOf(taken.entries, afterKey, maxEntries, this.#ctx.limits.maxBatchBytes);
    if (!page.more) {
      taken.expiry.cancel();
      this.#snapshots.delete(from);
    }
    return { ...page, applied: taken.applied };
  }

  /**
   * Takes in a peer's consistent snapshot: its entries (the larger version wins) and its applied
   * clock, so this replica has applied at least what the peer had. This node's own writes resume
   * after the highest of its sequences any peer holds.
   */
  async absorb(page: SnapshotPage): Promise<void> {
    const applied = page.applied === undefined ? this.#applied : this.#applied.merge(page.applied);
    const apply = page.entries.length > 0 ? this.#recorder.apply(page.entries) : Promise.resolve();
    this.#applied = applied;
    this.#nextSeq = Math.max(this.#nextSeq, applied.get(this.#ctx.selfId) + 1);
    this.#log.resumeAfter(this.#nextSeq - 1);
    await Promise.all([apply, this.#persistApplied()]);
    this.#durableApplied = applied;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#senders.values()) s.close();
    for (const t of this.#timers) t.cancel();
    for (const snapshot of this.#snapshots.values()) snapshot.expiry.cancel();
    this.#snapshots.clear();
    for (const w of this.#waiters) w.resolve();
    this.#waiters = [];
    this.#hub.close(unavailable('NODE_STOPPING', `keyspace ${this.#ctx.keyspace} closed on this node (it is stopping); watch again through another node, from now`));
  }

  async #write(key: Uint8Array, value: Uint8Array, tombstone: boolean, options: OperationOptions): Promise<WriteResult> {
    const ctx = this.#ctx;
    const context = await this.#catchUp(options);
    // A write that waited for its session while the keyspace closed must not start now.
    if (this.#closed) throw unavailable('NODE_CLOSED', `keyspace ${ctx.keyspace} is closing; nothing was written: retry on another node`);
    if (!isMember(this.#members, ctx.selfId)) {
      throw unavailable('NOT_A_MEMBER', `node ${ctx.selfId} is no longer a member of keyspace ${ctx.keyspace}; nothing was written: write through a member`);
    }
    if (this.#log.size >= this.#o.maxUnreplicatedWrites) {
      throw unavailable(
        'REPLICATION_BACKLOG_FULL',
        `this node holds ${this.#log.size} writes not yet replicated to every peer (the limit, maxUnreplicatedWrites, is ${this.#o.maxUnreplicatedWrites}); ` +
          'nothing was written: bring the missing peers back (or remove those gone for good) or write through another node',
      );
    }
    // The sequence number is taken synchronously, so concurrent writes of this node are ordered.
    const seq = this.#nextSeq++;
    const entry: Entry = {
      key,
      value,
      version: { hlc: ctx.clock.now(), nodeId: ctx.selfId },
      tombstone,
      dependencies: context,
      originSequence: seq,
    };
    // The entry, its log record and the new applied clock are issued in one turn: one commit.
    const applied = this.#applied.with(ctx.selfId, seq);
    this.#applied = applied;
    await this.#commit(applied, [this.#recorder.apply([entry]), this.#log.append(entry)]);
    this.#log.markDurable(seq);
    this.#wakeWaiters();
    for (const s of this.#senders.values()) s.kick();
    // No peer to wait for (the only member): nothing keeps the record.
    if (this.#senders.size === 0) this.#truncateLog();
    return { version: entry.version, sessionToken: ctx.sessions.encode(ctx.keyspace, context.with(ctx.selfId, seq)) };
  }

  /** Decodes the session token and waits until this replica has applied everything in it. */
  async #catchUp(options: OperationOptions): Promise<VectorClock> {
    const context = this.#ctx.sessions.decode(this.#ctx.keyspace, options.sessionToken ?? EMPTY);
    // The token is this cluster's (its tag says so), so a node it names that this replica does not
    // know is a member it has not been told of yet: retry, here later or elsewhere.
    for (const node of context.nodes()) {
      if (!this.#isKnown(node)) {
        throw unavailable(
          'UNKNOWN_SESSION_NODE',
          `the session token names node ${JSON.stringify(node.slice(0, 80))}, which this replica does not know as a member of keyspace ${this.#ctx.keyspace} (yet); nothing was done: retry, here or on another node`,
        );
      }
    }
    if (this.#applied.dominates(context)) return context;
    if (this.#waiters.length >= this.#o.maxSessionWaiters) {
      throw unavailable(
        'TOO_MANY_SESSION_WAITS',
        `this replica is behind the session and ${this.#waiters.length} requests already wait for it to catch up (the limit, maxSessionWaiters, is ${this.#o.maxSessionWaiters}); nothing was done: retry on another node`,
      );
    }
    this.#stats.sessionWaits++;
    const caughtUp = await new Promise<boolean>((resolve) => {
      // Ends one way only: caught up, the deadline, or the caller gone (a cancelled call).
      const end = (ok: boolean) => {
        timer.cancel();
        this.#timers.delete(timer);
        options.signal?.removeEventListener('abort', giveUp);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        resolve(ok);
      };
      const giveUp = () => end(false);
      const waiter: Waiter = { needed: context, resolve: () => end(true) };
      this.#waiters.push(waiter);
      const timer = this.#ctx.scheduler.setTimer(options.timeoutMs, giveUp);
      this.#timers.add(timer);
      options.signal?.addEventListener('abort', giveUp, { once: true });
    });
    if (!caughtUp || !this.#applied.dominates(context)) {
      throw unavailable(
        'BEHIND_SESSION',
        `this replica is behind the session: it has applied ${this.#applied} and the session has seen ${context}; ` +
          'nothing was done: retry, here or on another node',
        { applied: String(this.#applied), session: String(context) },
      );
    }
    return context;
  }

  /**
   * Waits until what this replica has durably applied covers `context` (which it has applied, see
   * #catchUp): the commits of those writes are in flight, or done. UNAVAILABLE if they do not
   * land (a recovery taking in a snapshot is not counted in flight).
   */
  async #durableThrough(context: VectorClock): Promise<void> {
    for (let round = 0; !this.#durableApplied.dominates(context); round++) {
      if (this.#inFlight.size === 0 || round >= SNAPSHOT_QUIESCE_ROUNDS) {
        throw unavailable(
          'BEHIND_SESSION',
          `this replica has not yet made durable all the session has seen: it has ${this.#durableApplied} durably and the session has seen ${context}; nothing was done: retry, here or on another node`,
          { applied: String(this.#durableApplied), session: String(context) },
        );
      }
      await Promise.allSettled([...this.#inFlight]);
    }
  }

  /** Applies every buffered write whose origin predecessor and dependencies are applied. */
  #drain(): Promise<void> {
    this.#draining = this.#draining.then(async () => {
      for (;;) {
        const ready: Entry[] = [];
        const next = new Map<string, number>();
        for (const [id, entry] of this.#buffer) {
          const origin = entry.version.nodeId;
          const seq = entry.originSequence!;
          const expected = (next.get(origin) ?? this.#applied.get(origin)) + 1;
          if (seq !== expected) continue;
          // No dependencies on the wire means none: the writer's session had seen nothing.
          if (!this.#o.unsafeSkipDependencyCheck && !this.#applied.dominates(entry.dependencies ?? VectorClock.EMPTY)) continue;
          ready.push(entry);
          next.set(origin, seq);
          this.#buffer.delete(id);
          this.#bufferedBytes -= entryBytes(entry);
        }
        if (ready.length === 0 || this.#closed) return;
        let applied = this.#applied;
        for (const e of ready) {
          applied = applied.with(e.version.nodeId, e.originSequence!);
          // Keep this node's HLC past every version it holds, so its own later writes win.
          this.#ctx.clock.update(e.version.hlc);
        }
        this.#applied = applied;
        await this.#commit(applied, [this.#recorder.apply(ready)]);
        this.#wakeWaiters();
      }
    });
    return this.#draining;
  }

  /**
   * Waits for `writes` and the applied clock (issued with them, in the same turn: one commit) to
   * be durable, counted in flight meanwhile; then `applied` may be answered as applied.
   */
  async #commit(applied: VectorClock, writes: Promise<unknown>[]): Promise<void> {
    const durable = Promise.all([...writes, this.#persistApplied()]);
    this.#inFlight.add(durable);
    try {
      await durable;
    } finally {
      this.#inFlight.delete(durable);
    }
    this.#durableApplied = this.#durableApplied.merge(applied);
  }

  #persistApplied(): Promise<void> {
    return this.#ctx.store.putMeta(APPLIED_META(this.#ctx.keyspace), Buffer.from(JSON.stringify(this.#applied.toJSON())));
  }

  #wakeWaiters(): void {
    if (this.#waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.#waiters) {
      if (this.#applied.dominates(w.needed)) w.resolve();
      else still.push(w);
    }
    this.#waiters = still;
  }

  /** Drops log records every peer has applied (every durable one when no peer is left). */
  #truncateLog(): void {
    let lowest = this.#log.durableSeq;
    for (const s of this.#senders.values()) lowest = Math.min(lowest, s.acknowledgedSeq);
    // A store failure here has already stopped the node (fail-stop).
    void this.#log.truncateThrough(lowest).catch(() => {});
  }

  #addSender(peer: string): void {
    const { keyspace, replicas, scheduler, limits, logger } = this.#ctx;
    this.#senders.set(peer, new PeerSender(peer, keyspace, this.#log, replicas, scheduler, { ...this.#o, batchBytes: limits.maxBatchBytes }, logger, () => this.#truncateLog()));
  }

  /** True when `node` is, or was, a member: see #known. */
  #isKnown(node: string): boolean {
    return this.#known.has(node) || this.#applied.get(node) > 0;
  }
}

/**
 * The causal context a reader gains by observing `entry`: the write itself, as (origin, sequence).
 * Its dependencies need not be added (COPS's "nearest dependencies"): a replica applies a write
 * only after its dependencies, so any replica that has applied origin's writes up to that
 * sequence has applied everything they depend on. This is what makes the dependency check
 * load-bearing, and the checker able to catch a build without it.
 */
function observed(entry: Entry): VectorClock {
  return entry.originSequence === undefined ? VectorClock.EMPTY : VectorClock.EMPTY.with(entry.version.nodeId, entry.originSequence);
}
