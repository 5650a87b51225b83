import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VectorClock } from '../../src/clock/index.js';
import { LmdbStore } from '../../src/storage/index.js';
import { bytes, makeEntry } from './support/make-entry.js';
import { storeContract } from './support/store-contract.js';

let root: string;
let storeCount = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'replikit-lmdb-store-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});
const freshPath = (): string => join(root, `store-${storeCount++}`);

storeContract('LmdbStore', () => LmdbStore.open(freshPath()));

/** How many applies the group-commit test issues at once. */
const CONCURRENT_APPLIES = 1000;
/**
 * The most commits those applies may take. All of them are issued in one event-loop turn, so lmdb
 * should put them in one transaction; the slack allows for its writer starting early on a large
 * batch. One commit per apply would be 1000.
 */
const MAX_COMMITS_FOR_CONCURRENT_APPLIES = 10;

describe('LmdbStore', () => {
  it('creates missing directories, parents included', async () => {
    const path = join(freshPath(), 'nested', 'dir.with.dots');
    const store = LmdbStore.open(path);
    await store.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]);
    await store.close();
    const reopened = LmdbStore.open(path);
    expect(reopened.get('ks', bytes('k'))?.version.hlc.wallMs).toBe(1);
    await reopened.close();
  });

  it('reads everything back after a restart', async () => {
    const path = freshPath();
    const store = LmdbStore.open(path);
    const written = Array.from({ length: 500 }, (_, i) =>
      makeEntry({
        key: new Uint8Array([i >> 8, i & 0xff]),
        wallMs: 1_700_000_000_000 + i,
        logical: i % 3,
        nodeId: `n${i % 5}`,
        value: `value-${i}`,
        tombstone: i % 17 === 0,
        ...(i % 4 === 0 ? { dependencies: VectorClock.from({ n1: i + 1, n2: 2 }), originSequence: i + 1 } : {}),
      }),
    );
    await Promise.all(written.map((entry, i) => store.apply(i % 2 === 0 ? 'even' : 'odd', [entry])));
    await store.putMeta('incarnation', new Uint8Array([0, 0, 0, 3]));
    await store.close();

    const reopened = LmdbStore.open(path);
    expect(reopened.entries('even')).toEqual(written.filter((_, i) => i % 2 === 0));
    expect(reopened.entries('odd')).toEqual(written.filter((_, i) => i % 2 === 1));
    expect(reopened.getMeta('incarnation')).toEqual(new Uint8Array([0, 0, 0, 3]));
    // Causal fields come back as a real VectorClock.
    expect(reopened.get('even', written[4]!.key)?.dependencies?.get('n1')).toBe(5);
    await reopened.close();
  });

  it('shares commits between concurrent applies (group commit)', async () => {
    const store = LmdbStore.open(freshPath());
    try {
      // Calibrate: applies awaited one by one take one commit each, so the counter counts commits.
      const before = store.lastTransactionId();
      for (let i = 0; i < 5; i++) await store.apply('ks', [makeEntry({ key: `serial-${i}`, wallMs: 1 })]);
      expect(store.lastTransactionId() - before).toBe(5);

      const start = store.lastTransactionId();
      const outcomes = await Promise.all(
        Array.from({ length: CONCURRENT_APPLIES }, (_, i) =>
          store.apply('ks', [makeEntry({ key: `concurrent-${i}`, wallMs: 1 })]),
        ),
      );
      const commits = store.lastTransactionId() - start;
      expect(outcomes.flat().every((outcome) => outcome === 'applied')).toBe(true);
      expect(commits).toBeGreaterThanOrEqual(1);
      expect(commits).toBeLessThanOrEqual(MAX_COMMITS_FOR_CONCURRENT_APPLIES);
      expect(store.entries('ks')).toHaveLength(CONCURRENT_APPLIES + 5);
    } finally {
      await store.close();
    }
  });

  it('compares against writes still in flight', async () => {
    const store = LmdbStore.open(freshPath());
    try {
      // Both calls are issued before the first commits: the second must see the first's write,
      // though the database does not hold it yet.
      const first = store.apply('ks', [makeEntry({ key: 'k', wallMs: 5 })]);
      const second = store.apply('ks', [makeEntry({ key: 'k', wallMs: 4 })]);
      expect(store.get('ks', bytes('k'))?.version.hlc.wallMs).toBe(5);
      expect(await Promise.all([first, second])).toEqual([['applied'], ['superseded']]);
    } finally {
      await store.close();
    }
  });
});
