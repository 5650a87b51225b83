/**
 * The lock and lease rows of `npm run bench` (`--coordination-only` runs them alone), replikit CP
 * against etcd 3.4, each on a cluster of its own started for this section, the one not being
 * measured paused (SIGSTOP) as in the other rows:
 *
 * 1. Lock acquire + release pairs per second, 8 and 64 contenders on one lock name. Each contender
 *    holds its own lease (TTL 10 s, kept alive over a LeaseKeepAlive stream every TTL/3) and loops
 *    { Lock(name, lease) → Unlock(key) } for the phase. Reported: pairs/s, p50 / p99 of the Lock
 *    call (the acquire latency, queueing behind the other contenders included) and server CPU per
 *    pair (the three processes). replikit: `replikit.v1.LockService/Lock` + `Unlock`, leases from
 *    `LeaseService/LeaseGrant`; etcd: its v3lock service `v3lockpb.Lock/Lock` + `Unlock`, leases
 *    from `etcdserverpb.Lease/LeaseGrant`.
 * 2. Keep-alive cost of 10,000 leases: 10,000 leases (TTL 10 s) granted, then every one renewed
 *    every TTL/3 over 4 LeaseKeepAlive streams to the three nodes (stream i to node i mod 3), the
 *    renewals spread evenly over the period, for the phase after a warm-up of one period.
 *    Reported: server CPU (ms per second over the three processes, and per renewal; next to the
 *    CPU of the idle cluster), bytes per second (counted client-side: protobuf message bytes plus
 *    gRPC's 5-byte message prefix, both directions; HTTP/2 framing and headers not counted),
 *    renewals answered per second against the rate asked, the renewal round-trip p50 / p99, and
 *    whether any lease was lost: renewals not granted (replikit: code ≠ 0; etcd: TTL ≤ 0), leases
 *    missing from LeaseList / LeaseLeases after the phase, and LeaseTimeToLive on a sample.
 *
 * Leases are revoked at the end of every phase, so no expiry work falls into the next one.
 * The etcd wire codecs the rows need (v3lock and Lease) are at the end of this file, in the style
 * of bench/etcd-wire.ts.
 */
