import { describe, expect, it } from 'vitest';
import { CompareResult, CompareTarget, type Compare, type RequestOp, type TxnRequest, type TxnResponse } from '../../src/gen/replikit/v1/kv_service.js';
import { KvStateMachine } from '../../src/policy/cp/kv-state-machine.js';
import { decodeChunk, generationKeyspace, KvStateStore } from '../../src/policy/cp/kv-state-store.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';
import type { Store } from '../../src/storage/store.js';
import { MAX_TXN_OPS, validateTxn } from '../../src/policy/cp/txn-validation.js';
import { ReplikitError } from '../../src/errors.js';

/** Flush timers never fire unless a test runs this scheduler: flushes happen where tests ask for them. */
const scheduler = new VirtualScheduler();
const failOnWriteError = (error: unknown) => {
  throw error;
};
/** A state machine whose keys are in a fresh MemoryStore (or in `store`, as a restart finds it). */
const machine = (store: Store = new MemoryStore()) => new KvStateMachine(KvStateStore.open(store, 'default', scheduler, failOnWriteError));
const stamp = (n: number) => ({ hlc: { wallMs: 1_000 + n, logical: 0 }, nodeId: 'n1' });
const b = (s: string) => Buffer.from(s);
const put = (key: string, value: string): RequestOp => ({ put: { key: b(key), value: b(value), lease: 0n } });
const get = (key: string): RequestOp => ({ get: { key: b(key) } });
const del = (key: string): RequestOp => ({ delete: { key: b(key) } });
const txn = (compares: Compare[], success: RequestOp[], failure: RequestOp[] = []): TxnRequest => ({ keyspace: 'default', compares, success, failure });
const cmp = (key: string, target: CompareTarget, result: CompareResult, operand: string | number): Compare => ({
  key: b(key),
  target,
  result,
  value: typeof operand === 'string' ? b(operand) : Buffer.alloc(0),
  number: typeof operand === 'number' ? BigInt(operand) : 0n,
});
const { COMPARE_TARGET_VALUE: VALUE, COMPARE_TARGET_VERSION: VERSION, COMPARE_TARGET_CREATE_REVISION: CREATE, COMPARE_TARGET_MOD_REVISION: MOD } = CompareTarget;
const { COMPARE_RESULT_EQUAL: EQ, COMPARE_RESULT_NOT_EQUAL: NE, COMPARE_RESULT_GREATER: GT, COMPARE_RESULT_LESS: LT } = CompareResult;

