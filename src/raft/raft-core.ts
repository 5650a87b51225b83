/**
 * The Raft consensus core: a pure state machine in the manner of etcd-io/raft. Ticks, messages,
 * proposals and read requests go in; a {@link Ready} comes out with what to persist, send and
 * apply (see `types.ts` for the order). No clocks, timers, promises, I/O or global randomness:
 * the randomized election timeout draws from the injected `random`, so a seed replays exactly.
 *
 * Section numbers (§) refer to the extended Raft paper (Ongaro & Ousterhout, 2014); thesis
 * sections (thesis §) to Ongaro's dissertation, "Consensus: Bridging Theory and Practice".
 */
import { applyChange, decodeMembership, encodeMembership, isVoter, membershipOf, snapshotMeta, type Membership, type MembershipChange } from './membership.js';
import { Progress, type ProgressState } from './progress.js';
import { RaftLog } from './raft-log.js';
import type {
  HardState,
  LogEntry,
  RaftMessage,
  RaftNodeId,
  RaftRestoredState,
  RaftRole,
  RaftSnapshot,
  Ready,
  ReadState,
} from './types.js';

export interface RaftConfig {
  readonly id: RaftNodeId;
  /**
   * The group's first voters, used only while neither the log nor a snapshot holds a membership
   * (a new group's bootstrap). Empty for a node joining an existing group: it learns the
   * membership from the leader's entries or snapshot.
   */
  readonly voters: readonly RaftNodeId[];
  /** The bootstrap membership's learners. @default [] */
  readonly learners?: readonly RaftNodeId[];
  /** The bootstrap membership's node-layer data (see Membership.context). @default '' */
  readonly membershipContext?: string;
  /** A float in [0, 1): the election timeout's randomness, injected so that a seed replays. */
  readonly random: () => number;
  /**
   * False for a node that lost its disk: it may have voted in its current term and forgotten it,
   * so it never grants a vote or campaigns again (§5.2's one vote per term needs a durable vote).
   * It still counts as a voter for quorum sizes, replicates and follows.
   */
  readonly canVote?: boolean;
  /** Ticks without a leader before a follower campaigns; the timeout is drawn from [electionTicks, 2·electionTicks). */
  readonly electionTicks?: number;
  /** Ticks between a leader's heartbeats; must be well under `electionTicks`. */
  readonly heartbeatTicks?: number;
  /** Unacknowledged appends per follower in replicate state. */
  readonly maxInflightAppends?: number;
  /** Entries per append message. */
  readonly maxAppendEntries?: number;
  /** Entry data bytes per append message; a single larger entry travels alone. */
  readonly maxAppendBytes?: number;
  /** Uncommitted proposals of this leader's term it accepts before refusing more. */
  readonly maxPendingProposals?: number;
  /** The same bound in bytes of entry data; a proposal into an empty pipeline is accepted whatever its size. */
  readonly maxPendingProposalBytes?: number;
  /** Ticks a leader waits for a snapshot's acknowledgement before presuming it lost and probing again. */
  readonly snapshotRetryTicks?: number;
  /**
   * How far (in entries) a learner may trail the commit index and still be promoted: a learner
   * further behind would stall commitment until it caught up, the very outage adding it as a
   * learner first avoids.
   */
  readonly maxPromoteLagEntries?: number;
  /** Campaign in two phases (thesis §9.6). */
  readonly preVote?: boolean;
  /** Leaders step down without a majority's contact, followers keep a leader lease (thesis §6.2, §4.2.3). */
  readonly checkQuorum?: boolean;
  /**
   * BROKEN ON PURPOSE, for testing the tests: the leader commits on its own copy alone instead of
   * a majority's (breaks §5.4's commitment rule). A simulation must catch this.
   */
  readonly unsafeCommitWithoutMajority?: boolean;
  /**
   * BROKEN ON PURPOSE, for testing the tests: the leader answers ReadIndex at once, without the
   * heartbeat round that proves it is still leader (thesis §6.4 step 3), so a deposed leader
   * serves stale reads. A simulation must catch this.
   */
  readonly unsafeReadIndexWithoutQuorum?: boolean;
  /**
   * BROKEN ON PURPOSE, for testing the tests: a leader proposes a membership change while the
   * previous one is uncommitted (or before it committed an entry of its term), so two single-step
   * changes overlap without joint consensus and two disjoint majorities can decide. A simulation
   * must catch this.
   */
  readonly unsafeOverlappingChanges?: boolean;
  /** BROKEN ON PURPOSE, for testing the tests: a learner is promoted however far behind it is. */
  readonly unsafePromoteLagging?: boolean;
}

export const RAFT_DEFAULTS = {
  /**
   * Ten heartbeats' worth: long enough that one or two lost heartbeats do not start an election,
   * short enough that a dead leader is replaced quickly (etcd's default).
   */
  electionTicks: 10,
  /** A heartbeat every tick: followers hear from the leader ten times per election timeout. */
  heartbeatTicks: 1,
  /**
   * Appends keep flowing to a follower several round trips away while acknowledgements return;
   * a follower that lost one append re-receives at most this many once the loss shows.
   */
  maxInflightAppends: 64,
  /** Bounds an append's work on the follower; with byte limit below, a message stays a few hundred KiB. */
  maxAppendEntries: 256,
  /** Half the 1 MiB largest value: an append of small entries stays well under gRPC's message limit. */
  maxAppendBytes: 512 * 1024,
  /**
   * A leader whose followers fall behind stops accepting work instead of growing its log (and
   * memory) without bound; clients see the refusal and back off.
   */
  maxPendingProposals: 1024,
  /** 32 largest values (1 MiB each) in flight at once. */
  maxPendingProposalBytes: 32 * 1024 * 1024,
  /** Three default election timeouts: a snapshot is large and slow, but one lost must not stall its follower forever. */
  snapshotRetryTicks: 30,
  /** One full append (maxAppendEntries): a learner that close receives the rest in one round trip. */
  maxPromoteLagEntries: 256,
  /** A node keeps its disk (and its vote) unless the node layer knows otherwise. */
  canVote: true,
  /** A node back from a partition must not depose a healthy leader by bumping terms (thesis §9.6). */
  preVote: true,
  /** A partitioned leader steps down instead of accepting work it can never commit (thesis §6.2). */
  checkQuorum: true,
  /** Off: on, committed entries can be lost (only tests turn it on, to check the checks). */
  unsafeCommitWithoutMajority: false,
  /** Off: on, a deposed leader serves stale reads (only tests turn it on, to check the checks). */
  unsafeReadIndexWithoutQuorum: false,
  /** Off: on, membership changes can overlap and split the group (only tests turn it on). */
  unsafeOverlappingChanges: false,
  /** Off: on, a lagging learner can be promoted and stall commitment (only tests turn it on). */
  unsafePromoteLagging: false,
} as const;

