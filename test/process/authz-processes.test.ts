/**
 * Client authorization between real processes: three `replikit serve` nodes with mutual TLS
 * (SPIFFE node certificates) and `--authz FILE`, called with the CLI and client certificates.
 * A read-only client is refused what it may not do; SIGHUP puts an edited file in force without a
 * restart; an unparsable file is refused on SIGHUP (old rules kept, the log says why) and at
 * start (exit 2 naming the line).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT, cli, type CliResult } from '../support/cli.js';
import { scrape } from '../support/ops.js';
import { makeSpiffePki, type CertFiles, type SpiffePki } from '../support/pki.js';

const CLUSTER = 'c1';
let dir: string;
let pki: SpiffePki;
let authzFile: string;
let cluster: LocalCluster | undefined;
const logs = new Map<string, string[]>();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(done: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

beforeAll(async () => {
  if (!BUILT) return;
  dir = mkdtempSync(join(tmpdir(), 'replikit-authz-proc-'));
  pki = await makeSpiffePki(dir, CLUSTER);
  authzFile = join(dir, 'authz.txt');
}, 30_000);

afterAll(async () => {
  await cluster?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function tlsFlags(files: CertFiles): string[] {
  return ['--tls-ca', pki.caFile, '--tls-cert', files.cert, '--tls-key', files.key];
}

describe.skipIf(!BUILT)('--authz between real serve processes', () => {
  it('refuses at start, exit 2: a file with an unknown permission (naming the line), and --authz without mutual TLS', async () => {
    const bad = join(dir, 'bad-authz.txt');
    writeFileSync(bad, '# grants\nallow client:reader read alpha\nallow client:writer read,delete alpha\n');
    const own = await pki.node('n1');
    const [port] = await freePorts(1);
    const base = ['serve', '--id', 'n1', '--listen', `127.0.0.1:${port}`, '--memory', '--cluster-id', CLUSTER];
    const refused: CliResult = await cli([...base, ...tlsFlags(own), '--authz', bad]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`--authz: ${bad} line 3: unknown permission "delete" (read, write, admin)`);
    writeFileSync(authzFile, 'allow client:reader read alpha\n');
    const noMutualTls = await cli([...base, '--tls-cert', own.cert, '--tls-key', own.key, '--authz', authzFile]);
    expect(noMutualTls.code).toBe(2);
    expect(noMutualTls.stderr).toContain('--authz needs mutual TLS');
  }, 30_000);

  it('enforces the file, reloads it on SIGHUP, keeps the old rules when the new file does not parse, and counts refusals', async () => {
    writeFileSync(authzFile, ['# the test cluster', 'allow client:reader read alpha', 'allow client:admin read,write *', 'allow client:ops admin *', ''].join('\n'));
    cluster = await LocalCluster.create({
      size: 3,
      memory: true,
      serveArgs: ['--cluster-id', CLUSTER, '--keyspace', 'alpha=cp', '--keyspace', 'beta=cp', '--authz', authzFile],
      onLog: (id, line) => {
        let list = logs.get(id);
        if (list === undefined) logs.set(id, (list = []));
        list.push(line);
      },
    });
    const c = cluster;
    const [metricsPort] = await freePorts(1);
    const metrics = `127.0.0.1:${metricsPort}`;
    const nodeFlags = async (id: string) => tlsFlags(await pki.node(id));
    const ready = await Promise.all([
      c.start('n1', [...(await nodeFlags('n1')), '--metrics-listen', metrics]),
      c.start('n2', await nodeFlags('n2')),
      c.start('n3', await nodeFlags('n3')),
    ]);
    expect(ready[0]).toContain('mutual tls');
    expect(logs.get('n1')!.join('\n')).toContain(`client authorization: 3 grants from ${authzFile}`);
    const n1 = c.address('n1');
    const admin = tlsFlags(await pki.client('admin'));
    const reader = tlsFlags(await pki.client('reader'));
    const as = (flags: string[], ...args: string[]) => cli([args[0]!, '--target', n1, ...flags, ...args.slice(1)]);

    // The admin writes (retrying while the keyspaces elect their leaders).
    await until(async () => (await as(admin, 'put', '--keyspace', 'alpha', 'k', 'v1')).code === 0, 'the admin writes alpha/k', 20_000);
    expect((await as(admin, 'put', '--keyspace', 'beta', 'k', 'b1')).code).toBe(0);

    // The reader reads alpha...
    const read = await as(reader, 'get', '--keyspace', 'alpha', 'k');
    expect(read.stderr).toBe('');
    expect(read.stdout.trim()).toBe('v1');
    // ...and is refused a write to alpha and any access to beta, naming identity, keyspace and permission, never the value.
    const write = await as(reader, 'put', '--keyspace', 'alpha', 'k', 'SECRET-NEW-VALUE');
    expect(write.code).toBe(1);
    expect(write.stderr).toContain(`PERMISSION_DENIED: client reader (spiffe://${CLUSTER}/client/reader) may not write keyspace "alpha": no grant in ${authzFile} gives it write there`);
    expect(write.stderr).not.toContain('SECRET-NEW-VALUE');
    const readB = await as(reader, 'get', '--keyspace', 'beta', 'k');
    expect(readB.code).toBe(1);
    expect(readB.stderr).toContain('PERMISSION_DENIED: client reader (spiffe://c1/client/reader) may not read keyspace "beta"');
    const writeB = await as(reader, 'put', '--keyspace', 'beta', 'k', 'SECRET-B');
    expect(writeB.stderr).toContain('may not write keyspace "beta"');
    // Not written: read back as the admin, through another node.
    const back = await cli(['get', '--target', c.address('n2'), ...admin, '--keyspace', 'alpha', 'k']);
    expect(back.stdout.trim()).toBe('v1');
    expect((await cli(['get', '--target', c.address('n3'), ...admin, '--keyspace', 'beta', 'k'])).stdout.trim()).toBe('b1');
    // A node certificate of this cluster works as a client certificate for the CLI, with every permission.
    const asNode = await nodeFlags('n3');
    expect((await cli(['get', '--target', n1, ...asNode, '--keyspace', 'beta', 'k'])).stdout.trim()).toBe('b1');
    const nodeStatus = await cli(['status', '--target', n1, ...asNode]);
    expect(nodeStatus.code, nodeStatus.stderr).toBe(0);
    // The refusals are logged at warn with identity, method, keyspace and permission, and never the value.
    const refusalLines = () => logs.get('n1')!.filter((l) => l.includes('refused /replikit.v1.KvService/'));
    await until(() => refusalLines().length >= 3, 'n1 logs the refusals');
    expect(refusalLines()[0]).toMatch(/"level":"warn"/);
    expect(refusalLines().join('\n')).toMatch(/"identity":"client reader \(spiffe:\/\/c1\/client\/reader\)".*"method":"\/replikit\.v1\.KvService\/Put".*"keyspace":"alpha".*"permission":"write"/);
    expect(logs.get('n1')!.join('\n')).not.toContain('SECRET');

    // Edit the file, SIGHUP every node: the new grant holds without a restart.
    const pid = c.pid('n1');
    writeFileSync(authzFile, ['allow client:reader read,write alpha', 'allow client:reader read beta', 'allow client:admin read,write *', 'allow client:ops admin *', ''].join('\n'));
    for (const id of c.ids) await c.kill(id, 'SIGHUP');
    for (const id of c.ids) await until(() => logs.get(id)!.some((l) => l.includes(`reloaded the authorization rules from ${authzFile}: 4 grants in force`)), `${id} reloads`);
    expect(c.pid('n1')).toBe(pid);
    expect(c.isRunning('n1')).toBe(true);
    const write2 = await as(reader, 'put', '--keyspace', 'alpha', 'k', 'v2');
    expect(write2.stderr).toBe('');
    expect(write2.code).toBe(0);
    expect((await as(reader, 'get', '--keyspace', 'beta', 'k')).stdout.trim()).toBe('b1');
    expect((await as(reader, 'put', '--keyspace', 'beta', 'k', 'x')).stderr).toContain('may not write keyspace "beta"');

    // An unparsable file: SIGHUP keeps the rules in force, and the log says why (file and line).
    writeFileSync(authzFile, ['allow client:reader read alpha', 'allow client:reader delete beta', ''].join('\n'));
    await c.kill('n1', 'SIGHUP');
    // JSON log lines: the quotes inside the message are escaped.
    const why = JSON.stringify(`${authzFile} line 2: unknown permission "delete" (read, write, admin)`).slice(1, -1);
    await until(() => logs.get('n1')!.some((l) => l.includes(why)), 'n1 logs the refused reload');
    const errorLine = logs.get('n1')!.find((l) => l.includes(why))!;
    expect(errorLine).toMatch(/"level":"error"/);
    expect(errorLine).toContain('kept the authorization rules in force (4 grants)');
    expect(c.isRunning('n1')).toBe(true);
    // Still the previous rules: the reader may write alpha (the broken file would not let it).
    expect((await as(reader, 'put', '--keyspace', 'alpha', 'k', 'v3')).code).toBe(0);
    expect((await as(reader, 'put', '--keyspace', 'beta', 'k', 'x')).stderr).toContain('PERMISSION_DENIED');

    // The metrics count the refusals and the reloads.
    const text = (await scrape(metrics)).body;
    const count = (name: string, label: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    expect(count('replikit_authz_refused_total', 'permission="write"')).toBe(4); // alpha, beta, then beta twice
    expect(count('replikit_authz_refused_total', 'permission="read"')).toBe(1);
    expect(count('replikit_authz_reloads_total', 'outcome="ok"')).toBe(1);
    expect(count('replikit_authz_reloads_total', 'outcome="error"')).toBe(1);
    expect(text).toMatch(/^replikit_authz_grants\{[^}]*\} 4$/m);
  }, 120_000);
});
