import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MemberSnapshot, QuorumStatus } from '../failure/index.js';
import type { PolicyName } from '../policy/policy.js';

/**
 * Latency buckets in seconds: from a quarter millisecond (a local AP write, a unary call on
 * loopback takes ~0.2 ms) to the CLI's 5 s deadline and beyond, about ×2.5 apart.
 */
export const RPC_LATENCY_BUCKETS_S = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What a node's metrics are read from, at scrape time (nothing is polled in between). */
export interface MetricsSource {
  keyspaces(): { name: string; policy: PolicyName }[];
  /**
   * The keyspace policy's `stats()`, when it has one: AP keyspaces report `queuedKeys`, `hints`
   * and `hintsDropped`, causal ones `bufferedEntries` and `unreplicatedWrites`. Other fields are ignored.
   */
  policyStats(keyspace: string): Readonly<Record<string, unknown>> | undefined;
  /** Every member, this node included. */
  members(): MemberSnapshot[];
  quorum(keyspace: string): QuorumStatus;
  /** Peer calls and heartbeats refused, by reason (unknown node, other cluster, garbage). */
  refusedPeerCalls(): ReadonlyMap<string, number>;
  /** True while the health service says SERVING. */
  serving(): boolean;
  /** The committed membership (see node/cluster-membership.ts), when the node has one. */
  membership?(): { readonly version: number; readonly members: readonly { readonly id: string; readonly role: 'voter' | 'learner' }[] };
  /** How the node is reached: `plaintext`, `tls` or `mutual-tls`. */
  transportSecurity?(): string;
}

export interface NodeMetricsOptions {
  readonly nodeId: string;
  readonly source: MetricsSource;
  /**
   * Also export the process's own metrics (CPU, memory, event loop lag, GC): right for a `serve`
   * process, wrong when several nodes share one process and would report the same numbers.
   * @default false
   */
  readonly processMetrics?: boolean;
}

const MEMBER_STATES = ['ALIVE', 'SUSPECT', 'DEAD'] as const;

/**
 * One node's Prometheus metrics, in a registry of its own (never prom-client's global one), so
 * that several nodes in one process do not collide. Request latencies are recorded by
 * {@link serverInterceptor} as calls end; everything else is read from the node when scraped.
 * Every series carries the `node` label.
 */
export class NodeMetrics {
  readonly registry: Registry;
  readonly #latency: Histogram<'grpc_service' | 'grpc_method' | 'grpc_code'>;
  readonly #tlsRefused: Counter<'reason'>;
  readonly #authzRefused: Counter<'permission'>;
  readonly #authzReloads: Counter<'outcome'>;
  #authzGrants: (() => number) | undefined;
  readonly #tlsReloads: Counter<'outcome'>;
  #certificateInForce: (() => { readonly serial: string; readonly expirySeconds: number }) | undefined;

