/**
 * The systems under test, each started the same way it would run for real and reduced to the
 * same shape: a name, the operations it serves, a way to measure one phase of one of them, a
 * prefill and a close. Every one is driven with the same values, keys and call deadline; all but
 * the embedded one (bench/embedded.ts) by the grpc-js load generator in this process.
 */
import { fileURLToPath } from 'node:url';
import { Client, credentials, Metadata, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { LocalCluster, freePorts } from '../src/cli/local-cluster.js';
import { AckLevel, KvServiceClient } from '../src/gen/replikit/v1/kv_service.js';
import { loadBuiltClockInterceptors } from './built.js';
import { spawnReady, type Reaper } from './children.js';
import { cpuMsOf, selfCpuMs } from './cpu-usage.js';
import { EtcdCluster, rawUnary } from './etcd.js';
import {
  ETCD_PUT_PATH,
  ETCD_RANGE_PATH,
  ETCD_TXN_PATH,
  EtcdCompareResult,
  decodeRangeResponse,
  decodeTxnResponse,
  encodePutRequest,
  encodeRangeRequest,
  encodeTxnRequest,
} from './etcd-wire.js';
import { runLoad, type LoadOp, type LoadResult } from './load.js';
import { OP_ORDER, type OpName, type SystemName } from './report.js';
import { replikitSwapOutcome, replikitSwapRequest } from './replikit-swap.js';
import { KEY_COUNT, OwnedKeySwaps, VALUE, keyOf, type Swap } from './workload.js';

export { KEY_COUNT, VALUE_BYTES, keyOf } from './workload.js';

/** Each call's deadline: longer than a replikit node's own request timeout (3 s), so it answers first. */
export const CALL_DEADLINE_MS = 5_000;
/** How long a spawned server may take to say it is ready on a loaded 2-core machine. */
const READY_TIMEOUT_MS = 20_000;
/** Callers used to fill the key space before measuring. */
const PREFILL_CONCURRENCY = 32;

const EMPTY = Buffer.alloc(0);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ECHO_SERVER = fileURLToPath(new URL('./echo-server.ts', import.meta.url));
const ECHO_PATH = '/bench.Echo/Echo';

/** How one phase is run: callers, and how long it warms up and is measured. */
export interface PhaseOptions {
  readonly concurrency: number;
  readonly durationMs: number;
  readonly warmupMs: number;
}

/** One measured phase: the load's result and the CPU spent during its measured window only. */
export interface Measurement {
  readonly result: LoadResult;
  /** CPU of the system's processes (for the embedded system: its callers' loop included). */
  readonly serverCpuMs?: number;
  /** CPU of the process that drove the calls, when it is not one of the system's own. */
  readonly clientCpuMs?: number;
}

export interface BenchSystem {
  readonly name: SystemName;
  /** The operations it can be measured on, in report order. */
  readonly ops: readonly OpName[];
  /** One line for the report: where it runs, how it is driven. */
  readonly description: string;
  /** Runs one phase of `op` (one of `ops`) and measures it. */
  measure(op: OpName, options: PhaseOptions): Promise<Measurement>;
  /** One call that succeeds once the system serves: how a continued system shows it is back. */
  probe(): Promise<void>;
  /** The server processes: for their CPU time, and to pause the system while others are measured. */
  pids(): number[];
  /** Runs after the processes were continued (SIGCONT), before the probe (e.g. finds etcd's leader anew). */
  afterResume(): Promise<void>;
  /** Writes every key once (so gets read real values and swaps update keys) and checks one read; throws if it fails. */
  prefill(): Promise<void>;
  close(): Promise<void>;
  /** Lines for the report's notes once every phase ran (what the system had to do to be measured as described). */
  notes?(): string[];
}

export type StartResult = { readonly ok: true; readonly system: BenchSystem } | { readonly ok: false; readonly system: SystemName; readonly reason: string };

function deadline(): { deadline: number } {
  return { deadline: Date.now() + CALL_DEADLINE_MS };
}

async function prefillWith(put: LoadOp): Promise<void> {
  for (let i = 0; i < KEY_COUNT; i += PREFILL_CONCURRENCY) {
    const batch = Array.from({ length: Math.min(PREFILL_CONCURRENCY, KEY_COUNT - i) }, (_, j) => put(i + j, j));
    await Promise.all(batch);
  }
}

/**
 * Measuring for a system the load generator in this process drives: `runLoad` here, and over the
 * measured window the CPU of the system's processes (`pids`) and of this process (the client side).
 */
export function drivenFromHere(ops: Partial<Record<OpName, LoadOp>>, pids: () => number[]): Pick<BenchSystem, 'ops' | 'measure' | 'probe'> {
  return {
    ops: OP_ORDER.filter((op) => ops[op] !== undefined),
    measure: async (op, options) => {
      const load = ops[op];
      if (load === undefined) throw new Error(`this system has no ${op} op`);
      const ids = pids();
      const snapshot = (): [number, number] => [cpuMsOf(ids), selfCpuMs()];
      let atStart: [number, number] | undefined;
      let atEnd: [number, number] | undefined;
      const result = await runLoad(load, { ...options, onWindowStart: () => (atStart = snapshot()), onWindowEnd: () => (atEnd = snapshot()) });
      return atStart === undefined || atEnd === undefined ? { result } : { result, serverCpuMs: atEnd[0] - atStart[0], clientCpuMs: atEnd[1] - atStart[1] };
    },
    probe: async () => {
      await (ops.get ?? ops.echo ?? ops.put)!(0, 0);
    },
  };
}

/**
 * Bare grpc-js unary echo in its own process: the ceiling for one unary call per operation. With
 * `interceptors`, replikit's clock interceptors are installed on both the server and the client.
 */
export async function startEcho(reaper: Reaper, interceptors: boolean): Promise<StartResult> {
  const name: SystemName = interceptors ? 'echo-interceptors' : 'echo';
  const [port] = await freePorts(1);
  const args = ['--import', 'tsx', ECHO_SERVER, String(port), ...(interceptors ? ['--interceptors'] : [])];
  let server;
  try {
    server = await spawnReady(reaper, process.execPath, args, /^ready /, READY_TIMEOUT_MS, { cwd: ROOT });
  } catch (err: unknown) {
    return { ok: false, system: name, reason: `echo server failed to start: ${err instanceof Error ? err.message : String(err)}` };
  }
  const clientInterceptors = interceptors ? [(await loadBuiltClockInterceptors()).client] : [];
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), { interceptors: clientInterceptors });
  const identity = (b: Buffer) => b;
  const echo: LoadOp = () =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(ECHO_PATH, identity, identity, VALUE, new Metadata(), deadline(), (err, res) => (err ? reject(err) : resolve(res)));
    });
  const pids = () => (server.child.pid === undefined ? [] : [server.child.pid]);
  return {
    ok: true,
    system: {
      name,
      ...drivenFromHere({ echo }, pids),
      description: interceptors
        ? 'grpc-js unary echo of the 100-byte value, replikit clock interceptors on client and server'
        : 'bare grpc-js unary echo of the 100-byte value, one server process',
      pids,
      afterResume: async () => undefined,
      prefill: async () => undefined,
      close: async () => {
        client.close();
        server.child.kill('SIGKILL');
      },
    },
  };
}

