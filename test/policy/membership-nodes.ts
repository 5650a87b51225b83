/**
 * Keyspace policies built directly on a PolicyContext, one per node, over the in-memory network on
 * virtual time: the smallest world in which a policy's membershipChanged can be exercised without
 * the node layer (which decides when to call it). What ap-membership.test.ts and
 * causal-membership.test.ts share.
 */
import { HybridLogicalClock } from '../../src/clock/index.js';
import { failedPrecondition, ReplikitError } from '../../src/errors.js';
import type { Logger } from '../../src/logging/logger.js';
import { NODE_DEFAULTS } from '../../src/node/config.js';
import type { ConsistencyPolicy, KeyspacePolicy, OperationOptions } from '../../src/policy/policy.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import { CALM_NETWORK, InMemoryNetwork } from '../../src/transport/in-memory-network.js';
import type { ReplicaHandler } from '../../src/transport/replica-set.js';
import { sessionTokenCodec } from '../../src/transport/session-token.js';

export const KS = 'kv';
const EPOCH_MS = 1_700_000_000_000;
const decoder = new TextDecoder();

/** A logger that keeps every line, for asserting what was logged. */
export function recordingLogger(): Logger & { lines: { level: string; message: string }[] } {
  const lines: { level: string; message: string }[] = [];
  const log = (level: string) => (message: string) => void lines.push({ level, message });
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

/** The replica half of a node that is nothing but one keyspace's policy. */
function handlerOf(policy: KeyspacePolicy): ReplicaHandler {
  const notHere = async (): Promise<never> => {
    throw failedPrecondition('NOT_SUPPORTED', 'these test nodes serve one AP or causal keyspace only');
  };
  return {
    replicate: (from, _keyspace, entries) => policy.applyReplicated(from, entries),
    read: (from, _keyspace, keys) => policy.readLocal(from, keys),
    syncDigests: async (from, _keyspace, hashes) => {
      if (policy.syncDigests === undefined) return notHere();
      return policy.syncDigests(from, hashes, NODE_DEFAULTS.maxBatchEntries);
    },
    probe: async () => 'member',
    snapshot: (from, _keyspace, afterKey, maxEntries) => policy.snapshot(afterKey, maxEntries, from),
    raft: notHere,
    forward: notHere,
    forwardCompact: notHere,
    forwardLease: notHere,
  };
}

/** Nodes of one keyspace, each a policy over its own store, on one network and one virtual clock. */
export class PolicyNodes<P extends KeyspacePolicy> {
  readonly scheduler = new VirtualScheduler();
  readonly network: InMemoryNetwork;
  readonly stores = new Map<string, MemoryStore>();
  readonly policies = new Map<string, P>();
  readonly clocks = new Map<string, HybridLogicalClock>();
  readonly logger = recordingLogger();

  constructor(
    readonly policy: ConsistencyPolicy,
    seed = 1,
  ) {
    this.network = new InMemoryNetwork(this.scheduler, new SeededRandom(seed), CALM_NETWORK);
  }

  /**
   * Starts (or restarts, on the store it had) node `id` with `replicaIds` as its context's replicas
   * (the membership it starts with), and attaches it to the network.
   */
  start(id: string, replicaIds: readonly string[]): P {
    let store = this.stores.get(id);
    if (store === undefined) this.stores.set(id, (store = new MemoryStore()));
    const clock = new HybridLogicalClock(() => EPOCH_MS + this.scheduler.nowMs());
    const policy = this.policy.create({
      keyspace: KS,
      selfId: id,
      replicaIds,
      store,
      replicas: this.network.replicaSet(id, replicaIds.filter((p) => p !== id)),
      clock,
      scheduler: this.scheduler,
      liveness: { isAlive: () => true },
      logger: this.logger,
      sessions: sessionTokenCodec('membership-test'),
      limits: { maxBatchEntries: NODE_DEFAULTS.maxBatchEntries, maxBatchBytes: NODE_DEFAULTS.maxBatchBytes },
      valueLimits: { maxKeyBytes: NODE_DEFAULTS.maxKeyBytes, maxValueBytes: NODE_DEFAULTS.maxValueBytes },
      random: () => 0.5,
      onFatal: (error) => {
        throw error;
      },
    }) as P;
    this.policies.set(id, policy);
    this.clocks.set(id, clock);
    this.network.attach(id, { handler: handlerOf(policy), clock });
    return policy;
  }

  /** Stops node `id` for good (its process is gone): its peers' calls to it are refused. */
  async crash(id: string): Promise<void> {
    this.network.detach(id);
    await this.policies.get(id)!.close({ abrupt: true });
    this.policies.delete(id);
  }

  async closeAll(): Promise<void> {
    for (const id of [...this.policies.keys()]) await this.crash(id);
  }

  node(id: string): P {
    const policy = this.policies.get(id);
    if (policy === undefined) throw new Error(`node ${id} is not running`);
    return policy;
  }

  /** Tells every running node (or those named) the same membership, as the node layer would. */
  members(voters: readonly string[], learners: readonly string[] = [], ids: readonly string[] = [...this.policies.keys()]): void {
    for (const id of ids) this.node(id).membershipChanged!({ voters, learners });
  }

  put(id: string, key: string, value: string, options: Partial<OperationOptions> = {}) {
    return this.node(id).put(Buffer.from(key), Buffer.from(value), { timeoutMs: 1_000, ...options });
  }

  /** Runs virtual time until `operation` settles (or `limitMs` passes), then returns how it ended. */
  async settle<T>(operation: Promise<T>, limitMs = 10_000): Promise<T> {
    const settled = await this.scheduler.runUntilSettled(operation, limitMs);
    if (!settled) throw new Error(`the operation did not settle within ${limitMs} ms of virtual time`);
    return operation;
  }

  /** Node `id`'s store as key → value (null for a tombstone). */
  values(id: string, keyspace = KS): Map<string, string | null> {
    return new Map(this.stores.get(id)!.entries(keyspace).map((e) => [decoder.decode(e.key), e.tombstone ? null : decoder.decode(e.value)]));
  }
}

/** The ReplikitError `operation` fails with (it must fail with one). */
export async function failure(operation: Promise<unknown>): Promise<ReplikitError> {
  try {
    await operation;
  } catch (error: unknown) {
    if (error instanceof ReplikitError) return error;
    throw error;
  }
  throw new Error('expected a failure');
}
