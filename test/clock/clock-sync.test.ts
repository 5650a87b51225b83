import { Metadata, credentials, status, type ServiceError, type UntypedServiceImplementation } from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ClockOffsetEstimator,
  DEFAULT_CLOCK_SYNC_WINDOW,
  HybridLogicalClock,
  clockSample,
  compareHlc,
  type ClockSample,
} from '../../src/clock/index.js';
import {
  ReplicaServiceClient,
  ReplicaServiceService,
  type ClockSyncRequest,
  type ClockSyncResponse,
} from '../../src/gen/replikit/v1/replica_service.js';
import { createClockInterceptors } from '../../src/interceptors/index.js';
import { sampleClock } from '../../src/transport/clock-sync-client.js';
import { clockSyncService, handleClockSync } from '../../src/transport/clock-sync-service.js';
import { GrpcHarness } from '../interceptors/support/grpc-harness.js';

const T0 = 1_700_000_000_000;

describe('clockSample', () => {
  it('computes the NTP offset and round trip from four readings', () => {
    // Remote 100 ms ahead, 10 ms each way, 2 ms to answer.
    expect(clockSample(T0, T0 + 110, T0 + 112, T0 + 22)).toEqual({ offsetMs: 100, rttMs: 20 });
  });

  it('is off from the true offset by at most half the round trip, however asymmetric the delays', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -10_000, max: 10_000 }), // true offset: remote minus local
        fc.nat({ max: 1_000 }), // request delay
        fc.nat({ max: 1_000 }), // response delay
        fc.nat({ max: 100 }), // remote processing time
        (offset, there, back, processing) => {
          const origin = T0;
          const receive = origin + there + offset;
          const send = receive + processing;
          const arrival = origin + there + processing + back;
          const sample = clockSample(origin, receive, send, arrival);
          expect(sample.rttMs).toBe(there + back);
          expect(sample.offsetMs).toBe(offset + (there - back) / 2);
          expect(Math.abs(sample.offsetMs - offset)).toBeLessThanOrEqual(sample.rttMs / 2);
        },
      ),
    );
  });
});

describe('ClockOffsetEstimator', () => {
  const sample: fc.Arbitrary<ClockSample> = fc.record({
    offsetMs: fc.integer({ min: -1_000, max: 1_000 }),
    rttMs: fc.nat({ max: 50 }),
  });

  it('reports the minimum-RTT sample of the last window, most recent on ties, as a naive reference does', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), fc.array(sample, { maxLength: 40 }), (windowSize, samples) => {
        const estimator = new ClockOffsetEstimator(windowSize);
        samples.forEach((s, i) => {
          expect(estimator.add(s)).toBe(true);
          const window = samples.slice(Math.max(0, i + 1 - windowSize), i + 1);
          const smallest = Math.min(...window.map((w) => w.rttMs));
          const expected = window.filter((w) => w.rttMs === smallest).at(-1);
          expect(estimator.best()).toBe(expected);
          expect(estimator.size).toBe(window.length);
        });
      }),
    );
  });

  it('has nothing to report before the first sample, and keeps eight by default', () => {
    const estimator = new ClockOffsetEstimator();
    expect(estimator.best()).toBeUndefined();
    expect(estimator.windowSize).toBe(DEFAULT_CLOCK_SYNC_WINDOW);
    expect(DEFAULT_CLOCK_SYNC_WINDOW).toBe(8);
  });

  it('refuses samples with a negative or non-finite round trip, which would win every comparison', () => {
    const estimator = new ClockOffsetEstimator();
    expect(estimator.add({ offsetMs: 5, rttMs: 3 })).toBe(true);
    expect(estimator.add({ offsetMs: 900, rttMs: -1 })).toBe(false);
    expect(estimator.add({ offsetMs: Number.NaN, rttMs: 1 })).toBe(false);
    expect(estimator.add({ offsetMs: 1, rttMs: Number.POSITIVE_INFINITY })).toBe(false);
    expect(estimator.best()).toEqual({ offsetMs: 5, rttMs: 3 });
  });

  it('refuses an empty window', () => {
    expect(() => new ClockOffsetEstimator(0)).toThrow(RangeError);
  });
});