import { Client, credentials, Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { Histogram } from 'hdr-histogram-js';
import { loadavg } from 'node:os';
import { LocalCluster } from '../src/cli/local-cluster.js';
import { LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseServiceClient } from '../src/gen/replikit/v1/lease_service.js';
import { LockServiceClient } from '../src/gen/replikit/v1/lock_service.js';
import type { Reaper } from './children.js';
import { cpuMsOf, selfCpuMs } from './cpu-usage.js';
import { EtcdCluster, rawUnary } from './etcd.js';
import { latencyHistogram, runLoad } from './load.js';
import { aggregateCoordination, type CoordinationConfig, type CoordinationReport, type CoordinationSystem, type KeepAliveSample, type LockSample } from './report.js';
import { resume, signalAll } from './pausing.js';

/** Lease time to live for every lease of the section. */
export const LEASE_TTL_MS = 10_000;
/** Each lease is renewed this often: a third of its TTL, as etcd's clients do. */
export const RENEW_EVERY_MS = Math.round(LEASE_TTL_MS / 3);
export const LOCK_CONTENDERS = [8, 64] as const;
export const KEEPALIVE_LEASES = 10_000;
export const KEEPALIVE_STREAMS = 4;
/** A Lock waits in a queue of up to 63 others: a deadline well past any wait of a working system. */
const LOCK_DEADLINE_MS = 30_000;
const CALL_DEADLINE_MS = 5_000;
/** Grants and revokes in flight while setting up and clearing the 10,000 leases. */
const SETUP_CONCURRENCY = 64;
/** Leases whose TimeToLive is asked after the keep-alive phase. */
const TTL_SAMPLE = 100;
/** How long the answers of the last renewals may take once sending stopped. */
const DRAIN_MS = 5_000;
/** How often the renewal scheduler looks at the clock. */
const TICK_MS = 10;
/** gRPC's length prefix in front of every message. */
const GRPC_PREFIX_BYTES = 5;

export interface CoordinationOptions {
  readonly reaper: Reaper;
  readonly rounds: number;
  /** Measured time of one lock phase (full 10 s). */
  readonly lockDurationMs: number;
  /** Measured time of the keep-alive phase (full 20 s). */
  readonly keepAliveDurationMs: number;
  /** Warm-up of a lock phase (the keep-alive phase warms up for one renewal period). */
  readonly warmupMs: number;
  /** How long the idle cluster's CPU is read before the phases of a round. */
  readonly idleMs: number;
  readonly replikit: boolean;
  readonly etcdBinary: string | undefined;
  readonly serveArgs: readonly string[];
  readonly replikitCalls: 'spread' | 'pinned';
  readonly pause: boolean;
  /** How to run this again: goes into the section's heading. */
  readonly command: string;
  readonly log: (line: string) => void;
  readonly phase?: (label: string, plannedMs: number) => void;
}

/** Rough time of the grants and revokes of 10,000 leases on a busy 2-core machine. */
const SETUP_ESTIMATE_MS = 20_000;

/** How many progress steps {@link runCoordination} reports, and how long it plans for them. */
export function coordinationPlan(options: Pick<CoordinationOptions, 'rounds' | 'lockDurationMs' | 'keepAliveDurationMs' | 'warmupMs' | 'idleMs' | 'replikit' | 'etcdBinary'>): {
  steps: number;
  plannedMs: number;
} {
  const systems = (options.replikit ? 1 : 0) + (options.etcdBinary !== undefined ? 1 : 0);
  const perRound = options.idleMs + LOCK_CONTENDERS.length * (options.lockDurationMs + options.warmupMs) + RENEW_EVERY_MS + options.keepAliveDurationMs + SETUP_ESTIMATE_MS;
  return { steps: systems * options.rounds * (LOCK_CONTENDERS.length + 1), plannedMs: systems * options.rounds * perRound };
}

/** A renewal's answer: whether the lease was renewed, and why not. */
interface KeepAliveAnswer {
  readonly id: bigint;
  readonly ok: boolean;
  readonly why?: string;
}

/** One system as the section drives it. */
interface Target {
  readonly name: CoordinationSystem;
  readonly description: string;
  readonly lockRouting: string;
  pids(): number[];
  /** The node the k-th contender (or grant) talks to. */
  callNode(k: number): number;
  /** A channel (its own HTTP/2 connection) to node `index`, for a keep-alive stream. */
  streamChannel(index: number): Client;
  grant(node: number): Promise<bigint>;
  revoke(node: number, id: bigint): Promise<void>;
  lock(node: number, name: string, lease: bigint): Promise<Buffer>;
  unlock(node: number, key: Buffer): Promise<void>;
  readonly keepAlivePath: string;
  encodeKeepAlive(id: bigint): Buffer;
  decodeKeepAlive(buf: Buffer): KeepAliveAnswer;
  /** Every lease the cluster knows (linearizable). */
  liveLeases(): Promise<Set<bigint>>;
  /** Milliseconds lease `id` has left; ≤ 0 when it is gone. */
  remainingMs(id: bigint): Promise<number>;
  /** One call that succeeds once the system serves (needs its leader). */
  probe(): Promise<void>;
  afterResume(): Promise<void>;
  close(): Promise<void>;
}

const OWN_CONNECTION = { 'grpc.use_local_subchannel_pool': 1 };
const toBuffer = (req: Uint8Array) => Buffer.from(req.buffer, req.byteOffset, req.byteLength);
const identity = (res: Buffer) => res;

function deadline(ms = CALL_DEADLINE_MS): { deadline: number } {
  return { deadline: Date.now() + ms };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function unary<Res>(call: (md: Metadata, options: { deadline: number }, cb: (err: ServiceError | null, res: Res) => void) => unknown, ms = CALL_DEADLINE_MS): Promise<Res> {
  return new Promise((resolve, reject) => void call(new Metadata(), deadline(ms), (err, res) => (err ? reject(err) : resolve(res))));
}

async function startReplikitTarget(options: CoordinationOptions): Promise<Target> {
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
  const leases = addresses.map((a) => new LeaseServiceClient(a, credentials.createInsecure()));
  const locks = addresses.map((a) => new LockServiceClient(a, credentials.createInsecure()));
  const channels: Client[] = [];
  const pinned = options.replikitCalls === 'pinned';
  return {
    name: 'replikit-cp',
    description: '3 `replikit serve --policy cp` processes, LmdbStore, keyspace "default"',
    lockRouting: pinned ? 'every contender and grant to n1 (--replikit-calls pinned)' : 'contenders and grants round-robin over the 3 nodes',
    pids: () => ids.flatMap((id) => cluster.pid(id) ?? []),
    callNode: (k) => (pinned ? 0 : k % 3),
    streamChannel: (index) => {
      const c = new Client(addresses[index]!, credentials.createInsecure(), OWN_CONNECTION);
      channels.push(c);
      return c;
    },
    grant: async (node) => (await unary<{ id: bigint }>((md, o, cb) => leases[node]!.leaseGrant({ keyspace: '', ttlMs: BigInt(LEASE_TTL_MS) }, md, o, cb))).id,
    revoke: async (node, id) => void (await unary((md, o, cb) => leases[node]!.leaseRevoke({ keyspace: '', id }, md, o, cb))),
    lock: async (node, name, lease) =>
      Buffer.from((await unary<{ key: Uint8Array }>((md, o, cb) => locks[node]!.lock({ keyspace: '', name, lease }, md, o, cb), LOCK_DEADLINE_MS)).key),
    unlock: async (node, key) => void (await unary((md, o, cb) => locks[node]!.unlock({ keyspace: '', key }, md, o, cb))),
    keepAlivePath: '/replikit.v1.LeaseService/LeaseKeepAlive',
    encodeKeepAlive: (id) => toBuffer(LeaseKeepAliveRequest.encode({ keyspace: '', id }).finish()),
    decodeKeepAlive: (buf) => {
      const r = LeaseKeepAliveResponse.decode(buf);
      return r.code === 0 && r.ttlMs > 0n ? { id: r.id, ok: true } : { id: r.id, ok: false, why: `code ${r.code}: ${r.message}` };
    },
    liveLeases: async () => {
      const live = new Set<bigint>();
      let afterId = 0n;
      for (;;) {
        const page = await unary<{ leases: { id: bigint }[]; more: boolean }>((md, o, cb) => leases[0]!.leaseList({ keyspace: '', afterId, limit: 10_000 }, md, o, cb), 30_000);
        for (const l of page.leases) live.add(l.id);
        if (!page.more || page.leases.length === 0) return live;
        afterId = page.leases[page.leases.length - 1]!.id;
      }
    },
    remainingMs: async (id) => {
      try {
        return Number((await unary<{ remainingMs: bigint }>((md, o, cb) => leases[0]!.leaseTimeToLive({ keyspace: '', id, keys: false }, md, o, cb))).remainingMs);
      } catch (err: unknown) {
        if ((err as ServiceError).code === 5) return -1; // NOT_FOUND: the lease is gone.
        throw err;
      }
    },
    probe: async () => void (await unary((md, o, cb) => leases[0]!.leaseList({ keyspace: '', afterId: 0n, limit: 1 }, md, o, cb), 2_000)),
    afterResume: async () => undefined,
    close: async () => {
      for (const c of [...leases, ...locks, ...channels]) c.close();
      await cluster.stop();
      options.reaper.untrackGroup(cluster);
    },
  };
}

async function startEtcdTarget(options: CoordinationOptions, binary: string): Promise<Target> {
  const cluster = await EtcdCluster.start(binary, options.reaper);
  let leader = cluster.leaderIndex;
  const channels: Client[] = [];
  const call = (node: number, path: string, request: Uint8Array, ms = CALL_DEADLINE_MS) => rawUnary(cluster.clients[node]!, path, request, ms);
  return {
    name: 'etcd',
    description: '3 etcd members, default settings',
    lockRouting: 'every contender and grant to the leader (as the Put and Txn rows: Lock and Unlock write)',
    pids: () => cluster.members.flatMap((m) => m.process.child.pid ?? []),
    callNode: () => leader,
    streamChannel: (index) => {
      const c = new Client(cluster.members[index]!.clientAddress, credentials.createInsecure(), OWN_CONNECTION);
      channels.push(c);
      return c;
    },
    grant: async (node) => {
      const res = decodeEtcdLeaseGrantResponse(await call(node, ETCD_LEASE_GRANT_PATH, encodeEtcdLeaseGrant(LEASE_TTL_MS / 1000)));
      if (res.error !== '') throw new Error(`etcd LeaseGrant: ${res.error}`);
      return res.id;
    },
    revoke: async (node, id) => void (await call(node, ETCD_LEASE_REVOKE_PATH, encodeEtcdLeaseId(id))),
    lock: async (node, name, lease) => decodeEtcdLockResponse(await call(node, ETCD_LOCK_PATH, encodeEtcdLockRequest(Buffer.from(name), lease), LOCK_DEADLINE_MS)).key,
    unlock: async (node, key) => void (await call(node, ETCD_UNLOCK_PATH, encodeEtcdUnlockRequest(key))),
    keepAlivePath: ETCD_LEASE_KEEPALIVE_PATH,
    encodeKeepAlive: (id) => toBuffer(encodeEtcdLeaseId(id)),
    decodeKeepAlive: (buf) => {
      const r = decodeEtcdLeaseTtlResponse(buf);
      return r.ttl > 0n ? { id: r.id, ok: true } : { id: r.id, ok: false, why: `TTL ${r.ttl}` };
    },
    liveLeases: async () => new Set(decodeEtcdLeaseLeasesResponse(await call(leader, ETCD_LEASE_LEASES_PATH, new Uint8Array(0), 30_000))),
    remainingMs: async (id) => Number(decodeEtcdLeaseTtlResponse(await call(leader, ETCD_LEASE_TTL_PATH, encodeEtcdLeaseId(id))).ttl) * 1000,
    probe: async () => void (await call(leader, ETCD_LEASE_LEASES_PATH, new Uint8Array(0), 2_000)),
    afterResume: async () => {
      leader = await cluster.findLeader();
    },
    close: async () => {
      for (const c of channels) c.close();
      cluster.close();
    },
  };
}

/** One keep-alive stream and the send times of the renewals it has not answered yet (answers come in order). */
interface StreamState {
  readonly call: ClientDuplexStream<Buffer, Buffer>;
  readonly sentAt: number[];
  head: number;
  failure?: string;
  closing: boolean;
}

/**
 * Keeps leases alive over a few streams: lease j on stream j mod S. Until {@link spread} is
 * called, a lease is renewed one period after its grant (or last renewal); after it, every lease
 * once a period, at an offset of j/N of the period, so renewals are spread evenly.
 */
class Renewer {
  readonly #target: Target;
  readonly #streams: StreamState[] = [];
  readonly #ids: bigint[] = [];
  readonly #requests: Buffer[] = [];
  /** Before spread(): leases in the order they are due, with the time of their last renewal (or grant). */
  readonly #fifo: { j: number; at: number }[] = [];
  #fifoHead = 0;
  #spreadFrom: number | undefined;
  #spreadSent = 0;
  readonly #timer: NodeJS.Timeout;
  counting = false;
  /** In the measured window. */
  bytes = 0;
  renewed = 0;
  /** Over the whole life of the renewer. */
  sent = 0;
  answered = 0;
  notRenewed = 0;
  firstNotRenewed: string | undefined;
  maxBacklog = 0;
  readonly latency: Histogram = latencyHistogram();

  constructor(target: Target, streams: number) {
    this.#target = target;
    for (let i = 0; i < streams; i++) {
      const channel = target.streamChannel(i % 3);
      const call = channel.makeBidiStreamRequest(target.keepAlivePath, (b: Buffer) => b, identity, new Metadata(), {});
      const state: StreamState = { call, sentAt: [], head: 0, closing: false };
      call.on('data', (buf: Buffer) => this.#answer(state, buf));
      call.on('error', (err: ServiceError) => {
        if (!state.closing) state.failure ??= `keep-alive stream failed: ${err.message}`;
      });
      call.on('end', () => {
        if (!state.closing) state.failure ??= 'keep-alive stream ended';
      });
      this.#streams.push(state);
    }
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  /** Adds a lease granted at `grantedAt` (before spread()). */
  add(id: bigint, grantedAt: number): void {
    const j = this.#ids.length;
    this.#ids.push(id);
    this.#requests.push(this.#target.encodeKeepAlive(id));
    this.#fifo.push({ j, at: grantedAt });
  }

  get ids(): readonly bigint[] {
    return this.#ids;
  }

  /** From now on, every lease once a period, evenly spread. */
  spread(): void {
    this.#spreadFrom = performance.now();
    this.#spreadSent = 0;
  }

  failures(): string[] {
    return this.#streams.flatMap((s) => s.failure ?? []);
  }

  backlog(): number {
    return this.#streams.reduce((n, s) => n + s.sentAt.length - s.head, 0);
  }

  resetWindow(): void {
    this.bytes = 0;
    this.renewed = 0;
    this.latency.reset();
  }

  #send(j: number): void {
    const s = this.#streams[j % this.#streams.length]!;
    if (s.failure !== undefined || s.closing) return;
    const req = this.#requests[j]!;
    s.sentAt.push(performance.now());
    s.call.write(req);
    this.sent++;
    if (this.counting) this.bytes += req.byteLength + GRPC_PREFIX_BYTES;
  }

  #tick(): void {
    const now = performance.now();
    if (this.#spreadFrom === undefined) {
      while (this.#fifoHead < this.#fifo.length && this.#fifo[this.#fifoHead]!.at + RENEW_EVERY_MS <= now) {
        const { j } = this.#fifo[this.#fifoHead++]!;
        this.#send(j);
        this.#fifo.push({ j, at: now });
      }
      if (this.#fifoHead > 4096) {
        this.#fifo.splice(0, this.#fifoHead);
        this.#fifoHead = 0;
      }
    } else {
      const n = this.#ids.length;
      const due = Math.floor(((now - this.#spreadFrom) / RENEW_EVERY_MS) * n);
      while (this.#spreadSent < due) this.#send(this.#spreadSent++ % n);
    }
    const backlog = this.backlog();
    if (backlog > this.maxBacklog) this.maxBacklog = backlog;
  }

  #answer(s: StreamState, buf: Buffer): void {
    const now = performance.now();
    const sentAt = s.sentAt[s.head++];
    if (s.head > 4096) {
      s.sentAt.splice(0, s.head);
      s.head = 0;
    }
    this.answered++;
    let answer: KeepAliveAnswer;
    try {
      answer = this.#target.decodeKeepAlive(buf);
    } catch (err: unknown) {
      answer = { id: 0n, ok: false, why: `undecodable answer: ${message(err)}` };
    }
    if (!answer.ok) {
      this.notRenewed++;
      this.firstNotRenewed ??= `lease ${answer.id}: ${answer.why ?? 'not renewed'}`;
    }
    if (this.counting) {
      this.bytes += buf.byteLength + GRPC_PREFIX_BYTES;
      if (answer.ok) this.renewed++;
      if (sentAt !== undefined) this.latency.recordValue(Math.max(1, Math.round((now - sentAt) * 1000)));
    }
  }

  /** Stops sending; resolves once every renewal sent is answered (or after DRAIN_MS). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    const until = performance.now() + DRAIN_MS;
    while (this.backlog() > 0 && this.failures().length === 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
  }

  close(): void {
    clearInterval(this.#timer);
    for (const s of this.#streams) {
      s.closing = true;
      s.call.removeAllListeners('data');
      s.call.on('error', () => undefined);
      s.call.cancel();
    }
    this.latency.destroy();
  }
}

/** Runs `work(i)` for i in 0..count-1, `concurrency` at a time; returns the failures and the first reason. */
async function inParallel(count: number, concurrency: number, work: (i: number) => Promise<void>): Promise<{ failed: number; first?: string }> {
  let next = 0;
  let failed = 0;
  let first: string | undefined;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const i = next++;
        try {
          await work(i);
        } catch (err: unknown) {
          failed++;
          first ??= message(err);
        }
      }
    }),
  );
  return first === undefined ? { failed } : { failed, first };
}

/** A grant, retried twice (a leader change answers UNAVAILABLE; nothing was granted then). */
async function grantWithRetry(target: Target, node: number): Promise<bigint> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await target.grant(node);
    } catch (err: unknown) {
      if (attempt >= 3) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function revokeAll(target: Target, ids: readonly bigint[]): Promise<void> {
  await inParallel(ids.length, SETUP_CONCURRENCY, (i) => target.revoke(target.callNode(i), ids[i]!));
}

/** One lock phase: `contenders` leases, kept alive, each contender in a loop of Lock → Unlock. */
async function measureLock(target: Target, round: number, contenders: number, idleCpuMsPerSec: number | null, options: CoordinationOptions): Promise<LockSample> {
  const load1 = loadavg()[0]!;
  const renewer = new Renewer(target, Math.min(3, contenders));
  const leases: bigint[] = [];
  const name = `bench-lock-r${round}-c${contenders}`;
  try {
    const granted = await inParallel(contenders, contenders, async (k) => {
      leases[k] = await grantWithRetry(target, target.callNode(k));
    });
    if (granted.failed > 0) throw new Error(`${granted.failed} of ${contenders} lease grants failed: ${granted.first}`);
    // Contender k's lease goes on stream k mod S: add them in contender order.
    for (const id of leases) renewer.add(id, performance.now());
    renewer.spread();
    const acquire = latencyHistogram();
    const pids = target.pids();
    let inWindow = false;
    let cpu0 = 0;
    let cpu1 = 0;
    let self0 = 0;
    let self1 = 0;
    let t0 = 0;
    let t1 = 0;
    try {
      const result = await runLoad(
        async (_n, caller) => {
          const node = target.callNode(caller);
          const t0 = performance.now();
          const key = await target.lock(node, name, leases[caller]!);
          if (inWindow) acquire.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
          // A lock that stays held (its lease is kept alive) would stop every other contender: retry.
          for (let attempt = 1; ; attempt++) {
            try {
              await target.unlock(node, key);
              return;
            } catch (err: unknown) {
              if (attempt >= 3) throw err;
              await new Promise((r) => setTimeout(r, 50));
            }
          }
        },
        {
          concurrency: contenders,
          durationMs: options.lockDurationMs,
          warmupMs: options.warmupMs,
          onWindowStart: () => {
            inWindow = true;
            cpu0 = cpuMsOf(pids);
            self0 = selfCpuMs();
            t0 = performance.now();
          },
          onWindowEnd: () => {
            inWindow = false;
            cpu1 = cpuMsOf(pids);
            self1 = selfCpuMs();
            t1 = performance.now();
          },
        },
      );
      const pct = (q: number) => (acquire.totalCount === 0 ? NaN : acquire.getValueAtPercentile(q) / 1000);
      const streamFailure = renewer.failures()[0];
      const firstError = result.firstError ?? streamFailure ?? renewer.firstNotRenewed;
      return {
        system: target.name,
        round,
        contenders,
        pairs: result.ops,
        pairsPerSec: result.opsPerSec,
        acquireP50Ms: pct(50),
        acquireP99Ms: pct(99),
        acquireMaxMs: acquire.totalCount === 0 ? NaN : acquire.maxValue / 1000,
        pairP50Ms: result.p50Ms,
        errors: result.errors + renewer.failures().length,
        leasesNotRenewed: renewer.notRenewed,
        serverCpuMsPerPair: result.ops > 0 && cpu1 > 0 ? (cpu1 - cpu0) / result.ops : null,
        serverCpuMsPerPairAboveIdle: result.ops > 0 && cpu1 > 0 && idleCpuMsPerSec !== null ? (cpu1 - cpu0 - (idleCpuMsPerSec * (t1 - t0)) / 1000) / result.ops : null,
        clientCpuMsPerPair: result.ops > 0 && self1 > 0 ? (self1 - self0) / result.ops : null,
        loadAverage: load1,
        ...(firstError === undefined ? {} : { firstError }),
      };
    } finally {
      acquire.destroy();
    }
  } finally {
    await renewer.stop();
    renewer.close();
    await revokeAll(target, leases.filter((id) => id !== undefined));
  }
}

/** The keep-alive phase: 10,000 leases granted, renewed every TTL/3 over 4 streams, checked, revoked. */
async function measureKeepAlive(target: Target, round: number, idleCpuMsPerSec: number | null, options: CoordinationOptions): Promise<KeepAliveSample> {
  const load1 = loadavg()[0]!;
  const renewer = new Renewer(target, KEEPALIVE_STREAMS);
  try {
    // Granting: every lease joins the renewer as soon as it is granted, so that none expires
    // while the others are still being granted.
    const grantStart = performance.now();
    const granted = await inParallel(KEEPALIVE_LEASES, SETUP_CONCURRENCY, async (i) => {
      const id = await grantWithRetry(target, target.callNode(i));
      renewer.add(id, performance.now());
    });
    const grantMs = performance.now() - grantStart;
    const leases = renewer.ids.length;
    if (leases === 0) throw new Error(`no lease could be granted: ${granted.first}`);
    renewer.spread();
    // One full period first, so that every lease is renewed on its evenly spread slot.
    await new Promise((r) => setTimeout(r, RENEW_EVERY_MS));
    const pids = target.pids();
    renewer.resetWindow();
    renewer.counting = true;
    const cpu0 = cpuMsOf(pids);
    const self0 = selfCpuMs();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, options.keepAliveDurationMs));
    const windowMs = performance.now() - t0;
    const cpu1 = cpuMsOf(pids);
    const self1 = selfCpuMs();
    renewer.counting = false;
    const bytes = renewer.bytes;
    const renewed = renewer.renewed;
    const p50 = renewer.latency.totalCount === 0 ? NaN : renewer.latency.getValueAtPercentile(50) / 1000;
    const p99 = renewer.latency.totalCount === 0 ? NaN : renewer.latency.getValueAtPercentile(99) / 1000;
    await renewer.stop();
    const backlogLeft = renewer.backlog();
    // Did every lease survive? The full list, then the time left of a sample.
    let missing = NaN;
    let sampleExpired = NaN;
    let checkError: string | undefined;
    try {
      const live = await target.liveLeases();
      missing = renewer.ids.filter((id) => !live.has(id)).length;
      const step = Math.max(1, Math.floor(leases / TTL_SAMPLE));
      const sample = renewer.ids.filter((_, i) => i % step === 0).slice(0, TTL_SAMPLE);
      const left = await Promise.all(sample.map((id) => target.remainingMs(id)));
      sampleExpired = left.filter((ms) => !(ms > 0)).length;
    } catch (err: unknown) {
      checkError = `checking the leases after the phase failed: ${message(err)}`;
    }
    const failures = renewer.failures();
    const firstError = granted.first ?? failures[0] ?? checkError ?? renewer.firstNotRenewed;
    const serverCpuMs = cpu1 - cpu0;
    return {
      system: target.name,
      round,
      leases,
      streams: KEEPALIVE_STREAMS,
      windowMs,
      grantsPerSec: (leases / grantMs) * 1000,
      grantErrors: granted.failed,
      askedPerSec: (leases / RENEW_EVERY_MS) * 1000,
      renewalsPerSec: (renewed / windowMs) * 1000,
      renewalP50Ms: p50,
      renewalP99Ms: p99,
      serverCpuMsPerSec: (serverCpuMs / windowMs) * 1000,
      idleCpuMsPerSec,
      serverCpuUsPerRenewal: renewed > 0 ? (serverCpuMs * 1000) / renewed : null,
      serverCpuUsPerRenewalAboveIdle: renewed > 0 && idleCpuMsPerSec !== null ? ((serverCpuMs - (idleCpuMsPerSec * windowMs) / 1000) * 1000) / renewed : null,
      clientCpuMsPerSec: ((self1 - self0) / windowMs) * 1000,
      bytesPerSec: (bytes / windowMs) * 1000,
      bytesPerRenewal: renewed > 0 ? bytes / renewed : null,
      notRenewed: renewer.notRenewed,
      maxBacklog: renewer.maxBacklog,
      backlogLeft,
      missingAfter: missing,
      sampleChecked: Number.isNaN(sampleExpired) ? 0 : Math.min(TTL_SAMPLE, leases),
      sampleExpired,
      errors: failures.length + (checkError === undefined ? 0 : 1),
      loadAverage: load1,
      ...(firstError === undefined ? {} : { firstError }),
    };
  } finally {
    renewer.close();
    await revokeAll(target, renewer.ids);
  }
}

