/**
 * A seeded, deterministic simulation of a Raft cluster built from {@link RaftCore}s, for finding
 * safety bugs: N cores, a network that drops, duplicates, reorders and delays messages and
 * partitions the nodes, crashes that lose whatever a node had not persisted, clients writing and
 * reading a tiny key-value state machine, and the Raft safety properties (Figure 3 of the paper)
 * checked after every step. Everything random comes from one seed, so a failing seed replays.
 *
 * Persistence is modelled the way the node layer does it: processing a Ready copies its hard
 * state, entries and snapshot into the node's durable store, then sends, then applies. A crash
 * may strike before the store was written, after it but before sending, or after sending but
 * before applying; the node restarts later as `new RaftCore(config, durable)`.
 *
 * One step: faults start or end, nodes whose tick is due tick, messages whose time has come are
 * delivered, clients act, then every node's Ready is processed and checked.
 */
import { SeededRandom } from '../sim/seeded-random.js';
import { HistoryRecorder, type OperationHandle } from '../testing/history.js';
import { checkLinearizability, type Verdict } from '../testing/linearizability.js';
import type { MembershipChange } from './membership.js';
import { RaftCore, type RaftConfig } from './raft-core.js';
import type { HardState, LogEntry, RaftMessage, RaftNodeId, RaftRestoredState, RaftRole, RaftSnapshot, Ready } from './types.js';

export type FaultKind = 'drop' | 'duplicate' | 'reorder' | 'delay' | 'partition' | 'crash';

export interface FaultRates {
  /** Chance a message is lost. */
  readonly drop: number;
  /** Chance a message is delivered twice. */
  readonly duplicate: number;
  /** Chance a message's latency is drawn from a range wide enough to overtake or be overtaken. */
  readonly reorder: number;
  /** Chance a message is held back for several election timeouts. */
  readonly delay: number;
  /** Chance per step that a partition starts while none is in place. */
  readonly partition: number;
  /** Chance per step that a node crashes (while fewer than half are down). */
  readonly crash: number;
}

export const NO_FAULTS: FaultRates = { drop: 0, duplicate: 0, reorder: 0, delay: 0, partition: 0, crash: 0 };

/** Every fault often enough that each lands many times in a few thousand steps. */
export const ALL_FAULTS: FaultRates = { drop: 0.03, duplicate: 0.03, reorder: 0.1, delay: 0.01, partition: 0.006, crash: 0.004 };

/**
 * Deliberately broken variants, to show the checks catch real bugs:
 * - `commitWithoutMajority`: the leader commits on its own copy ({@link RaftConfig.unsafeCommitWithoutMajority}).
 * - `forgetVoteOnRestart`: a crash loses the persisted vote, so a node may vote twice in a term.
 * - `readIndexWithoutQuorum`: reads skip the leadership check ({@link RaftConfig.unsafeReadIndexWithoutQuorum}).
 * - `overlappingChanges`: a leader proposes membership changes while one is uncommitted
 *   ({@link RaftConfig.unsafeOverlappingChanges}), and the nemesis asks for two at once.
 */
export type BrokenVariant = 'commitWithoutMajority' | 'forgetVoteOnRestart' | 'readIndexWithoutQuorum' | 'overlappingChanges';

export interface RaftSimulationOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly steps: number;
  readonly faults: FaultRates;
  readonly broken?: BrokenVariant;
  /** Check the clients' history for linearizability at the end (default true). */
  readonly checkLinearizability?: boolean;
  /**
   * Membership changes under the faults: now and then the leader is asked to add a new, empty
   * node as a learner, promote a learner, or remove a member (the leader itself included), keeping
   * 3 to 5 voters. A removed node runs on for a while (a decommissioning that lags), then is
   * retired for good. New nodes take fresh ids, as a replaced machine does. @default false
   */
  readonly membershipChanges?: boolean;
}

export type Invariant =
  | 'election-safety'
  | 'log-matching'
  | 'leader-completeness'
  | 'state-machine-safety'
  | 'commit-monotonic'
  | 'stale-read'
  | 'linearizability'
  | 'core-error';

export interface RaftViolation {
  readonly step: number;
  readonly invariant: Invariant;
  readonly detail: string;
}

