/**
 * Watch and Range under faults, on a simulated 3-node CP cluster: while clients write (puts,
 * deletes, compare-and-sets and two-key transactions) through random nodes and a nemesis
 * partitions, crashes, wipes, slows and steps the clocks of the nodes (the same nemesis as the
 * register workload), a few logical watches — a prefix, a single key, a key range, with or without
 * previous values — run on different nodes from revision 1. Each records every response as the
 * watch checker's {@link WatchRecord}. When a watch fails (its node crashed or stopped, took in a
 * snapshot and lost the history the watch needed, or the consumer fell behind) the chain resumes
 * it on a running node from the error's `resume_revision`; when that revision was compacted, a
 * fresh chain starts instead. Now and then a consumer pauses (falls behind), asks for progress,
 * or a new chain starts from an old revision. Clients also read Range at the current revision and
 * at past ones, on random nodes, serializable or linearizable, with limits, descending order,
 * keys-only and count-only reads, and continuation pages.
 *
 * The ground truth is read off the nodes' disks, not through any watch: every few virtual ms the
 * history each disk holds durably (SimCluster.durableHistory) is merged into one map of revision
 * to changes (history is written only for applied, hence committed, entries; nodes that hold the
 * same revision must hold the same changes, and the map must run from revision 1 to the final
 * head without a gap). It is cross-checked against every acknowledged write (the changes at a
 * write's revision are exactly the write's), and each successful Range must equal the model's
 * state at the revision it answers at (the committed changes folded up to it), page by page.
 */
import { ReplikitError } from '../errors.js';
import { CompareResult, CompareTarget, type Compare, type RequestOp, type TxnResponse } from '../gen/replikit/v1/kv_service.js';
import { cpQuorum, type CpQuorumOptions } from '../policy/cp/cp-quorum.js';
import { encodeBatch } from '../policy/cp/kv-history.js';
import type { StoredKey } from '../policy/cp/kv-state-machine.js';
import type { ConsistencyPolicy, KeyspacePolicy, RangeQuery, RangeResult, WatchRequestSpec } from '../policy/policy.js';
import type { ChangeBatch } from '../policy/watch/change.js';
import { prefixRange, singleKey, type KeyRange } from '../policy/watch/key-range.js';
import type { Watcher, WatchMessage } from '../policy/watch/watch-hub.js';
import { checkWatches, type CommittedChange, type WatchCheckResult, type WatchEvent, type WatchHistory, type WatchRange, type WatchRecord, type WatchResponseRecord } from '../testing/watch-checker.js';
import { Nemesis, type FaultEvent } from './nemesis.js';
import { SIM_RAFT_TIMING } from './seed-check.js';
import type { SeededRandom } from './seeded-random.js';
import { SimCluster } from './sim-cluster.js';
import { latin1 } from '../storage/key-text.js';

export const WATCH_KEYSPACE = 'kv';

/**
 * The CP keyspace of the watch simulation: Raft on the simulation's timing (snapshots every 30
 * entries, so lagging followers take snapshots in and their watchers must move); history kept
 * for 12 revisions (runs commit a few dozen), so that the leader compacts within a run and resumes
 * from far back find their revision compacted (clients also Compact now and then); and watch buffers small enough (a dozen events) that a consumer pausing a
 * few hundred ms is cut off as too slow and must resume.
 */
export const WATCH_SIM_CP_OPTIONS: CpQuorumOptions = {
  timing: SIM_RAFT_TIMING,
  historyRetention: { revisions: 12, ms: 60_000 },
  watchLimits: { maxPendingBytes: 1_500, maxMessageBytes: 512 },
};

export interface WatchWorkloadOptions {
  readonly seed: number;
  /** @default cpQuorum(WATCH_SIM_CP_OPTIONS) */
  readonly policy?: ConsistencyPolicy;
  /** Concurrent clients, each running one operation at a time. @default 4 */
  readonly clients?: number;
  /** Operations per client. @default 20 */
  readonly opsPerClient?: number;
  /** Per-operation deadline, virtual ms. @default 300 */
  readonly timeoutMs?: number;
  /** Inject the register workload's faults. @default true */
  readonly faults?: boolean;
  /**
   * DELIBERATELY BROKEN, for proving the checker catches it: a resumed watch drops the changes of
   * the first revision it delivers (one event, unless that revision is a two-key transaction), as
   * a server that resumed from resume_revision + 1 would. @default false
   */
  readonly unsafeDropEventOnResume?: boolean;
}

/** One page of a Range, as asked and answered. Keys and values are latin1 strings. */
export interface RangeRecord {
  readonly node: string;
  readonly consistency: 'linearizable' | 'serializable';
  /** The revision asked for (0: the current one). */
  readonly requested: number;
  /** The revision answered at. */
  readonly revision: number;
  readonly range: { readonly start: string; readonly end: string | null };
  readonly limit: number;
  readonly descending: boolean;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
  readonly after?: string;
  /** True when the page had no byte budget to speak of (so its length is exactly the limit's). */
  readonly unboundedBytes: boolean;
  readonly kvs: readonly { key: string; value: string; createRevision: number; modRevision: number; version: number }[];
  readonly count: number;
  readonly more: boolean;
  /** A linearizable read of the current revision must answer at least this (acknowledged before it began). */
  readonly atLeast: number;
  readonly invokedAtMs: number;
}

