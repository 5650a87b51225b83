/**
 * Certificate rotation without a restart, between real `replikit serve` processes with mutual TLS
 * (SPIFFE node certificates): renewed certificates replaced in their files reach new handshakes
 * on SIGHUP (and on the reload timer), a CA is rotated in three steps through a bundle, and a
 * broken set of files is refused with the certificate in force kept, logged and counted. Every
 * step is checked on the wire: the serial a raw TLS handshake sees, a client certificate the
 * handshake refuses, and writes that commit (a quorum of peer calls over TLS).
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, LocalCluster } from '../../src/cli/local-cluster.js';
import { Consistency } from '../../src/gen/replikit/v1/kv_service.js';
import { createCa, issueClientCertificate, issueNodeCertificate, type CertificateAuthority, type PemPair } from '../../src/ops/certificates.js';
import { BUILT } from '../support/cli.js';
import { statusOf, TestKvClient } from '../support/kv-client.js';
import { sample, scrape } from '../support/ops.js';
import { makeSpiffePki, type CertFiles, type SpiffePki } from '../support/pki.js';
import { waitFor } from '../support/status-client.js';

const CLUSTER = 'replikit';
const IDS = ['n1', 'n2', 'n3'] as const;
let dir: string;
let pki: SpiffePki;
let cluster: LocalCluster;
let metrics: string;
/** Each node's certificate files, replaced in place as they would be by cert-manager or spiffe-helper. */
const nodeFiles = new Map<string, CertFiles>();
const logs = new Map<string, string[]>(IDS.map((id) => [id, []]));
/** The CA the nodes' certificates currently come from, and the PEM a client trusts for them. */
let issuer: CertificateAuthority;
let trusted: string;
let app: PemPair;

const serialOf = (pem: string) => new X509Certificate(pem).serialNumber;
const port = (id: string) => Number(cluster.address(id).split(':')[1]);
const reloadedLines = (id: string) => logs.get(id)!.filter((l) => l.includes('reloaded TLS certificates: serial'));

function nodeArgs(id: string): string[] {
  const files = nodeFiles.get(id)!;
  const extra = id === 'n1' ? ['--metrics-listen', metrics] : id === 'n3' ? ['--tls-reload-interval-ms', '500'] : [];
  return ['--tls-cert', files.cert, '--tls-key', files.key, '--tls-ca', pki.caFile, ...extra];
}

/**
 * A raw TLS handshake with a client certificate, as any client's: accepted once the server speaks
 * (its HTTP/2 SETTINGS arrive, after it verified the client certificate), with the serial of the
 * server certificate it presented; refused when the server hangs up or alerts instead.
 */
function handshake(id: string, client: PemPair, caPem = trusted): Promise<{ accepted: boolean; serial?: string; error?: string }> {
  return new Promise((resolve) => {
    let serial: string | undefined;
    const socket = connect({ host: '127.0.0.1', port: port(id), ca: caPem, cert: client.certPem, key: client.keyPem, ALPNProtocols: ['h2'] }, () => {
      serial = socket.getPeerCertificate().serialNumber;
    });
    const done = (outcome: { accepted: boolean; serial?: string; error?: string }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => done({ accepted: false, error: 'no answer within 3 s' }), 3_000);
    socket.once('data', () => done({ accepted: true, serial }));
    socket.once('error', (err) => done({ accepted: false, error: err.message }));
    socket.once('close', () => done({ accepted: false, error: 'closed' }));
  });
}

/** A fresh client (new channel, new handshake) with `client`'s certificate, trusting `caPem`. */
function kv(id: string, client: PemPair = app, caPem = trusted): TestKvClient {
  return new TestKvClient(cluster.address(id), credentials.createSsl(Buffer.from(caPem), Buffer.from(client.keyPem), Buffer.from(client.certPem)));
}

/** Writes through a fresh client to `id`, retrying while a leader is elected; the write commits on a quorum. */
async function put(id: string, key: string, value: string, client?: PemPair): Promise<void> {
  await waitFor(async () => {
    const c = kv(id, client);
    try {
      await c.put(key, value, { timeoutMs: 2_000 });
      return true;
    } finally {
      c.close();
    }
  }, 15_000, `write ${key} through ${id}`);
}

async function get(id: string, key: string, consistency = Consistency.CONSISTENCY_LINEARIZABLE): Promise<string> {
  const c = kv(id);
  try {
    return (await c.get(key, { consistency, timeoutMs: 3_000 })).value.toString();
  } finally {
    c.close();
  }
}

