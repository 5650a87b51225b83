import { credentials, Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterServiceClient, MemberRole, type Membership } from '../../src/gen/replikit/v1/cluster_service.js';
import { ReplicaNode } from '../../src/node/replica-node.js';
import { cpQuorum } from '../../src/policy/cp/cp-quorum.js';
import { freePorts } from '../support/free-ports.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';
import { waitFor } from '../support/status-client.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));
/** Fast Raft ticks, so that elections and catch-up take tens of milliseconds. */
const KEYSPACES = { default: cpQuorum({ timing: { tickMs: 20 } }) };

let nodes: ReplicaNode[] = [];
const clients: ClusterServiceClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(nodes.map((n) => n.close(100).catch(() => {})));
  nodes = [];
});

function cluster(address: string): ClusterServiceClient {
  const client = new ClusterServiceClient(address, credentials.createInsecure());
  clients.push(client);
  return client;
}

type Call<Req> = (req: Req, md: Metadata, options: { deadline: Date }, cb: (err: ServiceError | null, res?: { membership?: Membership }) => void) => unknown;

function call<Req>(client: ClusterServiceClient, method: 'addMember' | 'promoteMember' | 'removeMember' | 'listMembers', request: Req): Promise<Membership> {
  const fn = (client[method] as unknown as Call<Req>).bind(client);
  return new Promise((resolve, reject) => fn(request, new Metadata(), { deadline: new Date(Date.now() + 5_000) }, (err, res) => (err ? reject(err) : resolve(res!.membership!))));
}