export interface RaftSimulationStats {
  leadersElected: number;
  /** How many times each fault actually struck (a reorder: a message delivered before one sent earlier on its link). */
  readonly faults: Record<FaultKind, number>;
  /** Log entries known committed (the highest commit index any node reached). */
  entriesCommitted: number;
  writesAcknowledged: number;
  readsServed: number;
  snapshotsInstalled: number;
  compactions: number;
  transfers: number;
  /** The history's verdict, when checked (and no invariant failed first). */
  history: Verdict | undefined;
  /** Membership changes: proposed and accepted by a leader, committed (config entries), and refused by reason. */
  readonly membership: {
    proposed: number;
    committed: number;
    learnersAdded: number;
    promoted: number;
    removed: number;
    leadersRemoved: number;
    refusedBehind: number;
    refusedInProgress: number;
    nodesRetired: number;
  };
}

export interface RaftSimulationResult {
  readonly stats: RaftSimulationStats;
  /** The first violation, or undefined. */
  readonly violation: RaftViolation | undefined;
  /** Options as run, with the configuration the seed chose, to report with a violation. */
  readonly setup: { readonly preVote: boolean; readonly checkQuorum: boolean };
}

/**
 * Steps per tick. A round trip takes about a tick (a heartbeat interval): a slow network for
 * Raft's timeouts, so that campaigns overlap and split votes happen often.
 */
const STEPS_PER_TICK = 10;
const ELECTION_TICKS = 6;
/** A normal message takes 1 to this many steps. */
const LATENCY_STEPS = 8;
/** A reordered one up to this many. */
const REORDER_LATENCY_STEPS = 24;
/** A delayed one between these. */
const DELAY_STEPS: readonly [number, number] = [20, 250];
const PARTITION_STEPS: readonly [number, number] = [40, 400];
/** About an election timeout: a client stuck on a node cut off from the others gives up and tries another. */
const CLIENT_OP_TIMEOUT_STEPS = 120;
/**
 * Chance that a node crashes just after it persisted and sent a vote: the window in which a
 * forgotten vote turns into a second vote in the same term is a few steps wide.
 */
const CRASH_AFTER_VOTE = 0.3;
const KEYS = ['x', 'y', 'z'] as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs one simulation; the same options give the same result. */
export function runRaftSimulation(options: RaftSimulationOptions): RaftSimulationResult {
  return new Simulation(options).run();
}

// -------------------------------------------------------------------------------------------------
// The application: a register per key, written by `key=value` commands.

interface Register {
  readonly value: number;
  /** The log index of the write, to tell how recent a read's state was. */
  readonly index: number;
}

class KvMachine {
  applied = 0;
  readonly registers = new Map<string, Register>();

  apply(entry: LogEntry): void {
    this.applied = entry.index;
    if (entry.kind !== 'command') return;
    const [key, value] = decoder.decode(entry.data).split('=') as [string, string];
    this.registers.set(key, { value: Number(value), index: entry.index });
  }

  encode(): Uint8Array {
    return encoder.encode(JSON.stringify({ applied: this.applied, registers: [...this.registers] }));
  }

  static decode(data: Uint8Array): KvMachine {
    const parsed = JSON.parse(decoder.decode(data)) as { applied: number; registers: [string, Register][] };
    const machine = new KvMachine();
    machine.applied = parsed.applied;
    for (const [k, r] of parsed.registers) machine.registers.set(k, r);
    return machine;
  }
}

function command(key: string, value: number): Uint8Array {
  return encoder.encode(`${key}=${value}`);
}

/** What makes an entry itself: two entries with the same identity are the same entry. */
function identity(e: LogEntry): string {
  return `${e.term}/${e.kind}/${decoder.decode(e.data)}`;
}

// -------------------------------------------------------------------------------------------------
// Nodes and their durable stores

interface DurableStore {
  hardState: HardState;
  snapshot: RaftSnapshot | undefined;
  /** The entries after the snapshot, contiguous. */
  entries: LogEntry[];
}

function durableSnapshotIndex(d: DurableStore): number {
  return d.snapshot?.meta.index ?? 0;
}

function durableEntry(d: DurableStore, index: number): LogEntry | undefined {
  return d.entries[index - durableSnapshotIndex(d) - 1];
}

function durableTerm(d: DurableStore, index: number): number | undefined {
  if (index === durableSnapshotIndex(d)) return d.snapshot?.meta.term ?? 0;
  return durableEntry(d, index)?.term;
}

type CrashPoint = 'beforePersist' | 'afterPersist' | 'afterSend';

interface SimNode {
  readonly id: RaftNodeId;
  readonly durable: DurableStore;
  /** Undefined while down. */
  core: RaftCore | undefined;
  machine: KvMachine;
  role: RaftRole;
  term: number;
  /** The commit index this incarnation last reported; it must never go down. */
  commit: number;
  /** Committed entries of this node already recorded in the global committed log. */
  recordedCommitThrough: number;
  restartAt: number;
  crashAt: CrashPoint | undefined;
  /** The step (mod STEPS_PER_TICK) at which it ticks: clocks are not in phase. */
  readonly tickPhase: number;
  readonly compactEvery: number;
  incarnation: number;
}