/** Replaces every node's certificate and key (same files) with a new one from `ca`; the new serials. */
async function reissue(ca: CertificateAuthority, ids: readonly string[] = IDS): Promise<Map<string, string>> {
  const serials = new Map<string, string>();
  for (const id of ids) {
    const pair = await issueNodeCertificate(ca, CLUSTER, id, { days: 2 });
    const files = nodeFiles.get(id)!;
    writeFileSync(files.cert, pair.certPem);
    writeFileSync(files.key, pair.keyPem);
    serials.set(id, serialOf(pair.certPem));
  }
  return serials;
}

/** SIGHUPs every node and waits until each has applied the files (a new "reloaded" line, the timer's included). */
async function hangUpAll(): Promise<void> {
  const before = new Map(IDS.map((id) => [id, reloadedLines(id).length]));
  for (const id of IDS) await cluster.kill(id, 'SIGHUP');
  for (const id of IDS) await waitFor(async () => reloadedLines(id).length > before.get(id)!, 5_000, `${id} reloads its TLS files`);
}

beforeAll(async () => {
  if (!BUILT) return;
  dir = mkdtempSync(join(tmpdir(), 'replikit-cert-rotation-'));
  pki = await makeSpiffePki(dir, CLUSTER);
  issuer = pki.ca;
  trusted = pki.ca.certPem;
  app = await issueClientCertificate(pki.ca, CLUSTER, 'app');
  for (const id of IDS) nodeFiles.set(id, await pki.node(id));
  metrics = `127.0.0.1:${(await freePorts(1))[0]}`;
  cluster = await LocalCluster.create({ size: 3, onLog: (id, line) => logs.get(id)?.push(line) });
  await Promise.all(IDS.map((id) => cluster.start(id, nodeArgs(id))));
}, 40_000);