/** An acknowledged write: the changes it made at its revision (a delete that deleted nothing makes none). */
export interface AcknowledgedTxn {
  readonly node: string;
  readonly revision: number;
  readonly changes: readonly { readonly type: 'put' | 'delete'; readonly key: string; readonly value?: string }[];
}

/** The changes of one revision a resumed watch dropped (unsafeDropEventOnResume). */
export interface DroppedChanges {
  readonly watchId: string;
  readonly revision: number;
  readonly keys: readonly string[];
}

export interface WatchWorkloadResult {
  readonly seed: number;
  /** Completions, watch and range outcomes, and the faults that landed. */
  readonly stats: Record<string, number>;
  readonly schedule: readonly FaultEvent[];
  /** Committed changes (the ground truth) and every watch's record: for checkWatches. */
  readonly history: WatchHistory;
  readonly ranges: readonly RangeRecord[];
  readonly acknowledged: readonly AcknowledgedTxn[];
  /** unsafeDropEventOnResume: what each resumed watch dropped. */
  readonly droppedOnResume: readonly DroppedChanges[];
  /** What the ground truth itself showed wrong: disks disagreeing on a revision, or a gap. */
  readonly groundTruthProblems: readonly string[];
  /** The cluster after the run (healed, every node serving). */
  readonly cluster: SimCluster;
}

const KEYS = ['a/0', 'a/1', 'a/2', 'a/3', 'b/0', 'b/1', 'b/2'];
/** The ranges watches and Range calls cover: a prefix, a single key, a key range, everything. */
const RANGES: readonly { readonly name: string; readonly keys: KeyRange; readonly record: WatchRange }[] = [
  { name: 'prefix a/', keys: prefixRange(Buffer.from('a/')), record: { key: 'a/', prefix: true } },
  { name: 'key b/1', keys: singleKey(Buffer.from('b/1')), record: { key: 'b/1' } },
  { name: 'range [a/2, b/1)', keys: { start: Buffer.from('a/2'), end: Buffer.from('b/1') }, record: { key: 'a/2', end: 'b/1' } },
  { name: 'everything', keys: prefixRange(Buffer.alloc(0)), record: { key: '', prefix: true } },
  { name: 'prefix b/', keys: prefixRange(Buffer.from('b/')), record: { key: 'b/', prefix: true } },
];
/** Virtual ms between two readings of the disks' history. */
const COLLECT_EVERY_MS = 20;
const LARGE_PAGE_BYTES = 1024 * 1024;

type CpPolicy = KeyspacePolicy & Required<Pick<KeyspacePolicy, 'range' | 'watch' | 'raftStatus'>>;