export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly reason: 'not-leader' | 'transferring' | 'too-many-pending'; readonly leader: RaftNodeId | undefined };

export type ReadIndexResult = { readonly ok: true } | { readonly ok: false; readonly reason: 'not-leader'; readonly leader: RaftNodeId | undefined };

export type ChangeResult =
  | { readonly ok: true; readonly index: number; readonly term: number; readonly membership: Membership }
  | { readonly ok: false; readonly reason: 'not-leader' | 'transferring' | 'too-many-pending' | 'not-ready'; readonly leader: RaftNodeId | undefined }
  /**
   * `not-ready` (above): this leader has not committed an entry of its term yet; retry in a moment.
   * `in-progress`: the previous change is not committed yet. `invalid`: not one valid step from the current membership.
   * `behind`: the learner to promote trails the commit index by more than maxPromoteLagEntries.
   */
  | { readonly ok: false; readonly reason: 'in-progress' | 'invalid' | 'behind'; readonly leader: RaftNodeId | undefined; readonly detail: string };

export type TransferResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'not-leader' | 'unknown-node'; readonly leader: RaftNodeId | undefined };

export interface FollowerProgress {
  readonly id: RaftNodeId;
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly inflight: number;
}

export interface RaftStatus {
  readonly id: RaftNodeId;
  readonly role: RaftRole;
  readonly term: number;
  readonly vote: RaftNodeId | undefined;
  readonly leader: RaftNodeId | undefined;
  readonly commit: number;
  /** The highest index the node layer applied, as told by `advance`. */
  readonly applied: number;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  /** The leader's view of each follower (not itself); empty on other roles. */
  readonly progress: readonly FollowerProgress[];
  /** The node a leadership transfer is handing over to. */
  readonly transferee: RaftNodeId | undefined;
  /** The membership in effect (the latest in the log, committed or not). */
  readonly membership: Membership;
  /** The index of the entry that set it (0: the bootstrap's or a snapshot's). */
  readonly membershipIndex: number;
  /** True while that entry is not committed: no other change may start. */
  readonly changePending: boolean;
}

/** A config entry in the log after the snapshot. */
interface ConfigAt {
  readonly index: number;
  readonly term: number;
  readonly membership: Membership;
}

/** A ReadIndex round waiting for a majority to confirm this node still leads (thesis §6.4). */
interface ReadRound {
  /** Echoed by heartbeat responses; rounds are numbered in order. */
  readonly context: number;
  readonly requestId: number;
  readonly index: number;
  readonly acks: Set<RaftNodeId>;
}

type Settings = Required<Omit<RaftConfig, 'id' | 'voters' | 'learners' | 'membershipContext' | 'random'>>;

const EMPTY = new Uint8Array(0);

export class RaftCore {
  readonly id: RaftNodeId;
  /** The membership in effect: the latest config entry's, else the snapshot's, else the bootstrap's. */
  #membership: Membership;
  /** The membership as of the snapshot index. */
  #snapshotMembership: Membership;
  /** Config entries after the snapshot, in index order. */
  #configs: ConfigAt[] = [];
  /** Every member but this node: whom a leader replicates to. */
  #peers: readonly RaftNodeId[] = [];
  /** The voters but this node: whom a candidate asks. */
  #voterPeers: readonly RaftNodeId[] = [];
  readonly #random: () => number;
  readonly #settings: Settings;
  readonly #log: RaftLog;

  #term: number;
  #vote: RaftNodeId | undefined;
  #role: RaftRole = 'follower';
  #leader: RaftNodeId | undefined = undefined;
  #applied: number;
  /** The latest snapshot (the application's, or one received), kept to send to laggards. */
  #snapshot: RaftSnapshot | undefined;
  /** A snapshot received from the leader, for the next Ready. */
  #snapshotToHandOut: RaftSnapshot | undefined = undefined;

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;
  /** Campaign answers: true granted, false rejected. */
  readonly #votes = new Map<RaftNodeId, boolean>();
  /** What a (pre-)candidate asks of each peer, to ask again those that do not answer. */
  #campaignRequest: DistributiveOmit<Extract<RaftMessage, { type: 'preVote' | 'vote' }>, 'from' | 'to'> | undefined = undefined;

  readonly #progress = new Map<RaftNodeId, Progress>();
  /**
   * On a leader, members a change removed, by the index of that change's entry: they are still
   * replicated to (never counted) until it commits, and then told the commit index once, so that
   * a removed node learns it was removed (thesis §4.2.2) instead of waiting for a leader forever.
   */
  readonly #leaving = new Map<RaftNodeId, { readonly removedAt: number; ticksSinceCommit: number }>();
  #transferee: RaftNodeId | undefined = undefined;
  #transferElapsed = 0;
  #pendingProposals = 0;
  #pendingProposalBytes = 0;
  /** ReadIndex requests waiting until this leader has committed an entry of its term (thesis §6.4 step 1). */
  #readsAwaitingTermCommit: number[] = [];
  #readRounds: ReadRound[] = [];
  #lastReadContext = 0;

  #messages: RaftMessage[] = [];
  #readStates: ReadState[] = [];
  #handedOutHardState: HardState;
  #handedOutSoftState: { role: RaftRole; leader: RaftNodeId | undefined };