afterAll(async () => {
  await cluster?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!BUILT)('certificate rotation without restart (real serve processes, mutual TLS)', () => {
  const pids = new Map<string, number | undefined>();

  it('(a) renewed certificates, same CA: after SIGHUP new handshakes see the new serial, the pids stay, writes commit and read back', async () => {
    for (const id of IDS) pids.set(id, cluster.pid(id));
    await put('n1', 'before', 'v0');
    const old = await handshake('n2', app);
    expect(old.accepted).toBe(true);
    expect(old.serial).toBe(serialOf(readFileSync(nodeFiles.get('n2')!.cert, 'utf8')));

    const serials = await reissue(issuer);
    await hangUpAll();
    for (const id of IDS) {
      const seen = await handshake(id, app);
      expect(seen, id).toEqual({ accepted: true, serial: serials.get(id) });
      expect(cluster.pid(id), id).toBe(pids.get(id));
      expect(cluster.isRunning(id), id).toBe(true);
      expect(reloadedLines(id).at(-1), id).toContain(`reloaded TLS certificates: serial ${serials.get(id)}, valid until `);
    }
    // A write commits (the leader's peer calls reach a quorum over TLS) and reads back through every node.
    await put('n2', 'after', 'v1');
    for (const id of IDS) expect(await get(id, 'after'), id).toBe('v1');
    const text = (await scrape(metrics)).body;
    const notAfter = new X509Certificate(readFileSync(nodeFiles.get('n1')!.cert)).validTo;
    // One series, the renewed certificate's: the one it replaced is gone.
    expect(text.split('\n').filter((line) => line.startsWith('replikit_tls_certificate_expiry_timestamp_seconds{'))).toHaveLength(1);
    expect(sample(text, 'replikit_tls_certificate_expiry_timestamp_seconds', { serial: serials.get('n1')! })).toBe(Math.floor(new Date(notAfter).getTime() / 1000));
    expect(sample(text, 'replikit_tls_reloads_total', { outcome: 'applied' })).toBe(1);
  }, 30_000);

  it('(c) a bad reload (the key replaced by another certificate\'s) keeps the certificate in force, logs a warning and is counted', async () => {
    const n1 = nodeFiles.get('n1')!;
    const goodKey = readFileSync(n1.key);
    const inForce = (await handshake('n1', app)).serial;
    writeFileSync(n1.key, readFileSync(nodeFiles.get('n2')!.key));
    try {
      await cluster.kill('n1', 'SIGHUP');
      const warned = () => logs.get('n1')!.filter((l) => l.includes('kept the certificates in force: --tls-key:'));
      await waitFor(async () => warned().length > 0, 5_000, 'n1 logs the refused reload');
      expect(warned()[0]).toMatch(/"level":"warn"/);
      expect(warned()[0]).toContain(`${n1.key} is not the private key of the certificate in ${n1.cert}`);
      expect(await handshake('n1', app)).toEqual({ accepted: true, serial: inForce });
      // Scrapes within 250 ms share one collection: wait for a fresh one.
      await waitFor(async () => sample((await scrape(metrics)).body, 'replikit_tls_reloads_total', { outcome: 'refused' }) === 1, 3_000, 'n1 counts the refused reload');
      await put('n1', 'during-bad-files', 'v2');
    } finally {
      // The good key back (the later steps need it): the files equal what is in force again.
      writeFileSync(n1.key, goodKey);
    }
    // Nothing is applied or logged for files that hold what is in force.
    const reloadsBefore = reloadedLines('n1').length;
    await cluster.kill('n1', 'SIGHUP');
    await waitFor(async () => (sample((await scrape(metrics)).body, 'replikit_tls_reloads_total', { outcome: 'unchanged' }) ?? 0) >= 1, 5_000, 'n1 counts an unchanged reload');
    expect(reloadedLines('n1')).toHaveLength(reloadsBefore);
    expect(cluster.pid('n1')).toBe(pids.get('n1'));
  }, 20_000);

  it('(d) the reload timer (--tls-reload-interval-ms 500) picks a renewed certificate up without SIGHUP', async () => {
    const serials = await reissue(issuer, ['n3']);
    await waitFor(async () => (await handshake('n3', app)).serial === serials.get('n3'), 5_000, 'n3 serves its renewed certificate');
    await waitFor(async () => reloadedLines('n3').some((l) => l.includes(serials.get('n3')!) && l.includes('"trigger":"interval"')), 2_000, 'n3 logs the timer\'s reload');
    expect(cluster.pid('n3')).toBe(pids.get('n3'));
  }, 15_000);

  it('(b) CA rotation through a bundle: CA1+CA2, node certificates from CA2, then CA2 alone; CA1 clients are refused at the handshake, CA2 clients served, writes commit', async () => {
    const ca2 = await createCa('replikit test CA 2');
    const bundle = `${pki.ca.certPem}\n${ca2.certPem}`;
    // 1. Trust both CAs.
    writeFileSync(pki.caFile, bundle);
    await hangUpAll();
    // 2. Certificates from the new CA: clients trusting only CA1 would now fail, so they trust the bundle.
    trusted = bundle;
    const serials = await reissue(ca2);
    await hangUpAll();
    const app1 = app;
    const app2 = await issueClientCertificate(ca2, CLUSTER, 'app');
    for (const id of IDS) {
      expect(await handshake(id, app1), id).toEqual({ accepted: true, serial: serials.get(id) });
      expect(await handshake(id, app2), id).toEqual({ accepted: true, serial: serials.get(id) });
    }
    await put('n1', 'mid-rotation', 'v3');
    // 3. Trust CA2 alone.
    writeFileSync(pki.caFile, ca2.certPem);
    trusted = ca2.certPem;
    await hangUpAll();
    for (const id of IDS) {
      const refused = await handshake(id, app1);
      expect(refused.accepted, `${id}: a CA1 client certificate`).toBe(false);
      expect(await handshake(id, app2), id).toEqual({ accepted: true, serial: serials.get(id) });
      expect(cluster.pid(id), id).toBe(pids.get(id));
    }
    app = app2;
    await put('n2', 'after-rotation', 'v4');
    expect(await get('n3', 'after-rotation')).toBe('v4');
    // A gRPC client with a CA1 certificate gets nothing.
    const old = kv('n1', app1);
    const failure = await old.put('x', 'y', { timeoutMs: 2_000 }).then(() => 'OK', statusOf);
    old.close();
    expect(failure).toBe('UNAVAILABLE');

    // n3 restarts: every connection to and from it is a new handshake, which only CA2 certificates
    // pass; n1 and n2 (never restarted) present their rotated certificates and trust the new CA.
    await cluster.kill('n3', 'SIGTERM');
    await cluster.start('n3', nodeArgs('n3'));
    await put('n1', 'after-restart', 'v5');
    await waitFor(async () => (await get('n3', 'after-restart', Consistency.CONSISTENCY_SERIALIZABLE)) === 'v5', 10_000, 'the leader replicates to the restarted n3');
    expect(await get('n3', 'after-restart')).toBe('v5');
    expect(cluster.pid('n1')).toBe(pids.get('n1'));
    expect(cluster.pid('n2')).toBe(pids.get('n2'));
    expect(logs.get('n1')!.filter((l) => l.includes('cannot reach peer n3 over TLS'))).toEqual([]);
  }, 40_000);
});
