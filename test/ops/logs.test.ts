import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT, cli } from '../support/cli.js';
import { TestKvClient } from '../support/kv-client.js';
import { stateOf, waitFor } from '../support/status-client.js';

let cluster: LocalCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

interface LogLine {
  level: string;
  time: string;
  msg: string;
  node: string;
  [field: string]: unknown;
}

describe.skipIf(!BUILT)('structured logs of real serve processes (pino, --log-level)', () => {
  it('writes JSON lines, one per state change and none per request at info; --log-level warn keeps only warnings', async () => {
    const logs = new Map<string, LogLine[]>([['n1', []], ['n2', []], ['n3', []]]);
    cluster = await LocalCluster.create({
      size: 3,
      serveArgs: ['--heartbeat-interval-ms', '100', '--keyspace', 'a=ap'],
      onLog: (id, line) => logs.get(id)!.push(JSON.parse(line) as LogLine),
    });
    const c = cluster;
    await Promise.all([c.start('n1'), c.start('n2', ['--log-level', 'warn']), c.start('n3')]);
    for (const peer of ['n2', 'n3']) await waitFor(async () => (await stateOf(c.address('n1'), peer)).state === 'ALIVE', 5_000, `n1 hears ${peer}`);
    const n1 = logs.get('n1')!;
    for (const line of n1) {
      expect(line.node).toBe('n1');
      expect(['debug', 'info', 'warn', 'error']).toContain(line.level);
      expect(new Date(line.time).toISOString()).toBe(line.time);
      expect(typeof line.msg).toBe('string');
    }
    expect(n1.map((l) => l.msg)).toEqual(expect.arrayContaining(['node started', 'member n2 is ALIVE', 'member n3 is ALIVE']));
    // One line per change, never a repeat: each peer's logged states alternate (a loaded machine
    // may make a peer SUSPECT for a moment, which is a change of its own).
    for (const peer of ['n2', 'n3']) {
      const states = n1.filter((l) => l.peer === peer && typeof l.to === 'string').map((l) => l.to as string);
      expect(states[0], `${peer}'s first state`).toBe('ALIVE');
      expect(states.filter((s, i) => i > 0 && s === states[i - 1]), `${peer}: ${states.join(' → ')}`).toEqual([]);
    }

    // 200 requests, successful and failed, write nothing at info.
    const before = n1.length;
    const kv = new TestKvClient(c.address('n1'));
    try {
      for (let i = 0; i < 50; i++) {
        await kv.put(`k${i}`, 'v');
        await kv.get(`k${i}`);
        await kv.put(`a${i}`, 'v', { keyspace: 'a' });
        await kv.get('k', { keyspace: 'no-such-keyspace' }).catch(() => undefined);
      }
    } finally {
      kv.close();
    }
    // (On a loaded machine a peer may be suspected for a moment meanwhile: that is a state change, and says so.)
    const STATE_CHANGE = /^member \S+ is (ALIVE|SUSPECT|DEAD)$|quorum|SERVING|clock/;
    expect(n1.slice(before).filter((l) => !STATE_CHANGE.test(l.msg))).toEqual([]);
    const afterRequests = n1.length;

    // A peer dies: one line for each state it passes through, at info, with the facts as fields.
    await c.kill('n3', 'SIGKILL');
    await waitFor(async () => n1.some((l) => l.msg === 'member n3 is DEAD'), 3_000, 'n1 logs n3 DEAD');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const changes = n1.slice(afterRequests).filter((l) => /^member n3/.test(l.msg));
    expect(changes.map((l) => l.msg).slice(-2)).toEqual(['member n3 is SUSPECT', 'member n3 is DEAD']);
    expect(changes.at(-1)).toMatchObject({ level: 'info', peer: 'n3', from: 'SUSPECT', to: 'DEAD' });
    // n1 and n2 still make a quorum: no quorum line, no NOT_SERVING line.
    expect(n1.slice(afterRequests).filter((l) => /quorum|SERVING/.test(l.msg))).toEqual([]);

    // n2 runs at --log-level warn: its info lines (started, members up and down) are dropped.
    const n2 = logs.get('n2')!;
    expect(n2.filter((l) => l.level === 'info' || l.level === 'debug')).toEqual([]);

    const bad = await cli(['serve', '--id', 'x', '--listen', '127.0.0.1:0', '--log-level', 'loud']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--log-level must be one of debug, info, warn, error, not "loud"/);
  });
});
