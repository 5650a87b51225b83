import { Metadata } from '@grpc/grpc-js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HybridLogicalClock, MAX_HLC_LOGICAL, compareHlc, type HlcTimestamp } from '../../src/clock/index.js';
import { Hlc } from '../../src/gen/replikit/v1/types.js';
import {
  DEFAULT_MAX_CLOCK_OFFSET_MS,
  HLC_METADATA_KEY,
  decodeHlc,
  encodeHlc,
  observeHlc,
  stampHlc,
} from '../../src/interceptors/index.js';
import { RecordingLogger } from './support/recording-logger.js';

const T0 = 1_700_000_000_000;

function metadataWith(bytes: Uint8Array): Metadata {
  const metadata = new Metadata();
  metadata.set(HLC_METADATA_KEY, Buffer.from(bytes));
  return metadata;
}

describe('stampHlc / observeHlc', () => {
  it('round-trips a timestamp through metadata and moves the receiver past it', () => {
    const sender = new HybridLogicalClock(() => T0 + 100);
    const receiver = new HybridLogicalClock(() => T0);
    const metadata = new Metadata();
    const stamped = stampHlc(metadata, sender);
    expect(decodeHlc(metadata.get(HLC_METADATA_KEY)[0] as Buffer)).toEqual(stamped);

    const result = observeHlc(metadata, receiver);
    expect(result).toEqual({ kind: 'observed', remote: stamped, local: receiver.peek() });
    expect(compareHlc(receiver.peek(), stamped)).toBeGreaterThan(0);
  });

  it('replaces an earlier stamp rather than adding a second value', () => {
    const clock = new HybridLogicalClock(() => T0);
    const metadata = new Metadata();
    stampHlc(metadata, clock);
    const second = stampHlc(metadata, clock);
    expect(metadata.get(HLC_METADATA_KEY)).toHaveLength(1);
    expect(decodeHlc(metadata.get(HLC_METADATA_KEY)[0] as Buffer)).toEqual(second);
  });

  it('reports absent metadata without touching the clock', () => {
    const clock = new HybridLogicalClock(() => T0);
    expect(observeHlc(new Metadata(), clock)).toEqual({ kind: 'absent' });
    expect(clock.peek().wallMs).toBe(0);
  });

  it('accepts an HLC exactly maxClockOffsetMs ahead and refuses one a millisecond further', () => {
    const logger = new RecordingLogger();
    const clock = new HybridLogicalClock(() => T0);
    const atLimit = { wallMs: T0 + DEFAULT_MAX_CLOCK_OFFSET_MS, logical: 0 };
    expect(observeHlc(metadataWith(encodeHlc(atLimit)), clock, { logger }).kind).toBe('observed');

    const before = clock.peek();
    const beyond = { wallMs: T0 + DEFAULT_MAX_CLOCK_OFFSET_MS + 1, logical: 0 };
    expect(observeHlc(metadataWith(encodeHlc(beyond)), clock, { logger, whose: "server's" })).toEqual({
      kind: 'too-far-ahead',
      remote: beyond,
      aheadMs: 501,
      maxClockOffsetMs: 500,
    });
    expect(clock.peek()).toEqual(before);
    expect(logger.at('warn')).toHaveLength(1);
    expect(logger.at('warn')[0]!.message).toContain(
      "server's HLC is 501 ms ahead of this node's wall clock; the limit (maxClockOffsetMs) is 500 ms",
    );
  });

  it('honours a configured limit', () => {
    const clock = new HybridLogicalClock(() => T0);
    const remote = encodeHlc({ wallMs: T0 + 2_000, logical: 0 });
    expect(observeHlc(metadataWith(remote), clock).kind).toBe('too-far-ahead');
    expect(observeHlc(metadataWith(remote), clock, { maxClockOffsetMs: 5_000 }).kind).toBe('observed');
  });

  it.each([
    ['a zero wall time', Hlc.encode({ wallTimeMs: 0n, logical: 5 }).finish(), /wall time 0/],
    ['an empty value', new Uint8Array(0), /wall time 0/],
    ['a truncated varint', encodeHlc({ wallMs: T0, logical: 3 }).subarray(0, 4), /does not decode/],
    ['a wall time beyond 2^53', Hlc.encode({ wallTimeMs: 2n ** 60n, logical: 0 }).finish(), /not a safe integer/],
    ['a counter at its ceiling', Hlc.encode({ wallTimeMs: BigInt(T0), logical: MAX_HLC_LOGICAL }).finish(), /logical counter/],
    ['a length-delimited field that runs past the end', Uint8Array.from([0x0a, 0x7f, 0x01]), /does not decode/],
  ])('ignores %s, logs it at debug and leaves the clock alone', (_name, bytes, reason) => {
    const logger = new RecordingLogger();
    const clock = new HybridLogicalClock(() => T0);
    clock.now();
    const before = clock.peek();
    const result = observeHlc(metadataWith(bytes), clock, { logger });
    expect(result.kind).toBe('malformed');
    expect(result.kind === 'malformed' && result.reason).toMatch(reason);
    expect(clock.peek()).toEqual(before);
    expect(logger.at('debug')).toHaveLength(1);
    expect(logger.at('debug')[0]!.fields).toMatchObject({ key: HLC_METADATA_KEY });
    expect(logger.records).toHaveLength(1);
  });

  it('never throws on arbitrary bytes, and only a valid, near enough HLC moves the clock', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 32 }), (bytes) => {
        const logger = new RecordingLogger();
        const clock = new HybridLogicalClock(() => T0);
        const result = observeHlc(metadataWith(bytes), clock, { logger });
        if (result.kind === 'observed') {
          expect(compareHlc(clock.peek(), result.remote)).toBeGreaterThan(0);
        } else {
          expect(clock.peek().wallMs).toBe(0);
        }
        if (result.kind === 'malformed') expect(logger.at('debug')).toHaveLength(1);
      }),
    );
  });

  /**
   * The drift bound as the interceptors enforce it: a node whose wall clock never goes backwards,
   * fed any mix of remote HLCs (near, far ahead, behind), never leads its wall clock by more than
   * maxClockOffsetMs, because observeHlc merges only HLCs within that lead.
   */
  it('keeps the clock within maxClockOffsetMs of a monotonic wall clock whatever peers send', () => {
    const remote: fc.Arbitrary<HlcTimestamp> = fc.record({
      wallMs: fc.integer({ min: T0 - 1_000, max: T0 + 5_000 }),
      logical: fc.nat({ max: 100 }),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1_000 }),
        fc.array(fc.tuple(fc.nat({ max: 20 }), remote), { maxLength: 100 }),
        (maxClockOffsetMs, steps) => {
          let wall = T0;
          const clock = new HybridLogicalClock(() => wall);
          for (const [advanceMs, t] of steps) {
            wall += advanceMs;
            observeHlc(metadataWith(encodeHlc(t)), clock, { maxClockOffsetMs });
            expect(clock.peek().wallMs - wall).toBeLessThanOrEqual(maxClockOffsetMs);
          }
        },
      ),
    );
  });

  it('refuses a string value under the binary key as malformed', () => {
    // Metadata.set refuses strings for -bin keys; get() hands out the stored array, which is how
    // a buggy caller could still put one there.
    const metadata = new Metadata();
    metadata.set(HLC_METADATA_KEY, Buffer.from('x'));
    (metadata.get(HLC_METADATA_KEY) as unknown[])[0] = 'not binary';
    const clock = new HybridLogicalClock(() => T0);
    expect(observeHlc(metadata, clock)).toEqual({ kind: 'malformed', reason: 'value is not binary' });
  });
});