/** Runs one seed of the watch workload; see the module comment. */
export async function runWatchWorkload(options: WatchWorkloadOptions): Promise<WatchWorkloadResult> {
  const clients = options.clients ?? 4;
  const opsPerClient = options.opsPerClient ?? 20;
  const timeoutMs = options.timeoutMs ?? 300;
  const policy = options.policy ?? cpQuorum(WATCH_SIM_CP_OPTIONS);
  const cluster = new SimCluster({ seed: options.seed, keyspaces: { [WATCH_KEYSPACE]: policy }, maxSkewMs: 50, requestTimeoutMs: timeoutMs, formed: false });
  const { scheduler } = cluster;
  const sleep = (ms: number) => new Promise<void>((resolve) => scheduler.setTimer(ms, resolve));
  const stats: Record<string, number> = {
    ok: 0,
    fail: 0,
    watchesOpened: 0,
    watchOpenFailures: 0,
    watchResumes: 0,
    watchFreshChains: 0,
    watchLateChains: 0,
    watchEndsStopped: 0,
    watchEndsNoHistory: 0,
    watchEndsCompacted: 0,
    watchEndsSlow: 0,
    watchEndsOther: 0,
    watchHungAfterCrash: 0,
    watchOpenedAsNodeCrashed: 0,
    watchEvents: 0,
    watchProgress: 0,
    progressRequests: 0,
    rangesOk: 0,
    rangesPast: 0,
    rangesPaged: 0,
    rangesCompacted: 0,
    rangesFailed: 0,
    leaderTerms: 0,
    compactions: 0,
    compactRevision: 0,
  };
  const policyOf = (id: string) => cluster.node(id).policyOf(WATCH_KEYSPACE) as CpPolicy;
  const serving = () => cluster.nodeIds.filter((id) => cluster.isServing(id));

  // ---- Ground truth: the disks' history, merged.
  const truth = new Map<number, ChangeBatch>();
  const truthBytes = new Map<number, Buffer>();
  const seenThrough = new Map<string, number>();
  const seenApplied = new Map<string, number>();
  /** The ground truth holds every revision up to this one. */
  let truthThrough = 0;
  const groundTruthProblems: string[] = [];
  const leaderTerms = new Set<number>();
  const collect = () => {
    for (const id of cluster.nodeIds) {
      // What each disk holds, and what each running node applied and holds in memory still: a
      // revision the leader's retention compacts within one flush interval reaches no disk.
      const durable = cluster.durableHistory(id, WATCH_KEYSPACE, seenThrough.get(id) ?? 0);
      if (durable.length > 0) seenThrough.set(id, durable[durable.length - 1]!.revision);
      const applied = cluster.isUp(id) ? ((cluster.node(id).policyOf(WATCH_KEYSPACE) as { localHistory?: (after: number) => ChangeBatch[] }).localHistory?.(seenApplied.get(id) ?? 0) ?? []) : [];
      if (applied.length > 0) seenApplied.set(id, applied[applied.length - 1]!.revision);
      for (const batch of [...durable, ...applied]) {
        const bytes = encodeBatch(batch);
        const held = truthBytes.get(batch.revision);
        if (held === undefined) {
          truth.set(batch.revision, batch);
          truthBytes.set(batch.revision, bytes);
        } else if (!held.equals(bytes) && groundTruthProblems.length < 5) {
          groundTruthProblems.push(`${id}'s history holds other changes at revision ${batch.revision} than another node's: ${describeBatch(batch)} vs ${describeBatch(truth.get(batch.revision)!)}`);
        }
      }
    }
    for (const id of cluster.nodeIds) {
      if (!cluster.isUp(id)) continue;
      const status = (cluster.node(id).policyOf(WATCH_KEYSPACE) as Partial<CpPolicy>).raftStatus?.();
      if (status?.role === 'leader') leaderTerms.add(status.term);
    }
  };
  let collecting = true;
  const collector = async () => {
    while (collecting) {
      collect();
      await sleep(COLLECT_EVERY_MS);
    }
  };

  // ---- Writes and ranges.
  const acknowledged: AcknowledgedTxn[] = [];
  const ranges: RangeRecord[] = [];
  /** The highest revision acknowledged so far (a write's, or a range's): what clients know exists. */
  let known = 0;
  const call = async <T>(nodeId: string, run: () => Promise<T>): Promise<T | undefined> => {
    const guarded = run().then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
    // A crashed node's calls may never settle: the client gives up after twice its deadline.
    const outcome = await Promise.race([guarded, sleep(2 * timeoutMs + 50).then(() => ({ error: new Error(`${nodeId} did not answer`) }))]);
    if ('value' in outcome) {
      stats.ok!++;
      return outcome.value;
    }
    stats.fail!++;
    return undefined;
  };

  const write = async (random: SeededRandom, client: number, n: number): Promise<void> => {
    const nodeId = random.pick(cluster.nodeIds);
    const key = random.pick(KEYS);
    const value = `${client}-${n}`;
    const roll = random.next();
    const k = Buffer.from(key, 'latin1');
    const v = Buffer.from(value, 'latin1');
    let success: RequestOp[];
    let compares: Compare[] = [];
    let changes: AcknowledgedTxn['changes'];
    if (roll < 0.55) {
      success = [{ put: { key: k, value: v, lease: 0n } }];
      changes = [{ type: 'put', key, value }];
    } else if (roll < 0.75) {
      success = [{ delete: { key: k } }];
      changes = [{ type: 'delete', key }];
    } else if (roll < 0.88) {
      // A compare-and-set on the key's version: it may or may not swap.
      const expected = BigInt(random.int(0, 3));
      compares = [{ key: k, target: CompareTarget.COMPARE_TARGET_VERSION, result: CompareResult.COMPARE_RESULT_EQUAL, value: Buffer.alloc(0), number: expected }];
      success = [{ put: { key: k, value: v, lease: 0n } }];
      changes = [{ type: 'put', key, value }];
    } else {
      // Two keys in one transaction: one revision, two changes (a watch must get both together).
      const other = random.pick(KEYS.filter((x) => x !== key));
      success = [{ put: { key: k, value: v, lease: 0n } }, { put: { key: Buffer.from(other, 'latin1'), value: v, lease: 0n } }];
      changes = [{ type: 'put', key, value }, { type: 'put', key: other, value }];
    }
    if (!cluster.isUp(nodeId)) {
      stats.fail!++;
      return;
    }
    const response = await call(nodeId, () => cluster.node(nodeId).txn({ keyspace: WATCH_KEYSPACE, compares, success, failure: [] }));
    if (response === undefined) return;
    const revision = Number(response.revision);
    known = Math.max(known, revision);
    if (!response.succeeded) return;
    const made = changes.filter((_, i) => !(changes[i]!.type === 'delete' && deletedNothing(response, i)));
    acknowledged.push({ node: nodeId, revision, changes: made });
  };

  const readRange = async (random: SeededRandom): Promise<void> => {
    const range = random.pick(RANGES);
    const consistency = random.chance(0.5) ? 'linearizable' : 'serializable';
    // The current revision, a recent one, or any since the first (often compacted by then).
    const when = random.next();
    const requested = when < 0.4 || known === 0 ? 0 : when < 0.8 ? random.int(Math.max(1, known - 30), known) : random.int(1, known);
    const limit = random.chance(0.5) ? 0 : random.int(1, 3);
    const descending = random.chance(0.2);
    const keysOnly = random.chance(0.1);
    const countOnly = !keysOnly && random.chance(0.05);
    const unboundedBytes = random.chance(0.8);
    const atLeast = known;
    let revision = requested;
    let after: Buffer | undefined;
    for (let page = 0; ; page++) {
      const nodeId = random.pick(cluster.nodeIds);
      if (!cluster.isServing(nodeId)) {
        stats.rangesFailed!++;
        return;
      }
      const query: RangeQuery = { range: range.keys, limit, keysOnly, countOnly, descending, revision, ...(after === undefined ? {} : { after }), maxBytes: unboundedBytes ? LARGE_PAGE_BYTES : 150 };
      const invokedAtMs = scheduler.nowMs();
      let failure: unknown;
      const result = await call(nodeId, () =>
        policyOf(nodeId)
          .range(query, { timeoutMs, consistency })
          .catch((error: unknown) => {
            failure = error;
            throw error;
          }),
      );
      if (result === undefined) {
        if (failure instanceof ReplikitError && failure.kind === 'out-of-range') stats.rangesCompacted!++;
        else stats.rangesFailed!++;
        return;
      }
      stats.rangesOk!++;
      if (page === 0 && requested > 0 && requested < atLeast) stats.rangesPast!++;
      if (page > 0) stats.rangesPaged!++;
      ranges.push(rangeRecord(nodeId, consistency, revision, query, result, unboundedBytes, page === 0 ? atLeast : 0, invokedAtMs));
      known = Math.max(known, result.revision);
      const last = result.kvs[result.kvs.length - 1];
      if (!result.more || last === undefined || !random.chance(0.7)) return;
      revision = result.revision;
      after = last.key;
    }
  };

  /**
   * A client's Compact, a few revisions behind what it knows: history goes sooner than the
   * retention. Never past what the ground truth already holds: a revision compacted before any
   * disk flushed it would be seen by no one.
   */
  const compact = async (random: SeededRandom): Promise<void> => {
    const nodeId = random.pick(cluster.nodeIds);
    while (truth.has(truthThrough + 1)) truthThrough++;
    const revision = Math.min(truthThrough, known - random.int(5, 20));
    if (revision < 1 || !cluster.isServing(nodeId)) return;
    const policy = policyOf(nodeId) as CpPolicy & Pick<KeyspacePolicy, 'compact'>;
    if ((await call(nodeId, () => policy.compact!(revision, { timeoutMs }))) !== undefined) stats.compactions!++;
  };

  const client = async (index: number, random: SeededRandom): Promise<void> => {
    for (let n = 0; n < opsPerClient; n++) {
      await sleep(random.between(0, 8));
      const roll = random.next();
      if (roll < 0.35) await readRange(random);
      else if (roll < 0.38) await compact(random);
      else await write(random, index, n);
    }
  };

  // ---- Watches.
  const watches: WatchRecord[] = [];
  const droppedOnResume: DroppedChanges[] = [];
  let nextWatchId = 1;
  let stopping = false;
  interface LiveWatch {
    readonly watcher: Watcher;
    readonly node: string;
    readonly openedAtMs: number;
    paused: boolean;
  }
  const live = new Map<number, LiveWatch>();
  /** The chains still running, by slot. */
  const running = new Set<number>();
  const chainRandom = cluster.random.fork(300);

  /**
   * One logical watch: opens on a serving node (preferring `prefer`), consumes, and resumes after
   * every failure, until the run stops it. A resume that finds its revision compacted starts a
   * fresh chain from the compaction revision + 1.
   */
  const chain = async (slot: number, range: (typeof RANGES)[number], from: number, prefer: string | undefined, random: SeededRandom): Promise<void> => {
    running.add(slot);
    try {
      await chainLoop(slot, range, from, prefer, random);
    } finally {
      running.delete(slot);
    }
  };
  const chainLoop = async (slot: number, range: (typeof RANGES)[number], from: number, prefer: string | undefined, random: SeededRandom): Promise<void> => {
    const prevKv = random.chance(0.5);
    let resumes: string | undefined;
    let startRevision = from;
    while (!stopping) {
      const candidates = serving();
      if (candidates.length === 0) {
        await sleep(20);
        continue;
      }
      const nodeId = prefer !== undefined && candidates.includes(prefer) ? prefer : random.pick(candidates);
      prefer = undefined;
      let watcher: Watcher;
      const opener = cluster.node(nodeId);
      try {
        const request: WatchRequestSpec = { range: range.keys, startRevision, prevKv, progressIntervalMs: random.pick([100, 200, 500]) };
        watcher = await policyOf(nodeId).watch(request, { timeoutMs });
      } catch (error: unknown) {
        stats.watchOpenFailures!++;
        if (error instanceof ReplikitError && error.kind === 'out-of-range') {
          // Compacted: the chain cannot go on without a gap. A new one starts after the compaction.
          stats.watchFreshChains!++;
          resumes = undefined;
          startRevision = Number(error.details['compact_revision'] ?? '0') + 1;
        }
        await sleep(random.between(5, 40));
        continue;
      }
      if (stopping) {
        watcher.cancel();
        break;
      }
      stats.watchesOpened!++;
      if (resumes !== undefined) stats.watchResumes!++;
      const id = `w${nextWatchId++}`;
      const responses: WatchResponseRecord[] = [];
      const record: { -readonly [K in keyof WatchRecord]: WatchRecord[K] } = { id, node: nodeId, range: range.record, startRevision, responses, ...(resumes === undefined ? {} : { resumes }) };
      watches.push(record);
      const entry: LiveWatch = { watcher, node: nodeId, openedAtMs: scheduler.nowMs(), paused: false };
      live.set(slot, entry);
      // The node crashed while the watch was being opened: it must end all the same.
      if (!cluster.isUp(nodeId) || cluster.node(nodeId) !== opener) {
        stats.watchOpenedAsNodeCrashed!++;
        expectEnd(slot, entry, nodeId);
      }
      let dropPending = options.unsafeDropEventOnResume === true && resumes !== undefined;
      let failure: ReplikitError | undefined;
      try {
        for (;;) {
          // Now and then the consumer stops reading for a while (a slow client).
          if (random.chance(0.03)) {
            entry.paused = true;
            await sleep(random.between(50, 400));
            entry.paused = false;
          }
          const next = await watcher.next();
          if (next.done) break;
          const message: WatchMessage = next.value;
          if (message.kind === 'created') {
            record.startRevision = message.revision + 1;
            continue;
          }
          if (message.kind === 'progress') {
            stats.watchProgress!++;
            responses.push({ kind: 'progress', revision: message.revision });
            continue;
          }
          let events = message.events;
          if (dropPending && events.length > 0) {
            dropPending = false;
            const first = events[0]!.revision;
            droppedOnResume.push({ watchId: id, revision: first, keys: events.filter((e) => e.revision === first).map((e) => latin1(e.event.kv.key)) });
            events = events.filter((e) => e.revision !== first);
          }
          stats.watchEvents! += events.length;
          if (events.length > 0) responses.push({ kind: 'events', events: events.map(({ revision, event }) => watchEvent(revision, event.type, event.kv, event.prev)) });
          // The message says it is complete up to its revision: held to that as a progress claim.
          const lastEvent = events[events.length - 1]?.revision ?? 0;
          if (message.revision > lastEvent) responses.push({ kind: 'progress', revision: message.revision });
        }
      } catch (error: unknown) {
        failure = error instanceof ReplikitError ? error : new ReplikitError('internal', 'WATCH_FAILED', String(error));
      } finally {
        if (live.get(slot)?.watcher === watcher) live.delete(slot);
      }
      if (failure === undefined) break;
      const resumeAt = Number(failure.details['resume_revision'] ?? String(watcher.deliveredRevision + 1));
      record.endedAtRevision = resumeAt - 1;
      if (failure.reason === 'NODE_STOPPING' || failure.reason === 'GROUP_FAILED' || failure.reason === 'WATCH_ABANDONED') stats.watchEndsStopped!++;
      else if (failure.reason === 'HISTORY_NOT_ON_THIS_NODE') stats.watchEndsNoHistory!++;
      else if (failure.kind === 'out-of-range') stats.watchEndsCompacted!++;
      else if (failure.kind === 'resource-exhausted') stats.watchEndsSlow!++;
      else stats.watchEndsOther!++;
      if (failure.kind === 'out-of-range') {
        stats.watchFreshChains!++;
        resumes = undefined;
        startRevision = Number(failure.details['compact_revision'] ?? '0') + 1;
      } else {
        resumes = id;
        startRevision = resumeAt;
      }
      // A client comes back at once, or after a while (from further behind).
      await sleep(random.chance(0.15) ? random.between(300, 1_500) : random.between(0, 20));
    }
  };

  // A watcher on a node that crashed must end (UNAVAILABLE); one that does not within 100 ms of
  // its consumer asking is counted and abandoned (resumed elsewhere) so the run goes on.
  const expectEnd = (slot: number, w: LiveWatch, crashed: string): void => {
    const check = () => {
      if (live.get(slot) !== w) return;
      // A consumer that paused has not asked yet: look again once it has.
      if (w.paused) return void scheduler.setTimer(100, check);
      stats.watchHungAfterCrash!++;
      if (process.env.WATCH_SIM_DEBUG) console.log(`seed ${options.seed}: the watcher opened on ${crashed} at ${w.openedAtMs.toFixed(1)} ms did not end after the node crashed (delivered ${w.watcher.deliveredRevision})`);
      w.watcher.end(new ReplikitError('unavailable', 'WATCH_ABANDONED', `the watcher on ${crashed} did not end after its node crashed`));
    };
    scheduler.setTimer(100, check);
  };
  cluster.crashListeners.push((crashed) => {
    for (const [slot, w] of live) if (w.node === crashed) expectEnd(slot, w, crashed);
  });

  const wipedCp = new Set<string>();
  const nemesis = new Nemesis(
    cluster,
    cluster.random.fork(99),
    {
      isolateWholeNodes: true,
      pauseMs: [20, 120],
      // As the register workload: one CP node may lose its disk per run (see there).
      canWipe: (id) => {
        if (wipedCp.size > 0 && !wipedCp.has(id)) return false;
        wipedCp.add(id);
        return true;
      },
    },
    stats,
  );

  if (!(await cluster.untilAllServing(10_000))) throw new Error(`seed ${options.seed}: the cluster did not form within 10 virtual seconds`);
  const background: Promise<void>[] = [collector()];
  // Two or three chains on different nodes from revision 1.
  const startNodes = [...cluster.nodeIds];
  const chainCount = chainRandom.int(2, 3);
  for (let i = 0; i < chainCount; i++) {
    const range = i === 0 ? RANGES[0]! : i === 1 ? chainRandom.pick([RANGES[1]!, RANGES[2]!]) : chainRandom.pick(RANGES);
    background.push(chain(i, range, 1, startNodes[i], chainRandom.fork(i)));
  }
  // Later chains: from an old revision (often compacted by then) or from now.
  const latecomers = (async () => {
    for (let i = 0; i < 2; i++) {
      await sleep(chainRandom.between(500, 2_000));
      if (stopping) return;
      stats.watchLateChains!++;
      const from = chainRandom.chance(0.5) ? 0 : chainRandom.chance(0.5) ? 1 : Math.max(1, known - chainRandom.int(0, 80));
      background.push(chain(10 + i, chainRandom.pick(RANGES), from, undefined, chainRandom.fork(10 + i)));
    }
  })();
  // Progress asked for now and then.
  const progressRandom = cluster.random.fork(500);
  const progress = (async () => {
    while (!stopping) {
      await sleep(progressRandom.between(30, 200));
      const all = [...live.values()];
      if (all.length === 0) continue;
      stats.progressRequests!++;
      progressRandom.pick(all).watcher.requestProgress();
    }
  })();

  const workload = Promise.all(Array.from({ length: clients }, (_, i) => client(i, cluster.random.fork(100 + i))));
  const chaos = (options.faults ?? true) ? nemesis.run() : Promise.resolve();
  const finished = await scheduler.runUntilSettled(workload, 10 * 60_000);
  nemesis.stop();
  if (!finished) throw new Error(`seed ${options.seed}: the workload did not finish within 10 virtual minutes`);

  nemesis.heal();
  await scheduler.runUntilSettled(chaos, 1_000);
  if (!(await cluster.untilAllServing(30_000, true))) throw new Error(`seed ${options.seed}: not every node serves 30 virtual seconds after the heal`);
  // Every node at the leader's revision, and a flush later, on disk.
  const head = await converged(cluster, 5_000);
  await scheduler.advance(300);
  // The watches catch up to the end (progress asked for, so that they say so).
  const deadline = scheduler.nowMs() + 3_000;
  while (scheduler.nowMs() < deadline) {
    if ([...running].every((slot) => (live.get(slot)?.watcher.deliveredRevision ?? -1) >= head)) break;
    for (const w of live.values()) if (w.watcher.deliveredRevision < head) w.watcher.requestProgress();
    await scheduler.advance(20);
  }
  // Final reads of the whole keyspace on every node: the same state everywhere.
  for (const id of cluster.nodeIds) {
    const query: RangeQuery = { range: RANGES[3]!.keys, limit: 0, keysOnly: false, countOnly: false, descending: false, revision: 0, maxBytes: LARGE_PAGE_BYTES };
    const invokedAtMs = scheduler.nowMs();
    const read = policyOf(id)
      .range(query, { timeoutMs: 2_000, consistency: 'serializable' })
      .catch(() => undefined);
    if (!(await scheduler.runUntilSettled(read, 3_000))) continue;
    const result = await read;
    if (result !== undefined) ranges.push(rangeRecord(id, 'serializable', 0, query, result, true, 0, invokedAtMs));
  }
  stopping = true;
  for (const w of live.values()) w.watcher.cancel();
  await scheduler.runUntilSettled(Promise.all([latecomers, progress, ...background.slice(1)]), 5_000);
  collecting = false;
  await scheduler.runUntilSettled(background[0]!, 1_000);
  collect();

  // The ground truth must run from revision 1 to the head without a gap.
  const revisions = [...truth.keys()].sort((a, b) => a - b);
  const finalHead = Math.max(head, revisions[revisions.length - 1] ?? 0);
  for (let r = 1; r <= finalHead; r++) {
    if (!truth.has(r)) {
      groundTruthProblems.push(`no node was seen holding revision ${r} (of 1..${finalHead}), on disk or applied: the ground truth has a gap`);
      break;
    }
  }
  const committed: CommittedChange[] = [];
  for (const r of revisions) {
    for (const e of truth.get(r)!.events) committed.push({ revision: r, type: e.type, key: latin1(e.kv.key), ...(e.type === 'put' ? { value: latin1(e.kv.value) } : {}) });
  }
  stats.leaderTerms = leaderTerms.size;
  // Terms that had a leader, less the first: changes of leader seen (a lower bound).
  stats.leaderChanges = Math.max(0, leaderTerms.size - 1);
  stats.droppedOnResume = droppedOnResume.length;
  stats.committedRevisions = revisions.length;
  stats.compactRevision = Math.max(0, ...cluster.nodeIds.map((id) => Number((policyOf(id) as { stats?: () => Record<string, number> | undefined }).stats?.()?.compactRevision ?? 0)));
  stats.compacted = stats.compactRevision > 0 ? 1 : 0;
  Object.assign(stats, cluster.faults, cluster.policyTotals());
  return { seed: options.seed, stats, schedule: nemesis.schedule, history: { committed, watches }, ranges, acknowledged, droppedOnResume, groundTruthProblems, cluster };
}

