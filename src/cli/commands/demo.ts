import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { ClusterServiceClient } from '../../gen/replikit/v1/cluster_service.js';
import { KvServiceClient } from '../../gen/replikit/v1/kv_service.js';
import { parseArgs, UsageError } from '../args.js';
import { insecure, unary } from '../client.js';
import { LocalCluster } from '../local-cluster.js';
import type { Command } from '../main.js';

/** Each demo call's deadline: ample for a healthy LAN cluster, short enough to show a fast refusal. */
const CALL_TIMEOUT_MS = 5_000;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, string]> {
  const t0 = performance.now();
  const value = await fn();
  return [value, `${(performance.now() - t0).toFixed(1)} ms`];
}

/** Retries a call refused with UNAVAILABLE (safe: nothing happened) for up to 5 s. */
async function retryUnavailable<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = performance.now() + 5_000;
  for (;;) {
    try {
      return await fn();
    } catch (err: unknown) {
      if ((err as ServiceError).code !== Status.UNAVAILABLE || performance.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * `npm start`: a 3-node CP cluster of real `serve` processes on loopback, in temporary data
 * directories, shown surviving one crash and refusing (fast) without a majority, then recovering
 * every acknowledged write after restarts. Cleans up on every exit path, Ctrl-C included.
 */
export const demoCommand: Command = {
  summary: 'run a 3-node cluster on loopback and show it survive a crash',
  usage: 'usage: replikit demo',
  async run(argv) {
    const args = parseArgs(argv, {});
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);

    const cluster = await LocalCluster.create({ size: 3 });
    const clients = new Map<string, KvServiceClient>();
    const onSignal = () => {
      say('\ninterrupted: stopping the cluster and removing its data');
      cluster.killAllNow();
      process.exit(130);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const client = (id: string) => {
      let c = clients.get(id);
      if (c === undefined) clients.set(id, (c = new KvServiceClient(cluster.address(id), insecure())));
      return c;
    };
    const put = (id: string, key: string, value: string) =>
      unary(client(id).put.bind(client(id)), { keyspace: 'default', key: Buffer.from(key), value: Buffer.from(value), sessionToken: Buffer.alloc(0), ack: 0, lease: 0n }, CALL_TIMEOUT_MS);
    const status = new Map<string, ClusterServiceClient>();
    /** Waits (up to 5 s) until `id` believes at most `alive` replicas of `default` alive; false if it never does. */
    const untilAlive = async (id: string, alive: number): Promise<boolean> => {
      let c = status.get(id);
      if (c === undefined) status.set(id, (c = new ClusterServiceClient(cluster.address(id), insecure())));
      const deadline = performance.now() + 5_000;
      while (performance.now() < deadline) {
        const s = await unary(c.status.bind(c), {}, CALL_TIMEOUT_MS).catch(() => undefined);
        if ((s?.keyspaces.find((k) => k.name === 'default')?.aliveReplicas ?? alive + 1) <= alive) return true;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return false;
    };
    const get = async (id: string, key: string) => {
      const res = await unary(client(id).get.bind(client(id)), { keyspace: 'default', key: Buffer.from(key), sessionToken: Buffer.alloc(0) , consistency: 0 }, CALL_TIMEOUT_MS);
      return res.found ? res.value.toString() : '(not found)';
    };

    try {
      say('replikit demo: a 3-node CP (linearizable) cluster of real processes on loopback');
      say(`data directories under ${cluster.root}\n`);
      const [, startup] = await timed(() => cluster.startAll());
      say(`1. started n1, n2, n3 (${cluster.ids.map((id) => cluster.address(id)).join(', ')}) in ${startup}`);

      const acknowledged: [string, string][] = [];
      for (const [i, id] of ['n1', 'n2', 'n3'].entries()) {
        const key = `city-${i + 1}`;
        const value = ['Lisbon', 'Nairobi', 'Osaka'][i]!;
        const [, t] = await timed(() => put(id, key, value));
        acknowledged.push([key, value]);
        say(`2. put ${key}=${value} through ${id}: acknowledged by a majority in ${t}`);
      }
      const [value, t] = await timed(() => get('n3', 'city-1'));
      say(`3. get city-1 through n3 (written through n1): ${value} in ${t}`);

      await cluster.kill('n3', 'SIGKILL');
      say('\n4. kill -9 n3: two of three nodes remain, still a majority');
      const [, t4] = await timed(() => put('n1', 'city-4', 'Quito'));
      acknowledged.push(['city-4', 'Quito']);
      say(`   put city-4=Quito through n1: acknowledged in ${t4}`);
      const [v4, t4b] = await timed(() => get('n2', 'city-4'));
      say(`   get city-4 through n2: ${v4} in ${t4b}`);

      await cluster.kill('n2', 'SIGKILL');
      say('\n5. kill -9 n2: one node left, no majority');
      // n1 learns it from its closed connection to n2 within milliseconds, but a put that arrives
      // before that is proposed, cannot commit, and ends as "outcome unknown" when n1 steps down:
      // wait until n1 counts n2 out, as an operator's Status would show.
      const [noticed, tn] = await timed(() => untilAlive('n1', 1));
      say(noticed ? `   n1 counts n2 out after ${tn}` : `   n1 still counts n2 alive after ${tn}`);
      const t0 = performance.now();
      try {
        await put('n1', 'city-5', 'Reykjavik');
        say('   put city-5 through n1 unexpectedly succeeded');
        return 1;
      } catch (err: unknown) {
        const e = err as ServiceError;
        say(`   put city-5 through n1 refused in ${(performance.now() - t0).toFixed(1)} ms: ${Status[e.code]}: ${e.details}`);
      }

      const [, t6] = await timed(() => Promise.all([cluster.start('n2'), cluster.start('n3')]));
      say(`\n6. restarted n2 and n3 from their data directories in ${t6}`);
      // n1's channels to them reconnect after a short backoff; until then reads are refused
      // with UNAVAILABLE, which means "nothing happened, retry": so retry, as a client should.
      const [, t7] = await timed(() => retryUnavailable(() => get('n1', 'city-1')));
      say(`   n1 reaches a majority again after ${t7}`);
      let missing = 0;
      for (const id of cluster.ids) {
        const values = await Promise.all(acknowledged.map(([key]) => retryUnavailable(() => get(id, key))));
        const ok = values.every((v, i) => v === acknowledged[i]![1]);
        if (!ok) missing++;
        say(`   through ${id}: ${acknowledged.map(([k], i) => `${k}=${values[i]}`).join(', ')} ${ok ? '(all acknowledged writes present)' : '(MISSING WRITES)'}`);
      }
      say(missing === 0 ? '\ndone: every acknowledged write survived; cleaning up' : '\nFAILED: acknowledged writes are missing');
      return missing === 0 ? 0 : 1;
    } finally {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      for (const c of clients.values()) c.close();
      for (const c of status.values()) c.close();
      await cluster.stop();
    }
  },
};