/** CPU ms per second of the idle cluster over `ms`. */
async function idleCpu(target: Target, ms: number): Promise<number> {
  const pids = target.pids();
  const cpu0 = cpuMsOf(pids);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  return ((cpuMsOf(pids) - cpu0) / (performance.now() - t0)) * 1000;
}

/**
 * Starts a replikit CP cluster and an etcd cluster of their own, measures the lock and keep-alive
 * rows in every round (the systems in turn, the order reversed in even rounds), stops them.
 */
export async function runCoordination(options: CoordinationOptions): Promise<CoordinationReport> {
  const config: CoordinationConfig = {
    rounds: options.rounds,
    lockDurationMs: options.lockDurationMs,
    keepAliveDurationMs: options.keepAliveDurationMs,
    warmupMs: options.warmupMs,
    keepAliveWarmupMs: RENEW_EVERY_MS,
    idleMs: options.idleMs,
    leaseTtlMs: LEASE_TTL_MS,
    renewEveryMs: RENEW_EVERY_MS,
    contenders: [...LOCK_CONTENDERS],
    keepAliveLeases: KEEPALIVE_LEASES,
    keepAliveStreams: KEEPALIVE_STREAMS,
    command: options.command,
  };
  const unavailable: { system: CoordinationSystem; reason: string }[] = [];
  const notes: string[] = [
    'locks and leases ran on clusters of their own, started after the other rows; the system not measured was paused (SIGSTOP)',
    `keep-alive streams: stream i to node i mod 3 on both systems (${KEEPALIVE_STREAMS} streams, ${KEEPALIVE_LEASES / KEEPALIVE_STREAMS} leases each); ` +
      'a follower forwards renewals to its leader (replikit: one forwarded call per batch of requests that arrived together; etcd 3.4: one HTTP request to the leader per renewal)',
    'etcd\'s v3lock server runs the clientv3 concurrency recipe inside the member (a session on the given lease, orphaned at once, then Mutex.Lock: a Txn, a Range for the waiter before, a watch on it); replikit\'s LockService runs the same kind of recipe inside the node (a Txn, one linearizable Range of the waiters, then one watch of the queue until every waiter ahead is gone)',
  ];
  if (options.etcdBinary === undefined) notes.push('etcd is not part of this run: replikit only, no ratios');
  const targets: Target[] = [];
  const starts: [CoordinationSystem, () => Promise<Target>][] = [];
  if (options.etcdBinary !== undefined) starts.push(['etcd', () => startEtcdTarget(options, options.etcdBinary!)]);
  if (options.replikit) starts.push(['replikit-cp', () => startReplikitTarget(options)]);
  for (const [name, start] of starts) {
    try {
      const target = await start();
      targets.push(target);
      notes.push(`${name}: ${target.description}; ${target.lockRouting}`);
      if (options.pause) signalAll(target, 'SIGSTOP');
      options.log(`locks/leases: ${name} started`);
    } catch (err: unknown) {
      const reason = `failed to start: ${message(err)}`;
      unavailable.push({ system: name, reason });
      options.log(`locks/leases: ${name}: ${reason}`);
    }
  }
  const samples = { lock: [] as LockSample[], keepAlive: [] as KeepAliveSample[] };
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const order = round % 2 === 0 ? [...targets].reverse() : targets;
      for (const target of order) {
        if (options.pause) {
          try {
            await resume(target, target.name);
          } catch (err: unknown) {
            notes.push(message(err));
            options.log(message(err));
          }
        }
        const label = (what: string) => `${target.name} ${what} (round ${round}/${options.rounds})`;
        const attempt = async (what: string, plannedMs: number, measure: () => Promise<void>) => {
          options.phase?.(label(what), plannedMs);
          try {
            await measure();
          } catch (err: unknown) {
            const reason = `${what} failed in round ${round}: ${message(err)}`;
            unavailable.push({ system: target.name, reason });
            options.log(`locks/leases: ${target.name}: ${reason}`);
          }
        };
        // The idle cluster first (after a second to settle from the resume), for the keep-alive row.
        await new Promise((r) => setTimeout(r, 1_000));
        const idle = await idleCpu(target, options.idleMs).catch(() => null);
        for (const contenders of LOCK_CONTENDERS) {
          await attempt(`lock ×${contenders}`, options.lockDurationMs + options.warmupMs, async () => void samples.lock.push(await measureLock(target, round, contenders, idle, options)));
        }
        await attempt(`keep-alive of ${KEEPALIVE_LEASES} leases`, RENEW_EVERY_MS + options.keepAliveDurationMs + SETUP_ESTIMATE_MS, async () =>
          void samples.keepAlive.push(await measureKeepAlive(target, round, idle, options)),
        );
        if (options.pause) signalAll(target, 'SIGSTOP');
      }
    }
  } finally {
    for (const t of targets) signalAll(t, 'SIGCONT');
    await Promise.all(targets.map((t) => t.close()));
  }
  return aggregateCoordination(config, samples, unavailable, notes);
}

