import type { ReplikitClient } from '../../client/replikit-client.js';
import { parseArgs, UsageError } from '../args.js';
import { ENDPOINT_FLAGS, endpointSettings, ENDPOINTS_USAGE, TLS_CLIENT_USAGE } from '../client.js';
import type { Command } from '../main.js';
import { CLI_RENEWALS_PER_TTL, connect, Interrupts, leaseIdArg, ttlArg } from './coordination-common.js';
import { reportClientError, writeOut } from './watch.js';

const SPEC = { ...ENDPOINT_FLAGS, keyspace: {}, keys: { boolean: true } } as const;
const COMMON = `${ENDPOINTS_USAGE} [--keyspace K] [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}`;

const USAGE = [
  `usage: replikit lease grant ${COMMON} TTL_MS`,
  `       replikit lease keep-alive ${COMMON} ID`,
  `       replikit lease revoke ${COMMON} ID`,
  `       replikit lease ttl ${COMMON} [--keys] ID`,
  `       replikit lease list ${COMMON}`,
  '  grant: grants a lease of TTL_MS milliseconds (1000 to 3600000 by default) and prints its id.',
  '  keep-alive: renews lease ID ten times per TTL, printing each renewal, until SIGINT/SIGTERM',
  '    (exit 0; the lease then expires after its TTL unless revoked); exits 1 if the lease is lost',
  '    (expired, revoked, or not confirmed within its TTL of the last renewal sent: the nodes unreachable).',
  '  revoke: ends lease ID now, deleting the keys attached to it (`replikit put --lease ID`).',
  '  ttl: the TTL of lease ID, the time it has left and how many keys it holds (--keys: which).',
  '  list: every lease of the keyspace, one `ID TTL_MS` line each.',
  '  A lease that does not exist (expired or revoked) is NOT_FOUND: exit 1.',
].join('\n');

type Sub = 'grant' | 'keep-alive' | 'revoke' | 'ttl' | 'list';
const SUBS: readonly Sub[] = ['grant', 'keep-alive', 'revoke', 'ttl', 'list'];

export const leaseCommand: Command = {
  summary: 'grant, keep alive, revoke and inspect leases (keys put with --lease end with them)',
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === undefined) throw new UsageError(`lease needs a subcommand: ${SUBS.join(', ')}`);
    if (!(SUBS as readonly string[]).includes(sub)) throw new UsageError(`unknown lease subcommand ${JSON.stringify(sub)} (known: ${SUBS.join(', ')})`);
    const args = parseArgs(rest, SPEC);
    const want = sub === 'list' ? 0 : 1;
    const what = sub === 'grant' ? 'TTL_MS' : 'ID';
    if (args.positionals.length !== want) throw new UsageError(`lease ${sub} takes ${want === 0 ? 'no argument' : what}; got ${args.positionals.length} argument(s)`);
    if (args.switches.has('keys') && sub !== 'ttl') throw new UsageError('--keys is a flag of lease ttl');
    // Arguments first, so that a bad one is refused before any call.
    const ttl = sub === 'grant' ? ttlArg('TTL_MS', args.positionals[0]!) : 0;
    const id = sub !== 'grant' && sub !== 'list' ? leaseIdArg('ID', args.positionals[0]!) : 0;
    const settings = endpointSettings(args);
    const keyspace = args.flags.get('keyspace') ?? 'default';
    const json = settings.json;
    let client: ReplikitClient | undefined;
    try {
      client = await connect(settings);
      const leases = client.leases;
      switch (sub as Sub) {
        case 'grant': {
          const g = await leases.grant(ttl, { keyspace });
          await writeOut(json ? `${JSON.stringify({ id: g.id, ttlMs: g.ttlMs, revision: g.revision })}\n` : `${g.id}\n`);
          return 0;
        }
        case 'revoke': {
          const r = await leases.revoke(id, { keyspace });
          await writeOut(json ? `${JSON.stringify({ id, revision: r.revision, keysDeleted: r.keysDeleted })}\n` : `OK revoked lease ${id}: ${r.keysDeleted} key(s) deleted (revision ${r.revision})\n`);
          return 0;
        }
        case 'ttl': {
          const keys = args.switches.has('keys');
          const info = await leases.timeToLive(id, { keyspace, keys });
          if (json) {
            await writeOut(`${JSON.stringify({ id: info.id, ttlMs: info.ttlMs, remainingMs: info.remainingMs, keyCount: info.keyCount, ...(keys ? { keys: info.keys.map((k) => k.toString('utf8')) } : {}) })}\n`);
          } else {
            await writeOut(`lease ${info.id}: ttl ${info.ttlMs} ms, ${info.remainingMs} ms remaining, ${info.keyCount} key(s)\n`);
            for (const k of info.keys) await writeOut(`${k.toString('utf8')}\n`);
          }
          return 0;
        }
        case 'list': {
          for await (const l of leases.listAll({ keyspace })) await writeOut(json ? `${JSON.stringify(l)}\n` : `${l.id} ${l.ttlMs}\n`);
          return 0;
        }
        case 'keep-alive':
          return await keepAlive(client, id, keyspace, json);
      }
    } catch (err: unknown) {
      return reportClientError(`lease ${sub}`, err);
    } finally {
      client?.close();
    }
  },
};

/** `lease keep-alive ID`: renews until interrupted (0) or the lease is lost (1). */
async function keepAlive(client: ReplikitClient, id: number, keyspace: string, json: boolean): Promise<number> {
  const interrupts = new Interrupts();
  const leases = client.leases;
  const print = (ttlMs: number) => {
    void writeOut(json ? `${JSON.stringify({ id, ttlMs, renewed: true })}\n` : `lease ${id} kept alive: ttl ${ttlMs} ms\n`);
  };
  try {
    // The first renewal says whether the lease exists and what its TTL is; its send time starts
    // the holder's view of how long the lease is valid.
    const sentAt = leases.scheduler.nowMs();
    const ttlMs = await leases.renew(id, { keyspace });
    print(ttlMs);
    if (interrupts.first !== undefined) return 0;
    const kept = leases.keepAlive(id, ttlMs, { keyspace, grantedAtMs: sentAt, onRenewed: print, renewalsPerTtl: CLI_RENEWALS_PER_TTL });
    const outcome = await Promise.race([interrupts.next.then(() => 'interrupted' as const), kept.lost]);
    if (outcome === 'interrupted') {
      kept.stop();
      return 0;
    }
    process.stderr.write(`replikit lease keep-alive: lease ${id} lost: ${outcome.message}\n`);
    return 1;
  } finally {
    interrupts.dispose();
  }
}
