/**
 * Leases in the CP state machine (src/policy/cp/kv-state-machine.ts) and its store
 * (kv-state-store.ts, kv-history.ts): what every replica agrees on. Grants take their log index as
 * id; puts attach keys, overwrites and deletes detach them; a revoke deletes every attached key in
 * one revision; a put naming a missing lease applies nothing; replays change nothing; the lease
 * index comes back from the state after a reopen and after a snapshot travelled in chunks; lease
 * records never show in Range; client keys cannot reach the reserved prefix.
 */
import { describe, expect, it } from 'vitest';
import type { RequestOp, TxnRequest, TxnResponse } from '../../src/gen/replikit/v1/kv_service.js';
import { CompareResult, CompareTarget } from '../../src/gen/replikit/v1/kv_service.js';
import { KvStateMachine, LEASE_KEY_PREFIX, leaseKey, RESERVED_KEY_PREFIX, type StoredKey } from '../../src/policy/cp/kv-state-machine.js';
import { decodeChunk, generationKeyspace, KvStateStore, LEASE_FLAG } from '../../src/policy/cp/kv-state-store.js';
import { decodeBatch, encodeBatch } from '../../src/policy/cp/kv-history.js';
import { rangeAtRevision } from '../../src/policy/cp/kv-range.js';
import type { RangeQuery } from '../../src/policy/watch/range-page.js';
import type { ChangeBatch } from '../../src/policy/watch/change.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';
import type { Store } from '../../src/storage/store.js';
import { validateTxn } from '../../src/policy/cp/txn-validation.js';
import { ReplikitError } from '../../src/errors.js';

/** Flush timers never fire unless a test runs this scheduler: flushes happen where tests ask. */
const scheduler = new VirtualScheduler();
const failOnWriteError = (error: unknown) => {
  throw error;
};
const openState = (store: Store) => KvStateStore.open(store, 'default', scheduler, failOnWriteError);
const stamp = (n: number) => ({ hlc: { wallMs: 1_000 + n, logical: 0 }, nodeId: 'n1' });
const b = (s: string) => Buffer.from(s, 'latin1');
const put = (key: string, value: string, lease = 0): RequestOp => ({ put: { key: b(key), value: b(value), lease: BigInt(lease) } });
const del = (key: string): RequestOp => ({ delete: { key: b(key) } });
const txn = (success: RequestOp[], failure: RequestOp[] = [], compares: TxnRequest['compares'] = []): TxnRequest => ({ keyspace: 'default', compares, success, failure });

/** A machine over a fresh store, recording what `onChanges` hears; `at()` hands out the next log index. */
function setup(store: Store = new MemoryStore()) {
  const state = openState(store);
  const heard: ChangeBatch[] = [];
  const m = new KvStateMachine(state, (batch) => heard.push(batch));
  let index = m.appliedIndex;
  const at = () => ++index;
  return { store, state, m, heard, at };
}

const everything: RangeQuery = { range: { start: Buffer.alloc(0), end: null }, limit: 0, keysOnly: false, countOnly: false, descending: false, revision: 0, maxBytes: 1 << 30 };
const keysOf = (state: KvStateStore, query: Partial<RangeQuery> = {}) => rangeAtRevision(state, state.history, { ...everything, ...query });
const names = (kvs: readonly StoredKey[]) => kvs.map((k) => k.key.toString('latin1'));

