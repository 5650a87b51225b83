import { Client, credentials, Metadata } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { HeartbeatRequest } from '../../src/gen/replikit/v1/replica_service.js';
import { ReplicaNode } from '../../src/node/replica-node.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';
import { waitFor } from '../support/status-client.js';

const started: ReplicaNode[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((n) => n.close(100)));
});

async function startCluster(): Promise<ReplicaNode[]> {
  const nodes = await startInProcessCluster(3);
  started.push(...nodes);
  for (const node of nodes) {
    await waitFor(async () => node.members().every((m) => m.state === 'ALIVE' && (m.self || m.incarnation !== undefined)), 5_000, `${node.nodeId} hears everyone`);
  }
  return nodes;
}

const identity = (b: Buffer) => b;

function openRawStream(address: string, metadata: Metadata) {
  const client = new Client(address, credentials.createInsecure());
  const stream = client.makeBidiStreamRequest('/replikit.v1.ReplicaService/Heartbeat', identity, identity, metadata);
  const closed = new Promise<string>((resolve) => {
    stream.on('error', (err: Error) => resolve(err.message));
    stream.on('end', () => resolve('end'));
  });
  stream.on('data', () => {});
  return { client, stream, closed };
}

function peerMetadata(clusterId: string, nodeId: string): Metadata {
  const md = new Metadata();
  md.set('replikit-cluster-id', clusterId);
  md.set('replikit-node-id', nodeId);
  return md;
}

function beatBytes(nodeId: string, clusterId: string): Buffer {
  return Buffer.from(
    HeartbeatRequest.encode({
      beat: { nodeId, clusterId, incarnation: 1n, sequence: 1n, sendWallTimeMs: BigInt(Date.now()), hlc: { wallTimeMs: BigInt(Date.now()), logical: 0 } },
    }).finish(),
  );
}

describe('heartbeat streams refuse bad input without touching the others', () => {
  it('refuses and counts beats from an unknown node or another cluster', async () => {
    const [, , n3] = await startCluster();
    const address = n3!.address!;

    const stranger = openRawStream(address, peerMetadata('replikit', 'mallory'));
    stranger.stream.write(beatBytes('mallory', 'replikit'));
    expect(await stranger.closed).toMatch(/PERMISSION_DENIED|mallory/);
    stranger.client.close();

    const foreign = openRawStream(address, peerMetadata('other-cluster', 'n1'));
    foreign.stream.write(beatBytes('n1', 'other-cluster'));
    expect(await foreign.closed).toMatch(/FAILED_PRECONDITION|other-cluster/);
    foreign.client.close();

    // Right metadata, but the beat inside claims another cluster: refused at the beat check.
    const lying = openRawStream(address, peerMetadata('replikit', 'n1'));
    lying.stream.write(beatBytes('n1', 'other-cluster'));
    expect(await lying.closed).toMatch(/other-cluster/);
    lying.client.close();

    const refused = [...n3!.failureDetection.refused.entries()];
    expect(refused.some(([reason]) => reason.startsWith('unknown-node'))).toBe(true);
    expect(refused.some(([reason]) => reason.startsWith('wrong-cluster'))).toBe(true);
    expect(refused.some(([reason]) => reason.includes('cluster'))).toBe(true);
    // The real peers are unaffected (waiting a little: a loaded machine can delay a beat).
    await waitFor(async () => n3!.members().every((m) => m.state === 'ALIVE'), 2_000, 'n3 still sees every real peer ALIVE');
  });

  it('closes a stream that sends garbage or stops mid-message, and the real streams keep beating', async () => {
    const [, , n3] = await startCluster();
    const address = n3!.address!;

    const garbage = openRawStream(address, peerMetadata('replikit', 'n1'));
    garbage.stream.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]));
    expect(await garbage.closed).not.toBe('');
    garbage.client.close();

    // A raw HTTP/2 stream that announces a 100-byte gRPC message, sends 3 bytes and resets.
    const http2 = await import('node:http2');
    const session = http2.connect(`http://${address}`);
    const req = session.request({
      ':method': 'POST',
      ':path': '/replikit.v1.ReplicaService/Heartbeat',
      'content-type': 'application/grpc',
      te: 'trailers',
      'replikit-cluster-id': 'replikit',
      'replikit-node-id': 'n2',
    });
    req.on('error', () => {});
    req.write(Buffer.from([0, 0, 0, 0, 100, 1, 2, 3]));
    await new Promise((resolve) => setTimeout(resolve, 50));
    req.close(http2.constants.NGHTTP2_CANCEL);
    session.close();

    // Several beat intervals later, n3 still hears n1 and n2 on their real streams.
    const before = n3!.members().map((m) => m.lastHeardAgeMs ?? 0);
    await new Promise((resolve) => setTimeout(resolve, 400));
    const after = n3!.members();
    await waitFor(async () => n3!.members().every((m) => m.state === 'ALIVE'), 2_000, 'n3 still sees every real peer ALIVE');
    expect(after.filter((m) => !m.self).every((m) => (m.lastHeardAgeMs ?? Infinity) < 250)).toBe(true);
    expect(before.length).toBe(3);
    expect(n3!.failureDetection.streams.connectedPeers().sort()).toEqual(['n1', 'n2']);
  });

  it('keeps the refusal counter (a metrics label) to a bounded set of reasons whatever the beats carry', async () => {
    const [, , n3] = await startCluster();
    // 300 streams, each claiming to be n1 and sending a beat with another odd incarnation or a
    // foreign node id: every one is refused, and the reasons stay few.
    for (let i = 0; i < 300; i++) {
      const raw = openRawStream(n3!.address!, peerMetadata('replikit', 'n1'));
      const beat = HeartbeatRequest.encode({
        beat: {
          nodeId: i % 2 === 0 ? `n1-${i}` : 'n1',
          clusterId: i % 3 === 0 ? `c-${i}` : 'replikit',
          incarnation: i % 2 === 0 ? 1n : BigInt(Number.MAX_SAFE_INTEGER) + BigInt(i),
          sequence: 1n,
          sendWallTimeMs: BigInt(Date.now()),
          hlc: { wallTimeMs: BigInt(Date.now()), logical: 0 },
        },
      }).finish();
      raw.stream.write(Buffer.from(beat));
      await raw.closed;
      raw.client.close();
    }
    const reasons = [...n3!.failureDetection.refused.keys()];
    expect(reasons.length).toBeLessThanOrEqual(33);
    expect(reasons.length).toBeLessThan(10);
    expect([...n3!.failureDetection.refused.values()].reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(300);
  }, 60_000);

  it('keeps at most one idle heartbeat stream per peer: a newer one replaces it, a silent one is closed', async () => {
    const [, , n3] = await startCluster();
    // 500 streams claiming to be n1 (which does open n3's stream), none of which ever beats.
    const raws = Array.from({ length: 500 }, () => openRawStream(n3!.address!, peerMetadata('replikit', 'n1')));
    const ends = await Promise.race([
      Promise.all(raws.map((r) => r.closed)),
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5_000)),
    ]);
    expect(ends, 'every idle stream was closed').not.toBe('timeout');
    expect((ends as string[]).filter((why) => /replaced by a newer heartbeat stream|no beat on a new heartbeat stream/.test(why)).length).toBe(500);
    for (const r of raws) r.client.close();
    // n1's real stream still beats.
    await waitFor(async () => n3!.members().find((m) => m.id === 'n1')?.state === 'ALIVE', 2_000, 'n1 stays ALIVE at n3');
  }, 60_000);
});