describe('encodeHlc / decodeHlc (the hand-written codec)', () => {
  const generatedEncoding = (t: HlcTimestamp): Buffer =>
    Buffer.from(Hlc.encode({ wallTimeMs: BigInt(t.wallMs), logical: t.logical }).finish());
  const anyTimestamp = fc.record({
    wallMs: fc.oneof(fc.integer({ min: 0, max: 2 ** 31 }), fc.maxSafeInteger().filter((n) => n >= 0), fc.constant(T0)),
    logical: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: MAX_HLC_LOGICAL })),
  });

  it('writes exactly the bytes the generated encoder writes, and reads them back', () => {
    fc.assert(
      fc.property(anyTimestamp, (t) => {
        const bytes = encodeHlc(t);
        expect(bytes.equals(generatedEncoding(t))).toBe(true);
        expect(decodeHlc(bytes)).toEqual(t);
      }),
      { numRuns: 2000 },
    );
  });

  it('reads whatever the generated decoder reads, canonical or not', () => {
    const reference = (bytes: Uint8Array): HlcTimestamp | 'throws' => {
      try {
        const m = Hlc.decode(bytes);
        const wallMs = m.wallTimeMs > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(m.wallTimeMs);
        return { wallMs, logical: m.logical };
      } catch {
        return 'throws';
      }
    };
    const attempt = (bytes: Uint8Array): HlcTimestamp | 'throws' => {
      try {
        return decodeHlc(bytes);
      } catch {
        return 'throws';
      }
    };
    const nonCanonical = [
      Buffer.from([0x10, 0x05, 0x08, 0x01]), // fields swapped
      Buffer.from([0x08, 0x01, 0x08, 0x02]), // repeated field: the last wins
      Buffer.from([0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), // padded varint
      Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // beyond 2^53
      Buffer.from([0x18, 0x07, 0x08, 0x01]), // an unknown field
      Buffer.from([0x08]), // truncated
      Buffer.from([0x08, 0x80]), // truncated varint
    ];
    for (const bytes of nonCanonical) expect(attempt(bytes), bytes.toString('hex')).toEqual(reference(bytes));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), (bytes) => {
        expect(attempt(bytes)).toEqual(reference(bytes));
      }),
      { numRuns: 5000 },
    );
  });
});
