/**
 * Real nodes (NodeCore) of an AP or causal keyspace on real stores, over the in-memory network on
 * virtual time, and readers of their Range and Watch: what test/policy/ap-range-watch.test.ts and
 * causal-range-watch.test.ts share.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect } from 'vitest';
import { HybridLogicalClock } from '../../src/clock/index.js';
import { ReplikitError } from '../../src/errors.js';
import type { Logger } from '../../src/logging/logger.js';
import { NODE_DEFAULTS } from '../../src/node/config.js';
import { nextIncarnation } from '../../src/node/incarnation.js';
import { IDENTITY_META, identityRecord, NodeCore, settle } from '../../src/node/node-core.js';
import type { RangeArgs } from '../../src/node/range-watch-args.js';
import type { ConsistencyPolicy, KeyspacePolicy } from '../../src/policy/policy.js';
import type { WatchMessage, Watcher } from '../../src/policy/watch/watch-hub.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { VirtualScheduler } from '../../src/sim/virtual-scheduler.js';
import { LmdbStore } from '../../src/storage/lmdb-store.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import type { Store } from '../../src/storage/store.js';
import { CALM_NETWORK, InMemoryNetwork } from '../../src/transport/in-memory-network.js';

export const KS = 'kv';
export const EPOCH_MS = 1_700_000_000_000;
export const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };
/** Long enough that no progress notification comes between the messages a test reads. */
export const QUIET = 3_600_000;

export const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Real nodes (NodeCore) on real stores, over the in-memory network on virtual time. */
export class Cluster {
  readonly scheduler = new VirtualScheduler();
  readonly network = new InMemoryNetwork(this.scheduler, new SeededRandom(1), CALM_NETWORK);
  readonly stores = new Map<string, Store>();
  readonly nodes = new Map<string, NodeCore>();

  constructor(
    readonly ids: readonly string[],
    readonly policy: () => ConsistencyPolicy,
    readonly newStore: () => Store = () => new MemoryStore(),
  ) {
    cleanups.push(async () => {
      for (const id of [...this.nodes.keys()]) await this.stop(id);
      for (const s of this.stores.values()) await s.close();
    });
  }

  static async start(ids: readonly string[], policy: () => ConsistencyPolicy, newStore?: () => Store): Promise<Cluster> {
    const c = new Cluster(ids, policy, newStore);
    for (const id of ids) await c.start(id);
    return c;
  }

  /** Starts (or restarts, on the same store) node `id`, as ReplicaNode does: the incarnation first. */
  async start(id: string): Promise<NodeCore> {
    let store = this.stores.get(id);
    if (store === undefined) {
      this.stores.set(id, (store = this.newStore()));
      await store.putMeta(IDENTITY_META, identityRecord(id, NODE_DEFAULTS.clusterId));
    }
    const wallClock = () => EPOCH_MS + this.scheduler.nowMs();
    await nextIncarnation(store, wallClock);
    const peers = this.ids.filter((p) => p !== id).map((p) => ({ id: p, address: `sim:${p}` }));
    const clock = new HybridLogicalClock(wallClock);
    const node = new NodeCore(settle({ nodeId: id, peers, keyspaces: { [KS]: this.policy() } }), {
      replicas: this.network.replicaSet(id, peers.map((p) => p.id)),
      scheduler: this.scheduler,
      wallClock,
      clock,
      store,
      logger: silent,
      liveness: { isAlive: () => true },
    });
    this.network.attach(id, { handler: node, clock });
    await node.start();
    this.nodes.set(id, node);
    return node;
  }

  async stop(id: string): Promise<void> {
    const node = this.nodes.get(id)!;
    this.nodes.delete(id);
    this.network.detach(id);
    await node.close();
  }

  node(id: string): NodeCore {
    return this.nodes.get(id)!;
  }

  policyOf<P extends KeyspacePolicy>(id: string): P {
    return this.node(id).policyOf(KS) as P;
  }

  put(id: string, key: string, value: string, sessionToken?: Uint8Array) {
    return this.node(id).put(KS, Buffer.from(key), Buffer.from(value), sessionToken === undefined ? {} : { sessionToken });
  }
}

export const IDLE = Symbol('idle');

/** Reads a watcher without blocking on changes that have not happened. */
export class Reader {
  #pending: Promise<IteratorResult<WatchMessage>> | undefined;
  constructor(readonly watcher: Watcher) {}

  /** Every message available now (none once the watcher waits for changes). */
  async available(): Promise<WatchMessage[]> {
    const out: WatchMessage[] = [];
    for (;;) {
      this.#pending ??= this.watcher.next();
      const r = await Promise.race([this.#pending, new Promise<typeof IDLE>((resolve) => setImmediate(() => resolve(IDLE)))]);
      if (r === IDLE) return out;
      this.#pending = undefined;
      if (r.done) return out;
      out.push(r.value);
    }
  }
}

export interface Seen {
  position: number;
  type: string;
  key: string;
  value: string;
  node: string;
  prev?: string;
}

export function eventsOf(messages: WatchMessage[]): Seen[] {
  return messages.flatMap((m) =>
    m.kind !== 'events'
      ? []
      : m.events.map((e) => ({
          position: e.revision,
          type: e.event.type,
          key: e.event.kv.key.toString(),
          value: e.event.kv.value.toString(),
          node: e.event.kv.stamp.nodeId,
          ...(e.event.prev === undefined ? {} : { prev: e.event.prev.value.toString() }),
        })),
  );
}

export const brief = (seen: Seen[]) => seen.map((e) => `${e.type} ${e.key}=${e.value}`);

export async function watchPrefix(node: NodeCore, prefix: string, startRevision = 0, prevKv = false): Promise<Reader> {
  return new Reader(await node.watch(KS, { key: Buffer.from(prefix), prefix: true, startRevision, prevKv, progressIntervalMs: QUIET }));
}

export async function failure(promise: Promise<unknown>): Promise<ReplikitError> {
  try {
    await promise;
  } catch (error: unknown) {
    if (error instanceof ReplikitError) return error;
    throw error;
  }
  throw new Error('expected a failure');
}

export const keys = (r: { kvs: readonly { key: Buffer }[] }) => r.kvs.map((kv) => kv.key.toString());

/** Every page of a range, following the continuation. */
export async function allPages(node: NodeCore, args: RangeArgs): Promise<string[][]> {
  const pages: string[][] = [];
  let continuation: Uint8Array | undefined;
  for (;;) {
    const r = await node.range(KS, { ...args, ...(continuation === undefined ? {} : { continuation }) });
    pages.push(keys(r));
    if (!r.more) return pages;
    expect(r.continuation).toBeDefined();
    continuation = r.continuation;
  }
}

export const lmdbStore = () => {
  const dir = mkdtempSync(join(tmpdir(), 'replikit-range-watch-'));
  cleanups.unshift(() => rmSync(dir, { recursive: true, force: true }));
  return LmdbStore.open(dir);
};