/**
 * Three real `replikit serve` processes (LmdbStore, fsync on) with keyspace "default" bound to
 * `policy`. Calls go round-robin to the three nodes (any node coordinates). Each caller carries
 * its own session token, as a causal client would; other policies return none. CP alone also
 * serves compare-and-set (KvService.Txn). If `serve` refuses the policy name, the result says the
 * policy is not available in this build. `extraArgs` go to every `serve` (experiments, e.g.
 * `--heartbeat-interval-ms=1000`).
 */
export async function startReplikit(
  reaper: Reaper,
  policy: 'cp' | 'ap' | 'causal',
  extraArgs: readonly string[] = [],
  calls: ReplikitCalls = 'spread',
): Promise<StartResult> {
  const name: SystemName = `replikit-${policy}`;
  const cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', policy, '--log-level', 'warn', ...extraArgs] });
  reaper.trackGroup(cluster);
  try {
    await cluster.startAll();
  } catch (err: unknown) {
    await cluster.stop();
    reaper.untrackGroup(cluster);
    const message = err instanceof Error ? err.message : String(err);
    if (/unknown policy/i.test(message)) return { ok: false, system: name, reason: `not available in this build (serve refused --policy ${policy})` };
    return { ok: false, system: name, reason: `failed to start: ${message.slice(0, 300)}` };
  }
  const addresses = cluster.ids.map((id) => cluster.address(id));
  const driver = replikitDriver(calls === 'pinned' ? addresses.slice(0, 1) : addresses, name);
  const pids = () => cluster.ids.flatMap((id) => cluster.pid(id) ?? []);
  const { put, get, cas } = driver.ops;
  return {
    ok: true,
    system: {
      name,
      ...drivenFromHere(policy === 'cp' ? { put, get, cas } : { put, get }, pids),
      description:
        `3 \`replikit serve --policy ${policy}\` processes, LmdbStore, ` +
        (calls === 'pinned' ? 'every call to n1 (--replikit-calls pinned, as etcd calls go to its leader)' : 'calls round-robin over the 3 nodes'),
      pids,
      afterResume: async () => undefined,
      prefill: async () => {
        await driver.prefill();
        if (policy === 'cp') await driver.prefillCas();
      },
      close: async () => {
        driver.close();
        await cluster.stop();
        reaper.untrackGroup(cluster);
      },
    },
  };
}

