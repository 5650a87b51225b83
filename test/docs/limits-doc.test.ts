import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SHUTDOWN_BOUND_MS } from '../../src/cli/commands/serve.js';
import { MAX_REFUSAL_REASONS } from '../../src/node/failure-detection.js';
import { NODE_DEFAULTS } from '../../src/node/config.js';
import { MAX_SERVE_WAITERS } from '../../src/node/node-core.js';
import { MESSAGE_HEADROOM_BYTES, SERVER_LIMITS } from '../../src/node/replica-node.js';
import { AP_DEFAULTS } from '../../src/policy/ap/ap-async.js';
import { CAUSAL_DEFAULTS } from '../../src/policy/causal/causal.js';
import { CANDIDATE_IDLE_BEATS } from '../../src/transport/heartbeat-streams.js';
import { MAX_EXCHANGE_CALLS_IN_FLIGHT, MAX_EXCHANGE_UNSENT_BYTES } from '../../src/transport/replica-service.js';
import { MAX_PENDING_CALLS_PER_PEER } from '../../src/transport/streaming-replica-set.js';
import { MIN_COLLECTION_INTERVAL_MS } from '../../src/ops/metrics-server.js';
import { MAX_TXN_OPS } from '../../src/policy/cp/txn-validation.js';
import { RAFT_DEFAULTS } from '../../src/raft/raft-core.js';
import { RAFT_GROUP_DEFAULTS } from '../../src/policy/cp/raft-group.js';
import { MAX_RAFT_MESSAGES_PER_CALL } from '../../src/transport/replica-service.js';
import { HISTORY_RETENTION_DEFAULTS } from '../../src/policy/cp/raft-group.js';
import { WATCH_DEFAULTS } from '../../src/policy/watch/watch-hub.js';
import { RANGE_PAGE_BYTES } from '../../src/node/range-watch-args.js';
import { LEASE_DEFAULTS } from '../../src/policy/cp/raft-group.js';
import { MAX_LEASE_KEYS_LISTED, MAX_LEASE_PAGE, MAX_RENEWALS_PER_CALL } from '../../src/policy/cp/cp-quorum.js';
import { MAX_KEEPALIVES_PENDING } from '../../src/transport/coordination-services.js';
import { MAX_NAME_BYTES, MAX_WAIT_MS } from '../../src/coordination/waiting-queue.js';
import { MAX_DISCOVERED_PEERS } from '../../src/node/peer-discovery.js';
import { MAX_REMOVED_IDS } from '../../src/node/cluster-membership.js';
import { DEPARTURE_GRACE_MS } from '../../src/node/node-core.js';
import { PEERS_DNS_WAIT_MS } from '../../src/cli/commands/serve.js';
import { MAX_AUTHZ_FILE_BYTES, MAX_CACHED_IDENTITIES, MAX_GRANTS, MAX_KEY_PREFIX_BYTES, MAX_PATTERN_CHARS } from '../../src/auth/authz-rules.js';
import { AUTHZ_REFUSAL_LOG_BURST, AUTHZ_REFUSAL_LOG_WINDOW_MS } from '../../src/auth/authorizer.js';

