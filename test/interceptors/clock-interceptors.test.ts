import { Metadata, status, type ServerUnaryCall } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { HybridLogicalClock, compareHlc, type HlcTimestamp } from '../../src/clock/index.js';
import { Hlc } from '../../src/gen/replikit/v1/types.js';
import {
  HLC_METADATA_KEY,
  createClockInterceptors,
  decodeHlc,
  encodeHlc,
  type ObserveHlcResult,
} from '../../src/interceptors/index.js';
import { GrpcHarness, callEcho, echoService, echoServiceDefinition } from './support/grpc-harness.js';
import { RecordingLogger } from './support/recording-logger.js';

/**
 * The clock interceptors on a test-only "application" service (raw Buffers, no proto), exactly as
 * an application would install them: createClockInterceptors() on its server and its client.
 * Wall clocks are constants, so offsets in messages are exact.
 */

const T0 = 1_700_000_000_000;

/** The HLC stamped in `metadata`, or undefined when there is none or it does not decode. */
function hlcIn(metadata: Metadata | undefined): HlcTimestamp | undefined {
  const value = metadata?.get(HLC_METADATA_KEY)[0];
  if (!(value instanceof Buffer)) return undefined;
  try {
    return decodeHlc(value);
  } catch {
    return undefined;
  }
}

