import { ReplikitError } from '../errors.js';
import { majority } from '../policy/majority.js';
import type { FaultEvent } from './nemesis.js';
import type { SeededRandom } from './seeded-random.js';
import type { MembershipChangeKind, SimCluster } from './sim-cluster.js';

/** How the membership nemesis behaves; every choice inside comes from its random source. */
export interface MembershipNemesisOptions {
  /** Virtual ms between actions. */
  readonly pauseMs: readonly [number, number];
  /**
   * Whether node `id`'s disk may go now without losing what the policy promises to keep: a node
   * is retired (stopped for good, its disk gone) once its removal committed and this holds. CP:
   * always (a removed node is in no quorum). AP: the loss guard (loss-guard.ts). Causal: its own
   * writes reached every member and what it holds is held elsewhere.
   */
  readonly canLose: (id: string) => boolean;
  /**
   * The share of actions that ask for two changes at once (the correct build refuses the second
   * while the first is under way; a build without that check must be caught). @default 0.1
   */
  readonly overlapRate?: number;
  /** Voters kept between these. @default [3, 5] */
  readonly voters?: readonly [number, number];
  /**
   * Before a new node starts copying, wait until every running node has applied its addition (the
   * causal policy needs it: a member that does not know the new one yet may truncate writes the
   * new one's copy missed). @default false
   */
  readonly startWhenKnown?: boolean;
}

/** The counters the membership nemesis keeps in the run's stats (each counts what landed). */
export const MEMBERSHIP_STATS = [
  'membershipAdds',
  'membershipPromotions',
  'membershipPromotionsBehind',
  'membershipRemovals',
  'membershipReplacements',
  'membershipRetirements',
  'membershipOverlapping',
  'membershipRefused',
] as const;

/** A change that did not commit, with the refusal (or the unknown outcome) that ended it. */
class ChangeFailed extends Error {}

/**
 * Changes the cluster's membership while a workload runs and the fault nemesis (nemesis.ts) does
 * its worst, the way an operator does (docs/operations.md): grow (add a node, wait for it to
 * serve, promote it — retrying while MEMBER_BEHIND), shrink (remove a voter or a learner, never
 * below the fewest voters, then retire it once its disk may go), and replace (a new node added
 * and promoted at once — retrying while MEMBER_BEHIND — then an old one removed and retired; or,
 * with a voter to spare, a dead or wiped one removed first). Voters stay between 3 and 5 and
 * enough of them can vote (a node that lost its disk never votes again: replacing it gives the
 * cluster a full voter back). Every change goes through the membership's leader
 * (SimCluster.changeMembership). A node is removed only while no learner or wiped node is still
 * copying its peers' state (it copies from the peers it started with, and waits for any that
 * stopped for good); a promoted voter is trusted to have caught up, which is what promotion
 * promises. Now and then it asks for two changes at once (see overlapRate), half the time under a
 * partition that lets the two configurations elect leaders of their own.
 *
 * What landed is counted into `stats` (see MEMBERSHIP_STATS); each action is recorded in
 * `schedule` with its virtual time, beside the fault nemesis's.
 */
