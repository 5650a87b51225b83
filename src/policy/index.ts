import { apAsync } from './ap/ap-async.js';
import { causal } from './causal/causal.js';
import { cpQuorum } from './cp/cp-quorum.js';
import type { ConsistencyPolicy, PolicyName } from './policy.js';

export type {
  AckLevel,
  ConsistencyPolicy,
  KeyspacePolicy,
  LivenessOracle,
  OperationOptions,
  PolicyContext,
  PolicyName,
  ReadResult,
  WriteResult,
} from './policy.js';
export { cpQuorum, type CpQuorumOptions } from './cp/cp-quorum.js';
export { RAFT_GROUP_DEFAULTS, type RaftGroupTiming, type RaftGroupStatus } from './cp/raft-group.js';
export { apAsync, AP_DEFAULTS, type ApAsyncOptions, type ApStats } from './ap/ap-async.js';
export type { MergeFunction } from './ap/conflict.js';
export { causal, CAUSAL_DEFAULTS, type CausalOptions, type CausalStats } from './causal/causal.js';

/** The policies a keyspace can be bound to by name (CLI flags, config files). */
export const POLICIES: Readonly<Partial<Record<PolicyName, () => ConsistencyPolicy>>> = {
  cp: () => cpQuorum(),
  ap: () => apAsync(),
  causal: () => causal(),
};

/** The policy of a name, or undefined for an unknown name. */
export function policyByName(name: string): ConsistencyPolicy | undefined {
  return Object.hasOwn(POLICIES, name) ? POLICIES[name as PolicyName]?.() : undefined;
}
