/**
 * The state machine of a CP keyspace: what its Raft log's committed commands build. No I/O of its
 * own and no clock: it reads and writes keys through the state it is given (kv-state-store.ts
 * keeps them in the node's store), the group driver (raft-group.ts) feeds it committed entries in
 * log order, and every replica that applies the same log reaches the same state, revision for
 * revision.
 *
 * The model is etcd's MVCC: the keyspace has a revision that grows by one with every command that changes
 * something; each key holds its value, the revision that created it (since it was last absent),
 * the revision of its last write, and its version (writes since created). A delete removes the
 * key; putting it again starts a new life at version 1. Each revision's changes, with each key's
 * previous record, go to the state's history (kv-history.ts) and to `onChanges` (the watchers).
 *
 * Leases (etcd's lessor, the part every replica agrees on): a lease is granted by a command whose
 * log index becomes its id, and ended by a revoke command (a client's, or the leader's when it
 * expired); a key put with a lease is deleted when the lease ends, every key of it in one
 * revision. When a lease expires is not the machine's business: only the leader keeps expiry
 * times (lease-keeper.ts), and what it decides reaches every replica through the log. Lease
 * records live in the state beside the keys, under {@link LEASE_KEY_PREFIX}, which client keys
 * may not use and which Range and Watch never show; the machine keeps an index from each lease
 * to its keys in memory, rebuilt from the state when it opens.
 */
