import { describe, expect, it } from 'vitest';
import { CompareResult, CompareTarget, type Compare, type RequestOp, type TxnRequest } from '../../src/gen/replikit/v1/kv_service.js';
import { KvStateMachine } from '../../src/policy/cp/kv-state-machine.js';
import { MAX_TXN_OPS, validateTxn } from '../../src/policy/cp/txn-validation.js';
import { ReplikitError } from '../../src/errors.js';

const stamp = (n: number) => ({ hlc: { wallMs: 1_000 + n, logical: 0 }, nodeId: 'n1' });
const b = (s: string) => Buffer.from(s);
const put = (key: string, value: string): RequestOp => ({ put: { key: b(key), value: b(value) } });
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
    const m = new KvStateMachine();
    m.apply(1, txn([], [put('a', '1')]), stamp(1));
    m.apply(2, txn([], [put('a', '2'), put('b', 'x')]), stamp(2));
    expect(m.revision).toBe(2);
    expect(m.get(b('a'))).toMatchObject({ createRevision: 1, modRevision: 2, version: 2 });
    expect(m.get(b('b'))).toMatchObject({ createRevision: 2, modRevision: 2, version: 1 });
    m.apply(3, txn([], [del('a')]), stamp(3));
    expect(m.get(b('a'))).toBeUndefined();
    m.apply(4, txn([], [put('a', 'again')]), stamp(4));
    expect(m.get(b('a'))).toMatchObject({ createRevision: 4, modRevision: 4, version: 1 });
    // Deleting an absent key changes nothing: no new revision.
    m.apply(5, txn([], [del('zzz')]), stamp(5));
    expect(m.revision).toBe(4);
    expect(m.appliedIndex).toBe(5);
  });

  it('compares on value, version, create and mod revision pick the branch; a value compare on a missing key fails', () => {
    const m = new KvStateMachine();
    m.apply(1, txn([], [put('k', 'v1')]), stamp(1));
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
    const m = new KvStateMachine();
    m.apply(1, txn([], [put('k', 'v1')]), stamp(1));
    const swap = m.apply(2, txn([cmp('k', VALUE, EQ, 'v0')], [put('k', 'v2')], [get('k')]), stamp(2))!;
    expect(swap.succeeded).toBe(false);
    expect(swap.responses[0]!.get!.kv!.value.toString()).toBe('v1');
    expect(swap.revision).toBe(1n);
    const ok = m.apply(3, txn([cmp('k', VALUE, EQ, 'v1')], [put('k', 'v2')]), stamp(3))!;
    expect(ok.succeeded).toBe(true);
    expect(ok.responses[0]!.put!.revision).toBe(2n);
    expect(ok.responses[0]!.put!.version?.hlc?.wallTimeMs).toBe(1003n);
  });

  it('a replayed index changes nothing (a restart re-applies the log tail after its snapshot)', () => {
    const m = new KvStateMachine();
    m.apply(1, txn([], [put('k', 'v1')]), stamp(1));
    expect(m.apply(1, txn([], [put('k', 'v2')]), stamp(2))).toBeUndefined();
    expect(m.get(b('k'))!.value.toString()).toBe('v1');
  });

  it('versions grow in log order even when a proposer\'s clock went back, and the same on every replica', () => {
    const m = new KvStateMachine();
    m.apply(1, txn([], [put('a', '1')]), stamp(50));
    const r = m.apply(2, txn([], [put('b', '2')]), { hlc: { wallMs: 3, logical: 0 }, nodeId: 'n2' })!;
    expect(r.responses[0]!.put!.version).toEqual({ hlc: { wallTimeMs: 1050n, logical: 1 }, nodeId: 'n2' });
    const copy = new KvStateMachine();
    copy.restore(m.snapshot());
    const next = copy.apply(3, txn([], [put('c', '3')]), stamp(1))!;
    expect(next.responses[0]!.put!.version?.hlc).toEqual({ wallTimeMs: 1050n, logical: 2 });
  });

  it('read() refuses a transaction that writes', () => {
    expect(() => new KvStateMachine().read(txn([], [put('k', 'v')]))).toThrow(/writes/);
  });

  it('a snapshot restores the same state, revision and applied index; garbage is refused and changes nothing', () => {
    const m = new KvStateMachine();
    m.apply(1, txn([], [put('a', '1'), put(Buffer.from([0, 255, 7]).toString('latin1'), 'binary')]), stamp(1));
    m.apply(2, txn([], [put('a', '2')]), { hlc: { wallMs: 5, logical: 3 }, nodeId: 'nöde-ü' });
    const copy = new KvStateMachine();
    copy.restore(m.snapshot());
    expect(copy.revision).toBe(2);
    expect(copy.appliedIndex).toBe(2);
    expect(copy.get(b('a'))).toEqual(m.get(b('a')));
    expect(copy.snapshot()).toEqual(m.snapshot());
    expect(() => copy.restore(Buffer.from('not a snapshot at all, really'))).toThrow();
    expect(copy.revision).toBe(2);
    const truncated = m.snapshot().subarray(0, 40);
    expect(() => copy.restore(truncated)).toThrow();
    expect(copy.get(b('a'))!.value.toString()).toBe('2');
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
    expect(refusal(txn([], [{ put: { key: b('k'), value: b('v') }, get: { key: b('k') } }]))).toBe('TXN_OP_EMPTY success[0]');
  });
});
