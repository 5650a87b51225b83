/**
 * `npm run soak [-- --minutes N]`: the limits under load for a long while. Three `serve` processes
 * (LMDB) with a CP, an AP and a causal keyspace take mixed load from 24 callers with values from
 * 10 B to 512 KiB (log-uniform); every minute one peer is paused (SIGSTOP) for 20 s and resumed;
 * meanwhile a misbehaving client, every 5 s, sends an amplifying Read (a large key named 1,024
 * times), opens an Exchange stream it never reads, opens 200 silent Heartbeat streams, and forges
 * far-future causal entries. Every node's resident anonymous memory (RssAnon: heap and buffers,
 * not LMDB's file mapping) is sampled every 2 s.
 *
 * At the end every node is resumed and every acknowledged write (each to a key of its own) is
 * read back once: CP through a quorum; AP and causal from the local replica of a node other than
 * the one that acknowledged it, so the write must have been replicated, not just kept. 64 reads
 * are in flight at a time (a 10-minute run acknowledges ~190,000 writes; reading each from all three
 * nodes, 64 at a time, took longer than 25 minutes).
 * Prints p50/p99 latency and RSS per minute; exits 1 when an acknowledged write is missing or a
 * node's anonymous RSS went over the ceiling (--rss-ceiling-mb, default 400). Writes
 * bench/results/soak-latest.json.
 */
import { credentials, Metadata } from '@grpc/grpc-js';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { LocalCluster } from '../src/cli/local-cluster.js';
import { KvServiceClient } from '../src/gen/replikit/v1/kv_service.js';
import { ReplicaServiceClient } from '../src/gen/replikit/v1/replica_service.js';
import type { Entry as WireEntry } from '../src/gen/replikit/v1/types.js';
import { CLUSTER_ID_METADATA_KEY, NODE_ID_METADATA_KEY } from '../src/interceptors/metadata-keys.js';
import { SeededRandom } from '../src/sim/seeded-random.js';
import { existsSync } from 'node:fs';

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isFinite(value) || value <= 0) {
    process.stderr.write(`soak: ${name} must be a positive number, not ${JSON.stringify(process.argv[at + 1])}\n`);
    process.exit(2);
  }
  return value;
}

const MINUTES = flag('--minutes', 10);
const RSS_CEILING_MB = flag('--rss-ceiling-mb', 400);
const CALLERS = 24;
const KEYSPACES = ['default', 'a', 'c'] as const;
type Keyspace = (typeof KEYSPACES)[number];
const PAUSE_EVERY_MS = Math.min(60_000, (MINUTES * 60_000) / 2);
const PAUSE_FOR_MS = Math.min(20_000, PAUSE_EVERY_MS / 3);

/**
 * A process's resident anonymous memory (the heap, buffers, stacks): what the node itself holds.
 * File-backed pages (LMDB's memory map of its data file) are left out: they grow with the data
 * written and the kernel reclaims them at will.
 */
function rssMb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('RssAnon:'))!;
    return Number(line.split(/\s+/)[1]) / 1024;
  } catch {
    return 0;
  }
}

function call<T>(fn: (done: (err: Error | null, res?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res!))));
}

if (!existsSync(new URL('../dist/cli/main.js', import.meta.url))) {
  process.stderr.write('soak: dist/ is missing: run `npm run build` first\n');
  process.exit(2);
}
const cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap', '--keyspace', 'c=causal'] });
const stopAll = async () => {
  for (const id of cluster.ids) if (cluster.isRunning(id)) await cluster.kill(id, 'SIGCONT');
  await cluster.stop();
};
process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
await cluster.startAll();
const kv = new Map(cluster.ids.map((id) => [id, new KvServiceClient(cluster.address(id), credentials.createInsecure(), { 'grpc.max_receive_message_length': 8 << 20 })]));
const random = new SeededRandom(20261130);
const started = performance.now();
const endAt = started + MINUTES * 60_000;
/** Per keyspace: key → the value's size and the node that acknowledged it. */
const acknowledged = new Map<Keyspace, Map<string, { size: number; ackedBy: string }>>(KEYSPACES.map((k) => [k, new Map()]));
const latencies: { minute: number; keyspace: Keyspace; ms: number }[] = [];
const errors = new Map<string, number>();
const rss = new Map<string, number[]>(cluster.ids.map((id) => [id, []]));
const minuteOf = () => Math.floor((performance.now() - started) / 60_000);
const sizeOf = (r: SeededRandom) => Math.round(10 * Math.pow((512 * 1024) / 10, r.next()));
let paused: string | undefined;

const worker = async (w: number): Promise<void> => {
  const r = random.fork(w);
  for (let n = 0; performance.now() < endAt; n++) {
    const keyspace = KEYSPACES[n % 3]!;
    const id = r.pick(cluster.ids.filter((x) => x !== paused));
    const key = `soak-${keyspace}-${w}-${n}`;
    const size = sizeOf(r);
    const t0 = performance.now();
    try {
      await call((done) =>
        kv.get(id)!.put({ keyspace, key: Buffer.from(key), value: Buffer.alloc(size, n % 251), sessionToken: Buffer.alloc(0), ack: 0, lease: 0n }, new Metadata(), { deadline: Date.now() + 5_000 }, done),
      );
      acknowledged.get(keyspace)!.set(key, { size, ackedBy: id });
      latencies.push({ minute: minuteOf(), keyspace, ms: performance.now() - t0 });
    } catch (err) {
      const code = String((err as { code?: number }).code ?? 'other');
      errors.set(`${keyspace} ${code}`, (errors.get(`${keyspace} ${code}`) ?? 0) + 1);
    }
  }
};