  constructor(config: RaftConfig, restored: RaftRestoredState) {
    const bootstrapMembers = [...config.voters, ...(config.learners ?? [])];
    if (new Set(bootstrapMembers).size !== bootstrapMembers.length) throw new RangeError(`voters and learners must be distinct: ${bootstrapMembers.join(', ')}`);
    const defined = Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined));
    this.#settings = { ...RAFT_DEFAULTS, ...defined } as Settings;
    const s = this.#settings;
    if (!(s.heartbeatTicks >= 1 && s.electionTicks > s.heartbeatTicks)) {
      throw new RangeError(`electionTicks (${s.electionTicks}) must exceed heartbeatTicks (${s.heartbeatTicks}) ≥ 1`);
    }
    for (const key of ['maxInflightAppends', 'maxAppendEntries', 'maxAppendBytes', 'maxPendingProposals', 'maxPendingProposalBytes', 'snapshotRetryTicks'] as const) {
      if (!(s[key] >= 1)) throw new RangeError(`${key} must be at least 1, not ${s[key]}`);
    }
    this.id = config.id;
    this.#random = config.random;

    const { hardState, snapshot } = restored;
    this.#log = new RaftLog(snapshot, restored.entries, hardState.commit);
    this.#snapshotMembership =
      snapshot !== undefined
        ? membershipOf(snapshot)
        : { voters: config.voters.slice(), learners: (config.learners ?? []).slice(), context: config.membershipContext ?? '' };
    this.#membership = this.#snapshotMembership;
    this.#setMembership(this.#snapshotMembership);
    this.#noteEntries(restored.entries);
    this.#term = hardState.term;
    this.#vote = hardState.vote;
    this.#applied = this.#log.snapshotIndex;
    this.#snapshot = snapshot === undefined || restored.snapshotData === undefined ? undefined : { meta: snapshot, data: restored.snapshotData };
    this.#handedOutHardState = hardState;
    this.#handedOutSoftState = { role: this.#role, leader: this.#leader };
    this.#resetElectionTimeout();
  }

  // ---------------------------------------------------------------------------------------------
  // Inputs

  /** One unit of logical time. */
  tick(): void {
    if (this.#role === 'leader') this.#tickLeader();
    else this.#tickFollower();
  }

  /** The snapshot received from the leader that the next Ready hands out, if any (its meta). */
  get snapshotToHandOut(): RaftSnapshot['meta'] | undefined {
    return this.#snapshotToHandOut?.meta;
  }

  step(m: RaftMessage): void {
    // Messages to someone else or from ourselves are noise: no state change, no answer.
    if (m.to !== this.id || m.from === this.id) return;
    // Only voters (in our membership) may campaign: a removed node, or one that never got the
    // entry that removed it, must not disturb the group with its elections (thesis §4.2.3). A
    // leader's messages come from anyone: a new member learns the membership from them.
    if ((m.type === 'preVote' || m.type === 'vote') && !isVoter(this.#membership, m.from)) return;
    // Pieces of a snapshot in transit are the node layer's business (see types.ts), never the core's.
    if (m.type === 'snapshotChunk' || m.type === 'snapshotChunkAck') return;

    if (m.term > this.#term) {
      if ((m.type === 'preVote' || m.type === 'vote') && !m.transfer && this.#inLease(m.type)) {
        // Thesis §4.2.3, §9.6: a node that heard from a leader within the election timeout
        // ignores campaigns, so a node that was cut off cannot disrupt a working cluster. A
        // transfer's campaign was asked for by the leader itself.
        return;
      }
      if (m.type === 'preVote' || (m.type === 'preVoteResponse' && !m.reject)) {
        // A pre-vote is about a term nobody is in yet, and a granted one echoes that term
        // (thesis §9.6): neither moves our term.
      } else {
        const fromLeader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot';
        this.#becomeFollower(m.term, fromLeader ? m.from : undefined);
      }
    } else if (m.term < this.#term) {
      if ((m.type === 'append' || m.type === 'heartbeat') && (this.#settings.checkQuorum || this.#settings.preVote)) {
        // A leader of an older term. With pre-vote or leases we may have moved ahead of it without
        // being able to win an election on our own (our campaigns are refused while it leads);
        // our term in a response makes it step down, and a new election can include us. The
        // response claims only what is always true (our log matches through index 0), so that
        // if the sender leads our term by the time it arrives, it changes nothing there.
        this.#send({ type: 'appendResponse', to: m.from, term: this.#term, reject: false, index: 0, hint: this.#log.lastIndex() });
      } else if (m.type === 'preVote') {
        // Tell a stale pre-candidate our term so that it catches up instead of retrying forever.
        this.#send({ type: 'preVoteResponse', to: m.from, term: this.#term, reject: true });
      }
      return;
    }

    switch (m.type) {
      case 'preVote':
      case 'vote':
        this.#handleVoteRequest(m);
        return;
      case 'preVoteResponse':
      case 'voteResponse':
        this.#handleVoteResponse(m);
        return;
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        if (this.#role === 'leader') return; // Another leader in our term cannot exist (§5.2); ignore.
        if (this.#role !== 'follower' || this.#leader !== m.from) this.#becomeFollower(this.#term, m.from);
        this.#electionElapsed = 0;
        if (m.type === 'append') this.#handleAppend(m);
        else if (m.type === 'heartbeat') this.#handleHeartbeat(m);
        else this.#handleSnapshot(m);
        return;
      case 'appendResponse':
        if (this.#role === 'leader') this.#handleAppendResponse(m);
        return;
      case 'heartbeatResponse':
        if (this.#role === 'leader') this.#handleHeartbeatResponse(m);
        return;
      case 'timeoutNow':
        // Thesis §3.10: the leader caught us up and asks us to campaign now, skipping pre-vote.
        if (this.#role !== 'leader' && this.#mayCampaign()) this.#campaign('vote', true);
        return;
    }
  }

  /**
   * Appends `data` as a new entry when this node leads. A follower answers `not-leader` with the
   * leader it knows: forwarding is the node layer's business.
   */
  propose(data: Uint8Array): ProposeResult {
    if (this.#role !== 'leader') return { ok: false, reason: 'not-leader', leader: this.#leader };
    // Thesis §3.10: the log must stop growing so the transferee can catch up and take over.
    if (this.#transferee !== undefined) return { ok: false, reason: 'transferring', leader: this.id };
    const pending = this.#pendingProposals > 0;
    const tooMany = this.#pendingProposals + 1 > this.#settings.maxPendingProposals || this.#pendingProposalBytes + data.byteLength > this.#settings.maxPendingProposalBytes;
    if (pending && tooMany) return { ok: false, reason: 'too-many-pending', leader: this.id };
    const entry = this.#appendEntry('command', data);
    this.#pendingProposals++;
    this.#pendingProposalBytes += data.byteLength;
    this.#broadcastAppend();
    return { ok: true, index: entry.index, term: entry.term };
  }

  /**
   * Proposes one membership step (see membership.ts), carrying the node layer's new `context`.
   * Refused while another change is uncommitted or before this leader committed an entry of its
   * term, when the step is not valid from the current membership, and when promoting a learner
   * that trails the commit index by more than maxPromoteLagEntries. The new membership takes
   * effect here at once (on followers, when the entry reaches their logs).
   */
  proposeChange(change: MembershipChange, context: string): ChangeResult {
    if (this.#role !== 'leader') return { ok: false, reason: 'not-leader', leader: this.#leader };
    if (this.#transferee !== undefined) return { ok: false, reason: 'transferring', leader: this.id };
    if (!this.#settings.unsafeOverlappingChanges) {
      const pendingAt = this.#configs[this.#configs.length - 1]?.index ?? 0;
      if (pendingAt > this.#log.committed) {
        return { ok: false, reason: 'in-progress', leader: this.id, detail: `the membership change at index ${pendingAt} is not committed yet` };
      }
      if (this.#log.term(this.#log.committed) !== this.#term) return { ok: false, reason: 'not-ready', leader: this.id };
    }
    const next = applyChange(this.#membership, change, context);
    if (typeof next === 'string') return { ok: false, reason: 'invalid', leader: this.id, detail: next };
    if (change.type === 'promote' && !this.#settings.unsafePromoteLagging) {
      const pr = this.#progress.get(change.id);
      const match = pr?.match ?? 0;
      if (pr === undefined || pr.state === 'snapshot' || match + promoteLag(this.#settings.maxPromoteLagEntries, this.#log.committed) < this.#log.committed) {
        return { ok: false, reason: 'behind', leader: this.id, detail: `${change.id} holds the log through index ${match}, and ${this.#log.committed} is committed` };
      }
    }
    if (this.#pendingProposals > 0 && this.#pendingProposals + 1 > this.#settings.maxPendingProposals) {
      return { ok: false, reason: 'too-many-pending', leader: this.id };
    }
    const entry = this.#appendEntry('config', encodeMembership(next));
    this.#pendingProposals++;
    this.#broadcastAppend();
    return { ok: true, index: entry.index, term: entry.term, membership: next };
  }

  /** The membership as of log index `index` (at least the snapshot's index). */
  membershipAt(index: number): Membership {
    let found = this.#snapshotMembership;
    for (const c of this.#configs) {
      if (c.index > index) break;
      found = c.membership;
    }
    return found;
  }

  /**
   * Starts a ReadIndex round (thesis §6.4): once a majority confirms this node still leads, a
   * {@link ReadState} with the commit index as of now appears in a Ready, and a read may be served
   * once that index is applied. A round that cannot finish (this node stops leading) is dropped:
   * the node layer fails its reads when the Ready's softState shows the role change.
   */
  readIndex(requestId: number): ReadIndexResult {
    if (this.#role !== 'leader') return { ok: false, reason: 'not-leader', leader: this.#leader };
    if (this.#log.term(this.#log.committed) !== this.#term) {
      // Step 1: a new leader does not know its predecessors' full commit index until it has
      // committed an entry of its own term (its no-op).
      this.#readsAwaitingTermCommit.push(requestId);
    } else {
      this.#startReadRound(requestId);
    }
    return { ok: true };
  }

  /**
   * Hands leadership to `to` (thesis §3.10): proposals stop, `to` is brought up to date, then told
   * to campaign at once. Gives up after an election timeout.
   */
  transferLeadership(to: RaftNodeId): TransferResult {
    if (this.#role !== 'leader') return { ok: false, reason: 'not-leader', leader: this.#leader };
    if (!this.#voterPeers.includes(to)) {
      return to === this.id ? { ok: true } : { ok: false, reason: 'unknown-node', leader: this.id };
    }
    if (this.#transferee === to) return { ok: true };
    this.#transferee = to;
    this.#transferElapsed = 0;
    if (this.#progress.get(to)!.match === this.#log.lastIndex()) this.#send({ type: 'timeoutNow', to, term: this.#term });
    // Even with nothing new to send (what was sent may be lost), an empty append starts the catch-up now.
    else this.#sendAppend(to, true);
    return { ok: true };
  }

  /**
   * The application snapshotted its state machine at `index` (at most what it applied): the core
   * keeps the snapshot, to send to followers that need compacted entries, and drops its entries
   * through `index`. Returns the snapshot to persist, or undefined when `index` is not past the
   * current one.
   */
  compact(index: number, data: Uint8Array): RaftSnapshot | undefined {
    if (index > this.#applied) throw new RangeError(`cannot compact through ${index}: only ${this.#applied} is applied`);
    if (index <= this.#log.snapshotIndex) return undefined;
    const membership = this.membershipAt(index);
    const snapshot: RaftSnapshot = { meta: snapshotMeta(index, this.#log.term(index)!, membership), data };
    this.#log.compact(index, snapshot.meta.term);
    this.#snapshot = snapshot;
    this.#snapshotMembership = membership;
    this.#configs = this.#configs.filter((c) => c.index > index);
    return snapshot;
  }

  // ---------------------------------------------------------------------------------------------
  // Outputs

  hasReady(): boolean {
    return (
      this.#messages.length > 0 ||
      this.#readStates.length > 0 ||
      this.#snapshotToHandOut !== undefined ||
      this.#log.hasEntriesToHandOut() ||
      this.#log.hasCommittedToHandOut() ||
      this.#hardStateChanged() ||
      this.#softStateChanged()
    );
  }

  /**
   * What to do next. Readys must be processed in the order they are produced, each one persisted,
   * sent and applied before `advance(ready)`; steps may happen in between.
   */
  ready(): Ready {
    const hardState = this.#hardStateChanged() ? this.#hardState() : undefined;
    const softState = this.#softStateChanged() ? { role: this.#role, leader: this.#leader, term: this.#term } : undefined;
    const ready: Ready = {
      hardState,
      entries: this.#log.takeEntriesToPersist(),
      snapshot: this.#snapshotToHandOut,
      messages: this.#messages,
      committed: this.#log.takeCommittedToApply(),
      readStates: this.#readStates,
      softState,
    };
    if (hardState !== undefined) this.#handedOutHardState = hardState;
    if (softState !== undefined) this.#handedOutSoftState = { role: softState.role, leader: softState.leader };
    this.#snapshotToHandOut = undefined;
    this.#messages = [];
    this.#readStates = [];
    return ready;
  }

  /** The node layer did everything `ready` asked. */
  advance(ready: Ready): void {
    const lastEntry = ready.entries[ready.entries.length - 1];
    if (lastEntry !== undefined) this.#log.stableTo(lastEntry.index, lastEntry.term);
    const lastApplied = ready.committed[ready.committed.length - 1]?.index ?? 0;
    this.#applied = Math.max(this.#applied, lastApplied, ready.snapshot?.meta.index ?? 0);
    // The leader's own copy counts toward a majority only once durable (thesis §10.2.1).
    if (this.#role === 'leader' && lastEntry !== undefined && this.#maybeCommit()) this.#broadcastAppend(true);
  }

  /** The leader as this node knows it now (a Ready's soft state may lag behind). */
  get leader(): RaftNodeId | undefined {
    return this.#leader;
  }

  get role(): RaftRole {
    return this.#role;
  }

  status(): RaftStatus {
    const progress = [...this.#progress].map(([id, pr]) => ({ id, match: pr.match, next: pr.next, state: pr.state, inflight: pr.inflight }));
    return {
      id: this.id,
      role: this.#role,
      term: this.#term,
      vote: this.#vote,
      leader: this.#leader,
      commit: this.#log.committed,
      applied: this.#applied,
      lastIndex: this.#log.lastIndex(),
      snapshotIndex: this.#log.snapshotIndex,
      progress,
      transferee: this.#transferee,
      membership: this.#membership,
      membershipIndex: this.#configs[this.#configs.length - 1]?.index ?? 0,
      changePending: (this.#configs[this.#configs.length - 1]?.index ?? 0) > this.#log.committed,
    };
  }

  get membership(): Membership {
    return this.#membership;
  }

  // ---------------------------------------------------------------------------------------------
  // Time

  #tickFollower(): void {
    this.#electionElapsed++;
    if (this.#mayCampaign() && this.#electionElapsed >= this.#randomizedElectionTimeout) {
      this.#campaign(this.#settings.preVote ? 'preVote' : 'vote', false);
      return;
    }
    if (this.#campaignRequest !== undefined && ++this.#heartbeatElapsed >= this.#settings.heartbeatTicks) {
      // §5.1: RPCs without a timely answer are retried, so one lost request does not cost a
      // whole election timeout. A voter answers a repeated request as it did the first.
      this.#heartbeatElapsed = 0;
      for (const to of this.#voterPeers) if (!this.#votes.has(to)) this.#send({ ...this.#campaignRequest, to });
    }
  }

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#settings.electionTicks) {
      this.#electionElapsed = 0;
      if (this.#settings.checkQuorum) {
        // Thesis §6.2: without a majority's word within an election timeout, a newer leader may
        // exist; stop taking requests that could never commit.
        const self = isVoter(this.#membership, this.id) ? 1 : 0;
        const active = self + this.#voterPeers.filter((p) => this.#progress.get(p)?.recentActive === true).length;
        if (active < this.#majority()) {
          this.#becomeFollower(this.#term, undefined);
          return;
        }
        for (const pr of this.#progress.values()) pr.recentActive = false;
      }
    }
    if (this.#transferee !== undefined && ++this.#transferElapsed >= this.#settings.electionTicks) {
      // The transferee did not take over within an election timeout: lead on and accept proposals.
      this.#transferee = undefined;
    }
    if (this.#leaving.size > 0) this.#releaseLeaving(true);
    for (const [peer, pr] of this.#progress) {
      if (pr.state === 'snapshot' && ++pr.snapshotElapsed >= this.#settings.snapshotRetryTicks) {
        pr.becomeProbe();
        this.#sendAppend(peer, true);
      }
    }
    if (this.#heartbeatElapsed >= this.#settings.heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat(0);
    }
  }

  /**
   * A follower that heard from a leader within the election timeout; a leader always. Pre-votes
   * are refused then in any case (thesis §9.6: a pre-vote is granted only to a node that could
   * win without disrupting a live leader). Votes only with check-quorum, which guarantees the
   * other half of the bargain (thesis §4.2.3): a leader that lost its majority steps down, so a
   * lease never keeps followers loyal to a leader that cannot lead.
   */
  #inLease(request: 'preVote' | 'vote'): boolean {
    if (request === 'vote' && !this.#settings.checkQuorum) return false;
    return this.#leader !== undefined && this.#electionElapsed < this.#settings.electionTicks;
  }

  #resetElectionTimeout(): void {
    const e = this.#settings.electionTicks;
    // §5.2: randomized timeouts make split votes rare and short.
    this.#randomizedElectionTimeout = e + Math.floor(this.#random() * e);
  }

  // ---------------------------------------------------------------------------------------------
  // Roles

  /** Everything a change of role or term resets. */
  #reset(term: number): void {
    if (term !== this.#term) {
      this.#term = term;
      this.#vote = undefined;
    }
    this.#leader = undefined;
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#resetElectionTimeout();
    this.#votes.clear();
    this.#campaignRequest = undefined;
    this.#progress.clear();
    this.#leaving.clear();
    this.#transferee = undefined;
    this.#pendingProposals = 0;
    this.#pendingProposalBytes = 0;
    this.#readsAwaitingTermCommit = [];
    this.#readRounds = [];
  }

  #becomeFollower(term: number, leader: RaftNodeId | undefined): void {
    this.#reset(term);
    this.#role = 'follower';
    this.#leader = leader;
  }

  #campaign(kind: 'preVote' | 'vote', transfer: boolean): void {
    if (kind === 'preVote') {
      // Thesis §9.6: ask first whether we could win, without touching our term or vote; only a
      // node that could win bumps its term and disturbs the others.
      this.#reset(this.#term);
      this.#role = 'preCandidate';
    } else {
      this.#reset(this.#term + 1);
      this.#role = 'candidate';
      this.#vote = this.id;
    }
    this.#votes.set(this.id, true);
    if (this.#majority() === 1 && this.#voterPeers.length === 0) {
      // A cluster of one: nothing to ask.
      if (kind === 'preVote') this.#campaign('vote', transfer);
      else this.#becomeLeader();
      return;
    }
    const term = kind === 'preVote' ? this.#term + 1 : this.#term;
    this.#campaignRequest = { type: kind, term, lastLogIndex: this.#log.lastIndex(), lastLogTerm: this.#log.lastTerm(), transfer };
    for (const to of this.#voterPeers) this.#send({ ...this.#campaignRequest, to });
  }

  #becomeLeader(): void {
    this.#reset(this.#term);
    this.#role = 'leader';
    this.#leader = this.id;
    this.#trackPeers();
    // §5.4.2 / §8: a leader commits its predecessors' entries only by committing one of its own
    // term; the no-op does that at once instead of waiting for a client's command.
    this.#appendEntry('noop', EMPTY);
    this.#broadcastAppend();
  }

  // ---------------------------------------------------------------------------------------------
  // Elections

  #handleVoteRequest(m: Extract<RaftMessage, { type: 'preVote' | 'vote' }>): void {
    // §5.2: one vote per term, first come first served; a pre-vote promises nothing, so it may be
    // granted for a later term whatever we voted in ours.
    const canVote =
      this.#settings.canVote &&
      (this.#vote === m.from || (this.#vote === undefined && this.#leader === undefined) || (m.type === 'preVote' && m.term > this.#term));
    const responseType = m.type === 'preVote' ? 'preVoteResponse' : 'voteResponse';
    if (canVote && this.#log.isUpToDate(m.lastLogIndex, m.lastLogTerm)) {
      if (m.type === 'vote') {
        // The vote goes into this Ready's hardState, persisted before this response is sent.
        this.#vote = m.from;
        this.#electionElapsed = 0;
      }
      this.#send({ type: responseType, to: m.from, term: m.term, reject: false });
    } else {
      this.#send({ type: responseType, to: m.from, term: this.#term, reject: true });
    }
  }

  #handleVoteResponse(m: Extract<RaftMessage, { type: 'preVoteResponse' | 'voteResponse' }>): void {
    const ours = m.type === 'preVoteResponse' ? this.#role === 'preCandidate' : this.#role === 'candidate';
    if (!ours) return;
    // A granted pre-vote echoes the term we would campaign in; anything else is for our term.
    const expectedTerm = m.type === 'preVoteResponse' && !m.reject ? this.#term + 1 : this.#term;
    if (m.term !== expectedTerm) return;
    if (!isVoter(this.#membership, m.from)) return;
    this.#votes.set(m.from, !m.reject);
    let granted = 0;
    let rejected = 0;
    for (const [id, g] of this.#votes) {
      if (!isVoter(this.#membership, id)) continue;
      if (g) granted++;
      else rejected++;
    }
    if (granted >= this.#majority()) {
      if (this.#role === 'preCandidate') this.#campaign('vote', false);
      else this.#becomeLeader();
    } else if (rejected > this.#membership.voters.length - this.#majority()) {
      this.#becomeFollower(this.#term, undefined);
    }
  }

  /** Votes needed to win and acknowledgements needed to confirm leadership. */
  #majority(): number {
    return Math.floor(this.#membership.voters.length / 2) + 1;
  }

  /** Only a voter with its vote intact campaigns; a learner or a removed node never does. */
  #mayCampaign(): boolean {
    return this.#settings.canVote && isVoter(this.#membership, this.id);
  }

  // ---------------------------------------------------------------------------------------------
  // Membership

  /**
   * Records the config entries among `entries` (just appended, or restored) and makes the latest
   * membership in the log the one in effect. Entries a truncation replaced are dropped first: a
   * config entry still in the log has the same index and term as when it was recorded (§5.3).
   */
  #noteEntries(entries: readonly LogEntry[]): void {
    const before = this.#configs.length;
    this.#configs = this.#configs.filter((c) => this.#log.term(c.index) === c.term);
    let changed = this.#configs.length !== before;
    for (const e of entries) {
      if (e.kind !== 'config' || this.#log.term(e.index) !== e.term) continue;
      if (this.#configs.some((c) => c.index === e.index)) continue;
      this.#configs.push({ index: e.index, term: e.term, membership: decodeMembership(e.data) });
      changed = true;
    }
    if (changed) {
      this.#configs.sort((a, b) => a.index - b.index);
      this.#setMembership(this.#configs[this.#configs.length - 1]?.membership ?? this.#snapshotMembership);
    }
  }

  #setMembership(m: Membership): void {
    this.#membership = m;
    this.#peers = [...m.voters, ...m.learners].filter((id) => id !== this.id);
    this.#voterPeers = m.voters.filter((id) => id !== this.id);
    if (this.#role === 'leader') this.#trackPeers();
  }

  /**
   * A leader keeps a Progress for every member but itself: new members start probing; removed
   * ones stay until their removal commits (see #leaving), or go at once when it already has.
   */
  #trackPeers(): void {
    const next = this.#log.lastIndex() + 1;
    for (const peer of this.#peers) {
      this.#leaving.delete(peer);
      if (this.#progress.has(peer)) continue;
      const pr = new Progress(next, this.#settings.maxInflightAppends);
      // Check-quorum's first window starts now: everyone gets the benefit of the doubt.
      pr.recentActive = true;
      this.#progress.set(peer, pr);
    }
    const configAt = this.#configs[this.#configs.length - 1]?.index ?? 0;
    for (const peer of [...this.#progress.keys()]) {
      if (this.#peers.includes(peer)) continue;
      if (configAt > this.#log.committed) {
        if (!this.#leaving.has(peer)) this.#leaving.set(peer, { removedAt: configAt, ticksSinceCommit: 0 });
      } else {
        this.#progress.delete(peer);
        this.#leaving.delete(peer);
      }
    }
  }

  /**
   * A member whose removal is committed and who holds the removing entry hears the commit index
   * one last time, and is forgotten. One that does not answer (it is down) is forgotten ten
   * election timeouts after the commit: it learns of its removal from an operator, not from us.
   */
  #releaseLeaving(tick = false): void {
    for (const [peer, leaving] of this.#leaving) {
      if (leaving.removedAt > this.#log.committed) continue;
      const pr = this.#progress.get(peer);
      const holds = pr !== undefined && pr.match >= leaving.removedAt;
      if (tick) leaving.ticksSinceCommit++;
      if (!holds && leaving.ticksSinceCommit < 10 * this.#settings.electionTicks) continue;
      if (holds) this.#send({ type: 'heartbeat', to: peer, term: this.#term, commit: Math.min(pr.match, this.#log.committed), context: 0 });
      this.#progress.delete(peer);
      this.#leaving.delete(peer);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Follower side of replication

  #handleAppend(m: Extract<RaftMessage, { type: 'append' }>): void {
    const committed = this.#log.committed;
    if (m.prevIndex < committed) {
      // Old news (a duplicate or a delayed append): everything through our commit index already
      // matches the leader's log (§5.4.3, leader completeness).
      this.#send({ type: 'appendResponse', to: m.from, term: this.#term, reject: false, index: committed, hint: this.#log.lastIndex() });
      return;
    }
    if (this.#log.term(m.prevIndex) !== m.prevTerm) {
      // §5.3 consistency check failed: the leader backs up, skipping to our hint.
      const hint = this.#log.rejectHint(m.prevIndex, m.prevTerm);
      this.#send({ type: 'appendResponse', to: m.from, term: this.#term, reject: true, index: m.prevIndex, hint });
      return;
    }
    if (!this.#log.acceptEntries(m.entries)) {
      throw new Error(`leader ${m.from} of term ${m.term} sent entries conflicting with committed index ${committed}: a safety bug`);
    }
    this.#noteEntries(m.entries);
    const lastNew = m.prevIndex + m.entries.length;
    // Only the prefix through lastNew is known to match the leader's log, so only that may commit.
    this.#log.commitTo(Math.min(m.commit, lastNew));
    this.#send({ type: 'appendResponse', to: m.from, term: this.#term, reject: false, index: lastNew, hint: this.#log.lastIndex() });
  }

  #handleHeartbeat(m: Extract<RaftMessage, { type: 'heartbeat' }>): void {
    // The leader sends min(our match, its commit), so this prefix is known to match its log.
    if (m.commit > this.#log.lastIndex()) {
      throw new Error(`leader ${m.from} says ${m.commit} committed but our log ends at ${this.#log.lastIndex()}: entries acknowledged were lost`);
    }
    this.#log.commitTo(m.commit);
    this.#send({ type: 'heartbeatResponse', to: m.from, term: this.#term, context: m.context });
  }

  #handleSnapshot(m: Extract<RaftMessage, { type: 'snapshot' }>): void {
    const { meta } = m.snapshot;
    if (meta.index > this.#log.committed) {
      if (this.#log.term(meta.index) === meta.term) {
        // We hold the snapshot's last entry, hence (§5.3) all before it: just commit through it.
        this.#log.commitTo(meta.index);
      } else {
        // §7: our log ends before the snapshot or disagrees with it; the snapshot replaces it.
        this.#log.restore(meta);
        this.#snapshot = m.snapshot;
        this.#snapshotToHandOut = m.snapshot;
        this.#snapshotMembership = membershipOf(meta);
        this.#configs = [];
        this.#setMembership(this.#snapshotMembership);
      }
    }
    const index = this.#log.committed;
    this.#send({ type: 'appendResponse', to: m.from, term: this.#term, reject: false, index, hint: this.#log.lastIndex() });
  }

  // ---------------------------------------------------------------------------------------------
  // Leader side of replication

  #appendEntry(kind: LogEntry['kind'], data: Uint8Array): LogEntry {
    const entry: LogEntry = { term: this.#term, index: this.#log.lastIndex() + 1, kind, data };
    this.#log.append(entry);
    if (kind === 'config') this.#noteEntries([entry]);
    return entry;
  }

  /**
   * Sends `to` the entries from its `next`, or the snapshot when those are compacted. An empty
   * append (`sendIfEmpty`) probes the follower's log or carries the commit index.
   */
  #sendAppend(to: RaftNodeId, sendIfEmpty: boolean): boolean {
    const pr = this.#progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.#log.term(prevIndex);
    if (prevTerm === undefined) return this.#sendSnapshot(to, pr);
    const entries = this.#log.slice(pr.next, this.#settings.maxAppendEntries, this.#settings.maxAppendBytes);
    if (entries.length === 0 && !sendIfEmpty) return false;
    const commit = this.#log.committed;
    this.#send({ type: 'append', to, term: this.#term, prevIndex, prevTerm, entries, commit });
    pr.sentAppend(entries[entries.length - 1]?.index);
    pr.sentCommit = Math.max(pr.sentCommit, Math.min(commit, prevIndex + entries.length));
    return true;
  }

  #sendSnapshot(to: RaftNodeId, pr: Progress): boolean {
    // A core restarted without its snapshot's data cannot send it until the application compacts again.
    if (this.#snapshot === undefined || this.#snapshot.meta.index !== this.#log.snapshotIndex) return false;
    this.#send({ type: 'snapshot', to, term: this.#term, snapshot: this.#snapshot });
    pr.becomeSnapshot(this.#snapshot.meta.index);
    return true;
  }

  /** New entries (or, with `sendIfEmpty`, a new commit index) for every follower that is not paused. */
  #broadcastAppend(sendIfEmpty = false): void {
    // Every member, and those leaving until their removal commits (see #leaving).
    for (const peer of this.#progress.keys()) this.#sendAppend(peer, sendIfEmpty);
  }

  #broadcastHeartbeat(context: number): void {
    for (const [to, pr] of this.#progress) {
      // A follower may commit only what it is known to hold: its log past `match` may still
      // disagree with ours.
      const commit = Math.min(pr.match, this.#log.committed);
      this.#send({ type: 'heartbeat', to, term: this.#term, commit, context });
      pr.sentCommit = Math.max(pr.sentCommit, commit);
    }
  }

  #handleAppendResponse(m: Extract<RaftMessage, { type: 'appendResponse' }>): void {
    const pr = this.#progress.get(m.from);
    if (pr === undefined) return; // A member removed since.
    pr.recentActive = true;
    if (m.reject) {
      if (pr.maybeDecrTo(m.index, this.#skipOlderTerm(m.index, m.hint))) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.#sendAppend(m.from, true);
      }
      return;
    }
    const updated = pr.maybeUpdate(m.index);
    if (updated && this.#leaving.has(m.from)) {
      this.#releaseLeaving();
      if (!this.#progress.has(m.from)) return;
    }
    // A probe answered at the match point we knew also tells where the logs meet.
    if (updated || (pr.state === 'probe' && m.index === pr.match)) {
      if (pr.state === 'probe') {
        pr.becomeReplicate();
      } else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
        pr.becomeProbe();
        pr.becomeReplicate();
      }
      if (updated && this.#maybeCommit()) this.#broadcastAppend(true);
      if (m.from === this.#transferee && pr.match === this.#log.lastIndex()) {
        this.#send({ type: 'timeoutNow', to: m.from, term: this.#term });
      }
    }
    // Whatever the acknowledgement said, it may have freed pipeline room.
    let sent = false;
    while (this.#sendAppend(m.from, false)) sent = true;
    // A follower that was paused when the commit index moved has not heard of it yet.
    if (!sent && pr.sentCommit < Math.min(pr.match, this.#log.committed)) this.#sendAppend(m.from, true);
  }

  /**
   * A hint equal to the rejected index means the follower holds an entry there of a term older
   * than ours (see {@link RaftLog.rejectHint}). Terms never decrease along a log, so all its
   * entries up to there are older than that term and none of ours of that term can match: skip
   * the whole run in one round trip (§5.3's optimization, done on the leader's side).
   */
  #skipOlderTerm(rejected: number, hint: number): number {
    const term = this.#log.term(rejected);
    if (hint < rejected || term === undefined) return hint;
    let index = rejected - 1;
    while (index > this.#log.snapshotIndex && this.#log.term(index) === term) index--;
    return index;
  }

  #handleHeartbeatResponse(m: Extract<RaftMessage, { type: 'heartbeatResponse' }>): void {
    const pr = this.#progress.get(m.from);
    if (pr === undefined) return; // A member removed since.
    pr.heardFrom();
    // An empty append still goes out when there is nothing new: if the pipeline lost its last
    // append, the follower's rejection of this one is how the leader finds out; a probed
    // follower's acceptance of it moves it to replicate.
    if (pr.match < this.#log.lastIndex() || pr.state === 'probe') this.#sendAppend(m.from, true);
    if (m.context > 0) this.#acknowledgeReads(m.from, m.context);
  }

  /**
   * §5.3, §5.4.2: the highest index a majority holds becomes committed, but only if it is of the
   * current term; older entries commit with it, never by counting replicas (Figure 8).
   */
  #maybeCommit(): boolean {
    // Only voters count, and this leader only while it is one (thesis §4.2.2: a leader removing
    // itself manages the group without counting its own copy until the change commits).
    const matches = this.#membership.voters.map((v) => (v === this.id ? this.#log.stableIndex() : (this.#progress.get(v)?.match ?? 0)));
    matches.sort((a, b) => b - a);
    const candidate = this.#settings.unsafeCommitWithoutMajority ? this.#log.stableIndex() : matches[this.#majority() - 1]!;
    if (candidate <= this.#log.committed || this.#log.term(candidate) !== this.#term) return false;
    const before = this.#log.committed;
    this.#log.commitTo(candidate);
    if (this.#leaving.size > 0) this.#releaseLeaving();
    for (let i = before + 1; i <= candidate; i++) {
      const e = this.#log.entry(i)!;
      if (e.term === this.#term && e.kind !== 'noop') {
        this.#pendingProposals--;
        if (e.kind === 'command') this.#pendingProposalBytes -= e.data.byteLength;
      }
    }
    if (!isVoter(this.#membership, this.id) && (this.#configs[this.#configs.length - 1]?.index ?? 0) <= candidate) {
      // Thesis §4.2.2: the change that removed (or demoted) this leader is committed; it hands
      // over by stepping down. The most caught-up voter is told to campaign at once (thesis
      // §3.10) instead of waiting out an election timeout.
      const successor = this.#voterPeers.find((v) => this.#progress.get(v)?.match === this.#log.lastIndex());
      if (successor !== undefined) this.#send({ type: 'timeoutNow', to: successor, term: this.#term });
      this.#becomeFollower(this.#term, undefined);
      return false;
    }
    if (this.#readsAwaitingTermCommit.length > 0) {
      const waiting = this.#readsAwaitingTermCommit;
      this.#readsAwaitingTermCommit = [];
      for (const requestId of waiting) this.#startReadRound(requestId);
    }
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // ReadIndex (thesis §6.4)

  #startReadRound(requestId: number): void {
    const index = this.#log.committed;
    const selfVotes = isVoter(this.#membership, this.id);
    if (this.#settings.unsafeReadIndexWithoutQuorum || (this.#majority() === 1 && selfVotes)) {
      this.#readStates.push({ requestId, index });
      return;
    }
    // Step 3: a heartbeat round answered by a majority proves no newer leader existed when the
    // read arrived, so `index` covers every write completed before it.
    const context = ++this.#lastReadContext;
    this.#readRounds.push({ context, requestId, index, acks: new Set(selfVotes ? [this.id] : []) });
    this.#broadcastHeartbeat(context);
  }

  /**
   * A follower answered the heartbeat of round `context`: it still followed us after every round
   * up to that one started, so the answer counts for all of them.
   */
  #acknowledgeReads(from: RaftNodeId, context: number): void {
    // A learner's word proves nothing about who leads: only voters elect.
    if (!isVoter(this.#membership, from)) return;
    for (const round of this.#readRounds) {
      if (round.context > context) break;
      round.acks.add(from);
    }
    const voterAcks = (acks: Set<RaftNodeId>) => this.#membership.voters.filter((v) => acks.has(v)).length;
    let done = 0;
    while (done < this.#readRounds.length && voterAcks(this.#readRounds[done]!.acks) >= this.#majority()) done++;
    for (const round of this.#readRounds.splice(0, done)) this.#readStates.push({ requestId: round.requestId, index: round.index });
  }

  // ---------------------------------------------------------------------------------------------
  // Plumbing

  #send(m: DistributiveOmit<RaftMessage, 'from'>): void {
    this.#messages.push({ ...m, from: this.id } as RaftMessage);
  }

  #hardState(): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#log.committed };
  }

  #hardStateChanged(): boolean {
    const h = this.#handedOutHardState;
    return h.term !== this.#term || h.vote !== this.#vote || h.commit !== this.#log.committed;
  }

  #softStateChanged(): boolean {
    const s = this.#handedOutSoftState;
    return s.role !== this.#role || s.leader !== this.#leader;
  }
}

/**
 * How far a learner may trail `committed` and be promoted: at most `max` entries, and at most a
 * hundredth of the log, so that a learner of a short log is not promoted before it holds it.
 */
export function promoteLag(max: number, committed: number): number {
  return Math.min(max, Math.floor(committed / 100));
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
