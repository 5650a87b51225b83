/**
 * `replikit lease`, `lock`, `elect` and `put --lease` against three real `replikit serve`
 * processes: what each prints and exits with, bad input refused before any call, and a leader
 * change seen by `elect --observe`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplikitClient } from '../../src/client/index.js';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BIN, BUILT, cli } from '../support/cli.js';

let cluster: LocalCluster;
let client: ReplikitClient;
let endpoints: string;
let target: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  if (!BUILT) return;
  cluster = await LocalCluster.create({ size: 3, memory: true });
  await cluster.startAll();
  endpoints = cluster.ids.map((id) => cluster.address(id)).join(',');
  target = `--target=${cluster.address('n1')}`;
  client = await ReplikitClient.connect({ endpoints: endpoints.split(',') });
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await client.keyspace('default').put('warm', 'up');
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  client?.close();
  await cluster?.stop();
});

/** A long-running `replikit ...` child: its stdout lines as they come, its stderr, its exit. */
function proc(args: readonly string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: string[] = [];
  let stderr = '';
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    const parts = out.split('\n');
    out = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exit,
    get stderr() {
      return stderr;
    },
    async until(done: () => boolean, what: string, ms = 20_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stdout ${JSON.stringify(lines)}, stderr ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

const entries = async (prefix: string) => (await client.keyspace('default').range(prefix, { prefix: true, countOnly: true })).count;

describe.skipIf(!BUILT)('replikit lease, lock and elect', () => {
  it('lease grant, put --lease, ttl --keys, list, revoke (deleting the key), and NOT_FOUND after', async () => {
    const grant = await cli(['lease', 'grant', '--endpoints', endpoints, '10000']);
    expect(grant.code, grant.stderr).toBe(0);
    expect(grant.stdout).toMatch(/^\d+\n$/);
    const id = grant.stdout.trim();

    expect(await cli(['put', `--target=${cluster.address('n2')}`, '--lease', id, 'leased/a', 'one'])).toMatchObject({ code: 0 });
    await client.keyspace('default').put('leased/b', 'two', { lease: Number(id) });

    const ttl = await cli(['lease', 'ttl', target, '--keys', id]);
    expect(ttl.code, ttl.stderr).toBe(0);
    expect(ttl.stdout).toMatch(new RegExp(`^lease ${id}: ttl 10000 ms, \\d+ ms remaining, 2 key\\(s\\)\nleased/a\nleased/b\n$`));
    const json = JSON.parse((await cli(['lease', 'ttl', target, '--json', '--keys', id])).stdout) as Record<string, unknown>;
    expect(json).toMatchObject({ id: Number(id), ttlMs: 10_000, keyCount: 2, keys: ['leased/a', 'leased/b'] });
    expect(json['remainingMs']).toBeGreaterThan(0);
    expect(json['remainingMs']).toBeLessThanOrEqual(10_000);
    const plain = JSON.parse((await cli(['lease', 'ttl', target, '--json', id])).stdout) as Record<string, unknown>;
    expect(plain['keys']).toBeUndefined();

    const list = await cli(['lease', 'list', '--endpoints', endpoints]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout.split('\n')).toContain(`${id} 10000`);
    const listJson = await cli(['lease', 'list', target, '--json']);
    expect(listJson.stdout.trim().split('\n').map((l) => JSON.parse(l))).toContainEqual({ id: Number(id), ttlMs: 10_000 });

    const revoke = await cli(['lease', 'revoke', `--target=${cluster.address('n3')}`, id]);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toMatch(new RegExp(`^OK revoked lease ${id}: 2 key\\(s\\) deleted \\(revision \\d+\\)\n$`));
    expect((await cli(['get', target, 'leased/a'])).code).toBe(3);
    expect((await client.keyspace('default').get('leased/b')).found).toBe(false);

    const [again, gone, keep, unknown] = await Promise.all([
      cli(['lease', 'revoke', target, id]),
      cli(['lease', 'ttl', target, id]),
      cli(['lease', 'keep-alive', target, id]),
      cli(['put', target, '--lease', '987654', 'k', 'v']),
    ]);
    for (const [r, command] of [[again, 'lease revoke'], [gone, 'lease ttl'], [keep, 'lease keep-alive']] as const) {
      expect(r.code, command).toBe(1);
      expect(r.stderr, command).toMatch(new RegExp(`^replikit ${command}: NOT_FOUND: lease ${id} does not exist`));
    }
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/NOT_FOUND/);
    // The node refuses a TTL under its minimum itself.
    const short = await cli(['lease', 'grant', target, '500']);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/^replikit lease grant: INVALID_ARGUMENT: ttl_ms is 500/);
  });

  it('lease keep-alive renews past the TTL, exits 0 on SIGINT, and 1 when the lease is revoked under it', async () => {
    const id = (await cli(['lease', 'grant', '--endpoints', endpoints, '2000'])).stdout.trim();
    await client.keyspace('default').put('kept', 'x', { lease: Number(id) });
    const keeper = proc(['lease', 'keep-alive', '--endpoints', endpoints, id]);
    await keeper.until(() => keeper.lines.length >= 1, 'the first renewal');
    await new Promise((resolve) => setTimeout(resolve, 2_600));
    expect((await client.keyspace('default').get('kept')).found, 'kept alive past its TTL').toBe(true);
    expect(keeper.lines.length).toBeGreaterThanOrEqual(5);
    expect(keeper.lines.every((l) => l === `lease ${id} kept alive: ttl 2000 ms`)).toBe(true);
    keeper.child.kill('SIGINT');
    expect(await keeper.exit).toBe(0);

    const second = proc(['lease', 'keep-alive', target, '--json', id]);
    await second.until(() => second.lines.length >= 1, 'the first renewal');
    expect(JSON.parse(second.lines[0]!)).toEqual({ id: Number(id), ttlMs: 2_000, renewed: true });
    expect((await cli(['lease', 'revoke', target, id])).code).toBe(0);
    expect(await second.exit).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^replikit lease keep-alive: lease ${id} lost: .*does not exist`));
    expect((await client.keyspace('default').get('kept')).found).toBe(false);
  });

  it('refuses bad input with exit status 2, naming the argument or flag, before any call', async () => {
    // An endpoint nothing listens on: a call would fail with exit status 1, not 2.
    const t = '--target=127.0.0.1:1';
    const cases: [string[], string][] = [
      [['lease', 'grant', t, '0'], 'TTL_MS must be between 1 and 3600000 ms'],
      [['lease', 'grant', t, '3600001'], 'TTL_MS must be between 1 and 3600000 ms'],
      [['lease', 'grant', t, 'ten'], 'TTL_MS must be a whole number of milliseconds, not "ten"'],
      [['lease', 'grant', t, '-5'], 'TTL_MS must be a whole number of milliseconds, not "-5"'],
      [['lease', 'grant', t], 'lease grant takes TTL_MS; got 0 argument(s)'],
      [['lease', 'keep-alive', t, 'abc'], 'ID must be a lease id (a positive whole number), not "abc"'],
      [['lease', 'revoke', t, '0'], 'ID must be a lease id'],
      [['lease', 'ttl', t, '1.5'], 'ID must be a lease id'],
      [['lease', 'list', t, '7'], 'lease list takes no argument; got 1 argument(s)'],
      [['lease', 'revoke', t, '--keys', '7'], '--keys is a flag of lease ttl'],
      [['lease', 'renew', t, '7'], 'unknown lease subcommand "renew"'],
      [['lease'], 'lease needs a subcommand'],
      [['lease', 'grant', '1000'], '--target HOST:PORT or --endpoints HOST:PORT,... is required'],
      [['lease', 'grant', t, '--endpoints', '127.0.0.1:2', '1000'], 'give --target or --endpoints, not both'],
      [['lease', 'grant', '--endpoints', '127.0.0.1:2,nonsense', '1000'], '--endpoints must be HOST:PORT'],
      [['lock', t, '--ttl-ms', '0', 'job', '--', 'true'], '--ttl-ms must be between 1 and 3600000 ms'],
      [['lock', t, '--ttl-ms', '3600001', 'job', '--', 'true'], '--ttl-ms must be between 1 and 3600000 ms'],
      [['lock', t, '--ttl-ms', 'soon', 'job', '--', 'true'], '--ttl-ms must be a whole number of milliseconds, not "soon"'],
      [['lock', t, '--timeout-ms', '0', 'job', '--', 'true'], '--timeout-ms must be a positive integer, not "0"'],
      [['lock', t, 'job', 'true'], 'lock needs `-- COMMAND [ARGS...]` after NAME'],
      [['lock', t, 'job', '--'], 'COMMAND is missing after --'],
      [['lock', t, '--', 'true'], 'lock takes NAME before --; got 0 argument(s)'],
      [['lock', t, '/job', '--', 'true'], 'NAME "/job" starts or ends with "/"'],
      [['elect', t, '--ttl-ms', '0', 'e', 'v'], '--ttl-ms must be between 1 and 3600000 ms'],
      [['elect', t, '--ttl-ms', 'x', 'e', 'v'], '--ttl-ms must be a whole number of milliseconds, not "x"'],
      [['elect', t, 'e'], 'elect takes NAME VALUE (or --observe NAME); got 1 argument(s)'],
      [['elect', t, '--observe', 'e', 'v'], 'elect --observe takes NAME; got 2 argument(s)'],
      [['elect', t, '--observe', '--ttl-ms', '1000', 'e'], '--ttl-ms is not used with --observe'],
      [['put', t, '--lease', 'abc', 'k', 'v'], '--lease must be a positive integer, not "abc"'],
      [['get', t, '--lease', '5', 'k'], '--lease is a flag of put'],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    results.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(message);
    });
    const help = await cli(['--help']);
    for (const name of ['lease', 'lock', 'elect']) expect(help.stdout).toMatch(new RegExp(`\n {2}${name}\n`));
    expect((await cli(['lock', '--help'])).stdout).toContain('NAME -- COMMAND [ARGS...]');
    // --help after -- belongs to COMMAND, not to replikit: this one reaches the (unreachable) target.
    expect((await cli(['lock', t, '--timeout-ms', '500', 'job', '--', 'ls', '--help'])).code).toBe(1);
  });

  it('lock runs COMMAND with the fencing token, passes its exit status on, and releases the lock', async () => {
    const run = await cli(['lock', '--endpoints', endpoints, 'cli-job', '--', 'sh', '-c', 'echo "$REPLIKIT_FENCING_TOKEN $REPLIKIT_LOCK_KEY $REPLIKIT_LEASE_ID"']);
    expect(run.code, run.stderr).toBe(0);
    const [token, key, lease] = run.stdout.trim().split(' ');
    expect(Number(token)).toBeGreaterThan(0);
    expect(key).toBe(`_lock/cli-job/${Number(lease).toString(16).padStart(16, '0')}`);
    // Released, and its lease revoked.
    expect(await entries('_lock/cli-job/')).toBe(0);
    expect((await cli(['lease', 'ttl', target, lease!])).code).toBe(1);

    const second = await cli(['lock', target, 'cli-job', '--', 'sh', '-c', 'echo $REPLIKIT_FENCING_TOKEN; exit 7']);
    expect(second.code).toBe(7);
    expect(Number(second.stdout.trim())).toBeGreaterThan(Number(token));
    expect((await cli(['lock', target, 'cli-job', '--', '/nonexistent/command'])).code).toBe(127);
    expect(await entries('_lock/cli-job/')).toBe(0);
  });

  it('lock waits for the holder, gives up after --timeout-ms, forwards SIGTERM, and stops COMMAND when the lease is lost', async () => {
    const holder = proc(['lock', target, '--ttl-ms', '3000', 'busy', '--', 'sh', '-c', 'echo "holding $REPLIKIT_LEASE_ID"; exec sleep 30']);
    await holder.until(() => holder.lines.length >= 1, 'the holder to run');
    const lease = holder.lines[0]!.split(' ')[1]!;

    const started = Date.now();
    const waiter = await cli(['lock', '--endpoints', endpoints, '--timeout-ms', '800', 'busy', '--', 'echo', 'never']);
    expect(waiter.code).toBe(1);
    expect(waiter.stdout).toBe('');
    expect(waiter.stderr).toMatch(/^replikit lock: DEADLINE_EXCEEDED: lock "busy" was not acquired within/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
    expect(await entries('_lock/busy/'), 'the waiter withdrew').toBe(1);

    // SIGTERM goes to COMMAND (sleep dies of it: 128 + 15); the lock is released.
    holder.child.kill('SIGTERM');
    expect(await holder.exit).toBe(143);
    expect(await entries('_lock/busy/')).toBe(0);
    expect((await cli(['lease', 'ttl', target, lease])).code).toBe(1);

    // The lease revoked under a running COMMAND: COMMAND is stopped, exit 1.
    const victim = proc(['lock', target, '--ttl-ms', '3000', 'busy', '--', 'sh', '-c', 'echo "holding $REPLIKIT_LEASE_ID"; exec sleep 30']);
    await victim.until(() => victim.lines.length >= 1, 'the second holder to run');
    const victimLease = victim.lines[0]!.split(' ')[1]!;
    const revokedAt = Date.now();
    expect((await cli(['lease', 'revoke', target, victimLease])).code).toBe(0);
    expect(await victim.exit).toBe(1);
    expect(Date.now() - revokedAt).toBeLessThan(3_000);
    expect(victim.stderr).toMatch(new RegExp(`replikit lock: lease ${victimLease} was lost .*; stopping COMMAND \\(SIGTERM\\)`));
  });

  it('elect leads until interrupted; elect --observe sees each leader and (none)', async () => {
    const observer = proc(['elect', '--observe', '--endpoints', endpoints, 'primary']);
    await observer.until(() => observer.lines.length >= 1, 'the first observation');
    expect(observer.lines[0]).toBe('(none)');

    const one = proc(['elect', `--target=${cluster.address('n2')}`, '--ttl-ms', '3000', 'primary', 'alpha']);
    await one.until(() => one.lines.length >= 1, 'alpha to lead');
    const alphaRevision = Number(/^leading primary as alpha \(revision (\d+)\)$/.exec(one.lines[0]!)?.[1]);
    expect(alphaRevision).toBeGreaterThan(0);
    const two = proc(['elect', '--endpoints', endpoints, '--ttl-ms', '3000', '--json', 'primary', 'beta']);
    await observer.until(() => observer.lines.length >= 2, 'alpha observed');
    expect(observer.lines[1]).toBe(`alpha (revision ${alphaRevision})`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(two.lines, 'beta waits while alpha leads').toEqual([]);

    // The leader is interrupted: it resigns, beta leads, the observer sees the change.
    one.child.kill('SIGINT');
    expect(await one.exit).toBe(0);
    await two.until(() => two.lines.length >= 1, 'beta to lead');
    const beta = JSON.parse(two.lines[0]!) as { leading: string; value: string; revision: number; lease: number };
    expect(beta).toMatchObject({ leading: 'primary', value: 'beta' });
    expect(beta.revision).toBeGreaterThan(alphaRevision);
    await observer.until(() => observer.lines.length >= 3, 'beta observed');
    expect(observer.lines[2]).toBe(`beta (revision ${beta.revision})`);

    // A leader whose lease is revoked under it exits 1: it no longer leads.
    expect((await cli(['lease', 'revoke', target, String(beta.lease)])).code).toBe(0);
    expect(await two.exit).toBe(1);
    expect(two.stderr).toMatch(new RegExp(`replikit elect: lease ${beta.lease} lost: .*; no longer leading primary`));
    await observer.until(() => observer.lines.length >= 4, '(none) observed');
    expect(observer.lines[3]).toBe('(none)');

    observer.child.kill('SIGTERM');
    expect(await observer.exit).toBe(0);
    expect(await entries('_election/primary/')).toBe(0);
  });
});
