/**
 * `replikit certs init|node|client` through the built CLI: the files and their SANs, the refusals
 * (usage errors exit 2, an existing file or a missing CA exit 1), and the proof that the
 * certificates are right: three real `serve` processes with mutual TLS on them, and `put`/`get`
 * through the CLI with the client certificate.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, LocalCluster } from '../../src/cli/local-cluster.js';
import { BIN, BUILT, cli, type CliResult } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'replikit-certs-'));
const pki = join(dir, 'pki');
/** Usage errors come before any file is touched: this folder is never made. */
const nowhere = join(dir, 'never-made');
let cluster: LocalCluster | undefined;

const children: ChildProcess[] = [];

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const file = (name: string): string => join(pki, name);
const certOf = (name: string): X509Certificate => new X509Certificate(readFileSync(file(name)));
const modeOf = (name: string): number => statSync(file(name)).mode & 0o777;

describe('replikit certs: usage errors exit 2, before anything is written', () => {
  it.each([
    [['certs'], /certs needs an action: init, node or client/],
    [['certs', 'frob', '--dir', nowhere], /unknown certs action "frob"/],
    [['certs', 'init'], /--dir DIR is required/],
    [['certs', 'init', '--dir', nowhere, '--days', '0'], /--days must be between 1 and 3650, not 0/],
    [['certs', 'init', '--dir', nowhere, '--days', '3651'], /--days must be between 1 and 3650/],
    [['certs', 'init', '--dir', nowhere, '--days', 'ten'], /--days must be a whole number/],
    [['certs', 'init', '--dir', nowhere, '--id', 'n1'], /certs init takes no --id/],
    [['certs', 'node', '--dir', nowhere], /--id NODE ID is required/],
    [['certs', 'node', '--dir', nowhere, '--id', 'bad id'], /--id: a node id is 1 to 64 characters of \[A-Za-z0-9._-\], not "bad id"/],
    [['certs', 'node', '--dir', nowhere, '--id', 'n'.repeat(65)], /--id: a node id is 1 to 64 characters/],
    [['certs', 'node', '--dir', nowhere, '--id', 'n1', '--cluster-id', 'a/b'], /--cluster-id: a cluster id is 1 to 64 characters/],
    [['certs', 'node', '--dir', nowhere, '--id', 'n1', '--ip', '999.1.1.1'], /--ip: "999.1.1.1" is not an IPv4 or IPv6 address/],
    [['certs', 'node', '--dir', nowhere, '--id', 'n1', '--ip', 'localhost'], /--ip: "localhost" is not an IPv4 or IPv6 address/],
    [['certs', 'node', '--dir', nowhere, '--id', 'n1', '--dns', 'bad_name!'], /--dns: "bad_name!" is not a DNS name/],
    [['certs', 'node', '--dir', nowhere, '--id', 'n1', '--name', 'x'], /certs node takes no --name/],
    [['certs', 'client', '--dir', nowhere], /--name CLIENT NAME is required/],
    [['certs', 'client', '--dir', nowhere, '--name', 'a:b'], /--name: a client name is 1 to 64 characters/],
    [['certs', 'client', '--dir', nowhere, '--name', 'app', '--ip', '127.0.0.1'], /certs client takes no --ip/],
  ])('%j', async (args, message) => {
    if (!BUILT) return;
    const r = await cli(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});

describe.skipIf(!BUILT)('replikit certs, then 3 serve processes with mutual TLS on those files', () => {
  beforeAll(async () => {
    const init = await cli(['certs', 'init', '--dir', pki]);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain(`wrote ${file('ca.pem')}`);
    expect(init.stdout).toContain(`wrote ${file('ca.key')}`);
  });

  it('init writes a CA; node and client write certificates with the SPIFFE URI SANs, signed by it', async () => {
    expect(modeOf('ca.key')).toBe(0o600);
    const ca = certOf('ca.pem');
    expect(ca.ca).toBe(true);

    for (const id of ['n1', 'n2', 'n3']) {
      const r = await cli(['certs', 'node', '--dir', pki, '--id', id]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`wrote ${file(`node-${id}.pem`)}`);
      expect(r.stdout).toContain(`wrote ${file(`node-${id}.key`)}`);
      expect(r.stdout).toContain(`spiffe id: spiffe://replikit/node/${id}`);
      const cert = certOf(`node-${id}.pem`);
      const sans = cert.subjectAltName!.split(', ');
      expect(sans).toContain(`URI:spiffe://replikit/node/${id}`);
      expect(sans).toContain('DNS:localhost');
      expect(sans).toContain('IP Address:127.0.0.1');
      expect(sans.some((s) => /^IP Address:(::1|0:0:0:0:0:0:0:1)$/.test(s)), cert.subjectAltName).toBe(true);
      expect(sans.filter((s) => s.startsWith('URI:'))).toHaveLength(1);
      expect(cert.checkIssued(ca)).toBe(true);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.ca).toBe(false);
      expect(modeOf(`node-${id}.key`)).toBe(0o600);
    }

    const client = await cli(['certs', 'client', '--dir', pki, '--name', 'tester', '--days', '30']);
    expect(client.code, client.stderr).toBe(0);
    expect(client.stdout).toContain('spiffe id: spiffe://replikit/client/tester');
    const cc = certOf('client-tester.pem');
    expect(cc.subjectAltName).toBe('URI:spiffe://replikit/client/tester');
    expect(cc.verify(ca.publicKey)).toBe(true);
    const days = (Date.parse(cc.validTo) - Date.parse(cc.validFrom)) / 86_400_000;
    expect(days).toBeCloseTo(30, 1);
    expect(modeOf('client-tester.key')).toBe(0o600);

    // Other names and another cluster id, for a node behind a load balancer.
    const other = await cli(['certs', 'node', '--dir', pki, '--id', 'x1', '--cluster-id', 'blue', '--dns', 'x1.replikit.svc', '--ip', '10.1.2.3', '--ip', 'fd00::7']);
    expect(other.code, other.stderr).toBe(0);
    const x1 = certOf('node-x1.pem');
    expect(x1.subjectAltName).toMatch(/^URI:spiffe:\/\/blue\/node\/x1, DNS:x1\.replikit\.svc, IP Address:10\.1\.2\.3, IP Address:FD00:0:0:0:0:0:0:7$/i);
  });

  it('refuses to overwrite without --force (exit 1 naming the file), overwrites with it, and needs the CA', async () => {
    const before = readFileSync(file('node-n1.pem'), 'utf8');
    const again = await cli(['certs', 'node', '--dir', pki, '--id', 'n1']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`${file('node-n1.pem')} exists; pass --force to overwrite it`);
    expect(readFileSync(file('node-n1.pem'), 'utf8')).toBe(before);
    const ca = readFileSync(file('ca.pem'), 'utf8');
    const init = await cli(['certs', 'init', '--dir', pki]);
    expect(init.code).toBe(1);
    expect(init.stderr).toContain(`${file('ca.pem')} exists; pass --force`);
    expect(readFileSync(file('ca.pem'), 'utf8')).toBe(ca);

    const forced = await cli(['certs', 'client', '--dir', pki, '--name', 'spare']);
    expect(forced.code, forced.stderr).toBe(0);
    const spare = readFileSync(file('client-spare.pem'), 'utf8');
    const refused = await cli(['certs', 'client', '--dir', pki, '--name', 'spare']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('client-spare.pem exists');
    const overwritten = await cli(['certs', 'client', '--dir', pki, '--name', 'spare', '--force']);
    expect(overwritten.code, overwritten.stderr).toBe(0);
    expect(readFileSync(file('client-spare.pem'), 'utf8')).not.toBe(spare);
    expect(modeOf('client-spare.key')).toBe(0o600);

    const empty = join(dir, 'no-ca');
    for (const args of [['node', '--id', 'n1'], ['client', '--name', 'app']]) {
      const r = await cli(['certs', ...args, '--dir', empty]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no CA: .*ca\.pem does not exist; run `replikit certs init --dir .*no-ca` first/);
    }
  });

  it('three serve processes run mutual TLS on the node certificates, and the CLI puts and gets with the client certificate', async () => {
    const logs: string[] = [];
    cluster = await LocalCluster.create({ size: 3, memory: true, serveArgs: ['--heartbeat-interval-ms', '100'], onLog: (id, line) => logs.push(`${id} ${line}`) });
    const c = cluster;
    const ready = await Promise.all(
      c.ids.map((id) => c.start(id, ['--tls-cert', file(`node-${id}.pem`), '--tls-key', file(`node-${id}.key`), '--tls-ca', file('ca.pem')])),
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${logs.slice(-20).join('\n')}`);
    });
    for (const line of ready) expect(line).toMatch(/mutual tls/);

    const tls = ['--tls-ca', file('ca.pem'), '--tls-cert', file('client-tester.pem'), '--tls-key', file('client-tester.key')];
    const put = await retryUnavailable(() => cli(['put', '--target', c.address('n1'), ...tls, 'greeting', 'hello over mTLS']));
    expect(put.code, put.stderr).toBe(0);
    const get = await retryUnavailable(() => cli(['get', '--target', c.address('n2'), ...tls, 'greeting']));
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout.trim()).toBe('hello over mTLS');
    const get3 = await retryUnavailable(() => cli(['get', '--target', c.address('n3'), ...tls, '--consistency', 'serializable', 'greeting']));
    expect(get3.code, get3.stderr).toBe(0);

    // Without the client certificate, or in plaintext, the handshake fails: nothing is served.
    const noCert = await cli(['get', '--target', c.address('n1'), '--tls-ca', file('ca.pem'), '--timeout-ms', '2000', 'greeting']);
    expect(noCert.code).toBe(1);
    expect(noCert.stderr).toMatch(/UNAVAILABLE/);
    const plaintext = await cli(['get', '--target', c.address('n1'), '--timeout-ms', '2000', 'greeting']);
    expect(plaintext.code).toBe(1);
    expect(plaintext.stderr).toMatch(/UNAVAILABLE/);
  }, 90_000);
});

describe.skipIf(!BUILT)('docs/security.md', () => {
  it('the "Mutual TLS with replikit certs" commands work as written (on free ports, in a temporary folder)', async () => {
    const doc = readFileSync(new URL('../../docs/security.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Mutual TLS with `replikit certs`'));
    const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].slice(0, 2).map((m) => m[1]!);
    expect(blocks, 'two sh blocks in the section').toHaveLength(2);
    const cwd = join(dir, 'doc');
    mkdirSync(cwd);
    const ports = await freePorts(3);
    const lines = blocks
      .join('')
      .replace(/\\\n\s*/g, '')
      .split('\n')
      .map((l) => l.replace(/\s+#.*$/, '').replace(/700([123])/g, (_, n: string) => String(ports[Number(n) - 1])).trim())
      .filter((l) => l !== '');
    const run = (args: string[]): Promise<CliResult> =>
      new Promise((resolve) =>
        execFile(process.execPath, [BIN, ...args], { cwd, timeout: 30_000 }, (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
        ),
      );
    const outputs: string[] = [];
    const serves: Promise<void>[] = [];
    for (const line of lines) {
      expect(line.startsWith('node bin/replikit.js '), line).toBe(true);
      const args = line.replace(/ &$/, '').split(/\s+/).slice(2);
      if (args[0] === 'serve') {
        const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(child);
        let err = '';
        child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
        serves.push(
          new Promise<void>((resolve, reject) => {
            child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready on') && resolve());
            child.once('exit', (code) => reject(new Error(`${line} exited with ${code}: ${err}`)));
          }),
        );
        continue;
      }
      // The clients run once every node is up (as a person would wait for the ready lines).
      if (args[0] !== 'certs') await Promise.all(serves);
      const r = args[0] === 'certs' ? await run(args) : await retryUnavailable(() => run(args));
      expect(r.code, `${line}\n${r.stderr}`).toBe(0);
      outputs.push(r.stdout);
    }
    expect(serves).toHaveLength(3);
    expect(outputs.at(-1)!.trim()).toBe('hello');
    expect(statSync(join(cwd, 'pki/ca.key')).mode & 0o777).toBe(0o600);
  }, 90_000);
});

/** A CP keyspace may still be electing right after the ready lines: retry UNAVAILABLE for a few seconds. */
async function retryUnavailable(call: () => Promise<CliResult>): Promise<CliResult> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await call();
    if (r.code === 0 || !/UNAVAILABLE/.test(r.stderr) || Date.now() > deadline) return r;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
