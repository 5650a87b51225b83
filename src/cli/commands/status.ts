import { ClusterServiceClient, MemberState, StatusResponse, TransportSecurity, type StatusResponse as Status } from '../../gen/replikit/v1/cluster_service.js';
import { PolicyKind } from '../../gen/replikit/v1/types.js';
import { parseArgs, UsageError } from '../args.js';
import { CLIENT_FLAGS, clientSettings, reportCallError, TLS_CLIENT_USAGE, unary } from '../client.js';
import type { Command } from '../main.js';

const STATE_NAME: Record<number, string> = {
  [MemberState.MEMBER_STATE_ALIVE]: 'ALIVE',
  [MemberState.MEMBER_STATE_SUSPECT]: 'SUSPECT',
  [MemberState.MEMBER_STATE_DEAD]: 'DEAD',
};
const TRANSPORT_NAME: Record<number, string> = {
  [TransportSecurity.TRANSPORT_SECURITY_PLAINTEXT]: 'plaintext',
  [TransportSecurity.TRANSPORT_SECURITY_TLS]: 'tls',
  [TransportSecurity.TRANSPORT_SECURITY_MUTUAL_TLS]: 'mutual-tls',
};
const POLICY_NAME: Record<number, string> = {
  [PolicyKind.POLICY_KIND_CP_QUORUM]: 'cp',
  [PolicyKind.POLICY_KIND_AP_ASYNC]: 'ap',
  [PolicyKind.POLICY_KIND_CAUSAL]: 'causal',
};

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

function ms(value: number): string {
  return value < 0 ? '-' : value.toFixed(1);
}

/** The human-readable form of a Status response. */
export function formatStatus(s: Status): string {
  const members = table([
    ['NODE', 'ADDRESS', 'STATE', 'PHI', 'LAST HEARD MS', 'RTT MS', 'OFFSET MS', 'INCARNATION', 'VERIFIED IDENTITY'],
    ...s.members.map((m) => [
      m.nodeId + (m.self ? ' (self)' : ''),
      m.address || '-',
      (STATE_NAME[m.state] ?? 'UNKNOWN') + (m.clockOffsetExceeded ? ' (clock!)' : ''),
      m.phi.toFixed(2),
      ms(m.lastHeardMs),
      ms(m.rttMs),
      m.clockOffsetMs.toFixed(1),
      String(m.incarnation),
      m.verifiedIdentity || '-',
    ]),
  ]);
  const keyspaces = table([
    ['KEYSPACE', 'POLICY', 'ALIVE', 'QUORUM', 'REACHABLE'],
    ...s.keyspaces.map((k) => [
      k.name,
      POLICY_NAME[k.policy] ?? 'unknown',
      `${k.aliveReplicas}/${k.replicaCount}`,
      String(k.quorumSize),
      k.quorumReachable ? 'yes' : 'NO',
    ]),
  ]);
  const health = s.notServingReasons.length === 0 ? 'SERVING' : `NOT_SERVING: ${s.notServingReasons.join('; ')}`;
  const transport = TRANSPORT_NAME[s.transportSecurity] ?? 'unknown';
  const warning = s.transportSecurity === TransportSecurity.TRANSPORT_SECURITY_PLAINTEXT ? ' (anyone who reaches the port can read, write and act as a peer)' : '';
  return `node ${s.nodeId} of cluster ${s.clusterId} (incarnation ${s.incarnation}, replikit ${s.version})\nhealth ${health}\ntransport ${transport}${warning}\n\n${members}\n\n${keyspaces}`;
}

export const statusCommand: Command = {
  summary: "show a node's view of the cluster",
  usage: `usage: replikit status --target HOST:PORT [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}`,
  async run(argv) {
    const args = parseArgs(argv, CLIENT_FLAGS);
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const settings = clientSettings(args);
    const client = new ClusterServiceClient(settings.target, settings.credentials);
    try {
      const res = await unary(client.status.bind(client), {}, settings.timeoutMs);
      process.stdout.write(settings.json ? `${JSON.stringify(StatusResponse.toJSON(res))}\n` : `${formatStatus(res)}\n`);
      return 0;
    } catch (err: unknown) {
      return reportCallError('status', err);
    } finally {
      client.close();
    }
  },
};
