/**
 * etcd 3.4, the comparison peer: found on PATH or installed from Debian (`apt-get install -y
 * etcd-server`, after `apt-get update` if the first try fails), then three members on loopback,
 * each with its own data directory in a temporary folder, default settings (fsync on: 3.4 has no
 * switch to turn it off), driven over gRPC like replikit.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import { freePorts } from '../src/cli/local-cluster.js';
import { spawnReady, type Reaper, type ReadyChild } from './children.js';
import { ETCD_STATUS_PATH, decodeStatusResponse, type EtcdStatus } from './etcd-wire.js';

/** How long one member may take to start serving; etcd starts in well under a second. */
const MEMBER_READY_TIMEOUT_MS = 20_000;
/** How long the three may take to elect a leader. */
const LEADER_TIMEOUT_MS = 20_000;
/** How long `apt-get update` / `apt-get install` may run. */
const APT_TIMEOUT_MS = 240_000;

export type EtcdAvailability = { readonly ok: true; readonly binary: string; readonly version: string } | { readonly ok: false; readonly reason: string };

function etcdVersion(binary: string): string | undefined {
  const result = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (result.error !== undefined || result.status !== 0) return undefined;
  return /etcd Version:\s*(\S+)/.exec(result.stdout)?.[1] ?? result.stdout.trim().split('\n')[0];
}

/**
 * Finds etcd, installing Debian's etcd-server when it is missing and `install` is set. Never
 * throws: the reason etcd cannot be had goes into the report instead.
 */
export function findOrInstallEtcd(binary: string, install: boolean, log: (line: string) => void): EtcdAvailability {
  const found = etcdVersion(binary);
  if (found !== undefined) return { ok: true, binary, version: found };
  if (!install) return { ok: false, reason: `${binary} not found and installing was switched off (--no-install)` };
  if (binary !== 'etcd') return { ok: false, reason: `${binary} not found (installing only puts \`etcd\` on PATH)` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'etcd not found, and installing etcd-server needs root' };
  const apt = (args: string[]) => {
    log(`etcd missing: apt-get ${args.join(' ')}`);
    const r = spawnSync('apt-get', args, { encoding: 'utf8', timeout: APT_TIMEOUT_MS, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    return r.error === undefined && r.status === 0 ? '' : (r.error?.message ?? r.stderr.trim().split('\n').slice(-2).join(' '));
  };
  let problem = apt(['install', '-y', 'etcd-server']);
  if (problem !== '') {
    const updateProblem = apt(['update']);
    problem = updateProblem !== '' ? `apt-get update failed: ${updateProblem}` : apt(['install', '-y', 'etcd-server']);
  }
  const version = etcdVersion(binary);
  if (version !== undefined) return { ok: true, binary, version };
  return { ok: false, reason: `etcd not found and \`apt-get install -y etcd-server\` failed${problem === '' ? '' : `: ${problem}`}` };
}

interface EtcdMember {
  readonly name: string;
  readonly clientAddress: string;
  readonly process: ReadyChild;
}

/** Calls a unary etcd method with raw protobuf bytes. */
export function rawUnary(client: Client, path: string, request: Uint8Array, deadlineMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (req: Uint8Array) => Buffer.from(req.buffer, req.byteOffset, req.byteLength),
      (res: Buffer) => res,
      request,
      new Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  });
}

/** Three etcd members on loopback and one grpc-js client per member. */
export class EtcdCluster {
  readonly root: string;
  readonly members: readonly EtcdMember[];
  readonly clients: readonly Client[];
  /** Index of the leader in `members` / `clients` when the cluster became ready (see findLeader). */
  readonly leaderIndex: number;

  private constructor(root: string, members: EtcdMember[], clients: Client[], leaderIndex: number) {
    this.root = root;
    this.members = members;
    this.clients = clients;
    this.leaderIndex = leaderIndex;
  }

  static async start(binary: string, reaper: Reaper): Promise<EtcdCluster> {
    const root = mkdtempSync(join(tmpdir(), 'replikit-bench-etcd-'));
    reaper.trackDir(root);
    const ports = await freePorts(6);
    const names = ['e1', 'e2', 'e3'];
    const peerUrl = (i: number) => `http://127.0.0.1:${ports[3 + i]}`;
    const clientUrl = (i: number) => `http://127.0.0.1:${ports[i]}`;
    const initialCluster = names.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
    const members = await Promise.all(
      names.map(async (name, i) => {
        const args = [
          '--name', name,
          '--data-dir', join(root, name),
          '--listen-client-urls', clientUrl(i),
          '--advertise-client-urls', clientUrl(i),
          '--listen-peer-urls', peerUrl(i),
          '--initial-advertise-peer-urls', peerUrl(i),
          '--initial-cluster', initialCluster,
          '--initial-cluster-token', 'replikit-bench',
          '--initial-cluster-state', 'new',
          '--logger', 'zap',
          '--log-outputs', 'stderr',
          '--log-level', 'warn',
        ];
        // At log level warn a healthy member prints nothing: it counts as started once spawned,
        // and readiness is decided below by asking each member for its status.
        const process = await spawnReady(reaper, binary, args, null, MEMBER_READY_TIMEOUT_MS);
        return { name, clientAddress: `127.0.0.1:${ports[i]}`, process };
      }),
    ).catch((err: unknown) => {
      reaper.killAllNow();
      throw err;
    });
    const clients = members.map((m) => new Client(m.clientAddress, credentials.createInsecure()));
    const statuses = await waitForLeader(clients, members);
    const leaderIndex = statuses.findIndex((s) => s.memberId === s.leader);
    return new EtcdCluster(root, members, clients, leaderIndex);
  }

  /** Asks every member for its status until they agree on a leader; returns its index. */
  async findLeader(): Promise<number> {
    const statuses = await waitForLeader(this.clients, this.members);
    return statuses.findIndex((s) => s.memberId === s.leader);
  }

  /** Kills the members (SIGKILL: nothing in them is worth a clean stop) and closes the clients. */
  close(): void {
    for (const c of this.clients) c.close();
    for (const m of this.members) m.process.child.kill('SIGKILL');
  }
}

/** Polls every member's Status until all answer and agree on a leader. */
async function waitForLeader(clients: readonly Client[], members: readonly EtcdMember[]): Promise<EtcdStatus[]> {
  const until = Date.now() + LEADER_TIMEOUT_MS;
  let last = '';
  while (Date.now() < until) {
    for (const m of members) {
      if (m.process.child.exitCode !== null || m.process.child.signalCode !== null) {
        throw new Error(`etcd member ${m.name} exited: ${m.process.stderrTail().trim().slice(-600)}`);
      }
    }
    try {
      const statuses = await Promise.all(clients.map(async (c) => decodeStatusResponse(await rawUnary(c, ETCD_STATUS_PATH, new Uint8Array(0), 1_000))));
      const leader = statuses[0]!.leader;
      if (leader !== '0' && statuses.every((s) => s.leader === leader) && statuses.some((s) => s.memberId === leader)) return statuses;
      last = `no agreed leader yet (${statuses.map((s) => s.leader).join(', ')})`;
    } catch (err: unknown) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`etcd cluster had no leader within ${LEADER_TIMEOUT_MS} ms: ${last}`);
}