// ---------------------------------------------------------------------------------------------
// etcd's v3lock and Lease messages, encoded by hand as in bench/etcd-wire.ts. Field numbers from
// etcd 3.4's api/etcdserverpb/rpc.proto and etcdserver/api/v3lock/v3lockpb/v3lock.proto.
// ---------------------------------------------------------------------------------------------

export const ETCD_LOCK_PATH = '/v3lockpb.Lock/Lock';
export const ETCD_UNLOCK_PATH = '/v3lockpb.Lock/Unlock';
export const ETCD_LEASE_GRANT_PATH = '/etcdserverpb.Lease/LeaseGrant';
export const ETCD_LEASE_REVOKE_PATH = '/etcdserverpb.Lease/LeaseRevoke';
export const ETCD_LEASE_KEEPALIVE_PATH = '/etcdserverpb.Lease/LeaseKeepAlive';
export const ETCD_LEASE_TTL_PATH = '/etcdserverpb.Lease/LeaseTimeToLive';
export const ETCD_LEASE_LEASES_PATH = '/etcdserverpb.Lease/LeaseLeases';

/** LockRequest { bytes name = 1; int64 lease = 2; } */
export function encodeEtcdLockRequest(name: Uint8Array, lease: bigint): Uint8Array {
  return new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(name).tag(2, WireType.Varint).int64(lease).finish();
}