async function refused<Req>(client: ClusterServiceClient, method: 'addMember' | 'promoteMember' | 'removeMember', request: Req): Promise<ServiceError> {
  try {
    await call(client, method, request);
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error(`${method} ${JSON.stringify(request)} was accepted`);
}

const roles = (m: Membership) => Object.fromEntries(m.members.map((x) => [x.nodeId, x.role === MemberRole.MEMBER_ROLE_VOTER ? 'voter' : 'learner']));

function node(id: string): ReplicaNode {
  return nodes.find((n) => n.nodeId === id)!;
}

function raftOf(n: ReplicaNode) {
  return n.core.policyOf('default').raftStatus!()!;
}

describe('membership changes at run time, over gRPC', () => {
  it('grows 3 → 4 with a learner that catches up and is promoted, then removes the leader; writes go on throughout', async () => {
    nodes = await startInProcessCluster(3, () => ({ keyspaces: KEYSPACES }));
    await Promise.all(nodes.map((n) => n.serving));
    await node('n1').core.put('default', enc('before'), enc('1'));
    const [port4] = await freePorts(1);
    const address4 = `127.0.0.1:${port4}`;

    // Asked of a node that need not be the membership's leader: it forwards.
    const added = await call(cluster(node('n2').address!), 'addMember', { nodeId: 'n4', address: address4, clusterId: '' });
    expect(roles(added)).toEqual({ n1: 'voter', n2: 'voter', n3: 'voter', n4: 'learner' });
    expect(Number(added.version)).toBe(1);
    expect(added.members.find((m) => m.nodeId === 'n4')!.address).toBe(address4);

    nodes.push(
      await ReplicaNode.start({
        nodeId: 'n4',
        listen: address4,
        join: true,
        keyspaces: KEYSPACES,
        peers: nodes.map((n) => ({ id: n.nodeId, address: n.address! })),
      }),
    );
    await node('n4').serving;
    // The learner receives the keyspace's log: the write made before it existed is there.
    await waitFor(async () => dec((await node('n4').core.get('default', enc('before'), { consistency: 'serializable' })).value) === '1', 10_000, 'n4 to catch up');
    const promoted = await call(cluster(node('n3').address!), 'promoteMember', { nodeId: 'n4' });
    expect(roles(promoted)).toEqual({ n1: 'voter', n2: 'voter', n3: 'voter', n4: 'voter' });
    // The data keyspace's own group follows: its leader promotes n4 there too.
    await waitFor(async () => nodes.every((n) => n.core.membership.voters.includes('n4')), 5_000, 'every node to see n4 a voter');
    for (const n of nodes) {
      const metrics = await n.metrics.scrape();
      expect(metrics).toMatch(new RegExp(`^replikit_membership_version\\{node="${n.nodeId}"\\} 2$`, 'm'));
      expect(metrics).toMatch(new RegExp(`^replikit_membership_members\\{role="voter",node="${n.nodeId}"\\} 4$`, 'm'));
    }
    const leader = raftOf(node('n1')).leader!;
    await waitFor(async () => raftOf(node(leader)).followers.some((f) => f.id === 'n4'), 5_000, 'the leader to replicate to n4');
    await node('n4').core.put('default', enc('via-n4'), enc('2'));
    expect(dec((await node('n1').core.get('default', enc('via-n4'))).value)).toBe('2');

    // Remove the data keyspace's leader: it hands over, the others go on.
    const afterRemoval = await call(cluster(node('n4').address!), 'removeMember', { nodeId: leader });
    expect(Object.keys(roles(afterRemoval)).sort()).toEqual(['n1', 'n2', 'n3', 'n4'].filter((id) => id !== leader));
    await waitFor(async () => node(leader).core.removed, 5_000, `the removed node ${leader} to know it (system leader ${node("n2").core.systemGroup?.leader}, its committed members ${node(leader).core.membership.members.map((m) => m.id)})`);
    const survivor = nodes.find((n) => n.nodeId !== leader)!;
    await waitFor(async () => {
      try {
        await survivor.core.put('default', enc('after'), enc('3'), { timeoutMs: 1_000 });
        return true;
      } catch {
        return false;
      }
    }, 10_000, 'a write after the removal');
    for (const n of nodes.filter((x) => x.nodeId !== leader)) {
      expect(dec((await n.core.get('default', enc('after'), { timeoutMs: 3_000 })).value)).toBe('3');
      expect(dec((await n.core.get('default', enc('before'))).value)).toBe('1');
    }
    await expect(node(leader).core.put('default', enc('x'), enc('y'))).rejects.toMatchObject({ reason: 'NODE_REMOVED' });
    // Its health says so: a load balancer or Kubernetes stops sending it anything.
    expect(node(leader).health.serving).toBe(false);
    expect(node(leader).health.reasons.join('; ')).toMatch(/was removed from the cluster/);
    // Removed means gone for good: the id cannot come back.
    const again = await refused(cluster(survivor.address!), 'addMember', { nodeId: leader, address: '127.0.0.1:1', clusterId: '' });
    expect(again.code).toBe(Status.FAILED_PRECONDITION);
    expect(again.details).toMatch(/removed; a node never comes back under a removed id/);
  }, 60_000);

  it('refuses bad changes with the most specific status, naming why; nothing changes', async () => {
    nodes = await startInProcessCluster(3, () => ({ keyspaces: KEYSPACES }));
    await Promise.all(nodes.map((n) => n.serving));
    const c = cluster(node('n1').address!);
    const before = await call(c, 'listMembers', {});
    expect(Number(before.version)).toBe(0);

    const unknown = await refused(c, 'promoteMember', { nodeId: 'n9' });
    expect([unknown.code, unknown.details]).toEqual([Status.INVALID_ARGUMENT, expect.stringMatching(/n9 is not a member of the cluster; the members are n1 \(voter\), n2 \(voter\), n3 \(voter\)/)]);
    const existing = await refused(c, 'addMember', { nodeId: 'n2', address: '127.0.0.1:1', clusterId: '' });
    expect([existing.code, existing.details]).toEqual([Status.FAILED_PRECONDITION, expect.stringMatching(/n2 is already a voter/)]);
    const sameAddress = await refused(c, 'addMember', { nodeId: 'n5', address: node('n3').address!, clusterId: '' });
    expect([sameAddress.code, sameAddress.details]).toEqual([Status.FAILED_PRECONDITION, expect.stringMatching(/already the address of member n3/)]);
    const otherCluster = await refused(c, 'addMember', { nodeId: 'n5', address: '127.0.0.1:2', clusterId: 'elsewhere' });
    expect([otherCluster.code, otherCluster.details]).toEqual([Status.FAILED_PRECONDITION, expect.stringMatching(/asked to join cluster "elsewhere", but this is cluster "replikit"/)]);
    const badId = await refused(c, 'addMember', { nodeId: 'bad id!', address: '127.0.0.1:2', clusterId: '' });
    expect(badId.code).toBe(Status.INVALID_ARGUMENT);
    const badAddress = await refused(c, 'addMember', { nodeId: 'n5', address: 'nowhere', clusterId: '' });
    expect([badAddress.code, badAddress.details]).toEqual([Status.INVALID_ARGUMENT, expect.stringMatching(/HOST:PORT/)]);

    // A learner that never started cannot be promoted: it cannot say how far it caught up.
    await call(c, 'addMember', { nodeId: 'n5', address: '127.0.0.1:3', clusterId: '' });
    const behind = await refused(c, 'promoteMember', { nodeId: 'n5' });
    expect([behind.code, behind.details]).toEqual([Status.FAILED_PRECONDITION, expect.stringMatching(/n5 did not say how far it has caught up/)]);

    // With n3 down, removing n2 would leave n1 and n3 of which only n1 is alive.
    await node('n3').close(100);
    await waitFor(async () => !node('n1').failureDetection.view.isAlive('n3') && !node('n2').failureDetection.view.isAlive('n3'), 10_000, 'n1 and n2 to see n3 gone');
    const noMajority = await refused(c, 'removeMember', { nodeId: 'n2' });
    expect([noMajority.code, noMajority.details]).toEqual([Status.FAILED_PRECONDITION, expect.stringMatching(/would leave 2 voters \((n1, n3|n3, n1)\) of which 1 are alive/)]);
    const after = await call(c, 'listMembers', {});
    expect(roles(after)).toEqual({ n1: 'voter', n2: 'voter', n3: 'voter', n5: 'learner' });
  }, 60_000);

  it('with autoPromote, the membership leader promotes a learner by itself once it has caught up', async () => {
    nodes = await startInProcessCluster(3, () => ({ keyspaces: KEYSPACES, autoPromote: true }));
    await Promise.all(nodes.map((n) => n.serving));
    for (let i = 0; i < 300; i++) await node('n1').core.put('default', enc(`k${i}`), enc('v'));
    const [port4] = await freePorts(1);
    const address4 = `127.0.0.1:${port4}`;
    await call(cluster(node('n1').address!), 'addMember', { nodeId: 'n4', address: address4, clusterId: '' });
    nodes.push(await ReplicaNode.start({ nodeId: 'n4', listen: address4, join: true, autoPromote: true, keyspaces: KEYSPACES, peers: nodes.map((n) => ({ id: n.nodeId, address: n.address! })) }));
    await waitFor(async () => node('n1').core.membership.voters.includes('n4'), 15_000, 'n4 promoted without a command');
    // Promoted only once caught up: it holds the keys written before (all but the last few entries).
    expect(dec((await node('n4').core.get('default', enc('k200'), { consistency: 'serializable' })).value)).toBe('v');
  }, 60_000);

  it('refuses a second change while one is under way (FAILED_PRECONDITION), and the first ends with its outcome unknown', async () => {
    nodes = await startInProcessCluster(3, () => ({ keyspaces: KEYSPACES, requestTimeoutMs: 1_500 }));
    await Promise.all(nodes.map((n) => n.serving));
    await waitFor(async () => nodes.some((n) => n.core.systemGroup?.role === 'leader'), 10_000, 'a membership leader');
    const leader = nodes.find((n) => n.core.systemGroup?.role === 'leader')!;
    // With both followers gone the first change cannot commit, and stays under way.
    await Promise.all(nodes.filter((n) => n !== leader).map((n) => n.close(100)));
    const c = cluster(leader.address!);
    const first = call(c, 'addMember', { nodeId: 'n8', address: '127.0.0.1:8', clusterId: '' }).catch((e: ServiceError) => e);
    await new Promise((r) => setTimeout(r, 100));
    const second = await refused(c, 'addMember', { nodeId: 'n9', address: '127.0.0.1:9', clusterId: '' });
    expect([second.code, second.details]).toEqual([Status.FAILED_PRECONDITION, expect.stringMatching(/another membership change of _cluster is under way/)]);
    const outcome = (await first) as ServiceError;
    expect([Status.DEADLINE_EXCEEDED, Status.UNAVAILABLE]).toContain(outcome.code);
  }, 60_000);
});