const scope: Record<string, unknown> = {
  NODE_DEFAULTS,
  AP_DEFAULTS,
  CAUSAL_DEFAULTS,
  SERVER_LIMITS,
  MESSAGE_HEADROOM_BYTES,
  MAX_SERVE_WAITERS,
  MAX_EXCHANGE_CALLS_IN_FLIGHT,
  MAX_EXCHANGE_UNSENT_BYTES,
  MAX_PENDING_CALLS_PER_PEER,
  CANDIDATE_IDLE_BEATS,
  MAX_REFUSAL_REASONS,
  SHUTDOWN_BOUND_MS,
  MIN_COLLECTION_INTERVAL_MS,
  MAX_TXN_OPS,
  RAFT_DEFAULTS,
  RAFT_GROUP_DEFAULTS,
  MAX_RAFT_MESSAGES_PER_CALL,
  WATCH_DEFAULTS,
  RANGE_PAGE_BYTES,
  HISTORY_RETENTION_DEFAULTS,
  LEASE_DEFAULTS,
  MAX_KEEPALIVES_PENDING,
  MAX_RENEWALS_PER_CALL,
  MAX_LEASE_PAGE,
  MAX_LEASE_KEYS_LISTED,
  MAX_NAME_BYTES,
  MAX_WAIT_MS,
  MAX_DISCOVERED_PEERS,
  PEERS_DNS_WAIT_MS,
  MAX_REMOVED_IDS,
  DEPARTURE_GRACE_MS,
  MAX_AUTHZ_FILE_BYTES,
  MAX_GRANTS,
  MAX_KEY_PREFIX_BYTES,
  MAX_PATTERN_CHARS,
  MAX_CACHED_IDENTITIES,
  AUTHZ_REFUSAL_LOG_BURST,
  AUTHZ_REFUSAL_LOG_WINDOW_MS,
};

/** The value a name in the table stands for: `A.b` or `A['b']` or `A`. */
function valueOf(name: string): unknown {
  const m = /^(\w+)(?:\.(\w+)|\['([^']+)'\])?$/.exec(name);
  if (m === null) throw new Error(`cannot read the name ${name}`);
  const base = scope[m[1]!] as Record<string, unknown> | number | undefined;
  const field = m[2] ?? m[3];
  return field === undefined ? base : (base as Record<string, unknown> | undefined)?.[field];
}

describe('docs/limits.md', () => {
  it('lists every limit with the default the code has', () => {
    const doc = readFileSync(new URL('../../docs/limits.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `([^`]+)` \| (\d+) \|/gm)].map((m) => ({ name: m[1]!, documented: Number(m[2]) }));
    expect(rows.length).toBeGreaterThanOrEqual(25);
    for (const { name, documented } of rows) expect(valueOf(name), name).toBe(documented);
    // Every limit of the node's defaults and the policies' is in the table.
    const named = new Set(rows.map((r) => r.name));
    for (const key of ['maxKeyBytes', 'maxValueBytes', 'maxBatchEntries', 'maxBatchBytes', 'requestTimeoutMs', 'maxClockOffsetMs']) expect(named, key).toContain(`NODE_DEFAULTS.${key}`);
    for (const key of ['maxBufferedEntries', 'maxBufferedBytes', 'sequenceWindow', 'maxUnreplicatedWrites', 'maxSessionWaiters', 'batchEntries']) expect(named, key).toContain(`CAUSAL_DEFAULTS.${key}`);
    for (const key of ['maxQueuedKeys', 'maxHintsPerPeer', 'batchEntries']) expect(named, key).toContain(`AP_DEFAULTS.${key}`);
    for (const key of Object.keys(SERVER_LIMITS)) expect(named, key).toContain(`SERVER_LIMITS['${key}']`);
    for (const key of ['maxPendingProposals', 'maxPendingProposalBytes', 'maxInflightAppends', 'maxAppendEntries', 'maxAppendBytes']) expect(named, key).toContain(`RAFT_DEFAULTS.${key}`);
    for (const key of ['snapshotEvery', 'compactAfterBytes', 'snapshotChunkBytes']) expect(named, key).toContain(`RAFT_GROUP_DEFAULTS.${key}`);
    for (const key of ['maxPendingBytes', 'maxMessageBytes', 'maxWatchers', 'minProgressIntervalMs']) expect(named, key).toContain(`WATCH_DEFAULTS.${key}`);
    for (const key of ['revisions', 'ms']) expect(named, key).toContain(`HISTORY_RETENTION_DEFAULTS.${key}`);
    for (const key of Object.keys(LEASE_DEFAULTS)) expect(named, key).toContain(`LEASE_DEFAULTS.${key}`);
    for (const key of ['MAX_AUTHZ_FILE_BYTES', 'MAX_GRANTS', 'MAX_KEY_PREFIX_BYTES', 'AUTHZ_REFUSAL_LOG_BURST']) expect(named, key).toContain(key);
  });
});