describe('lease grants, attachment and revocation', () => {
  it('a grant takes its log index as id and does not move the revision', () => {
    const { m, at } = setup();
    m.apply(at(), 1, txn([put('a', '1')]), stamp(1));
    const g = m.grantLease(at(), 1, 5_000, stamp(2))!;
    expect(g).toEqual({ id: 2, ttlMs: 5_000, revision: 1 });
    const g2 = m.grantLease(at(), 1, 1_000, stamp(3))!;
    expect(g2.id).toBe(3);
    expect(m.revision).toBe(1);
    expect(m.appliedIndex).toBe(3);
    expect(m.lease(2)).toMatchObject({ id: 2, ttlMs: 5_000 });
    expect(m.leases().map((l) => l.id)).toEqual([2, 3]);
    expect(m.leaseCount).toBe(2);
    expect(m.lease(1)).toBeUndefined();
  });

  it('a put with a lease attaches the key; an overwrite without one detaches it; a delete detaches it', () => {
    const { m, at } = setup();
    const id = m.grantLease(at(), 1, 5_000, stamp(1))!.id;
    m.apply(at(), 1, txn([put('k1', 'v', id), put('k2', 'v', id), put('k3', 'v', id), put('free', 'v')]), stamp(2));
    expect([...m.lease(id)!.keys].sort()).toEqual(['k1', 'k2', 'k3']);
    expect(m.get(b('k1'))!.lease).toBe(id);
    expect(m.get(b('free'))!.lease).toBeUndefined();
    // Overwrite without a lease: detached (and the record says so).
    m.apply(at(), 1, txn([put('k1', 'v2')]), stamp(3));
    expect(m.get(b('k1'))!.lease).toBeUndefined();
    // Delete: detached.
    m.apply(at(), 1, txn([del('k2')]), stamp(4));
    expect([...m.lease(id)!.keys]).toEqual(['k3']);
    // Overwrite with the same lease keeps it attached once.
    m.apply(at(), 1, txn([put('k3', 'again', id)]), stamp(5));
    expect([...m.lease(id)!.keys]).toEqual(['k3']);
    // Put k2 again, now free: the revoke leaves it.
    m.apply(at(), 1, txn([put('k2', 'reborn')]), stamp(6));
    const before = m.revision;
    const r = m.revokeLeases(at(), 1, [id], stamp(7))!;
    expect(r).toEqual({ revoked: [id], keysDeleted: 1, revision: before + 1 });
    expect(m.get(b('k3'))).toBeUndefined();
    expect(m.get(b('k1'))!.value.toString()).toBe('v2');
    expect(m.get(b('k2'))!.value.toString()).toBe('reborn');
    expect(m.get(b('free'))).toBeDefined();
    expect(m.lease(id)).toBeUndefined();
  });

  it('a put moving a key from one lease to another leaves it only with the second', () => {
    const { m, at } = setup();
    const a = m.grantLease(at(), 1, 5_000, stamp(1))!.id;
    const c = m.grantLease(at(), 1, 5_000, stamp(2))!.id;
    m.apply(at(), 1, txn([put('k', 'v', a)]), stamp(3));
    m.apply(at(), 1, txn([put('k', 'w', c)]), stamp(4));
    expect(m.lease(a)!.keys.size).toBe(0);
    expect([...m.lease(c)!.keys]).toEqual(['k']);
    expect(m.revokeLeases(at(), 1, [a], stamp(5))!.keysDeleted).toBe(0);
    expect(m.get(b('k'))!.value.toString()).toBe('w');
    expect(m.revokeLeases(at(), 1, [c], stamp(6))!.keysDeleted).toBe(1);
    expect(m.get(b('k'))).toBeUndefined();
  });

  it('a revoke deletes every attached key in ONE revision, one delete event each with its previous record, and records it in the history', () => {
    const { m, state, heard, at } = setup();
    const one = m.grantLease(at(), 1, 5_000, stamp(1))!.id;
    const two = m.grantLease(at(), 1, 5_000, stamp(2))!.id;
    m.apply(at(), 1, txn([put('b', '1', one), put('a', '2', one), put('c', '3', two)]), stamp(3));
    m.apply(at(), 1, txn([put('d', '4', one)]), stamp(4));
    heard.length = 0;
    const revisionBefore = m.revision;
    const r = m.revokeLeases(at(), 2, [one, two, 999], stamp(5))!;
    expect(r.revoked).toEqual([one, two]);
    expect(r.keysDeleted).toBe(4);
    expect(r.revision).toBe(revisionBefore + 1);
    expect(m.revision).toBe(revisionBefore + 1);
    expect(heard).toHaveLength(1);
    const batch = heard[0]!;
    expect(batch.revision).toBe(revisionBefore + 1);
    expect(batch.events.map((e) => e.type)).toEqual(['delete', 'delete', 'delete', 'delete']);
    // Lease by lease in the order given, each lease's keys sorted: every replica alike.
    expect(batch.events.map((e) => e.kv.key.toString())).toEqual(['a', 'b', 'd', 'c']);
    for (const e of batch.events) {
      expect(e.kv.modRevision).toBe(revisionBefore + 1);
      expect(e.prev?.lease).toBeDefined();
    }
    expect(batch.events[0]!.prev).toMatchObject({ value: b('2'), lease: one });
    for (const k of ['a', 'b', 'c', 'd']) expect(m.get(b(k))).toBeUndefined();
    expect(m.leaseCount).toBe(0);
    // The history holds the one revision, as heard.
    const history = state.history.read(revisionBefore + 1, 1 << 20);
    expect(history).toHaveLength(1);
    expect(history[0]!.events.map((e) => e.kv.key.toString())).toEqual(['a', 'b', 'd', 'c']);
    // A revoke of leases with no keys (or that do not exist) moves no revision and publishes nothing.
    const empty = m.grantLease(at(), 2, 5_000, stamp(6))!.id;
    const r2 = m.revokeLeases(at(), 2, [empty, 12345], stamp(7))!;
    expect(r2).toEqual({ revoked: [empty], keysDeleted: 0, revision: revisionBefore + 1 });
    expect(heard).toHaveLength(1);
    expect(m.revokeLeases(at(), 2, [empty], stamp(8))!.revoked).toEqual([]);
  });

  it('a transaction whose taken branch puts on a missing lease applies nothing and answers leaseNotFound', () => {
    const { m, heard, at } = setup();
    const id = m.grantLease(at(), 1, 5_000, stamp(1))!.id;
    m.apply(at(), 1, txn([put('x', 'old', id)]), stamp(2));
    const revision = m.revision;
    heard.length = 0;
    const answer = m.apply(at(), 1, txn([put('x', 'new'), put('y', 'v'), del('z'), put('w', 'v', 77)]), stamp(3));
    expect(answer).toEqual({ leaseNotFound: 77 });
    expect(m.revision).toBe(revision);
    expect(heard).toEqual([]);
    expect(m.get(b('x'))).toMatchObject({ value: b('old'), lease: id });
    expect(m.get(b('y'))).toBeUndefined();
    expect([...m.lease(id)!.keys]).toEqual(['x']);
    // A revoked lease is missing too.
    m.revokeLeases(at(), 1, [id], stamp(4));
    expect(m.apply(at(), 1, txn([put('x', 'v', id)]), stamp(5))).toEqual({ leaseNotFound: id });
    expect(m.get(b('x'))).toBeUndefined();
    // Only the branch taken counts: a failure branch naming a missing lease does not stop a success.
    const ok = m.apply(at(), 1, txn([put('ok', 'v')], [put('never', 'v', 88)]), stamp(6)) as TxnResponse;
    expect(ok.succeeded).toBe(true);
    expect(m.get(b('ok'))).toBeDefined();
    // ...and the failure branch taken is checked.
    const compare = { key: b('ok'), target: CompareTarget.COMPARE_TARGET_VALUE, result: CompareResult.COMPARE_RESULT_EQUAL, value: b('nope'), number: 0n };
    expect(m.apply(at(), 1, txn([put('s', 'v')], [put('f', 'v', 88)], [compare]), stamp(7))).toEqual({ leaseNotFound: 88 });
    expect(m.get(b('s'))).toBeUndefined();
    expect(m.get(b('f'))).toBeUndefined();
  });

  it('replayed entries (index at or below the applied one) change nothing', () => {
    const { m, heard } = setup();
    const id = m.grantLease(5, 1, 5_000, stamp(1))!.id;
    expect(id).toBe(5);
    m.apply(6, 1, txn([put('k', 'v', id)]), stamp(2));
    // A replayed grant at an applied index: no new lease, nothing answered.
    expect(m.grantLease(4, 1, 1_000, stamp(3))).toBeUndefined();
    expect(m.grantLease(6, 1, 1_000, stamp(3))).toBeUndefined();
    expect(m.lease(4)).toBeUndefined();
    expect(m.lease(6)).toBeUndefined();
    expect(m.leaseCount).toBe(1);
    // A replayed revoke: the lease and its keys stay.
    const heardBefore = heard.length;
    expect(m.revokeLeases(6, 1, [id], stamp(4))).toBeUndefined();
    expect(m.lease(id)).toBeDefined();
    expect(m.get(b('k'))).toBeDefined();
    expect(heard.length).toBe(heardBefore);
    // A replayed put on a missing lease answers nothing (and changes nothing).
    expect(m.apply(6, 1, txn([put('j', 'v', 999)]), stamp(5))).toBeUndefined();
    expect(m.appliedIndex).toBe(6);
    expect(m.revision).toBe(1);
  });
});

