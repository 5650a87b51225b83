import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { VectorClock } from '../../src/clock/index.js';
import { sessionTokenCodec } from '../../src/transport/session-token.js';
import { BUILT, cli } from '../support/cli.js';
import { TestKvClient } from '../support/kv-client.js';

let cluster: LocalCluster | undefined;
const clients: TestKvClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await cluster?.stop();
  cluster = undefined;
});

describe.skipIf(!BUILT)('3 real serve processes, causal keyspace (--policy causal)', () => {
  it('a session that writes 50 keys through n1 reads the last one through n2 with its token', async () => {
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', 'causal'] });
    await cluster.startAll();
    const n1 = new TestKvClient(cluster.address('n1'));
    const n2 = new TestKvClient(cluster.address('n2'));
    clients.push(n1, n2);
    for (let round = 0; round < 5; round++) {
      let token: Buffer = Buffer.alloc(0);
      for (let i = 0; i < 50; i++) {
        const res = await n1.put(`r${round}-key-${i}`, `value-${i}`, { sessionToken: token });
        token = res.sessionToken;
      }
      expect(token.byteLength).toBeGreaterThan(0);
      // At once, through the other node: the token makes n2 wait until it has the writes.
      const read = await n2.get(`r${round}-key-49`, { sessionToken: token });
      expect(read.found, `round ${round}`).toBe(true);
      expect(read.value.toString()).toBe('value-49');
    }

    // The same through the CLI: --json prints the token as base64 sessionToken, --session takes it.
    const put = JSON.parse((await cli(['put', '--target', cluster.address('n3'), '--json', 'cli-key', 'cli-value'])).stdout) as { sessionToken: string };
    const get = await cli(['get', '--target', cluster.address('n1'), '--session', put.sessionToken, 'cli-key']);
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout.split('\n')[0]).toBe('cli-value');

    const forged = Buffer.from(put.sessionToken, 'base64');
    forged[forged.length - 1]! ^= 1;
    const bad = await cli(['get', '--target', cluster.address('n1'), '--session', forged.toString('base64'), 'cli-key']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT: the session token was altered or forged/);

    const foreign = Buffer.from(sessionTokenCodec('elsewhere').encode('default', VectorClock.from({ n1: 1 }))).toString('base64');
    const other = await cli(['get', '--target', cluster.address('n1'), '--session', foreign, 'cli-key']);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/FAILED_PRECONDITION: the session token was issued by cluster "elsewhere"/);
  });
});