/** Runs time until every node has applied the leader's revision; answers it. */
async function converged(cluster: SimCluster, limitMs: number): Promise<number> {
  const deadline = cluster.scheduler.nowMs() + limitMs;
  for (;;) {
    const revisions = cluster.nodeIds.map((id) => (cluster.isUp(id) ? ((cluster.node(id).policyOf(WATCH_KEYSPACE) as Partial<CpPolicy>).raftStatus?.()?.revision ?? -1) : -1));
    if (revisions.every((r) => r === revisions[0] && r >= 0) || cluster.scheduler.nowMs() >= deadline) return Math.max(...revisions);
    await cluster.scheduler.advance(10);
  }
}

function deletedNothing(response: TxnResponse, i: number): boolean {
  return (response.responses[i]?.delete?.deleted ?? 0) === 0;
}

function watchEvent(revision: number, type: 'put' | 'delete', kv: StoredKey, prev: StoredKey | undefined): WatchEvent {
  return {
    type,
    key: latin1(kv.key),
    ...(type === 'put' ? { value: latin1(kv.value) } : {}),
    revision,
    ...(prev === undefined ? {} : { prevValue: latin1(prev.value) }),
  };
}

function rangeRecord(node: string, consistency: RangeRecord['consistency'], requested: number, query: RangeQuery, result: RangeResult, unboundedBytes: boolean, atLeast: number, invokedAtMs: number): RangeRecord {
  return {
    node,
    consistency,
    requested,
    revision: result.revision,
    range: { start: latin1(query.range.start), end: query.range.end === null ? null : latin1(query.range.end) },
    limit: query.limit,
    descending: query.descending,
    keysOnly: query.keysOnly,
    countOnly: query.countOnly,
    ...(query.after === undefined ? {} : { after: latin1(query.after) }),
    unboundedBytes,
    kvs: result.kvs.map((k) => ({ key: latin1(k.key), value: latin1(k.value), createRevision: k.createRevision, modRevision: k.modRevision, version: k.version })),
    count: result.count,
    more: result.more,
    atLeast,
    invokedAtMs,
  };
}

