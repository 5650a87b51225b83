import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { VectorClock } from '../../../src/clock/index.js';
import {
  MAX_KEY_BYTES,
  StoreClosedError,
  compareVersion,
  type ApplyOutcome,
  type Entry,
  type Store,
  type Version,
} from '../../../src/storage/index.js';
import { bytes, makeEntry } from './make-entry.js';

/** How many random histories the property test runs per store (each opens a fresh store). */
const HISTORY_RUNS = 60;
/** The longest random history, in steps. */
const MAX_HISTORY_STEPS = 80;

/**
 * The behaviour every {@link Store} promises, as one suite. `makeStore` returns a fresh, empty
 * store each time; the suite closes every store it made.
 */
export function storeContract(name: string, makeStore: () => Store | Promise<Store>): void {
  describe(`${name} (Store contract)`, () => {
    const opened: Store[] = [];
    const fresh = async (): Promise<Store> => {
      const store = await makeStore();
      opened.push(store);
      return store;
    };
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((store) => store.close()));
    });

    it('starts empty', async () => {
      const store = await fresh();
      expect(store.get('ks', bytes('k'))).toBeUndefined();
      expect(store.entries('ks')).toEqual([]);
      expect(store.getMeta('incarnation')).toBeUndefined();
    });

    it('applies an entry for a new key and returns it from get', async () => {
      const store = await fresh();
      const entry = makeEntry({ key: 'k', wallMs: 10, value: 'v' });
      expect(await store.apply('ks', [entry])).toEqual(['applied']);
      expect(store.get('ks', bytes('k'))).toEqual(entry);
    });

    it('readDurable answers what is durable: a write in flight once its commit is done, else at once', async () => {
      const store = await fresh();
      expect(await store.readDurable('ks', bytes('k'))).toBeUndefined();
      const entry = makeEntry({ key: 'k', wallMs: 10, value: 'v' });
      const applied = store.apply('ks', [entry]);
      // Issued, not yet committed: readDurable waits for the commit and answers what it made durable.
      const read = store.readDurable('ks', bytes('k'));
      expect(await read).toEqual(entry);
      await applied;
      expect(await store.readDurable('ks', bytes('k'))).toEqual(entry);
      expect(await store.readDurable('ks', bytes('other'))).toBeUndefined();
    });

    it('stores what a conflict resolver chooses, merged entries included', async () => {
      const store = await fresh();
      await store.apply('ks', [makeEntry({ key: 'k', wallMs: 10, value: 'a' })]);
      const merged = makeEntry({ key: 'k', wallMs: 10, value: 'a+b' });
      const outcome = await store.apply('ks', [makeEntry({ key: 'k', wallMs: 9, value: 'b' })], (held, offered) => {
        expect(held?.value).toEqual(bytes('a'));
        expect(offered.value).toEqual(bytes('b'));
        return merged;
      });
      expect(outcome).toEqual(['applied']);
      expect(store.get('ks', bytes('k'))).toEqual(merged);
      expect(await store.apply('ks', [makeEntry({ key: 'k', wallMs: 99 })], () => undefined)).toEqual(['superseded']);
      expect(store.get('ks', bytes('k'))).toEqual(merged);
    });

    it('removes an entry only while it still holds the given version', async () => {
      const store = await fresh();
      const old = makeEntry({ key: 'k', wallMs: 10 });
      const newer = makeEntry({ key: 'k', wallMs: 20 });
      const other = makeEntry({ key: 'o', wallMs: 10 });
      await store.apply('ks', [newer, other]);
      expect(await store.remove('ks', [old])).toBe(0);
      expect(store.get('ks', bytes('k'))).toEqual(newer);
      expect(await store.remove('ks', [newer])).toBe(1);
      expect(store.get('ks', bytes('k'))).toBeUndefined();
      expect(store.entries('ks')).toEqual([other]);
      // A removed key takes any version again.
      expect(await store.apply('ks', [old])).toEqual(['applied']);
    });

    it('replaces an entry with a newer version', async () => {
      const store = await fresh();
      await store.apply('ks', [makeEntry({ key: 'k', wallMs: 10, value: 'old' })]);
      const newer = makeEntry({ key: 'k', wallMs: 10, logical: 1, value: 'new' });
      expect(await store.apply('ks', [newer])).toEqual(['applied']);
      expect(store.get('ks', bytes('k'))).toEqual(newer);
    });

    it('keeps the held entry when offered an older or equal version', async () => {
      const store = await fresh();
      const held = makeEntry({ key: 'k', wallMs: 10, value: 'held' });
      await store.apply('ks', [held]);
      const older = makeEntry({ key: 'k', wallMs: 9, logical: 7, value: 'older' });
      const equal = makeEntry({ key: 'k', wallMs: 10, value: 'same version, other bytes' });
      expect(await store.apply('ks', [older, equal])).toEqual(['superseded', 'superseded']);
      expect(store.get('ks', bytes('k'))).toEqual(held);
    });

    it('breaks HLC ties by node id', async () => {
      const store = await fresh();
      await store.apply('ks', [makeEntry({ key: 'k', wallMs: 10, nodeId: 'n2' })]);
      expect(await store.apply('ks', [makeEntry({ key: 'k', wallMs: 10, nodeId: 'n1' })])).toEqual(['superseded']);
      expect(await store.apply('ks', [makeEntry({ key: 'k', wallMs: 10, nodeId: 'n3' })])).toEqual(['applied']);
      expect(store.get('ks', bytes('k'))?.version.nodeId).toBe('n3');
    });

    it('versions tombstones like values', async () => {
      const store = await fresh();
      await store.apply('ks', [makeEntry({ key: 'k', wallMs: 10 })]);
      const tombstone = makeEntry({ key: 'k', wallMs: 20, tombstone: true });
      expect(await store.apply('ks', [tombstone])).toEqual(['applied']);
      expect(store.get('ks', bytes('k'))).toEqual(tombstone);
      expect(store.entries('ks')).toEqual([tombstone]);
      // A late write older than the delete must not resurrect the key.
      expect(await store.apply('ks', [makeEntry({ key: 'k', wallMs: 15 })])).toEqual(['superseded']);
      // An older tombstone loses to the value that follows it, too.
      const rewrite = makeEntry({ key: 'k', wallMs: 30, value: 'back' });
      await store.apply('ks', [rewrite]);
      expect(await store.apply('ks', [makeEntry({ key: 'k', wallMs: 25, tombstone: true })])).toEqual(['superseded']);
      expect(store.get('ks', bytes('k'))).toEqual(rewrite);
    });

    it('answers one outcome per entry, in order, within one call', async () => {
      const store = await fresh();
      const outcomes = await store.apply('ks', [
        makeEntry({ key: 'a', wallMs: 5 }),
        makeEntry({ key: 'b', wallMs: 5 }),
        makeEntry({ key: 'a', wallMs: 4 }),
        makeEntry({ key: 'a', wallMs: 6, value: 'last' }),
        makeEntry({ key: 'b', wallMs: 5 }),
      ]);
      expect(outcomes).toEqual(['applied', 'applied', 'superseded', 'applied', 'superseded']);
      expect(store.get('ks', bytes('a'))?.version.hlc.wallMs).toBe(6);
    });

    it('ends at the largest version whatever the order of overlapping applies', async () => {
      const store = await fresh();
      const versions = [3, 9, 1, 7, 9, 2, 8];
      const results = await Promise.all(versions.map((wallMs) => store.apply('ks', [makeEntry({ key: 'k', wallMs })])));
      expect(results.map(([outcome]) => outcome)).toEqual([
        'applied',
        'applied',
        'superseded',
        'superseded',
        'superseded',
        'superseded',
        'superseded',
      ]);
      expect(store.get('ks', bytes('k'))?.version.hlc.wallMs).toBe(9);
    });

    it('answers superseded no sooner than the write that beat it is answered', async () => {
      const store = await fresh();
      const settled: string[] = [];
      const winner = store.apply('ks', [makeEntry({ key: 'k', wallMs: 9 })]).then(() => settled.push('winner'));
      const loser = store.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]).then((outcomes) => {
        settled.push('loser');
        return outcomes;
      });
      expect(await loser).toEqual(['superseded']);
      await winner;
      expect(settled).toEqual(['winner', 'loser']);
    });

    it('copies what it is given', async () => {
      const store = await fresh();
      const entry = makeEntry({ key: 'k', wallMs: 10, value: 'abc' });
      const key = new Uint8Array(entry.key);
      await store.apply('ks', [entry]);
      (entry.value as Uint8Array).fill(0);
      (entry.key as Uint8Array).fill(0);
      expect(store.get('ks', key)?.value).toEqual(bytes('abc'));
    });

    it('lists entries in byte-wise key order', async () => {
      const store = await fresh();
      const keys = [[0x02], [0x01, 0xff], [0x01], [], [0xff, 0x00], [0x00], [0x80], [0x7f, 0xff, 0xff]];
      await store.apply(
        'ks',
        keys.map((key, i) => makeEntry({ key: new Uint8Array(key), wallMs: i + 1 })),
      );
      expect(store.entries('ks').map((entry) => [...entry.key])).toEqual([
        [],
        [0x00],
        [0x01],
        [0x01, 0xff],
        [0x02],
        [0x7f, 0xff, 0xff],
        [0x80],
        [0xff, 0x00],
      ]);
    });

    it('keeps keyspaces apart, including ones whose names share a prefix', async () => {
      const store = await fresh();
      const names = ['a', 'a.b', 'ab', 'a-', 'A', 'a_'];
      for (const [i, keyspace] of names.entries()) {
        await store.apply(keyspace, [makeEntry({ key: 'k', wallMs: 10 + i, value: keyspace })]);
      }
      // An older version is still applied in a keyspace that has never seen the key.
      expect(await store.apply('fresh', [makeEntry({ key: 'k', wallMs: 1 })])).toEqual(['applied']);
      for (const [i, keyspace] of names.entries()) {
        expect(store.get(keyspace, bytes('k'))?.version.hlc.wallMs).toBe(10 + i);
        expect(store.entries(keyspace).map((entry) => new TextDecoder().decode(entry.value))).toEqual([keyspace]);
      }
      expect(store.entries('a.')).toEqual([]);
    });

    it('round-trips causal fields: dependencies and origin sequence', async () => {
      const store = await fresh();
      const dependencies = VectorClock.from({ n1: 3, 'n-2': 7, 'ünïcode': 2 ** 40 });
      const causal = makeEntry({ key: 'c', wallMs: 10, dependencies, originSequence: 42 });
      const plain = makeEntry({ key: 'p', wallMs: 10 });
      await store.apply('causal', [causal, plain]);
      const stored = store.get('causal', bytes('c'))!;
      expect(stored.dependencies).toBeInstanceOf(VectorClock);
      expect(stored.dependencies!.compare(dependencies)).toBe('equal');
      expect(stored.originSequence).toBe(42);
      const storedPlain = store.get('causal', bytes('p'))!;
      expect('dependencies' in storedPlain).toBe(false);
      expect('originSequence' in storedPlain).toBe(false);
      expect(store.entries('causal')[0]!.dependencies!.toJSON()).toEqual(dependencies.toJSON());
    });

    it('keeps metadata, copied, and overwrites it', async () => {
      const store = await fresh();
      const value = new Uint8Array([1, 2, 3]);
      await store.putMeta('incarnation', value);
      value.fill(9);
      expect(store.getMeta('incarnation')).toEqual(new Uint8Array([1, 2, 3]));
      await store.putMeta('incarnation', new Uint8Array([4]));
      expect(store.getMeta('incarnation')).toEqual(new Uint8Array([4]));
      await store.putMeta('empty', new Uint8Array());
      expect(store.getMeta('empty')).toEqual(new Uint8Array());
      expect(store.getMeta('other')).toBeUndefined();
    });

    it('snapshot: a point-in-time view of durable entries and one meta value, paged by bytes, blind to later writes', async () => {
      const store = await fresh();
      const big = Buffer.alloc(3_000, 7);
      await store.apply('ks', [0, 1, 2, 3, 4].map((i) => makeEntry({ key: `k${i}`, value: i === 2 ? big : `v${i}`, wallMs: 1_000 + i })));
      await store.apply('other', [makeEntry({ key: 'k0', value: 'elsewhere', wallMs: 1_000 + 9 })]);
      await store.putMeta('state', bytes('as of k4'));
      const view = store.snapshot('ks', 'state');
      // Later writes, committed and in flight, are not in the view.
      await store.apply('ks', [makeEntry({ key: 'k1', value: 'newer', wallMs: 1_000 + 10 }), makeEntry({ key: 'k5', value: 'new', wallMs: 1_000 + 11 })]);
      await store.putMeta('state', bytes('later'));
      const inFlight = store.apply('ks', [makeEntry({ key: 'k6', value: 'in flight', wallMs: 1_000 + 12 })]);
      expect(Buffer.from(view.meta!).toString()).toBe('as of k4');
      const seen: string[] = [];
      let after: Uint8Array | undefined;
      let pages = 0;
      for (;;) {
        const page = view.page(after, 200);
        if (page.length === 0) break;
        pages++;
        for (const e of page) seen.push(`${Buffer.from(e.key).toString()}=${e.value.byteLength > 100 ? `${e.value.byteLength}B` : Buffer.from(e.value).toString()}`);
        after = page[page.length - 1]!.key;
      }
      expect(seen).toEqual(['k0=v0', 'k1=v1', 'k2=3000B', 'k3=v3', 'k4=v4']);
      // 200 bytes hold one small entry with its allowance, and the 3 KB one travels alone.
      expect(pages).toBeGreaterThanOrEqual(3);
      view.close();
      view.close();
      expect(() => view.page(undefined, 1_000)).toThrow();
      await inFlight;
      const fresh2 = store.snapshot('ks', 'state');
      expect(fresh2.page(undefined, 1 << 20).map((e) => Buffer.from(e.key).toString())).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6']);
      expect(Buffer.from(fresh2.meta!).toString()).toBe('later');
      expect(store.snapshot('empty', 'none').meta).toBeUndefined();
      fresh2.close();
    });

    it('refuses keyspace names and keys out of range', async () => {
      const store = await fresh();
      const entry = makeEntry({ key: 'k', wallMs: 1 });
      for (const keyspace of ['', 'with space', 'nul\0', 'x'.repeat(129), 'é']) {
        expect(() => store.get(keyspace, entry.key)).toThrow(RangeError);
        await expect(store.apply(keyspace, [entry])).rejects.toBeInstanceOf(RangeError);
      }
      const longest = makeEntry({ key: new Uint8Array(MAX_KEY_BYTES).fill(7), wallMs: 1 });
      expect(await store.apply('x'.repeat(128), [longest])).toEqual(['applied']);
      const tooLong = makeEntry({ key: new Uint8Array(MAX_KEY_BYTES + 1), wallMs: 1 });
      // A bad entry rejects the whole call before anything of it is written.
      await expect(store.apply('ks', [entry, tooLong])).rejects.toBeInstanceOf(RangeError);
      expect(store.get('ks', entry.key)).toBeUndefined();
    });

    it('waits for writes in flight when closed, then refuses every call', async () => {
      const store = await fresh();
      let outcome: ApplyOutcome[] | undefined;
      const inFlight = store.apply('ks', [makeEntry({ key: 'k', wallMs: 1 })]).then((o) => (outcome = o));
      const metaInFlight = store.putMeta('m', new Uint8Array([1]));
      await store.close();
      expect(outcome).toEqual(['applied']);
      await inFlight;
      await metaInFlight;
      expect(() => store.get('ks', bytes('k'))).toThrow(StoreClosedError);
      expect(() => store.entries('ks')).toThrow(StoreClosedError);
      expect(() => store.getMeta('m')).toThrow(StoreClosedError);
      await expect(store.apply('ks', [makeEntry({ key: 'k', wallMs: 2 })])).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.putMeta('m', new Uint8Array())).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.close()).resolves.toBeUndefined();
    });

    it('behaves like applying every call in call order, under any interleaving', async () => {
      await fc.assert(
        fc.asyncProperty(historyArbitrary, async (steps) => {
          // Not through `fresh`: a run (and every shrinking step) closes its own store at once.
          const store = await makeStore();
          try {
            await checkHistory(store, steps);
          } finally {
            await store.close();
          }
        }),
        { numRuns: HISTORY_RUNS },
      );
    });
  });
}