export class MembershipNemesis {
  #running = true;
  /**
   * A removal (and the retirement after it) or an addition (until the new node starts) is under
   * way: the fault nemesis wipes nothing meanwhile (see wipeKeepsVoters).
   */
  #busy = false;
  /** Removed, not retired yet: waiting until their disk may go. */
  readonly #departing = new Set<string>();
  #nextId: number;
  #current: Promise<void> = Promise.resolve();

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: SeededRandom,
    private readonly options: MembershipNemesisOptions,
    private readonly stats: Record<string, number>,
    private readonly schedule: FaultEvent[],
  ) {
    for (const k of MEMBERSHIP_STATS) stats[k] ??= 0;
    this.#nextId = cluster.nodeIds.length + 1;
  }

  /**
   * True while a removal or an addition is under way: a wipe now could leave a recovering node
   * waiting for a peer that is gone, or two nodes copying at once (see copyingNodes).
   */
  get busy(): boolean {
    return this.#busy;
  }

  stop(): void {
    this.#running = false;
  }

  async run(): Promise<void> {
    while (this.#running) {
      await this.#sleep(this.random.between(this.options.pauseMs[0], this.options.pauseMs[1]));
      if (!this.#running) break;
      this.#current = this.#act();
      await this.#current;
    }
  }

  /**
   * After the run (the network healed, every node restarted): retires the nodes removed and not
   * retired yet, once their disks may go (waiting up to `limitMs` for them to hand over).
   */
  async finish(limitMs = 10_000): Promise<void> {
    this.stop();
    const deadline = this.cluster.scheduler.nowMs() + limitMs;
    // A removal whose outcome was unknown may have landed since, or land now that the network
    // healed: the membership says, once nothing is pending in its log.
    // A change left uncommitted in some node's log may still be committed by a later leader: it is
    // settled once the leader and every member it knows hold the same committed membership, with
    // nothing pending in any of their logs.
    const settled = () => {
      const leader = this.cluster.membershipLeader();
      if (leader === undefined) return false;
      const known = this.cluster.node(leader).membership;
      return this.cluster.nodeIds.every((id) => {
        if (!known.members.some((m) => m.id === id)) return true;
        if (!this.cluster.isUp(id)) return false;
        const node = this.cluster.node(id);
        return node.systemGroup?.changePending === false && node.membership.version === known.version;
      });
    };
    while (!settled() && this.cluster.scheduler.nowMs() < deadline) await this.#sleep(20);
    const removed = this.#state()?.removed ?? [];
    for (const id of this.cluster.nodeIds) {
      if (!removed.includes(id) || this.#departing.has(id)) continue;
      this.stats.membershipRemovals!++;
      this.#record(`remove ${id} landed late`);
      this.#departing.add(id);
    }
    for (const id of [...this.#departing]) await this.#retireWhenSafe(id, Math.max(0, deadline - this.cluster.scheduler.nowMs()), true);
  }

  async #act(): Promise<void> {
    // Changes go through the membership's leader: wait a while for one (an election after its
    // leader crashed takes a second or two on the system keyspace's timing).
    const until = this.cluster.scheduler.nowMs() + 2_000;
    while (this.#state() === undefined && this.cluster.scheduler.nowMs() < until && this.#running) await this.#sleep(20);
    const state = this.#state();
    if (state === undefined || !this.#running) return;
    const { voters, learners } = state;
    // An addition whose outcome was unknown (or a join given up whose removal failed) that
    // landed after all: its node starts now, when it may copy (see #add).
    for (const id of [...voters, ...learners]) {
      if (this.cluster.stores.has(id)) continue;
      if (copyingNodes(this.cluster).length > 0) return;
      this.#busy = true;
      try {
        if (this.options.startWhenKnown && !(await this.#untilKnown(id, 3_000))) return;
        this.cluster.addNode(id);
        this.#record(`add ${id} landed late: it starts now`);
      } finally {
        this.#busy = false;
      }
      return;
    }
    // A removal whose outcome was unknown, and that landed after all: its node goes now.
    for (const id of this.cluster.nodeIds) {
      if (!state.removed.includes(id) || this.#departing.has(id)) continue;
      this.stats.membershipRemovals!++;
      this.#record(`remove ${id} landed late`);
      this.#busy = true;
      try {
        await this.#retireWhenSafe(id, 3_000);
      } finally {
        this.#busy = false;
      }
      return;
    }
    const [minVoters, maxVoters] = this.options.voters ?? [3, 5];
    const roll = this.random.next();
    try {
      const overlap = this.options.overlapRate ?? 0.1;
      // A voter the membership's leader believes dead (crashed, or cut off) is replaced as an
      // operator would: removed first while a voter is to spare, then a new node added.
      const dead = voters.filter((id) => this.#looksDead(id) && this.#removable(id, voters));
      if (dead.length > 0 && voters.length > minVoters && roll < 0.5) await this.#replaceDead(this.random.pick(dead));
      else if (roll < overlap) await this.#overlap(voters, learners, minVoters, maxVoters);
      else if (roll < overlap + 0.3 && voters.length > minVoters) await this.#rackOutage(voters);
      else if (roll < overlap + (1 - overlap) * 0.3 && voters.length < maxVoters) await this.#grow();
      else if (roll < overlap + (1 - overlap) * 0.6 && (voters.length > minVoters || learners.length > 0)) await this.#shrink(voters, learners, minVoters);
      else await this.#replace(voters, minVoters, maxVoters);
    } catch (error) {
      if (!(error instanceof ChangeFailed)) throw error;
      this.stats.membershipRefused!++;
      this.#record(`membership change failed: ${error.message}`);
    }
  }

  /** The committed membership as the membership's leader knows it; undefined while none leads. */
  #state(): { voters: readonly string[]; learners: readonly string[]; removed: readonly string[] } | undefined {
    const leader = this.cluster.membershipLeader();
    if (leader === undefined) return undefined;
    const m = this.cluster.node(leader).membership;
    return { voters: m.voters, learners: m.learners, removed: m.removed };
  }

  /** Grow: a new node, added, started, waited for until it serves, then promoted. */
  async #grow(): Promise<void> {
    const id = await this.#add();
    if (id === undefined) return;
    await this.#untilServing(id, 3_000);
    if (await this.#promote(id)) this.#record(`grew by ${id}`);
  }

  /** Shrink: remove a voter (never below the fewest) or a learner, then retire it. */
  async #shrink(voters: readonly string[], learners: readonly string[], minVoters: number): Promise<void> {
    const candidates = [...(voters.length > minVoters ? voters : []), ...learners].filter((id) => this.#removable(id, voters));
    if (candidates.length === 0) return;
    await this.#remove(this.#pickVictim(candidates));
  }

  /** Replaces voter `old`, which looks dead: removed (and retired) first, then a new node added and promoted. */
  async #replaceDead(old: string): Promise<void> {
    await this.#remove(old);
    const id = await this.#add();
    if (id === undefined) return;
    await this.#untilServing(id, 3_000);
    if (await this.#promote(id)) {
      this.stats.membershipReplacements!++;
      this.#record(`replaced ${old} (dead) by ${id}`);
    }
  }

  /**
   * A rack loses its network: two nodes (a voter other than the leader, and one more) are cut off
   * from the rest; the operator replaces the voter once the leader sees it dead (removed and
   * retired while the rack is still cut off), the rack comes back a moment later, and a new node
   * is added and promoted. Whatever the other node of the rack had in flight meets the new
   * membership as the rack returns.
   */
  async #rackOutage(voters: readonly string[]): Promise<void> {
    const leader = this.cluster.membershipLeader();
    const victims = voters.filter((id) => id !== leader && this.#removable(id, voters));
    if (leader === undefined || victims.length === 0) return;
    const victim = this.random.pick(victims);
    const others = this.cluster.nodeIds.filter((id) => id !== leader && id !== victim);
    if (others.length === 0) return;
    const rack = [victim, this.random.pick(others)];
    const rest = this.cluster.nodeIds.filter((id) => !rack.includes(id));
    this.#record(`rack ${rack.join(' ')} cut off from ${rest.join(' ')}`);
    let holding = true;
    // The fault nemesis heals the network now and then: the rack stays cut off until it comes back.
    const hold = (async () => {
      while (holding) {
        this.cluster.network.partition([rack, rest]);
        await this.#sleep(10);
      }
    })();
    try {
      const until = this.cluster.scheduler.nowMs() + 1_000;
      while (!this.#looksDead(victim) && this.cluster.scheduler.nowMs() < until) await this.#sleep(10);
      if (this.#looksDead(victim) && this.#removable(victim, this.#state()?.voters ?? voters)) await this.#remove(victim);
      await this.#sleep(this.random.between(20, 300));
    } finally {
      holding = false;
      await hold;
      this.cluster.network.heal();
      this.#record(`rack ${rack.join(' ')} back`);
    }
    if (!this.cluster.retired.has(victim)) return;
    const id = await this.#add();
    if (id === undefined) return;
    await this.#untilServing(id, 3_000);
    if (await this.#promote(id)) {
      this.stats.membershipReplacements!++;
      this.#record(`replaced ${victim} (rack outage) by ${id}`);
    }
  }

  /** True when the membership's leader believes `id` dead: down, or not heard from (cut off). */
  #looksDead(id: string): boolean {
    const leader = this.cluster.membershipLeader();
    if (leader === undefined || id === leader) return false;
    if (!this.cluster.isUp(id)) return true;
    const view = this.cluster.viewOf(leader);
    return view?.hasPeer(id) === true && !view.isAlive(id);
  }

  /**
   * Replace: with a voter to spare, remove a voter first (dead, wiped or not) and add a new one;
   * otherwise add a new one, promote it at once (retrying while it is behind), then remove an old one.
   */
  async #replace(voters: readonly string[], minVoters: number, maxVoters: number): Promise<void> {
    const removable = voters.filter((id) => this.#removable(id, voters));
    if (removable.length === 0) return;
    if (voters.length > minVoters && this.random.chance(0.5)) {
      const old = this.#pickVictim(removable);
      await this.#remove(old);
      const id = await this.#add();
      if (id === undefined) return;
      if (await this.#promote(id)) {
        this.stats.membershipReplacements!++;
        this.#record(`replaced ${old} by ${id}`);
      }
      return;
    }
    if (voters.length >= maxVoters) return;
    const id = await this.#add();
    if (id === undefined) return;
    if (!(await this.#promote(id))) return;
    const now = this.#state();
    if (now === undefined) return;
    const old = this.#pickVictim(now.voters.filter((v) => v !== id && this.#removable(v, now.voters)), true);
    if (old === undefined) return;
    await this.#remove(old);
    this.stats.membershipReplacements!++;
    this.#record(`replaced ${old} by ${id}`);
  }

  /**
   * Two changes at once: two learners promoted (three voters become five) or two voters removed
   * (five become three); otherwise a step toward one of those (a learner added, one promoted, or
   * a voter removed).
   */
  async #overlap(voters: readonly string[], learners: readonly string[], minVoters: number, maxVoters: number): Promise<void> {
    const ready = learners.filter((id) => this.cluster.isServing(id) && !this.cluster.nonVoting.has(id));
    // Not the leader: a configuration without it would need the partition's other side to commit.
    const leaderNow = this.cluster.membershipLeader();
    const removable = voters.filter((id) => id !== leaderNow && this.#removable(id, voters, 2));
    const pairs: [MembershipChangeKind, string][][] = [];
    if (ready.length >= 2 && voters.length + 2 <= maxVoters) pairs.push([['promote', ready[0]!], ['promote', ready[1]!]]);
    if (removable.length >= 2 && voters.length - 2 >= minVoters) pairs.push([['remove', removable[0]!], ['remove', removable[1]!]]);
    if (pairs.length === 0) {
      if (voters.length + 2 <= maxVoters && ready.length < 2) {
        const id = await this.#add();
        if (id !== undefined) await this.#untilServing(id, 3_000);
      } else if (voters.length < maxVoters && ready.length > 0) {
        await this.#promote(ready[0]!);
      } else if (voters.length > minVoters) {
        await this.#shrink(voters, learners, minVoters);
      }
      return;
    }
    const pair = this.random.pick(pairs);
    this.stats.membershipOverlapping!++;
    // Half the time under a partition: the cluster cut in two at random, for long enough that the
    // side without the leader can elect one of its own (the system keyspace's elections take 1–2 s).
    // Half the time under a partition that cuts the leader, the nodes it promotes and (when it
    // removes) one voter that stays off from the others: the configuration the two changes lead
    // to can commit on the leader's side while the old one elects a leader on the other side
    // (the system keyspace's elections take 1–2 s, so the partition holds 2.5 s).
    const leader = leaderNow;
    const split = leader !== undefined && this.random.chance(0.5);
    let splitUntil = 0;
    let splitGroups: string[][] = [];
    if (split) {
      const side = new Set([leader, ...pair.filter(([k]) => k === 'promote').map(([, id]) => id)]);
      if (pair.some(([k]) => k === 'remove')) {
        const staying = voters.filter((v) => !side.has(v) && !pair.some(([, id]) => id === v));
        if (staying.length > 0) side.add(this.random.pick(staying));
      }
      const other = this.cluster.nodeIds.filter((id) => !side.has(id));
      splitGroups = [[...side], other];
      this.cluster.network.partition(splitGroups);
      splitUntil = this.cluster.scheduler.nowMs() + 3_000;
      this.#record(`split ${[...side].join(' ')} | ${other.join(' ')} (around two changes at once)`);
    }
    this.#record(`two changes at once: ${pair.map(([k, id]) => `${k} ${id}`).join(', ')}`);
    const removing = pair.some(([k]) => k === 'remove');
    if (removing) this.#busy = true;
    try {
      // The fault nemesis heals the network now and then: the split is put back until it ends.
      let holding = split;
      const hold = (async () => {
        while (holding && this.#running && this.cluster.scheduler.nowMs() < splitUntil) {
          this.cluster.network.partition(splitGroups);
          await this.#sleep(10);
        }
      })();
      const results = await Promise.all(pair.map(([kind, id]) => this.#changeRetrying(kind, id, 1_500)));
      await hold;
      holding = false;
      if (split) {
        this.cluster.network.heal();
        this.#record('heal (after two changes at once)');
      }
      for (const [i, [kind, id]] of pair.entries()) {
        if (!results[i] && !(await this.#landed(kind, id))) continue;
        if (kind === 'promote') this.stats.membershipPromotions!++;
        else {
          this.stats.membershipRemovals!++;
          await this.#retireWhenSafe(id, 3_000);
        }
      }
    } finally {
      this.#busy = false;
    }
  }

  /**
   * One change, retried while the learner is behind or another change is under way (up to
   * `limitMs`); true when it committed. A refusal is recorded.
   */
  async #changeRetrying(kind: MembershipChangeKind, id: string, limitMs: number): Promise<boolean> {
    const deadline = this.cluster.scheduler.nowMs() + limitMs;
    for (;;) {
      try {
        await this.cluster.changeMembership(kind, id);
        return true;
      } catch (error) {
        const again = error instanceof ReplikitError && (error.reason === 'MEMBER_BEHIND' || error.reason === 'MEMBERSHIP_CHANGE_IN_PROGRESS');
        if (!again || this.cluster.scheduler.nowMs() >= deadline || !this.#running) {
          this.#record(`${kind} ${id} refused: ${describe(error)}`);
          return false;
        }
        if (error.reason === 'MEMBER_BEHIND') this.stats.membershipPromotionsBehind!++;
        await this.#sleep(20);
      }
    }
  }

  /**
   * Adds a new node (a fresh id) and starts it; its id, or undefined when the addition did not
   * land, or when another node is still copying its peers' state (see copyingNodes).
   */
  async #add(): Promise<string | undefined> {
    if (copyingNodes(this.cluster).length > 0) return undefined;
    this.#busy = true;
    try {
      return await this.#addAndStart();
    } finally {
      this.#busy = false;
    }
  }

  async #addAndStart(): Promise<string | undefined> {
    let id = `n${this.#nextId++}`;
    while (this.cluster.nodeIds.includes(id) || this.cluster.retired.has(id) || this.cluster.stores.has(id)) id = `n${this.#nextId++}`;
    try {
      await this.cluster.changeMembership('add', id);
    } catch (error) {
      if (!(await this.#landed('add', id))) throw new ChangeFailed(`add ${id}: ${describe(error)}`);
    }
    this.stats.membershipAdds!++;
    if (this.options.startWhenKnown && !(await this.#untilKnown(id, 3_000))) {
      // A member that does not know the new node may truncate writes its copy will miss: the
      // join is given up (the member removed again, never started).
      this.#record(`add ${id}: not every member knows it after 3 s; given up`);
      try {
        await this.cluster.changeMembership('remove', id);
      } catch (error) {
        // Still a member, never started: a later action starts it (see #act) once every member knows it.
        if (!(await this.#landed('remove', id))) this.#record(`remove ${id} failed (${describe(error)}); it stays a member that has not started`);
      }
      return undefined;
    }
    this.cluster.addNode(id);
    this.#record(`add ${id} (joins as a learner)`);
    return id;
  }

  /** Promotes learner `id`, retrying while it is behind; true once it is a voter. */
  async #promote(id: string, limitMs = 3_000): Promise<boolean> {
    const deadline = this.cluster.scheduler.nowMs() + limitMs;
    for (;;) {
      if (this.cluster.nonVoting.has(id) || !this.#running) return false;
      try {
        await this.cluster.changeMembership('promote', id);
        this.stats.membershipPromotions!++;
        this.#record(`promote ${id}`);
        return true;
      } catch (error) {
        const behind = error instanceof ReplikitError && error.reason === 'MEMBER_BEHIND';
        if (behind) this.stats.membershipPromotionsBehind!++;
        if (error instanceof ReplikitError && error.reason === 'ALREADY_VOTER') return true;
        if ((!behind && !(error instanceof ReplikitError && error.reason === 'MEMBERSHIP_CHANGE_IN_PROGRESS')) || this.cluster.scheduler.nowMs() >= deadline) {
          if (await this.#landed('promote', id)) {
            this.stats.membershipPromotions!++;
            this.#record(`promote ${id}`);
            return true;
          }
          this.stats.membershipRefused!++;
          this.#record(`promote ${id} refused: ${describe(error)}`);
          return false;
        }
        await this.#sleep(50);
      }
    }
  }

  /** Removes `id`, then retires it once its disk may go. */
  async #remove(id: string): Promise<void> {
    this.#busy = true;
    try {
      try {
        await this.cluster.changeMembership('remove', id);
      } catch (error) {
        if (!(await this.#landed('remove', id))) throw new ChangeFailed(`remove ${id}: ${describe(error)}`);
      }
      this.stats.membershipRemovals!++;
      this.#record(`remove ${id}`);
      await this.#retireWhenSafe(id, 3_000);
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Retires removed node `id` once its disk may go (restarting it meanwhile if it is down and has
   * something to hand over); left departing, for {@link finish}, when that takes over `limitMs`
   * (or retired anyway when `force`).
   */
  async #retireWhenSafe(id: string, limitMs: number, force = false): Promise<void> {
    const deadline = this.cluster.scheduler.nowMs() + limitMs;
    for (;;) {
      if (this.options.canLose(id) || (force && this.cluster.scheduler.nowMs() >= deadline)) {
        this.#departing.delete(id);
        this.cluster.retire(id);
        this.stats.membershipRetirements!++;
        this.#record(`retire ${id}`);
        return;
      }
      // Stopped (the run's operations are done): finish() retires it after the heal.
      if (this.cluster.scheduler.nowMs() >= deadline || (!this.#running && !force)) {
        this.#departing.add(id);
        this.#record(`${id} is removed and not retired yet (its disk may not go yet, or the run is ending)`);
        return;
      }
      // A removed node hands over what it holds only while it runs.
      if (!this.cluster.isUp(id) && !this.cluster.recovering.has(id)) this.cluster.start(id);
      await this.#sleep(50);
    }
  }

  /**
   * Whether `id` may be removed now: its disk may go, no other node is still copying its peers'
   * state (a learner not serving yet, or a wiped node), and enough voters are left that can vote.
   */
  #removable(id: string, voters: readonly string[], removing = 1): boolean {
    if (this.#departing.has(id) || !this.options.canLose(id)) return false;
    for (const other of this.cluster.recovering) if (other !== id) return false;
    const m = this.#state();
    if (m === undefined) return false;
    for (const learner of m.learners) if (learner !== id && this.cluster.isUp(learner) && !this.cluster.isServing(learner)) return false;
    if (!voters.includes(id)) return true;
    const left = voters.length - removing;
    const canVote = voters.filter((v) => v !== id && !this.cluster.nonVoting.has(v)).length - (removing - 1);
    return canVote >= majority(left);
  }

  /** A voter to remove: one that cannot vote any more when there is one (replacing it gives a full voter back). */
  #pickVictim(candidates: readonly string[], optional?: false): string;
  #pickVictim(candidates: readonly string[], optional: true): string | undefined;
  #pickVictim(candidates: readonly string[], optional = false): string | undefined {
    if (candidates.length === 0) {
      if (optional) return undefined;
      throw new Error('no candidate');
    }
    const nonVoting = candidates.filter((id) => this.cluster.nonVoting.has(id));
    if (nonVoting.length > 0 && this.random.chance(0.7)) return this.random.pick(nonVoting);
    // A node that looks dead to the membership's leader (down, or cut off) is what an operator replaces.
    const dead = candidates.filter((id) => this.#looksDead(id));
    if (dead.length > 0 && this.random.chance(0.6)) return this.random.pick(dead);
    return this.random.pick(candidates);
  }

  /** After a change whose outcome is unknown: waits up to a second for the membership to say whether it landed. */
  async #landed(kind: MembershipChangeKind, id: string): Promise<boolean> {
    const deadline = this.cluster.scheduler.nowMs() + 1_000;
    for (;;) {
      const m = this.#state();
      if (m !== undefined) {
        const landed = kind === 'add' ? m.learners.includes(id) || m.voters.includes(id) : kind === 'promote' ? m.voters.includes(id) : !m.voters.includes(id) && !m.learners.includes(id);
        if (landed) return true;
      }
      if (this.cluster.scheduler.nowMs() >= deadline) return false;
      await this.#sleep(50);
    }
  }

  async #untilServing(id: string, limitMs: number): Promise<boolean> {
    const deadline = this.cluster.scheduler.nowMs() + limitMs;
    while (!this.cluster.isServing(id)) {
      if (this.cluster.scheduler.nowMs() >= deadline || this.cluster.retired.has(id) || !this.#running) return false;
      await this.#sleep(20);
    }
    return true;
  }

  /** Waits until every node is up and has applied `id`'s addition (see startWhenKnown); false after `limitMs`. */
  async #untilKnown(id: string, limitMs: number): Promise<boolean> {
    const deadline = this.cluster.scheduler.nowMs() + limitMs;
    const knows = (n: string) => this.cluster.isUp(n) && this.cluster.node(n).membership.members.some((m) => m.id === id);
    while (!this.cluster.nodeIds.every(knows)) {
      if (this.cluster.scheduler.nowMs() >= deadline || !this.#running) return false;
      await this.#sleep(10);
    }
    return true;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => this.cluster.scheduler.setTimer(ms, resolve));
  }

  #record(action: string): void {
    this.schedule.push({ atMs: Math.round(this.cluster.scheduler.nowMs() * 100) / 100, action });
  }

  /** The action under way, for the caller to let it end after {@link stop}. */
  get current(): Promise<void> {
    return this.#current;
  }
}

/**
 * Membership runs: whether wiping node `id` (down) keeps enough voters that can vote. A node that
 * lost a disk it served from never votes again (its Raft groups forgot their votes), so at most
 * one voter may be in that state and the others must be a majority: the cluster's membership and
 * its CP keyspaces keep electing leaders, and the membership nemesis replaces that voter in time.
 * Nothing is wiped while a removal is under way (a node recovering from the peers it started with
 * would wait for ever for one retired meanwhile).
 */
export function wipeKeepsVoters(cluster: SimCluster, membership: MembershipNemesis, id: string): boolean {
  if (membership.busy) return false;
  // One node copying its peers' state at a time (see copyingNodes).
  if (copyingNodes(cluster).some((other) => other !== id)) return false;
  const leader = cluster.membershipLeader();
  if (leader === undefined) return false;
  const { voters } = cluster.node(leader).membership;
  if (!voters.includes(id)) return true;
  const nonVoting = new Set([...voters.filter((v) => cluster.nonVoting.has(v)), id]);
  return nonVoting.size <= 1 && voters.length - nonVoting.size >= majority(voters.length);
}

/**
 * The nodes copying their peers' state before they serve: wiped ones and new ones joining, down
 * or up (a down one copies when it restarts). The simulation lets one do so at a time. Two at once may wait for each other for
 * ever: a node copies only from serving peers, and a causal keyspace copies from every other
 * member, the other copying node included (a node-layer limitation the membership runs found; see
 * test/sim/membership.test.ts).
 */
export function copyingNodes(cluster: SimCluster): string[] {
  return cluster.nodeIds.filter(
    (id) => cluster.recovering.has(id) || cluster.isJoining(id) || (cluster.isUp(id) && cluster.node(id).phase !== 'serving' && cluster.node(id).phase !== 'failed'),
  );
}

/** Runs virtual time until a node leads the cluster's membership, or `limitMs` passes; true when one does. */
export async function untilMembershipLeader(cluster: SimCluster, limitMs: number): Promise<boolean> {
  const deadline = cluster.scheduler.nowMs() + limitMs;
  while (cluster.membershipLeader() === undefined) {
    if (cluster.scheduler.nowMs() >= deadline) return false;
    await cluster.scheduler.advance(10);
  }
  return true;
}

function describe(error: unknown): string {
  if (error instanceof ReplikitError) return `${error.reason}: ${error.message.slice(0, 160)}`;
  return error instanceof Error ? error.message.slice(0, 160) : String(error);
}