// ---- Checks.

interface ModelKey {
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
}

/** The committed changes folded: each key's records by revision (null: absent from then on). */
class Model {
  readonly #byKey = new Map<string, { revision: number; record: ModelKey | null }[]>();

  constructor(committed: readonly CommittedChange[]) {
    for (const c of committed) {
      let list = this.#byKey.get(c.key);
      if (list === undefined) this.#byKey.set(c.key, (list = []));
      const held = list[list.length - 1]?.record ?? null;
      const record: ModelKey | null =
        c.type === 'delete'
          ? null
          : { value: c.value ?? '', createRevision: held?.createRevision ?? c.revision, modRevision: c.revision, version: (held?.version ?? 0) + 1 };
      list.push({ revision: c.revision, record });
    }
  }

  /** The keys in [start, end) at `revision`, ascending (latin1 order is byte order). */
  at(revision: number, start: string, end: string | null): { key: string; record: ModelKey }[] {
    const out: { key: string; record: ModelKey }[] = [];
    for (const [key, list] of this.#byKey) {
      if (key < start || (end !== null && key >= end)) continue;
      let record: ModelKey | null = null;
      for (const v of list) {
        if (v.revision > revision) break;
        record = v.record;
      }
      if (record !== null) out.push({ key, record });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

/**
 * Each Range page against the model at the revision it answered: the page is the model's keys in
 * range after the continuation, in order, from the first, each with its value (empty when
 * keys-only) and revisions; no more than the limit (exactly the limit's worth when the byte budget
 * did not bind); `more` when keys remain; `count` the keys in the whole range. A read at a given
 * revision answers at it; a linearizable read of the current revision answers at least what was
 * acknowledged before it began. Answers the first mismatch, or undefined.
 */
export function checkRanges(committed: readonly CommittedChange[], ranges: readonly RangeRecord[]): string | undefined {
  const model = new Model(committed);
  const head = committed[committed.length - 1]?.revision ?? 0;
  for (const [i, r] of ranges.entries()) {
    const where = () => `range ${i} (${r.node}, ${r.consistency}, [${JSON.stringify(r.range.start)}, ${r.range.end === null ? '∞' : JSON.stringify(r.range.end)}) at ${r.requested === 0 ? 'the current revision' : `revision ${r.requested}`}${r.after === undefined ? '' : ` after ${JSON.stringify(r.after)}`}, limit ${r.limit}${r.descending ? ', descending' : ''}${r.keysOnly ? ', keys only' : ''}${r.countOnly ? ', count only' : ''}, at ${r.invokedAtMs.toFixed(1)} ms)`;
    if (r.requested > 0 && r.revision !== r.requested) return `${where()} answered at revision ${r.revision}`;
    if (r.revision > head) return `${where()} answered at revision ${r.revision}, past the last committed revision ${head}`;
    if (r.requested === 0 && r.consistency === 'linearizable' && r.revision < r.atLeast) return `${where()} answered at revision ${r.revision}, before revision ${r.atLeast}, acknowledged before the read began`;
    const all = model.at(r.revision, r.range.start, r.range.end);
    if (r.count !== all.length) return `${where()} counted ${r.count} keys; the model holds ${all.length} at revision ${r.revision}: ${describeModel(all)}`;
    if (r.countOnly) {
      if (r.kvs.length > 0) return `${where()} returned keys for a count-only read`;
      continue;
    }
    let rest = r.descending ? [...all].reverse() : all;
    if (r.after !== undefined) rest = rest.filter((k) => (r.descending ? k.key < r.after! : k.key > r.after!));
    const wanted = r.limit > 0 ? Math.min(r.limit, rest.length) : rest.length;
    if (r.kvs.length > wanted || (r.unboundedBytes && r.kvs.length !== wanted) || (rest.length > 0 && r.kvs.length === 0)) {
      return `${where()} returned ${r.kvs.length} keys (${r.kvs.map((k) => k.key).join(', ')}); the model has ${rest.length} to give at revision ${r.revision}: ${describeModel(rest)}`;
    }
    for (const [j, got] of r.kvs.entries()) {
      const m = rest[j]!;
      const value = r.keysOnly ? '' : m.record.value;
      if (got.key !== m.key || got.value !== value || got.modRevision !== m.record.modRevision || got.createRevision !== m.record.createRevision || got.version !== m.record.version) {
        return `${where()} returned ${JSON.stringify(got)} as key ${j + 1}; at revision ${r.revision} the model holds ${JSON.stringify({ ...m.record, key: m.key, value })}`;
      }
    }
    if (r.more !== r.kvs.length < rest.length) return `${where()} said more=${r.more} after ${r.kvs.length} of ${rest.length} keys`;
  }
  return undefined;
}

/** Every acknowledged write's changes are exactly the committed changes at its revision. Answers the first mismatch. */
export function checkAcknowledged(committed: readonly CommittedChange[], acknowledged: readonly AcknowledgedTxn[]): string | undefined {
  const byRevision = new Map<number, CommittedChange[]>();
  for (const c of committed) {
    let list = byRevision.get(c.revision);
    if (list === undefined) byRevision.set(c.revision, (list = []));
    list.push(c);
  }
  const text = (changes: readonly { type: string; key: string; value?: string }[]) => changes.map((c) => `${c.type} ${c.key}${c.type === 'put' ? `=${c.value}` : ''}`).sort().join(', ');
  for (const a of acknowledged) {
    if (a.changes.length === 0) continue;
    const held = text(byRevision.get(a.revision) ?? []);
    const wrote = text(a.changes);
    if (held !== wrote) return `a write acknowledged by ${a.node} at revision ${a.revision} made [${wrote}], but the committed changes there are [${held}]`;
  }
  return undefined;
}

/** What one seed found: the checker's verdict on the watches, and the harness's own checks. */
export interface WatchSeedResult {
  readonly seed: number;
  readonly stats: Record<string, number>;
  readonly schedule: readonly FaultEvent[];
  readonly check?: WatchCheckResult;
  /** unsafeDropEventOnResume: what was dropped, to match against the checker's violations. */
  readonly droppedOnResume: readonly DroppedChanges[];
  readonly violation?: { readonly kind: 'watch' | 'range' | 'acknowledged' | 'ground-truth' | 'run'; readonly explanation: string };
}

/** Runs one seed and checks it: ground truth, acknowledged writes, ranges, then the watch checker. */
export async function runWatchSeed(seed: number, options: Omit<WatchWorkloadOptions, 'seed'> = {}): Promise<WatchSeedResult> {
  let run: WatchWorkloadResult;
  try {
    run = await runWatchWorkload({ ...options, seed });
  } catch (error) {
    return { seed, stats: {}, schedule: [], droppedOnResume: [], violation: { kind: 'run', explanation: error instanceof Error ? (error.stack ?? error.message) : String(error) } };
  }
  const base = { seed, stats: run.stats, schedule: run.schedule, droppedOnResume: run.droppedOnResume };
  if (run.groundTruthProblems.length > 0) return { ...base, violation: { kind: 'ground-truth', explanation: run.groundTruthProblems.join('\n') } };
  const acked = checkAcknowledged(run.history.committed, run.acknowledged);
  if (acked !== undefined) return { ...base, violation: { kind: 'acknowledged', explanation: acked } };
  const ranged = checkRanges(run.history.committed, run.ranges);
  if (ranged !== undefined) return { ...base, violation: { kind: 'range', explanation: ranged } };
  const check = checkWatches(run.history, { maxViolations: 50 });
  if (!check.ok) return { ...base, check, violation: { kind: 'watch', explanation: check.violations.map((v) => `${v.kind}: ${v.message}`).join('\n') } };
  return { ...base, check };
}

function describeModel(keys: readonly { key: string; record: ModelKey }[]): string {
  return keys.length === 0 ? '(none)' : keys.map((k) => `${k.key}=${k.record.value}@${k.record.modRevision}`).join(', ');
}

function describeBatch(batch: ChangeBatch): string {
  return batch.events.map((e) => `${e.type} ${latin1(e.kv.key)}${e.type === 'put' ? `=${latin1(e.kv.value)}` : ''}`).join(', ');
}