/** One step of a random history. */
type Step =
  /** Issue an apply and do not wait for it. */
  | { readonly kind: 'apply'; readonly keyspace: string; readonly entries: readonly Entry[] }
  /** Let one event-loop turn pass, so that a real store starts a commit mid-history. */
  | { readonly kind: 'turn' }
  /** Wait for one of the calls issued so far (by index, modulo their number). */
  | { readonly kind: 'await'; readonly call: number };

const KEYSPACES = ['ks1', 'ks2'];

// Few keys and few versions, so that most entries collide: equal versions, ties broken by node id.
const entryArbitrary: fc.Arbitrary<Entry> = fc
  .record({
    key: fc.integer({ min: 0, max: 3 }),
    wallMs: fc.integer({ min: 1, max: 4 }),
    logical: fc.integer({ min: 0, max: 2 }),
    nodeId: fc.constantFrom('n1', 'n2'),
    tombstone: fc.boolean(),
    value: fc.uint8Array({ maxLength: 4 }),
  })
  .map((r) => makeEntry({ ...r, key: new Uint8Array([r.key]) }));

const historyArbitrary: fc.Arbitrary<Step[]> = fc.array(
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('apply' as const),
        keyspace: fc.constantFrom(...KEYSPACES),
        entries: fc.array(entryArbitrary, { minLength: 1, maxLength: 3 }),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'turn' as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('await' as const), call: fc.nat() }) },
  ),
  { maxLength: MAX_HISTORY_STEPS },
);