/** LockResponse { ResponseHeader header = 1; bytes key = 2; } */
export function decodeEtcdLockResponse(buf: Uint8Array): { key: Buffer } {
  const reader = new BinaryReader(buf);
  let key = Buffer.alloc(0);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 2 && wireType === WireType.LengthDelimited) key = Buffer.from(reader.bytes());
    else reader.skip(wireType, field);
  }
  return { key };
}

/** UnlockRequest { bytes key = 1; } */
export function encodeEtcdUnlockRequest(key: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(key).finish();
}

/** LeaseGrantRequest { int64 TTL = 1; int64 ID = 2; } (ID 0: the server picks one). TTL in seconds. */
export function encodeEtcdLeaseGrant(ttlSeconds: number): Uint8Array {
  return new BinaryWriter().tag(1, WireType.Varint).int64(ttlSeconds).finish();
}

/** LeaseGrantResponse { ResponseHeader header = 1; int64 ID = 2; int64 TTL = 3; string error = 4; } */
export function decodeEtcdLeaseGrantResponse(buf: Uint8Array): { id: bigint; ttl: bigint; error: string } {
  const reader = new BinaryReader(buf);
  let id = 0n;
  let ttl = 0n;
  let error = '';
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 2 && wireType === WireType.Varint) id = BigInt(reader.int64());
    else if (field === 3 && wireType === WireType.Varint) ttl = BigInt(reader.int64());
    else if (field === 4 && wireType === WireType.LengthDelimited) error = reader.string();
    else reader.skip(wireType, field);
  }
  return { id, ttl, error };
}

