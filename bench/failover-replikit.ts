/**
 * replikit for the leader-failover campaign: three real `replikit serve` processes (LmdbStore,
 * fsync on) whose keyspace "default" is CP, i.e. one Raft group. Puts and linearizable gets go
 * to any member (a follower forwards them to the leader); the leader is read from every member's
 * ClusterService Status (`KeyspaceStatus.raft`).
 */
import { credentials, Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { LocalCluster } from '../src/cli/local-cluster.js';
import { ClusterServiceClient, type RaftStatus, type StatusResponse } from '../src/gen/replikit/v1/cluster_service.js';
import { Consistency, KvServiceClient } from '../src/gen/replikit/v1/kv_service.js';
import { REASON_METADATA_KEY, statusName } from '../src/transport/status.js';
import type { Reaper } from './children.js';
import type { FailedWrite, FailoverSystem, LeaderView } from './failover-campaign.js';

const KEYSPACE = 'default';
/** A Status call's deadline: a member that cannot answer this fast is not settled. */
const STATUS_DEADLINE_MS = 1_000;
/** Log lines kept per member for the report. */
const LOG_LINES = 200;
/** Reconnect quickly to a member that was restarted on the same port (grpc-js backs off up to 120 s). */
const CHANNEL_OPTIONS = { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 };
const EMPTY = Buffer.alloc(0);

interface Clients {
  readonly kv: KvServiceClient;
  readonly cluster: ClusterServiceClient;
}

/**
 * A transport error that certainly never reached the server: no connection was ever made for the
 * call. A connection dropped mid-call ("Connection dropped", ECONNRESET) may have delivered it.
 */
export function neverSent(err: ServiceError): boolean {
  return err.code === Status.UNAVAILABLE && /No connection established|ECONNREFUSED/.test(err.details ?? err.message);
}

/** replikit's answer to a failed put: UNAVAILABLE from a node means "nothing was done" (kv_service.proto). */
export function classifyReplikitError(err: unknown): FailedWrite {
  const e = err as ServiceError;
  if (typeof e.code !== 'number') return { outcome: 'unknown', label: 'not a gRPC error' };
  const reason = e.metadata?.get(REASON_METADATA_KEY)[0];
  if (typeof reason === 'string') return { outcome: e.code === Status.UNAVAILABLE ? 'refused' : 'unknown', label: `${statusName(e.code)} ${reason}` };
  if (neverSent(e)) return { outcome: 'refused', label: `${statusName(e.code)} (not connected)` };
  const message = e.details || e.message;
  if (/^Deadline exceeded after/.test(message)) return { outcome: 'unknown', label: `${statusName(e.code)} (client deadline)` };
  return { outcome: 'unknown', label: `${statusName(e.code)} (client: ${message.replace(/\d+(\.\d+)*/g, 'N').slice(0, 40)})` };
}

function call<T>(fn: (done: (err: ServiceError | null, res?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res!))));
}

export async function startReplikitFailover(reaper: Reaper): Promise<FailoverSystem> {
  const logs = new Map<string, string[]>();
  const cluster = await LocalCluster.create({
    size: 3,
    serveArgs: ['--log-level', 'info'],
    onLog: (id, line) => {
      const lines = logs.get(id) ?? [];
      lines.push(line);
      if (lines.length > LOG_LINES) lines.shift();
      logs.set(id, lines);
    },
  });
  reaper.trackGroup(cluster);
  try {
    await cluster.startAll();
  } catch (err: unknown) {
    await cluster.stop();
    reaper.untrackGroup(cluster);
    throw err;
  }
  const clients = new Map<string, Clients>();
  const connect = (id: string) => {
    const old = clients.get(id);
    old?.kv.close();
    old?.cluster.close();
    const address = cluster.address(id);
    clients.set(id, { kv: new KvServiceClient(address, credentials.createInsecure(), CHANNEL_OPTIONS), cluster: new ClusterServiceClient(address, credentials.createInsecure(), CHANNEL_OPTIONS) });
  };
  for (const id of cluster.ids) connect(id);
  const clientsOf = (id: string) => clients.get(id)!;

  const raftOf = async (id: string): Promise<RaftStatus> => {
    const res = await call<StatusResponse>((done) => clientsOf(id).cluster.status({}, new Metadata(), { deadline: Date.now() + STATUS_DEADLINE_MS }, done));
    const raft = res.keyspaces.find((k) => k.name === KEYSPACE)?.raft;
    if (raft === undefined) throw new Error(`${id} reports no Raft status for keyspace ${KEYSPACE}`);
    return raft;
  };

  const leader = async (live: readonly string[]): Promise<LeaderView | undefined> => {
    const views = await Promise.all(live.map(raftOf));
    const named = views[0]?.leader;
    if (named === undefined || named === '' || !live.includes(named)) return undefined;
    if (!views.every((v) => v.leader === named)) return undefined;
    const own = views[live.indexOf(named)]!;
    return own.role === 'leader' ? { id: named, term: String(own.term) } : undefined;
  };

  return {
    kind: 'replikit',
    description: `3 \`replikit serve\` processes (LmdbStore, fsync on), keyspace "${KEYSPACE}" CP (Raft); puts and linearizable gets spread over the live members, followers forward to the leader`,
    memberIds: cluster.ids,
    put: async (id, key, value, deadlineMs) => {
      await call((done) =>
        clientsOf(id).kv.put({ keyspace: KEYSPACE, key: Buffer.from(key), value: Buffer.from(value), sessionToken: EMPTY, ack: 0, lease: 0n }, new Metadata(), { deadline: Date.now() + deadlineMs }, done),
      );
    },
    get: async (id, key, deadlineMs) => {
      const res = await call<{ found: boolean; value: Buffer }>((done) =>
        clientsOf(id).kv.get(
          { keyspace: KEYSPACE, key: Buffer.from(key), sessionToken: EMPTY, consistency: Consistency.CONSISTENCY_LINEARIZABLE },
          new Metadata(),
          { deadline: Date.now() + deadlineMs },
          done,
        ),
      );
      return res.found ? res.value.toString() : undefined;
    },
    classify: classifyReplikitError,
    leader,
    kill: (id) => cluster.kill(id, 'SIGKILL'),
    restart: async (id) => {
      await cluster.start(id);
      connect(id);
    },
    caughtUp: async (id, others, timeoutMs) => {
      const until = performance.now() + timeoutMs;
      // What the cluster had committed once the member serves again: the leader's commit index.
      let target: bigint | undefined;
      let last = 'no answer yet';
      while (performance.now() < until) {
        try {
          const agreed = await leader([...others, id]);
          if (agreed === undefined) {
            last = 'the members do not agree on a leader yet';
          } else {
            target ??= (await raftOf(agreed.id)).commitIndex;
            const own = await raftOf(id);
            if (own.appliedIndex >= target) return;
            last = `applied ${own.appliedIndex} of ${target}`;
          }
        } catch (err: unknown) {
          last = err instanceof Error ? err.message : String(err);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`${id} did not catch up within ${timeoutMs} ms: ${last}`);
    },
    logTail: () => cluster.ids.map((id) => `--- ${id}\n${(logs.get(id) ?? []).join('\n')}`).join('\n'),
    close: async () => {
      for (const c of clients.values()) (c.kv.close(), c.cluster.close());
      await cluster.stop();
      reaper.untrackGroup(cluster);
    },
  };
}