/**
 * Runs `steps` against `store` and against a reference model that applies each call, whole, in
 * call order. Checks: every call's outcomes equal the model's; `get` never goes back; a resolved
 * call's applied entries are visible; the final state of each keyspace equals the model's, and each
 * key ends at the largest version offered for it.
 */
async function checkHistory(store: Store, steps: readonly Step[]): Promise<void> {
  const model = new Map<string, Entry>();
  const modelKey = (keyspace: string, key: Uint8Array): string => `${keyspace}/${[...key].join(',')}`;
  const largestOffered = new Map<string, Version>();
  const lastSeen = new Map<string, Version>();
  const calls: { keyspace: string; entries: readonly Entry[]; expected: ApplyOutcome[]; result: Promise<ApplyOutcome[]> }[] = [];

  const checkMonotonicGets = (): void => {
    for (const keyspace of KEYSPACES) {
      for (let k = 0; k <= 3; k++) {
        const key = new Uint8Array([k]);
        const seen = store.get(keyspace, key)?.version;
        const previous = lastSeen.get(modelKey(keyspace, key));
        if (previous !== undefined) {
          expect(seen, 'get went back to nothing').toBeDefined();
          expect(compareVersion(seen!, previous), 'get went back to an older version').toBeGreaterThanOrEqual(0);
        }
        if (seen !== undefined) lastSeen.set(modelKey(keyspace, key), seen);
      }
    }
  };

  for (const step of steps) {
    if (step.kind === 'apply') {
      const expected = step.entries.map((entry): ApplyOutcome => {
        const k = modelKey(step.keyspace, entry.key);
        const held = model.get(k);
        const offered = largestOffered.get(k);
        if (offered === undefined || compareVersion(entry.version, offered) > 0) largestOffered.set(k, entry.version);
        if (held !== undefined && compareVersion(entry.version, held.version) <= 0) return 'superseded';
        model.set(k, entry);
        return 'applied';
      });
      calls.push({ ...step, expected, result: store.apply(step.keyspace, step.entries) });
    } else if (step.kind === 'turn') {
      await new Promise((resolve) => setImmediate(resolve));
    } else if (calls.length > 0) {
      const call = calls[step.call % calls.length]!;
      expect(await call.result).toEqual(call.expected);
      for (const entry of call.entries) {
        const held = store.get(call.keyspace, entry.key);
        expect(held, 'a resolved apply is visible').toBeDefined();
        expect(compareVersion(held!.version, entry.version)).toBeGreaterThanOrEqual(0);
      }
    }
    checkMonotonicGets();
  }

  const results = await Promise.all(calls.map((call) => call.result));
  expect(results).toEqual(calls.map((call) => call.expected));
  checkMonotonicGets();
  for (const keyspace of KEYSPACES) {
    const expected = [...model.entries()]
      .filter(([k]) => k.startsWith(`${keyspace}/`))
      .map(([, entry]) => entry)
      .sort((a, b) => a.key[0]! - b.key[0]!);
    const actual = store.entries(keyspace);
    expect(actual).toEqual(expected);
    for (const entry of actual) {
      expect(entry.version).toEqual(largestOffered.get(modelKey(keyspace, entry.key)));
    }
  }
}
