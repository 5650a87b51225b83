/**
 * `npm run bench:replication`: what the AP and causal issues ask to measure beside throughput.
 *  1. AP convergence after a partition: 3 `serve --policy ap` processes; n3 is cut off (SIGSTOP),
 *     1,000 keys are written through n1 and n2, n3 comes back (SIGCONT), and the time until n3
 *     holds every key is measured (hints and anti-entropy at their defaults). Median of 3 runs.
 *  2. Causal dependency buffers under load: 3 `serve --policy causal` processes with metrics; 64
 *     callers, each a session that moves between nodes, write for 5 s while every node's
 *     `replikit_causal_buffered_entries` gauge is sampled every 50 ms. Reports the largest and the
 *     mean buffer, and the put throughput and p99.
 * `--quick`: one run of 200 keys and 1 s of causal load, a smoke run of the same steps.
 */
import { credentials, Metadata } from '@grpc/grpc-js';
import { LocalCluster, freePorts } from '../src/cli/local-cluster.js';
import { sampleMetric } from '../src/ops/metrics-text.js';
import { KvServiceClient, type GetResponse, type PutResponse } from '../src/gen/replikit/v1/kv_service.js';

const QUICK = process.argv.includes('--quick');
const RUNS = QUICK ? 1 : 3;
const KEYS = QUICK ? 200 : 1_000;
const LOAD_MS = QUICK ? 1_000 : 5_000;
const CALLERS = 64;
const VALUE = Buffer.alloc(100, 'x');

function put(c: KvServiceClient, key: string, token: Buffer): Promise<PutResponse> {
  return new Promise((resolve, reject) =>
    c.put({ keyspace: 'default', key: Buffer.from(key), value: VALUE, sessionToken: token, ack: 0, lease: 0n }, new Metadata(), { deadline: Date.now() + 5_000 }, (e, r) => (e ? reject(e) : resolve(r))),
  );
}

function get(c: KvServiceClient, key: string): Promise<GetResponse> {
  return new Promise((resolve, reject) =>
    c.get({ keyspace: 'default', key: Buffer.from(key), sessionToken: Buffer.alloc(0) , consistency: 0 }, new Metadata(), { deadline: Date.now() + 5_000 }, (e, r) => (e ? reject(e) : resolve(r))),
  );
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function apConvergence(): Promise<number[]> {
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', 'ap'] });
    try {
      await cluster.startAll();
      const [a, b, c] = cluster.ids.map((id) => new KvServiceClient(cluster.address(id), credentials.createInsecure()));
      await cluster.kill('n3', 'SIGSTOP');
      for (let i = 0; i < KEYS; i += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, j) => put((i + j) % 2 ? a! : b!, `key-${i + j}`, Buffer.alloc(0))));
      }
      await cluster.kill('n3', 'SIGCONT');
      const t0 = performance.now();
      let missing = KEYS;
      while (missing > 0 && performance.now() - t0 < 30_000) {
        const found = await Promise.all(Array.from({ length: KEYS }, (_, i) => get(c!, `key-${i}`).then((r) => r.found, () => false)));
        missing = found.filter((f) => !f).length;
      }
      times.push(missing === 0 ? performance.now() - t0 : Number.NaN);
      for (const k of [a, b, c]) k!.close();
    } finally {
      await cluster.stop();
    }
  }
  return times;
}

async function causalBuffers(): Promise<{ opsPerSec: number; p99Ms: number; maxBuffered: number; meanBuffered: number }> {
  const metricsPorts = await freePorts(3);
  const cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', 'causal'] });
  try {
    await Promise.all(cluster.ids.map((id, i) => cluster.start(id, ['--metrics-listen', `127.0.0.1:${metricsPorts[i]}`])));
    const clients = cluster.ids.map((id) => new KvServiceClient(cluster.address(id), credentials.createInsecure()));
    const samples: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const values = await Promise.all(
          metricsPorts.map((port) =>
            fetch(`http://127.0.0.1:${port}/metrics`)
              .then((r) => r.text())
              .then((text) => sampleMetric(text, 'replikit_causal_buffered_entries') ?? 0)
              .catch(() => 0),
          ),
        );
        samples.push(Math.max(...values));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const latencies: number[] = [];
    const end = performance.now() + LOAD_MS;
    let n = 0;
    await Promise.all(
      Array.from({ length: CALLERS }, async (_, caller) => {
        let token: Buffer = Buffer.alloc(0);
        let node = caller % 3;
        while (performance.now() < end) {
          const t0 = performance.now();
          try {
            token = (await put(clients[node]!, `k-${n++ % KEYS}`, token)).sessionToken;
            latencies.push(performance.now() - t0);
          } catch {
            // Counted by its absence from the latencies.
          }
          if (Math.random() < 0.3) node = (node + 1) % 3; // the session moves to another node
        }
      }),
    );
    sampling = false;
    await sampler;
    for (const c of clients) c.close();
    latencies.sort((a, b) => a - b);
    return {
      opsPerSec: (latencies.length / LOAD_MS) * 1000,
      p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
      maxBuffered: Math.max(0, ...samples),
      meanBuffered: samples.reduce((s, x) => s + x, 0) / Math.max(1, samples.length),
    };
  } finally {
    await cluster.stop();
  }
}

const ap = await apConvergence();
process.stdout.write(
  `AP convergence after a partition (n3 stopped while ${KEYS} keys were written elsewhere): ` +
    `${ap.map((t) => `${t.toFixed(0)} ms`).join(', ')}; median ${median(ap).toFixed(0)} ms\n`,
);
const causalRun = await causalBuffers();
process.stdout.write(
  `causal put under ${CALLERS} moving sessions for ${LOAD_MS / 1000} s: ${causalRun.opsPerSec.toFixed(0)} ops/s, p99 ${causalRun.p99Ms.toFixed(1)} ms; ` +
    `dependency buffer (largest node, sampled every 50 ms): max ${causalRun.maxBuffered}, mean ${causalRun.meanBuffered.toFixed(1)}\n`,
);
