import { ClusterServiceClient, Membership, MemberRole } from '../../gen/replikit/v1/cluster_service.js';
import { parseArgs, UsageError } from '../args.js';
import { CLIENT_FLAGS, clientSettings, reportCallError, TLS_CLIENT_USAGE, unary } from '../client.js';
import type { Command } from '../main.js';

const USAGE = `usage: replikit member list --target HOST:PORT [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}
       replikit member add ID=HOST:PORT --target HOST:PORT [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}
       replikit member promote ID --target HOST:PORT [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}
       replikit member remove ID --target HOST:PORT [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}

The cluster's membership, as committed in its system keyspace's log, and changes to it, one at a
time, through any member (it forwards them to the leader of the membership):
  list      every member: id, address, voter or learner, and the membership's version
  add       adds a node as a learner: it receives everything and counts toward nothing until
            promoted; start it with \`serve --join\` (which can also add itself)
  promote   makes a learner a voter, once it has caught up (refused while it is behind)
  remove    removes a voter or a learner (refused when the voters left would have no live majority)
Prints the membership after the change. Exit status: 0 done, 1 refused or failed (the reason is
printed; nothing changed unless it says the outcome is unknown), 2 bad usage.`;

/** The human-readable form of a membership. */
export function formatMembership(m: Membership): string {
  const rows = [['NODE', 'ADDRESS', 'ROLE'], ...m.members.map((x) => [x.nodeId, x.address || '-', x.role === MemberRole.MEMBER_ROLE_VOTER ? 'voter' : 'learner'])];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const table = rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
  return `cluster ${m.clusterId}, membership version ${m.version}\n\n${table}`;
}

/** `ID=HOST:PORT`, checked before any call. */
export function parseMemberSpec(text: string): { id: string; address: string } {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`member add takes ID=HOST:PORT, not ${JSON.stringify(text)}`);
  const id = text.slice(0, eq);
  const address = text.slice(eq + 1);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new UsageError(`a member id is 1 to 64 characters of [A-Za-z0-9._-], not ${JSON.stringify(id)}`);
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(address);
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new UsageError(`a member's address is HOST:PORT, not ${JSON.stringify(address)}`);
  return { id, address };
}

export const memberCommand: Command = {
  summary: "list or change the cluster's members (add, promote, remove)",
  usage: USAGE,
  async run(argv) {
    const args = parseArgs(argv, CLIENT_FLAGS);
    const [action, subject, ...extra] = args.positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    if (action === undefined) throw new UsageError('member needs an action: list, add, promote or remove');
    const settings = clientSettings(args);
    const client = new ClusterServiceClient(settings.target, settings.credentials);
    let call: () => Promise<{ membership?: Membership }>;
    switch (action) {
      case 'list':
        if (subject !== undefined) throw new UsageError(`member list takes no argument, not ${JSON.stringify(subject)}`);
        call = () => unary(client.listMembers.bind(client), {}, settings.timeoutMs);
        break;
      case 'add': {
        if (subject === undefined) throw new UsageError('member add needs ID=HOST:PORT');
        const { id, address } = parseMemberSpec(subject);
        call = () => unary(client.addMember.bind(client), { nodeId: id, address, clusterId: '' }, settings.timeoutMs);
        break;
      }
      case 'promote':
      case 'remove': {
        if (subject === undefined) throw new UsageError(`member ${action} needs the member's id`);
        const method = action === 'promote' ? client.promoteMember.bind(client) : client.removeMember.bind(client);
        call = () => unary(method, { nodeId: subject }, settings.timeoutMs);
        break;
      }
      default:
        client.close();
        throw new UsageError(`unknown member action ${JSON.stringify(action)}: use list, add, promote or remove`);
    }
    try {
      const res = (await call()).membership ?? { clusterId: '', version: 0n, members: [] };
      process.stdout.write(settings.json ? `${JSON.stringify(Membership.toJSON(res))}\n` : `${formatMembership(res)}\n`);
      return 0;
    } catch (err: unknown) {
      return reportCallError(`member ${action}`, err);
    } finally {
      client.close();
    }
  },
};