/**
 * Where the load generator sends replikit calls: `spread` round-robin over the three nodes (what
 * clients of a leaderless cluster do, and the default), or `pinned` all to n1, the situation of
 * etcd's leader, which coordinates every Put: one coordinator makes bigger peer batches and fewer
 * commits per call, but its one event loop carries every client call.
 */
export type ReplikitCalls = 'spread' | 'pinned';

/** What drives a replikit cluster: put, get and compare-and-set ops over one client per node, prefills and a close. */
export interface ReplikitDriver {
  readonly ops: { readonly put: LoadOp; readonly get: LoadOp; readonly cas: LoadOp };
  /** Writes every put/get key once and reads one back. */
  prefill(): Promise<void>;
  /** Writes every compare-and-set key once, by compare-and-set (CP keyspaces only). */
  prefillCas(): Promise<void>;
  close(): void;
}

/**
 * grpc-js KvService clients for the nodes at `addresses`, calls round-robin over them. Each caller
 * keeps the session token it was last given and sends it with its next call.
 * `channelCredentials`: plaintext by default; TLS (a client certificate for mutual TLS) for the
 * security rows (bench/security.ts).
 */
export function replikitDriver(addresses: readonly string[], name: string, channelCredentials: ChannelCredentials = credentials.createInsecure()): ReplikitDriver {
  const clients = addresses.map((address) => new KvServiceClient(address, channelCredentials));
  const sessions: Buffer[] = [];
  const keep = (caller: number, token: Buffer) => {
    if (token.length > 0) sessions[caller] = token;
  };
  const put: LoadOp = (n, caller) =>
    new Promise((resolve, reject) => {
      const request = { keyspace: 'default', key: keyOf(n), value: VALUE, sessionToken: sessions[caller] ?? EMPTY, ack: AckLevel.ACK_LEVEL_UNSPECIFIED, lease: 0n };
      clients[n % clients.length]!.put(request, new Metadata(), deadline(), (err: ServiceError | null, res) => {
        if (err) return reject(err);
        keep(caller, res.sessionToken);
        resolve(res);
      });
    });
  const get: LoadOp = (n, caller) =>
    new Promise((resolve, reject) => {
      const request = { keyspace: 'default', key: keyOf(n), sessionToken: sessions[caller] ?? EMPTY, consistency: 0 };
      clients[n % clients.length]!.get(request, new Metadata(), deadline(), (err: ServiceError | null, res) => {
        if (err) return reject(err);
        keep(caller, res.sessionToken);
        resolve(res);
      });
    });
  const swap: Swap = (key, expectedModRevision, n) =>
    new Promise((resolve, reject) => {
      clients[n % clients.length]!.txn(replikitSwapRequest(key, expectedModRevision), new Metadata(), deadline(), (err: ServiceError | null, res) =>
        err ? reject(err) : resolve(replikitSwapOutcome(res)),
      );
    });
  const swaps = new OwnedKeySwaps(swap);
  return {
    ops: { put, get, cas: swaps.op },
    prefillCas: () => swaps.prefill(),
    prefill: async () => {
      await prefillWith(put);
      // Call 0 goes to node 0, which the prefill also wrote key 0 through.
      const res = await new Promise<{ found: boolean; value: Buffer }>((resolve, reject) =>
        clients[0]!.get({ keyspace: 'default', key: keyOf(0), sessionToken: sessions[0] ?? EMPTY, consistency: 0 }, new Metadata(), deadline(), (err, r) =>
          err ? reject(err) : resolve(r),
        ),
      );
      if (!res.found || !res.value.equals(VALUE)) throw new Error(`${name}: a get after the prefill did not return the value written`);
    },
    close: () => {
      for (const c of clients) c.close();
    },
  };
}

