import type { Server } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { majorityOf, type MembershipView, type MemberSnapshot, type QuorumStatus } from '../failure/index.js';
import type { Logger } from '../logging/logger.js';
import type { PolicyName } from '../policy/policy.js';

/** The health name of the client API; a keyspace's own is `replikit.v1.KvService/<keyspace>`. */
export const KV_SERVICE_HEALTH_NAME = 'replikit.v1.KvService';
/** Status answers whatever the node's state: it is how an operator learns why it is NOT_SERVING. */
export const CLUSTER_SERVICE_HEALTH_NAME = 'replikit.v1.ClusterService';

/** The health-check name of one keyspace, e.g. `replikit.v1.KvService/default`. */
export function keyspaceHealthName(keyspace: string): string {
  return `${KV_SERVICE_HEALTH_NAME}/${keyspace}`;
}

/** The facts health is judged from: plain data, so that the judgement is a pure function. */
export interface HealthInput {
  readonly keyspaces: readonly { readonly name: string; readonly policy: PolicyName }[];
  readonly quorum: (keyspace: string) => QuorumStatus;
  /** Every member, this node included (see MembershipView.members). */
  readonly members: readonly MemberSnapshot[];
  readonly maxClockOffsetMs: number;
  /** Why the node itself does not serve yet (starting, recovering, stopped); empty while it serves. */
  readonly nodeNotServing?: string;
}

/** What {@link judgeHealth} decides. */
export interface HealthVerdict {
  /** Why the node as a whole is NOT_SERVING; empty while it is SERVING. */
  readonly reasons: readonly string[];
  /** Per keyspace: why it is NOT_SERVING; empty while it is SERVING. */
  readonly keyspaces: ReadonlyMap<string, readonly string[]>;
}

/**
 * Decides whether the node can serve, and why not:
 * - a CP keyspace whose quorum is `unreachable` cannot serve (its requests are refused at once);
 *   `pending` (the startup grace period) still serves, as the policy does. AP and causal keyspaces
 *   serve from the local replica whatever the quorum, so quorum loss never makes them NOT_SERVING.
 * - a clock that is off by more than `maxClockOffsetMs` against a majority of the peers is most
 *   likely this node's own: its HLC tags drift from real time and peers refuse its messages, so
 *   every keyspace is NOT_SERVING. Against a minority it is the peers' clocks that are off, and
 *   they will say so themselves. The node keeps running either way: unlike stores that exit on
 *   clock skew, it waits for the clock to be fixed and serves again.
 * The node as a whole is NOT_SERVING when any keyspace is.
 */
export function judgeHealth(input: HealthInput): HealthVerdict {
  const peers = input.members.filter((m) => !m.self);
  const skewed = peers.filter((m) => m.clockOffsetExceeded);
  const clockReasons: string[] = input.nodeNotServing ? [input.nodeNotServing] : [];
  if (peers.length > 0 && skewed.length >= majorityOf(peers.length)) {
    const offsets = skewed.map((m) => `${m.id} ${signed(m.clockOffsetMs ?? 0)} ms`).join(', ');
    clockReasons.push(
      `this node's clock is off by more than ${input.maxClockOffsetMs} ms against ${skewed.length} of ${peers.length} peers (${offsets})`,
    );
  }
  const keyspaces = new Map<string, readonly string[]>();
  const reasons: string[] = [...clockReasons];
  for (const { name, policy } of input.keyspaces) {
    const own: string[] = [...clockReasons];
    if (policy === 'cp') {
      const q = input.quorum(name);
      if (q.state === 'unreachable') {
        const why = `quorum lost for CP keyspace ${name}: ${q.aliveCount} of ${q.replicaCount} replicas alive, a quorum needs ${q.quorumSize}`;
        own.push(why);
        reasons.push(why);
      }
    }
    keyspaces.set(name, own);
  }
  return { reasons, keyspaces };
}

function signed(ms: number): string {
  const rounded = Math.round(ms);
  return rounded >= 0 ? `+${rounded}` : String(rounded);
}