  constructor(options: NodeMetricsOptions) {
    const { source } = options;
    const registry = new Registry();
    this.registry = registry;
    registry.setDefaultLabels({ node: options.nodeId });
    const registers = [registry];
    if (options.processMetrics === true) collectDefaultMetrics({ register: registry });

    this.#latency = new Histogram({
      name: 'replikit_grpc_server_handling_seconds',
      help: 'Time from the start of an RPC this node served to its final status, by method and status code.',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_code'],
      buckets: RPC_LATENCY_BUCKETS_S,
      registers,
    });
    this.#tlsRefused = new Counter({
      name: 'replikit_tls_handshakes_refused_total',
      help: 'Incoming TLS handshakes this node refused (client certificate not signed by the CA, plaintext client, ...).',
      labelNames: ['reason'],
      registers,
    });
    // Client authorization (src/auth): refusals by the permission missing, the grants in force,
    // and the authz file's reloads (SIGHUP). Absent without authorization.
    this.#authzRefused = new Counter({
      name: 'replikit_authz_refused_total',
      help: 'Client calls refused PERMISSION_DENIED by the authz rules, by the permission missing (read, write, admin; any: Status and ListMembers).',
      labelNames: ['permission'],
      registers,
    });
    this.#authzReloads = new Counter({
      name: 'replikit_authz_reloads_total',
      help: 'Reloads of the authz file (SIGHUP), by outcome: ok (the new rules are in force) or error (the old ones are kept).',
      labelNames: ['outcome'],
      registers,
    });
    const authzGrants = () => this.#authzGrants?.();
    new Gauge({
      name: 'replikit_authz_grants',
      help: 'Grants in the authz rules in force.',
      registers,
      collect() {
        const grants = authzGrants();
        if (grants !== undefined) this.set(grants);
      },
    });

    // Certificate rotation (serve's TLS files re-read on SIGHUP and on a timer): absent without TLS.
    this.#tlsReloads = new Counter({
      name: 'replikit_tls_reloads_total',
      help: 'Reloads of the TLS files (SIGHUP and --tls-reload-interval-ms), by outcome: applied (the new certificates are in force), unchanged (the files had not changed) or refused (the old ones are kept; the log says why).',
      labelNames: ['outcome'],
      registers,
    });
    const certificateInForce = () => this.#certificateInForce?.();
    // Labelled by serial so that a node without TLS exports no sample at all: an unlabelled gauge
    // would read 0 (1970), and the documented alert (expiry - time() < 600) would fire on it.
    new Gauge({
      name: 'replikit_tls_certificate_expiry_timestamp_seconds',
      help: "When this node's own certificate in force expires (its notAfter), in Unix seconds, labelled with its serial number: alert when it comes near, as renewal has stopped reaching the node.",
      labelNames: ['serial'],
      registers,
      collect() {
        // The previous certificate's series goes once a renewal is in force.
        this.reset();
        const certificate = certificateInForce();
        if (certificate !== undefined) this.set({ serial: certificate.serial }, certificate.expirySeconds);
      },
    });

    const perKeyspace = (
      name: string,
      help: string,
      value: (keyspace: { name: string; policy: PolicyName }) => number | undefined,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['keyspace'],
        registers,
        collect() {
          this.reset();
          for (const k of source.keyspaces()) {
            const v = value(k);
            if (v !== undefined) this.set({ keyspace: k.name }, v);
          }
        },
      });
    new Gauge({
      name: 'replikit_membership_version',
      help: "The version of the cluster's membership this node has committed (membership changes so far).",
      registers,
      collect() {
        const m = source.membership?.();
        if (m !== undefined) this.set(m.version);
      },
    });
    new Gauge({
      name: 'replikit_membership_members',
      help: "The cluster's members by role (voter: counts toward quorums; learner: catching up), as this node committed them.",
      labelNames: ['role'],
      registers,
      collect() {
        this.reset();
        const m = source.membership?.();
        if (m === undefined) return;
        for (const role of ['voter', 'learner'] as const) this.set({ role }, m.members.filter((x) => x.role === role).length);
      },
    });
    new Gauge({
      name: 'replikit_transport_security',
      help: '1 for how this node is reached (mode plaintext: anyone who reaches its port can read, write and act as a peer; tls; mutual-tls).',
      labelNames: ['mode'],
      registers,
      collect() {
        const mode = source.transportSecurity?.();
        if (mode === undefined) return;
        this.reset();
        this.set({ mode }, 1);
      },
    });
    const stat = (field: string) => (k: { name: string }) => numberField(source.policyStats(k.name), field);
    perKeyspace('replikit_ap_replication_queued_keys', 'Keys waiting to be replicated to peers (AP keyspaces), summed over peers.', stat('queuedKeys'));
    perKeyspace('replikit_ap_hints', 'Durable hints held for unreachable peers (AP keyspaces), summed over peers.', stat('hints'));
    perKeyspace('replikit_ap_hints_dropped', 'Hints dropped since start because a peer exceeded the hint bound (AP keyspaces).', stat('hintsDropped'));
    perKeyspace('replikit_causal_buffered_entries', 'Remote writes buffered until their causal dependencies are applied (causal keyspaces).', stat('bufferedEntries'));
    perKeyspace('replikit_causal_unreplicated_writes', "This node's writes not yet acknowledged by every peer (causal keyspaces).", stat('unreplicatedWrites'));
    perKeyspace('replikit_raft_term', "The Raft term of the keyspace's group on this node (CP keyspaces).", stat('term'));
    perKeyspace('replikit_raft_is_leader', '1 when this node leads the keyspace\'s Raft group (CP keyspaces), else 0.', stat('isLeader'));
    perKeyspace('replikit_raft_leader_changes', 'Leader changes this node has seen since start (CP keyspaces).', stat('leaderChanges'));
    perKeyspace('replikit_raft_proposals_pending', 'Writes this leader proposed that are not committed yet (CP keyspaces).', stat('proposalsPending'));
    perKeyspace('replikit_raft_commits', 'Writes this leader proposed and saw committed and applied, since start (CP keyspaces).', stat('commits'));
    perKeyspace('replikit_raft_commit_seconds_sum', 'Time from proposal to applied for those writes (divide by replikit_raft_commits for the mean).', (k) =>
      secondsOf(numberField(source.policyStats(k.name), 'commitMs')),
    );
    perKeyspace('replikit_raft_syncs', 'Durable log writes (one sync each, carrying every append that arrived meanwhile), since start.', stat('syncs'));
    perKeyspace('replikit_raft_sync_seconds_sum', 'Time spent in those log writes (divide by replikit_raft_syncs for the mean sync latency).', (k) =>
      secondsOf(numberField(source.policyStats(k.name), 'syncMs')),
    );
    perKeyspace('replikit_raft_entries_persisted', 'Log entries made durable since start; divided by replikit_raft_syncs, the mean batch size.', stat('entriesPersisted'));
    perKeyspace('replikit_raft_snapshots_sent', 'Snapshots sent to followers that fell behind the compacted log, since start.', stat('snapshotsSent'));
    perKeyspace('replikit_raft_snapshots_taken', 'Compactions of the log through the applied state (on disk already), since start.', stat('snapshotsTaken'));
    perKeyspace('replikit_raft_snapshot_chunks_sent', 'Pieces of snapshots sent to followers (each acknowledged before the next), since start.', stat('chunksSent'));
    perKeyspace('replikit_raft_snapshots_installed', 'Snapshots this node received from a leader and installed, since start.', stat('snapshotsInstalled'));
    perKeyspace('replikit_watchers', 'Watches this node serves on the keyspace now.', stat('watchers'));
    perKeyspace('replikit_watch_events_pending', 'Events buffered in this node\'s watchers of the keyspace, not yet taken by their streams.', stat('watchEventsPending'));
    perKeyspace('replikit_watch_bytes_pending', 'Bytes of those events (each watcher holds at most 4 MiB: WATCH_DEFAULTS.maxPendingBytes).', stat('watchBytesPending'));
    perKeyspace('replikit_watch_slow_cancellations', 'Watchers cancelled because their client fell behind, since start.', stat('watchSlowCancellations'));
    perKeyspace('replikit_watch_events_delivered', 'Events handed to watch streams, since start.', stat('watchEventsDelivered'));
    perKeyspace('replikit_cp_revision', "The keyspace's revision as this node has applied it (CP keyspaces).", stat('revision'));
    perKeyspace('replikit_cp_compact_revision', 'History is kept after this revision (CP keyspaces; see Compact and historyRetention).', stat('compactRevision'));
    perKeyspace('replikit_leases', 'Leases the keyspace holds, as this node has applied it (CP keyspaces).', stat('leases'));
    perKeyspace('replikit_leases_expired', 'Leases ended by expiry (the leader decided, the log carried it), as this node applied them, since start.', stat('leasesExpired'));
    perKeyspace('replikit_lease_renewals', 'Lease renewals this node confirmed as leader, since start.', stat('leaseRenewals'));
    perKeyspace('replikit_raft_applied_index', 'The highest log index this node has applied (CP keyspaces).', stat('appliedIndex'));
    perKeyspace('replikit_keyspace_quorum_reachable', '1 when enough replicas of the keyspace are alive for a quorum (or may be, during startup), else 0.', (k) =>
      source.quorum(k.name).state === 'unreachable' ? 0 : 1,
    );
    perKeyspace('replikit_keyspace_alive_replicas', 'Replicas of the keyspace this node believes alive, itself included.', (k) => source.quorum(k.name).aliveCount);

    const perPeer = (name: string, help: string, value: (m: MemberSnapshot) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset();
          for (const m of source.members()) {
            if (m.self) continue;
            const v = value(m);
            if (v !== undefined) this.set({ peer: m.id }, v);
          }
        },
      });
    // phi is Infinity after a long silence; Prometheus takes +Inf, which says exactly that.
    perPeer('replikit_peer_phi', 'Phi accrual suspicion of each peer (0 = beats on time; the default threshold is 8).', (m) => m.phi);
    perPeer('replikit_peer_clock_offset_seconds', "Each peer's wall clock minus this node's, from the best recent ClockSync sample.", (m) =>
      m.clockOffsetMs === undefined ? undefined : m.clockOffsetMs / 1000,
    );
    perPeer('replikit_peer_rtt_seconds', 'Round trip to each peer of the best recent ClockSync sample.', (m) => (m.rttMs === undefined ? undefined : m.rttMs / 1000));
    perPeer('replikit_peer_clock_offset_exceeded', '1 while the peer clock offset exceeds the configured maximum, else 0.', (m) => (m.clockOffsetExceeded ? 1 : 0));
    new Gauge({
      name: 'replikit_peer_state',
      help: "The failure detector's verdict on each peer: 1 for the current state, 0 for the others.",
      labelNames: ['peer', 'state'],
      registers,
      collect() {
        this.reset();
        for (const m of source.members()) {
          if (m.self) continue;
          for (const s of MEMBER_STATES) this.set({ peer: m.id, state: s }, m.state === s ? 1 : 0);
        }
      },
    });
    new Counter({
      name: 'replikit_peer_calls_refused_total',
      help: 'Peer calls and heartbeats this node refused, by reason (another cluster, an unknown node, garbage).',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, count] of source.refusedPeerCalls()) this.inc({ reason }, count);
      },
    });
    new Gauge({
      name: 'replikit_serving',
      help: '1 while the gRPC health service reports this node SERVING, 0 while NOT_SERVING.',
      registers,
      collect() {
        this.set(source.serving() ? 1 : 0);
      },
    });
  }

  /** The text exposition of every metric, as `/metrics` serves it. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Records one finished RPC; `path` is the gRPC method path, e.g. `/replikit.v1.KvService/Put`. */
  observeCall(path: string, code: status, seconds: number): void {
    const slash = path.lastIndexOf('/');
    this.#latency.observe(
      { grpc_service: path.slice(1, Math.max(1, slash)), grpc_method: path.slice(slash + 1), grpc_code: status[code] ?? String(code) },
      seconds,
    );
  }

  /** Counts one call refused by the authz rules, by the permission it lacked. */
  countAuthzRefusal(permission: string): void {
    this.#authzRefused.inc({ permission });
  }

  /** Counts one reload of the authz file. */
  countAuthzReload(outcome: 'ok' | 'error'): void {
    this.#authzReloads.inc({ outcome });
  }

  /** Where `replikit_authz_grants` reads the number of grants in force from. */
  trackAuthzGrants(grants: () => number): void {
    this.#authzGrants = grants;
  }

  /** Counts one reload of the TLS files. */
  countTlsReload(outcome: 'applied' | 'unchanged' | 'refused'): void {
    this.#tlsReloads.inc({ outcome });
  }

  /** Where `replikit_tls_certificate_expiry_timestamp_seconds` reads the certificate in force (serial, notAfter in Unix seconds) from. */
  trackCertificateExpiry(certificate: () => { readonly serial: string; readonly expirySeconds: number }): void {
    this.#certificateInForce = certificate;
  }

  /** Counts one refused incoming TLS handshake. */
  countTlsRefusal(reason: string): void {
    this.#tlsRefused.inc({ reason });
  }

  /**
   * A server interceptor that times every call from its start to its final status (or to its
   * cancellation) and records it in the latency histogram. Put it first in the server's list, so
   * that calls refused by the other interceptors are timed too.
   */
  serverInterceptor(): ServerInterceptor {
    return (descriptor, nextCall) => {
      const startMs = performance.now();
      let recorded = false;
      const record = (code: status) => {
        if (recorded) return;
        recorded = true;
        this.observeCall(descriptor.path, code, (performance.now() - startMs) / 1000);
      };
      return new ServerInterceptingCall(nextCall, {
        start: (next) => next({ onCancel: () => record(status.CANCELLED) }),
        sendStatus: (statusObject, next) => {
          record(statusObject.code);
          next(statusObject);
        },
      });
    };
  }
}

function numberField(stats: Readonly<Record<string, unknown>> | undefined, field: string): number | undefined {
  const v = stats?.[field];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function secondsOf(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : ms / 1000;
}