/**
 * etcd 3.4, three members. Puts and Txns go to the leader (as a client pinned to it would send
 * them; a follower would forward them there). Range reads are linearizable (serializable = false);
 * with `reads: 'leader'` they go to the leader too, which answers them without a follower's extra
 * ReadIndex round trip, and with 'spread' round-robin over the members, as replikit's gets are.
 * Compare-and-set is a Txn: compare mod_revision, put on success, range the key on failure.
 */
export async function startEtcd(reaper: Reaper, binary: string, reads: 'leader' | 'spread' = 'leader'): Promise<StartResult> {
  let cluster: EtcdCluster;
  try {
    cluster = await EtcdCluster.start(binary, reaper);
  } catch (err: unknown) {
    return { ok: false, system: 'etcd', reason: `etcd failed to start: ${err instanceof Error ? err.message : String(err)}` };
  }
  // The leader can change while the members are paused and continued: found anew on every resume.
  let leader = cluster.clients[cluster.leaderIndex]!;
  let readers = reads === 'leader' ? [leader] : cluster.clients;
  const put: LoadOp = (n) => rawUnary(leader, ETCD_PUT_PATH, encodePutRequest(keyOf(n), VALUE), CALL_DEADLINE_MS);
  const get: LoadOp = (n) => rawUnary(readers[n % readers.length]!, ETCD_RANGE_PATH, encodeRangeRequest(keyOf(n)), CALL_DEADLINE_MS);
  const swap: Swap = async (key, expectedModRevision) => {
    const request = encodeTxnRequest({
      compare: [{ key, result: EtcdCompareResult.EQUAL, operand: { modRevision: expectedModRevision } }],
      success: [{ put: { key, value: VALUE } }],
      failure: [{ range: { key } }],
    });
    const response = decodeTxnResponse(await rawUnary(leader, ETCD_TXN_PATH, request, CALL_DEADLINE_MS));
    return response.succeeded
      ? { swapped: true, modRevision: response.revision }
      : { swapped: false, modRevision: response.responses[0]?.[0]?.modRevision ?? 0n };
  };
  const swaps = new OwnedKeySwaps(swap);
  const pids = () => cluster.members.flatMap((m) => m.process.child.pid ?? []);
  return {
    ok: true,
    system: {
      name: 'etcd',
      ...drivenFromHere({ put, get, cas: swaps.op }, pids),
      description:
        `3 etcd members, Put and Txn to the leader, linearizable Range ${reads === 'leader' ? 'to the leader' : 'round-robin over the members'}`,
      pids,
      afterResume: async () => {
        leader = cluster.clients[await cluster.findLeader()]!;
        readers = reads === 'leader' ? [leader] : cluster.clients;
      },
      prefill: async () => {
        await prefillWith(put);
        const { values } = decodeRangeResponse(await rawUnary(leader, ETCD_RANGE_PATH, encodeRangeRequest(keyOf(0)), CALL_DEADLINE_MS));
        if (values.length !== 1 || !Buffer.from(values[0]!).equals(VALUE)) throw new Error('etcd: a Range after the prefill did not return the value written');
        await swaps.prefill();
      },
      close: async () => cluster.close(),
    },
  };
}
