import { describe, expect, it } from 'vitest';
import type { CausalCheckOptions, CausalOperation, CausalViolationKind, Outcome, ProcessId, Value } from '../../src/testing/index.js';
import { HistoryFormatError, HistoryRecorder, checkCausalConsistency, parseJsonLines } from '../../src/testing/index.js';

/**
 * One operation of a handwritten history. Operations run one after another in the order written,
 * operation i at [2i, 2i + 1], so that the order on the page is session order too.
 */
interface Spec {
  readonly s: ProcessId;
  readonly f: 'read' | 'write' | 'delete';
  readonly key: string;
  readonly v: Value;
  readonly outcome: Outcome;
}

const w = (s: ProcessId, key: string, v: Value, outcome: Outcome = 'ok'): Spec => ({ s, f: 'write', key, v, outcome });
const r = (s: ProcessId, key: string, v: Value, outcome: Outcome = 'ok'): Spec => ({ s, f: 'read', key, v, outcome });
const d = (s: ProcessId, key: string, outcome: Outcome = 'ok'): Spec => ({ s, f: 'delete', key, v: null, outcome });

function history(specs: readonly Spec[]): CausalOperation[] {
  return specs.map((spec, id) => ({
    id,
    process: spec.s,
    f: spec.f,
    key: spec.key,
    value: spec.f === 'read' && spec.outcome !== 'ok' ? null : spec.v,
    call: 2 * id,
    return: spec.outcome === 'info' ? Infinity : 2 * id + 1,
    outcome: spec.outcome,
  }));
}

/** The same operations, all overlapping in time: causal order alone decides. */
const overlapping = (ops: readonly CausalOperation[]): CausalOperation[] => ops.map((op) => ({ ...op, call: op.id, return: Infinity === op.return ? Infinity : 1_000 }));

const check = (specs: readonly Spec[], options?: CausalCheckOptions) => checkCausalConsistency(history(specs), options);
const kinds = (specs: readonly Spec[], options?: CausalCheckOptions): CausalViolationKind[] =>
  check(specs, options).violations.map((v) => v.kind);

describe('checkCausalConsistency: valid histories', () => {
  it('accepts an empty history, a sequential one and reads of the initial state', () => {
    expect(check([]).valid).toBe(true);
    expect(check([r(1, 'x', null), w(1, 'x', 1), r(2, 'x', null), r(2, 'x', 1), d(2, 'x'), r(1, 'x', null)]).valid).toBe(true);
  });

  it('lets concurrent writes resolve either way, as long as every session agrees', () => {
    const writes = [w(1, 'x', 1), w(2, 'x', 2)];
    // Each session sees one of the writes, then the one that won.
    expect(check([...writes, r(3, 'x', 1), r(3, 'x', 2), r(4, 'x', 2), r(4, 'x', 2)]).valid).toBe(true);
    expect(check([...writes, r(3, 'x', 2), r(3, 'x', 1), r(4, 'x', 1)]).valid).toBe(true);
    // A writer may see the other write win over its own.
    expect(check([...writes, r(1, 'x', 2), r(2, 'x', 2)]).valid).toBe(true);
  });

  it('lets a session read a write that is concurrent with what it has seen', () => {
    // Session 3 has seen y = 1 (which depends on nothing about x); x = 5 is concurrent with it.
    expect(check([w(1, 'y', 1), w(2, 'x', 5), r(3, 'y', 1), r(3, 'x', null), r(3, 'x', 5)]).valid).toBe(true);
  });
});

