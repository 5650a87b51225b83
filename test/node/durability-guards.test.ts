import { describe, expect, it } from 'vitest';
import { ClockHighWaterStore, readHighWater } from '../../src/node/clock-high-water.js';
import { FailStopStore } from '../../src/node/fail-stop-store.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { DEFAULT_DISK_PROFILE, SimulatedDisk } from '../../src/sim/simulated-disk.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import { bytes, makeEntry } from '../storage/support/make-entry.js';

describe('FailStopStore', () => {
  it('reports the first operating failure once, then fails every call with it, and never retries', async () => {
    const scheduler = new VirtualScheduler();
    const disk = new SimulatedDisk(scheduler, new SeededRandom(1), DEFAULT_DISK_PROFILE);
    const failures: unknown[] = [];
    const store = new FailStopStore(disk, (error) => failures.push(error));
    disk.failNextSync();
    const first = store.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]).catch((e: unknown) => e);
    await scheduler.runUntilSettled(first, 1_000);
    expect(String(await first)).toMatch(/EIO/);
    expect(failures).toHaveLength(1);
    await expect(store.putMeta('m', new Uint8Array([1]))).rejects.toBe(failures[0]);
    expect(() => store.get('ks', bytes('k'))).toThrow(/EIO/);
    expect(failures).toHaveLength(1);
  });

  it('passes programmer errors through without stopping', async () => {
    const failures: unknown[] = [];
    const store = new FailStopStore(new MemoryStore(), (error) => failures.push(error));
    await expect(store.apply('not a keyspace name!', [])).rejects.toBeInstanceOf(RangeError);
    expect(failures).toEqual([]);
    expect(await store.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })])).toEqual(['applied']);
  });
});

describe('ClockHighWaterStore', () => {
  it('keeps the largest HLC applied, durably in the same commit, for the next start', async () => {
    const inner = new MemoryStore();
    const store = new ClockHighWaterStore(inner);
    expect(store.highWater).toBeUndefined();
    await store.apply('ks', [makeEntry({ key: 'a', wallMs: 50, logical: 2 }), makeEntry({ key: 'b', wallMs: 40 })]);
    await store.apply('ks', [makeEntry({ key: 'c', wallMs: 30 })]);
    expect(store.highWater).toEqual({ wallMs: 50, logical: 2 });
    expect(readHighWater(inner)).toEqual({ wallMs: 50, logical: 2 });
    inner.crash();
    expect(new ClockHighWaterStore(inner).highWater).toEqual({ wallMs: 50, logical: 2 });
  });
});
