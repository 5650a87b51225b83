import type { ElectionChange, RemoteLeadership } from '../../client/coordination.js';
import type { ReplikitClient } from '../../client/replikit-client.js';
import type { KeptLease } from '../../coordination/keep-alive.js';
import { parseArgs, UsageError } from '../args.js';
import { ENDPOINT_FLAGS, endpointSettings, ENDPOINTS_USAGE, TLS_CLIENT_USAGE } from '../client.js';
import type { Command } from '../main.js';
import { CLI_RENEWALS_PER_TTL, connect, Interrupts, nameArg, ttlArg } from './coordination-common.js';
import { positiveIntFlag, reportClientError, writeOut } from './watch.js';

const SPEC = { ...ENDPOINT_FLAGS, keyspace: {}, 'ttl-ms': {}, observe: { boolean: true } } as const;

/** The TTL of the lease `elect` campaigns with when --ttl-ms is not given. */
export const DEFAULT_ELECT_TTL_MS = 10_000;

export const electCommand: Command = {
  summary: 'campaign in an election and lead until SIGINT/SIGTERM, or --observe its leader',
  usage: [
    `usage: replikit elect ${ENDPOINTS_USAGE} [--keyspace K] [--ttl-ms N] [--timeout-ms N] [--json] ${TLS_CLIENT_USAGE} NAME VALUE`,
    `       replikit elect --observe ${ENDPOINTS_USAGE} [--keyspace K] [--json] ${TLS_CLIENT_USAGE} NAME`,
    `  Campaigns in election NAME with VALUE, holding a lease of --ttl-ms (default ${DEFAULT_ELECT_TTL_MS}) kept alive, and prints`,
    '  `leading NAME as VALUE (revision R)` once it leads (R grows with every new leader: a fencing token). Leads until',
    '  SIGINT/SIGTERM, then resigns and exits 0; exits 1 if its lease is lost (no longer leading), or when it did not',
    '  lead within --timeout-ms.',
    '  --observe: prints the leader now and at every change, `VALUE (revision R)` or `(none)`, until SIGINT/SIGTERM.',
  ].join('\n'),
  async run(argv) {
    const args = parseArgs(argv, SPEC);
    const observing = args.switches.has('observe');
    if (observing) {
      if (args.positionals.length !== 1) throw new UsageError(`elect --observe takes NAME; got ${args.positionals.length} argument(s)`);
      for (const flag of ['ttl-ms', 'timeout-ms'] as const) if (args.flags.has(flag)) throw new UsageError(`--${flag} is not used with --observe`);
    } else if (args.positionals.length !== 2) {
      throw new UsageError(`elect takes NAME VALUE (or --observe NAME); got ${args.positionals.length} argument(s)`);
    }
    const name = nameArg('NAME', args.positionals[0]!);
    const ttlMs = args.flags.has('ttl-ms') ? ttlArg('--ttl-ms', args.flags.get('ttl-ms')!) : DEFAULT_ELECT_TTL_MS;
    const waitMs = args.flags.has('timeout-ms') ? positiveIntFlag('timeout-ms', args.flags.get('timeout-ms')!) : undefined;
    const settings = endpointSettings(args, { waitFlag: true });
    const keyspace = args.flags.get('keyspace') ?? 'default';

    const interrupts = new Interrupts();
    let client: ReplikitClient | undefined;
    try {
      client = await connect(settings);
      if (observing) return await observe(client, name, keyspace, settings.json, interrupts);
      return await lead(client, name, args.positionals[1]!, keyspace, ttlMs, waitMs, settings.json, interrupts);
    } catch (err: unknown) {
      if (interrupts.first !== undefined) return 0;
      return reportClientError('elect', err);
    } finally {
      interrupts.dispose();
      client?.close();
    }
  },
};

async function lead(client: ReplikitClient, name: string, value: string, keyspace: string, ttlMs: number, waitMs: number | undefined, json: boolean, interrupts: Interrupts): Promise<number> {
  const leases = client.leases;
  const sentAt = leases.scheduler.nowMs();
  const granted = await leases.grant(ttlMs, { keyspace });
  const kept: KeptLease = leases.keepAlive(granted.id, granted.ttlMs, { keyspace, grantedAtMs: sentAt, renewalsPerTtl: CLI_RENEWALS_PER_TTL });
  const quit = async (code: number) => {
    kept.stop();
    await leases.revoke(kept.id, { keyspace }).catch(() => {});
    return code;
  };
  const waiting = new AbortController();
  interrupts.signal.addEventListener('abort', () => waiting.abort(), { once: true });
  void kept.lost.then(() => waiting.abort());
  let leadership: RemoteLeadership;
  try {
    leadership = await client.election(name).campaign(value, { keyspace, lease: granted.id, ...(waitMs === undefined ? {} : { timeoutMs: waitMs }), signal: waiting.signal });
  } catch (err: unknown) {
    if (interrupts.first !== undefined) return quit(0);
    if (kept.lostReason !== undefined) {
      process.stderr.write(`replikit elect: lease ${granted.id} lost while campaigning in ${JSON.stringify(name)}: ${kept.lostReason.message}\n`);
      return quit(1);
    }
    await quit(1);
    return reportClientError('elect', err);
  }
  const { leader } = leadership;
  await writeOut(json ? `${JSON.stringify({ leading: name, value, revision: leader.revision, lease: leader.lease, key: leader.key.toString('utf8') })}\n` : `leading ${name} as ${value} (revision ${leader.revision})\n`);
  const outcome = await Promise.race([interrupts.next.then(() => 'interrupted' as const), kept.lost]);
  if (outcome !== 'interrupted') {
    process.stderr.write(`replikit elect: lease ${granted.id} lost: ${outcome.message}; no longer leading ${name}\n`);
    return quit(1);
  }
  kept.stop();
  try {
    await client.election(name).resign(leader, { keyspace });
  } catch (err: unknown) {
    process.stderr.write(`replikit elect: resigning from ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  return quit(0);
}

async function observe(client: ReplikitClient, name: string, keyspace: string, json: boolean, interrupts: Interrupts): Promise<number> {
  const line = (c: ElectionChange) => {
    const l = c.leader;
    if (json) {
      return `${JSON.stringify(l === undefined ? { leader: null, revision: c.revision } : { leader: l.value.toString('utf8'), key: l.key.toString('utf8'), revision: l.createRevision, modRevision: l.modRevision, lease: l.lease, at: c.revision })}\n`;
    }
    return l === undefined ? '(none)\n' : `${l.value.toString('utf8')} (revision ${l.createRevision})\n`;
  };
  for await (const change of client.election(name).observe(interrupts.signal, {
    keyspace,
    onResume: ({ from, to, error }) => process.stderr.write(`observation interrupted on ${from} (${error.message}); resuming on ${to}\n`),
  })) {
    await writeOut(line(change));
  }
  return 0;
}