import {
  CompareResult,
  CompareTarget,
  type Compare,
  type KeyValue,
  type RequestOp,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from '../../gen/replikit/v1/kv_service.js';
import { compareVersion, type Version } from '../../storage/entry.js';
import { versionToWire } from '../../transport/wire.js';
import type { ChangeBatch, ChangeEvent } from '../watch/change.js';
import type { KvStateMeta } from './kv-state-store.js';
import { latin1 } from '../../storage/key-text.js';

export interface StoredKey {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The leader's HLC and id when it proposed the write (what Put and Get report as `version`). */
  readonly stamp: Version;
  /** The lease the key is attached to (deleted when it ends); 0 or absent for none. */
  readonly lease?: number;
}

/**
 * Where lease records live in the state: four 0xff bytes and "lease/", then the id (u64). Client
 * keys starting with {@link RESERVED_KEY_PREFIX} are refused (txn-validation.ts), and scans of the
 * state stop before it, so the records are never mistaken for keys.
 */
export const RESERVED_KEY_PREFIX = Buffer.from([0xff, 0xff, 0xff, 0xff]);
export const LEASE_KEY_PREFIX = Buffer.concat([RESERVED_KEY_PREFIX, Buffer.from('lease/')]);

export function leaseKey(id: number): Buffer {
  const key = Buffer.alloc(LEASE_KEY_PREFIX.byteLength + 8);
  LEASE_KEY_PREFIX.copy(key);
  key.writeBigUInt64BE(BigInt(id), LEASE_KEY_PREFIX.byteLength);
  return key;
}

/** One lease as every replica holds it. */
export interface LeaseState {
  readonly id: number;
  readonly ttlMs: number;
  /** Its keys (latin1 text of the key bytes). */
  readonly keys: Set<string>;
  /** When it was granted, by the proposing leader's HLC (only the deliberately broken expiry reads it). */
  readonly grantedWallMs: number;
}

/** What applying a transaction answers when a put names a lease that does not exist. */
export interface LeaseNotFound {
  readonly leaseNotFound: number;
}

/** What a revoke command answers. */
export interface LeaseRevokeResult {
  /** The leases that existed and ended. */
  readonly revoked: readonly number[];
  readonly keysDeleted: number;
  readonly revision: number;
}

/**
 * What the machine reads and writes its keys through: a {@link KvStateStore} in a node (the keys
 * on disk), anything that keeps the same promises in tests. `get` sees what `put` and `delete`
 * did, at once.
 */
export interface KvStateAccess {
  readonly meta: KvStateMeta;
  get(key: Uint8Array): StoredKey | undefined;
  put(record: StoredKey): void;
  delete(key: Uint8Array): boolean;
  setMeta(meta: KvStateMeta): void;
  /** Every lease record, then (only when there are leases) every key: to rebuild the lease index. */
  scanLeases(visitLease: (record: StoredKey) => void, visitKey: (record: StoredKey) => void): void;
  /** The changes of the revision just applied (the history). */
  record(batch: ChangeBatch): void;
  /** Discards the history through `revision`; answers the compaction revision then in force. */
  compact(revision: number): number;
}

const EMPTY = Buffer.alloc(0);

export class KvStateMachine {
  readonly #state: KvStateAccess;
  #revision: number;
  /** The log index of the last command applied (or of the snapshot installed), and its term. */
  #appliedIndex: number;
  #appliedTerm: number;
  /** The version the last write was given: every later write's is larger (see `apply`). */
  #lastStamp: Version;
  /** Applied entries not yet recorded in the state's metadata (see {@link checkpoint}). */
  #dirty = false;
  /** Every lease, by id. */
  #leases = new Map<number, LeaseState>();

  /** Hears each revision's changes once they are applied and recorded (the watchers). */
  readonly #onChanges: (batch: ChangeBatch) => void;

  constructor(state: KvStateAccess, onChanges: (batch: ChangeBatch) => void = () => {}) {
    this.#state = state;
    this.#onChanges = onChanges;
    this.#revision = state.meta.revision;
    this.#appliedIndex = state.meta.appliedIndex;
    this.#appliedTerm = state.meta.appliedTerm;
    this.#lastStamp = state.meta.lastStamp;
    this.#loadLeases();
  }

  get revision(): number {
    return this.#revision;
  }

  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  get appliedTerm(): number {
    return this.#appliedTerm;
  }

  /** A key as the state holds it, or undefined when absent. */
  get(key: Uint8Array): StoredKey | undefined {
    return this.#state.get(key);
  }

  /**
   * Applies the command of log entry `index` of `term` (the next one: indexes only grow; an index
   * at or below the applied one is a replay after a restart and changes nothing, answering
   * undefined). Its writes are issued to the state at once; {@link checkpoint} records the applied
   * index with them.
   */
  apply(index: number, term: number, txn: TxnRequest, stamp: Version): TxnResponse | LeaseNotFound | undefined {
    if (!this.#advance(index, term)) return undefined;
    // Every command moves it, even one that changed nothing (a delete of an absent key still
    // answers with this version).
    const effective = this.#effective(stamp);
    this.#lastStamp = effective;
    return this.#run(txn, effective);
  }

  /**
   * Applies a Compact command of log entry `index`: history through `revision` (at most the
   * current revision) is discarded. Answers the compaction revision then in force.
   */
  compact(index: number, term: number, revision: number): number {
    if (!this.#advance(index, term)) return this.#state.compact(0);
    return this.#state.compact(Math.min(revision, this.#revision));
  }

  /** A log entry that carries no command (a leader's no-op): only the applied index moves. */
  skip(index: number, term: number): void {
    this.#advance(index, term);
  }

  /**
   * Records the applied index, revision and last stamp with the writes issued since the last
   * checkpoint. The caller runs it in the same synchronous run as those writes, so they commit
   * together: the state on disk is always that of one applied index.
   */
  checkpoint(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    this.#state.setMeta({ ...this.#state.meta, appliedIndex: this.#appliedIndex, appliedTerm: this.#appliedTerm, revision: this.#revision, lastStamp: this.#lastStamp });
  }

  /** Takes up the state's metadata again, after a snapshot replaced the state under it. */
  reload(): void {
    const meta = this.#state.meta;
    this.#revision = meta.revision;
    this.#appliedIndex = meta.appliedIndex;
    this.#appliedTerm = meta.appliedTerm;
    this.#lastStamp = meta.lastStamp;
    this.#dirty = false;
    this.#loadLeases();
  }

  #loadLeases(): void {
    this.#leases = new Map();
    this.#state.scanLeases(
      (record) => {
        const id = Number(record.key.readBigUInt64BE(LEASE_KEY_PREFIX.byteLength));
        this.#leases.set(id, { id, ttlMs: Number(record.value.readBigUInt64BE(0)), keys: new Set(), grantedWallMs: record.stamp.hlc.wallMs });
      },
      (record) => {
        if (record.lease) this.#leases.get(record.lease)?.keys.add(latin1(record.key));
      },
    );
  }

  /** A lease, or undefined when it does not exist (never granted, expired or revoked). */
  lease(id: number): LeaseState | undefined {
    return this.#leases.get(id);
  }

  /**
   * Every lease, in id order: the map's order already, since ids are the grants' log indexes,
   * which only grow, and a reload reads them in key order, which is id order (big-endian).
   */
  leases(): LeaseState[] {
    return [...this.#leases.values()];
  }

  get leaseCount(): number {
    return this.#leases.size;
  }

  /** Applies a lease grant of log entry `index`: the lease's id is that index. */
  grantLease(index: number, term: number, ttlMs: number, stamp: Version): { id: number; ttlMs: number; revision: number } | undefined {
    if (!this.#advance(index, term)) return undefined;
    this.#lastStamp = this.#effective(stamp);
    const record: StoredKey = { key: leaseKey(index), value: u64(ttlMs), createRevision: this.#revision, modRevision: this.#revision, version: 1, stamp: this.#lastStamp };
    this.#state.put(record);
    this.#leases.set(index, { id: index, ttlMs, keys: new Set(), grantedWallMs: this.#lastStamp.hlc.wallMs });
    return { id: index, ttlMs, revision: this.#revision };
  }

  /** Applies a revoke of log entry `index`: the leases that exist end, and their keys go in one revision. */
  revokeLeases(index: number, term: number, ids: readonly number[], stamp: Version): LeaseRevokeResult | undefined {
    if (!this.#advance(index, term)) return undefined;
    const effective = this.#effective(stamp);
    this.#lastStamp = effective;
    const next = this.#revision + 1;
    const events: ChangeEvent[] = [];
    const revoked: number[] = [];
    for (const id of ids) {
      const lease = this.#leases.get(id);
      if (lease === undefined) continue;
      revoked.push(id);
      // Sorted, so that every replica deletes in one order (the history records them so).
      for (const k of [...lease.keys].sort()) this.#deleteKey(Buffer.from(k, 'latin1'), next, effective, events);
      this.#leases.delete(id);
      this.#state.delete(leaseKey(id));
    }
    this.#publish(next, events);
    return { revoked, keysDeleted: events.length, revision: this.#revision };
  }

  /** Moves the applied index to `index`; false for a replayed entry (at or below it), which changes nothing. */
  #advance(index: number, term: number): boolean {
    if (index <= this.#appliedIndex) return false;
    this.#appliedIndex = index;
    this.#appliedTerm = term;
    this.#dirty = true;
    return true;
  }

  /**
   * Versions grow in log order, whatever the proposers' clocks did (a leader restarted with its
   * clock stepped back, or one that had not yet seen its predecessor's last stamp): a proposal's
   * stamp that is not past the last write's takes the next one after it. Every replica computes
   * the same, so versions agree everywhere and order writes as the log does.
   */
  #effective(stamp: Version): Version {
    return compareVersion(stamp, this.#lastStamp) > 0 ? stamp : { hlc: { wallMs: this.#lastStamp.hlc.wallMs, logical: this.#lastStamp.hlc.logical + 1 }, nodeId: stamp.nodeId };
  }

  #deleteKey(key: Buffer, next: number, stamp: Version, events: ChangeEvent[]): boolean {
    const held = this.#state.get(key);
    if (held === undefined || !this.#state.delete(key)) return false;
    if (held.lease) this.#leases.get(held.lease)?.keys.delete(latin1(key));
    events.push({ type: 'delete', kv: { key, value: EMPTY, createRevision: 0, modRevision: next, version: 0, stamp }, prev: held });
    return true;
  }

  #publish(next: number, events: ChangeEvent[]): void {
    if (events.length === 0) return;
    this.#revision = next;
    const batch = { revision: next, events };
    this.#state.record(batch);
    this.#onChanges(batch);
  }

  /**
   * Answers a transaction with no writes from the current state (a linearizable read once the
   * caller has made sure the state is current, by ReadIndex; a serializable one otherwise).
   */
  read(txn: TxnRequest): TxnResponse {
    if (writes(txn)) throw new Error('read() was given a transaction that writes');
    return this.#run(txn, undefined) as TxnResponse;
  }

  /** Runs a transaction; `stamp` is undefined for a read, which then must not write. */
  #run(txn: TxnRequest, stamp: Version | undefined): TxnResponse | LeaseNotFound {
    const succeeded = txn.compares.every((c) => this.#holds(c));
    const ops = succeeded ? txn.success : txn.failure;
    // A put that names a lease that ended (or never was) fails the whole transaction, as etcd's:
    // nothing of it is applied, the same on every replica.
    for (const op of ops) {
      const lease = Number(op.put?.lease ?? 0n);
      if (lease !== 0 && !this.#leases.has(lease)) return { leaseNotFound: lease };
    }
    const next = this.#revision + 1;
    const events: ChangeEvent[] = [];
    const responses: ResponseOp[] = ops.map((op) => {
      if (op.put !== undefined && stamp !== undefined) {
        const held = this.#state.get(op.put.key);
        const lease = Number(op.put.lease ?? 0n);
        const kv: StoredKey = {
          key: Buffer.from(op.put.key),
          value: Buffer.from(op.put.value),
          createRevision: held?.createRevision ?? next,
          modRevision: next,
          version: (held?.version ?? 0) + 1,
          stamp,
          ...(lease === 0 ? {} : { lease }),
        };
        this.#state.put(kv);
        if (held?.lease !== kv.lease) {
          const text = latin1(kv.key);
          if (held?.lease) this.#leases.get(held.lease)?.keys.delete(text);
          if (lease !== 0) this.#leases.get(lease)!.keys.add(text);
        }
        events.push({ type: 'put', kv, ...(held === undefined ? {} : { prev: held }) });
        return { put: { revision: BigInt(next), version: versionToWire(stamp) } };
      }
      if (op.delete !== undefined && stamp !== undefined) {
        const deleted = this.#deleteKey(Buffer.from(op.delete.key), next, stamp, events);
        return { delete: { deleted: deleted ? 1 : 0, version: versionToWire(stamp) } };
      }
      if (op.get !== undefined) {
        const held = this.#state.get(op.get.key);
        return { get: { found: held !== undefined, kv: held === undefined ? undefined : keyValue(held) } };
      }
      // An empty operation (the API refuses it) answers nothing, the same on every replica.
      return {};
    });
    this.#publish(next, events);
    return { succeeded, responses, revision: BigInt(this.#revision) };
  }

  #holds(c: Compare): boolean {
    const held = this.#state.get(c.key);
    let order: number;
    switch (c.target) {
      case CompareTarget.COMPARE_TARGET_VALUE:
        // As etcd: a value compare on a missing key fails, whatever the relation.
        if (held === undefined) return false;
        order = Buffer.compare(held.value, c.value);
        break;
      case CompareTarget.COMPARE_TARGET_VERSION:
        order = compareNumbers(held?.version ?? 0, c.number);
        break;
      case CompareTarget.COMPARE_TARGET_CREATE_REVISION:
        order = compareNumbers(held?.createRevision ?? 0, c.number);
        break;
      case CompareTarget.COMPARE_TARGET_MOD_REVISION:
        order = compareNumbers(held?.modRevision ?? 0, c.number);
        break;
      default:
        // The API refuses it (txn-validation.ts); one that reached the log anyway fails its
        // compare on every replica alike, rather than stopping every replica that applies it.
        return false;
    }
    switch (c.result) {
      case CompareResult.COMPARE_RESULT_EQUAL:
        return order === 0;
      case CompareResult.COMPARE_RESULT_NOT_EQUAL:
        return order !== 0;
      case CompareResult.COMPARE_RESULT_GREATER:
        return order > 0;
      case CompareResult.COMPARE_RESULT_LESS:
        return order < 0;
      default:
        return false;
    }
  }
}

/** True when a transaction may write (either branch holds a put or a delete): it must go through the log. */
export function writes(txn: TxnRequest): boolean {
  const any = (ops: RequestOp[]) => ops.some((op) => op.put !== undefined || op.delete !== undefined);
  return any(txn.success) || any(txn.failure);
}

export function keyValue(k: StoredKey): KeyValue {
  return { key: k.key, value: k.value, createRevision: BigInt(k.createRevision), modRevision: BigInt(k.modRevision), version: BigInt(k.version), writeVersion: versionToWire(k.stamp), lease: BigInt(k.lease ?? 0) };
}

function u64(n: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
}

function compareNumbers(held: number, operand: bigint): number {
  const h = BigInt(held);
  return h < operand ? -1 : h > operand ? 1 : 0;
}
