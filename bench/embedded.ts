/**
 * replikit CP through the embedding API: the benchmark's callers run inside one node's own process
 * (bench/embedded-worker.ts, node n1), calling `node.keyspace('default')` directly, while the
 * other two members are ordinary `replikit serve` processes; all three keep their data in LMDB
 * with fsync on, on loopback. What it measures is replikit without the client's gRPC hop.
 *
 * n1 is kept the CP keyspace's Raft leader, so its callers are where etcd's client calls go (to
 * etcd's leader): when another member leads, after the start or after a pause, that member is
 * stopped with SIGTERM (a leader that closes hands its leadership to its most caught-up follower)
 * and restarted from its data, until n1 leads or the moves run out; the report's notes count them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata } from '@grpc/grpc-js';
import { LocalCluster } from '../src/cli/local-cluster.js';
import { ClusterServiceClient } from '../src/gen/replikit/v1/cluster_service.js';
import type { Reaper } from './children.js';
import type { WorkerMeasurement, WorkerReady, WorkerReply, WorkerRequest } from './embedded-worker.js';
import type { BenchSystem, StartResult } from './systems.js';

/** The member whose process embeds the node and runs the callers. */
const SELF = 'n1';
/** How long the worker may take to load, start its node and see the cluster serve, on a loaded 2-core machine. */
const WORKER_READY_TIMEOUT_MS = 30_000;
/** Leader moves tried at one placement before measuring with the leader where it is (and saying so). */
const MAX_LEADER_MOVES = 4;
/** How long the members may take to agree on a leader after a start, a pause or a move. */
const LEADER_TIMEOUT_MS = 15_000;
/** One Status call's deadline while polling for the leader. */
const STATUS_DEADLINE_MS = 1_000;
/** Pause between polls for an agreed leader. */
const LEADER_POLL_MS = 100;
/** The last bytes of the worker's stderr kept for error messages. */
const STDERR_TAIL_CHARS = 4_000;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORKER = fileURLToPath(new URL('./embedded-worker.ts', import.meta.url));

/** Request/reply over the worker's IPC channel; a worker that exits fails every call in flight. */
class WorkerChannel {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (value: WorkerMeasurement | undefined) => void; reject: (err: Error) => void }>();
  #nextId = 1;
  #exited: string | undefined;

  constructor(child: ChildProcess, stderrTail: () => string) {
    this.#child = child;
    child.on('message', (message: WorkerReply | WorkerReady) => {
      if ('type' in message) return;
      const waiter = this.#pending.get(message.id);
      if (waiter === undefined) return;
      this.#pending.delete(message.id);
      if (message.ok) waiter.resolve(message.value);
      else waiter.reject(new Error(message.error));
    });
    child.once('exit', (code, signal) => {
      this.#exited = `the embedded node's process exited (${signal ?? code}): ${stderrTail().trim().slice(-600)}`;
      for (const waiter of this.#pending.values()) waiter.reject(new Error(this.#exited));
      this.#pending.clear();
    });
  }

  call(request: DistributiveOmit<WorkerRequest, 'id'>): Promise<WorkerMeasurement | undefined> {
    if (this.#exited !== undefined) return Promise.reject(new Error(this.#exited));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#child.send({ ...request, id } as WorkerRequest);
    });
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Asks every member for its view of keyspace default's Raft group until all name the same leader. */
async function agreedLeader(cluster: LocalCluster, clients: ReadonlyMap<string, ClusterServiceClient>): Promise<string> {
  const until = Date.now() + LEADER_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < until) {
    try {
      const leaders = await Promise.all(
        cluster.ids.map(
          (id) =>
            new Promise<string>((resolve, reject) =>
              clients.get(id)!.status({}, new Metadata(), { deadline: Date.now() + STATUS_DEADLINE_MS }, (err, res) =>
                err ? reject(err) : resolve(res.keyspaces.find((k) => k.name === 'default')?.raft?.leader ?? ''),
              ),
            ),
        ),
      );
      if (leaders[0] !== '' && leaders.every((l) => l === leaders[0])) return leaders[0]!;
      last = `leaders seen: ${leaders.map((l) => l || 'none').join(', ')}`;
    } catch (err: unknown) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, LEADER_POLL_MS));
  }
  throw new Error(`the members did not agree on a leader within ${LEADER_TIMEOUT_MS} ms (${last})`);
}

