/**
 * Random requests for the Raft-era RPCs (KvService.Txn, and the `raft` and `forward` calls of
 * ReplicaService.Exchange), each with what a dumb reference says a node must answer. The
 * generators lean towards the edges (empty and over-limit keys, out-of-range enums, counts at and
 * past the limits, numbers at and past 2^53); the references restate the documented rules in the
 * plainest code, independent of the validators they check (src/policy/cp/txn-validation.ts,
 * src/transport/raft-wire.ts). Messages are built on a decoded empty message, so fields added to
 * the protos later get their defaults here.
 */
import { decodeMembership } from '../../src/raft/membership.js';
import { CompareResult, CompareTarget, TxnRequest, type Compare, type RequestOp } from '../../src/gen/replikit/v1/kv_service.js';
import {
  ExchangeRequest,
  RaftCommand,
  RaftEntryKind,
  RaftMessage,
  RaftMessageType,
  type ForwardRequest,
  type RaftEntry,
  type RaftRequest,
} from '../../src/gen/replikit/v1/replica_service.js';
import type { Hlc } from '../../src/gen/replikit/v1/types.js';
import type { SeededRandom } from '../../src/sim/seeded-random.js';

/** docs/limits.md: keys are 1 to 1,024 bytes; a value (and a branch's values together) at most 1 MiB. */
export const MAX_KEY_BYTES = 1024;
export const MAX_VALUE_BYTES = 1024 * 1024;
/** docs/limits.md `MAX_TXN_OPS`: compares, and operations per branch. */
export const MAX_TXN_OPS = 128;
/** src/transport/replica-service.ts: Raft messages one RaftRequest may carry. */
export const MAX_RAFT_MESSAGES = 1024;
/** Terms and indexes travel as uint64 but the core counts in doubles: past this a message is refused. */
export const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const U64_MAX = 2n ** 64n - 1n;
/** The node's --max-clock-offset-ms default: a message HLC further ahead is refused. */
const MAX_CLOCK_OFFSET_MS = 500;
/** The Raft message types of replica_service.proto: 1 (PRE_VOTE) to 12 (SNAPSHOT_CHUNK_ACK). */
const RAFT_TYPES = RaftMessageType.RAFT_MESSAGE_TYPE_SNAPSHOT_CHUNK_ACK;

/**
 * What a node must answer: `invalid` INVALID_ARGUMENT, `not-found` NOT_FOUND (an unknown keyspace),
 * `too-far-ahead` FAILED_PRECONDITION (an Exchange message's HLC), or `accepted` (a valid request:
 * its outcome depends on the cluster, never on a refusal of the input).
 */
export type Expected = 'invalid' | 'not-found' | 'too-far-ahead' | 'accepted';

export function bytes(r: SeededRandom, maxLength: number): Buffer {
  const out = Buffer.alloc(r.int(0, maxLength));
  for (let i = 0; i < out.length; i++) out[i] = r.int(0, 255);
  return out;
}

/** One of `choices`, picked with probability proportional to its weight. */
export function weighted<T>(r: SeededRandom, choices: readonly (readonly [number, () => T])[]): T {
  const total = choices.reduce((sum, [w]) => sum + w, 0);
  let x = r.next() * total;
  for (const [w, make] of choices) if ((x -= w) < 0) return make();
  return choices[choices.length - 1]![1]();
}

const base = {
  txn: () => TxnRequest.decode(new Uint8Array(0)),
  exchange: () => ExchangeRequest.decode(new Uint8Array(0)),
  raftMessage: () => RaftMessage.decode(new Uint8Array(0)),
};

function key(r: SeededRandom): Buffer {
  return weighted(r, [
    [70, () => Buffer.from(`fuzz-${r.int(0, 15)}`)],
    [8, () => Buffer.alloc(0)],
    [5, () => Buffer.alloc(MAX_KEY_BYTES, 0x6b)],
    [5, () => Buffer.alloc(MAX_KEY_BYTES + 1, 0x6b)],
    [2, () => Buffer.alloc(r.int(MAX_KEY_BYTES + 2, 3 * MAX_KEY_BYTES), 0x6b)],
    [10, () => Buffer.concat([Buffer.from([0x80]), bytes(r, 24)])],
    // The prefix CP keyspaces keep for their own records (leases): refused as a client key.
    [2, () => Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), bytes(r, 8)])],
  ]);
}

