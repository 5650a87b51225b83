import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { HybridLogicalClock, systemScheduler, systemWallClock } from '../../src/clock/index.js';
import { ReplicaServiceService, type ExchangeRequest, type ExchangeResponse } from '../../src/gen/replikit/v1/replica_service.js';
import { GrpcReplicaSet } from '../../src/transport/grpc-replica-set.js';
import { PeerCallError } from '../../src/transport/replica-set.js';
import { StreamingReplicaSet } from '../../src/transport/streaming-replica-set.js';

/** A peer whose Exchange handler the test scripts: answer, stay silent, or hang up. */
async function scriptedPeer(onRequest: (req: ExchangeRequest, stream: ServerDuplexStream<ExchangeRequest, ExchangeResponse>) => void) {
  const server = new Server();
  const unimplemented = () => {
    throw new Error('not used');
  };
  server.addService(ReplicaServiceService, {
    replicate: unimplemented,
    read: unimplemented,
    heartbeat: unimplemented,
    clockSync: unimplemented,
    syncDigests: unimplemented,
    exchange: (stream: ServerDuplexStream<ExchangeRequest, ExchangeResponse>) => stream.on('data', (req: ExchangeRequest) => onRequest(req, stream)),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function streamingTo(address: string) {
  const unary = new GrpcReplicaSet({ selfId: 'n1', peers: [{ id: 'n2', address }], interceptorsFor: () => [], maxMessageBytes: 4 << 20 });
  const set = new StreamingReplicaSet({
    unary,
    clock: new HybridLogicalClock(systemWallClock),
    scheduler: systemScheduler,
    maxClockOffsetMs: 500,
    waitForReady: () => true,
  });
  cleanups.push(() => {
    set.close();
    unary.close();
  });
  return set;
}

describe('StreamingReplicaSet', () => {
  it('fails a call whose message would pass the message limit alone; the stream and the other calls carry on', async () => {
    const peer = await scriptedPeer((req, stream) =>
      stream.write({ callId: req.callId, hlc: undefined, replicate: { outcomes: req.replicate!.entries.map(() => 1) } }),
    );
    cleanups.push(() => peer.server.forceShutdown());
    const set = streamingTo(peer.address);
    const entry = (size: number) => ({ key: Buffer.from('k'), value: Buffer.alloc(size), version: { hlc: { wallMs: 1, logical: 0 }, nodeId: 'n1' }, tombstone: false });
    const huge = set.replicate('n2', 'ks', [entry(5 << 20)], 2_000);
    const small = set.replicate('n2', 'ks', [entry(10)], 2_000);
    const err = await huge.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerCallError);
    expect((err as PeerCallError).failure).toBe('rejected');
    expect((err as Error).message).toMatch(/over the peer message limit/);
    expect(await small).toEqual(['applied']);
    expect(await set.replicate('n2', 'ks', [entry(10)], 2_000)).toEqual(['applied']);
  });

  it('matches answers to calls by id, in any order', async () => {
    const held: [ExchangeRequest, ServerDuplexStream<ExchangeRequest, ExchangeResponse>][] = [];
    const peer = await scriptedPeer((req, stream) => {
      held.push([req, stream]);
      if (held.length === 2) {
        // Answer the second call first.
        for (const [r, s] of [...held].reverse()) {
          s.write({ callId: r.callId, hlc: undefined, read: { entries: r.read!.keys.map((key) => ({ key, value: Buffer.alloc(0), version: undefined, tombstone: false, dependencies: undefined, originSequence: 0n })) } });
        }
      }
    });
    cleanups.push(() => peer.server.forceShutdown());
    const set = streamingTo(peer.address);
    const [a, b] = await Promise.all([set.read('n2', 'ks', [Buffer.from('a')], 2_000), set.read('n2', 'ks', [Buffer.from('b'), Buffer.from('c')], 2_000)]);
    expect(a).toEqual([undefined]);
    expect(b).toEqual([undefined, undefined]);
  });

  it('times out a call the peer never answers, and keeps the stream for the next', async () => {
    let answer = false;
    const peer = await scriptedPeer((req, stream) => {
      if (answer) stream.write({ callId: req.callId, hlc: undefined, replicate: { outcomes: [] } });
    });
    cleanups.push(() => peer.server.forceShutdown());
    const set = streamingTo(peer.address);
    const t0 = performance.now();
    const err = await set.replicate('n2', 'ks', [], 150).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerCallError);
    expect((err as PeerCallError).failure).toBe('timeout');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    answer = true;
    expect(await set.replicate('n2', 'ks', [], 2_000)).toEqual([]);
  });

  it('fails calls in flight as lost (maybe delivered) when the stream breaks or the calls are abandoned', async () => {
    const peer = await scriptedPeer((_req, stream) => {
      stream.emit('error', { code: 14, details: 'going away' });
    });
    cleanups.push(() => peer.server.forceShutdown());
    const set = streamingTo(peer.address);
    const broken = await set.read('n2', 'ks', [Buffer.from('k')], 2_000).catch((e: unknown) => e);
    expect((broken as PeerCallError).failure).toBe('lost'); // it had reached the peer

    const silent = await scriptedPeer(() => {});
    cleanups.push(() => silent.server.forceShutdown());
    const quiet = streamingTo(silent.address);
    const pending = quiet.read('n2', 'ks', [Buffer.from('k')], 10_000).catch((e: unknown) => e);
    await new Promise((resolve) => setTimeout(resolve, 50));
    quiet.abandonCalls('n2', 'n2 is SUSPECT (phi)');
    const abandoned = await pending;
    expect((abandoned as PeerCallError).failure).toBe('lost');
    expect((abandoned as Error).message).toMatch(/SUSPECT/);
  });

  it('turns an error answer into a rejected call and the stream goes on', async () => {
    const peer = await scriptedPeer((req, stream) => {
      if (req.read) stream.write({ callId: req.callId, hlc: undefined, error: { code: 5, message: 'no keyspace "x"', reason: 'UNKNOWN_KEYSPACE' } });
      else stream.write({ callId: req.callId, hlc: undefined, replicate: { outcomes: [] } });
    });
    cleanups.push(() => peer.server.forceShutdown());
    const set = streamingTo(peer.address);
    const err = await set.read('n2', 'x', [Buffer.from('k')], 2_000).catch((e: unknown) => e);
    expect((err as PeerCallError).failure).toBe('rejected');
    expect((err as Error).message).toMatch(/NOT_FOUND: no keyspace "x"/);
    expect(await set.replicate('n2', 'ks', [], 2_000)).toEqual([]);
  });
});