describe('the lease index comes back from the state', () => {
  async function populated() {
    const s = setup();
    const { m, at } = s;
    const one = m.grantLease(at(), 1, 3_000, stamp(1))!.id;
    const two = m.grantLease(at(), 1, 7_000, stamp(2))!.id;
    const none = m.grantLease(at(), 1, 2_000, stamp(3))!.id;
    m.apply(at(), 1, txn([put('a', '1', one), put('b', '2', one), put('c', '3', two), put('free', 'f')]), stamp(4));
    m.apply(at(), 1, txn([put('b', 'detached')]), stamp(5));
    m.apply(at(), 1, txn([put(Buffer.from([0xfe, 0xff, 0x00]).toString('latin1'), 'binary', two)]), stamp(6));
    m.checkpoint();
    await s.state.flush();
    return { ...s, one, two, none };
  }

  const expectIndex = (m: KvStateMachine, one: number, two: number, none: number) => {
    expect(m.leases().map((l) => ({ id: l.id, ttlMs: l.ttlMs, keys: [...l.keys].sort() }))).toEqual(
      [
        { id: one, ttlMs: 3_000, keys: ['a'] },
        { id: two, ttlMs: 7_000, keys: ['c', Buffer.from([0xfe, 0xff, 0x00]).toString('latin1')].sort() },
        { id: none, ttlMs: 2_000, keys: [] },
      ],
    );
  };

  it('after the state is closed and opened again on the same store', async () => {
    const { store, state, m, one, two, none } = await populated();
    state.close();
    const reopened = new KvStateMachine(openState(store));
    expect(reopened.appliedIndex).toBe(m.appliedIndex);
    expectIndex(reopened, one, two, none);
    // And it acts on it: revoking `one` deletes exactly what was attached.
    const r = reopened.revokeLeases(reopened.appliedIndex + 1, 1, [one], stamp(9))!;
    expect(r.keysDeleted).toBe(1);
    expect(reopened.get(b('a'))).toBeUndefined();
    expect(reopened.get(b('b'))!.value.toString()).toBe('detached');
    expect(reopened.apply(reopened.appliedIndex + 1, 1, txn([put('z', 'v', one)]), stamp(10))).toEqual({ leaseNotFound: one });
  });

  it('after a snapshot travelled in chunks to another store and was installed there', async () => {
    const { state, m, one, two, none } = await populated();
    const reader = state.openSnapshot();
    const follower = setup();
    follower.m.apply(1, 1, txn([put('stale', 'x')]), stamp(1));
    for (let i = 2; i <= 4; i++) follower.m.skip(i, 1);
    // Index 5 is a put on the leader: the follower's own lease 5 must not survive the install.
    expect(follower.m.grantLease(5, 1, 1_000, stamp(2))!.id).toBe(5);
    follower.m.checkpoint();
    await follower.state.flush();
    await follower.state.beginInstall();
    let meta;
    let chunks = 0;
    // Tiny chunks: the lease records travel in chunks of their own, after the keys.
    for (let piece = reader.next(1); piece !== undefined; piece = reader.next(1)) {
      const decoded = decodeChunk(piece.data);
      if (chunks++ === 0) meta = decoded.meta;
      await follower.state.stage(decoded.records);
      if (piece.last) break;
    }
    reader.close();
    expect(chunks).toBeGreaterThanOrEqual(5);
    follower.state.install({ appliedIndex: meta!.appliedIndex, appliedTerm: meta!.appliedTerm, revision: meta!.revision, lastStamp: meta!.lastStamp, compactRevision: meta!.compactRevision });
    follower.m.reload();
    expect(follower.m.appliedIndex).toBe(m.appliedIndex);
    expectIndex(follower.m, one, two, none);
    // The follower's own lease (5) was replaced with the rest of its state.
    expect(follower.m.lease(5)).toBeUndefined();
    expect(follower.m.get(b('stale'))).toBeUndefined();
    expect(follower.m.get(b('c'))).toMatchObject({ value: b('3'), lease: two });
    // Both revoke the same keys in the same revision.
    const next = m.appliedIndex + 1;
    const leaderRevoke = m.revokeLeases(next, 2, [two], stamp(20))!;
    const followerRevoke = follower.m.revokeLeases(next, 2, [two], stamp(20))!;
    expect(followerRevoke).toEqual(leaderRevoke);
    expect(leaderRevoke.keysDeleted).toBe(2);
    // And it survives a flush and a reopen of the follower's store too.
    follower.m.checkpoint();
    await follower.state.flush();
    const again = new KvStateMachine(openState(follower.store));
    expect(again.leases().map((l) => l.id)).toEqual([one, none]);
    expect([...again.lease(one)!.keys]).toEqual(['a']);
  });
});