/**
 * An enum value on the wire: mostly defined ones (0 is _UNSPECIFIED), else just past the last,
 * far past, or the int32 extremes. Never -1: ts-proto's enums define UNRECOGNIZED = -1, which a
 * check of "is a value of the enum" lets through; a compare with target or result -1 has its own
 * test (fuzz-raft-rpcs.test.ts), since today it stops every replica that applies it and would end
 * the fuzzing at once.
 */
function isMembership(data: Uint8Array): boolean {
  try {
    decodeMembership(data);
    return true;
  } catch {
    return false;
  }
}

function enumValue(r: SeededRandom, last: number): number {
  return weighted(r, [
    [80, () => r.int(0, last)],
    [6, () => last + 1],
    [5, () => r.int(last + 2, 1000)],
    [5, () => 2 ** 31 - 1],
    [4, () => -(2 ** 31)],
  ]);
}

/** A uint64: small (most often), 0, at and past 2^53, the largest, or anything. */
export function u64(r: SeededRandom): bigint {
  return weighted(r, [
    [45, () => BigInt(r.int(0, 40))],
    [10, () => 0n],
    [10, () => MAX_SAFE],
    [10, () => MAX_SAFE + 1n],
    [10, () => U64_MAX],
    [15, () => (BigInt(r.int(0, 2 ** 32 - 1)) << 32n) | BigInt(r.int(0, 2 ** 32 - 1))],
  ]);
}

function count(r: SeededRandom): number {
  return weighted(r, [
    [30, () => 0],
    [55, () => r.int(1, 4)],
    [8, () => MAX_TXN_OPS],
    [7, () => r.int(MAX_TXN_OPS + 1, MAX_TXN_OPS + 12)],
  ]);
}

function compare(r: SeededRandom, small: boolean): Compare {
  return {
    key: small ? Buffer.from(`fuzz-${r.int(0, 15)}`) : key(r),
    target: enumValue(r, CompareTarget.COMPARE_TARGET_MOD_REVISION) as CompareTarget,
    result: enumValue(r, CompareResult.COMPARE_RESULT_LESS) as CompareResult,
    value: bytes(r, 12),
    number: u64(r),
  };
}

function requestOp(r: SeededRandom, small: boolean): RequestOp {
  const k = () => (small ? Buffer.from(`fuzz-${r.int(0, 15)}`) : key(r));
  const put = () => ({ key: k(), value: bytes(r, 24), lease: 0n });
  return weighted<RequestOp>(r, [
    [35, () => ({ put: put() })],
    [25, () => ({ get: { key: k() } })],
    [25, () => ({ delete: { key: k() } })],
    [8, () => ({})],
    [7, () => ({ put: put(), delete: { key: k() } })],
  ]);
}

/**
 * A TxnRequest: mostly on `keyspaces` (served ones), else without a keyspace or on one of random
 * bytes. Requests with more than a handful of items keep their keys and values small, so that
 * every request stays well under a node's message limit (maxValueBytes + 64 KiB).
 */
export function randomTxn(r: SeededRandom, keyspaces: readonly string[]): TxnRequest {
  const compares = count(r);
  const success = count(r);
  const failure = count(r);
  const small = compares + success + failure > 12;
  const txn: TxnRequest = {
    ...base.txn(),
    keyspace: weighted(r, [
      [85, () => r.pick(keyspaces)],
      [7, () => ''],
      [8, () => bytes(r, 10).toString('latin1')],
    ]),
    compares: Array.from({ length: compares }, () => compare(r, small)),
    success: Array.from({ length: success }, () => requestOp(r, small)),
    failure: Array.from({ length: failure }, () => requestOp(r, small)),
  };
  // Now and then one value one byte over the limit (one only: two would pass the message limit).
  const puts = [...txn.success, ...txn.failure].flatMap((op) => (op.put === undefined ? [] : [op.put]));
  const values: { value: Buffer }[] = [...txn.compares, ...puts];
  if (!small && values.length > 0 && r.chance(0.03)) r.pick(values).value = Buffer.alloc(MAX_VALUE_BYTES + 1);
  return txn;
}

