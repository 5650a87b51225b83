import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  HybridLogicalClock,
  LamportClock,
  VectorClock,
  compareHlc,
  type HlcTimestamp,
} from '../../src/clock/index.js';

/**
 * The clock condition, checked against vector clocks as the reference for happened-before: in a
 * random run of processes exchanging messages, whenever event e happened before event f (e's
 * vector clock is before f's), both the Lamport clock and the HLC give e a smaller timestamp. The
 * processes' wall clocks are skewed and jitter backwards, which the HLC must not care about.
 */

const PROCESSES = 3;
const T0 = 1_700_000_000_000;

type Step =
  | { readonly kind: 'local'; readonly at: number }
  | { readonly kind: 'send'; readonly from: number; readonly to: number }
  | { readonly kind: 'deliver'; readonly pick: number };

const processIndex = fc.nat({ max: PROCESSES - 1 });
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('local' as const), at: processIndex }),
  fc.record({ kind: fc.constant('send' as const), from: processIndex, to: processIndex }),
  fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat() }),
);

interface Event {
  readonly vc: VectorClock;
  readonly lamport: number;
  readonly hlc: HlcTimestamp;
}

interface Message {
  readonly to: number;
  readonly vc: VectorClock;
  readonly lamport: number;
  readonly hlc: HlcTimestamp;
}

describe('clock condition', () => {
  it('Lamport and HLC timestamps respect happened-before in any message exchange', () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 60 }),
        fc.array(fc.integer({ min: -300, max: 300 }), { minLength: PROCESSES, maxLength: PROCESSES }),
        fc.array(fc.integer({ min: -20, max: 30 }), { minLength: 1, maxLength: 50 }),
        (steps, skews, jitter) => {
          let tick = 0;
          const ids = Array.from({ length: PROCESSES }, (_, i) => `p${i}`);
          const vcs = ids.map(() => VectorClock.EMPTY);
          const lamports = ids.map(() => new LamportClock());
          // Each process reads a shared time plus its own skew plus jitter that may go backwards.
          const hlcs = ids.map(
            (_, i) => new HybridLogicalClock(() => T0 + tick * 10 + skews[i]! + jitter[(tick + i) % jitter.length]!),
          );
          const inFlight: Message[] = [];
          const events: Event[] = [];

          const record = (p: number): Event => {
            const event = { vc: vcs[p]!, lamport: lamports[p]!.time, hlc: hlcs[p]!.peek() };
            events.push(event);
            return event;
          };

          for (const s of steps) {
            tick += 1;
            if (s.kind === 'local') {
              vcs[s.at] = vcs[s.at]!.increment(ids[s.at]!);
              lamports[s.at]!.tick();
              hlcs[s.at]!.now();
              record(s.at);
            } else if (s.kind === 'send') {
              vcs[s.from] = vcs[s.from]!.increment(ids[s.from]!);
              lamports[s.from]!.tick();
              hlcs[s.from]!.now();
              const sent = record(s.from);
              inFlight.push({ to: s.to, vc: sent.vc, lamport: sent.lamport, hlc: sent.hlc });
            } else if (inFlight.length > 0) {
              // Deliver any message in flight: the network reorders freely.
              const [message] = inFlight.splice(s.pick % inFlight.length, 1);
              const to = message!.to;
              vcs[to] = vcs[to]!.merge(message!.vc).increment(ids[to]!);
              lamports[to]!.receive(message!.lamport);
              hlcs[to]!.update(message!.hlc);
              record(to);
            }
          }

          for (const e of events) {
            for (const f of events) {
              if (e.vc.compare(f.vc) === 'before') {
                expect(e.lamport).toBeLessThan(f.lamport);
                expect(compareHlc(e.hlc, f.hlc)).toBeLessThan(0);
              }
            }
          }
        },
      ),
    );
  });
});
