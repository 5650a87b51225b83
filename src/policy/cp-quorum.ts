import { outcomeUnknown, unavailable } from '../errors.js';
import { compareVersion, formatVersion, type ApplyOutcome, type Entry, type Version } from '../storage/entry.js';
import type {
  ConsistencyPolicy,
  KeyspacePolicy,
  OperationOptions,
  PolicyContext,
  ReadResult,
  WriteResult,
} from './policy.js';
import { withDefaults } from './options.js';
import { callQuorum, majority, type QuorumOutcome, type ThriftyPlan } from './quorum-call.js';
import { pageOf } from './snapshot-page.js';
import type { SnapshotPage } from '../transport/replica-set.js';

export interface CpQuorumOptions {
  /**
   * Read phases (a get, and the first phase of a put) ask a bare majority, the local replica and
   * the fewest live peers that make one, instead of every replica; the others are asked only when
   * one of those fails or has not answered after `hedgeAfterMs`. Any majority serves ABD equally,
   * so this is as correct as asking everyone; at n = 3 it halves the peer reads. Writes still go
   * to every replica, so all of them stay current.
   * @default true
   */
  readonly thriftyReads?: boolean;
  /**
   * How long a thrifty read waits for its chosen peers before asking the rest. 10 ms is well above
   * a loaded loopback or LAN round trip (on the 2-core bench machine at 64 callers a read phase
   * takes ≈ 4 ms on average and ≈ 3 % of them hedge; at 1 caller ≈ 0.4 ms and none do), and far
   * below the failure detector's ≈ 0.5–0.8 s, so a peer that stalls before it is suspected costs a
   * read at most 10 ms.
   * @default 10
   */
  readonly hedgeAfterMs?: number;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: answer reads from the coordinator's
   * own replica without a quorum. The linearizability checker must catch this variant; if it
   * does not, the harness proves nothing.
   * @default false
   */
  readonly unsafeSingleReplicaReads?: boolean;
  /**
   * DELIBERATELY BROKEN, for testing the test harness only: replicas answer reads with the
   * store's latest write of a key, durable or not (as before replicas answered from durable state
   * only). The disk-fault simulation must catch it (two replicas vouch for a value a power loss
   * then takes away).
   * @default false
   */
  readonly unsafeReadInFlight?: boolean;
}

const EMPTY = new Uint8Array(0);

/**
 * What a CP keyspace has done since the node started, for metrics and benchmarks: how many read
 * and write phases it ran and the milliseconds they took in total (a scrape before and after a
 * stretch of load gives each phase's mean), how many thrifty reads had to hedge, and how many
 * reads found the quorum disagreeing and wrote the newest version back.
 */
export interface CpStats {
  readonly readPhases: number;
  readonly readPhaseMs: number;
  readonly writePhases: number;
  readonly writePhaseMs: number;
  readonly hedgedReads: number;
  readonly writeBacks: number;
}

/** See {@link CpQuorumOptions}. */
export const CP_DEFAULTS = { thriftyReads: true, hedgeAfterMs: 10 } as const;

/**
 * CP quorum: a linearizable register per key, after the multi-writer ABD algorithm (Attiya,
 * Bar-Noy, Dolev 1995; Lynch and Shvartsman's multi-writer variant).
 *
 * - Tags are versions (HLC, node id), totally ordered.
 * - Write: read the versions of a majority; mint a version past the largest seen; replicate to
 *   every replica and acknowledge once a majority holds it durably.
 * - Read: read a majority; when they all agree, answer (one round trip); otherwise write the
 *   largest back to a majority first, so that no later read can return something older.
 * - Reads ask a bare majority first (thrifty, see {@link CpQuorumOptions.thriftyReads}).
 * - Replicas keep an entry only when its version is larger (the store's `apply`), so replication
 *   is idempotent and order-free.
 *
 * Errors: when the failure detector already knows a majority is not alive, or a majority fails
 * before anything is written, the operation fails with UNAVAILABLE (nothing took effect). Once a
 * write has been sent, a failure to reach a majority is DEADLINE_EXCEEDED: the outcome is unknown.
 */
