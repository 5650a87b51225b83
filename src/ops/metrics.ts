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
    const stat = (field: string) => (k: { name: string }) => numberField(source.policyStats(k.name), field);
    perKeyspace('replikit_ap_replication_queued_keys', 'Keys waiting to be replicated to peers (AP keyspaces), summed over peers.', stat('queuedKeys'));
    perKeyspace('replikit_ap_hints', 'Durable hints held for unreachable peers (AP keyspaces), summed over peers.', stat('hints'));
    perKeyspace('replikit_ap_hints_dropped', 'Hints dropped since start because a peer exceeded the hint bound (AP keyspaces).', stat('hintsDropped'));
    perKeyspace('replikit_causal_buffered_entries', 'Remote writes buffered until their causal dependencies are applied (causal keyspaces).', stat('bufferedEntries'));
    perKeyspace('replikit_causal_unreplicated_writes', "This node's writes not yet acknowledged by every peer (causal keyspaces).", stat('unreplicatedWrites'));
    perKeyspace('replikit_cp_read_phases', 'Quorum read phases run since start (CP keyspaces: a get, and the first phase of a put).', stat('readPhases'));
    perKeyspace('replikit_cp_read_phase_seconds_sum', 'Time spent in those read phases since start (CP keyspaces); divide the increase by that of replikit_cp_read_phases for the mean.', (k) =>
      secondsOf(numberField(source.policyStats(k.name), 'readPhaseMs')),
    );
    perKeyspace('replikit_cp_write_phases', 'Quorum write phases run since start (CP keyspaces: the second phase of a put, and write-backs).', stat('writePhases'));
    perKeyspace('replikit_cp_write_phase_seconds_sum', 'Time spent in those write phases since start (CP keyspaces).', (k) =>
      secondsOf(numberField(source.policyStats(k.name), 'writePhaseMs')),
    );
    perKeyspace('replikit_cp_hedged_reads', 'Thrifty read phases that had to ask the remaining replicas (a chosen peer failed or was slower than the hedge delay), since start.', stat('hedgedReads'));
    perKeyspace('replikit_cp_write_backs', 'Reads that found their quorum disagreeing and wrote the newest version back first, since start (CP keyspaces).', stat('writeBacks'));
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
