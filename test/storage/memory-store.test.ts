import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/storage/index.js';
import { bytes, makeEntry } from './support/make-entry.js';
import { storeContract } from './support/store-contract.js';

storeContract('MemoryStore', () => new MemoryStore());

/** Lets every ready promise continuation run (a macrotask comes after all of them). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('MemoryStore', () => {
  it('resolves on a microtask, before any timer or I/O callback', async () => {
    const store = new MemoryStore();
    const order: string[] = [];
    const macrotask = settle().then(() => order.push('macrotask'));
    await store.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]).then(() => order.push('apply'));
    await store.putMeta('m', new Uint8Array([1])).then(() => order.push('putMeta'));
    await macrotask;
    expect(order).toEqual(['apply', 'putMeta', 'macrotask']);
  });

  it('resolves calls in call order', async () => {
    const store = new MemoryStore();
    const order: number[] = [];
    await Promise.all(
      [5, 3, 8, 1].map((wallMs, i) => store.apply('ks', [makeEntry({ key: 'k', wallMs })]).then(() => order.push(i))),
    );
    expect(order).toEqual([0, 1, 2, 3]);
  });

  describe('crash', () => {
    it('keeps every write that resolved, for the restarted node', async () => {
      const store = new MemoryStore();
      const entry = makeEntry({ key: 'k', wallMs: 1, value: 'durable' });
      await store.apply('ks', [entry]);
      await store.putMeta('incarnation', new Uint8Array([7]));
      store.crash();
      expect(store.get('ks', bytes('k'))).toEqual(entry);
      expect(store.entries('ks')).toEqual([entry]);
      expect(store.getMeta('incarnation')).toEqual(new Uint8Array([7]));
    });

    it('loses writes that had not resolved, and their promises never settle', async () => {
      const store = new MemoryStore();
      const durable = makeEntry({ key: 'k', wallMs: 1, value: 'durable' });
      await store.apply('ks', [durable]);
      let settled = false;
      const markSettled = (): void => {
        settled = true;
      };
      store.apply('ks', [makeEntry({ key: 'k', wallMs: 2 }), makeEntry({ key: 'new', wallMs: 2 })]).then(markSettled, markSettled);
      store.putMeta('incarnation', new Uint8Array([8])).then(markSettled, markSettled);
      // The writes are staged, so the crashed node could read them, as a real store's overlay allows.
      expect(store.get('ks', bytes('k'))?.version.hlc.wallMs).toBe(2);
      store.crash();
      await settle();
      expect(settled).toBe(false);
      expect(store.get('ks', bytes('k'))).toEqual(durable);
      expect(store.get('ks', bytes('new'))).toBeUndefined();
      expect(store.getMeta('incarnation')).toBeUndefined();
    });

    it('leaves the store open for the restarted node, even after a close', async () => {
      const store = new MemoryStore();
      await store.close();
      store.crash();
      expect(await store.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })])).toEqual(['applied']);
      store.crash();
      expect(store.get('ks', bytes('k'))?.version.hlc.wallMs).toBe(1);
    });
  });
});