describe('records of leased keys', () => {
  it('the stored record of a leased key sets the top bit of its create revision and carries the lease; it reads back with it', async () => {
    const { store, state, m, at } = setup();
    const id = m.grantLease(at(), 1, 5_000, stamp(1))!.id;
    m.apply(at(), 1, txn([put('leased', 'value-1', id), put('plain', 'value-2')]), stamp(2));
    m.checkpoint();
    await state.flush();
    const live = generationKeyspace('default', state.meta.generation);
    const leased = Buffer.from(store.get(live, b('leased'))!.value);
    expect(leased.readBigUInt64BE(0) & LEASE_FLAG).toBe(LEASE_FLAG);
    // The grant moved no revision: the put is revision 1.
    expect(leased.readBigUInt64BE(0) & ~LEASE_FLAG).toBe(1n);
    expect(leased.readBigUInt64BE(24)).toBe(BigInt(id));
    expect(leased.subarray(32).toString()).toBe('value-1');
    const plain = Buffer.from(store.get(live, b('plain'))!.value);
    expect(plain.readBigUInt64BE(0)).toBe(1n);
    expect(plain.subarray(24).toString()).toBe('value-2');
    state.close();
    const reopened = openState(store);
    expect(reopened.get(b('leased'))).toMatchObject({ value: b('value-1'), createRevision: 1, modRevision: 1, version: 1, lease: id });
    expect(reopened.get(b('plain'))!.lease).toBeUndefined();
    expect(reopened.get(b('plain'))).toMatchObject({ value: b('value-2'), createRevision: 1 });
  });

  it('a record written before leases existed (24-byte header, no top bit) still reads, unleased', async () => {
    const store = new MemoryStore();
    const record = Buffer.alloc(24 + 3);
    record.writeBigUInt64BE(4n, 0);
    record.writeBigUInt64BE(9n, 8);
    record.writeBigUInt64BE(3n, 16);
    record.write('old', 24);
    await store.apply(generationKeyspace('default', 0), [{ key: b('legacy'), value: record, version: stamp(1), tombstone: false }]);
    const state = openState(store);
    expect(state.get(b('legacy'))).toEqual({ key: b('legacy'), value: b('old'), createRevision: 4, modRevision: 9, version: 3, stamp: stamp(1) });
    // A machine opened on it finds no lease, and the key is an ordinary one.
    const m = new KvStateMachine(state);
    expect(m.leaseCount).toBe(0);
    expect(names(keysOf(state).kvs)).toEqual(['legacy']);
  });

  it('history records keep the lease of leased keys; records without one read as before', () => {
    const leased: StoredKey = { key: b('k'), value: b('v'), createRevision: 3, modRevision: 5, version: 2, stamp: stamp(1), lease: 42 };
    const plain: StoredKey = { key: b('k'), value: b('w'), createRevision: 3, modRevision: 6, version: 3, stamp: stamp(2) };
    const batch: ChangeBatch = { revision: 6, events: [{ type: 'put', kv: plain, prev: leased }, { type: 'put', kv: { ...leased, key: b('j') } }] };
    const decoded = decodeBatch(6, encodeBatch(batch));
    expect(decoded.events[0]!.prev).toEqual(leased);
    expect(decoded.events[0]!.kv).toEqual(plain);
    expect(decoded.events[0]!.kv.lease).toBeUndefined();
    expect(decoded.events[1]!.kv.lease).toBe(42);
    // A batch without leases is encoded in the old layout byte for byte (no flag, 24-byte header).
    const old = encodeBatch({ revision: 6, events: [{ type: 'put', kv: plain }] });
    expect(old.byteLength).toBe(5 + 2 + 4 + 1 + 24 + 14 + 2 + 4 + 1);
    expect(decodeBatch(6, old).events[0]!.kv).toEqual(plain);
  });
});