describe('handleClockSync', () => {
  const options = {
    wallClock: () => T0 + 300,
    clock: new HybridLogicalClock(() => T0 + 300),
    nodeId: 'server',
  };

  it('echoes the origin and reports its wall times, HLC and node id', () => {
    const response = handleClockSync({ nodeId: 'client', originWallTimeMs: BigInt(T0) }, options);
    expect(response).toMatchObject({
      originWallTimeMs: BigInt(T0),
      receiveWallTimeMs: BigInt(T0 + 300),
      sendWallTimeMs: BigInt(T0 + 300),
      nodeId: 'server',
    });
    expect(response.hlc?.wallTimeMs).toBe(BigInt(T0 + 300));
  });

  it('names every missing field in an invalid-argument error', () => {
    expect(() => handleClockSync({ nodeId: '', originWallTimeMs: BigInt(T0) }, options)).toThrow(/node_id/);
    expect(() => handleClockSync({ nodeId: 'client', originWallTimeMs: 0n }, options)).toThrow(/origin_wall_time_ms/);
    expect(() => handleClockSync({ nodeId: '', originWallTimeMs: 0n }, options)).toThrow(
      /node_id and origin_wall_time_ms/,
    );
    try {
      handleClockSync({ nodeId: '', originWallTimeMs: 0n }, options);
    } catch (err) {
      expect(err).toMatchObject({ kind: 'invalid-argument', reason: 'MISSING_FIELD' });
    }
  });
});

describe('ClockSync over gRPC', () => {
  const harness = new GrpcHarness();
  afterEach(() => harness.closeAll());

  /** A server whose wall clock runs `skewMs` ahead of this machine's, with the clock interceptors on. */
  async function startSkewedServer(skewMs: number): Promise<{ address: string; clock: HybridLogicalClock }> {
    const wallClock = (): number => Date.now() + skewMs;
    const clock = new HybridLogicalClock(wallClock);
    const interceptors = createClockInterceptors({ clock });
    const address = await harness.startServer([interceptors.server], (server) => {
      server.addService(
        ReplicaServiceService,
        clockSyncService({ wallClock, clock, nodeId: 'server' }) as UntypedServiceImplementation,
      );
    });
    return { address, clock };
  }

  it('estimates a server clock 300 ms ahead within RTT/2 + 5 ms', async () => {
    const { address } = await startSkewedServer(300);
    const clock = new HybridLogicalClock(Date.now);
    const client = harness.track(
      new ReplicaServiceClient(address, credentials.createInsecure(), {
        interceptors: [createClockInterceptors({ clock }).client],
      }),
    );
    const estimator = new ClockOffsetEstimator();
    for (let i = 0; i < DEFAULT_CLOCK_SYNC_WINDOW; i += 1) {
      const result = await sampleClock(client, { wallClock: Date.now, clock, nodeId: 'client', deadlineMs: 5_000 });
      expect(result.remoteNodeId).toBe('server');
      expect(result.hlc.kind).toBe('observed');
      estimator.add(result);
    }
    const best = estimator.best()!;
    // The estimate itself is within RTT/2 of the truth; the 5 ms allow for the server reading its
    // wall clock twice and the readings being rounded to whole milliseconds.
    expect(Math.abs(best.offsetMs - 300)).toBeLessThanOrEqual(best.rttMs / 2 + 5);
    // The server's HLC (300 ms ahead, within the limit) pulled this node's HLC along.
    expect(clock.peek().wallMs).toBeGreaterThanOrEqual(Date.now() + 250);
  });

  it('answers a request with missing fields with INVALID_ARGUMENT naming them', async () => {
    const { address } = await startSkewedServer(0);
    const client = harness.track(new ReplicaServiceClient(address, credentials.createInsecure()));
    const error = await new Promise<ServiceError | null>((resolve) =>
      client.clockSync(
        { nodeId: '', originWallTimeMs: 0n } satisfies ClockSyncRequest,
        new Metadata(),
        { deadline: Date.now() + 5_000 },
        (err: ServiceError | null, _response: ClockSyncResponse) => resolve(err),
      ),
    );
    expect(error?.code).toBe(status.INVALID_ARGUMENT);
    expect(error?.details).toMatch(/node_id and origin_wall_time_ms/);
  });

  it('moves the server HLC past the client HLC it was sent', async () => {
    const { address, clock: serverClock } = await startSkewedServer(0);
    const clientClock = new HybridLogicalClock(() => Date.now() + 200);
    const client = harness.track(
      new ReplicaServiceClient(address, credentials.createInsecure(), {
        interceptors: [createClockInterceptors({ clock: clientClock }).client],
      }),
    );
    await sampleClock(client, { wallClock: Date.now, clock: clientClock, nodeId: 'client', deadlineMs: 5_000 });
    // The request carried a stamp earlier than the client's latest timestamp but ~200 ms ahead of
    // the server's wall clock; the server's clock must now be at least that far along.
    expect(serverClock.peek().wallMs).toBeGreaterThanOrEqual(Date.now() + 150);
    expect(compareHlc(clientClock.peek(), serverClock.peek())).toBeGreaterThan(0);
  });
});
