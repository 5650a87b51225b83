/**
 * LeaseKeeper (src/policy/cp/lease-keeper.ts): the leader's lease deadlines, pure (times passed
 * in). Every rule a failover's safety leans on is pinned here: a new leader's grace, renewals only
 * before the deadline, expired leases not renewable before their revoke applies, each expired
 * lease proposed once (and again after a failed proposal), nothing kept once not leading.
 */
import { describe, expect, it } from 'vitest';
import { LeaseKeeper } from '../../src/policy/cp/lease-keeper.js';

const leases = [
  { id: 7, ttlMs: 1_000 },
  { id: 9, ttlMs: 5_000 },
];

describe('LeaseKeeper', () => {
  it('lead() gives every lease its TTL plus the extension from now', () => {
    const k = new LeaseKeeper();
    expect(k.leading).toBe(false);
    k.lead(leases, 10_000, 2_000);
    expect(k.leading).toBe(true);
    expect(k.remaining(7, 10_000)).toBe(3_000);
    expect(k.remaining(9, 10_000)).toBe(7_000);
    expect(k.remaining(9, 16_000)).toBe(1_000);
    expect(k.remaining(9, 20_000)).toBe(0);
    expect(k.remaining(8, 10_000)).toBeUndefined();
    // Not due until TTL + extension passed.
    expect(k.due(12_999, 100)).toEqual([]);
    expect(k.due(13_000, 100)).toEqual([7]);
    // lead() again (a later term) starts over: nothing stays marked expiring.
    k.lead(leases, 20_000, 0);
    expect(k.remaining(7, 20_000)).toBe(1_000);
    expect(k.due(20_999, 100)).toEqual([]);
    expect(k.due(21_000, 100)).toEqual([7]);
  });

  it('a renewal before the deadline extends it by the TTL from the renewal', () => {
    const k = new LeaseKeeper();
    k.lead([], 0, 0);
    k.granted(7, 1_000, 100);
    expect(k.remaining(7, 100)).toBe(1_000);
    expect(k.renew(7, 1_000, 900)).toEqual({ ok: true, ttlMs: 1_000 });
    expect(k.remaining(7, 900)).toBe(1_000);
    // The old deadline (1,100) passed: still not due, the renewal moved it to 1,900.
    expect(k.due(1_500, 100)).toEqual([]);
    expect(k.renew(7, 1_000, 1_899)).toEqual({ ok: true, ttlMs: 1_000 });
    expect(k.due(2_898, 100)).toEqual([]);
    expect(k.due(2_899, 100)).toEqual([7]);
  });

  it('a renewal at or after the deadline is refused as expired, even before the revoke is proposed or applied', () => {
    const k = new LeaseKeeper();
    k.lead([], 0, 0);
    k.granted(7, 1_000, 0);
    // Exactly at the deadline: expired.
    expect(k.renew(7, 1_000, 1_000)).toEqual({ ok: false, why: 'expired' });
    // Refusing did not move the deadline: still expired later.
    expect(k.renew(7, 1_000, 1_001)).toEqual({ ok: false, why: 'expired' });
    expect(k.remaining(7, 1_001)).toBe(0);
    // Once its revoke is proposed (due) and not yet applied: still expired.
    expect(k.due(1_001, 100)).toEqual([7]);
    expect(k.renew(7, 1_000, 1_002)).toEqual({ ok: false, why: 'expired' });
    // A failed proposal does not revive it either.
    k.retry([7]);
    expect(k.renew(7, 1_000, 1_003)).toEqual({ ok: false, why: 'expired' });
  });

  it('due() answers each expired lease once, at most `max` at a time; retry() makes it due again; revoked() forgets it', () => {
    const k = new LeaseKeeper();
    k.lead([], 0, 0);
    for (let id = 1; id <= 5; id++) k.granted(id, 100 * id, 0);
    expect(k.due(50, 10)).toEqual([]);
    const first = k.due(1_000, 2);
    expect(first).toHaveLength(2);
    const second = k.due(1_000, 2);
    expect(second).toHaveLength(2);
    const third = k.due(1_000, 2);
    expect(third).toHaveLength(1);
    expect(new Set([...first, ...second, ...third])).toEqual(new Set([1, 2, 3, 4, 5]));
    // Each once: nothing more while their revokes are under way.
    expect(k.due(5_000, 10)).toEqual([]);
    // The proposal of `first` failed: those are due again, and only those.
    k.retry(first);
    expect(k.due(5_000, 10).sort()).toEqual([...first].sort());
    expect(k.due(5_000, 10)).toEqual([]);
    // Applied revokes: gone for good (retry of a revoked lease does not bring it back).
    k.revoked([1, 2, 3, 4, 5]);
    k.retry([1, 2]);
    expect(k.due(10_000, 10)).toEqual([]);
    expect(k.remaining(1, 10_000)).toBeUndefined();
  });

  it('a lease without a deadline here (unknown to this keeper) is never due and a renewal starts one', () => {
    const k = new LeaseKeeper();
    k.lead([], 0, 0);
    expect(k.due(1_000_000, 10)).toEqual([]);
    expect(k.renew(42, 1_000, 5_000)).toEqual({ ok: true, ttlMs: 1_000 });
    expect(k.remaining(42, 5_000)).toBe(1_000);
  });

  it('stepDown() clears every deadline and refuses renewals as not-leader; nothing is ever due', () => {
    const k = new LeaseKeeper();
    k.lead(leases, 0, 0);
    k.granted(11, 1_000, 0);
    expect(k.due(1_000, 10).sort((a, b) => a - b)).toEqual([7, 11]);
    k.stepDown();
    expect(k.leading).toBe(false);
    expect(k.remaining(7, 0)).toBeUndefined();
    expect(k.remaining(9, 0)).toBeUndefined();
    expect(k.remaining(11, 0)).toBeUndefined();
    expect(k.due(1_000_000, 10)).toEqual([]);
    expect(k.renew(9, 5_000, 1)).toEqual({ ok: false, why: 'not-leader' });
    // Leading again: the leases marked expiring under the old term are not remembered as such.
    k.lead(leases, 2_000, 100);
    expect(k.renew(7, 1_000, 2_500)).toEqual({ ok: true, ttlMs: 1_000 });
  });

  it('granted() while not leading keeps nothing', () => {
    const k = new LeaseKeeper();
    k.granted(5, 1_000, 0);
    expect(k.remaining(5, 0)).toBeUndefined();
    expect(k.due(10_000, 10)).toEqual([]);
    // Still nothing for it once leading, unless lead() was given it.
    k.lead([], 20_000, 0);
    expect(k.remaining(5, 20_000)).toBeUndefined();
    expect(k.due(100_000, 10)).toEqual([]);
  });
});