describe('KvStateMachine: revisions and versions as etcd keeps them', () => {
  it('each command that changes something is one revision; a key counts its writes since created', () => {
    const m = machine();
    m.apply(1, 1, txn([], [put('a', '1')]), stamp(1));
    m.apply(2, 1, txn([], [put('a', '2'), put('b', 'x')]), stamp(2));
    expect(m.revision).toBe(2);
    expect(m.get(b('a'))).toMatchObject({ createRevision: 1, modRevision: 2, version: 2 });
    expect(m.get(b('b'))).toMatchObject({ createRevision: 2, modRevision: 2, version: 1 });
    m.apply(3, 1, txn([], [del('a')]), stamp(3));
    expect(m.get(b('a'))).toBeUndefined();
    m.apply(4, 1, txn([], [put('a', 'again')]), stamp(4));
    expect(m.get(b('a'))).toMatchObject({ createRevision: 4, modRevision: 4, version: 1 });
    // Deleting an absent key changes nothing: no new revision.
    m.apply(5, 1, txn([], [del('zzz')]), stamp(5));
    expect(m.revision).toBe(4);
    expect(m.appliedIndex).toBe(5);
  });

  it('compares on value, version, create and mod revision pick the branch; a value compare on a missing key fails', () => {
    const m = machine();
    m.apply(1, 1, txn([], [put('k', 'v1')]), stamp(1));
    const run = (c: Compare) => m.read(txn([c], [get('k')], [get('k')])).succeeded;
    expect(run(cmp('k', VALUE, EQ, 'v1'))).toBe(true);
    expect(run(cmp('k', VALUE, NE, 'v1'))).toBe(false);
    expect(run(cmp('k', VALUE, GT, 'v0'))).toBe(true);
    expect(run(cmp('k', VERSION, EQ, 1))).toBe(true);
    expect(run(cmp('k', CREATE, EQ, 1))).toBe(true);
    expect(run(cmp('k', MOD, LT, 2))).toBe(true);
    expect(run(cmp('missing', VALUE, EQ, ''))).toBe(false);
    expect(run(cmp('missing', VALUE, NE, 'x'))).toBe(false);
    expect(run(cmp('missing', CREATE, EQ, 0))).toBe(true);
    expect(run(cmp('missing', VERSION, EQ, 0))).toBe(true);
  });

  it('compare-and-set: the failure branch runs and reads the current value', () => {
    const m = machine();
    m.apply(1, 1, txn([], [put('k', 'v1')]), stamp(1));
    const swap = m.apply(2, 1, txn([cmp('k', VALUE, EQ, 'v0')], [put('k', 'v2')], [get('k')]), stamp(2)) as TxnResponse;
    expect(swap.succeeded).toBe(false);
    expect(swap.responses[0]!.get!.kv!.value.toString()).toBe('v1');
    expect(swap.revision).toBe(1n);
    const ok = m.apply(3, 1, txn([cmp('k', VALUE, EQ, 'v1')], [put('k', 'v2')]), stamp(3)) as TxnResponse;
    expect(ok.succeeded).toBe(true);
    expect(ok.responses[0]!.put!.revision).toBe(2n);
    expect(ok.responses[0]!.put!.version?.hlc?.wallTimeMs).toBe(1003n);
  });

  it('a replayed index changes nothing (a restart re-applies the log tail after its snapshot)', () => {
    const m = machine();
    m.apply(1, 1, txn([], [put('k', 'v1')]), stamp(1));
    expect(m.apply(1, 1, txn([], [put('k', 'v2')]), stamp(2))).toBeUndefined();
    expect(m.get(b('k'))!.value.toString()).toBe('v1');
  });

  it('versions grow in log order even when a proposer\'s clock went back, and the same after a restart', async () => {
    const store = new MemoryStore();
    const state = KvStateStore.open(store, 'default', scheduler, failOnWriteError);
    const m = new KvStateMachine(state);
    m.apply(1, 1, txn([], [put('a', '1')]), stamp(50));
    const r = m.apply(2, 1, txn([], [put('b', '2')]), { hlc: { wallMs: 3, logical: 0 }, nodeId: 'n2' }) as TxnResponse;
    m.checkpoint();
    expect(r.responses[0]!.put!.version).toEqual({ hlc: { wallTimeMs: 1050n, logical: 1 }, nodeId: 'n2' });
    await state.flush();
    const restarted = machine(store);
    const next = restarted.apply(3, 1, txn([], [put('c', '3')]), stamp(1)) as TxnResponse;
    expect(next.responses[0]!.put!.version?.hlc).toEqual({ wallTimeMs: 1050n, logical: 2 });
  });

  it('the state is in the store: a restart finds keys, revision and applied index as of the last commit, never half of one', async () => {
    const store = new MemoryStore();
    const state = KvStateStore.open(store, 'default', scheduler, failOnWriteError);
    const m = new KvStateMachine(state);
    m.apply(1, 1, txn([], [put('a', '1'), put(Buffer.from([0, 255, 7]).toString('latin1'), 'binary')]), stamp(1));
    m.apply(2, 2, txn([], [put('a', '2')]), { hlc: { wallMs: 5_000, logical: 3 }, nodeId: 'nöde-ü' });
    m.checkpoint();
    // Not in the store until flushed: changes gather in memory (the log has them).
    expect(store.getMeta('cp-state/default')).toBeUndefined();
    expect(m.get(b('a'))!.value.toString()).toBe('2');
    await state.flush();
    // Entry 3's writes and its index are issued together; a crash before their commit loses both.
    m.apply(3, 2, txn([], [put('a', '3'), del('b')]), stamp(3));
    m.checkpoint();
    void state.flush();
    store.crash();
    const restarted = machine(store);
    expect(restarted.appliedIndex).toBe(2);
    expect(restarted.appliedTerm).toBe(2);
    expect(restarted.revision).toBe(2);
    expect(restarted.get(b('a'))).toMatchObject({ value: b('2'), createRevision: 1, modRevision: 2, version: 2, stamp: { nodeId: 'nöde-ü' } });
    expect(restarted.get(b(Buffer.from([0, 255, 7]).toString('latin1')))!.value.toString()).toBe('binary');
    // The tail of the log is applied again from there.
    expect((restarted.apply(3, 2, txn([], [put('a', '3')]), stamp(3)) as TxnResponse).revision).toBe(3n);
  });
  it('read() refuses a transaction that writes', () => {
    expect(() => machine().read(txn([], [put('k', 'v')]))).toThrow(/writes/);
  });

  it('a snapshot streams in chunks from a point-in-time view and installs into the spare generation; garbage chunks are refused', async () => {
    const leaderStore = new MemoryStore();
    const leaderState = KvStateStore.open(leaderStore, 'default', scheduler, failOnWriteError);
    const leader = new KvStateMachine(leaderState);
    const value = Buffer.alloc(10_000, 1);
    for (let i = 1; i <= 60; i++) leader.apply(i, 1, txn([], [put(`k${String(i).padStart(3, '0')}`, value.toString('latin1') + i)]), stamp(i));
    leader.apply(61, 2, txn([], [del('k001')]), stamp(61));
    leader.checkpoint();
    await leaderState.flush();
    const reader = leaderState.openSnapshot();
    // Written after the view: not in the snapshot.
    leader.apply(62, 2, txn([], [put('k002', 'after')]), stamp(62));
    leader.checkpoint();
    await leaderState.flush();
    expect(reader.meta).toMatchObject({ appliedIndex: 61, appliedTerm: 2, revision: 61 });

    const followerStore = new MemoryStore();
    const followerState = KvStateStore.open(followerStore, 'default', scheduler, failOnWriteError);
    const follower = new KvStateMachine(followerState);
    follower.apply(1, 1, txn([], [put('stale', 'x')]), stamp(1));
    follower.checkpoint();
    await followerState.flush();
    await followerState.beginInstall();
    let chunks = 0;
    let meta;
    for (let piece = reader.next(64 * 1024); piece !== undefined; piece = reader.next(64 * 1024)) {
      chunks++;
      const decoded = decodeChunk(piece.data);
      if (chunks === 1) meta = decoded.meta;
      else expect(decoded.meta).toBeUndefined();
      await followerState.stage(decoded.records);
      if (piece.last) break;
    }
    reader.close();
    expect(chunks).toBeGreaterThanOrEqual(9);
    // Staged, not installed: the live state is still the follower's own.
    expect(follower.get(b('stale'))).toBeDefined();
    followerState.install({ appliedIndex: meta!.appliedIndex, appliedTerm: meta!.appliedTerm, revision: meta!.revision, lastStamp: meta!.lastStamp, compactRevision: meta!.compactRevision });
    follower.reload();
    await followerState.flush();
    expect(KvStateStore.open(followerStore, 'default', scheduler, failOnWriteError).meta).toMatchObject({ generation: 1, appliedIndex: 61 });
    expect(follower.appliedIndex).toBe(61);
    expect(follower.revision).toBe(61);
    expect(follower.get(b('stale'))).toBeUndefined();
    expect(follower.get(b('k001'))).toBeUndefined();
    expect(follower.get(b('k002'))!.value.toString('latin1')).toBe(value.toString('latin1') + 2);
    expect(follower.get(b('k060'))).toEqual(leaderState.get(b('k060')));
    // The old generation is cleared in the background.
    await new Promise((r) => setTimeout(r, 10));
    expect(followerStore.entries(generationKeyspace('default', 0))).toEqual([]);
    expect(() => decodeChunk(Buffer.from('not a chunk'))).toThrow(RangeError);
    const truncated = leaderState.openSnapshot();
    const first = truncated.next(64 * 1024)!.data;
    truncated.close();
    expect(() => decodeChunk(first.subarray(0, first.byteLength - 5))).toThrow(RangeError);
  });
});