/**
 * Starts the cluster: `replikit serve --policy cp` for n2 and n3 (LocalCluster), the worker for
 * n1 with n1's address and data directory. `--serve-arg` flags cannot be given to the embedded
 * node (it is configured in code), so with any the system is left out rather than run mixed.
 */
export async function startEmbeddedCp(reaper: Reaper, extraServeArgs: readonly string[] = []): Promise<StartResult> {
  const name = 'replikit-cp-embedded';
  if (extraServeArgs.length > 0) {
    return { ok: false, system: name, reason: `left out: --serve-arg (${extraServeArgs.join(' ')}) applies to \`replikit serve\`, not to the embedded node` };
  }
  const cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', 'cp', '--log-level', 'warn'] });
  reaper.trackGroup(cluster);
  const others = cluster.ids.filter((id) => id !== SELF);
  const child = reaper.track(
    spawn(
      process.execPath,
      [
        '--import', 'tsx', WORKER,
        '--id', SELF,
        '--listen', cluster.address(SELF),
        '--peers', others.map((id) => `${id}=${cluster.address(id)}`).join(','),
        '--data-dir', cluster.dataDir(SELF),
      ],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'advanced' },
    ),
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS)));
  const channel = new WorkerChannel(child, () => stderr);
  const workerReady = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the embedded node was not serving within ${WORKER_READY_TIMEOUT_MS} ms: ${stderr.trim().slice(-600)}`)), WORKER_READY_TIMEOUT_MS);
    child.on('message', (message: WorkerReady | WorkerReply) => {
      if ('type' in message && message.type === 'ready') (clearTimeout(timer), resolve());
    });
    child.once('exit', (code, signal) => (clearTimeout(timer), reject(new Error(`the embedded node's process exited (${signal ?? code}) before it served: ${stderr.trim().slice(-600)}`))));
  });
  const statusClients = new Map(cluster.ids.map((id) => [id, new ClusterServiceClient(cluster.address(id), credentials.createInsecure())]));
  const stop = async () => {
    for (const c of statusClients.values()) c.close();
    child.kill('SIGKILL');
    await cluster.stop();
    reaper.untrackGroup(cluster);
  };
  try {
    await Promise.all([workerReady, ...others.map((id) => cluster.start(id))]);
  } catch (err: unknown) {
    await stop();
    return { ok: false, system: name, reason: `failed to start: ${(err instanceof Error ? err.message : String(err)).slice(0, 300)}` };
  }

  let leaderMoves = 0;
  let placementsFailed = 0;
  /** Makes n1 the leader if another member leads (see the file's comment). */
  const placeLeader = async () => {
    for (let moves = 0; ; moves++) {
      const leader = await agreedLeader(cluster, statusClients);
      if (leader === SELF) return;
      if (moves === MAX_LEADER_MOVES) {
        placementsFailed++;
        return;
      }
      await cluster.kill(leader, 'SIGTERM');
      await cluster.start(leader);
      leaderMoves++;
    }
  };
  const pids = () => [child.pid ?? [], ...others.map((id) => cluster.pid(id) ?? [])].flat();
  const system: BenchSystem = {
    name,
    ops: ['put', 'get', 'cas'],
    description:
      `put, linearizable get and compare-and-set through \`node.keyspace('default')\` inside ${SELF}'s own process ` +
      `(the compiled package, configured as \`replikit serve --policy cp\`; ${SELF} kept the Raft leader), ` +
      `${others.join(' and ')} \`replikit serve --policy cp\` processes, LmdbStore`,
    measure: async (op, options) => {
      const value = await channel.call({ call: 'measure', op, ...options, peerPids: others.flatMap((id) => cluster.pid(id) ?? []) });
      if (value === undefined) throw new Error('the embedded node answered a measure with nothing');
      // The callers run inside a server process: there is no separate client CPU to report.
      return value;
    },
    probe: async () => {
      await channel.call({ call: 'probe' });
    },
    pids,
    afterResume: placeLeader,
    prefill: async () => {
      await placeLeader();
      await channel.call({ call: 'prefill' });
    },
    close: stop,
    notes: () => [
      `replikit-cp-embedded: ${leaderMoves} leader move(s) (SIGTERM and restart of the member that led) kept ${SELF} the leader` +
        (placementsFailed > 0 ? `; ${placementsFailed} time(s) ${SELF} was still not leading after ${MAX_LEADER_MOVES} moves and was measured as a follower` : ''),
    ],
  };
  return { ok: true, system };
}