describe('Range and scans never show lease records', () => {
  async function withLeases(flush: boolean) {
    const s = setup();
    const { m, at } = s;
    const id = m.grantLease(at(), 1, 5_000, stamp(1))!.id;
    m.grantLease(at(), 1, 6_000, stamp(2));
    m.apply(at(), 1, txn([put('a', '1', id), put('m', '2'), put(Buffer.from([0xff, 0xff, 0xff, 0xfe, 0x01]).toString('latin1'), 'last', id)]), stamp(3));
    m.checkpoint();
    if (flush) await s.state.flush();
    return s;
  }
  const LAST = Buffer.from([0xff, 0xff, 0xff, 0xfe, 0x01]).toString('latin1');

  for (const flush of [false, true]) {
    it(`${flush ? 'on disk' : 'still in memory'}: a range to the end of the key space, count, descending, past revisions and ranges into the reserved prefix`, async () => {
      const { state, m } = await withLeases(flush);
      expect(m.leaseCount).toBe(2);
      expect(names(keysOf(state).kvs)).toEqual(['a', 'm', LAST]);
      expect(keysOf(state).count).toBe(3);
      expect(keysOf(state, { countOnly: true }).count).toBe(3);
      expect(names(keysOf(state, { descending: true, limit: 1 }).kvs)).toEqual([LAST]);
      // A range that starts in the keys and ends past the reserved prefix.
      expect(names(keysOf(state, { range: { start: b('b'), end: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]) } }).kvs)).toEqual(['m', LAST]);
      // Ranges inside the reserved prefix: nothing.
      expect(keysOf(state, { range: { start: RESERVED_KEY_PREFIX, end: null } })).toMatchObject({ kvs: [], count: 0 });
      expect(keysOf(state, { range: { start: LEASE_KEY_PREFIX, end: null }, countOnly: true }).count).toBe(0);
      expect(keysOf(state, { range: { start: leaseKey(1), end: Buffer.concat([leaseKey(1), Buffer.from([0])]) } }).count).toBe(0);
      // A past revision (the undo path) neither.
      expect(names(keysOf(state, { revision: 1 }).kvs)).toEqual(['a', 'm', LAST]);
      // Raw scan of the state, too.
      const scanned: string[] = [];
      state.scan({ start: Buffer.alloc(0), end: null }, (r) => (scanned.push(r.key.toString('latin1')), true));
      expect(scanned).toEqual(['a', 'm', LAST]);
      // The lease records are there, though, where scanLeases looks.
      const leaseRecords: number[] = [];
      state.scanLeases((r) => leaseRecords.push(Number(r.key.readBigUInt64BE(LEASE_KEY_PREFIX.byteLength))), () => {});
      expect(leaseRecords).toEqual([1, 2]);
      expect(state.get(leaseKey(1))).toBeDefined();
    });
  }

  it('a revoke does not leave lease records behind in the store', async () => {
    const { state, m, at } = setup();
    const id = m.grantLease(at(), 1, 5_000, stamp(1))!.id;
    m.checkpoint();
    await state.flush();
    m.revokeLeases(at(), 1, [id], stamp(2));
    m.checkpoint();
    await state.flush();
    const found: unknown[] = [];
    state.scanLeases((r) => found.push(r), () => {});
    expect(found).toEqual([]);
    expect(state.get(leaseKey(id))).toBeUndefined();
  });
});

