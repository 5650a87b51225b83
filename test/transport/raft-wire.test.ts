import { describe, expect, it } from 'vitest';
import { RaftMessage as WireRaftMessage } from '../../src/gen/replikit/v1/replica_service.js';
import type { RaftMessage } from '../../src/raft/types.js';
import { raftMessageFromWire, raftMessageToWire } from '../../src/transport/raft-wire.js';
import { checkRaftAgreement } from '../../src/sim/raft-agreement.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { ReplikitError } from '../../src/errors.js';

const entry = (index: number, term: number, data = `e${index}`) => ({ index, term, kind: 'command' as const, data: Buffer.from(data) });
const base = { from: 'n1', to: 'n2', term: 7 };
const CONFIG = '{"voters":["n1","n2","n3"],"learners":["n4"],"context":"{}"}';
const MESSAGES: RaftMessage[] = [
  { ...base, type: 'preVote', lastLogIndex: 9, lastLogTerm: 6, transfer: false },
  { ...base, type: 'vote', lastLogIndex: 9, lastLogTerm: 6, transfer: true },
  { ...base, type: 'voteResponse', reject: true },
  { ...base, type: 'preVoteResponse', reject: false },
  { ...base, type: 'append', prevIndex: 3, prevTerm: 5, entries: [entry(4, 6), { index: 5, term: 7, kind: 'noop', data: Buffer.alloc(0) }], commit: 3 },
  { ...base, type: 'appendResponse', reject: true, index: 3, hint: 2 },
  { ...base, type: 'heartbeat', commit: 5, context: 12 },
  { ...base, type: 'heartbeatResponse', context: 12 },
  { ...base, type: 'snapshot', snapshot: { meta: { index: 40, term: 6, voters: ['n1', 'n2', 'n3'] }, data: Buffer.from('state') } },
  { ...base, type: 'timeoutNow' },
  { ...base, type: 'append', prevIndex: 5, prevTerm: 7, entries: [{ index: 6, term: 7, kind: 'config', data: Buffer.from(CONFIG) }], commit: 5 },
  { ...base, type: 'snapshot', snapshot: { meta: { index: 41, term: 7, voters: ['n1', 'n2'], learners: ['n4'], context: '{"n4":"h:4"}' }, data: Buffer.from('state') } },
];

const roundTrip = (m: RaftMessage) => raftMessageFromWire(WireRaftMessage.decode(WireRaftMessage.encode(raftMessageToWire(m)).finish()), m.from, m.to);

describe('Raft messages on the wire', () => {
  it('every message type survives encoding and decoding unchanged', () => {
    for (const m of MESSAGES) expect(roundTrip(m)).toEqual(m);
  });

  it('refuses a message claiming another sender, another receiver, or entries out of sequence', () => {
    const wire = raftMessageToWire(MESSAGES[4]!);
    expect(() => raftMessageFromWire(wire, 'n3', 'n2')).toThrow(/claims to come from/);
    expect(() => raftMessageFromWire(wire, 'n1', 'n3')).toThrow(/reached n3/);
    expect(() => raftMessageFromWire({ ...wire, entries: [wire.entries[1]!, wire.entries[0]!] }, 'n1', 'n2')).toThrow(/index/);
    expect(() => raftMessageFromWire({ ...wire, term: 2n ** 60n }, 'n1', 'n2')).toThrow(/2\^53/);
    expect(() => raftMessageFromWire({ ...wire, type: 99 as WireRaftMessage["type"] }, 'n1', 'n2')).toThrow(/unknown Raft message type/);
  });

  it('refuses a config entry whose membership does not decode, naming why', () => {
    const wire = raftMessageToWire(MESSAGES[10]!);
    const bad = (data: string) => () => raftMessageFromWire({ ...wire, entries: [{ ...wire.entries[0]!, data: Buffer.from(data) }] }, 'n1', 'n2');
    expect(bad('{"voters":[]}')).toThrow(/config entry whose membership does not decode: .*voters must not be empty/);
    expect(bad('garbage')).toThrow(/not JSON/);
    expect(bad('{"voters":["a"],"learners":["a"]}')).toThrow(/names a member twice/);
  });

  it('random bytes either fail to decode or are refused with INVALID_ARGUMENT, never anything else', () => {
    const random = new SeededRandom(11);
    let refused = 0;
    for (let i = 0; i < 2_000; i++) {
      const bytes = Buffer.from(Array.from({ length: random.int(0, 80) }, () => random.int(0, 255)));
      let decoded: WireRaftMessage;
      try {
        decoded = WireRaftMessage.decode(bytes);
      } catch {
        continue;
      }
      try {
        raftMessageFromWire(decoded, decoded.from, decoded.to);
      } catch (error) {
        expect(error).toBeInstanceOf(ReplikitError);
        expect((error as ReplikitError).kind).toBe('invalid-argument');
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
  });
});

describe('checkRaftAgreement (the end-of-run check over the nodes\' disks)', () => {
  const log = (commit: number, entries: ReturnType<typeof entry>[]) => ({ hardState: { term: 9, vote: undefined, commit }, snapshot: undefined, entries });

  it('accepts logs that agree on a prefix and diverge only past what both know committed', () => {
    const a = log(2, [entry(1, 1), entry(2, 1), entry(3, 2, 'x')]);
    const b = log(2, [entry(1, 1), entry(2, 1), entry(3, 3, 'y')]);
    expect(checkRaftAgreement(new Map([['n1', a], ['n2', b]]))).toBeUndefined();
  });

  it('finds different entries under one index and term, a broken prefix, and a committed index that differs', () => {
    expect(checkRaftAgreement(new Map([['n1', log(0, [entry(1, 1, 'a')])], ['n2', log(0, [entry(1, 1, 'b')])]]))).toMatch(/index 1 term 1 holds different entries/);
    expect(checkRaftAgreement(new Map([['n1', log(0, [entry(1, 1), entry(2, 2)])], ['n2', log(0, [entry(1, 3), entry(2, 2)])]]))).toMatch(/log matching/);
    expect(checkRaftAgreement(new Map([['n1', log(1, [entry(1, 1)])], ['n2', log(1, [entry(1, 2)])]]))).toMatch(/committed/);
  });
});
