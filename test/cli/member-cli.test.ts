/**
 * `replikit member` and `serve --join` against real `serve` processes: the documented commands,
 * their refusals (exit 1, naming why, nothing changed), usage errors (exit 2, before any call),
 * and a node of another cluster id refused by the cluster, which logs it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT, cli } from '../support/cli.js';

let cluster: LocalCluster;
const logs: string[] = [];

beforeAll(async () => {
  if (!BUILT) return;
  cluster = await LocalCluster.create({ size: 3, memory: true, onLog: (id, line) => logs.push(`${id} ${line}`) });
  await cluster.startAll();
});
afterAll(async () => {
  await cluster?.stop();
});

describe('replikit member: usage', () => {
  it.each([
    [['member', '--target', '127.0.0.1:1'], /needs an action: list, add, promote or remove/],
    [['member', 'frob', '--target', '127.0.0.1:1'], /unknown member action "frob"/],
    [['member', 'add', 'n9', '--target', '127.0.0.1:1'], /member add takes ID=HOST:PORT/],
    [['member', 'add', 'n9=nowhere', '--target', '127.0.0.1:1'], /a member's address is HOST:PORT/],
    [['member', 'add', 'bad id=127.0.0.1:5', '--target', '127.0.0.1:1'], /a member id is 1 to 64 characters/],
    [['member', 'promote', '--target', '127.0.0.1:1'], /member promote needs the member's id/],
    [['member', 'list', 'extra', '--target', '127.0.0.1:1'], /member list takes no argument/],
    [['serve', '--id', 'n9', '--listen', '127.0.0.1:1', '--join', '127.0.0.1:2', '--peers', 'n1=127.0.0.1:3'], /give --join or --peers/],
    [['serve', '--id', 'n9', '--listen', '0.0.0.0:7000', '--join', '127.0.0.1:2'], /--join needs --advertise HOST:PORT/],
  ])('%j exits 2', async (args, message) => {
    const r = await cli(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});

describe.skipIf(!BUILT)('replikit member against 3 serve processes', () => {
  it('lists, adds a learner, refuses to promote it while it cannot say it caught up, removes it, and never takes its id back', async () => {
    const target = cluster.address('n2');
    const list = await cli(['member', 'list', '--target', target]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/cluster replikit, membership version 0/);
    expect(list.stdout).toMatch(/n1 +127\.0\.0\.1:\d+ +voter/);

    const [port] = await freePorts(1);
    const add = await cli(['member', 'add', `n9=127.0.0.1:${port}`, '--target', target, '--json']);
    expect(add.code, add.stderr).toBe(0);
    const added = JSON.parse(add.stdout) as { version: string; members: { nodeId: string; role: string }[] };
    expect(added.members.find((m) => m.nodeId === 'n9')?.role).toBe('MEMBER_ROLE_LEARNER');
    expect(added.version).toBe('1');

    const again = await cli(['member', 'add', `n9=127.0.0.1:${port}`, '--target', target]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/FAILED_PRECONDITION.*n9 is already a learner/);
    const promote = await cli(['member', 'promote', 'n9', '--target', cluster.address('n3')]);
    expect(promote.code).toBe(1);
    expect(promote.stderr).toMatch(/FAILED_PRECONDITION.*n9 did not say how far it has caught up/);
    const unknown = await cli(['member', 'promote', 'n42', '--target', target]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/INVALID_ARGUMENT.*n42 is not a member of the cluster/);

    const remove = await cli(['member', 'remove', 'n9', '--target', cluster.address('n1')]);
    expect(remove.code, remove.stderr).toBe(0);
    expect(remove.stdout).not.toMatch(/n9/);
    const back = await cli(['member', 'add', `n9=127.0.0.1:${port}`, '--target', target]);
    expect(back.code).toBe(1);
    expect(back.stderr).toMatch(/n9 was a member and was removed/);
  }, 60_000);

  it('serve --join of another cluster id is refused (exit 1), and the cluster logs it', async () => {
    const [port] = await freePorts(1);
    const r = await cli(['serve', '--id', 'stranger', '--listen', `127.0.0.1:${port}`, '--memory', '--cluster-id', 'elsewhere', '--join', cluster.address('n1')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--join: .*refused to add stranger: .*asked to join cluster "elsewhere", but this is cluster "replikit"/);
    expect(logs.some((l) => l.includes('refused to add stranger') && l.includes('elsewhere'))).toBe(true);
    const list = await cli(['member', 'list', '--target', cluster.address('n1'), '--json']);
    expect(list.stdout).not.toMatch(/stranger/);
  }, 60_000);
});