// -------------------------------------------------------------------------------------------------
// Clients

interface PendingWrite {
  readonly kind: 'write';
  readonly client: number;
  readonly node: RaftNodeId;
  readonly key: string;
  readonly value: number;
  readonly index: number;
  readonly term: number;
  readonly startedAt: number;
  readonly handle: OperationHandle;
}

interface PendingRead {
  readonly kind: 'read';
  readonly client: number;
  readonly node: RaftNodeId;
  readonly key: string;
  readonly requestId: number;
  /** The newest write to the key acknowledged before this read began: it must see that one or later. */
  readonly floor: number;
  readIndex: number | undefined;
  readonly startedAt: number;
  readonly handle: OperationHandle;
}

type PendingOp = PendingWrite | PendingRead;

interface Client {
  readonly id: number;
  leaderGuess: RaftNodeId | undefined;
  op: PendingOp | undefined;
}

interface InFlight {
  readonly m: RaftMessage;
  readonly deliverAt: number;
  /** Send order, to count reorderings. */
  readonly seq: number;
}

class ViolationFound extends Error {
  constructor(readonly violation: RaftViolation) {
    super(`${violation.invariant} at step ${violation.step}: ${violation.detail}`);
  }
}

class Simulation {
  readonly #o: RaftSimulationOptions;
  readonly #random: SeededRandom;
  /** Every node that ever existed, the retired included. */
  readonly #ids: RaftNodeId[];
  readonly #nodes = new Map<RaftNodeId, SimNode>();
  readonly #preVote: boolean;
  readonly #checkQuorum: boolean;
  readonly stats: RaftSimulationStats = {
    leadersElected: 0,
    faults: { drop: 0, duplicate: 0, reorder: 0, delay: 0, partition: 0, crash: 0 },
    entriesCommitted: 0,
    writesAcknowledged: 0,
    readsServed: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    transfers: 0,
    history: undefined,
    membership: { proposed: 0, committed: 0, learnersAdded: 0, promoted: 0, removed: 0, leadersRemoved: 0, refusedBehind: 0, refusedInProgress: 0, nodesRetired: 0 },
  };
  #now = 0;
  /** The first voters; nodes added later start knowing no membership and learn it from a leader. */
  readonly #initialVoters: readonly RaftNodeId[];
  /** Nodes removed and since stopped for good. */
  readonly #retired = new Set<RaftNodeId>();
  /** When each removed node is retired. */
  readonly #retireAt = new Map<RaftNodeId, number>();

  // Network
  #inFlight: InFlight[] = [];
  #sendSeq = 0;
  readonly #lastDeliveredSeq = new Map<string, number>();
  /** The side each node is on while a partition lasts. */
  #sides: Map<RaftNodeId, number> | undefined;
  #partitionEndsAt = 0;

  // Clients
  readonly #clients: Client[] = [];
  #historyClock = 0;
  readonly #history = new HistoryRecorder(() => ++this.#historyClock);
  #nextWriteValue = 1;
  #nextRequestId = 1;
  readonly #ackedWriteIndex = new Map<string, number>();

  // What the checks remember
  readonly #leaderOfTerm = new Map<number, RaftNodeId>();
  /** Log matching: (index, term) → the entry's identity and the term of the entry before it. */
  readonly #entryAt = new Map<string, { identity: string; prevTerm: number }>();
  /** Committed entries by index, with the lowest term in which a node reported them committed. */
  readonly #committed = new Map<number, { identity: string; term: number }>();
  readonly #appliedAt = new Map<number, string>();

  constructor(options: RaftSimulationOptions) {
    this.#o = options;
    this.#random = new SeededRandom(options.seed);
    this.#ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
    this.#initialVoters = this.#ids.slice();
    // Most runs use the defaults; some turn pre-vote or check-quorum off, so that those paths
    // (more term churn, no leases) are exercised under the same faults.
    this.#preVote = this.#random.chance(0.75);
    this.#checkQuorum = this.#random.chance(0.75);
    for (const id of this.#ids) this.#newNode(id);
    for (let i = 0; i < options.nodes + 1; i++) this.#clients.push({ id: i, leaderGuess: undefined, op: undefined });
  }

  /** A node with an empty disk, started at once. */
  #newNode(id: RaftNodeId): SimNode {
    const durable: DurableStore = { hardState: { term: 0, vote: undefined, commit: 0 }, snapshot: undefined, entries: [] };
    const node: SimNode = {
      id,
      durable,
      core: undefined,
      machine: new KvMachine(),
      role: 'follower',
      term: 0,
      commit: 0,
      recordedCommitThrough: 0,
      restartAt: 0,
      crashAt: undefined,
      tickPhase: this.#random.int(0, STEPS_PER_TICK - 1),
      compactEvery: this.#random.int(10, 40),
      incarnation: 0,
    };
    this.#nodes.set(id, node);
    this.#start(node);
    return node;
  }