describe('checkCausalConsistency: session guarantees', () => {
  it('flags read-your-writes when a session reads a value its own write superseded', () => {
    const specs = [w(1, 'x', 1), r(2, 'x', 1), w(2, 'x', 2), r(2, 'x', 1)];
    const result = check(specs);
    expect(result.valid).toBe(false);
    const [v] = result.violations;
    expect(v).toMatchObject({ kind: 'read-your-writes', session: 2, key: 'x' });
    expect(v!.read.id).toBe(3);
    expect(v!.returned?.id).toBe(0);
    expect(v!.newer?.id).toBe(2);
    // The evidence: the returned write, the session's read of it, its own write, the stale read.
    expect(v!.chain.map((s) => [s.operation.id, s.via])).toEqual([
      [0, undefined],
      [1, 'reads-from'],
      [2, 'session-order'],
      [3, 'session-order'],
    ]);
    expect(result.explanation).toContain('read-your-writes: read "x" by session 2 at [6, 7] returned 1');
  });

  it('flags read-your-writes when a session reads null after its own put and no delete explains it', () => {
    expect(kinds([w(1, 'x', 1), r(1, 'x', null)])).toEqual(['read-your-writes']);
    // The only delete happened before the write (session 1 saw y = 1, written after it), so it
    // cannot explain null either.
    expect(kinds([d(2, 'x'), w(2, 'y', 1), r(1, 'y', 1), w(1, 'x', 1), r(1, 'x', null)])).toEqual(['read-your-writes']);
    // Had session 1 only read null before its write, that read may have been of the initial
    // state, so the delete may be concurrent with the write and win over it.
    expect(check([d(2, 'x'), r(1, 'x', null), w(1, 'x', 1), r(1, 'x', null)]).valid).toBe(true);
    // A delete that causally follows the write explains it...
    expect(check([w(1, 'x', 1), r(2, 'x', 1), d(2, 'x'), r(1, 'x', null)]).valid).toBe(true);
    // ...and so does a concurrent delete that won the conflict.
    expect(check([w(1, 'x', 1), d(2, 'x'), r(1, 'x', null)]).valid).toBe(true);
    // But not a delete that comes after the read in the reading session...
    expect(kinds([w(1, 'x', 1), r(1, 'x', null), d(1, 'x')])).toEqual(['read-your-writes']);
    // ...nor one invoked only after the read returned, unless their times overlap.
    const late = history([w(1, 'x', 1), r(1, 'x', null), d(2, 'x')]);
    expect(checkCausalConsistency(late).violations.map((v) => v.kind)).toEqual(['read-your-writes']);
    expect(checkCausalConsistency(overlapping(late)).valid).toBe(true);
  });

  it('flags monotonic reads when a session goes back to a value older than one it read', () => {
    const result = check([w(1, 'x', 1), w(1, 'x', 2), r(2, 'x', 2), r(2, 'x', 1)]);
    expect(result.violations.map((v) => v.kind)).toEqual(['monotonic-reads']);
    expect(result.violations[0]!.newer?.value).toBe(2);
    expect(result.violations[0]!.returned?.value).toBe(1);
    // Going back to null (the initial state) after reading a value is the same mistake.
    expect(kinds([w(1, 'x', 1), r(2, 'x', 1), r(2, 'x', null)])).toEqual(['monotonic-reads']);
  });

  it('flags a resurrection: reading a value again after reading the delete that followed it', () => {
    // Session 3's null can only be session 2's delete, which follows x = 1.
    const specs = [w(1, 'x', 1), r(2, 'x', 1), d(2, 'x'), r(3, 'x', 1), r(3, 'x', null), r(3, 'x', 1)];
    expect(kinds(specs)).toEqual(['monotonic-reads']);
    // With a second, concurrent delete the null read is ambiguous, and the checker stays lenient.
    expect(check([...specs.slice(0, 3), d(4, 'x'), ...specs.slice(3)]).valid).toBe(true);
  });
});

