import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { DEFAULT_DISK_PROFILE, DiskSyncError, INSTANT_DISK, SimulatedDisk } from '../../src/sim/simulated-disk.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';
import { StoreClosedError } from '../../src/storage/store.js';
import { bytes, makeEntry } from '../storage/support/make-entry.js';
import { storeContract } from '../storage/support/store-contract.js';

// The contract awaits calls without running a scheduler, so it runs on the instant disk; the
// timed disk's own behaviour is tested below on virtual time.
storeContract('SimulatedDisk (instant)', () => new SimulatedDisk(new VirtualScheduler(), new SeededRandom(1), INSTANT_DISK));

function timedDisk(seed = 1) {
  const scheduler = new VirtualScheduler();
  return { scheduler, disk: new SimulatedDisk(scheduler, new SeededRandom(seed), DEFAULT_DISK_PROFILE) };
}

describe('SimulatedDisk on virtual time', () => {
  it('takes virtual time to commit, and calls of one turn share one commit', async () => {
    const { scheduler, disk } = timedDisk();
    const done: string[] = [];
    const a = disk.apply('ks', [makeEntry({ key: 'a', wallMs: 1 })]).then(() => done.push('a'));
    const b = disk.putMeta('m', new Uint8Array([1])).then(() => done.push('m'));
    expect(disk.hasWritesInFlight).toBe(true);
    await scheduler.runUntilSettled(Promise.all([a, b]), 1_000);
    expect(done.sort()).toEqual(['a', 'm']);
    expect(scheduler.nowMs()).toBeGreaterThan(0);
    expect(disk.stats.commits).toBe(1);
  });

  it('loses exactly what was not yet synced when it crashes, and fences the dead process off', async () => {
    const { scheduler, disk } = timedDisk();
    const old = disk.open();
    await scheduler.runUntilSettled(old.apply('ks', [makeEntry({ key: 'kept', wallMs: 1 })]), 1_000);
    void old.apply('ks', [makeEntry({ key: 'lost', wallMs: 2 })]);
    expect(old.get('ks', bytes('lost'))).toBeDefined(); // readable in flight, as the contract allows
    expect(disk.crash()).toBe(true);
    expect(disk.stats.crashesWithWritesInFlight).toBe(1);
    const restarted = disk.open();
    expect(restarted.get('ks', bytes('kept'))).toBeDefined();
    expect(restarted.get('ks', bytes('lost'))).toBeUndefined();
    // Code of the crashed process that wakes later cannot reach the disk.
    await expect(old.apply('ks', [makeEntry({ key: 'zombie', wallMs: 3 })])).rejects.toBeInstanceOf(StoreClosedError);
    expect(() => old.get('ks', bytes('kept'))).toThrow(StoreClosedError);
  });

  it('wipes everything on amnesia', async () => {
    const { scheduler, disk } = timedDisk();
    await scheduler.runUntilSettled(disk.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]), 1_000);
    disk.wipe();
    expect(disk.entries('ks')).toEqual([]);
    expect(disk.stats.wipes).toBe(1);
  });

  it('fails a commit whose sync fails with EIO, and every later call, until the process restarts', async () => {
    const { scheduler, disk } = timedDisk();
    disk.failNextSync();
    const failed = disk.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]);
    const seen = failed.catch((e: unknown) => e);
    await scheduler.runUntilSettled(seen, 1_000);
    const error = await seen;
    expect(error).toBeInstanceOf(DiskSyncError);
    expect((error as DiskSyncError).code).toBe('EIO');
    expect(disk.stats.syncFailures).toBe(1);
    await expect(disk.putMeta('m', new Uint8Array([1]))).rejects.toBeInstanceOf(DiskSyncError);
    expect(() => disk.get('ks', bytes('k'))).toThrow(DiskSyncError);
    disk.crash();
    expect(() => disk.get('ks', bytes('k'))).not.toThrow();
  });

  it('readDurable waits for the commit of a write in flight', async () => {
    const { scheduler, disk } = timedDisk();
    void disk.apply('ks', [makeEntry({ key: 'k', wallMs: 1, value: 'v' })]);
    let answered = false;
    const read = disk.readDurable('ks', bytes('k')).then((e) => ((answered = true), e));
    await Promise.resolve();
    expect(answered).toBe(false);
    await scheduler.runUntilSettled(read, 1_000);
    expect(new TextDecoder().decode((await read)!.value)).toBe('v');
  });
});
