import { status, type Metadata } from '@grpc/grpc-js';
import { CLUSTER_ID_METADATA_KEY, NODE_ID_METADATA_KEY } from './metadata-keys.js';

/**
 * How many known node ids a PERMISSION_DENIED message lists before "and N more": enough for any
 * real replica group, while a misconfigured cluster of thousands cannot make a message huge.
 */
export const MAX_NODE_IDS_IN_MESSAGE = 16;

/** Who a node is, as it tells its peers on every call. */
export interface PeerIdentity {
  readonly clusterId: string;
  readonly nodeId: string;
}

/** Whom a node accepts peer calls from. */
export interface PeerIdentityPolicy {
  /** This node's cluster; calls from any other are refused. */
  readonly clusterId: string;
  /** The members' node ids; calls from any other node are refused. */
  readonly knownNodeIds: ReadonlySet<string>;
}

/** The outcome of {@link checkPeerIdentity}; a refusal carries its gRPC status code and message. */
export type PeerIdentityResult =
  | { readonly kind: 'ok'; readonly clusterId: string; readonly nodeId: string }
  /** The caller sent no cluster id or another one: FAILED_PRECONDITION (do not retry until reconfigured). */
  | {
      readonly kind: 'wrong-cluster';
      readonly code: typeof status.FAILED_PRECONDITION;
      readonly message: string;
      readonly callerClusterId: string | undefined;
    }
  /** The caller sent no node id or one this node does not know: PERMISSION_DENIED. */
  | {
      readonly kind: 'unknown-node';
      readonly code: typeof status.PERMISSION_DENIED;
      readonly message: string;
      readonly callerNodeId: string | undefined;
    };

/** Puts `identity` into outgoing metadata, replacing any earlier values. */
export function stampPeerIdentity(metadata: Metadata, identity: PeerIdentity): void {
  metadata.set(CLUSTER_ID_METADATA_KEY, identity.clusterId);
  metadata.set(NODE_ID_METADATA_KEY, identity.nodeId);
}

/** The caller's node id from metadata, if it sent one (unverified: see {@link checkPeerIdentity}). */
export function readPeerNodeId(metadata: Metadata): string | undefined {
  return firstString(metadata, NODE_ID_METADATA_KEY);
}

/**
 * Checks that a call comes from a member of this cluster. The cluster id is checked first: a node
 * of another cluster is a configuration mistake (FAILED_PRECONDITION), whatever its node id.
 * This is a guard against miswiring, not authentication; that is the transport's TLS.
 */
export function checkPeerIdentity(metadata: Metadata, policy: PeerIdentityPolicy): PeerIdentityResult {
  const callerClusterId = firstString(metadata, CLUSTER_ID_METADATA_KEY);
  if (callerClusterId !== policy.clusterId) {
    const caller =
      callerClusterId === undefined
        ? `the caller sent no cluster id (${CLUSTER_ID_METADATA_KEY} metadata)`
        : `the caller belongs to cluster ${JSON.stringify(callerClusterId)}`;
    return {
      kind: 'wrong-cluster',
      code: status.FAILED_PRECONDITION,
      message: `${caller}, but this node belongs to cluster ${JSON.stringify(policy.clusterId)}`,
      callerClusterId,
    };
  }

  const callerNodeId = firstString(metadata, NODE_ID_METADATA_KEY);
  if (callerNodeId === undefined || !policy.knownNodeIds.has(callerNodeId)) {
    const caller =
      callerNodeId === undefined
        ? `the caller sent no node id (${NODE_ID_METADATA_KEY} metadata)`
        : `node id ${JSON.stringify(callerNodeId)} is not a member of cluster ${JSON.stringify(policy.clusterId)}`;
    return {
      kind: 'unknown-node',
      code: status.PERMISSION_DENIED,
      message: `${caller}; the known node ids are ${formatNodeIds(policy.knownNodeIds)}`,
      callerNodeId,
    };
  }

  return { kind: 'ok', clusterId: callerClusterId, nodeId: callerNodeId };
}

function firstString(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function formatNodeIds(ids: ReadonlySet<string>): string {
  if (ids.size === 0) return 'none';
  const sorted = [...ids].sort();
  const shown = sorted.slice(0, MAX_NODE_IDS_IN_MESSAGE).map((id) => JSON.stringify(id));
  const more = sorted.length - shown.length;
  return more > 0 ? `${shown.join(', ')} and ${more} more` : shown.join(', ');
}