describe('clock interceptors on an application service', () => {
  const harness = new GrpcHarness();
  afterEach(() => harness.closeAll());

  /** A node: a clock on a fixed wall time, its interceptors, and a recording logger. */
  function node(wallMs: number) {
    const clock = new HybridLogicalClock(() => wallMs);
    const logger = new RecordingLogger();
    const observations: ObserveHlcResult[] = [];
    const interceptors = createClockInterceptors({ clock, logger, onObservation: (r) => observations.push(r) });
    return { clock, logger, observations, interceptors };
  }

  /** Starts an echo server for `server`; `calls` collects what each handler invocation saw. */
  async function startEcho(server: ReturnType<typeof node>) {
    const calls: { remote: HlcTimestamp | undefined; serverAtHandler: HlcTimestamp }[] = [];
    const address = await harness.startServer([server.interceptors.server], (s) =>
      s.addService(
        echoServiceDefinition,
        echoService((call: ServerUnaryCall<Buffer, Buffer>) =>
          calls.push({ remote: hlcIn(call.metadata), serverAtHandler: server.clock.peek() }),
        ),
      ),
    );
    return { address, calls };
  }

  it("moves the server's HLC past a caller's HLC that is ahead within the limit, before the handler runs", async () => {
    const server = node(T0);
    const client = node(T0 + 300);
    const { address, calls } = await startEcho(server);
    const outcome = await callEcho(harness.echoClient(address, [client.interceptors.client]), 'hello');

    expect(outcome.error).toBeUndefined();
    expect(outcome.response?.toString()).toBe('hello');
    expect(calls).toHaveLength(1);
    const { remote, serverAtHandler } = calls[0]!;
    expect(remote).toEqual({ wallMs: T0 + 300, logical: 0 });
    expect(compareHlc(serverAtHandler, remote!)).toBeGreaterThan(0);
    expect(server.observations).toEqual([{ kind: 'observed', remote, local: serverAtHandler }]);
  });

  it("moves the caller's HLC past the server's, taken from the unary response headers", async () => {
    const server = node(T0 + 300);
    const client = node(T0);
    const { address } = await startEcho(server);
    const outcome = await callEcho(harness.echoClient(address, [client.interceptors.client]), 'hello');

    expect(outcome.error).toBeUndefined();
    const stamped = hlcIn(outcome.headers);
    expect(stamped).toBeDefined();
    expect(stamped!.wallMs).toBe(T0 + 300);
    expect(hlcIn(outcome.trailers)).toBeUndefined();
    expect(compareHlc(client.clock.peek(), stamped!)).toBeGreaterThan(0);
    expect(client.observations.map((o) => o.kind)).toEqual(['observed']);
  });

  it('stamps a trailers-only error response in its trailers, and the caller observes it there', async () => {
    const server = node(T0 + 300);
    const client = node(T0);
    const { address } = await startEcho(server);
    const outcome = await callEcho(harness.echoClient(address, [client.interceptors.client]), String(status.NOT_FOUND), {
      method: 'fail',
    });

    expect(outcome.error?.code).toBe(status.NOT_FOUND);
    expect(outcome.headers).toBeUndefined();
    const stamped = hlcIn(outcome.trailers);
    expect(stamped?.wallMs).toBe(T0 + 300);
    expect(compareHlc(client.clock.peek(), stamped!)).toBeGreaterThan(0);
  });

  it('refuses a caller whose HLC is 2 s ahead with FAILED_PRECONDITION naming the offset and the limit', async () => {
    const server = node(T0);
    const client = node(T0 + 2_003);
    const { address, calls } = await startEcho(server);
    const outcome = await callEcho(harness.echoClient(address, [client.interceptors.client]), 'hello');

    expect(outcome.error?.code).toBe(status.FAILED_PRECONDITION);
    expect(outcome.error?.details).toBe(
      "caller's HLC is 2003 ms ahead of this node's wall clock; the limit (maxClockOffsetMs) is 500 ms",
    );
    expect(calls).toHaveLength(0); // the handler never ran
    expect(server.clock.peek().wallMs).toBe(T0); // and the server's clock was not dragged ahead
    expect(server.observations).toMatchObject([{ kind: 'too-far-ahead', aheadMs: 2_003, maxClockOffsetMs: 500 }]);
    expect(server.logger.at('warn')).toHaveLength(1);
  });

  it('does not merge a server HLC too far ahead, logs it at warn, and lets the call succeed', async () => {
    const server = node(T0 + 2_003);
    const client = node(T0);
    const { address } = await startEcho(server);
    const outcome = await callEcho(harness.echoClient(address, [client.interceptors.client]), 'hello');

    expect(outcome.error).toBeUndefined();
    expect(outcome.response?.toString()).toBe('hello');
    expect(client.clock.peek().wallMs).toBe(T0);
    expect(client.logger.at('warn').map((r) => r.message)).toEqual([
      "refused a remote HLC: server's HLC is 2003 ms ahead of this node's wall clock; the limit (maxClockOffsetMs) is 500 ms",
    ]);
  });

  it('uses a configured maxClockOffsetMs', async () => {
    const clock = new HybridLogicalClock(() => T0);
    const interceptors = createClockInterceptors({ clock, maxClockOffsetMs: 5_000 });
    const address = await harness.startServer([interceptors.server], (s) =>
      s.addService(echoServiceDefinition, echoService()),
    );
    const client = node(T0 + 2_003);
    const outcome = await callEcho(harness.echoClient(address, [client.interceptors.client]), 'hello');
    expect(outcome.error).toBeUndefined();
    expect(clock.peek().wallMs).toBe(T0 + 2_003);
    expect(() => createClockInterceptors({ clock, maxClockOffsetMs: -1 })).toThrow(/maxClockOffsetMs/);
  });

  const malformed: [string, Uint8Array][] = [
    ['random bytes', Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff])],
    ['a truncated encoding', encodeHlc({ wallMs: T0, logical: 1 }).subarray(0, 3)],
    ['a zero wall time', Hlc.encode({ wallTimeMs: 0n, logical: 1 }).finish()],
  ];

  it.each(malformed)('ignores %s from a caller, logs it at debug, and the call succeeds', async (_name, bytes) => {
    const server = node(T0);
    const { address, calls } = await startEcho(server);
    const metadata = new Metadata();
    metadata.set(HLC_METADATA_KEY, Buffer.from(bytes));
    // A client without the interceptors, so that the bad value reaches the server as it is.
    const outcome = await callEcho(harness.echoClient(address), 'hello', { metadata });

    expect(outcome.error).toBeUndefined();
    expect(outcome.response?.toString()).toBe('hello');
    expect(calls).toHaveLength(1);
    expect(server.logger.at('debug')).toHaveLength(1);
    expect(server.logger.at('debug')[0]!.fields).toMatchObject({ key: HLC_METADATA_KEY });
    expect(server.observations.map((o) => o.kind)).toEqual(['malformed']);
    expect(server.clock.peek().wallMs).toBe(T0);
  });

  it.each(malformed)('ignores %s from a server, logs it at debug, and the call succeeds', async (_name, bytes) => {
    // A server without the interceptors whose handler sends the bad value in its headers.
    const address = await harness.startServer([], (s) =>
      s.addService(
        echoServiceDefinition,
        echoService((call) => {
          const headers = new Metadata();
          headers.set(HLC_METADATA_KEY, Buffer.from(bytes));
          call.sendMetadata(headers);
        }),
      ),
    );
    const client = node(T0);
    const outcome = await callEcho(harness.echoClient(address, [client.interceptors.client]), 'hello');

    expect(outcome.error).toBeUndefined();
    expect(outcome.response?.toString()).toBe('hello');
    expect(client.logger.at('debug')).toHaveLength(1);
    expect(client.observations.map((o) => o.kind)).toEqual(['malformed']);
  });

  it('carries on when the onObservation hook throws, logging the hook failure', async () => {
    const clock = new HybridLogicalClock(() => T0);
    const logger = new RecordingLogger();
    const interceptors = createClockInterceptors({
      clock,
      logger,
      onObservation: () => {
        throw new Error('hook bug');
      },
    });
    const address = await harness.startServer([interceptors.server], (s) =>
      s.addService(echoServiceDefinition, echoService()),
    );
    const outcome = await callEcho(harness.echoClient(address, [interceptors.client]), 'hello');
    expect(outcome.error).toBeUndefined();
    expect(logger.at('error').map((r) => r.fields?.['error'])).toEqual(['hook bug', 'hook bug']);
  });
});
