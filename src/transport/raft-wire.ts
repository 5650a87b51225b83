/**
 * Raft messages between the core's plain objects (raft/types.ts) and the wire (RaftMessage in
 * replica_service.proto). Decoding validates: a peer's message that does not make sense for its
 * type is refused as a whole (the sender's core retries what matters), never half-applied.
 */
import { decodeMembership, snapshotMeta } from '../raft/membership.js';
import {
  RaftEntryKind,
  RaftMessageType,
  type RaftEntry as WireRaftEntry,
  type RaftMessage as WireRaftMessage,
  type RaftSnapshot as WireRaftSnapshot,
} from '../gen/replikit/v1/replica_service.js';
import { invalidArgument } from '../errors.js';
import type { LogEntry, RaftMessage, RaftMessageType as CoreType, RaftSnapshot } from '../raft/types.js';
import { asBuffer } from './wire.js';

const TO_WIRE: Record<CoreType, RaftMessageType> = {
  preVote: RaftMessageType.RAFT_MESSAGE_TYPE_PRE_VOTE,
  preVoteResponse: RaftMessageType.RAFT_MESSAGE_TYPE_PRE_VOTE_RESPONSE,
  vote: RaftMessageType.RAFT_MESSAGE_TYPE_VOTE,
  voteResponse: RaftMessageType.RAFT_MESSAGE_TYPE_VOTE_RESPONSE,
  append: RaftMessageType.RAFT_MESSAGE_TYPE_APPEND,
  appendResponse: RaftMessageType.RAFT_MESSAGE_TYPE_APPEND_RESPONSE,
  heartbeat: RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT,
  heartbeatResponse: RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT_RESPONSE,
  snapshot: RaftMessageType.RAFT_MESSAGE_TYPE_SNAPSHOT,
  timeoutNow: RaftMessageType.RAFT_MESSAGE_TYPE_TIMEOUT_NOW,
  snapshotChunk: RaftMessageType.RAFT_MESSAGE_TYPE_SNAPSHOT_CHUNK,
  snapshotChunkAck: RaftMessageType.RAFT_MESSAGE_TYPE_SNAPSHOT_CHUNK_ACK,
};
const FROM_WIRE = new Map<RaftMessageType, CoreType>(Object.entries(TO_WIRE).map(([k, v]) => [v, k as CoreType]));

/** 2^53 − 1: terms and indexes are numbers in the core; a larger one is a forged message. */
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function num(value: bigint, field: string): number {
  if (value > MAX_SAFE) throw invalidArgument('RAFT_MESSAGE_INVALID', `${field} ${value} is past 2^53`);
  return Number(value);
}

function entryToWire(e: LogEntry): WireRaftEntry {
  return {
    term: BigInt(e.term),
    index: BigInt(e.index),
    kind: KIND_TO_WIRE[e.kind],
    data: asBuffer(e.data),
  };
}

function entryFromWire(w: WireRaftEntry, at: number): LogEntry {
  const kind = KIND_FROM_WIRE.get(w.kind);
  if (kind === undefined) throw invalidArgument('RAFT_MESSAGE_INVALID', `entry ${at} has unknown kind ${w.kind}`);
  const index = num(w.index, `entry ${at}'s index`);
  if (index < 1) throw invalidArgument('RAFT_MESSAGE_INVALID', `entry ${at} has index 0`);
  if (kind === 'config') {
    try {
      decodeMembership(w.data);
    } catch (error) {
      throw invalidArgument('RAFT_MESSAGE_INVALID', `entry ${at} is a config entry whose membership does not decode: ${(error as Error).message}`);
    }
  }
  return { term: num(w.term, `entry ${at}'s term`), index, kind, data: w.data };
}

const KIND_TO_WIRE: Readonly<Record<LogEntry['kind'], RaftEntryKind>> = {
  command: RaftEntryKind.RAFT_ENTRY_KIND_COMMAND,
  noop: RaftEntryKind.RAFT_ENTRY_KIND_NOOP,
  config: RaftEntryKind.RAFT_ENTRY_KIND_CONFIG,
};
const KIND_FROM_WIRE = new Map(Object.entries(KIND_TO_WIRE).map(([k, v]) => [v, k as LogEntry['kind']]));

function snapshotToWire(s: RaftSnapshot): WireRaftSnapshot {
  return {
    index: BigInt(s.meta.index),
    term: BigInt(s.meta.term),
    voters: [...s.meta.voters],
    learners: [...(s.meta.learners ?? [])],
    context: s.meta.context ?? '',
    data: asBuffer(s.data),
  };
}

function snapshotFromWire(w: WireRaftSnapshot | undefined): RaftSnapshot {
  if (w === undefined) throw invalidArgument('RAFT_MESSAGE_INVALID', 'a SNAPSHOT message carries no snapshot');
  if (w.voters.length === 0) throw invalidArgument('RAFT_MESSAGE_INVALID', 'a snapshot names no voters');
  const meta = snapshotMeta(num(w.index, "the snapshot's index"), num(w.term, "the snapshot's term"), { voters: w.voters, learners: w.learners, context: w.context });
  return { meta, data: w.data };
}

