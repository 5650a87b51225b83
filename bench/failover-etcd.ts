/**
 * etcd 3.4 for the leader-failover campaign: three members on loopback that can each be SIGKILLed
 * and started again from their data directory (bench/etcd.ts's EtcdCluster starts them once).
 * Default settings: fsync on, heartbeat 100 ms, election timeout 1,000 ms (replikit's Raft ticks
 * every 100 ms and times elections out after 10 ticks). Puts and linearizable Ranges spread over
 * the live members (a follower forwards proposals to its leader); the leader, its term and the
 * applied indexes come from Maintenance/Status.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { freePorts } from '../src/cli/local-cluster.js';
import { statusName } from '../src/transport/status.js';
import { spawnReady, type Reaper, type ReadyChild } from './children.js';
import { rawUnary } from './etcd.js';
import { ETCD_PUT_PATH, ETCD_RANGE_PATH, ETCD_STATUS_PATH, decodeRangeResponse, decodeStatusResponse, encodePutRequest, encodeRangeRequest, type EtcdStatus } from './etcd-wire.js';
import type { FailedWrite, FailoverSystem, LeaderView } from './failover-campaign.js';
import { neverSent } from './failover-replikit.js';

/** How long a member may take to answer Status after it was spawned. */
const MEMBER_READY_TIMEOUT_MS = 20_000;
const STATUS_DEADLINE_MS = 1_000;
const CHANNEL_OPTIONS = { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 };
/** A key no write of the campaign uses, read linearizably through a restarted member. */
const PROBE_KEY = Buffer.from('leader-kill-probe');

/**
 * etcd's answer to a failed Put. Only a call that never reached a member is certain to have done
 * nothing; every other failure ("leader changed", "request timed out", a dropped connection, a
 * deadline) may have been committed, as etcd's own client documents.
 */
export function classifyEtcdError(err: unknown): FailedWrite {
  const e = err as ServiceError;
  if (typeof e.code !== 'number') return { outcome: 'unknown', label: 'not a gRPC error' };
  if (neverSent(e)) return { outcome: 'refused', label: `${statusName(e.code)} (not connected)` };
  const message = e.details || e.message;
  // grpc-js spells out its own deadline's timings in the message ("after 5.001s,LB pick: 0s,..."): one label for them all.
  if (/^Deadline exceeded after/.test(message)) return { outcome: 'unknown', label: `${statusName(e.code)} (client deadline)` };
  return { outcome: 'unknown', label: `${statusName(e.code)} ${message.replace(/\d+(\.\d+)*/g, 'N').slice(0, 64)}` };
}

interface Member {
  readonly id: string;
  readonly args: readonly string[];
  readonly address: string;
  process: ReadyChild | undefined;
  client: Client;
  /** etcd's member id, learnt from its first Status. */
  memberId: string | undefined;
}

