/**
 * `replikit serve --peers-dns` as a real process against a real DNS server on loopback
 * (test/support/dns-server.ts): the members a node reports are the peers its DNS records name,
 * three nodes form a cluster from A records they wait for, and the flags' usage errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, BUILT, cli } from '../support/cli.js';
import { DnsTestServer } from '../support/dns-server.js';
import { freePorts } from '../support/free-ports.js';
import { status, waitFor } from '../support/status-client.js';

let dns: DnsTestServer;
const children: ChildProcess[] = [];
beforeAll(async () => {
  dns = await DnsTestServer.start();
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await dns?.close();
});

/** A `replikit serve` child: its stdout and stderr as they come, and its exit. */
function serve(args: readonly string[]) {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    exit,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
  };
}

async function until(done: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(!BUILT)('replikit serve --peers-dns', () => {
  it('takes its members from SRV records: the targets, itself left out', async () => {
    const [port] = (await freePorts(1)) as [number];
    dns.set('replikit.test', {
      srv: [
        { target: 'n3.replikit.test.', port: 7003 },
        { target: 'n1.replikit.test.', port },
        { target: 'n2.replikit.test.', port: 7002 },
      ],
    });
    const node = serve(['--id', 'n1', '--listen', `127.0.0.1:${port}`, '--memory', '--peers-dns', 'replikit.test', '--peers-dns-server', dns.address]);
    // The peers do not exist, so the node waits to form the cluster and prints no ready line; it
    // answers Status all the same.
    await waitFor(async () => (await status(`127.0.0.1:${port}`)).nodeId === 'n1', 20_000, `n1 answering Status (stderr: ${node.stderr})`);
    const s = await status(`127.0.0.1:${port}`);
    expect(s.members.map((m) => [m.nodeId, m.self ? 'self' : m.address])).toEqual([
      ['n1', 'self'],
      ['n2', 'n2.replikit.test:7002'],
      ['n3', 'n3.replikit.test:7003'],
    ]);
    expect(node.stderr).toContain('--peers-dns replikit.test: 2 peers: n2=n2.replikit.test:7002,n3=n3.replikit.test:7003');
    node.child.kill('SIGTERM');
    expect(await node.exit).toBe(0);
  });

  it('forms a cluster of three from A records, each node waiting until they name the other two', async () => {
    // Three loopback addresses, one port: A records carry no port, so every node listens on the same one.
    const [port] = (await freePorts(1)) as [number];
    const ips = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
    const ids = ips.map((ip) => `ip-${ip.replace(/\./g, '-')}`);
    dns.set('nodes.replikit.test', { a: [ips[0]!] }); // only the first node's record so far
    const nodes = ips.map((ip, i) =>
      serve([
        '--id', ids[i]!, '--listen', `${ip}:${port}`, '--memory',
        '--peers-dns', 'nodes.replikit.test', '--peers-dns-port', String(port), '--peers-dns-wait', '2', '--peers-dns-server', dns.address,
      ]),
    );
    await until(() => nodes.every((n) => n.stderr.includes('waiting for the DNS records of nodes.replikit.test')), 'every node waiting for its peers');
    dns.set('nodes.replikit.test', { a: [...ips].reverse() });
    await until(() => nodes.every((n) => n.stdout.includes('ready on')), 'every node ready', 30_000);
    for (const node of nodes) expect(node.stdout).toContain('2 peers');

    const result = await cli(['status', '--target', `127.0.0.2:${port}`, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const members = (JSON.parse(result.stdout) as { members: { nodeId: string; address?: string; state: string }[] }).members;
    expect(members.map((m) => m.nodeId).sort()).toEqual(ids);
    expect(members.find((m) => m.nodeId === ids[2])?.address).toBe(`127.0.0.3:${port}`);
    await waitFor(
      async () => (await status(`127.0.0.2:${port}`)).members.every((m) => m.state === 1 /* MEMBER_STATE_ALIVE */),
      10_000,
      'every member ALIVE in 127.0.0.2\'s view',
    );

    // Scaled up: a fourth node with the same flags finds a cluster that does not know it, and
    // joins it as a learner (instead of taking its empty store for a lost one); then it is promoted.
    const fourth = '127.0.0.4';
    const fourthId = `ip-${fourth.replace(/\./g, '-')}`;
    dns.set('nodes.replikit.test', { a: [...ips, fourth] });
    const added = serve([
      '--id', fourthId, '--listen', `${fourth}:${port}`, '--memory',
      '--peers-dns', 'nodes.replikit.test', '--peers-dns-port', String(port), '--peers-dns-wait', '2', '--peers-dns-server', dns.address,
    ]);
    await until(() => added.stdout.includes('ready on'), 'the fourth node ready', 30_000);
    expect(added.stderr).toMatch(/does not know ip-127-0-0-4: joined it as a learner/);
    const listed = await cli(['member', 'list', '--target', `127.0.0.1:${port}`]);
    expect(listed.stdout).toMatch(new RegExp(`${fourthId} +${fourth}:${port} +learner`));
    await waitFor(async () => (await cli(['member', 'promote', fourthId, '--target', `127.0.0.2:${port}`])).code === 0, 15_000, 'the fourth node promoted');
    for (const node of [...nodes, added]) node.child.kill('SIGTERM');
    expect(await Promise.all([...nodes, added].map((n) => n.exit))).toEqual([0, 0, 0, 0]);
  });

  it('refuses --peers with --peers-dns, and the other flags without it, with exit status 2', async () => {
    const base = ['serve', '--id', 'n1', '--listen', '127.0.0.1:0', '--memory'];
    const cases: [string[], string][] = [
      [['--peers', 'n2=127.0.0.1:7002', '--peers-dns', 'replikit.test'], 'give --peers or --peers-dns, not both'],
      [['--peers-dns-port', '7000'], '--peers-dns-port needs --peers-dns NAME'],
      [['--peers-dns-wait', '2'], '--peers-dns-wait needs --peers-dns NAME'],
      [['--peers-dns', 'replikit.test', '--peers-dns-wait', '-1'], '--peers-dns-wait must be between 0 and 256'],
      [['--peers-dns', 'replikit.test', '--peers-dns-port', '70000'], '--peers-dns-port must be between 1 and 65535'],
      [['--peers-dns', 'replikit.test', '--peers-dns-server', 'dns.example:53'], '--peers-dns-server must be IP or IP:PORT'],
      [['--peers-dns', 'http://replikit.test/'], '--peers-dns must be a DNS name'],
    ];
    const results = await Promise.all(cases.map(([args]) => cli([...base, ...args])));
    results.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(message);
      expect(r.stderr).toContain('usage: replikit serve');
    });
    const help = await cli(['serve', '--help']);
    for (const flag of ['--peers-dns NAME', '--peers-dns-port PORT', '--peers-dns-wait N', '--peers-dns-server IP:PORT']) expect(help.stdout).toContain(flag);
  });

  it('exits 1 with one line naming the DNS name when it finds no peers', async () => {
    const r = await cli(['serve', '--id', 'n1', '--listen', '127.0.0.1:0', '--memory', '--peers-dns', 'missing.replikit.test', '--peers-dns-server', dns.address]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'replikit serve: --peers-dns: no SRV, A or AAAA records for missing.replikit.test (SRV: no such name, A: no such name, AAAA: no such name)\n',
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