export function raftMessageToWire(m: RaftMessage): WireRaftMessage {
  const wire: WireRaftMessage = {
    type: TO_WIRE[m.type],
    from: m.from,
    to: m.to,
    term: BigInt(m.term),
    lastLogIndex: 0n,
    lastLogTerm: 0n,
    transfer: false,
    reject: false,
    prevIndex: 0n,
    prevTerm: 0n,
    entries: [],
    commit: 0n,
    index: 0n,
    hint: 0n,
    context: 0n,
    snapshot: undefined,
    snapshotTransfer: 0n,
    snapshotChunk: 0n,
    lastChunk: false,
  };
  switch (m.type) {
    case 'preVote':
    case 'vote':
      return { ...wire, lastLogIndex: BigInt(m.lastLogIndex), lastLogTerm: BigInt(m.lastLogTerm), transfer: m.transfer };
    case 'preVoteResponse':
    case 'voteResponse':
      return { ...wire, reject: m.reject };
    case 'append':
      return { ...wire, prevIndex: BigInt(m.prevIndex), prevTerm: BigInt(m.prevTerm), entries: m.entries.map(entryToWire), commit: BigInt(m.commit) };
    case 'appendResponse':
      return { ...wire, reject: m.reject, index: BigInt(m.index), hint: BigInt(m.hint) };
    case 'heartbeat':
      return { ...wire, commit: BigInt(m.commit), context: BigInt(m.context) };
    case 'heartbeatResponse':
      return { ...wire, context: BigInt(m.context) };
    case 'snapshot':
      return { ...wire, snapshot: snapshotToWire(m.snapshot) };
    case 'timeoutNow':
      return wire;
    case 'snapshotChunk':
      return { ...wire, snapshot: snapshotToWire(m.snapshot), snapshotTransfer: BigInt(m.transfer), snapshotChunk: BigInt(m.chunk), lastChunk: m.last };
    case 'snapshotChunkAck':
      return { ...wire, reject: m.reject, snapshotTransfer: BigInt(m.transfer), snapshotChunk: BigInt(m.chunk) };
  }
}

/**
 * A peer's message as the core takes it. `sender` is the authenticated caller: a message claiming
 * another sender is refused (a node speaks only for itself).
 */
export function raftMessageFromWire(w: WireRaftMessage, sender: string, self: string): RaftMessage {
  const type = FROM_WIRE.get(w.type);
  if (type === undefined) throw invalidArgument('RAFT_MESSAGE_INVALID', `unknown Raft message type ${w.type}`);
  if (w.from !== sender) throw invalidArgument('RAFT_MESSAGE_INVALID', `a message from ${sender} claims to come from ${JSON.stringify(w.from)}`);
  if (w.to !== self) throw invalidArgument('RAFT_MESSAGE_INVALID', `a message for ${JSON.stringify(w.to)} reached ${self}`);
  const base = { from: w.from, to: w.to, term: num(w.term, 'term') };
  switch (type) {
    case 'preVote':
    case 'vote':
      return { ...base, type, lastLogIndex: num(w.lastLogIndex, 'last_log_index'), lastLogTerm: num(w.lastLogTerm, 'last_log_term'), transfer: w.transfer };
    case 'preVoteResponse':
    case 'voteResponse':
      return { ...base, type, reject: w.reject };
    case 'append': {
      const prevIndex = num(w.prevIndex, 'prev_index');
      const entries = w.entries.map(entryFromWire);
      entries.forEach((e, i) => {
        if (e.index !== prevIndex + 1 + i) throw invalidArgument('RAFT_MESSAGE_INVALID', `entry ${i} has index ${e.index}, not ${prevIndex + 1 + i}`);
      });
      return { ...base, type, prevIndex, prevTerm: num(w.prevTerm, 'prev_term'), entries, commit: num(w.commit, 'commit') };
    }
    case 'appendResponse':
      return { ...base, type, reject: w.reject, index: num(w.index, 'index'), hint: num(w.hint, 'hint') };
    case 'heartbeat':
      return { ...base, type, commit: num(w.commit, 'commit'), context: num(w.context, 'context') };
    case 'heartbeatResponse':
      return { ...base, type, context: num(w.context, 'context') };
    case 'snapshot':
      return { ...base, type, snapshot: snapshotFromWire(w.snapshot) };
    case 'timeoutNow':
      return { ...base, type };
    case 'snapshotChunk':
      return { ...base, type, transfer: num(w.snapshotTransfer, 'snapshot_transfer'), chunk: num(w.snapshotChunk, 'snapshot_chunk'), last: w.lastChunk, snapshot: snapshotFromWire(w.snapshot) };
    case 'snapshotChunkAck':
      return { ...base, type, transfer: num(w.snapshotTransfer, 'snapshot_transfer'), chunk: num(w.snapshotChunk, 'snapshot_chunk'), reject: w.reject };
  }
}

/** Roughly what a message costs on the wire, for byte budgets. */
export function raftMessageBytes(m: RaftMessage): number {
  let bytes = 64;
  if (m.type === 'append') for (const e of m.entries) bytes += e.data.byteLength + 24;
  if (m.type === 'snapshot' || m.type === 'snapshotChunk') bytes += m.snapshot.data.byteLength + m.snapshot.meta.voters.length * 16;
  return bytes;
}
