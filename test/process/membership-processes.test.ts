/**
 * Membership changes on real `replikit serve` processes, with writes to a CP and an AP keyspace
 * running throughout: grow 3 → 5 (`serve --join`, then `replikit member promote` once caught
 * up), shrink 5 → 3 (`member remove`, then SIGTERM), and replace a node killed with kill -9 by a
 * new one on an empty data directory. At the end: the CP history is linearizable, every AP write
 * acknowledged with ack=quorum is on every remaining member, and the time each change took and
 * the longest write stall are reported.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { ReplikitClient } from '../../src/client/index.js';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { AckLevel, KvServiceClient } from '../../src/gen/replikit/v1/kv_service.js';
import { HistoryRecorder } from '../../src/testing/history.js';
import { checkLinearizability } from '../../src/testing/linearizability.js';
import { BUILT, cli } from '../support/cli.js';

let cluster: LocalCluster | undefined;
afterAll(async () => {
  await cluster?.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, ms: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
    await sleep(100);
  }
}

function apPut(address: string, key: string): Promise<void> {
  const client = new KvServiceClient(address, credentials.createInsecure());
  return new Promise<void>((resolve, reject) =>
    client.put(
      { keyspace: 'ap', key: Buffer.from(key), value: Buffer.from('v'), sessionToken: Buffer.alloc(0), ack: AckLevel.ACK_LEVEL_QUORUM, lease: 0n },
      new Metadata(),
      { deadline: Date.now() + 2_000 },
      (err: ServiceError | null) => (err ? reject(err) : resolve()),
    ),
  ).finally(() => client.close());
}

function apHas(address: string, key: string): Promise<boolean> {
  const client = new KvServiceClient(address, credentials.createInsecure());
  return new Promise<boolean>((resolve, reject) =>
    client.get({ keyspace: 'ap', key: Buffer.from(key), sessionToken: Buffer.alloc(0), consistency: 0 }, new Metadata(), { deadline: Date.now() + 2_000 }, (err, res) =>
      err ? reject(err) : resolve(res!.found),
    ),
  ).finally(() => client.close());
}

describe.skipIf(!BUILT)('membership changes on real processes, writes running throughout', () => {
  it('grows 3 → 5, shrinks 5 → 3 and replaces a kill -9ed node; nothing acknowledged is lost, the CP history is linearizable', async () => {
    const c = (cluster = await LocalCluster.create({ size: 3, serveArgs: ['--keyspace', 'ap=ap'] }));
    await c.startAll();
    const live = new Set(c.ids);
    const endpoints = () => [...live].map((id) => c.address(id));
    const member = async (...args: string[]) => {
      const target = endpoints()[0]!;
      const r = await cli(['member', ...args, '--target', target, '--json']);
      if (r.code !== 0) throw new Error(`member ${args.join(' ')}: ${r.stderr.trim()}`);
      return JSON.parse(r.stdout) as { version: string; members: { nodeId: string; role: string }[] };
    };

    // The writers: CP registers through a failover client, AP keys through any live node.
    const history = new HistoryRecorder(() => performance.now());
    const client = await ReplikitClient.connect({ endpoints: [...c.ids.map((id) => c.address(id))] });
    let stop = false;
    let cpAcked = 0;
    let lastCpAck = performance.now();
    let longestStallMs = 0;
    const apAcked: string[] = [];
    const cpWriter = async (process: number) => {
      let n = 0;
      while (!stop) {
        const key = `r${process % 2}`;
        const write = Math.random() < 0.7;
        const value = write ? `${process}-${n++}` : null;
        const op = history.invoke(process, write ? 'write' : 'read', key, value);
        try {
          if (write) {
            await client.keyspace('default').put(key, value!);
            op.ok();
            cpAcked++;
            const now = performance.now();
            longestStallMs = Math.max(longestStallMs, now - lastCpAck);
            lastCpAck = now;
          } else {
            const got = await client.keyspace('default').get(key);
            op.ok(got.value === undefined ? null : Buffer.from(got.value).toString());
          }
        } catch (error) {
          // UNAVAILABLE: nothing happened; anything else after the call went out: unknown.
          const code = (error as { code?: number }).code;
          if (code === 14 && !write) op.fail();
          else op.info();
          await sleep(20);
        }
      }
    };
    const apWriter = async () => {
      let n = 0;
      while (!stop) {
        const key = `ap-${n++}`;
        const targets = endpoints();
        try {
          await apPut(targets[n % targets.length]!, key);
          apAcked.push(key);
        } catch {
          await sleep(20);
        }
      }
    };
    const writers = [cpWriter(1), cpWriter(2), cpWriter(3), apWriter()];
    await until('the first CP writes', 15_000, async () => (cpAcked > 10 ? true : undefined));

    const changes: { what: string; ms: number }[] = [];
    const timed = async (what: string, body: () => Promise<void>) => {
      const started = performance.now();
      await body();
      changes.push({ what, ms: Math.round(performance.now() - started) });
    };
    const join = async (id: string) => {
      await c.start(id, [], { join: endpoints() });
      live.add(id);
      // Promotion is refused while it is behind; the operator retries until it has caught up.
      await until(`${id} to be promoted`, 30_000, async () => member('promote', id));
    };

    // Grow 3 → 5.
    const n4 = await c.addSlot();
    await timed(`add and promote ${n4}`, () => join(n4));
    const n5 = await c.addSlot();
    await timed(`add and promote ${n5}`, () => join(n5));
    let m = await member('list');
    expect(m.members.map((x) => `${x.nodeId}:${x.role}`).sort()).toEqual(['n1:MEMBER_ROLE_VOTER', 'n2:MEMBER_ROLE_VOTER', 'n3:MEMBER_ROLE_VOTER', `${n4}:MEMBER_ROLE_VOTER`, `${n5}:MEMBER_ROLE_VOTER`]);

    // Shrink 5 → 3: remove, then stop the process.
    for (const id of [n4, n5]) {
      await timed(`remove ${id}`, async () => {
        await member('remove', id);
        live.delete(id);
        await c.kill(id, 'SIGTERM');
      });
    }

    // Replace n3, killed with kill -9, by a new node on an empty data directory.
    await c.kill('n3', 'SIGKILL');
    live.delete('n3');
    await timed('remove n3 (killed)', async () => {
      await until('n3 removed', 15_000, async () => member('remove', 'n3'));
    });
    const n6 = await c.addSlot();
    await timed(`add and promote ${n6} (empty data directory)`, () => join(n6));
    m = await member('list');
    expect(m.members.map((x) => x.nodeId).sort()).toEqual(['n1', 'n2', n6].sort());

    await sleep(500);
    stop = true;
    await Promise.all(writers);
    client.close();

    // Every AP write acknowledged with ack=quorum is on every remaining member, once anti-entropy has run.
    const missing = await until('AP writes everywhere', 30_000, async () => {
      const gaps: string[] = [];
      for (const id of live) for (const key of apAcked) if (!(await apHas(c.address(id), key))) gaps.push(`${id}:${key}`);
      return gaps.length === 0 ? gaps : undefined;
    });
    expect(missing).toEqual([]);
    const verdict = checkLinearizability(history.operations(), { timeoutMs: 60_000 });
    expect(verdict.verdict, verdict.explanation).toBe('linearizable');
    console.log(
      `membership on real processes: ${cpAcked} CP writes and ${apAcked.length} AP writes acknowledged, 0 lost; longest CP write stall ${Math.round(longestStallMs)} ms; ` +
        changes.map((x) => `${x.what} ${x.ms} ms`).join(', '),
    );
    expect(cpAcked).toBeGreaterThan(50);
  }, 240_000);
});