export function cpQuorum(options: CpQuorumOptions = {}): ConsistencyPolicy {
  return {
    name: 'cp',
    create: (context) => new CpQuorumKeyspace(context, options),
  };
}

class CpQuorumKeyspace implements KeyspacePolicy {
  readonly #ctx: PolicyContext;
  readonly #options: CpQuorumOptions;
  readonly #quorumSize: number;
  /** The peers, and for each a thrifty plan that starts with it (made once, not per read). */
  readonly #peers: readonly string[];
  readonly #plans: readonly ThriftyPlan[];
  /** Which peer the next thrifty read starts with, so reads spread over the peers. */
  #nextPlan = 0;
  #stats = { readPhases: 0, readPhaseMs: 0, writePhases: 0, writePhaseMs: 0, hedgedReads: 0, writeBacks: 0 };

  constructor(context: PolicyContext, options: CpQuorumOptions) {
    this.#ctx = context;
    this.#options = options;
    this.#quorumSize = majority(context.replicaIds.length);
    this.#peers = context.replicaIds.filter((id) => id !== context.selfId);
    const { thriftyReads, hedgeAfterMs } = withDefaults(CP_DEFAULTS, options);
    if (!Number.isFinite(hedgeAfterMs) || hedgeAfterMs < 0) {
      throw new RangeError(`hedgeAfterMs must be a finite number of milliseconds >= 0, not ${hedgeAfterMs}`);
    }
    const peersNeeded = this.#quorumSize - 1;
    this.#plans =
      thriftyReads && peersNeeded < this.#peers.length
        ? this.#peers.map((_, i) => ({
            first: [context.selfId, ...Array.from({ length: peersNeeded }, (_, j) => this.#peers[(i + j) % this.#peers.length]!)],
            hedgeAfterMs,
          }))
        : [];
  }

  put(key: Uint8Array, value: Uint8Array, options: OperationOptions): Promise<WriteResult> {
    return this.#write(key, value, false, options);
  }

  delete(key: Uint8Array, options: OperationOptions): Promise<WriteResult> {
    return this.#write(key, EMPTY, true, options);
  }

  async get(key: Uint8Array, options: OperationOptions): Promise<ReadResult> {
    const ctx = this.#ctx;
    if (this.#options.unsafeSingleReplicaReads) return toReadResult(await ctx.store.readDurable(ctx.keyspace, key));

    this.#failFastWithoutQuorum('read');
    const started = ctx.scheduler.nowMs();
    const phase1 = await this.#readQuorum(key, options.timeoutMs);
    if (phase1.kind !== 'quorum') throw this.#noQuorum('read', phase1);

    const newest = newestOf(phase1.answers.values());
    if (!allAgree(phase1.answers.values(), newest?.version)) {
      // Some replica of the quorum is behind: make the newest durable on a majority before
      // answering, or a later read could miss what this one returned.
      this.#stats.writeBacks++;
      const remainingMs = options.timeoutMs - (ctx.scheduler.nowMs() - started);
      const writeBack = await this.#replicateQuorum(newest!, remainingMs);
      if (writeBack.kind !== 'quorum') {
        throw unavailable(
          'WRITE_BACK_FAILED',
          `read of the key could not write the newest version (${formatVersion(newest!.version)}) back to a quorum: ` +
            `${describeShortfall(writeBack, this.#quorumSize, ctx.replicaIds.length)}; nothing was changed, retry`,
        );
      }
    }
    return toReadResult(newest);
  }

  stats(): CpStats {
    return { ...this.#stats };
  }

  async applyReplicated(_from: string, entries: readonly Entry[]): Promise<ApplyOutcome[]> {
    return this.#ctx.store.apply(this.#ctx.keyspace, entries);
  }

  /**
   * Answers from durable state only: an entry whose commit is still under way could be lost by a
   * crash after this replica vouched for it, and two replicas agreeing on such a value would let
   * a read return it without a write-back.
   */
  async readLocal(_from: string, keys: readonly Uint8Array[]): Promise<(Entry | undefined)[]> {
    return Promise.all(keys.map((key) => this.#readReplica(key)));
  }

  #readReplica(key: Uint8Array): Promise<Entry | undefined> {
    const { store, keyspace } = this.#ctx;
    return this.#options.unsafeReadInFlight ? Promise.resolve(store.get(keyspace, key)) : store.readDurable(keyspace, key);
  }

  readonly recoveryNeeds = 'majority';

  async snapshot(afterKey: Uint8Array | undefined, maxEntries: number, _from: string): Promise<SnapshotPage> {
    return pageOf(this.#ctx.store.entries(this.#ctx.keyspace), afterKey, maxEntries, this.#ctx.limits.maxBatchBytes);
  }

  async absorb(page: SnapshotPage): Promise<void> {
    if (page.entries.length > 0) await this.#ctx.store.apply(this.#ctx.keyspace, page.entries);
  }

  async close(): Promise<void> {}

  async #write(key: Uint8Array, value: Uint8Array, tombstone: boolean, options: OperationOptions): Promise<WriteResult> {
    const ctx = this.#ctx;
    this.#failFastWithoutQuorum('write');
    const started = ctx.scheduler.nowMs();

    // Phase 1: learn the largest version a majority holds, so the new one orders after every
    // write that completed before this one began.
    const phase1 = await this.#readQuorum(key, options.timeoutMs);
    if (phase1.kind !== 'quorum') throw this.#noQuorum('write', phase1);
    const newest = newestOf(phase1.answers.values());
    const hlc = newest === undefined ? ctx.clock.now() : ctx.clock.update(newest.version.hlc);
    const entry: Entry = { key, value, version: { hlc, nodeId: ctx.selfId }, tombstone };

    // Phase 2: from here on the write may take effect on some replica, so a failure can no
    // longer be reported as "nothing happened".
    const remainingMs = options.timeoutMs - (ctx.scheduler.nowMs() - started);
    const phase2 = await this.#replicateQuorum(entry, remainingMs);
    if (phase2.kind !== 'quorum') {
      throw outcomeUnknown(
        'WRITE_OUTCOME_UNKNOWN',
        `the outcome of the write is unknown: it was sent, but ${describeShortfall(phase2, this.#quorumSize, ctx.replicaIds.length)}; ` +
          'it may or may not have taken effect, so read the key before retrying',
        { version: formatVersion(entry.version) },
      );
    }
    return { version: entry.version, sessionToken: EMPTY };
  }

  async #readQuorum(key: Uint8Array, timeoutMs: number): Promise<QuorumOutcome<Entry | undefined>> {
    const ctx = this.#ctx;
    const plan = this.#thriftyPlan();
    const started = ctx.scheduler.nowMs();
    const outcome = await callQuorum(
      ctx.replicaIds,
      this.#quorumSize,
      timeoutMs,
      ctx.scheduler,
      async (id, callTimeoutMs) => {
        if (id === ctx.selfId) return this.#readReplica(key);
        const [entry] = await ctx.replicas.read(id, ctx.keyspace, [key], callTimeoutMs);
        return entry;
      },
      plan,
    );
    this.#stats.readPhases++;
    this.#stats.readPhaseMs += ctx.scheduler.nowMs() - started;
    if (plan !== undefined && outcome.asked > plan.first.length) this.#stats.hedgedReads++;
    return outcome;
  }

  /**
   * The next plan, in rotation, whose peers the failure detector believes alive; undefined (ask
   * everyone) when thrifty reads are off or no such plan exists.
   */
  #thriftyPlan(): ThriftyPlan | undefined {
    const plans = this.#plans;
    for (let tried = 0; tried < plans.length; tried++) {
      const plan = plans[this.#nextPlan]!;
      this.#nextPlan = (this.#nextPlan + 1) % plans.length;
      if (plan.first.every((id) => id === this.#ctx.selfId || this.#ctx.liveness.isAlive(id))) return plan;
    }
    return undefined;
  }

  async #replicateQuorum(entry: Entry, timeoutMs: number): Promise<QuorumOutcome<ApplyOutcome>> {
    const ctx = this.#ctx;
    const batch = [entry];
    const started = ctx.scheduler.nowMs();
    const outcome = await callQuorum(ctx.replicaIds, this.#quorumSize, Math.max(0, timeoutMs), ctx.scheduler, async (id, callTimeoutMs) => {
      const outcomes =
        id === ctx.selfId
          ? await ctx.store.apply(ctx.keyspace, batch)
          : await ctx.replicas.replicate(id, ctx.keyspace, batch, callTimeoutMs);
      return outcomes[0]!;
    });
    this.#stats.writePhases++;
    this.#stats.writePhaseMs += ctx.scheduler.nowMs() - started;
    return outcome;
  }

  /** Refuses at once, before sending anything, when the failure detector sees no majority. */
  #failFastWithoutQuorum(what: 'read' | 'write'): void {
    const ctx = this.#ctx;
    const alive = ctx.replicaIds.filter((id) => id === ctx.selfId || ctx.liveness.isAlive(id)).length;
    if (alive < this.#quorumSize) {
      throw unavailable(
        'NO_QUORUM',
        `cannot ${what}: ${alive} of ${ctx.replicaIds.length} replicas are alive and a quorum needs ${this.#quorumSize}; ` +
          'nothing was changed, retry when more replicas are up',
        { alive: String(alive), replicas: String(ctx.replicaIds.length), quorum: String(this.#quorumSize) },
      );
    }
  }

  #noQuorum(what: 'read' | 'write', outcome: Exclude<QuorumOutcome<unknown>, { kind: 'quorum' }>) {
    const ctx = this.#ctx;
    return unavailable(
      'NO_QUORUM',
      `cannot ${what}: ${describeShortfall(outcome, this.#quorumSize, ctx.replicaIds.length)}; nothing was changed, retry when more replicas are up`,
      {
        answered: String(outcome.answers.size),
        replicas: String(ctx.replicaIds.length),
        quorum: String(this.#quorumSize),
      },
    );
  }
}

function describeShortfall(outcome: QuorumOutcome<unknown>, quorum: number, replicas: number): string {
  const answered = outcome.answers.size;
  const why = outcome.kind === 'timeout' ? 'before the deadline' : 'before the others failed';
  const failures =
    outcome.kind === 'quorum' || outcome.failures.size === 0
      ? ''
      : ` (${[...outcome.failures.values()].map((e) => (e instanceof Error ? e.message : String(e))).join('; ')})`;
  return `only ${answered} of ${replicas} replicas answered ${why}${failures} and a quorum needs ${quorum}`;
}

function newestOf(entries: Iterable<Entry | undefined>): Entry | undefined {
  let newest: Entry | undefined;
  for (const entry of entries) {
    if (entry !== undefined && (newest === undefined || compareVersion(entry.version, newest.version) > 0)) newest = entry;
  }
  return newest;
}

function allAgree(entries: Iterable<Entry | undefined>, version: Version | undefined): boolean {
  for (const entry of entries) {
    if (entry === undefined ? version !== undefined : version === undefined || compareVersion(entry.version, version) !== 0) {
      return false;
    }
  }
  return true;
}

function toReadResult(entry: Entry | undefined): ReadResult {
  if (entry === undefined) return { value: undefined, version: undefined, sessionToken: EMPTY };
  return { value: entry.tombstone ? undefined : entry.value, version: entry.version, sessionToken: EMPTY };
}