const peerMetadata = (self: string) => {
  const md = new Metadata();
  md.set(NODE_ID_METADATA_KEY, self);
  md.set(CLUSTER_ID_METADATA_KEY, 'replikit');
  return md;
};
const misbehave = async (): Promise<void> => {
  await call((done) => kv.get('n1')!.put({ keyspace: 'default', key: Buffer.from('soak-big'), value: Buffer.alloc(600 * 1024, 1), sessionToken: Buffer.alloc(0), ack: 0, lease: 0n }, new Metadata(), { deadline: Date.now() + 5_000 }, done)).catch(() => {});
  while (performance.now() < endAt) {
    const target = cluster.ids.find((x) => x !== paused && x !== 'n1') ?? 'n1';
    const peer = new ReplicaServiceClient(cluster.address(target), credentials.createInsecure(), { 'grpc.max_receive_message_length': 8 << 20 });
    // An amplifying Read.
    await call((done) => peer.read({ keyspace: 'default', keys: Array.from({ length: 1024 }, () => Buffer.from('soak-big')) }, peerMetadata('n1'), { deadline: Date.now() + 5_000 }, done)).catch(() => {});
    // An Exchange stream that never reads its answers.
    const stream = peer.exchange(peerMetadata('n1'));
    stream.pause();
    stream.on('error', () => {});
    for (let i = 0; i < 200; i++) stream.write({ callId: BigInt(i + 1), hlc: undefined, read: { keyspace: 'default', keys: [Buffer.from('soak-big')] } });
    // Forged far-future causal entries.
    const forged: WireEntry[] = Array.from({ length: 500 }, (_, i) => ({
      key: Buffer.from(`forged-${i}`),
      value: Buffer.from('x'),
      version: { hlc: { wallTimeMs: BigInt(Date.now()), logical: 0 }, nodeId: 'n1' },
      tombstone: false,
      dependencies: undefined,
      originSequence: BigInt(1e9 + i),
    }));
    await call((done) => peer.replicate({ keyspace: 'c', entries: forged }, peerMetadata('n1'), { deadline: Date.now() + 5_000 }, done)).catch(() => {});
    // Silent Heartbeat streams claiming a member's id.
    const beats = Array.from({ length: 200 }, () => {
      const s = peer.heartbeat(peerMetadata('n1'));
      s.on('error', () => {});
      s.on('data', () => {});
      return s;
    });
    await new Promise((r) => setTimeout(r, 5_000));
    stream.cancel();
    for (const s of beats) s.cancel();
    peer.close();
  }
};

const pauser = async (): Promise<void> => {
  const victims = ['n2', 'n3'];
  for (let i = 0; performance.now() + PAUSE_EVERY_MS < endAt; i++) {
    await new Promise((r) => setTimeout(r, PAUSE_EVERY_MS - PAUSE_FOR_MS));
    paused = victims[i % 2]!;
    await cluster.kill(paused, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, PAUSE_FOR_MS));
    await cluster.kill(paused, 'SIGCONT');
    paused = undefined;
  }
};

const sampler = setInterval(() => {
  for (const id of cluster.ids) rss.get(id)!.push(rssMb(cluster.pid(id)));
}, 2_000);
const progress = setInterval(() => {
  const done = Math.min(1, (performance.now() - started) / (endAt - started));
  const acked = KEYSPACES.map((k) => acknowledged.get(k)!.size).reduce((a, b) => a + b, 0);
  process.stderr.write(`soak ${(done * 100).toFixed(0)}%: ${acked} writes acknowledged, max RSS ${Math.max(...[...rss.values()].flat(), 0).toFixed(0)} MB${paused ? `, ${paused} paused` : ''}\n`);
}, 15_000);

await Promise.all([...Array.from({ length: CALLERS }, (_, w) => worker(w)), misbehave(), pauser()]);
clearInterval(sampler);
clearInterval(progress);
for (const id of cluster.ids) await cluster.kill(id, 'SIGCONT');