describe('checkCausalConsistency: causal visibility', () => {
  const acl = 'acl';
  const post = 'post';
  // COPS's example: Alice removes Bob from the ACL, then posts; Bob must not see the post with the old ACL.
  const alice = [w('alice', acl, 'alice,bob'), r('alice', acl, 'alice,bob'), w('alice', acl, 'alice'), w('alice', post, 'hi')];

  it('flags the COPS photo example: the post without the ACL change before it', () => {
    const result = check([...alice, r('bob', post, 'hi'), r('bob', acl, 'alice,bob')]);
    expect(result.valid).toBe(false);
    const [v] = result.violations;
    expect(v).toMatchObject({ kind: 'causal-visibility', session: 'bob', key: acl });
    expect(v!.newer?.value).toBe('alice');
    expect(v!.chain.map((s) => `${s.operation.f} ${s.operation.key}=${String(s.operation.value)} ${s.via ?? ''}`.trim())).toEqual([
      'write acl=alice,bob',
      'write acl=alice session-order',
      'write post=hi session-order',
      'read post=hi reads-from',
      'read acl=alice,bob session-order',
    ]);
  });

  it('accepts the COPS example when Bob sees the new ACL', () => {
    expect(check([...alice, r('bob', post, 'hi'), r('bob', acl, 'alice')]).valid).toBe(true);
    // Reading the old ACL before the post is fine too: the post was not in Bob's past yet.
    expect(check([...alice, r('bob', acl, 'alice,bob'), r('bob', post, 'hi')]).valid).toBe(true);
  });

  it('flags monotonic writes: a session that sees a later write must see the earlier ones', () => {
    expect(kinds([w(1, 'x', 1), w(1, 'y', 1), r(2, 'y', 1), r(2, 'x', null)])).toEqual(['causal-visibility']);
  });

  it('flags writes-follow-reads: a write that followed a read carries that read with it', () => {
    const specs = [w(1, 'x', 1), r(2, 'x', 1), w(2, 'y', 2), r(3, 'y', 2)];
    const result = check([...specs, r(3, 'x', null)]);
    expect(result.violations.map((v) => v.kind)).toEqual(['causal-visibility']);
    expect(result.violations[0]!.chain.map((s) => s.operation.id)).toEqual([0, 1, 2, 3, 4]);
    expect(check([...specs, r(3, 'x', 1)]).valid).toBe(true);
    // The same with an older value instead of null.
    const older = [w(1, 'x', 0), w(1, 'x', 1), r(2, 'x', 1), w(2, 'y', 2), r(3, 'y', 2), r(3, 'x', 0)];
    expect(kinds(older)).toEqual(['causal-visibility']);
  });
});

describe('checkCausalConsistency: values and outcomes', () => {
  it('flags a read of a value never written', () => {
    const result = check([w(1, 'x', 1), r(2, 'x', 7), r(2, 'y', 1)]);
    expect(result.violations.map((v) => [v.kind, v.read.id])).toEqual([
      ['phantom-read', 1],
      ['phantom-read', 2],
    ]);
  });

  it('accepts reads of an info write, which may have happened', () => {
    expect(check([w(1, 'x', 1, 'info'), r(2, 'x', 1), r(1, 'x', 1)]).valid).toBe(true);
    // Its session's later writes do not depend on it: the session never learned it took effect.
    expect(check([w(1, 'x', 1, 'info'), w(1, 'y', 1), r(2, 'y', 1), r(2, 'x', null)]).valid).toBe(true);
    // Once read, it does carry what its session had seen when it was issued.
    expect(kinds([w(1, 'z', 1), w(1, 'x', 1, 'info'), r(2, 'x', 1), r(2, 'z', null)])).toEqual(['causal-visibility']);
  });

  it('flags a read of a failed write, which never happened', () => {
    const result = check([w(1, 'x', 1, 'fail'), r(2, 'x', 1)]);
    expect(result.violations.map((v) => v.kind)).toEqual(['aborted-read']);
    expect(result.violations[0]!.returned?.outcome).toBe('fail');
  });

  it('ignores reads that did not complete', () => {
    expect(check([w(1, 'x', 1), r(2, 'x', null, 'info'), r(3, 'x', null, 'fail')]).valid).toBe(true);
  });

  it('flags a read of a write invoked only after the read returned', () => {
    const result = check([r(1, 'x', 1), w(2, 'x', 1)]);
    expect(result.violations.map((v) => v.kind)).toEqual(['future-read']);
    expect(checkCausalConsistency(overlapping(history([r(1, 'x', 1), w(2, 'x', 1)]))).valid).toBe(true);
  });

  it('flags a read whose write causally follows it', () => {
    // Each session reads what the other writes only after that read; times overlap, so only
    // causality rules it out.
    const result = checkCausalConsistency(overlapping(history([r(1, 'x', 1), w(1, 'y', 1), r(2, 'y', 1), w(2, 'x', 1)])));
    expect(result.violations.map((v) => v.kind)).toEqual(['causal-cycle']);
    expect(result.violations[0]!.chain.at(0)?.operation).toBe(result.violations[0]!.chain.at(-1)?.operation);
    expect(checkCausalConsistency(overlapping(history([r(1, 'x', 1), w(1, 'x', 1)]))).violations.map((v) => v.kind)).toEqual([
      'causal-cycle',
    ]);
  });

  it('refuses a history whose writes repeat a value for one key, and a cas', () => {
    expect(() => check([w(1, 'x', 1), w(2, 'x', 1)])).toThrow(HistoryFormatError);
    expect(() => check([w(1, 'x', 1), w(2, 'x', 1)])).toThrow(/two writes to key "x" write 1/);
    // Different keys, and tombstones, may repeat.
    expect(check([w(1, 'x', 1), w(2, 'y', 1), w(1, 'x', null), d(2, 'x')]).valid).toBe(true);
    const cas: CausalOperation = { id: 0, process: 1, f: 'cas', key: 'x', value: [1, 2], call: 0, return: 1, outcome: 'ok' };
    expect(() => checkCausalConsistency([cas])).toThrow(/does not take cas/);
  });
});