/**
 * A request of one lease id as field 1: LeaseRevokeRequest { int64 ID = 1; },
 * LeaseKeepAliveRequest { int64 ID = 1; }, LeaseTimeToLiveRequest { int64 ID = 1; bool keys = 2; }.
 */
export function encodeEtcdLeaseId(id: bigint): Uint8Array {
  return new BinaryWriter().tag(1, WireType.Varint).int64(id).finish();
}

/**
 * LeaseKeepAliveResponse { ResponseHeader header = 1; int64 ID = 2; int64 TTL = 3; } and
 * LeaseTimeToLiveResponse { header = 1; int64 ID = 2; int64 TTL = 3; int64 grantedTTL = 4; ... }:
 * TTL in seconds, 0 (keep-alive) or -1 (time to live) when the lease is gone.
 */
export function decodeEtcdLeaseTtlResponse(buf: Uint8Array): { id: bigint; ttl: bigint } {
  const reader = new BinaryReader(buf);
  let id = 0n;
  let ttl = 0n;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 2 && wireType === WireType.Varint) id = BigInt(reader.int64());
    else if (field === 3 && wireType === WireType.Varint) ttl = BigInt(reader.int64());
    else reader.skip(wireType, field);
  }
  return { id, ttl };
}

/** LeaseLeasesResponse { ResponseHeader header = 1; repeated LeaseStatus leases = 2; }, LeaseStatus { int64 ID = 1; } */
export function decodeEtcdLeaseLeasesResponse(buf: Uint8Array): bigint[] {
  const reader = new BinaryReader(buf);
  const ids: bigint[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 2 && wireType === WireType.LengthDelimited) {
      const status = new BinaryReader(reader.bytes());
      while (status.pos < status.len) {
        const [sField, sWire] = status.tag();
        if (sField === 1 && sWire === WireType.Varint) ids.push(BigInt(status.int64()));
        else status.skip(sWire, sField);
      }
    } else {
      reader.skip(wireType, field);
    }
  }
  return ids;
}
