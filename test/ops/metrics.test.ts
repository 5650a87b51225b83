import { execFile } from 'node:child_process';
import { credentials, Metadata } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { freePorts, LocalCluster } from '../../src/cli/local-cluster.js';
import { ReplicaServiceClient } from '../../src/gen/replikit/v1/replica_service.js';
import { CLUSTER_ID_METADATA_KEY, NODE_ID_METADATA_KEY } from '../../src/interceptors/index.js';
import { BUILT } from '../support/cli.js';
import { TestKvClient } from '../support/kv-client.js';
import { sample, scrape } from '../support/ops.js';
import { stateOf, waitFor } from '../support/status-client.js';

let cluster: LocalCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/** Concurrent callers of the heavy-load phase: the 64 of the DESIGN's measurements. */
const CALLERS = 64;
const LOAD_MS = 2_500;
const SCRAPES = 8;

/**
 * Scrapes from a separate process, so that the time measured is the node's answer and not this
 * test process's event loop, busy driving the load.
 */
function scrapeTimesFromAnotherProcess(address: string, count: number, gapMs: number): Promise<number[]> {
  const script = `
    const http = require('node:http');
    const [host, port] = process.argv[1].split(':');
    const times = [];
    const one = () => new Promise((resolve, reject) => {
      const t0 = performance.now();
      http.get({ host, port: Number(port), path: '/metrics', agent: false }, (res) => {
        res.resume();
        res.on('end', () => { if (res.statusCode !== 200) reject(new Error('status ' + res.statusCode)); else resolve(performance.now() - t0); });
      }).on('error', reject);
    });
    (async () => {
      for (let i = 0; i < ${count}; i++) { times.push(await one()); await new Promise((r) => setTimeout(r, ${gapMs})); }
      process.stdout.write(JSON.stringify(times));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ['-e', script, address], { timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(JSON.parse(stdout) as number[]),
    ),
  );
}

describe.skipIf(!BUILT)('Prometheus metrics of a real serve process (--metrics-listen)', () => {
  it('exports RPC latency by method and code, peers, quorums, AP queues and hints, refusals; a scrape under heavy load answers in under 100 ms', async () => {
    const [metricsPort] = await freePorts(1);
    const metricsAddress = `127.0.0.1:${metricsPort}`;
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap', '--keyspace', 'c=causal'] });
    const c = cluster;
    const [ready] = await Promise.all([c.start('n1', ['--metrics-listen', metricsAddress]), c.start('n2'), c.start('n3')]);
    expect(ready).toContain(`metrics http://${metricsAddress}/metrics`);
    for (const peer of ['n2', 'n3']) await waitFor(async () => (await stateOf(c.address('n1'), peer)).state === 'ALIVE', 5_000, `n1 hears ${peer}`);

    const kv = new TestKvClient(c.address('n1'));
    try {
      for (let i = 0; i < 20; i++) await kv.put(`k${i}`, 'v');
      for (let i = 0; i < 5; i++) await kv.put(`a${i}`, 'v', { keyspace: 'a' });
      await kv.get('k0');
      await kv.put('x', 'v', { keyspace: 'nope' }).catch(() => undefined);
      // A peer call from another cluster, refused by the identity check.
      const rogue = new ReplicaServiceClient(c.address('n1'), credentials.createInsecure());
      const md = new Metadata();
      md.set(CLUSTER_ID_METADATA_KEY, 'other-cluster');
      md.set(NODE_ID_METADATA_KEY, 'n2');
      await new Promise((resolve) => rogue.read({ keyspace: 'default', keys: [Buffer.from('k0')] }, md, { deadline: Date.now() + 2_000 }, resolve));
      rogue.close();

      // ClockSync samples each peer once a second; wait for the first of each.
      await waitFor(
        async () => {
          const body = (await scrape(metricsAddress)).body;
          return ['n2', 'n3'].every((peer) => sample(body, 'replikit_peer_clock_offset_seconds', { peer }) !== undefined);
        },
        3_000,
        'clock offsets of both peers',
      );
      const first = await scrape(metricsAddress);
      expect(first.status).toBe(200);
      expect(first.contentType).toMatch(/^text\/plain/);
      const m = first.body;
      const kvLabels = (method: string, code: string) => ({ node: 'n1', grpc_service: 'replikit.v1.KvService', grpc_method: method, grpc_code: code });
      expect(sample(m, 'replikit_grpc_server_handling_seconds_count', kvLabels('Put', 'OK'))).toBe(25);
      expect(sample(m, 'replikit_grpc_server_handling_seconds_count', kvLabels('Get', 'OK'))).toBe(1);
      expect(sample(m, 'replikit_grpc_server_handling_seconds_count', kvLabels('Put', 'NOT_FOUND'))).toBe(1);
      expect(sample(m, 'replikit_grpc_server_handling_seconds_bucket', { ...kvLabels('Put', 'OK'), le: '+Inf' })).toBe(25);
      expect(sample(m, 'replikit_grpc_server_handling_seconds_count', { grpc_service: 'replikit.v1.ReplicaService', grpc_method: 'Read', grpc_code: 'FAILED_PRECONDITION' })).toBe(1);
      expect(sample(m, 'replikit_peer_calls_refused_total')).toBeGreaterThanOrEqual(1);
      for (const peer of ['n2', 'n3']) {
        expect(sample(m, 'replikit_peer_phi', { peer })).toBeLessThan(8);
        expect(sample(m, 'replikit_peer_state', { peer, state: 'ALIVE' })).toBe(1);
        expect(sample(m, 'replikit_peer_clock_offset_seconds', { peer })).toBeTypeOf('number');
      }
      expect(sample(m, 'replikit_keyspace_quorum_reachable', { keyspace: 'default' })).toBe(1);
      expect(sample(m, 'replikit_keyspace_alive_replicas', { keyspace: 'default' })).toBe(3);
      // Without TLS there is no certificate: no expiry sample at all (a 0 would fire expiry alerts).
      expect(sample(m, 'replikit_tls_certificate_expiry_timestamp_seconds')).toBeUndefined();
      expect(sample(m, 'replikit_ap_hints', { keyspace: 'a' })).toBe(0);
      expect(sample(m, 'replikit_ap_replication_queued_keys', { keyspace: 'a' })).toBeTypeOf('number');
      expect(sample(m, 'replikit_ap_hints', { keyspace: 'default' })).toBeUndefined();
      expect(sample(m, 'replikit_causal_buffered_entries', { keyspace: 'c' })).toBe(0);
      expect(sample(m, 'replikit_causal_unreplicated_writes', { keyspace: 'c' })).toBeTypeOf('number');
      // 20 CP puts: 20 log entries (and the leader's no-op) applied on every node, each made
      // durable by some sync; this node leads or follows.
      const cp = { keyspace: 'default' };
      expect(sample(m, 'replikit_raft_term', cp)).toBeGreaterThanOrEqual(1);
      expect(sample(m, 'replikit_raft_applied_index', cp)).toBeGreaterThanOrEqual(21);
      expect(sample(m, 'replikit_raft_entries_persisted', cp)).toBeGreaterThanOrEqual(20);
      expect(sample(m, 'replikit_raft_syncs', cp)).toBeGreaterThan(0);
      expect(sample(m, 'replikit_raft_sync_seconds_sum', cp)).toBeGreaterThan(0);
      expect([0, 1]).toContain(sample(m, 'replikit_raft_is_leader', cp));
      expect(sample(m, 'replikit_raft_proposals_pending', cp)).toBe(0);
      expect(sample(m, 'replikit_raft_term', { keyspace: 'a' })).toBeUndefined();
      expect(sample(m, 'replikit_serving')).toBe(1);
      expect(sample(m, 'process_cpu_user_seconds_total')).toBeTypeOf('number');

      // Heavy load: 64 callers writing back to back to n1 (CP and AP), scraped meanwhile.
      let stop = false;
      let done = 0;
      const callers = Array.from({ length: CALLERS }, async (_, i) => {
        for (let j = 0; !stop; j++) {
          await kv.put(`load-${i}-${j % 50}`, 'x'.repeat(100), { keyspace: i % 2 === 0 ? 'default' : 'a' }).catch(() => undefined);
          done++;
        }
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const times = await scrapeTimesFromAnotherProcess(metricsAddress, SCRAPES, Math.floor((LOAD_MS - 300) / SCRAPES));
      const loadedCount = done;
      stop = true;
      await Promise.all(callers);
      console.log(`scrapes under load (${loadedCount} puts meanwhile): ${times.map((t) => t.toFixed(1)).join(', ')} ms`);
      expect(loadedCount).toBeGreaterThan(200);
      expect(Math.max(...times)).toBeLessThan(100);

      // A dead peer: its state, and the hints that AP writes leave for it.
      await c.kill('n3', 'SIGKILL');
      await waitFor(async () => (await stateOf(c.address('n1'), 'n3')).state === 'DEAD', 3_000, 'n1 sees n3 DEAD');
      for (let i = 0; i < 10; i++) await kv.put(`h${i}`, 'v', { keyspace: 'a' });
      await waitFor(async () => (sample((await scrape(metricsAddress)).body, 'replikit_ap_hints', { keyspace: 'a' }) ?? 0) >= 10, 3_000, 'hints for n3 appear');
      const after = (await scrape(metricsAddress)).body;
      expect(sample(after, 'replikit_peer_state', { peer: 'n3', state: 'DEAD' })).toBe(1);
      expect(sample(after, 'replikit_peer_state', { peer: 'n3', state: 'ALIVE' })).toBe(0);
      expect(sample(after, 'replikit_keyspace_alive_replicas', { keyspace: 'default' })).toBe(2);
      expect(sample(after, 'replikit_keyspace_quorum_reachable', { keyspace: 'default' })).toBe(1);
      expect(sample(after, 'replikit_grpc_server_handling_seconds_count', kvLabels('Put', 'OK'))).toBeGreaterThan(1_000);
    } finally {
      kv.close();
    }
  });
});