/** What a node answers a TxnRequest (or a ForwardRequest's transaction), by the documented rules. */
export function expectTxn(txn: TxnRequest, served: readonly string[]): Expected {
  if (txn.keyspace === '') return 'invalid';
  if (!served.includes(txn.keyspace)) return 'not-found';
  return txnIsValid(txn) ? 'accepted' : 'invalid';
}

function txnIsValid(txn: TxnRequest): boolean {
  const reserved = (k: Uint8Array) => k.byteLength >= 4 && k[0] === 0xff && k[1] === 0xff && k[2] === 0xff && k[3] === 0xff;
  const keyOk = (k: Uint8Array) => k.byteLength >= 1 && k.byteLength <= MAX_KEY_BYTES && !reserved(k);
  if (txn.compares.length > MAX_TXN_OPS) return false;
  for (const c of txn.compares) {
    if (!keyOk(c.key)) return false;
    if (![1, 2, 3, 4].includes(c.target) || ![1, 2, 3, 4].includes(c.result)) return false;
    if (c.target === CompareTarget.COMPARE_TARGET_VALUE && c.value.byteLength > MAX_VALUE_BYTES) return false;
  }
  for (const branch of [txn.success, txn.failure]) {
    if (branch.length > MAX_TXN_OPS) return false;
    const written = new Set<string>();
    let valueBytes = 0;
    for (const op of branch) {
      const set = [op.put, op.get, op.delete].filter((x) => x !== undefined);
      if (set.length !== 1) return false;
      if (!keyOk(set[0]!.key)) return false;
      if (op.put !== undefined) {
        if (op.put.value.byteLength > MAX_VALUE_BYTES) return false;
        valueBytes += op.put.value.byteLength;
      }
      if (op.get === undefined) {
        const id = Buffer.from(set[0]!.key).toString('hex');
        if (written.has(id)) return false;
        written.add(id);
      }
    }
    if (valueBytes > MAX_VALUE_BYTES) return false;
  }
  return true;
}

/** The same bytes' TxnRequest, or undefined when they do not parse (the node answers INVALID_ARGUMENT). */
export function decodeTxn(payload: Uint8Array): TxnRequest | undefined {
  try {
    return TxnRequest.decode(payload);
  } catch {
    return undefined;
  }
}

/** A message HLC: none, a current one, one too far ahead, or a malformed one (which is ignored). */
function hlc(r: SeededRandom, nowMs: number): Hlc | undefined {
  return weighted<Hlc | undefined>(r, [
    [30, () => undefined],
    [50, () => ({ wallTimeMs: BigInt(nowMs - 1_000), logical: r.int(0, 5) })],
    [8, () => ({ wallTimeMs: BigInt(nowMs + 3_600_000), logical: 0 })],
    [6, () => ({ wallTimeMs: 0n, logical: r.int(0, 5) })],
    [6, () => ({ wallTimeMs: MAX_SAFE + BigInt(r.int(1, 1000)), logical: r.int(0, 2 ** 31) })],
  ]);
}

function hlcTooFarAhead(h: Hlc | undefined, nowMs: number): boolean {
  // A malformed HLC (zero or past 2^53) is ignored, as in metadata; only a valid one can be refused.
  return h !== undefined && h.wallTimeMs > 0n && h.wallTimeMs <= MAX_SAFE && Number(h.wallTimeMs) - nowMs > MAX_CLOCK_OFFSET_MS;
}

function raftEntry(r: SeededRandom, index: bigint, keyspaces: readonly string[], nowMs: number): RaftEntry {
  const data = r.chance(0.5)
    ? Buffer.from(RaftCommand.encode({ txn: randomTxn(r, keyspaces), version: { hlc: { wallTimeMs: BigInt(nowMs), logical: 0 }, nodeId: 'n1' } }).finish())
    : bytes(r, 32);
  return {
    term: weighted(r, [[70, () => BigInt(r.int(0, 40))], [30, () => u64(r)]]),
    index: r.chance(0.85) ? index : u64(r),
    kind: enumValue(r, RaftEntryKind.RAFT_ENTRY_KIND_NOOP) as RaftEntryKind,
    // Cut short (and so no longer a command) past 4 KiB: a call carries up to a dozen entries,
    // and must stay under the message limit.
    data: data.subarray(0, 4096),
  };
}