  run(): RaftSimulationResult {
    let violation: RaftViolation | undefined;
    try {
      for (this.#now = 1; this.#now <= this.#o.steps; this.#now++) this.#step();
      if (this.#o.checkLinearizability ?? true) this.#checkHistory();
    } catch (error: unknown) {
      if (error instanceof ViolationFound) violation = error.violation;
      else violation = { step: this.#now, invariant: 'core-error', detail: error instanceof Error ? (error.stack ?? error.message) : String(error) };
    }
    return { stats: this.stats, violation, setup: { preVote: this.#preVote, checkQuorum: this.#checkQuorum } };
  }

  #violation(invariant: Invariant, detail: string): never {
    throw new ViolationFound({ step: this.#now, invariant, detail });
  }

  #step(): void {
    this.#faults();
    for (const node of this.#nodes.values()) {
      if (node.core === undefined || (this.#now + node.tickPhase) % STEPS_PER_TICK !== 0) continue;
      // Clocks drift: now and then a tick is skipped or doubled.
      const roll = this.#random.next();
      if (roll < 0.05) continue;
      node.core.tick();
      if (roll > 0.95) node.core.tick();
    }
    this.#deliver();
    this.#clientsAct();
    for (const node of this.#nodes.values()) this.#processReadys(node);
    this.#expireClientOps();
  }

  // ---------------------------------------------------------------------------------------------
  // Faults

  #faults(): void {
    const f = this.#o.faults;
    if (this.#sides !== undefined && this.#now >= this.#partitionEndsAt) this.#sides = undefined;
    if (this.#sides === undefined && this.#random.chance(f.partition)) this.#partition();

    for (const node of this.#nodes.values()) {
      if (node.core === undefined && this.#now >= node.restartAt && !this.#retired.has(node.id)) this.#start(node);
    }
    if (this.#o.membershipChanges === true) this.#changeMembership();
    const up = [...this.#nodes.values()].filter((n) => n.core !== undefined && n.crashAt === undefined);
    if (this.#canCrash() && this.#random.chance(f.crash)) {
      // Leaders crash more often than their share: that is where the interesting recoveries are.
      const leader = up.find((n) => n.role === 'leader');
      const victim = leader !== undefined && this.#random.chance(0.4) ? leader : this.#random.pick(up);
      victim.crashAt = this.#random.pick(['beforePersist', 'afterPersist', 'afterSend'] as const);
    }

    // Now and then the leader is asked to hand over, under whatever else is going on.
    if (this.#random.chance(0.002)) {
      const leader = [...this.#nodes.values()].find((n) => n.core !== undefined && n.role === 'leader');
      if (leader !== undefined) {
        const to = this.#random.pick(this.#ids.filter((id) => id !== leader.id));
        if (leader.core!.transferLeadership(to).ok) this.stats.transfers++;
      }
    }
  }

  /**
   * Fewer than half the voters are down or about to crash, so that progress stays possible: of
   * the voters in every membership a running node holds, since during a change either may rule.
   */
  #canCrash(): boolean {
    const memberships = [...this.#nodes.values()]
      .filter((n) => n.core !== undefined && n.core.membership.voters.length > 0)
      .map((n) => n.core!.membership.voters);
    if (memberships.length === 0) return false;
    return memberships.every((voters) => {
      let down = 0;
      for (const id of voters) {
        const n = this.#nodes.get(id);
        if (n === undefined || n.core === undefined || n.crashAt !== undefined) down++;
      }
      return down < Math.floor((voters.length - 1) / 2);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Membership changes

  #changeMembership(): void {
    for (const [id, at] of this.#retireAt) {
      if (this.#now < at) continue;
      // Decommissioned for good: stopped, never restarted, its disk gone with it.
      const node = this.#nodes.get(id)!;
      if (node.core !== undefined) this.#crash(node);
      this.#retired.add(id);
      this.#retireAt.delete(id);
      this.stats.membership.nodesRetired++;
    }
    if (!this.#random.chance(0.012)) return;
    const leader = [...this.#nodes.values()].find((n) => n.core !== undefined && n.role === 'leader' && n.crashAt === undefined);
    if (leader === undefined) return;
    const times = this.#o.broken === 'overlappingChanges' ? 2 : 1;
    for (let i = 0; i < times; i++) this.#proposeChange(leader);
  }

  #proposeChange(leader: SimNode): void {
    const core = leader.core!;
    const { voters, learners } = core.membership;
    const options: (() => MembershipChange)[] = [];
    if (voters.length + learners.length < 6) options.push(() => ({ type: 'addLearner', id: `n${this.#ids.length + 1}` }));
    if (learners.length > 0 && voters.length < 5) options.push(() => ({ type: 'promote', id: this.#random.pick(learners) }));
    if (voters.length > 3) options.push(() => ({ type: 'remove', id: this.#random.pick(voters) }));
    if (learners.length > 0) options.push(() => ({ type: 'remove', id: this.#random.pick(learners) }));
    if (options.length === 0) return;
    const change = this.#random.pick(options)();
    const result = core.proposeChange(change, '');
    if (!result.ok) {
      if (result.reason === 'behind') this.stats.membership.refusedBehind++;
      if (result.reason === 'in-progress') this.stats.membership.refusedInProgress++;
      return;
    }
    this.stats.membership.proposed++;
    if (change.type === 'addLearner') {
      this.#ids.push(change.id);
      this.#newNode(change.id);
      this.stats.membership.learnersAdded++;
    } else if (change.type === 'promote') {
      this.stats.membership.promoted++;
    } else {
      this.stats.membership.removed++;
      if (change.id === leader.id) this.stats.membership.leadersRemoved++;
      // The operator stops the removed node a while later (a proposed removal may yet be cut from
      // the log; stopping it anyway is what an operator does, and the others must cope).
      if (!this.#retireAt.has(change.id)) this.#retireAt.set(change.id, this.#now + this.#random.int(50, 600));
    }
  }

  /** The Ready grants a vote to another node. */
  #votedJustNow(node: SimNode, ready: Ready): boolean {
    const vote = ready.hardState?.vote;
    return vote !== undefined && vote !== node.id && ready.messages.some((m) => m.type === 'voteResponse' && !m.reject);
  }

  #partition(): void {
    const sides = new Map<RaftNodeId, number>();
    const leader = [...this.#nodes.values()].find((n) => n.core !== undefined && n.role === 'leader');
    if (leader !== undefined && this.#random.chance(0.5)) {
      // Cut the leader off alone: the majority elects another while it still believes it leads.
      for (const id of this.#ids) sides.set(id, id === leader.id ? 1 : 0);
    } else {
      for (const id of this.#ids) sides.set(id, this.#random.int(0, 1));
    }
    this.#sides = sides;
    this.#partitionEndsAt = this.#now + this.#random.int(PARTITION_STEPS[0], PARTITION_STEPS[1]);
    this.stats.faults.partition++;
  }

  #crash(node: SimNode): void {
    node.core = undefined;
    node.crashAt = undefined;
    // A third restart at once (a supervisor restarting a process), the rest after a while.
    const roll = this.#random.next();
    node.restartAt = this.#now + (roll < 1 / 3 ? this.#random.int(1, 3) : roll < 2 / 3 ? this.#random.int(4, 30) : this.#random.int(30, 200));
    this.stats.faults.crash++;
    if (this.#o.broken === 'forgetVoteOnRestart') node.durable.hardState = { ...node.durable.hardState, vote: undefined };
    for (const client of this.#clients) {
      const op = client.op;
      if (op === undefined || op.node !== node.id) continue;
      // The client loses its connection: a write's fate is unknown; a read returned nothing.
      if (op.kind === 'write') op.handle.info();
      else op.handle.fail();
      client.op = undefined;
      client.leaderGuess = undefined;
    }
  }

  #start(node: SimNode): void {
    const d = node.durable;
    const restored: RaftRestoredState = {
      hardState: d.hardState,
      snapshot: d.snapshot?.meta,
      entries: d.entries.slice(),
      ...(d.snapshot === undefined ? {} : { snapshotData: d.snapshot.data }),
    };
    const random = this.#random.fork(this.#ids.indexOf(node.id) * 1000 + node.incarnation++);
    const config: RaftConfig = {
      id: node.id,
      voters: this.#initialVoters.includes(node.id) ? this.#initialVoters : [],
      random: () => random.next(),
      electionTicks: ELECTION_TICKS,
      heartbeatTicks: 1,
      // Small limits, so that pipelining, batching and refusals all happen at this scale.
      maxInflightAppends: 4,
      maxAppendEntries: 8,
      maxAppendBytes: 64,
      maxPendingProposals: 32,
      snapshotRetryTicks: 3 * ELECTION_TICKS,
      preVote: this.#preVote,
      checkQuorum: this.#checkQuorum,
      unsafeCommitWithoutMajority: this.#o.broken === 'commitWithoutMajority',
      unsafeReadIndexWithoutQuorum: this.#o.broken === 'readIndexWithoutQuorum',
      unsafeOverlappingChanges: this.#o.broken === 'overlappingChanges',
    };
    node.core = new RaftCore(config, restored);
    node.machine = d.snapshot === undefined ? new KvMachine() : KvMachine.decode(d.snapshot.data);
    node.role = 'follower';
    node.term = d.hardState.term;
    node.commit = d.hardState.commit;
  }

  // ---------------------------------------------------------------------------------------------
  // Network

  #send(m: RaftMessage): void {
    const f = this.#o.faults;
    if (this.#random.chance(f.drop)) {
      this.stats.faults.drop++;
      return;
    }
    const copies = this.#random.chance(f.duplicate) ? 2 : 1;
    if (copies === 2) this.stats.faults.duplicate++;
    for (let i = 0; i < copies; i++) {
      let latency = this.#random.int(1, this.#random.chance(f.reorder) ? REORDER_LATENCY_STEPS : LATENCY_STEPS);
      if (this.#random.chance(f.delay)) {
        latency += this.#random.int(DELAY_STEPS[0], DELAY_STEPS[1]);
        this.stats.faults.delay++;
      }
      this.#inFlight.push({ m, deliverAt: this.#now + latency, seq: this.#sendSeq++ });
    }
  }

  #deliver(): void {
    const due: InFlight[] = [];
    const later: InFlight[] = [];
    for (const f of this.#inFlight) (f.deliverAt <= this.#now ? due : later).push(f);
    this.#inFlight = later;
    due.sort((a, b) => a.deliverAt - b.deliverAt || a.seq - b.seq);
    for (const { m, seq } of due) {
      const target = this.#nodes.get(m.to);
      if (target?.core === undefined) continue;
      if (this.#sides !== undefined && this.#sides.get(m.from) !== this.#sides.get(m.to)) continue;
      const link = `${m.from}>${m.to}`;
      const last = this.#lastDeliveredSeq.get(link) ?? -1;
      if (seq < last) this.stats.faults.reorder++;
      else this.#lastDeliveredSeq.set(link, seq);
      target.core.step(m);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Clients

  #clientsAct(): void {
    const up = [...this.#nodes.values()].filter((n) => n.core !== undefined);
    if (up.length === 0) return;
    for (const client of this.#clients) {
      if (client.op !== undefined || !this.#random.chance(0.1)) continue;
      // Mostly the leader it knows; sometimes any node, as a client behind a load balancer would,
      // which is how a node that wrongly believes it leads gets asked.
      const guess = client.leaderGuess === undefined || this.#random.chance(0.3) ? undefined : this.#nodes.get(client.leaderGuess);
      const node = guess?.core !== undefined ? guess : this.#random.pick(up);
      const core = node.core!;
      const key = this.#random.pick(KEYS);
      if (this.#random.chance(0.6)) {
        const value = this.#nextWriteValue++;
        const handle = this.#history.invoke(client.id, 'write', key, value);
        const result = core.propose(command(key, value));
        if (!result.ok) {
          handle.fail();
          client.leaderGuess = result.leader ?? undefined;
          continue;
        }
        client.leaderGuess = node.id;
        client.op = { kind: 'write', client: client.id, node: node.id, key, value, index: result.index, term: result.term, startedAt: this.#now, handle };
      } else {
        const handle = this.#history.invoke(client.id, 'read', key);
        const requestId = this.#nextRequestId++;
        const result = core.readIndex(requestId);
        if (!result.ok) {
          handle.fail();
          client.leaderGuess = result.leader ?? undefined;
          continue;
        }
        client.leaderGuess = node.id;
        const floor = this.#ackedWriteIndex.get(key) ?? 0;
        client.op = { kind: 'read', client: client.id, node: node.id, key, requestId, floor, readIndex: undefined, startedAt: this.#now, handle };
      }
    }
  }

  #expireClientOps(): void {
    for (const client of this.#clients) {
      const op = client.op;
      if (op === undefined || this.#now - op.startedAt < CLIENT_OP_TIMEOUT_STEPS) continue;
      if (op.kind === 'write') op.handle.info();
      else op.handle.fail();
      client.op = undefined;
      client.leaderGuess = undefined;
    }
  }

  /** The proposing node applied `entry`: a write waiting on its index learns its fate. */
  #completeWrites(node: SimNode, entry: LogEntry): void {
    for (const client of this.#clients) {
      const op = client.op;
      if (op?.kind !== 'write' || op.node !== node.id || op.index !== entry.index) continue;
      client.op = undefined;
      if (entry.term === op.term) {
        op.handle.ok();
        this.stats.writesAcknowledged++;
        this.#ackedWriteIndex.set(op.key, Math.max(this.#ackedWriteIndex.get(op.key) ?? 0, entry.index));
      } else {
        // Another leader's entry took the index; ours was cut from every log and never commits.
        op.handle.fail();
      }
    }
  }

  #completeReads(node: SimNode, ready: Ready): void {
    for (const client of this.#clients) {
      const op = client.op;
      if (op?.kind !== 'read' || op.node !== node.id) continue;
      if (op.readIndex === undefined) op.readIndex = ready.readStates.find((rs) => rs.requestId === op.requestId)?.index;
      if (ready.softState !== undefined && ready.softState.role !== 'leader' && op.readIndex === undefined) {
        // Deposed before confirming the read: the core dropped it, nothing was read.
        op.handle.fail();
        client.op = undefined;
        continue;
      }
      if (op.readIndex === undefined || node.machine.applied < op.readIndex) continue;
      const register = node.machine.registers.get(op.key);
      const seenIndex = register?.index ?? 0;
      if (seenIndex < op.floor) {
        this.#violation(
          'stale-read',
          `${node.id} read ${op.key} as of index ${seenIndex} (value ${register?.value ?? 'absent'}), but a write at index ${op.floor} was acknowledged before the read began`,
        );
      }
      op.handle.ok(register?.value ?? null);
      this.stats.readsServed++;
      client.op = undefined;
    }
  }

  #checkHistory(): void {
    const result = checkLinearizability(this.#history.operations(), { timeoutMs: 5_000 });
    this.stats.history = result.verdict;
    if (result.verdict === 'not-linearizable') this.#violation('linearizability', result.explanation ?? 'not linearizable');
  }

  // ---------------------------------------------------------------------------------------------
  // The node layer: persist, send, apply, advance; and the checks on the way.

  #processReadys(node: SimNode): void {
    // Work a Ready creates (a leader committing once its own entries are durable) comes out in
    // the next one; a few rounds settle it.
    for (let round = 0; round < 4 && node.core?.hasReady() === true; round++) {
      const core = node.core;
      const ready = core.ready();
      if (this.#votedJustNow(node, ready) && this.#canCrash() && this.#random.chance(CRASH_AFTER_VOTE * this.#o.faults.crash / ALL_FAULTS.crash)) {
        node.crashAt = 'afterSend';
      }
      const crashAt = node.crashAt;
      if (crashAt === 'beforePersist') return this.#crash(node);
      this.#persist(node, ready);
      if (crashAt === 'afterPersist') return this.#crash(node);
      for (const m of ready.messages) this.#send(m);
      if (crashAt === 'afterSend') return this.#crash(node);
      this.#apply(node, ready);
      core.advance(ready);
      this.#maybeCompact(node, core);
    }
    if (node.crashAt !== undefined) this.#crash(node);
  }

  #persist(node: SimNode, ready: Ready): void {
    const d = node.durable;
    if (ready.snapshot !== undefined) {
      d.snapshot = ready.snapshot;
      d.entries = [];
    }
    if (ready.entries.length > 0) {
      const first = ready.entries[0]!.index;
      const base = durableSnapshotIndex(d);
      if (first <= base || first > base + d.entries.length + 1) {
        throw new Error(`${node.id}: Ready entries from ${first} do not fit a durable log of ${base + 1}..${base + d.entries.length}`);
      }
      d.entries.length = first - base - 1;
      for (const e of ready.entries) {
        this.#checkLogMatching(node, e, durableTerm(d, e.index - 1)!);
        d.entries.push(e);
      }
    }
    if (ready.hardState !== undefined) {
      const h = ready.hardState;
      if (h.commit < node.commit) this.#violation('commit-monotonic', `${node.id}'s commit went from ${node.commit} down to ${h.commit}`);
      d.hardState = h;
      node.commit = h.commit;
      node.term = h.term;
    }
    if (ready.softState !== undefined) {
      node.role = ready.softState.role;
      if (ready.softState.role === 'leader') this.#leaderElected(node, ready.softState.term);
    }
    if (ready.hardState !== undefined) this.#recordCommitted(node);
  }

  #apply(node: SimNode, ready: Ready): void {
    if (ready.snapshot !== undefined) {
      node.machine = KvMachine.decode(ready.snapshot.data);
      this.stats.snapshotsInstalled++;
    }
    for (const e of ready.committed) {
      if (e.index !== node.machine.applied + 1) {
        this.#violation('state-machine-safety', `${node.id} applied index ${e.index} after ${node.machine.applied}`);
      }
      const id = identity(e);
      const before = this.#appliedAt.get(e.index);
      if (before === undefined) this.#appliedAt.set(e.index, id);
      else if (before !== id) this.#violation('state-machine-safety', `${node.id} applied ${id} at index ${e.index}, another node applied ${before}`);
      node.machine.apply(e);
      this.#completeWrites(node, e);
    }
    this.#completeReads(node, ready);
  }

  #maybeCompact(node: SimNode, core: RaftCore): void {
    const d = node.durable;
    if (node.machine.applied - durableSnapshotIndex(d) < node.compactEvery) return;
    const snapshot = core.compact(node.machine.applied, node.machine.encode());
    if (snapshot === undefined) return;
    d.entries = d.entries.slice(snapshot.meta.index - durableSnapshotIndex(d));
    d.snapshot = snapshot;
    this.stats.compactions++;
  }

  // ---------------------------------------------------------------------------------------------
  // Invariants (Figure 3)

  /** Election safety: at most one leader per term. Leader completeness: it holds every entry committed before its term. */
  #leaderElected(node: SimNode, term: number): void {
    this.stats.leadersElected++;
    const other = this.#leaderOfTerm.get(term);
    if (other !== undefined && other !== node.id) this.#violation('election-safety', `${node.id} and ${other} both lead term ${term}`);
    this.#leaderOfTerm.set(term, node.id);
    const d = node.durable;
    for (const [index, c] of this.#committed) {
      if (c.term < term && index > durableSnapshotIndex(d)) this.#expectHolds(node, term, index, c.identity);
    }
  }

  #expectHolds(leader: SimNode, term: number, index: number, id: string): void {
    const e = durableEntry(leader.durable, index);
    if (e === undefined || identity(e) !== id) {
      this.#violation(
        'leader-completeness',
        `${leader.id}, leader of term ${term}, holds ${e === undefined ? 'nothing' : identity(e)} at index ${index}, where ${id} was committed earlier`,
      );
    }
  }

  /** Log matching: an (index, term) names one entry, always preceded by the same term, on every durable log. */
  #checkLogMatching(node: SimNode, e: LogEntry, prevTerm: number): void {
    const key = `${e.index}:${e.term}`;
    const id = identity(e);
    const seen = this.#entryAt.get(key);
    if (seen === undefined) {
      this.#entryAt.set(key, { identity: id, prevTerm });
    } else if (seen.identity !== id || seen.prevTerm !== prevTerm) {
      this.#violation(
        'log-matching',
        `${node.id} persisted ${id} after term ${prevTerm} at index ${e.index}; another log has ${seen.identity} after term ${seen.prevTerm} there`,
      );
    }
  }

  /** Records what `node` now calls committed; every node must agree, and every newer leader must hold it. */
  #recordCommitted(node: SimNode): void {
    const d = node.durable;
    const through = d.hardState.commit;
    for (let index = Math.max(node.recordedCommitThrough, durableSnapshotIndex(d)) + 1; index <= through; index++) {
      const entry = durableEntry(d, index)!;
      const id = identity(entry);
      const known = this.#committed.get(index);
      if (known === undefined) {
        this.#committed.set(index, { identity: id, term: d.hardState.term });
        if (entry.kind === 'config') this.stats.membership.committed++;
        for (const leader of this.#nodes.values()) {
          if (leader.core !== undefined && leader.role === 'leader' && leader.term > d.hardState.term && index > durableSnapshotIndex(leader.durable)) {
            this.#expectHolds(leader, leader.term, index, id);
          }
        }
      } else if (known.identity !== id) {
        this.#violation('state-machine-safety', `${node.id} committed ${id} at index ${index}, another node committed ${known.identity}`);
      } else if (d.hardState.term < known.term) {
        this.#committed.set(index, { identity: id, term: d.hardState.term });
      }
    }
    node.recordedCommitThrough = Math.max(node.recordedCommitThrough, through);
    this.stats.entriesCommitted = Math.max(this.stats.entriesCommitted, through);
  }
}
