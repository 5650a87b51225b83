/**
 * Joining a running cluster (`serve --join`): ask any of a few known members for the membership;
 * when this node is not in it, ask them to add it as a learner (any member forwards the change
 * to the membership's leader). The answer is the membership, whose other members become this
 * node's peers; the node then starts with `join: true` and catches up (see NodeSettings.join).
 */
import { credentials, Metadata, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { ClusterServiceClient, MemberRole, type Membership } from '../gen/replikit/v1/cluster_service.js';
import { fromGrpcError } from '../transport/status.js';
import type { PeerConfig } from './config.js';

export interface JoinOptions {
  /** Members to ask, HOST:PORT, in order; the first that answers decides. */
  readonly seeds: readonly string[];
  readonly nodeId: string;
  /** Where the cluster reaches this node. */
  readonly address: string;
  readonly clusterId: string;
  readonly credentials?: ChannelCredentials;
  /** Per call. @default 5000 */
  readonly timeoutMs?: number;
}

export interface JoinResult {
  /** The other members, to start the node with. */
  readonly peers: PeerConfig[];
  /** This node was added by this call (false: it was a member already, e.g. a restart, or added by an operator). */
  readonly added: boolean;
  readonly role: 'voter' | 'learner';
  readonly version: number;
}

/** Thrown when no seed could be asked, or the cluster refused the join; the message says why. */
export class JoinError extends Error {
  override readonly name = 'JoinError';
}

export async function joinCluster(options: JoinOptions): Promise<JoinResult> {
  const failures: string[] = [];
  for (const seed of options.seeds) {
    const client = new ClusterServiceClient(seed, options.credentials ?? credentials.createInsecure());
    try {
      let membership = required((await call<{ membership?: Membership }>((md, deadline, done) => client.listMembers({}, md, { deadline }, done), options)).membership);
      // Another cluster's members are asked anyway: they refuse the join and log it, so that the
      // operator of that cluster sees a stranger knocking.
      const sameCluster = membership.clusterId === options.clusterId;
      let self = sameCluster ? membership.members.find((m) => m.nodeId === options.nodeId) : undefined;
      let added = false;
      if (self === undefined) {
        membership = required(
          (
            await call<{ membership?: Membership }>(
              (md, deadline, done) => client.addMember({ nodeId: options.nodeId, address: options.address, clusterId: options.clusterId }, md, { deadline }, done),
              options,
            )
          ).membership,
        );
        self = membership.members.find((m) => m.nodeId === options.nodeId);
        added = true;
      } else if (self.address !== options.address) {
        throw new JoinError(`${options.nodeId} is a member at ${self.address}, not ${options.address}: to move it, remove it and add a node under a new id (see docs/operations.md)`);
      }
      return {
        peers: membership.members.filter((m) => m.nodeId !== options.nodeId).map((m) => ({ id: m.nodeId, address: m.address })),
        added,
        role: self?.role === MemberRole.MEMBER_ROLE_VOTER ? 'voter' : 'learner',
        version: Number(membership.version),
      };
    } catch (error: unknown) {
      if (error instanceof JoinError) throw error;
      const e = isServiceError(error) ? fromGrpcError(error) : error;
      // The cluster said no (a refusal, not an unreachable seed): asking another member would get the same answer.
      if (isServiceError(error) && (e as { kind?: string }).kind !== 'unavailable' && (e as { kind?: string }).kind !== 'outcome-unknown') {
        throw new JoinError(`${seed} refused to add ${options.nodeId}: ${(e as Error).message}`);
      }
      failures.push(`${seed}: ${(e as Error).message}`);
    } finally {
      client.close();
    }
  }
  throw new JoinError(`no member answered (${failures.join('; ')})`);
}

/**
 * For a node that found its peers (by DNS) and has an empty store: asks them for the membership.
 * When a cluster answers and does not know this node (a StatefulSet scaled up: a new pod), it
 * joins as a learner (see joinCluster) and the answer says so; when the cluster knows it, or
 * nobody answers yet (a new cluster forming), undefined: start as usual.
 */
export async function joinIfNew(options: Omit<JoinOptions, 'seeds'> & { readonly peers: readonly PeerConfig[] }): Promise<JoinResult | undefined> {
  for (const peer of options.peers) {
    const client = new ClusterServiceClient(peer.address, options.credentials ?? credentials.createInsecure());
    try {
      const answer = await call<{ membership?: Membership }>((md, deadline, done) => client.listMembers({}, md, { deadline }, done), { ...options, seeds: [], timeoutMs: options.timeoutMs ?? 2_000 });
      const membership = answer.membership;
      if (membership === undefined || membership.clusterId !== options.clusterId) continue;
      if (membership.members.some((m) => m.nodeId === options.nodeId)) return undefined;
      return await joinCluster({ ...options, seeds: options.peers.map((p) => p.address) });
    } catch (error) {
      if (error instanceof JoinError) throw error;
      // Not up yet, or not serving: ask the next.
    } finally {
      client.close();
    }
  }
  return undefined;
}

function call<T>(invoke: (md: Metadata, deadline: Date, done: (err: ServiceError | null, res?: T) => void) => unknown, options: JoinOptions): Promise<T> {
  return new Promise((resolve, reject) => invoke(new Metadata(), new Date(Date.now() + (options.timeoutMs ?? 5_000)), (err, res) => (err ? reject(err) : resolve(res!))));
}

function required(m: Membership | undefined): Membership {
  if (m === undefined) throw new JoinError('a member answered without the membership');
  return m;
}

function isServiceError(error: unknown): error is ServiceError {
  return typeof error === 'object' && error !== null && 'code' in error && 'details' in error;
}
