/**
 * A hand-driven cluster of RaftCores for unit tests: nothing happens unless the test ticks a
 * node or delivers messages, and every node's Readys are processed as the node layer would
 * (persist to a durable copy, queue the messages, apply, advance).
 */
import { RaftCore, type RaftConfig } from '../../src/raft/raft-core.js';
import type { HardState, LogEntry, RaftMessage, RaftRestoredState, RaftSnapshot, Ready, ReadState } from '../../src/raft/types.js';

export interface Durable {
  hardState: HardState;
  snapshot: RaftSnapshot | undefined;
  entries: LogEntry[];
}

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

export function entry(index: number, term: number, text = `e${index}t${term}`): LogEntry {
  return { index, term, kind: 'command', data: bytes(text) };
}

/** A restored state holding `terms[i]` at index i + 1. */
export function restoredLog(terms: readonly number[], hardState: Partial<HardState> = {}): RaftRestoredState {
  const entries = terms.map((t, i) => entry(i + 1, t));
  return { hardState: { term: Math.max(0, ...terms), vote: undefined, commit: 0, ...hardState }, snapshot: undefined, entries };
}

export class Cluster {
  readonly ids: readonly string[];
  readonly cores = new Map<string, RaftCore>();
  readonly durable = new Map<string, Durable>();
  /** Every entry each node applied, in order (reset by a snapshot, which is recorded in `snapshots`). */
  readonly applied = new Map<string, LogEntry[]>();
  readonly snapshots = new Map<string, RaftSnapshot[]>();
  readonly readStates = new Map<string, ReadState[]>();
  readonly readys = new Map<string, Ready[]>();
  /** Messages sent and not yet delivered, in send order. */
  queue: RaftMessage[] = [];
  /** Messages that were sent, including the dropped ones, for assertions. */
  readonly sent: RaftMessage[] = [];
  /** Nodes cut off from everyone: their messages, both ways, are lost. */
  readonly isolated = new Set<string>();
  /** Sees every message before delivery: return it (or a rewrite of it) to deliver, undefined to drop. */
  intercept: (m: RaftMessage) => RaftMessage | undefined = (m) => m;
  readonly #config: Partial<RaftConfig>;
  readonly #perNode: Readonly<Record<string, Partial<RaftConfig>>>;

