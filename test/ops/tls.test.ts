import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, LocalCluster } from '../../src/cli/local-cluster.js';
import { ClusterServiceClient, MemberState, type StatusResponse } from '../../src/gen/replikit/v1/cluster_service.js';
import { KvServiceClient, type PutResponse } from '../../src/gen/replikit/v1/kv_service.js';
import { BUILT, cli } from '../support/cli.js';
import { statusOf } from '../support/kv-client.js';
import { healthCheck, sample, scrape } from '../support/ops.js';
import { makeSpiffePki, type SpiffePki } from '../support/pki.js';
import { waitFor } from '../support/status-client.js';

let dir: string;
let pki: SpiffePki;
let cluster: LocalCluster | undefined;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'replikit-pki-'));
  pki = await makeSpiffePki(dir);
});
afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const pem = (path: string) => readFileSync(path);

function tlsCreds(ca: string, leaf?: { cert: string; key: string }): ChannelCredentials {
  return credentials.createSsl(pem(ca), leaf === undefined ? null : pem(leaf.key), leaf === undefined ? null : pem(leaf.cert));
}

function statusWith(address: string, creds: ChannelCredentials): Promise<StatusResponse> {
  const client = new ClusterServiceClient(address, creds);
  return new Promise<StatusResponse>((resolve, reject) =>
    client.status({}, new Metadata(), { deadline: Date.now() + 2_000 }, (err, res) => (err ? reject(err) : resolve(res))),
  ).finally(() => client.close());
}

function put(client: KvServiceClient, key: string): Promise<PutResponse> {
  return new Promise((resolve, reject) =>
    client.put(
      { keyspace: 'default', key: Buffer.from(key), value: Buffer.from('v'), sessionToken: Buffer.alloc(0), ack: 0, lease: 0n },
      new Metadata(),
      { deadline: Date.now() + 3_000 },
      (err, res) => (err ? reject(err) : resolve(res)),
    ),
  );
}

async function alive(address: string, creds: ChannelCredentials, member: string): Promise<boolean> {
  const s = await statusWith(address, creds);
  return s.members.find((m) => m.nodeId === member)?.state === MemberState.MEMBER_STATE_ALIVE;
}