describe('checkCausalConsistency: causal+ convergence', () => {
  // Sessions 3 and 4 see the two concurrent writes in opposite orders.
  const flipped = [w(1, 'x', 1), w(2, 'x', 2), r(3, 'x', 1), r(3, 'x', 2), r(4, 'x', 2), r(4, 'x', 1)];

  it('flags sessions that see concurrent writes resolved in opposite orders', () => {
    const result = check(flipped);
    expect(result.violations.map((v) => v.kind)).toEqual(['convergence']);
    const chain = result.violations[0]!.chain;
    expect(chain.filter((s) => s.via === 'conflict-order')).toHaveLength(2);
    expect(chain[0]!.operation).toBe(chain.at(-1)!.operation);
  });

  it('accepts the same history under plain causal consistency', () => {
    expect(check(flipped, { model: 'causal' }).valid).toBe(true);
    // One session flip-flopping between concurrent writes is the same anomaly.
    expect(kinds([w(1, 'x', 1), w(2, 'x', 2), r(3, 'x', 1), r(3, 'x', 2), r(3, 'x', 1)])).toEqual(['convergence']);
    expect(kinds([w(1, 'x', 1), w(2, 'x', 2), r(3, 'x', 1), r(3, 'x', 2), r(3, 'x', 1)], { model: 'causal' })).toEqual([]);
  });
});

describe('checkCausalConsistency: history plumbing', () => {
  it('checks what a HistoryRecorder records, directly and through JSON Lines', () => {
    let now = 0;
    const recorder = new HistoryRecorder(() => now++);
    recorder.invoke('alice', 'write', 'acl', 'alice').ok();
    recorder.invoke('alice', 'write', 'post', 'hi').ok();
    recorder.invoke('bob', 'read', 'post').ok('hi');
    recorder.invoke('bob', 'read', 'acl').ok();
    const direct = checkCausalConsistency(recorder.operations());
    expect(direct.violations.map((v) => v.kind)).toEqual(['causal-visibility']);
    const parsed = parseJsonLines(recorder.toJsonLines(), 'h.jsonl');
    const fromFile = checkCausalConsistency(parsed.operations);
    expect(fromFile.violations.map((v) => v.kind)).toEqual(['causal-visibility']);
    expect(fromFile.explanation).toContain('(line 7)');
  });

  it('names the node an operation went through, when the workload records one', () => {
    const ops = history([w(1, 'x', 1), w(1, 'x', 2), r(2, 'x', 2), r(2, 'x', 1)]).map((op) => ({ ...op, node: `n${op.id % 2}` }));
    expect(checkCausalConsistency(ops).explanation).toContain('via node "n1"');
  });

  it('reports statistics', () => {
    expect(check([w(1, 'x', 1), w(2, 'y', 1, 'info'), r(3, 'y', 1), r(3, 'x', null, 'info')]).stats).toEqual({
      operations: 4,
      sessions: 3,
      keys: 2,
      writes: 2,
      reads: 1,
      clockEntries: 4,
    });
  });
});