  constructor(
    ids: readonly string[],
    config: Partial<RaftConfig> = {},
    restored: Readonly<Record<string, RaftRestoredState>> = {},
    perNode: Readonly<Record<string, Partial<RaftConfig>>> = {},
  ) {
    this.ids = ids;
    this.#config = config;
    this.#perNode = perNode;
    for (const id of ids) {
      const r = restored[id] ?? { hardState: { term: 0, vote: undefined, commit: 0 }, snapshot: undefined, entries: [] };
      this.durable.set(id, { hardState: r.hardState, snapshot: undefined, entries: r.entries.slice() });
      this.applied.set(id, []);
      this.snapshots.set(id, []);
      this.readStates.set(id, []);
      this.readys.set(id, []);
      this.cores.set(id, this.#newCore(id, r));
    }
  }

  #newCore(id: string, restored: RaftRestoredState): RaftCore {
    // random 0: every election timeout is exactly electionTicks, so tests choose who campaigns.
    return new RaftCore({ id, voters: this.ids, random: () => 0, ...this.#config, ...this.#perNode[id] }, restored);
  }

  core(id: string): RaftCore {
    return this.cores.get(id)!;
  }

  /** Processes every node's Readys, as the node layer does. */
  flush(): void {
    for (const [id, core] of this.cores) {
      while (core.hasReady()) {
        const ready = core.ready();
        this.readys.get(id)!.push(ready);
        const d = this.durable.get(id)!;
        if (ready.snapshot !== undefined) {
          d.snapshot = ready.snapshot;
          d.entries = [];
          this.snapshots.get(id)!.push(ready.snapshot);
          this.applied.set(id, []);
        }
        if (ready.entries.length > 0) {
          const base = d.snapshot?.meta.index ?? 0;
          d.entries.length = ready.entries[0]!.index - base - 1;
          d.entries.push(...ready.entries);
        }
        if (ready.hardState !== undefined) d.hardState = ready.hardState;
        for (const m of ready.messages) {
          this.sent.push(m);
          this.queue.push(m);
        }
        this.applied.get(id)!.push(...ready.committed);
        this.readStates.get(id)!.push(...ready.readStates);
        core.advance(ready);
      }
    }
  }

  /** Delivers what is queued (and what that causes) until the network is quiet. */
  stabilize(maxMessages = 100_000): void {
    this.flush();
    let delivered = 0;
    while (this.queue.length > 0) {
      if (++delivered > maxMessages) throw new Error('the cluster did not settle');
      this.deliverOne();
      this.flush();
    }
  }

  /** Delivers the oldest queued message (subject to isolation and `intercept`). */
  deliverOne(): void {
    const sent = this.queue.shift()!;
    if (this.isolated.has(sent.from) || this.isolated.has(sent.to)) return;
    const m = this.intercept(sent);
    if (m !== undefined) this.cores.get(m.to)?.step(m);
  }

  /** Ticks `id` `times` times, processing Readys after each but delivering nothing. */
  tick(id: string, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.core(id).tick();
      this.flush();
    }
  }

  /** Ticks every node (except isolated ones, unless `includeIsolated`), then settles. */
  tickAll(times = 1, includeIsolated = false): void {
    for (let i = 0; i < times; i++) {
      for (const id of this.ids) if (includeIsolated || !this.isolated.has(id)) this.core(id).tick();
      this.stabilize();
    }
  }

  /** Makes `id` time out and campaign, then settles: it wins when it can. */
  elect(id: string): void {
    const ticks = this.#config.electionTicks ?? 10;
    this.tick(id, ticks);
    this.stabilize();
  }

  propose(id: string, text: string): { index: number; term: number } {
    const result = this.core(id).propose(bytes(text));
    if (!result.ok) throw new Error(`proposal refused: ${result.reason}`);
    this.stabilize();
    return result;
  }

  /** The application on `id` snapshots everything it applied and compacts its log. */
  compact(id: string): RaftSnapshot {
    const core = this.core(id);
    const applied = core.status().applied;
    const snapshot = core.compact(applied, bytes(`state@${applied}`));
    if (snapshot === undefined) throw new Error('nothing to compact');
    const d = this.durable.get(id)!;
    d.entries = d.entries.slice(snapshot.meta.index - (d.snapshot?.meta.index ?? 0));
    d.snapshot = snapshot;
    return snapshot;
  }

  /** Crashes `id` and starts it again from what it persisted. */
  restart(id: string, config: Partial<RaftConfig> = {}): void {
    const d = this.durable.get(id)!;
    const restored: RaftRestoredState = {
      hardState: d.hardState,
      snapshot: d.snapshot?.meta,
      entries: d.entries.slice(),
      ...(d.snapshot === undefined ? {} : { snapshotData: d.snapshot.data }),
    };
    this.queue = this.queue.filter((m) => m.to !== id);
    this.cores.set(id, new RaftCore({ id, voters: this.ids, random: () => 0, ...this.#config, ...this.#perNode[id], ...config }, restored));
  }

  leaders(): string[] {
    return this.ids.filter((id) => this.core(id).status().role === 'leader');
  }

  /** The term of each entry in a node's durable log, from its first entry after the snapshot. */
  logTerms(id: string): number[] {
    return this.durable.get(id)!.entries.map((e) => e.term);
  }

  appliedTexts(id: string): string[] {
    return this.applied
      .get(id)!
      .filter((e) => e.kind === 'command')
      .map((e) => decoder.decode(e.data));
  }
}