/**
 * A Raft message as the claimed peer `sender` might send it to `self`: random fields, but a term
 * that is either 0 (older than any group's after its first election: the core, or for snapshot
 * pieces the transfer, takes the message in and ignores it or answers with its own term) or past
 * 2^53 (refused on the wire). Messages in a term the group is in do change its state: what a
 * forged one does is pinned by forged-raft-messages.test.ts, not fuzzed here.
 */
function raftMessage(r: SeededRandom, sender: string, self: string, members: readonly string[], keyspaces: readonly string[], nowMs: number): RaftMessage {
  const prevIndex = weighted(r, [[70, () => BigInt(r.int(0, 40))], [30, () => u64(r)]]);
  return {
    ...base.raftMessage(),
    type: weighted(r, [
      [85, () => r.int(1, RAFT_TYPES)],
      [5, () => 0],
      [4, () => 13],
      [3, () => r.int(14, 1000)],
      [3, () => 2 ** 31 - 1],
    ]) as RaftMessageType,
    from: weighted(r, [[80, () => sender], [10, () => r.pick(members)], [10, () => bytes(r, 6).toString('latin1')]]),
    to: weighted(r, [[80, () => self], [10, () => r.pick(members)], [10, () => bytes(r, 6).toString('latin1')]]),
    term: weighted(r, [[75, () => 0n], [25, () => MAX_SAFE + BigInt(r.int(1, 1000))]]),
    lastLogIndex: u64(r),
    lastLogTerm: u64(r),
    transfer: r.chance(0.3),
    reject: r.chance(0.5),
    prevIndex,
    prevTerm: u64(r),
    entries: Array.from({ length: r.chance(0.5) ? r.int(1, 3) : 0 }, (_, i) => raftEntry(r, BigInt.asUintN(64, prevIndex + 1n + BigInt(i)), keyspaces, nowMs)),
    commit: u64(r),
    index: u64(r),
    hint: u64(r),
    context: u64(r),
    snapshot: r.chance(0.5)
      ? { index: u64(r), term: u64(r), voters: r.chance(0.8) ? [...members] : [], learners: [], context: '', data: bytes(r, 48) }
      : undefined,
    snapshotTransfer: u64(r),
    snapshotChunk: weighted(r, [[50, () => 0n], [50, () => u64(r)]]),
    lastChunk: r.chance(0.5),
  };
}

/** Whether raft-wire.ts must refuse a message (unknown type, another sender or receiver, a number past 2^53, ...). */
function raftMessageRefused(m: RaftMessage, sender: string, self: string): boolean {
  if (!(m.type >= 1 && m.type <= RAFT_TYPES)) return true;
  if (m.from !== sender || m.to !== self || m.term > MAX_SAFE) return true;
  const T = RaftMessageType;
  switch (m.type) {
    case T.RAFT_MESSAGE_TYPE_PRE_VOTE:
    case T.RAFT_MESSAGE_TYPE_VOTE:
      return m.lastLogIndex > MAX_SAFE || m.lastLogTerm > MAX_SAFE;
    case T.RAFT_MESSAGE_TYPE_APPEND:
      if (m.prevIndex > MAX_SAFE || m.prevTerm > MAX_SAFE || m.commit > MAX_SAFE) return true;
      return m.entries.some(
        (e, i) =>
          (e.kind !== RaftEntryKind.RAFT_ENTRY_KIND_COMMAND && e.kind !== RaftEntryKind.RAFT_ENTRY_KIND_NOOP && e.kind !== RaftEntryKind.RAFT_ENTRY_KIND_CONFIG) ||
          (e.kind === RaftEntryKind.RAFT_ENTRY_KIND_CONFIG && !isMembership(e.data)) ||
          e.index > MAX_SAFE ||
          e.term > MAX_SAFE ||
          e.index !== m.prevIndex + 1n + BigInt(i),
      );
    case T.RAFT_MESSAGE_TYPE_APPEND_RESPONSE:
      return m.index > MAX_SAFE || m.hint > MAX_SAFE;
    case T.RAFT_MESSAGE_TYPE_HEARTBEAT:
      return m.commit > MAX_SAFE || m.context > MAX_SAFE;
    case T.RAFT_MESSAGE_TYPE_HEARTBEAT_RESPONSE:
      return m.context > MAX_SAFE;
    case T.RAFT_MESSAGE_TYPE_SNAPSHOT:
      return snapshotRefused(m);
    case T.RAFT_MESSAGE_TYPE_SNAPSHOT_CHUNK:
      return m.snapshotTransfer > MAX_SAFE || m.snapshotChunk > MAX_SAFE || snapshotRefused(m);
    case T.RAFT_MESSAGE_TYPE_SNAPSHOT_CHUNK_ACK:
      return m.snapshotTransfer > MAX_SAFE || m.snapshotChunk > MAX_SAFE;
    default:
      return false;
  }
}