describe.skipIf(!BUILT)('TLS and mutual TLS between real serve processes (--tls-cert, --tls-key, --tls-ca)', () => {
  it('serves peers and clients over mutual TLS; refuses a wrong certificate, a missing one, a plaintext client and a rogue peer, each with a clear log line, and nothing else is disturbed', async () => {
    const logs = new Map<string, string[]>([['n1', []], ['n2', []], ['n3', []]]);
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100'], onLog: (id, line) => logs.get(id)!.push(line) });
    const c = cluster;
    const [metricsPort] = await freePorts(1);
    const metrics = `127.0.0.1:${metricsPort}`;
    const tlsArgs = async (id: string) => {
      const leaf = await pki.node(id);
      return ['--tls-cert', leaf.cert, '--tls-key', leaf.key, '--tls-ca', pki.caFile];
    };
    const ready = await Promise.all([c.start('n1', [...(await tlsArgs('n1')), '--metrics-listen', metrics]), c.start('n2', await tlsArgs('n2')), c.start('n3', await tlsArgs('n3'))]);
    expect(ready[0]).toContain('mutual tls');
    const clientLeaf = await pki.client('cli');
    const good = tlsCreds(pki.caFile, clientLeaf);
    const n1 = c.address('n1');
    for (const peer of ['n2', 'n3']) await waitFor(() => alive(n1, good, peer), 5_000, `n1 hears ${peer} over mutual TLS`);

    // The CLI speaks mutual TLS with the matching flags.
    const clientFlags = ['--tls-ca', pki.caFile, '--tls-cert', clientLeaf.cert, '--tls-key', clientLeaf.key];
    const putCli = await cli(['put', '--target', n1, ...clientFlags, 'greeting', 'hello']);
    expect(putCli.stderr).toBe('');
    expect(putCli.code).toBe(0);
    const getCli = await cli(['get', '--target', c.address('n2'), ...clientFlags, 'greeting']);
    expect(getCli.stdout.trim()).toBe('hello');
    // Status over mutual TLS through the CLI; n3 sees every member ALIVE (waiting a little: on a
    // loaded machine a peer can be briefly SUSPECT at the instant of one call).
    const statesAtN3 = async () => {
      const statusCli = await cli(['status', '--target', c.address('n3'), ...clientFlags, '--json']);
      expect(statusCli.code, statusCli.stderr).toBe(0);
      return (JSON.parse(statusCli.stdout) as { members: { state: string }[] }).members.map((m) => m.state);
    };
    await waitFor(async () => (await statesAtN3()).every((s) => s === 'MEMBER_STATE_ALIVE'), 5_000, 'n3 sees every member ALIVE over mutual TLS');
    expect(await statesAtN3()).toHaveLength(3);
    expect(await healthCheck(n1, '', good)).toBe('SERVING');

    // A long-lived, well-behaved client, used before and after every bad handshake.
    const steady = new KvServiceClient(n1, good);
    await put(steady, 'steady-0');

    const refusals = () => logs.get('n1')!.filter((l) => l.includes('refused a TLS connection'));
    const expectRefused = async (what: string, creds: ChannelCredentials, logPattern: RegExp, errPattern?: RegExp) => {
      const before = refusals().length;
      const client = new KvServiceClient(n1, creds);
      const err = (await put(client, 'bad').catch((e: unknown) => e)) as ServiceError;
      client.close();
      expect(statusOf(err), what).toBe('UNAVAILABLE');
      if (errPattern !== undefined) expect(err.details, what).toMatch(errPattern);
      await waitFor(async () => refusals().slice(before).some((l) => logPattern.test(l)), 2_000, `n1 logs the refusal of ${what}`).catch((e: unknown) => {
        throw new Error(`${String(e)}; n1 logged: ${refusals().slice(before).join('\n')}`);
      });
      await put(steady, `steady-after-${what}`);
    };
    // A certificate from another CA.
    await expectRefused('a client certificate the CA did not sign', tlsCreds(pki.caFile, await pki.rogueNode('mallory')), /"level":"warn".*refused a TLS connection from 127\.0\.0\.1:\d+: the client's certificate is not signed by this node's CA/);
    // No client certificate at all.
    await expectRefused('a client without a certificate', tlsCreds(pki.caFile), /refused a TLS connection from 127\.0\.0\.1:\d+: the client presented no certificate/);
    // Plaintext against a TLS node.
    await expectRefused('a plaintext client', credentials.createInsecure(), /refused a TLS connection from 127\.0\.0\.1:\d+: the client did not speak TLS/);
    // The client side of a wrong server certificate: the client says why.
    const distrustful = new KvServiceClient(n1, tlsCreds(pki.rogueCaFile, clientLeaf));
    const clientErr = (await put(distrustful, 'bad').catch((e: unknown) => e)) as ServiceError;
    distrustful.close();
    expect(statusOf(clientErr)).toBe('UNAVAILABLE');
    expect(clientErr.details).toMatch(/certificate/i);
    steady.close();

    const scraped = (await scrape(metrics)).body;
    expect(sample(scraped, 'replikit_tls_handshakes_refused_total', { reason: 'untrusted-certificate' })).toBeGreaterThanOrEqual(1);
    expect(sample(scraped, 'replikit_tls_handshakes_refused_total', { reason: 'plaintext-client' })).toBeGreaterThanOrEqual(1);

    // A rogue peer: n3's address and id, with a certificate from the rogue CA.
    await c.kill('n3', 'SIGKILL');
    await waitFor(async () => !(await alive(n1, good, 'n3')), 3_000, 'n1 sees n3 gone');
    const rogueLeaf = await pki.rogueNode('n3');
    await c.start('n3', ['--tls-cert', rogueLeaf.cert, '--tls-key', rogueLeaf.key, '--tls-ca', pki.rogueCaFile]);
    const rogueAtN1 = refusals().length;
    await waitFor(async () => refusals().length > rogueAtN1, 3_000, 'n1 refuses the rogue n3');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await alive(n1, good, 'n3')).toBe(false);
    expect(await alive(n1, good, 'n2')).toBe(true);
    expect(await healthCheck(n1, '', good)).toBe('SERVING');
    const stillWorks = await cli(['put', '--target', n1, ...clientFlags, 'after-rogue', 'ok']);
    expect(stillWorks.code).toBe(0);
    // The rogue sees nobody: the genuine nodes refuse it, and it distrusts them.
    const rogueCreds = tlsCreds(pki.rogueCaFile, rogueLeaf);
    // Once its startup grace period is over, it knows it has no quorum.
    await waitFor(async () => (await statusWith(c.address('n3'), rogueCreds)).notServingReasons.join().includes('quorum lost'), 6_000, 'the rogue n3 reports its quorum lost');
    const rogueView = await statusWith(c.address('n3'), rogueCreds);
    expect(rogueView.members.filter((m) => !m.self).map((m) => m.state)).toEqual([MemberState.MEMBER_STATE_DEAD, MemberState.MEMBER_STATE_DEAD]);
    // n1's server sees a client that hung up mid-handshake (the rogue distrusts n1's certificate);
    // n1's own calls to the rogue say what is wrong with the rogue's certificate.
    // (Which comes first depends on who dials first: the rogue's own calls, with its certificate, are
    // refused too.)
    expect(refusals().slice(rogueAtN1)[0]).toMatch(/refused a TLS connection from 127\.0\.0\.1:\d+: (the client hung up during the TLS handshake|the client's certificate is not signed)/);
    const peerLine = logs.get('n1')!.find((l) => l.includes('cannot reach peer n3 over TLS'));
    console.log(`n1 on the rogue peer: ${peerLine}`);
    expect(peerLine).toMatch(/"level":"warn".*cannot reach peer n3 over TLS: .*certificate/);

    // The genuine n3 comes back and is welcome.
    await c.kill('n3', 'SIGKILL');
    await c.start('n3', await tlsArgs('n3'));
    await waitFor(() => alive(n1, good, 'n3'), 5_000, 'n1 hears the genuine n3 again');
  });
});