/** What a {@link NodeHealth} watches. */
export interface NodeHealthOptions {
  readonly nodeId: string;
  readonly view: MembershipView;
  readonly keyspaces: () => { name: string; policy: PolicyName }[];
  readonly nowMs: () => number;
  readonly logger: Logger;
  /** Why the node itself does not serve (see NodeCore's phase); empty while it serves. */
  readonly nodeNotServing?: () => string;
}

/**
 * The standard gRPC health service (grpc.health.v1) of one node, kept current from its
 * membership view: it re-judges on every member, quorum and clock event (not on a timer, and not
 * per request), sets `""`, `replikit.v1.KvService` and one name per keyspace, and logs one line
 * whenever the node as a whole changes between SERVING and NOT_SERVING, saying why.
 */
export class NodeHealth {
  readonly #o: NodeHealthOptions;
  readonly #impl: HealthImplementation;
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #unsubscribe: (() => void)[] = [];
  #verdict: HealthVerdict = { reasons: [], keyspaces: new Map() };
  #loggedServing: boolean | undefined;
  #closed = false;

  constructor(options: NodeHealthOptions) {
    this.#o = options;
    this.#impl = new HealthImplementation();
    this.#set(CLUSTER_SERVICE_HEALTH_NAME, 'SERVING');
    const { view } = options;
    const update = () => this.update();
    this.#unsubscribe.push(
      view.on('quorum-lost', update),
      view.on('quorum-regained', update),
      view.on('clock-offset-exceeded', update),
      view.on('clock-offset-ok', update),
      view.on('member-state', update),
    );
    this.update();
  }

  /** Why the node is NOT_SERVING; empty while it is SERVING. */
  get reasons(): readonly string[] {
    return this.#verdict.reasons;
  }

  get serving(): boolean {
    return this.#verdict.reasons.length === 0;
  }

  /** The status last set for a health-check name, or undefined for a name not served. */
  statusOf(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /** Adds grpc.health.v1.Health (Check, Watch, List) to a grpc-js server. */
  addToServer(server: Server): void {
    this.#impl.addToServer(server);
  }

  /** Re-judges from the view's current state; called on every membership event. */
  update(): void {
    if (this.#closed) return;
    const { view } = this.#o;
    const verdict = judgeHealth({
      keyspaces: this.#o.keyspaces(),
      quorum: (name) => view.quorum(name),
      members: view.members(this.#o.nowMs()),
      maxClockOffsetMs: view.config.maxClockOffsetMs,
      nodeNotServing: this.#o.nodeNotServing?.(),
    });
    this.#verdict = verdict;
    const overall: ServingStatus = verdict.reasons.length === 0 ? 'SERVING' : 'NOT_SERVING';
    this.#set('', overall);
    this.#set(KV_SERVICE_HEALTH_NAME, overall);
    for (const [name, why] of verdict.keyspaces) this.#set(keyspaceHealthName(name), why.length === 0 ? 'SERVING' : 'NOT_SERVING');
    const serving = this.serving;
    // A node still starting says what it waits for in its own lines; health stays quiet until
    // the node has served once, so that a normal start logs no NOT_SERVING.
    if (!serving && this.#loggedServing === undefined && this.#o.nodeNotServing?.()) return;
    const logged = this.#loggedServing;
    this.#loggedServing = serving;
    // One line per change of the overall status; a node that starts SERVING says nothing.
    if (logged === serving || (logged === undefined && serving)) return;
    if (serving) {
      this.#o.logger.info(`node ${this.#o.nodeId} is SERVING again`, { health: 'SERVING' });
    } else {
      this.#o.logger.warn(`node ${this.#o.nodeId} is NOT_SERVING: ${verdict.reasons.join('; ')}`, {
        health: 'NOT_SERVING',
        reasons: verdict.reasons,
      });
    }
  }

  /** Marks everything NOT_SERVING, so that balancers drain the node before it stops; stops watching. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const off of this.#unsubscribe) off();
    for (const name of this.#statuses.keys()) this.#set(name, 'NOT_SERVING');
  }

  #set(name: string, status: ServingStatus): void {
    if (this.#statuses.get(name) === status) return;
    this.#statuses.set(name, status);
    this.#impl.setStatus(name, status);
  }
}