describe('client keys in the reserved prefix are refused', () => {
  const limits = { maxKeyBytes: 64, maxValueBytes: 64 };
  const reasonOf = (t: TxnRequest): string => {
    try {
      validateTxn(t, limits);
    } catch (error) {
      expect(error).toBeInstanceOf(ReplikitError);
      const e = error as ReplikitError;
      expect(e.kind).toBe('invalid-argument');
      expect(e.message).toMatch(/ff ff ff ff/);
      expect(e.message).toMatch(/choose another key/);
      return `${e.reason} ${e.details.field}`;
    }
    return 'accepted';
  };
  const reserved = (tail: string) => Buffer.concat([RESERVED_KEY_PREFIX, b(tail)]).toString('latin1');

  it('in puts, gets, deletes and compares (KEY_RESERVED naming the field); keys just below the prefix are fine', () => {
    expect(reasonOf(txn([put(reserved('lease/x'), 'v')]))).toBe('KEY_RESERVED success[0].key');
    expect(reasonOf(txn([put(reserved(''), 'v')]))).toBe('KEY_RESERVED success[0].key');
    expect(reasonOf(txn([put('ok', 'v'), del(reserved('anything'))]))).toBe('KEY_RESERVED success[1].key');
    expect(reasonOf(txn([], [{ get: { key: Buffer.from(leaseKey(1)) } }]))).toBe('KEY_RESERVED failure[0].key');
    const compare = { key: leaseKey(2), target: CompareTarget.COMPARE_TARGET_VERSION, result: CompareResult.COMPARE_RESULT_EQUAL, value: Buffer.alloc(0), number: 0n };
    expect(reasonOf(txn([put('k', 'v')], [], [compare]))).toBe('KEY_RESERVED compares[0].key');
    // Below the prefix, or shorter than it: ordinary keys.
    expect(reasonOf(txn([put(Buffer.from([0xff, 0xff, 0xff]).toString('latin1'), 'v')]))).toBe('accepted');
    expect(reasonOf(txn([put(Buffer.from([0xff, 0xff, 0xff, 0xfe, 0xff]).toString('latin1'), 'v')]))).toBe('accepted');
  });
});
