import { credentials, Metadata } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { ReplicaServiceClient, type ReadResponse } from '../../src/gen/replikit/v1/replica_service.js';
import { CLUSTER_ID_METADATA_KEY, NODE_ID_METADATA_KEY } from '../../src/interceptors/metadata-keys.js';
import { BUILT } from '../support/cli.js';
import { retryUnavailable, TestKvClient } from '../support/kv-client.js';

let cluster: LocalCluster | undefined;
const clients: { close(): void }[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await cluster?.stop();
  cluster = undefined;
});

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

async function start(): Promise<{ c: LocalCluster; kv: (id: string) => TestKvClient }> {
  cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap', '--keyspace', 'c=causal'] });
  const c = cluster;
  await c.startAll();
  return {
    c,
    kv: (id) => {
      const made = new TestKvClient(c.address(id));
      clients.push(made);
      return made;
    },
  };
}

/**
 * Batches are bounded in bytes as well as entries, so ordinary large values never make a message
 * the gRPC limit (about 1 MiB) refuses, which used to stall replication for good and fail the
 * Exchange stream the message shared.
 */
describe.skipIf(!BUILT)('large values on real serve processes', () => {
  it('AP and causal writes of 8 KiB reach a peer that was paused while 300 of each were written', async () => {
    const { c, kv } = await start();
    const n1 = kv('n1');
    await c.kill('n3', 'SIGSTOP');
    const value = (i: number) => Buffer.alloc(8 * 1024, i % 251);
    for (let i = 0; i < 300; i++) {
      await retryUnavailable(() => n1.put(`a${i}`, value(i), { keyspace: 'a' }));
      await retryUnavailable(() => n1.put(`c${i}`, value(i), { keyspace: 'c' }));
    }
    await c.kill('n3', 'SIGCONT');
    const n3 = kv('n3');
    const t0 = performance.now();
    const missing = async (keyspace: 'a' | 'c'): Promise<number> => {
      let count = 0;
      for (let i = 0; i < 300; i++) {
        const res = await n3.get(`${keyspace}${i}`, { keyspace }).catch(() => undefined);
        if (res === undefined || !res.value.equals(value(i))) count++;
      }
      return count;
    };
    let left = { a: 300, c: 300 };
    while (performance.now() - t0 < 20_000 && (left.a > 0 || left.c > 0)) {
      left = { a: await missing('a'), c: await missing('c') };
      if (left.a > 0 || left.c > 0) await new Promise((r) => setTimeout(r, 200));
    }
    console.log(`n3 after SIGCONT: AP ${300 - left.a}/300 and causal ${300 - left.c}/300 within ${(performance.now() - t0).toFixed(0)} ms`);
    expect(left).toEqual({ a: 0, c: 0 });
  }, 90_000);

  it('four concurrent CP gets and four concurrent CP puts of 600 KiB all succeed', async () => {
    const { kv } = await start();
    const n1 = kv('n1');
    const big = (i: number) => Buffer.alloc(600 * 1024, i);
    await retryUnavailable(() => n1.put('big', big(1)));
    const gets = await Promise.allSettled([1, 2, 3, 4].map(() => kv('n1').get('big')));
    expect(gets.map((g) => g.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
    for (const g of gets) expect((g as PromiseFulfilledResult<{ value: Buffer }>).value.value.equals(big(1))).toBe(true);
    const puts = await Promise.allSettled([1, 2, 3, 4].map((i) => kv('n2').put(`big${i}`, big(i))));
    expect(puts.map((p) => (p.status === 'rejected' ? String(p.reason) : 'ok'))).toEqual(['ok', 'ok', 'ok', 'ok']);
    for (const i of [1, 2, 3, 4]) expect((await kv('n3').get(`big${i}`)).value.equals(big(i))).toBe(true);
  }, 60_000);

  it('a 5 KB Read naming a 600 KiB key 1,024 times is answered within the byte budget, and the replica stays small', async () => {
    const { c, kv } = await start();
    // An AP keyspace: its replicas answer peers' Reads (a CP keyspace replicates through its Raft log).
    await retryUnavailable(() => kv('n1').put('big', Buffer.alloc(600 * 1024, 7), { keyspace: 'a' }));
    while (!(await kv('n2').get('big', { keyspace: 'a' })).found) await new Promise((r) => setTimeout(r, 50));
    const pid = c.pid('n2')!;
    const before = rssMb(pid);
    const peer = new ReplicaServiceClient(c.address('n2'), credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
    clients.push(peer);
    const md = new Metadata();
    md.set(NODE_ID_METADATA_KEY, 'n1');
    md.set(CLUSTER_ID_METADATA_KEY, 'replikit');
    const answers: number[] = [];
    for (let round = 0; round < 5; round++) {
      const res = await new Promise<ReadResponse>((resolve, reject) =>
        peer.read({ keyspace: 'a', keys: Array.from({ length: 1024 }, () => Buffer.from('big')) }, md, { deadline: Date.now() + 10_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
      );
      answers.push(res.entries.length);
    }
    const grownMb = rssMb(pid) - before;
    console.log(`amplifying Read: ${answers.join(', ')} entries per answer; n2 RSS ${before.toFixed(0)} MB → +${grownMb.toFixed(0)} MB`);
    // One 600 KiB entry alone exceeds the 512 KiB budget: each answer carries exactly one.
    expect(answers).toEqual([1, 1, 1, 1, 1]);
    expect(grownMb).toBeLessThan(100);
  }, 60_000);

  it('an Exchange stream that sends Reads of a 600 KiB value and never reads the answers is cut off, and the node stays small', async () => {
    const logs: string[] = [];
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap'], onLog: (id, line) => id === 'n2' && logs.push(line) });
    const c = cluster;
    await c.startAll();
    const n1 = new TestKvClient(c.address('n1'));
    clients.push(n1);
    await retryUnavailable(() => n1.put('big', Buffer.alloc(600 * 1024, 7), { keyspace: 'a' }));
    const n2 = new TestKvClient(c.address('n2'));
    clients.push(n2);
    while (!(await n2.get('big', { keyspace: 'a' })).found) await new Promise((r) => setTimeout(r, 50));
    const pid = c.pid('n2')!;
    const before = rssMb(pid);
    // The genuine n3 is paused: its own reconnecting Exchange stream would replace (and cut) the
    // fake one before the fake one's unread answers reach the limit, on a slow machine.
    process.kill(c.pid('n3')!, 'SIGSTOP');
    const peer = new ReplicaServiceClient(c.address('n2'), credentials.createInsecure());
    clients.push(peer);
    const md = new Metadata();
    md.set(NODE_ID_METADATA_KEY, 'n3');
    md.set(CLUSTER_ID_METADATA_KEY, 'replikit');
    const stream = peer.exchange(md);
    stream.pause(); // never reads an answer
    stream.on('error', () => {});
    for (let i = 0; i < 1200; i++) stream.write({ callId: BigInt(i + 1), hlc: undefined, read: { keyspace: 'a', keys: [Buffer.from('big')] } });
    const deadline = performance.now() + 15_000;
    // (The genuine n3's stream is cut first, replaced by this one: wait for this one's cut.)
    const backpressureCut = (l: string) => /cut off the Exchange stream of n3: the peer read none of \d+ KiB of answers/.test(l);
    while (performance.now() < deadline && !logs.some(backpressureCut)) await new Promise((r) => setTimeout(r, 100));
    const grownMb = rssMb(pid) - before;
    console.log(`non-reading Exchange stream: ${logs.filter((l) => l.includes('cut off')).length} cut-off line(s); n2 RSS +${grownMb.toFixed(0)} MB`);
    expect(logs.some(backpressureCut), logs.filter((l) => l.includes('cut off')).join('\n')).toBe(true);
    expect(grownMb).toBeLessThan(150);
    process.kill(c.pid('n3')!, 'SIGCONT');
    // The real peers' streams are untouched: writes and reads go on.
    await retryUnavailable(() => n1.put('after', 'v'));
    expect((await retryUnavailable(() => new TestKvClient(c.address('n2')).get('after'))).value.toString()).toBe('v');
  }, 60_000);
});

