import { describe, expect, it } from 'vitest';
import { ClockSampleWindow, MembershipView, clockOffsetExceeds, lanProfile } from '../../src/failure/index.js';
import type { ClockOffsetChange } from '../../src/failure/index.js';

function view() {
  const v = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: 'b:1' }], config: lanProfile(), startMs: 0 });
  const events: (ClockOffsetChange & { type: string })[] = [];
  v.on('clock-offset-exceeded', (e) => events.push({ ...e, type: 'exceeded' }));
  v.on('clock-offset-ok', (e) => events.push({ ...e, type: 'ok' }));
  return { v, events };
}

describe('clock offsets', () => {
  it('reports the offset and RTT of the lowest-RTT recent sample', () => {
    const { v } = view();
    expect(v.member('b', 0)).toMatchObject({ rttMs: undefined, clockOffsetMs: undefined, clockOffsetExceeded: false });
    v.recordClockSample('b', { offsetMs: 12, rttMs: 3 }, 10);
    v.recordClockSample('b', { offsetMs: 4, rttMs: 0.4 }, 20);
    v.recordClockSample('b', { offsetMs: 30, rttMs: 9 }, 30); // queued on one leg: skewed
    expect(v.member('b', 30)).toMatchObject({ rttMs: 0.4, clockOffsetMs: 4 });
  });

  it('flags a peer beyond maxClockOffsetMs and clears the flag when it is back, with events naming the values', () => {
    const { v, events } = view();
    v.recordClockSample('b', { offsetMs: 120, rttMs: 1 }, 10);
    expect(events).toEqual([]);
    v.recordClockSample('b', { offsetMs: 700, rttMs: 0.5 }, 20);
    expect(v.member('b', 20).clockOffsetExceeded).toBe(true);
    expect(events).toEqual([{ type: 'exceeded', peer: 'b', offsetMs: 700, rttMs: 0.5, maxClockOffsetMs: 500, atMs: 20 }]);
    // The bad sample stays the best one until eight newer samples have pushed it out.
    for (let i = 0; i < 7; i += 1) v.recordClockSample('b', { offsetMs: 2, rttMs: 0.6 }, 30 + i);
    expect(v.member('b', 40).clockOffsetExceeded).toBe(true);
    v.recordClockSample('b', { offsetMs: 2, rttMs: 0.6 }, 40);
    expect(v.member('b', 40)).toMatchObject({ clockOffsetExceeded: false, clockOffsetMs: 2 });
    expect(events.at(-1)).toEqual({ type: 'ok', peer: 'b', offsetMs: 2, rttMs: 0.6, maxClockOffsetMs: 500, atMs: 40 });
  });

  it('does not flag an offset that only exceeds the bound within its measurement error', () => {
    expect(clockOffsetExceeds({ offsetMs: 540, rttMs: 100 }, 500)).toBe(false); // 540 − 50 = 490
    expect(clockOffsetExceeds({ offsetMs: -560, rttMs: 100 }, 500)).toBe(true); // 560 − 50 = 510
  });

  it('refuses samples that cannot come from a measurement', () => {
    const window = new ClockSampleWindow(2);
    expect(() => window.add({ offsetMs: 0, rttMs: -1 })).toThrow(RangeError);
    expect(() => window.add({ offsetMs: Number.NaN, rttMs: 1 })).toThrow(RangeError);
  });
});
