import { describe, expect, it } from 'vitest';
import { MembershipView, lanProfile } from '../../src/failure/index.js';
import type { QuorumChange } from '../../src/failure/index.js';
import { beatArrivals } from './beat-schedule.js';
import type { BeatJitter } from './beat-schedule.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import type { Delivery } from './virtual-time.js';
import { runVirtual } from './virtual-time.js';

const NODES: readonly string[] = ['a', 'b', 'c'];
const PARTITION_FROM_MS = 20_000;
const PARTITION_UNTIL_MS = 30_000;
const END_MS = 40_000;
const JITTER: BeatJitter = { intervalMs: 100, jitterMs: 20, pauseProbability: 0, maxPauseMs: 0 };

/** True when a beat from `from` to `to` at `atMs` crosses the cut that isolates c. */
function cut(from: string, to: string, atMs: number): boolean {
  const crosses = (from === 'c') !== (to === 'c');
  return crosses && atMs >= PARTITION_FROM_MS && atMs < PARTITION_UNTIL_MS;
}

describe('a partition that isolates one node of three', () => {
  it.each([1, 2, 3])('loses quorum on the isolated node only, and regains it after the heal (seed %i)', (seed) => {
    const config = lanProfile();
    const random = new SeededRandom(seed);
    const views = new Map(
      NODES.map((self) => [
        self,
        new MembershipView({
          selfId: self,
          peers: NODES.filter((n) => n !== self).map((id) => ({ id, address: `${id}:7000` })),
          config,
          startMs: 0,
        }),
      ]),
    );
    const quorumEvents = new Map<string, (QuorumChange & { type: string })[]>(NODES.map((n) => [n, []]));
    for (const [self, view] of views) {
      view.trackQuorum('orders', [...NODES]);
      view.on('quorum-lost', (e) => quorumEvents.get(self)?.push({ ...e, type: 'lost' }));
      view.on('quorum-regained', (e) => quorumEvents.get(self)?.push({ ...e, type: 'regained' }));
    }

    const deliveries: Delivery[] = [];
    for (const from of NODES) {
      for (const [to, view] of views) {
        if (to === from) continue;
        for (const atMs of beatArrivals(random, JITTER, 100, END_MS)) {
          if (!cut(from, to, atMs)) deliveries.push({ atMs, to: view, from, incarnation: 1 });
        }
      }
    }
    runVirtual([...views.values()], deliveries, { fromMs: 0, untilMs: END_MS, tickIntervalMs: config.tickIntervalMs });

    const summary = (node: string) => (quorumEvents.get(node) ?? []).map((e) => `${e.type}:${e.from}->${e.to}`);
    // Every node reaches quorum once at startup, when first beats end the pending state.
    // The isolated node loses it within a second of the cut and regains it soon after the heal.
    expect(summary('c')).toEqual(['regained:pending->reachable', 'lost:reachable->unreachable', 'regained:unreachable->reachable']);
    const [, lost, regained] = quorumEvents.get('c') ?? [];
    expect(lost?.atMs).toBeGreaterThan(PARTITION_FROM_MS);
    expect(lost?.atMs).toBeLessThan(PARTITION_FROM_MS + 1000);
    expect(lost?.aliveCount).toBe(1);
    expect(regained?.atMs).toBeGreaterThanOrEqual(PARTITION_UNTIL_MS);
    expect(regained?.atMs).toBeLessThan(PARTITION_UNTIL_MS + 200);
    // The majority side never loses quorum, though it sees c die and come back.
    for (const node of ['a', 'b']) {
      expect(summary(node)).toEqual(['regained:pending->reachable']);
      expect(views.get(node)?.isQuorumReachable('orders')).toBe(true);
    }
    expect(views.get('c')?.isQuorumReachable('orders')).toBe(true);
    expect(views.get('a')?.stateOf('c')).toBe('ALIVE');
  });

  it('marks the cut-off peers DEAD on the isolated side and the isolated node DEAD on the other', () => {
    const config = lanProfile();
    const random = new SeededRandom(9);
    const a = new MembershipView({ selfId: 'a', peers: [{ id: 'b', address: '' }, { id: 'c', address: '' }], config, startMs: 0 });
    const c = new MembershipView({ selfId: 'c', peers: [{ id: 'a', address: '' }, { id: 'b', address: '' }], config, startMs: 0 });
    const deliveries: Delivery[] = [];
    const add = (from: string, to: string, view: MembershipView, until: number) => {
      for (const atMs of beatArrivals(random, JITTER, 100, until)) {
        if (!cut(from, to, atMs)) deliveries.push({ atMs, to: view, from, incarnation: 1 });
      }
    };
    add('b', 'a', a, PARTITION_FROM_MS + 5000);
    add('c', 'a', a, PARTITION_FROM_MS + 5000);
    add('a', 'c', c, PARTITION_FROM_MS + 5000);
    add('b', 'c', c, PARTITION_FROM_MS + 5000);
    runVirtual([a, c], deliveries, { fromMs: 0, untilMs: PARTITION_FROM_MS + 2000, tickIntervalMs: config.tickIntervalMs });
    expect([a.stateOf('b'), a.stateOf('c')]).toEqual(['ALIVE', 'DEAD']);
    expect([c.stateOf('a'), c.stateOf('b')]).toEqual(['DEAD', 'DEAD']);
    expect(c.aliveCount()).toBe(1);
    expect(a.aliveCount()).toBe(2);
  });
});
