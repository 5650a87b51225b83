import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { HybridLogicalClock } from '../clock/index.js';
import {
  MemberState,
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

/** What Status reports, read fresh on every call. */
export interface StatusSource {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly incarnation: number;
  readonly address?: string;
  readonly clock: HybridLogicalClock;
  readonly peers: readonly PeerConfig[];
  keyspaces(): { name: string; policy: PolicyName }[];
  /** A CP keyspace's Raft group as this node sees it (undefined for the others, or before it opens). */
  raftStatus?(keyspace: string): RaftGroupStatus | undefined;
  isAlive(peerId: string): boolean;
  /** Liveness details of one peer, when a failure detector runs. */
  member?(peerId: string): Partial<Member> | undefined;
  /** Why the health service says NOT_SERVING; empty while SERVING. */
  notServingReasons?(): readonly string[];
}

export const POLICY_KIND: Readonly<Record<PolicyName, PolicyKind>> = {
  cp: PolicyKind.POLICY_KIND_CP_QUORUM,
  ap: PolicyKind.POLICY_KIND_AP_ASYNC,
  causal: PolicyKind.POLICY_KIND_CAUSAL,
};

/** ClusterService.Status: this node's view of its members and keyspaces. */
export function clusterService(source: StatusSource): ClusterServiceServer {
  return {
    status(_call: ServerUnaryCall<StatusRequest, StatusResponse>, callback: sendUnaryData<StatusResponse>) {
      respond(callback, async () => buildStatus(source));
    },
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
    };
  });
  const replicaCount = source.peers.length + 1;
  const alive = 1 + source.peers.filter((p) => source.isAlive(p.id)).length;
  const quorum = majority(replicaCount);
  return {
    nodeId: source.nodeId,
    clusterId: source.clusterId,
    incarnation: BigInt(source.incarnation),
    hlc: hlcToWire(source.clock.now()),
    members: [self, ...peers],
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