export async function startEtcdFailover(reaper: Reaper, binary: string, version: string): Promise<FailoverSystem> {
  const root = mkdtempSync(join(tmpdir(), 'replikit-leader-kill-etcd-'));
  reaper.trackDir(root);
  const ports = await freePorts(6);
  const ids = ['e1', 'e2', 'e3'];
  const peerUrl = (i: number) => `http://127.0.0.1:${ports[3 + i]}`;
  const clientUrl = (i: number) => `http://127.0.0.1:${ports[i]}`;
  const initialCluster = ids.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
  const members: Member[] = ids.map((id, i) => {
    const address = `127.0.0.1:${ports[i]}`;
    return {
      id,
      address,
      // On a restart the data directory holds the member's WAL, and the --initial-* flags are ignored.
      args: [
        '--name', id,
        '--data-dir', join(root, id),
        '--listen-client-urls', clientUrl(i),
        '--advertise-client-urls', clientUrl(i),
        '--listen-peer-urls', peerUrl(i),
        '--initial-advertise-peer-urls', peerUrl(i),
        '--initial-cluster', initialCluster,
        '--initial-cluster-token', 'replikit-leader-kill',
        '--initial-cluster-state', 'new',
        '--logger', 'zap',
        '--log-outputs', 'stderr',
        '--log-level', 'warn',
      ],
      process: undefined,
      client: new Client(address, credentials.createInsecure(), CHANNEL_OPTIONS),
      memberId: undefined,
    };
  });
  const byId = (id: string) => members.find((m) => m.id === id)!;
  const statusOf = async (id: string): Promise<EtcdStatus> => {
    const member = byId(id);
    const s = decodeStatusResponse(await rawUnary(member.client, ETCD_STATUS_PATH, new Uint8Array(0), STATUS_DEADLINE_MS));
    member.memberId = s.memberId;
    return s;
  };
  /** Spawns a member and waits until it answers Status (at log level warn a healthy etcd prints nothing). */
  const launch = async (member: Member) => {
    member.process = await spawnReady(reaper, binary, member.args, null, MEMBER_READY_TIMEOUT_MS);
    const until = performance.now() + MEMBER_READY_TIMEOUT_MS;
    for (;;) {
      const child = member.process.child;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`etcd member ${member.id} exited: ${member.process.stderrTail().trim().slice(-600)}`);
      try {
        await statusOf(member.id);
        return;
      } catch (err: unknown) {
        if (performance.now() > until) throw new Error(`etcd member ${member.id} did not answer Status within ${MEMBER_READY_TIMEOUT_MS} ms: ${err instanceof Error ? err.message : String(err)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };
  const killMember = async (member: Member) => {
    const child = member.process?.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  };
  const closeAll = () => {
    for (const m of members) {
      m.client.close();
      m.process?.child.kill('SIGKILL');
    }
    rmSync(root, { recursive: true, force: true });
  };
  try {
    await Promise.all(members.map(launch));
  } catch (err: unknown) {
    closeAll();
    throw err;
  }

  const leader = async (live: readonly string[]): Promise<LeaderView | undefined> => {
    const statuses = await Promise.all(live.map(statusOf));
    const named = statuses[0]?.leader;
    if (named === undefined || named === '0' || !statuses.every((s) => s.leader === named)) return undefined;
    const at = statuses.findIndex((s) => s.memberId === named);
    return at < 0 ? undefined : { id: live[at]!, term: String(statuses[at]!.raftTerm) };
  };

  return {
    kind: 'etcd',
    description: `etcd ${version}, 3 members, default settings (fsync on, heartbeat 100 ms, election timeout 1000 ms); Puts and linearizable Ranges spread over the live members, followers forward proposals to the leader`,
    memberIds: ids,
    put: async (id, key, value, deadlineMs) => {
      await rawUnary(byId(id).client, ETCD_PUT_PATH, encodePutRequest(Buffer.from(key), Buffer.from(value)), deadlineMs);
    },
    get: async (id, key, deadlineMs) => {
      const { values } = decodeRangeResponse(await rawUnary(byId(id).client, ETCD_RANGE_PATH, encodeRangeRequest(Buffer.from(key)), deadlineMs));
      return values.length === 0 ? undefined : Buffer.from(values[0]!).toString();
    },
    classify: classifyEtcdError,
    leader,
    kill: (id) => killMember(byId(id)),
    restart: async (id) => {
      const member = byId(id);
      member.client.close();
      member.client = new Client(member.address, credentials.createInsecure(), CHANNEL_OPTIONS);
      await launch(member);
    },
    caughtUp: async (id, others, timeoutMs) => {
      const until = performance.now() + timeoutMs;
      let target: bigint | undefined;
      let last = 'no answer yet';
      while (performance.now() < until) {
        try {
          const agreed = await leader([...others, id]);
          if (agreed === undefined) {
            last = 'the members do not agree on a leader yet';
          } else {
            target ??= (await statusOf(agreed.id)).raftIndex;
            const own = await statusOf(id);
            // raftAppliedIndex is new in 3.4; an older member reports 0, and its commit index instead.
            const applied = own.raftAppliedIndex > 0n ? own.raftAppliedIndex : own.raftIndex;
            if (applied >= target) {
              // And it answers a linearizable read itself (ReadIndex from the leader, then its own apply).
              await rawUnary(byId(id).client, ETCD_RANGE_PATH, encodeRangeRequest(PROBE_KEY), STATUS_DEADLINE_MS);
              return;
            }
            last = `applied ${applied} of ${target}`;
          }
        } catch (err: unknown) {
          last = err instanceof Error ? err.message : String(err);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`${id} did not catch up within ${timeoutMs} ms: ${last}`);
    },
    logTail: () => members.map((m) => `--- ${m.id}\n${m.process?.stderrTail().trim() ?? ''}`).join('\n'),
    close: async () => {
      await Promise.all(members.map(killMember));
      closeAll();
    },
  };
}
