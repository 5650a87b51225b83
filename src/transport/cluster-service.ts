import { Metadata, status as Status, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import type { HybridLogicalClock } from '../clock/index.js';
import {
  ClusterServiceClient,
  MemberRole,
  TransportSecurity,
  MemberState,
  type AddMemberRequest,
  type ListMembersRequest,
  type Membership as WireMembership,
  type PromoteMemberRequest,
  type RemoveMemberRequest,
  type ListMembersResponse,
  type AddMemberResponse,
  type PromoteMemberResponse,
  type RemoveMemberResponse,
  type ClusterServiceServer,
  type Member,
  type StatusRequest,
  type StatusResponse,
} from '../gen/replikit/v1/cluster_service.js';
import { PolicyKind } from '../gen/replikit/v1/types.js';
import type { PeerConfig } from '../node/config.js';
import type { PolicyName } from '../policy/policy.js';
import { majority } from '../policy/majority.js';
import type { RaftGroupStatus } from '../policy/cp/raft-group.js';
import type { RaftStatus } from '../gen/replikit/v1/cluster_service.js';
import { VERSION } from '../version.js';
import { respond } from './kv-service.js';
import { hlcToWire } from './wire.js';
import { remainingMs } from './call-deadline.js';
import { fromGrpcError } from './status.js';
import { ReplikitError, unavailable } from '../errors.js';
import type { ClusterMembership } from '../node/cluster-membership.js';
import type { WallClock } from '../clock/index.js';

/** What Status reports, read fresh on every call. */
export interface StatusSource {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly incarnation: number;
  readonly address?: string;
  readonly clock: HybridLogicalClock;
  /** Every other member now (read on every call: the membership changes at run time). */
  readonly peers: readonly PeerConfig[];
  /** The voters, this node included when it is one; every member when absent. */
  voters?(): readonly string[];
  keyspaces(): { name: string; policy: PolicyName }[];
  /** A CP keyspace's Raft group as this node sees it (undefined for the others, or before it opens). */
  raftStatus?(keyspace: string): RaftGroupStatus | undefined;
  isAlive(peerId: string): boolean;
  /** Liveness details of one peer, when a failure detector runs. */
  member?(peerId: string): Partial<Member> | undefined;
  /** Why the health service says NOT_SERVING; empty while SERVING. */
  notServingReasons?(): readonly string[];
  /** How the node is reached. @default unspecified */
  readonly transportSecurity?: TransportSecurity;
  /** The SPIFFE URI a member's certificate proved (this node's own certificate's for itself). */
  verifiedIdentity?(nodeId: string): string | undefined;
}

export const POLICY_KIND: Readonly<Record<PolicyName, PolicyKind>> = {
  cp: PolicyKind.POLICY_KIND_CP_QUORUM,
  ap: PolicyKind.POLICY_KIND_AP_ASYNC,
  causal: PolicyKind.POLICY_KIND_CAUSAL,
};

/** The membership half of ClusterService (NodeCore's membership calls). */
export interface MembershipSource {
  readonly clusterId: string;
  membership(): ClusterMembership;
  addMember(id: string, address: string, options: ChangeOptions & { readonly clusterId?: string }): Promise<{ readonly membership: ClusterMembership }>;
  promoteMember(id: string, options: ChangeOptions): Promise<{ readonly membership: ClusterMembership }>;
  removeMember(id: string, options: ChangeOptions): Promise<{ readonly membership: ClusterMembership }>;
  /** A client of the ClusterService at `address` (a member's), to forward a change to the leader. */
  clientFor(address: string): ClusterServiceClient;
  readonly wallClock: WallClock;
}

interface ChangeOptions {
  readonly timeoutMs?: number;
}

/** The pause before asking again when the membership's leader refused the forwarded change's connection. */
const LEADER_RETRY_MS = 200;

/** Set on a change forwarded to the membership's leader, so that it is never forwarded twice. */
const FORWARDED_METADATA_KEY = 'replikit-forwarded';

/** ClusterService: this node's view of its members and keyspaces, and membership changes. */
export function clusterService(source: StatusSource, members?: MembershipSource): ClusterServiceServer {
  const unsupported = () => Promise.reject(unavailable('MEMBERSHIP_UNSUPPORTED', 'this server does not change memberships'));
  /**
   * Runs a change here; on a node that is not the membership's leader, hands the same request to
   * the leader once (one hop) and relays its answer.
   */
  type Answer = { membership?: WireMembership };
  const change = <Req, Res extends Answer>(
    call: ServerUnaryCall<Req, Res>,
    callback: sendUnaryData<Res>,
    here: (m: MembershipSource, timeoutMs: number | undefined) => Promise<{ readonly membership: ClusterMembership }>,
    forward: (client: ClusterServiceClient, request: Req, md: Metadata, deadline: Date, done: (err: ServiceError | null, res?: Res) => void) => void,
  ) =>
    respond(callback, async () => {
      if (members === undefined) return unsupported();
      const until = members.wallClock() + (remainingMs(call.getDeadline(), members.wallClock()) ?? 5_000);
      for (;;) {
        const timeoutMs = Math.max(1, until - members.wallClock());
        try {
          return { membership: membershipToWire(members.clusterId, (await here(members, timeoutMs)).membership) } as Res;
        } catch (error: unknown) {
          const address = error instanceof ReplikitError && error.reason === 'NOT_MEMBERSHIP_LEADER' ? error.details['leader_address'] : undefined;
          if (address === undefined || address === '' || call.metadata.get(FORWARDED_METADATA_KEY).length > 0) throw error;
          const md = new Metadata();
          md.set(FORWARDED_METADATA_KEY, '1');
          try {
            return await new Promise<Res>((resolve, reject) =>
              forward(members.clientFor(address), call.request, md, new Date(until), (err, res) => (err ? reject(err) : resolve(res!))),
            );
          } catch (forwardError: unknown) {
            // The leader this node knew is gone (its connection refused): an election follows
            // within about a second; ask again while the caller's time lasts.
            const refused = (forwardError as ServiceError).code === Status.UNAVAILABLE && /ECONNREFUSED|No connection established/.test((forwardError as ServiceError).details ?? '');
            if (!refused || until - members.wallClock() < LEADER_RETRY_MS * 2) throw fromGrpcError(forwardError as ServiceError);
            await new Promise((resolve) => setTimeout(resolve, LEADER_RETRY_MS));
          }
        }
      }
    });
  return {
    status(_call: ServerUnaryCall<StatusRequest, StatusResponse>, callback: sendUnaryData<StatusResponse>) {
      respond(callback, async () => buildStatus(source));
    },
    listMembers(_call: ServerUnaryCall<ListMembersRequest, ListMembersResponse>, callback: sendUnaryData<ListMembersResponse>) {
      respond(callback, async () => (members === undefined ? unsupported() : { membership: membershipToWire(members.clusterId, members.membership()) }));
    },
    addMember(call: ServerUnaryCall<AddMemberRequest, AddMemberResponse>, callback: sendUnaryData<AddMemberResponse>) {
      const r = call.request;
      change(call, callback, (m, timeoutMs) => m.addMember(r.nodeId, r.address, { timeoutMs, clusterId: r.clusterId }), (c, req, md, deadline, done) => c.addMember(req, md, { deadline }, done));
    },
    promoteMember(call: ServerUnaryCall<PromoteMemberRequest, PromoteMemberResponse>, callback: sendUnaryData<PromoteMemberResponse>) {
      change(call, callback, (m, timeoutMs) => m.promoteMember(call.request.nodeId, { timeoutMs }), (c, req, md, deadline, done) => c.promoteMember(req, md, { deadline }, done));
    },
    removeMember(call: ServerUnaryCall<RemoveMemberRequest, RemoveMemberResponse>, callback: sendUnaryData<RemoveMemberResponse>) {
      change(call, callback, (m, timeoutMs) => m.removeMember(call.request.nodeId, { timeoutMs }), (c, req, md, deadline, done) => c.removeMember(req, md, { deadline }, done));
    },
  };
}

export function membershipToWire(clusterId: string, m: ClusterMembership): WireMembership {
  return {
    clusterId,
    version: BigInt(m.version),
    members: m.members.map((member) => ({
      nodeId: member.id,
      address: member.address,
      role: member.role === 'voter' ? MemberRole.MEMBER_ROLE_VOTER : MemberRole.MEMBER_ROLE_LEARNER,
    })),
  };
}

export function buildStatus(source: StatusSource): StatusResponse {
  const self: Member = {
    nodeId: source.nodeId,
    address: source.address ?? '',
    state: MemberState.MEMBER_STATE_ALIVE,
    phi: 0,
    lastHeardMs: 0,
    rttMs: 0,
    clockOffsetMs: 0,
    clockOffsetExceeded: false,
    incarnation: BigInt(source.incarnation),
    self: true,
    verifiedIdentity: source.verifiedIdentity?.(source.nodeId) ?? '',
  };
  const peers = source.peers.map((peer): Member => {
    const alive = source.isAlive(peer.id);
    return {
      nodeId: peer.id,
      address: peer.address,
      state: alive ? MemberState.MEMBER_STATE_ALIVE : MemberState.MEMBER_STATE_DEAD,
      phi: 0,
      lastHeardMs: -1,
      rttMs: -1,
      clockOffsetMs: 0,
      clockOffsetExceeded: false,
      incarnation: 0n,
      self: false,
      ...source.member?.(peer.id),
      verifiedIdentity: source.verifiedIdentity?.(peer.id) ?? '',
    };
  });
  const voters = source.voters?.() ?? [source.nodeId, ...source.peers.map((p) => p.id)];
  const replicaCount = voters.length;
  const alive = voters.filter((id) => id === source.nodeId || source.isAlive(id)).length;
  const quorum = majority(replicaCount);
  return {
    nodeId: source.nodeId,
    clusterId: source.clusterId,
    incarnation: BigInt(source.incarnation),
    hlc: hlcToWire(source.clock.now()),
    members: [self, ...peers],
    transportSecurity: source.transportSecurity ?? TransportSecurity.TRANSPORT_SECURITY_UNSPECIFIED,
    keyspaces: source.keyspaces().map((k) => ({
      name: k.name,
      policy: POLICY_KIND[k.policy],
      replicaCount,
      aliveReplicas: alive,
      quorumSize: quorum,
      quorumReachable: alive >= quorum,
      raft: raftToWire(source.raftStatus?.(k.name)),
    })),
    version: VERSION,
    notServingReasons: [...(source.notServingReasons?.() ?? [])],
  };
}

function raftToWire(s: RaftGroupStatus | undefined): RaftStatus | undefined {
  if (s === undefined) return undefined;
  return {
    role: s.role,
    term: BigInt(s.term),
    leader: s.leader ?? '',
    commitIndex: BigInt(s.commitIndex),
    appliedIndex: BigInt(s.appliedIndex),
    revision: BigInt(s.revision),
    followers: s.followers.map((f) => ({ nodeId: f.id, matchIndex: BigInt(f.match), lag: BigInt(f.lag) })),
    leaderChanges: BigInt(s.leaderChanges),
    proposalsPending: s.proposalsPending,
  };
}