function snapshotRefused(m: RaftMessage): boolean {
  return m.snapshot === undefined || m.snapshot.voters.length === 0 || m.snapshot.index > MAX_SAFE || m.snapshot.term > MAX_SAFE;
}

export interface ExchangeCase {
  readonly message: ExchangeRequest;
  readonly expected: Expected;
}

/**
 * One Exchange call from the claimed member `sender` to `self`: a `raft` call (60%), a `forward`
 * call (30%), or no call at all (10%), with what the node must answer.
 */
export function randomExchangeCall(
  r: SeededRandom,
  callId: bigint,
  ctx: { readonly sender: string; readonly self: string; readonly members: readonly string[]; readonly keyspaces: readonly string[]; readonly nowMs: number },
): ExchangeCase {
  const messageHlc = hlc(r, ctx.nowMs);
  const refusedHlc = hlcTooFarAhead(messageHlc, ctx.nowMs);
  const keyspace = () => weighted(r, [[85, () => r.pick(ctx.keyspaces)], [7, () => ''], [8, () => bytes(r, 8).toString('latin1')]]);
  const kind = r.int(0, 9);
  if (kind <= 5) {
    const raft: RaftRequest = {
      keyspace: keyspace(),
      messages: r.chance(0.01)
        ? Array.from({ length: MAX_RAFT_MESSAGES + 1 }, () => ({ ...base.raftMessage(), type: RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT, from: ctx.sender, to: ctx.self }))
        : Array.from({ length: r.int(0, 3) }, () => raftMessage(r, ctx.sender, ctx.self, ctx.members, ctx.keyspaces, ctx.nowMs)),
    };
    const expected: Expected = refusedHlc
      ? 'too-far-ahead'
      : raft.messages.length > MAX_RAFT_MESSAGES || raft.messages.some((m) => raftMessageRefused(m, ctx.sender, ctx.self))
        ? 'invalid'
        : raft.keyspace === ''
          ? 'invalid'
          : ctx.keyspaces.includes(raft.keyspace)
            ? 'accepted'
            : 'not-found';
    return { message: { ...base.exchange(), callId, hlc: messageHlc, raft }, expected };
  }
  if (kind <= 8) {
    const forward: ForwardRequest = {
      txn: r.chance(0.92) ? { ...randomTxn(r, ctx.keyspaces), keyspace: keyspace() } : undefined,
      compact: undefined,
      lease: undefined,
      timeoutMs: weighted(r, [[80, () => r.int(200, 2_000)], [10, () => 0], [10, () => 2 ** 32 - 1]]),
    };
    let expected: Expected;
    if (refusedHlc) expected = 'too-far-ahead';
    else if (forward.txn === undefined) expected = 'invalid';
    else {
      const byTxn = expectTxn(forward.txn, ctx.keyspaces);
      // The keyspace is looked up first, the timeout checked next, the transaction last.
      expected = byTxn === 'not-found' || forward.txn.keyspace === '' ? byTxn : forward.timeoutMs === 0 ? 'invalid' : byTxn;
    }
    return { message: { ...base.exchange(), callId, hlc: messageHlc, forward }, expected };
  }
  return { message: { ...base.exchange(), callId, hlc: messageHlc }, expected: refusedHlc ? 'too-far-ahead' : 'invalid' };
}