// Every acknowledged write, back, once (see the header): CP from any node (a quorum read); AP and
// causal from another node's replica. A read that answers "absent" or a value of another size is
// asked again until 60 s after the load (AP and causal converge meanwhile), then counts as
// missing. A read that fails (a deadline on a loaded machine) proves nothing either way: it is
// retried, up to 10 times a second apart, and then counts as unreadable, which fails the run too.
const READS_IN_FLIGHT = 64;
const READ_ATTEMPTS = 10;
const missing = new Map<Keyspace, number>(KEYSPACES.map((k) => [k, 0]));
const unreadable = new Map<Keyspace, number>(KEYSPACES.map((k) => [k, 0]));
const convergedBy = performance.now() + 60_000;
const readBack = async (keyspace: Keyspace, key: string, size: number, id: string): Promise<'found' | 'missing' | 'unreadable'> => {
  for (let failures = 0; ; ) {
    const res = await call<{ found: boolean; value: Buffer }>((done) =>
      kv.get(id)!.get({ keyspace, key: Buffer.from(key), sessionToken: Buffer.alloc(0), consistency: 0 }, new Metadata(), { deadline: Date.now() + 10_000 }, done),
    ).catch(() => undefined);
    if (res === undefined) {
      if (++failures >= READ_ATTEMPTS) return 'unreadable';
    } else if (res.found && res.value.length === size) {
      return 'found';
    } else if (performance.now() > convergedBy) {
      return 'missing';
    }
    await new Promise((r) => setTimeout(r, res === undefined ? 1_000 : 200));
  }
};
const checks = KEYSPACES.flatMap((keyspace) =>
  [...acknowledged.get(keyspace)!].map(([key, { size, ackedBy }], i) => {
    const others = cluster.ids.filter((x) => x !== ackedBy);
    return { keyspace, key, size, id: keyspace === 'default' ? cluster.ids[i % cluster.ids.length]! : others[i % others.length]! };
  }),
);
const readStarted = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: READS_IN_FLIGHT }, async () => {
    while (next < checks.length) {
      const c = checks[next++]!;
      const outcome = await readBack(c.keyspace, c.key, c.size, c.id);
      if (outcome === 'missing') missing.set(c.keyspace, missing.get(c.keyspace)! + 1);
      if (outcome === 'unreadable') unreadable.set(c.keyspace, unreadable.get(c.keyspace)! + 1);
    }
  }),
);
const readBackSeconds = Math.round((performance.now() - readStarted) / 100) / 10;

const pct = (xs: number[], p: number) => (xs.length === 0 ? 0 : [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!);
const minutes = Math.ceil(MINUTES);
const perMinute = Array.from({ length: minutes }, (_, m) =>
  Object.fromEntries(
    KEYSPACES.map((k) => {
      const xs = latencies.filter((l) => l.minute === m && l.keyspace === k).map((l) => l.ms);
      return [k, { ops: xs.length, p50Ms: Math.round(pct(xs, 50) * 10) / 10, p99Ms: Math.round(pct(xs, 99) * 10) / 10 }];
    }),
  ),
);
const maxRss = Object.fromEntries([...rss].map(([id, xs]) => [id, Math.round(Math.max(0, ...xs))]));
// The largest RSS of any node in each minute (samples every 2 s), to tell a plateau from growth.
const samplesPerMinute = 30;
const rssPerMinute = Array.from({ length: minutes }, (_, m) =>
  Math.round(Math.max(0, ...[...rss.values()].flatMap((xs) => xs.slice(m * samplesPerMinute, (m + 1) * samplesPerMinute)))),
);
const report = {
  minutes: MINUTES,
  acknowledged: Object.fromEntries(KEYSPACES.map((k) => [k, acknowledged.get(k)!.size])),
  missing: Object.fromEntries(missing),
  unreadable: Object.fromEntries(unreadable),
  readBackSeconds,
  errors: Object.fromEntries(errors),
  maxRssMb: maxRss,
  maxRssPerMinuteMb: rssPerMinute,
  rssCeilingMb: RSS_CEILING_MB,
  perMinute,
};
console.log('minute | CP ops p50/p99 ms | AP ops p50/p99 ms | causal ops p50/p99 ms');
perMinute.forEach((m, i) =>
  console.log(`${i + 1} | ${m.default!.ops} ${m.default!.p50Ms}/${m.default!.p99Ms} | ${m.a!.ops} ${m.a!.p50Ms}/${m.a!.p99Ms} | ${m.c!.ops} ${m.c!.p50Ms}/${m.c!.p99Ms}`),
);
console.log(`acknowledged: ${JSON.stringify(report.acknowledged)}; missing after the run: ${JSON.stringify(report.missing)}, unreadable: ${JSON.stringify(report.unreadable)} (read back in ${readBackSeconds} s); errors: ${JSON.stringify(report.errors)}`);
console.log(`max RSS per node: ${JSON.stringify(maxRss)} MB (ceiling ${RSS_CEILING_MB} MB); per minute, any node: ${rssPerMinute.join(', ')} MB`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/soak-latest.json', import.meta.url), JSON.stringify(report, null, 2) + '\n');
for (const client of kv.values()) client.close();
await stopAll();
const lostAny = [...missing.values()].some((n) => n > 0);
const unreadableAny = [...unreadable.values()].some((n) => n > 0);
const overCeiling = Object.values(maxRss).some((mb) => mb > RSS_CEILING_MB);
if (lostAny) console.log('FAIL: acknowledged writes are missing');
if (unreadableAny) console.log('FAIL: some acknowledged writes could not be read back (no answer in 10 attempts)');
if (overCeiling) console.log(`FAIL: a node went over ${RSS_CEILING_MB} MB`);
process.exit(lostAny || unreadableAny || overCeiling ? 1 : 0);
