/**
 * The Range and Watch rows of `npm run bench` (issue #16), replikit CP against etcd with the same
 * load generator (bench/load.ts) and the same routing as the put and get rows:
 *
 * In each round, per system: the 1,000 watchers first, then the latency under load, then the Ranges.
 *
 * 1. Event latency under put load: one watcher on prefix `w/` through a follower and one through
 *    the leader; 64 callers put 100-byte values under `w/` for the phase; each event is matched to
 *    its put (bench/watch-latency.ts) and timed from the put's acknowledgement to its arrival.
 * 2. 1,000 watchers on one follower, over 10 channels (separate HTTP/2 connections) of 100 streams,
 *    10 on each of 100 prefixes; one writer puts at 200/s under them; event latency as above, the
 *    node's VmRSS before and after the watchers open and after the writes.
 * 3. A linearizable Range of a 10,000-key prefix (100-byte values), timed over 10 runs a round.
 *
 * Each system runs in a cluster of its own, started for this section after the other rows (3
 * `replikit serve --policy cp` processes; 3 etcd members); the one not being measured is paused
 * (SIGSTOP), as in the other rows. Every watch opens one gRPC stream (replikit serves one watch a
 * stream; etcd's clients would multiplex many on one, which is not measured here).
 */
import { Client, credentials, Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import type { Histogram } from 'hdr-histogram-js';
import { readFileSync } from 'node:fs';
import { LocalCluster } from '../src/cli/local-cluster.js';
import { ClusterServiceClient } from '../src/gen/replikit/v1/cluster_service.js';
import { AckLevel, KvServiceClient, type WatchRequest, type WatchResponse } from '../src/gen/replikit/v1/kv_service.js';
import type { Reaper } from './children.js';
import { cpuMsOf } from './cpu-usage.js';
import { EtcdCluster, rawUnary } from './etcd.js';
import {
  ETCD_PUT_PATH,
  ETCD_RANGE_PATH,
  ETCD_TXN_PATH,
  ETCD_WATCH_PATH,
  decodeEtcdRangeResult,
  decodeEtcdWatchResponse,
  decodeTxnResponse,
  encodeEtcdRangeRequest,
  encodeEtcdWatchCreate,
  encodePutRequest,
  encodeTxnRequest,
  etcdPrefixRangeEnd,
} from './etcd-wire.js';
import { latencyHistogram, runLoad } from './load.js';
import { DeliveryTracker, addCounts, emptyCounts, settle, tagOf, taggedValue } from './watch-latency.js';
import {
  aggregateRangeWatch,
  type FanoutSample,
  type RangeSample,
  type RangeWatchConfig,
  type RangeWatchReport,
  type RangeWatchSystem,
  type WatchLatencySample,
} from './watch-report.js';
import { VALUE_BYTES } from './workload.js';
import { RESUME_TIMEOUT_MS, resume, signalAll } from './pausing.js';

const EMPTY = Buffer.alloc(0);
/** Each call's deadline, as in the other rows. */
const CALL_DEADLINE_MS = 5_000;
/** A full Range may read megabytes on a busy machine. */
const RANGE_DEADLINE_MS = 30_000;
/** How long a watch may take to be created (1,000 at once on a busy 2-core machine). */
const CREATE_TIMEOUT_MS = 30_000;
/** How long the events of the last puts may take to arrive once the load stopped. */
const SETTLE_MS = 5_000;
/** How long a continued system may take to serve again. */
const LATENCY_CALLERS = 64;
const LATENCY_KEYS = 1_000;
const FANOUT_WATCHERS = 1_000;
const FANOUT_CHANNELS = 10;
const FANOUT_PREFIXES = 100;
const FANOUT_RATE = 200;
/** Puts of the fan-out writer in flight at most (it is paced, not closed-loop). */
const FANOUT_MAX_IN_FLIGHT = 64;
const RANGE_KEYS = 10_000;
/** Puts per transaction while loading the Range keys (both systems allow 128). */
const LOAD_BATCH = 100;
const LOAD_CONCURRENCY = 4;

export interface WatchRangeOptions {
  readonly reaper: Reaper;
  readonly quick: boolean;
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** Range runs per round (full: 10, quick: 5). */
  readonly rangeRuns: number;
  readonly replikit: boolean;
  /** The etcd binary, or undefined to leave etcd out. */
  readonly etcdBinary: string | undefined;
  readonly serveArgs: readonly string[];
  readonly replikitCalls: 'spread' | 'pinned';
  readonly etcdReads: 'leader' | 'spread';
  readonly pause: boolean;
  readonly log: (line: string) => void;
  /** Called at the start of each measured step, with the time it is planned to take. */
  readonly phase?: (label: string, plannedMs: number) => void;
}

/** How many progress steps {@link runWatchRange} reports, and how long it plans for them. */
export function watchRangePlan(options: Pick<WatchRangeOptions, 'rounds' | 'durationMs' | 'warmupMs' | 'replikit' | 'etcdBinary'>): { steps: number; plannedMs: number } {
  const systems = (options.replikit ? 1 : 0) + (options.etcdBinary !== undefined ? 1 : 0);
  const perRound = 3 * (options.durationMs + options.warmupMs) + 3_000;
  return { steps: systems * options.rounds * 3, plannedMs: systems * options.rounds * perRound };
}

/** A watch stream as the section uses it: created, then events until it is cancelled. */
interface WatchHandle {
  cancel(): void;
  /** Why the stream ended on its own (it should not), if it did. */
  failure(): string | undefined;
}

type EventSink = (value: Uint8Array, revision: bigint, at: number) => void;

/** One system as the section drives it. */
interface Target {
  readonly name: RangeWatchSystem;
  readonly description: string;
  pids(): number[];
  /** The server process of node `index`. */
  pid(index: number): number | undefined;
  /** Index of the current leader (0..2). */
  leader(): Promise<number>;
  put(key: Buffer, value: Buffer, n: number): Promise<void>;
  /** One transaction of puts (loading only). */
  putAll(entries: readonly [Buffer, Buffer][]): Promise<void>;
  /** The whole prefix, linearizable; resolves to the keys read and the calls it took. */
  range(prefix: Buffer, n: number): Promise<{ keys: number; calls: number }>;
  /** A watch on `prefix` through node `index` on channel `channel` of it; resolves once created. */
  watch(index: number, channel: Client, prefix: Buffer, onEvent: EventSink): Promise<WatchHandle>;
  /** A fresh channel (its own HTTP/2 connection) to node `index`. */
  channel(index: number): Client;
  afterResume(): Promise<void>;
  close(): Promise<void>;
  /** What the report must say about how it was measured (e.g. a workaround it needed). */
  notes(): string[];
}

/** A channel option that keeps every channel on a connection of its own (grpc-js shares them otherwise). */
const OWN_CONNECTION = { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 64 * 1024 * 1024 };

function deadline(ms = CALL_DEADLINE_MS): { deadline: number } {
  return { deadline: Date.now() + ms };
}

/** VmRSS of a process in MB (NaN when it cannot be read). */
export function rssMb(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? NaN : Number(match[1]) / 1024;
  } catch {
    return NaN;
  }
}

