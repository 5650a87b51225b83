import { describe, expect, it } from 'vitest';
import { callQuorum, type ThriftyPlan } from '../../src/policy/quorum-call.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';

const IDS = ['n1', 'n2', 'n3'];
const PLAN: ThriftyPlan = { first: ['n1', 'n2'], hedgeAfterMs: 10 };

/** A replica call that answers (or fails) after a virtual delay per replica, and logs who was asked when. */
function replicas(scheduler: VirtualScheduler, behaviour: Record<string, { afterMs: number; fails?: boolean }>) {
  const asked: [string, number][] = [];
  const call = (id: string): Promise<string> => {
    asked.push([id, scheduler.nowMs()]);
    const { afterMs, fails } = behaviour[id]!;
    return new Promise((resolve, reject) =>
      scheduler.setTimer(afterMs, () => (fails ? reject(new Error(`${id} failed`)) : resolve(`from ${id}`))),
    );
  };
  return { asked, call };
}

async function settle<T>(scheduler: VirtualScheduler, pending: Promise<T>): Promise<T> {
  await scheduler.runUntil(1_000);
  return pending;
}

describe('callQuorum', () => {
  it('without a plan asks every replica at once', async () => {
    const scheduler = new VirtualScheduler();
    const { asked, call } = replicas(scheduler, { n1: { afterMs: 0 }, n2: { afterMs: 2 }, n3: { afterMs: 3 } });
    const outcome = await settle(scheduler, callQuorum(IDS, 2, 500, scheduler, call));
    expect(asked).toEqual([['n1', 0], ['n2', 0], ['n3', 0]]);
    expect(outcome.kind).toBe('quorum');
    expect([...outcome.answers.keys()]).toEqual(['n1', 'n2']);
  });

  it('with a plan asks only the first majority while it answers in time', async () => {
    const scheduler = new VirtualScheduler();
    const { asked, call } = replicas(scheduler, { n1: { afterMs: 0 }, n2: { afterMs: 9 }, n3: { afterMs: 1 } });
    const outcome = await settle(scheduler, callQuorum(IDS, 2, 500, scheduler, call, PLAN));
    expect(asked).toEqual([['n1', 0], ['n2', 0]]);
    expect(outcome.kind).toBe('quorum');
    expect([...outcome.answers.keys()].sort()).toEqual(['n1', 'n2']);
  });

  it('asks the rest at once when one of the first fails', async () => {
    const scheduler = new VirtualScheduler();
    const { asked, call } = replicas(scheduler, { n1: { afterMs: 0 }, n2: { afterMs: 3, fails: true }, n3: { afterMs: 2 } });
    const outcome = await settle(scheduler, callQuorum(IDS, 2, 500, scheduler, call, PLAN));
    expect(asked).toEqual([['n1', 0], ['n2', 0], ['n3', 3]]);
    expect(outcome.kind).toBe('quorum');
    expect([...outcome.answers.keys()].sort()).toEqual(['n1', 'n3']);
  });

  it('asks the rest after the hedge delay when the first have not formed a quorum', async () => {
    const scheduler = new VirtualScheduler();
    const { asked, call } = replicas(scheduler, { n1: { afterMs: 0 }, n2: { afterMs: 400 }, n3: { afterMs: 2 } });
    const outcome = await settle(scheduler, callQuorum(IDS, 2, 500, scheduler, call, PLAN));
    expect(asked).toEqual([['n1', 0], ['n2', 0], ['n3', 10]]);
    expect(outcome.kind).toBe('quorum');
    expect([...outcome.answers.keys()].sort()).toEqual(['n1', 'n3']);
  });

  it('still fails as soon as a quorum has become impossible, and times out when nobody answers', async () => {
    const scheduler = new VirtualScheduler();
    const failing = replicas(scheduler, { n1: { afterMs: 0 }, n2: { afterMs: 1, fails: true }, n3: { afterMs: 1, fails: true } });
    const failed = await settle(scheduler, callQuorum(IDS, 2, 500, scheduler, failing.call, PLAN));
    expect(failed.kind).toBe('failed');

    const silent = new VirtualScheduler();
    const slow = replicas(silent, { n1: { afterMs: 0 }, n2: { afterMs: 900 }, n3: { afterMs: 900 } });
    const timedOut = await settle(silent, callQuorum(IDS, 2, 500, silent, slow.call, PLAN));
    expect(timedOut.kind).toBe('timeout');
    expect(slow.asked.map(([id]) => id)).toEqual(['n1', 'n2', 'n3']);
  });
});