describe('validateTxn: INVALID_ARGUMENT naming the field', () => {
  const limits = { maxKeyBytes: 16, maxValueBytes: 64 };
  const refusal = (t: TxnRequest) => {
    try {
      validateTxn(t, limits);
    } catch (error) {
      expect(error).toBeInstanceOf(ReplikitError);
      const e = error as ReplikitError;
      expect(e.kind).toBe('invalid-argument');
      return `${e.reason} ${e.details.field}`;
    }
    return 'accepted';
  };

  it('accepts a well-formed transaction', () => {
    expect(refusal(txn([cmp('k', VALUE, EQ, 'v')], [put('k', 'w')], [get('k')]))).toBe('accepted');
  });

  it('refuses each malformed part', () => {
    expect(refusal(txn([], Array.from({ length: MAX_TXN_OPS + 1 }, (_, i) => put(`k${i}`, 'v'))))).toBe('TXN_TOO_LARGE success');
    expect(refusal(txn(Array.from({ length: MAX_TXN_OPS + 1 }, () => cmp('k', VERSION, EQ, 0)), [get('k')]))).toBe('TXN_TOO_LARGE compares');
    expect(refusal(txn([{ ...cmp('k', VALUE, EQ, 'v'), target: 0 }], [get('k')]))).toBe('COMPARE_TARGET_INVALID compares[0].target');
    expect(refusal(txn([{ ...cmp('k', VALUE, EQ, 'v'), target: 99 as CompareTarget }], [get('k')]))).toBe('COMPARE_TARGET_INVALID compares[0].target');
    expect(refusal(txn([{ ...cmp('k', VALUE, EQ, 'v'), result: 0 }], [get('k')]))).toBe('COMPARE_RESULT_INVALID compares[0].result');
    expect(refusal(txn([cmp('', VALUE, EQ, 'v')], [get('k')]))).toBe('KEY_EMPTY compares[0].key');
    expect(refusal(txn([], [get('k'), put('x'.repeat(17), 'v')]))).toBe('KEY_TOO_LARGE success[1].key');
    expect(refusal(txn([], [], [put('k', 'v'.repeat(65))]))).toBe('VALUE_TOO_LARGE failure[0].put.value');
    expect(refusal(txn([], [put('a', 'v'.repeat(40)), put('b', 'v'.repeat(40))]))).toBe('TXN_TOO_LARGE success');
    expect(refusal(txn([], [put('k', 'v'), del('k')]))).toBe('TXN_DUPLICATE_KEY success[1]');
    expect(refusal(txn([], [{}]))).toBe('TXN_OP_EMPTY success[0]');
    expect(refusal(txn([], [{ put: { key: b('k'), value: b('v'), lease: 0n }, get: { key: b('k') } }]))).toBe('TXN_OP_EMPTY success[0]');
  });
});