/** Ends a client stream without an unhandled error event. */
function quietCancel(call: ClientDuplexStream<unknown, unknown>): void {
  call.removeAllListeners('data');
  call.on('error', () => undefined);
  call.cancel();
}

/** Resolves when `created` is called, rejects on `failed` or after CREATE_TIMEOUT_MS. */
function creation(): { promise: Promise<void>; created: () => void; failed: (why: string) => void } {
  let created!: () => void;
  let failed!: (why: string) => void;
  const promise = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`watch not created within ${CREATE_TIMEOUT_MS} ms`)), CREATE_TIMEOUT_MS);
    created = () => {
      clearTimeout(timer);
      resolve();
    };
    failed = (why) => {
      clearTimeout(timer);
      reject(new Error(why));
    };
  });
  return { promise, created, failed };
}

async function startReplikitTarget(options: WatchRangeOptions): Promise<Target> {
  const cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', 'cp', '--log-level', 'warn', ...options.serveArgs] });
  options.reaper.trackGroup(cluster);
  try {
    await cluster.startAll();
  } catch (err: unknown) {
    await cluster.stop();
    options.reaper.untrackGroup(cluster);
    throw err;
  }
  const ids = cluster.ids;
  const addresses = ids.map((id) => cluster.address(id));
  const clients = addresses.map((a) => new KvServiceClient(a, credentials.createInsecure()));
  const callers = options.replikitCalls === 'pinned' ? clients.slice(0, 1) : clients;
  const status = addresses.map((a) => new ClusterServiceClient(a, credentials.createInsecure()));
  const channels: Client[] = [];
  /** 0 (no limit) unless the server cannot send a whole page (see range). */
  const rangeNotes: string[] = [];
  const leader = async (): Promise<number> => {
    const until = Date.now() + RESUME_TIMEOUT_MS;
    let last = 'no answer';
    while (Date.now() < until) {
      try {
        const leaders = await Promise.all(
          status.map(
            (c) =>
              new Promise<string>((resolve, reject) =>
                c.status({}, new Metadata(), deadline(1_000), (err, res) => (err ? reject(err) : resolve(res.keyspaces.find((k) => k.name === 'default')?.raft?.leader ?? ''))),
              ),
          ),
        );
        const index = ids.indexOf(leaders[0]!);
        if (index >= 0 && leaders.every((l) => l === leaders[0])) return index;
        last = `leaders seen: ${leaders.map((l) => l || 'none').join(', ')}`;
      } catch (err: unknown) {
        last = err instanceof Error ? err.message : String(err);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`replikit: the nodes did not agree on a leader (${last})`);
  };
  return {
    name: 'replikit-cp',
    description:
      '3 `replikit serve --policy cp` processes, LmdbStore; puts and Ranges ' +
      (options.replikitCalls === 'pinned' ? 'to n1' : 'round-robin over the 3 nodes') +
      ' as in the put and get rows; watches on the node named',
    pids: () => ids.flatMap((id) => cluster.pid(id) ?? []),
    pid: (index) => cluster.pid(ids[index]!),
    leader,
    put: (key, value, n) =>
      new Promise((resolve, reject) =>
        callers[n % callers.length]!.put({ keyspace: 'default', key, value, sessionToken: EMPTY, ack: AckLevel.ACK_LEVEL_UNSPECIFIED, lease: 0n }, new Metadata(), deadline(), (err: ServiceError | null) =>
          err ? reject(err) : resolve(),
        ),
      ),
    putAll: (entries) =>
      new Promise((resolve, reject) =>
        clients[0]!.txn(
          { keyspace: 'default', compares: [], success: entries.map(([key, value]) => ({ put: { key, value, lease: 0n } })), failure: [] },
          new Metadata(),
          deadline(),
          (err: ServiceError | null, res) => (err ? reject(err) : res.succeeded ? resolve() : reject(new Error('a loading transaction without compares did not succeed'))),
        ),
      ),
    range: async (prefix, n) => {
      const client = callers[n % callers.length]!;
      const until = Date.now() + RANGE_DEADLINE_MS;
      const page = (continuation: Buffer) =>
        new Promise<{ kvs: unknown[]; more: boolean; continuation: Buffer }>((resolve, reject) =>
          client.range(
            {
              keyspace: 'default', key: prefix, rangeEnd: EMPTY, prefix: true, limit: 0n, keysOnly: false, countOnly: false,
              sortOrder: 0, revision: 0n, consistency: 0, sessionToken: EMPTY, continuation,
            },
            new Metadata(),
            { deadline: until },
            (err: ServiceError | null, r) => (err ? reject(err) : resolve(r)),
          ),
        );
      // Pages are at most 1 MiB of keys and values (RANGE_PAGE_BYTES): follow the continuation.
      let continuation: Buffer = EMPTY;
      let keys = 0;
      let calls = 0;
      for (;;) {
        const res = await page(continuation);
        calls++;
        keys += res.kvs.length;
        if (!res.more) return { keys, calls };
        if (res.continuation.length === 0) throw new Error('replikit Range answered more without a continuation');
        continuation = res.continuation;
      }
    },
    channel: (index) => {
      const c = new KvServiceClient(addresses[index]!, credentials.createInsecure(), OWN_CONNECTION);
      channels.push(c);
      return c;
    },
    watch: (_index, channel, prefix, onEvent) => {
      const call: ClientDuplexStream<WatchRequest, WatchResponse> = (channel as KvServiceClient).watch();
      const c = creation();
      let failure: string | undefined;
      let cancelled = false;
      call.on('data', (res: WatchResponse) => {
        const at = performance.now();
        if (res.created) c.created();
        for (const e of res.events) onEvent(e.kv?.value ?? EMPTY, e.kv?.modRevision ?? 0n, at);
        if (res.canceled) {
          failure ??= `watch canceled by the server: ${res.cancelReason}`;
          c.failed(failure);
        }
      });
      call.on('error', (err: ServiceError) => {
        if (cancelled) return;
        failure ??= `watch stream failed: ${err.message}`;
        c.failed(failure);
      });
      call.on('end', () => {
        if (cancelled) return;
        failure ??= 'watch stream ended';
        c.failed(failure);
      });
      call.write({ create: { keyspace: 'default', key: prefix, rangeEnd: EMPTY, prefix: true, startRevision: 0n, prevKv: false, progressIntervalMs: 0 } });
      return c.promise.then(
        () => ({
          cancel: () => {
            cancelled = true;
            quietCancel(call as ClientDuplexStream<unknown, unknown>);
          },
          failure: () => failure,
        }),
        (err: unknown) => {
          cancelled = true;
          quietCancel(call as ClientDuplexStream<unknown, unknown>);
          throw err;
        },
      );
    },
    afterResume: async () => undefined,
    notes: () => rangeNotes,
    close: async () => {
      for (const c of [...clients, ...status, ...channels]) c.close();
      await cluster.stop();
      options.reaper.untrackGroup(cluster);
    },
  };
}

async function startEtcdTarget(options: WatchRangeOptions, binary: string): Promise<Target> {
  const cluster = await EtcdCluster.start(binary, options.reaper);
  let leaderIndex = cluster.leaderIndex;
  const channels: Client[] = [];
  const readers = () => (options.etcdReads === 'leader' ? [cluster.clients[leaderIndex]!] : cluster.clients);
  return {
    name: 'etcd',
    description: `3 etcd members; puts to the leader, linearizable Range ${options.etcdReads === 'leader' ? 'to the leader' : 'round-robin over the members'} as in the put and get rows; watches on the member named`,
    pids: () => cluster.members.flatMap((m) => m.process.child.pid ?? []),
    pid: (index) => cluster.members[index]?.process.child.pid,
    leader: async () => leaderIndex,
    put: async (key, value) => {
      await rawUnary(cluster.clients[leaderIndex]!, ETCD_PUT_PATH, encodePutRequest(key, value), CALL_DEADLINE_MS);
    },
    putAll: async (entries) => {
      const res = decodeTxnResponse(
        await rawUnary(cluster.clients[leaderIndex]!, ETCD_TXN_PATH, encodeTxnRequest({ compare: [], success: entries.map(([key, value]) => ({ put: { key, value } })), failure: [] }), CALL_DEADLINE_MS),
      );
      if (!res.succeeded) throw new Error('an etcd loading Txn without compares did not succeed');
    },
    range: async (prefix, n) => {
      const r = readers();
      const res = decodeEtcdRangeResult(
        await rawUnary(r[n % r.length]!, ETCD_RANGE_PATH, encodeEtcdRangeRequest({ key: prefix, rangeEnd: etcdPrefixRangeEnd(prefix) }), RANGE_DEADLINE_MS),
      );
      if (res.more) throw new Error('etcd Range without a limit answered more');
      return { keys: res.kvs.length, calls: 1 };
    },
    channel: (index) => {
      const c = new Client(cluster.members[index]!.clientAddress, credentials.createInsecure(), OWN_CONNECTION);
      channels.push(c);
      return c;
    },
    watch: (_index, channel, prefix, onEvent) => {
      const call = channel.makeBidiStreamRequest(
        ETCD_WATCH_PATH,
        (req: Uint8Array) => Buffer.from(req.buffer, req.byteOffset, req.byteLength),
        (res: Buffer) => res,
        new Metadata(),
        {},
      );
      const c = creation();
      let failure: string | undefined;
      let cancelled = false;
      call.on('data', (buf: Buffer) => {
        const at = performance.now();
        const res = decodeEtcdWatchResponse(buf);
        if (res.created) c.created();
        for (const e of res.events) onEvent(e.kv.value, e.kv.modRevision, at);
        if (res.canceled) {
          failure ??= `watch canceled by etcd: ${res.cancelReason}`;
          c.failed(failure);
        }
      });
      call.on('error', (err: ServiceError) => {
        if (cancelled) return;
        failure ??= `watch stream failed: ${err.message}`;
        c.failed(failure);
      });
      call.on('end', () => {
        if (cancelled) return;
        failure ??= 'watch stream ended';
        c.failed(failure);
      });
      call.write(encodeEtcdWatchCreate({ key: prefix, rangeEnd: etcdPrefixRangeEnd(prefix) }));
      return c.promise.then(
        () => ({
          cancel: () => {
            cancelled = true;
            quietCancel(call as ClientDuplexStream<unknown, unknown>);
          },
          failure: () => failure,
        }),
        (err: unknown) => {
          cancelled = true;
          quietCancel(call as ClientDuplexStream<unknown, unknown>);
          throw err;
        },
      );
    },
    afterResume: async () => {
      leaderIndex = await cluster.findLeader();
    },
    notes: () => [],
    close: async () => {
      for (const c of channels) c.close();
      cluster.close();
    },
  };
}

/** Continues a paused system and waits until a put succeeds again. */
function resumeTarget(target: Target): Promise<void> {
  const probe = Buffer.from('probe');
  let n = 0;
  return resume({ pids: () => target.pids(), afterResume: () => target.afterResume(), probe: () => target.put(probe, probe, n++) }, target.name);
}

const rangeKey = (i: number) => Buffer.from(`r/${String(i).padStart(6, '0')}`);
const RANGE_PREFIX = Buffer.from('r/');
const LATENCY_PREFIX = Buffer.from('w/');
const fanoutPrefix = (group: number) => Buffer.from(`f/${String(group).padStart(3, '0')}/`);

/** Writes the Range keys, LOAD_BATCH to a transaction, and checks that a Range reads them all. */
async function loadRangeKeys(target: Target, keys: number): Promise<void> {
  const value = Buffer.alloc(VALUE_BYTES, 0x72);
  const batches: [Buffer, Buffer][][] = [];
  for (let i = 0; i < keys; i += LOAD_BATCH) batches.push(Array.from({ length: Math.min(LOAD_BATCH, keys - i) }, (_, j) => [rangeKey(i + j), value] as [Buffer, Buffer]));
  let next = 0;
  await Promise.all(
    Array.from({ length: LOAD_CONCURRENCY }, async () => {
      while (next < batches.length) await target.putAll(batches[next++]!);
    }),
  );
  const { keys: read } = await target.range(RANGE_PREFIX, 0);
  if (read !== keys) throw new Error(`${target.name}: a Range after loading ${keys} keys read ${read}`);
}

function firstMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Phase 1: 64 callers put under `w/`; a watcher on a follower and one on the leader time each event. */
async function measureLatency(target: Target, round: number, options: WatchRangeOptions): Promise<WatchLatencySample[]> {
  const leader = await target.leader();
  const follower = (leader + 1) % 3;
  const places = [
    { watcher: 'follower' as const, node: follower },
    { watcher: 'leader' as const, node: leader },
  ];
  const nonce = (Math.random() * 2 ** 32) >>> 0;
  const histograms = places.map(() => latencyHistogram());
  const trackers = histograms.map((h) => new DeliveryTracker(h));
  const channels = places.map((p) => target.channel(p.node));
  const handles: (WatchHandle | undefined)[] = places.map(() => undefined);
  try {
    await Promise.all(
      places.map(async (p, i) => {
        handles[i] = (await target.watch(p.node, channels[i]!, LATENCY_PREFIX, (value, revision, at) => trackers[i]!.arrived(tagOf(value, nonce), at, revision)));
      }),
    );
    return await latencyPhase(target, round, options, places, nonce, histograms, trackers, handles);
  } finally {
    for (const h of handles) h?.cancel();
    for (const c of channels) c.close();
    for (const h of histograms) h.destroy();
  }
}

async function latencyPhase(
  target: Target,
  round: number,
  options: WatchRangeOptions,
  places: readonly { watcher: 'follower' | 'leader'; node: number }[],
  nonce: number,
  histograms: readonly Histogram[],
  trackers: readonly DeliveryTracker[],
  handles: readonly (WatchHandle | undefined)[],
): Promise<WatchLatencySample[]> {
  let inWindow = false;
  const pids = target.pids();
  let cpuStart = 0;
  let cpuEnd = 0;
  const result = await runLoad(
    async (n) => {
      await target.put(Buffer.from(`w/${String(n % LATENCY_KEYS).padStart(4, '0')}`), taggedValue(n, nonce, VALUE_BYTES), n);
      const at = performance.now();
      for (const t of trackers) t.acked(n, at, inWindow);
    },
    {
      concurrency: LATENCY_CALLERS,
      durationMs: options.durationMs,
      warmupMs: options.warmupMs,
      onWindowStart: () => {
        inWindow = true;
        cpuStart = cpuMsOf(pids);
      },
      onWindowEnd: () => {
        inWindow = false;
        cpuEnd = cpuMsOf(pids);
      },
    },
  );
  await settle(() => trackers.reduce((n, t) => n + t.outstanding(), 0), SETTLE_MS);
  const failures = handles.map((h) => h?.failure());
  return places.map((p, i): WatchLatencySample => {
    const h = histograms[i]!;
    const counts = trackers[i]!.finish();
    const pct = (q: number) => (h.totalCount === 0 ? NaN : h.getValueAtPercentile(q) / 1000);
    const firstError = failures[i] ?? result.firstError;
    return {
      system: target.name,
      round,
      watcher: p.watcher,
      counts,
      p50Ms: pct(50),
      p99Ms: pct(99),
      maxMs: h.totalCount === 0 ? NaN : h.maxValue / 1000,
      putsPerSec: result.opsPerSec,
      putP50Ms: result.p50Ms,
      putP99Ms: result.p99Ms,
      putErrors: result.errors,
      ...(firstError === undefined ? {} : { firstError }),
      serverCpuUsPerPut: result.ops > 0 && cpuEnd > 0 ? ((cpuEnd - cpuStart) * 1000) / result.ops : null,
    };
  });
}

/** Phase 2: 1,000 watchers on one follower, a writer at 200 puts/s under their prefixes. */
async function measureFanout(target: Target, round: number, options: WatchRangeOptions): Promise<FanoutSample> {
  const leader = await target.leader();
  const node = (leader + 1) % 3;
  const pid = target.pid(node);
  const nonce = (Math.random() * 2 ** 32) >>> 0;
  const histogram = latencyHistogram();
  const trackers = Array.from({ length: FANOUT_WATCHERS }, () => new DeliveryTracker(histogram));
  /** Watchers of each prefix group. */
  const groups: DeliveryTracker[][] = Array.from({ length: FANOUT_PREFIXES }, () => []);
  trackers.forEach((t, i) => groups[i % FANOUT_PREFIXES]!.push(t));
  const channels = Array.from({ length: FANOUT_CHANNELS }, () => target.channel(node));
  const handles: WatchHandle[] = [];
  try {
    return await fanoutPhase(target, round, options, { node, pid, nonce, histogram, trackers, groups, channels, handles });
  } finally {
    for (const h of handles) h.cancel();
    for (const c of channels) c.close();
    histogram.destroy();
  }
}

interface FanoutSetup {
  readonly node: number;
  readonly pid: number | undefined;
  readonly nonce: number;
  readonly histogram: Histogram;
  readonly trackers: readonly DeliveryTracker[];
  readonly groups: readonly (readonly DeliveryTracker[])[];
  readonly channels: readonly Client[];
  /** Filled as the watches open, so that the caller cancels every one of them whatever happens. */
  readonly handles: WatchHandle[];
}

async function fanoutPhase(target: Target, round: number, options: WatchRangeOptions, setup: FanoutSetup): Promise<FanoutSample> {
  const { node, pid, nonce, histogram, trackers, groups, channels, handles } = setup;
  const rssBeforeMb = rssMb(pid);
  const openStart = performance.now();
  const perChannel = FANOUT_WATCHERS / FANOUT_CHANNELS;
  await Promise.all(
    channels.map(async (channel, c) => {
      for (let j = 0; j < perChannel; j++) {
        const i = c * perChannel + j;
        const tracker = trackers[i]!;
        handles.push(await target.watch(node, channel, fanoutPrefix(i % FANOUT_PREFIXES), (value, revision, at) => tracker.arrived(tagOf(value, nonce), at, revision)));
      }
    }),
  );
  const openMs = performance.now() - openStart;
  await new Promise((r) => setTimeout(r, 500));
  const rssAfterOpenMb = rssMb(pid);

  // The paced writer: one put every 1000/FANOUT_RATE ms, at most FANOUT_MAX_IN_FLIGHT at once.
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const end = measureFrom + options.durationMs;
  const intervalMs = 1000 / FANOUT_RATE;
  let inFlight = 0;
  let acked = 0;
  let errors = 0;
  let firstError: string | undefined;
  let cpuStart = 0;
  let cpuEnd = 0;
  const pending = new Set<Promise<void>>();
  for (let n = 0; ; n++) {
    const due = start + n * intervalMs;
    let now = performance.now();
    if (due >= end) break;
    if (due > now) {
      await new Promise((r) => setTimeout(r, due - now));
      now = performance.now();
    }
    if (cpuStart === 0 && now >= measureFrom) cpuStart = cpuMsOf(pid === undefined ? [] : [pid]);
    if (inFlight >= FANOUT_MAX_IN_FLIGHT) continue;
    const group = n % FANOUT_PREFIXES;
    const key = Buffer.concat([fanoutPrefix(group), Buffer.from(`k${Math.floor(n / FANOUT_PREFIXES) % 10}`)]);
    inFlight++;
    const p = target.put(key, taggedValue(n, nonce, VALUE_BYTES), n).then(
      () => {
        const at = performance.now();
        const counted = at >= measureFrom && at < end;
        if (counted) acked++;
        for (const t of groups[group]!) t.acked(n, at, counted);
      },
      (err: unknown) => {
        const at = performance.now();
        if (at >= measureFrom && at < end) {
          errors++;
          firstError ??= firstMessage(err);
        }
      },
    );
    const tracked = p.finally(() => {
      inFlight--;
      pending.delete(tracked);
    });
    pending.add(tracked);
  }
  const untilEnd = end - performance.now();
  if (untilEnd > 0) await new Promise((r) => setTimeout(r, untilEnd));
  cpuEnd = cpuMsOf(pid === undefined ? [] : [pid]);
  await Promise.all(pending);
  await settle(() => trackers.reduce((n, t) => n + t.outstanding(), 0), SETTLE_MS);
  const rssAfterLoadMb = rssMb(pid);
  const streamFailures = handles.map((h) => h.failure()).filter((f): f is string => f !== undefined);
  const counts = trackers.reduce((sum, t) => addCounts(sum, t.finish()), emptyCounts());
  const pct = (q: number) => (histogram.totalCount === 0 ? NaN : histogram.getValueAtPercentile(q) / 1000);
  const sample: FanoutSample = {
    system: target.name,
    round,
    watchers: FANOUT_WATCHERS,
    openMs,
    rssBeforeMb,
    rssAfterOpenMb,
    rssAfterLoadMb,
    writesPerSec: (acked / options.durationMs) * 1000,
    counts,
    p50Ms: pct(50),
    p99Ms: pct(99),
    maxMs: histogram.totalCount === 0 ? NaN : histogram.maxValue / 1000,
    errors: errors + streamFailures.length,
    ...((firstError ?? streamFailures[0]) === undefined ? {} : { firstError: firstError ?? streamFailures[0] }),
    nodeCpuUsPerEvent: counts.events > 0 && cpuStart > 0 ? ((cpuEnd - cpuStart) * 1000) / counts.events : null,
  };
  return sample;
}

/** Phase 3: full linearizable Ranges of the loaded prefix, one untimed first. */
async function measureRange(target: Target, round: number, runs: number, keys: number): Promise<RangeSample> {
  const runsMs: number[] = [];
  let pages = 0;
  let errors = 0;
  let firstError: string | undefined;
  const pids = target.pids();
  let cpuMs = 0;
  for (let i = -1; i < runs; i++) {
    const cpu0 = cpuMsOf(pids);
    const t0 = performance.now();
    try {
      const r = await target.range(RANGE_PREFIX, i + 1);
      const ms = performance.now() - t0;
      if (r.keys !== keys) throw new Error(`a Range read ${r.keys} of the ${keys} keys`);
      if (i >= 0) {
        runsMs.push(ms);
        cpuMs += cpuMsOf(pids) - cpu0;
      }
      pages = r.calls;
    } catch (err: unknown) {
      errors++;
      firstError ??= firstMessage(err);
    }
  }
  return {
    system: target.name,
    round,
    keys,
    runsMs,
    pages,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    serverCpuMsPerRange: runsMs.length > 0 ? cpuMs / runsMs.length : null,
  };
}

/**
 * Starts replikit and etcd clusters of their own, measures the three rows in every round (the
 * systems in turn, the order reversed in even rounds), stops them, and returns the section.
 */
export async function runWatchRange(options: WatchRangeOptions): Promise<RangeWatchReport> {
  const config: RangeWatchConfig = {
    rounds: options.rounds,
    durationMs: options.durationMs,
    warmupMs: options.warmupMs,
    callers: LATENCY_CALLERS,
    valueBytes: VALUE_BYTES,
    fanoutWatchers: FANOUT_WATCHERS,
    fanoutChannels: FANOUT_CHANNELS,
    fanoutPrefixes: FANOUT_PREFIXES,
    fanoutRate: FANOUT_RATE,
    rangeKeys: RANGE_KEYS,
    rangeRunsPerRound: options.rangeRuns,
    settleMs: SETTLE_MS,
  };
  const unavailable: { system: RangeWatchSystem; reason: string }[] = [];
  const notes: string[] = [
    'Range and Watch ran on clusters of their own, started after the other rows, with the same flags; puts, Ranges and the paused system as in the other rows',
    'every watch is one gRPC stream (replikit serves one watch per stream; an etcd client would multiplex many watches on one stream, not measured here)',
  ];
  if (options.etcdBinary === undefined) notes.push('etcd is not part of this run: replikit only, no ratios');
  const targets: Target[] = [];
  const starts: [RangeWatchSystem, () => Promise<Target>][] = [];
  if (options.etcdBinary !== undefined) starts.push(['etcd', () => startEtcdTarget(options, options.etcdBinary!)]);
  if (options.replikit) starts.push(['replikit-cp', () => startReplikitTarget(options)]);
  for (const [name, start] of starts) {
    try {
      const target = await start();
      options.log(`range/watch: ${name} started; loading ${RANGE_KEYS} keys`);
      try {
        await loadRangeKeys(target, RANGE_KEYS);
      } catch (err: unknown) {
        await target.close();
        throw err;
      }
      targets.push(target);
      notes.push(`${name}: ${target.description}`);
      if (options.pause) signalAll(target, 'SIGSTOP');
    } catch (err: unknown) {
      const reason = `failed to start or load: ${firstMessage(err)}`;
      unavailable.push({ system: name, reason });
      options.log(`range/watch: ${name}: ${reason}`);
    }
  }
  const samples = { latency: [] as WatchLatencySample[], fanout: [] as FanoutSample[], range: [] as RangeSample[] };
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const order = round % 2 === 0 ? [...targets].reverse() : targets;
      for (const target of order) {
        if (options.pause) {
          try {
            await resumeTarget(target);
          } catch (err: unknown) {
            notes.push(firstMessage(err));
            options.log(firstMessage(err));
          }
        }
        const label = (what: string) => `${target.name} ${what} (round ${round}/${options.rounds})`;
        // A row that fails (a watch never created, a node gone) is reported, and the others still run.
        const attempt = async (what: string, measure: () => Promise<void>) => {
          options.phase?.(label(what), options.durationMs + options.warmupMs);
          try {
            await measure();
          } catch (err: unknown) {
            const reason = `${what} failed in round ${round}: ${firstMessage(err)}`;
            unavailable.push({ system: target.name, reason });
            options.log(`range/watch: ${target.name}: ${reason}`);
          }
        };
        // The watchers first: in round 1 they open on a node that has only loaded the Range keys,
        // before the 64-caller phase grows its heap (see the RSS columns).
        await attempt(`${FANOUT_WATCHERS} watchers`, async () => void samples.fanout.push(await measureFanout(target, round, options)));
        await attempt('watch latency ×64', async () => void samples.latency.push(...(await measureLatency(target, round, options))));
        await attempt(`Range of ${RANGE_KEYS} keys ×${options.rangeRuns}`, async () => void samples.range.push(await measureRange(target, round, options.rangeRuns, RANGE_KEYS)));
        if (options.pause) signalAll(target, 'SIGSTOP');
      }
    }
  } finally {
    for (const t of targets) notes.push(...t.notes());
    for (const t of targets) signalAll(t, 'SIGCONT');
    await Promise.all(targets.map((t) => t.close()));
  }
  return aggregateRangeWatch(config, samples, unavailable, notes);
}
