import { credentials, Server, ServerCredentials, status, type ChannelCredentials } from '@grpc/grpc-js';
import { HybridLogicalClock, systemScheduler, systemWallClock, type Scheduler, type WallClock } from '../clock/index.js';
import { ClusterServiceClient, ClusterServiceService } from '../gen/replikit/v1/cluster_service.js';
import { KvServiceService } from '../gen/replikit/v1/kv_service.js';
import { LeaseServiceService } from '../gen/replikit/v1/lease_service.js';
import { LockServiceService } from '../gen/replikit/v1/lock_service.js';
import { ElectionServiceService } from '../gen/replikit/v1/election_service.js';
import { electionService, leaseService, lockService } from '../transport/coordination-services.js';
import { Leases, NodeElection, NodeLock } from '../coordination/embedded.js';
import { MemberState, TransportSecurity as TransportSecurityWire } from '../gen/replikit/v1/cluster_service.js';
import { ReplicaServiceService } from '../gen/replikit/v1/replica_service.js';
import { lanProfile, type FailureDetectorConfig, type MemberSnapshot } from '../failure/index.js';
import { FailureDetection } from './failure-detection.js';
import {
  callerCertificate,
  checkOwnNodeCertificate,
  checkPeerCertificate,
  nodeSpiffeId,
  checkPeerIdentity,
  describeTooFarAhead,
  readPeerNodeId,
  type IssuerTrust,
  isReplicaServiceMethod,
  observeHlc,
  clockClientInterceptor,
  clockServerInterceptor,
  livenessEvidenceClientInterceptor,
  livenessEvidenceServerInterceptor,
  peerIdentityClientInterceptor,
  peerIdentityServerInterceptor,
} from '../interceptors/index.js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { BurstLimit } from '../logging/burst-limit.js';
import { PEER_REFUSAL_LOG_BURST, PEER_REFUSAL_LOG_WINDOW_MS } from '../interceptors/peer-identity-interceptors.js';
import { NodeHealth } from '../ops/health.js';
import { NodeMetrics } from '../ops/metrics.js';
import { authorizationServerInterceptor, type Authorizer } from '../auth/authorizer.js';
import { addReflection } from '../ops/reflection.js';
import { observeTlsRefusals, peerTlsFailureInterceptor, tlsRefusalLogger } from '../ops/tls.js';
import { cpQuorum } from '../policy/cp/cp-quorum.js';
import { MemoryStore } from '../storage/memory-store.js';
import { LmdbStore } from '../storage/lmdb-store.js';
import { LmdbRaftLogStore } from '../storage/lmdb-raft-log-store.js';
import { MemoryRaftLogStore } from '../storage/memory-raft-log-store.js';
import type { RaftLogStore } from '../storage/raft-log-store.js';
import type { Store } from '../storage/store.js';
import { handleClockSync } from '../transport/clock-sync-service.js';
import { clusterService, type MembershipSource, type StatusSource } from '../transport/cluster-service.js';
import { GrpcReplicaSet } from '../transport/grpc-replica-set.js';
import { StreamingReplicaSet } from '../transport/streaming-replica-set.js';
import { hlcFromWire, hlcToWire } from '../transport/wire.js';
import { observeRemoteHlc } from '../interceptors/remote-hlc.js';
import { kvService } from '../transport/kv-service.js';
import { replicaService } from '../transport/replica-service.js';
import { answeringUndecodable } from '../transport/undecodable-requests.js';
import { ConfigError, validateNodeConfig, type PeerConfig, type ReplicaNodeConfig } from './config.js';
import type { KeyspaceHandle } from './keyspace-handle.js';
import { NodeCore, settle } from './node-core.js';
import { MESSAGE_HEADROOM_BYTES, maxSendBytes } from './range-watch-args.js';
import { nextIncarnation } from './incarnation.js';

export { MESSAGE_HEADROOM_BYTES } from './range-watch-args.js';
/** The limits replikit sets on its gRPC server, each with its reason (grpc-js sets none of them). */
export const SERVER_LIMITS = {
  // A peer needs three streams (Exchange, Heartbeat, the odd unary call) and a client one per
  // call in flight; 1,000 per connection is far above either and bounds what one connection
  // can ask of the node (grpc-js sets no limit).
  'grpc.max_concurrent_streams': 1_000,
  // Ping connections quiet for 10 s and drop those that do not answer within 5 s: a client
  // or peer whose machine vanished frees its streams in seconds, not at the next TCP timeout.
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  // Close a connection that carried no call for 5 minutes (clients reconnect on their own).
  'grpc.max_connection_idle_ms': 5 * 60_000,
  // HTTP/2 session memory per connection, in MiB: room for a few maximal messages (1 MiB
  // values) in flight, beyond which grpc-js refuses new streams on that connection.
  'grpc-node.max_session_memory': 32,
} as const;

/** ClockSync is answered even to a caller whose clock runs too far ahead, so it can learn it. */
const CLOCK_SYNC_PATH = ReplicaServiceService.clockSync.path;
/** Probe too: a node whose clock is off must still learn whether its cluster is new (its HLC is not merged). */
const PROBE_PATH = ReplicaServiceService.probe.path;

/** How the node's server is reached: in the clear, over TLS, or over TLS with client certificates. */
export type TransportSecurity = 'plaintext' | 'tls' | 'mutual-tls';

/** Where and how a node serves gRPC. */
export interface ListenOptions {
  /** HOST:PORT to bind; port 0 picks a free port (see {@link ReplicaNode.address}). */
  readonly listen?: string;
  /** An existing grpc-js Server to add replikit's services to; the application binds and starts it. */
  readonly server?: Server;
  /** TLS or mutual TLS for the server (see ops/tls.ts). @default insecure (plaintext) */
  readonly serverCredentials?: ServerCredentials;
  /**
   * Credentials of the calls to peers; they must satisfy the peers' serverCredentials. A function
   * gets each peer's id, so that the peer's server certificate can be checked against it (see
   * `peerChannelCredentialsOf` in ops/tls.ts). @default insecure
   */
  readonly peerCredentials?: ChannelCredentials | ((peerId: string) => ChannelCredentials);
  /**
   * What Status and the metrics report about the transport, and whether a warning is due:
   * `mutual-tls` when serverCredentials require client certificates. With client certificates,
   * every peer call's certificate must name the node id the call claims, of this cluster.
   * @default 'plaintext' without serverCredentials, 'tls' with them
   */
  readonly transportSecurity?: TransportSecurity;
  /**
   * Separate trust for peers (`serve --peer-tls-ca`): peer calls must present a certificate one of
   * these CAs issued, whatever CA the server's credentials trust for clients. An `IssuerCheck`, or
   * one that follows the CA file as it is rotated (`ReloadingTls.peerTrust`).
   */
  readonly peerTrust?: IssuerTrust;
  /**
   * This node's own certificate (PEM). With mutual TLS it must carry the URI SAN
   * `spiffe://<clusterId>/node/<nodeId>`, or start fails: every peer would refuse it.
   */
  readonly ownCertificate?: string | Buffer;
  /** Serve the standard gRPC health service (grpc.health.v1) on the server. @default true */
  readonly health?: boolean;
  /** Serve gRPC server reflection (grpc.reflection.v1 and v1alpha), for grpcurl and the like. @default true */
  readonly reflection?: boolean;
  /**
   * Export the process's own metrics (CPU, memory, event loop lag, GC) in {@link ReplicaNode.metrics}
   * too; leave off when several nodes share a process. @default false
   */
  readonly processMetrics?: boolean;
  /** Injected time, for tests that skew one node's clock. @default the system's */
  readonly wallClock?: WallClock;
  readonly scheduler?: Scheduler;
  /** Failure detection settings. @default lanProfile() (100 ms beats, phi threshold 8) */
  readonly failureDetector?: Partial<FailureDetectorConfig>;
  /**
   * Client authorization (src/auth/authorizer.ts): the client API (KvService, leases, locks,
   * elections, ClusterService) checks each request against these rules and the caller's
   * certificate, so it needs mutual TLS. Node certificates of this cluster are granted everything.
   * Only with `listen`: on an application's own `server` replikit adds no interceptors, so pass
   * `authorizationServerInterceptor(authorizer, { clusterId })` in that Server's `interceptors`
   * yourself (start refuses `server` together with this option, rather than leave it unenforced).
   * @default none: every caller may call everything
   */
  readonly authorization?: Authorizer;
}

/**
 * A replica of a replikit cluster, served over gRPC: the embedding API.
 *
 * ```ts
 * const node = await ReplicaNode.start({ nodeId: 'n1', listen: '127.0.0.1:7001', peers: [...] });
 * await node.keyspace('default').put('greeting', 'hello');
 * ```
 */
export class ReplicaNode {
  readonly core: NodeCore;
  readonly clock: HybridLogicalClock;
  readonly logger: Logger;
  /** Grows on every start from the same store, so peers tell a restarted node from its old life. */
  readonly incarnation: number;
  /** The bound address (HOST:PORT), or undefined when attached to an application's server. */
  readonly address: string | undefined;
  readonly #server: Server;
  readonly #ownsServer: boolean;
  readonly #replicas: GrpcReplicaSet;
  readonly #streaming: StreamingReplicaSet;
  /** Heartbeats, phi accrual, membership and quorum awareness. */
  readonly failureDetection: FailureDetection;
  /** The gRPC health service's state: SERVING, or NOT_SERVING and why. */
  readonly health: NodeHealth;
  /** This node's Prometheus metrics, in a registry of its own; serve them with startMetricsEndpoint. */
  readonly metrics: NodeMetrics;
  readonly #store: Store;
  readonly #scheduler: Scheduler;
  readonly #ownsStore: boolean;
  readonly #clusterClients: Map<string, ClusterServiceClient>;
  #closing: Promise<void> | undefined;
  /**
   * Resolves with the error when the node's store fails (a failed sync): the node has stopped
   * acknowledging anything, and its process should exit (`serve` does, with status 1).
   */
  readonly failed: Promise<unknown>;
  /**
   * Resolves once the node serves: at once for a node whose store has its identity; for a new
   * node once the cluster has formed; for one that lost its state once it has recovered it
   * (see NodeCore.start). Requests sent before then wait for it, up to their deadlines.
   */
  readonly serving: Promise<void>;

  private constructor(parts: {
    core: NodeCore;
    clock: HybridLogicalClock;
    logger: Logger;
    incarnation: number;
    address: string | undefined;
    server: Server;
    ownsServer: boolean;
    replicas: GrpcReplicaSet;
    streaming: StreamingReplicaSet;
    failureDetection: FailureDetection;
    health: NodeHealth;
    metrics: NodeMetrics;
    scheduler: Scheduler;
    store: Store;
    ownsStore: boolean;
    failed: Promise<unknown>;
    serving: Promise<void>;
    clusterClients: Map<string, ClusterServiceClient>;
  }) {
    this.#clusterClients = parts.clusterClients;
    this.failed = parts.failed;
    this.serving = parts.serving;
    this.core = parts.core;
    this.clock = parts.clock;
    this.logger = parts.logger;
    this.incarnation = parts.incarnation;
    this.address = parts.address;
    this.#server = parts.server;
    this.#ownsServer = parts.ownsServer;
    this.#replicas = parts.replicas;
    this.#streaming = parts.streaming;
    this.failureDetection = parts.failureDetection;
    this.health = parts.health;
    this.metrics = parts.metrics;
    this.#scheduler = parts.scheduler;
    this.#store = parts.store;
    this.#ownsStore = parts.ownsStore;
  }

  /** Validates the config, opens the store, binds the server and connects to the peers. */
  static async start(config: ReplicaNodeConfig & ListenOptions): Promise<ReplicaNode> {
    validateNodeConfig(config);
    if ((config.listen === undefined) === (config.server === undefined)) {
      throw new Error('give exactly one of listen (HOST:PORT to bind) or server (an existing grpc-js Server)');
    }
    if (config.authorization !== undefined && config.server !== undefined) {
      throw new Error("authorization works only with listen: on your own server, add authorizationServerInterceptor(authorizer, { clusterId }) to the Server's interceptors and leave authorization unset");
    }
    const settings = settle({ ...config, keyspaces: config.keyspaces ?? { default: cpQuorum() } });
    // Before anything opens: a node whose certificate names someone else would be refused by every peer.
    const ownCertificateProblem =
      config.ownCertificate === undefined ? undefined : checkOwnNodeCertificate(config.ownCertificate, settings.clusterId, settings.nodeId);
    if (ownCertificateProblem !== undefined && config.transportSecurity === 'mutual-tls') {
      throw new ConfigError(`this node's certificate cannot be used with mutual TLS: ${ownCertificateProblem}`);
    }
    const logger = config.logger ?? silentLogger;
    const wallClock = config.wallClock ?? systemWallClock;
    const scheduler = config.scheduler ?? systemScheduler;
    const clock = new HybridLogicalClock(wallClock);
    const ownsStore = config.store === undefined;
    const store = config.store ?? new MemoryStore();
    const incarnation = await nextIncarnation(store, wallClock);
    const maxMessageBytes = settings.maxValueBytes + MESSAGE_HEADROOM_BYTES;
    const knownNodeIds = new Set(settings.peers.map((p) => p.id));
    let currentPeers: readonly PeerConfig[] = settings.peers;
    const fdConfig: FailureDetectorConfig = {
      ...lanProfile(),
      maxClockOffsetMs: settings.maxClockOffsetMs,
      ...config.failureDetector,
    };
    // Interceptors report evidence before the detector exists; the indirection closes the loop.
    let detection: FailureDetection | undefined;
    const onEvidence = (peer: string | undefined, ok: boolean, _code?: number, startedAtMs?: number) =>
      detection?.recordEvidence(peer, ok, startedAtMs);

    const replicas = new GrpcReplicaSet({
      selfId: settings.nodeId,
      peers: settings.peers,
      maxMessageBytes,
      credentials: config.peerCredentials,
      waitForReady: (peer) => detection?.liveness.isAlive(peer) ?? false,
      interceptorsFor: (peerId) => [
        peerIdentityClientInterceptor({ clusterId: settings.clusterId, nodeId: settings.nodeId }),
        clockClientInterceptor({ clock, maxClockOffsetMs: settings.maxClockOffsetMs, logger }),
        livenessEvidenceClientInterceptor({ peerNodeId: peerId, onEvidence, logger, now: () => scheduler.nowMs() }),
        ...(config.peerCredentials === undefined ? [] : [peerTlsFailureInterceptor(peerId, logger)]),
      ],
    });
    // Replicate and Read travel on one Exchange stream per peer; the rest on unary calls.
    const peers = new StreamingReplicaSet({
      unary: replicas,
      clock,
      scheduler,
      maxClockOffsetMs: settings.maxClockOffsetMs,
      waitForReady: (peer) => detection?.liveness.isAlive(peer) ?? false,
      onAnswer: (peer) => onEvidence(peer, true),
    });
    detection = new FailureDetection({
      selfId: settings.nodeId,
      selfAddress: config.listen,
      clusterId: settings.clusterId,
      incarnation,
      peers: settings.peers,
      keyspaces: Object.keys(settings.keyspaces),
      config: fdConfig,
      replicas: peers,
      clock,
      wallClock,
      scheduler,
      logger,
    });
    const failureDetection = detection;
    let health: NodeHealth | undefined;
    let reportFailure: (error: unknown) => void = () => {};
    const failed = new Promise<unknown>((resolve) => (reportFailure = resolve));
    const core = new NodeCore(settings, {
      raftLog: raftLogOf(store),
      replicas: peers,
      scheduler,
      wallClock,
      clock,
      store,
      logger,
      liveness: detection.liveness,
      onPhaseChange: () => health?.update(),
      onFatal: (error) => reportFailure(error),
      // The membership changed: identity checks, beats, ClockSync and quorum tracking follow it.
      onMembershipChange: ({ peers: members, voters, known }) => {
        knownNodeIds.clear();
        for (const id of known) knownNodeIds.add(id);
        currentPeers = members;
        detection?.setPeers(members, voters);
      },
    });
    health = new NodeHealth({
      nodeId: settings.nodeId,
      view: failureDetection.view,
      keyspaces: () => core.keyspaceNames(),
      nowMs: () => scheduler.nowMs(),
      logger,
      nodeNotServing: () => core.notServingReason(),
    });
    const metrics = new NodeMetrics({
      nodeId: settings.nodeId,
      processMetrics: config.processMetrics,
      source: {
        keyspaces: () => core.keyspaceNames(),
        policyStats: (name) => policyStats(core.policyOf(name)),
        members: () => failureDetection.view.members(scheduler.nowMs()),
        quorum: (name) => failureDetection.view.quorum(name),
        refusedPeerCalls: () => failureDetection.refused,
        serving: () => health.serving,
        membership: () => core.membership,
        transportSecurity: () => transportSecurity,
      },
    });
    const authorization = config.authorization;
    if (authorization !== undefined) metrics.trackAuthzGrants(() => authorization.rules.grants.length);

    const ownsServer = config.server === undefined;
    const peerCertificatePolicy = { clusterId: settings.clusterId, peerIssuer: config.peerTrust };
    const guardLogLimit = new BurstLimit(PEER_REFUSAL_LOG_BURST, PEER_REFUSAL_LOG_WINDOW_MS);
    const transportSecurity: TransportSecurity = config.transportSecurity ?? (config.serverCredentials === undefined ? 'plaintext' : 'tls');
    /** The SPIFFE URI each member's certificate last proved on a peer call (for Status). */
    const verifiedIdentities = new Map<string, string>();
    if (ownCertificateProblem === undefined && config.ownCertificate !== undefined) {
      verifiedIdentities.set(settings.nodeId, nodeSpiffeId(settings.clusterId, settings.nodeId));
    }
    const server =
      config.server ??
      new Server({
        'grpc.max_receive_message_length': maxMessageBytes,
        'grpc.max_send_message_length': maxSendBytes(settings.maxValueBytes),
        ...SERVER_LIMITS,
        interceptors: [
          // First, so that it times the calls the other interceptors refuse too.
          metrics.serverInterceptor(),
          peerIdentityServerInterceptor({
            clusterId: settings.clusterId,
            knownNodeIds,
            logger,
            certificates: peerCertificatePolicy,
            onVerified: (nodeId, uri) => {
              if (verifiedIdentities.get(nodeId) !== uri) verifiedIdentities.set(nodeId, uri);
            },
            onRefused: (result, path) => detection?.countRefused(`${'reason' in result ? result.reason : result.kind} on ${path}`),
          }),
          // Client authorization (src/auth/authorizer.ts): the client API's calls against the authz rules.
          ...(config.authorization === undefined
            ? []
            : [authorizationServerInterceptor(config.authorization, { clusterId: settings.clusterId, logger, onRefused: (refusal) => metrics.countAuthzRefusal(refusal.permission) })]),
          clockServerInterceptor({
            clock,
            maxClockOffsetMs: settings.maxClockOffsetMs,
            logger,
            answerDespiteSkew: (path) => path === CLOCK_SYNC_PATH || path === PROBE_PATH,
          }),
          // Only peers' calls (ReplicaService) say anything about a peer's liveness.
          livenessEvidenceServerInterceptor({ onEvidence, logger, appliesTo: isReplicaServiceMethod }),
        ],
      });
    const statusSource: StatusSource = {
      nodeId: settings.nodeId,
      clusterId: settings.clusterId,
      incarnation,
      clock,
      get peers() {
        return currentPeers;
      },
      voters: () => core.membership.voters,
      keyspaces: () => core.keyspaceNames(),
      raftStatus: (keyspace) => core.policyOf(keyspace).raftStatus?.(),
      isAlive: (id) => failureDetection.view.isAlive(id),
      member: (id) => memberFields(failureDetection.view.member(id, scheduler.nowMs())),
      notServingReasons: () => health.reasons,
      transportSecurity: TRANSPORT_SECURITY_WIRE[transportSecurity],
      verifiedIdentity: (id) => verifiedIdentities.get(id),
    };
    // Every replikit service answers a request message that does not parse with INVALID_ARGUMENT
    // (grpc-js would say INTERNAL): see transport/undecodable-requests.ts.
    server.addService(...answeringUndecodable(ReplicaServiceService, replicaService({
      replica: core,
      selfId: settings.nodeId,
      maxBatchEntries: settings.maxBatchEntries,
      clockSync: (request) => handleClockSync(request, { wallClock, clock, nodeId: settings.nodeId }),
      heartbeat: (stream) => failureDetection.streams.accept(stream),
      observeMessageHlc: (hlc) => {
        if (hlc === undefined) return undefined;
        let remote;
        try {
          remote = hlcFromWire(hlc, 'an Exchange message');
        } catch {
          return undefined; // malformed: ignored, as in metadata
        }
        const observed = observeRemoteHlc(remote, clock, { maxClockOffsetMs: settings.maxClockOffsetMs });
        return observed.kind === 'too-far-ahead' ? { code: status.FAILED_PRECONDITION, details: describeTooFarAhead(observed, "caller's") } : undefined;
      },
      stampMessageHlc: () => hlcToWire(clock.now()),
      onStreamCut: (peer, why) => logger.warn(`cut off the Exchange stream of ${peer || 'an unnamed caller'}: ${why}`, { peer, why }),
      // On an application's server replikit's interceptors are absent: check identity and carry
      // the HLC in the handlers instead, so a foreign peer is refused all the same.
      guard: ownsServer
        ? undefined
        : (metadata, path, authContext) => {
            const certificateRefusal = checkPeerCertificate(callerCertificate(authContext), readPeerNodeId(metadata), peerCertificatePolicy);
            if (certificateRefusal !== undefined) {
              detection?.countRefused(`${certificateRefusal.reason} on ${path}`);
              if (guardLogLimit.admit() !== undefined) logger.warn(`refused a peer call: ${certificateRefusal.message}`, { method: path, reason: certificateRefusal.reason });
              return { code: certificateRefusal.code, details: certificateRefusal.message };
            }
            const identity = checkPeerIdentity(metadata, { clusterId: settings.clusterId, knownNodeIds });
            if (identity.kind !== 'ok') {
              detection?.countRefused(`${identity.kind} on ${path}`);
              return { code: identity.code, details: identity.message };
            }
            const observed = observeHlc(metadata, clock, { maxClockOffsetMs: settings.maxClockOffsetMs, logger, whose: "caller's" });
            if (observed.kind === 'too-far-ahead' && path !== CLOCK_SYNC_PATH && path !== PROBE_PATH) {
              return { code: status.FAILED_PRECONDITION, details: describeTooFarAhead(observed, "caller's") };
            }
            const certificate = callerCertificate(authContext);
            if (certificate !== undefined) verifiedIdentities.set(identity.nodeId, nodeSpiffeId(settings.clusterId, identity.nodeId));
            onEvidence(identity.nodeId, true);
            return undefined;
          },
    })));
    server.addService(...answeringUndecodable(KvServiceService, kvService(core, wallClock)));
    server.addService(...answeringUndecodable(LeaseServiceService, leaseService(core, wallClock)));
    server.addService(...answeringUndecodable(LockServiceService, lockService(core, wallClock)));
    server.addService(...answeringUndecodable(ElectionServiceService, electionService(core, wallClock)));
    const clusterClients = new Map<string, ClusterServiceClient>();
    const membershipSource: MembershipSource = {
      clusterId: settings.clusterId,
      wallClock,
      membership: () => core.membership,
      addMember: (id, address, options) => core.addMember(id, address, options),
      promoteMember: (id, options) => core.promoteMember(id, options),
      removeMember: (id, options) => core.removeMember(id, options),
      clientFor: (address) => {
        let client = clusterClients.get(address);
        if (client === undefined) {
          // Per-peer credentials check the server certificate against the member at that address.
          const given = config.peerCredentials;
          const memberId = currentPeers.find((p) => p.address === address)?.id ?? '';
          const creds = given === undefined ? credentials.createInsecure() : typeof given === 'function' ? given(memberId) : given;
          clusterClients.set(address, (client = new ClusterServiceClient(address, creds)));
        }
        return client;
      },
    };
    server.addService(...answeringUndecodable(ClusterServiceService, clusterService(statusSource, membershipSource)));
    if (config.health !== false) health.addToServer(server);
    if (config.reflection !== false) addReflection(server);
    if (ownsServer) {
      const logRefusal = tlsRefusalLogger(logger);
      observeTlsRefusals(server, (refusal) => {
        metrics.countTlsRefusal(refusal.reason);
        logRefusal(refusal);
      });
    }

    let address: string | undefined;
    if (config.listen !== undefined) {
      const port = await bind(server, config.listen, config.serverCredentials ?? ServerCredentials.createInsecure());
      address = config.listen.replace(/:\d+$/, `:${port}`);
    }
    core.advertise(config.advertiseAddress ?? address ?? '');
    failureDetection.start();
    logger.info('node started', { nodeId: settings.nodeId, address, incarnation, peers: settings.peers.length, phase: core.phase });
    const serving = core.start();
    return new ReplicaNode({ serving, core, clock, logger, incarnation, address, server, ownsServer, replicas, streaming: peers, failureDetection, health, metrics, scheduler, store, ownsStore, failed, clusterClients });
  }

  get nodeId(): string {
    return this.core.settings.nodeId;
  }

  /** This node's view of every member: state, phi, last heard, RTT and clock offset. */
  members(): MemberSnapshot[] {
    return this.failureDetection.view.members(this.#scheduler.nowMs());
  }

  /** A typed handle on one keyspace; throws for a keyspace the node does not serve. */
  keyspace(name: string): KeyspaceHandle {
    return this.core.keyspace(name);
  }

  #leases: Leases | undefined;

  /** Leases of the node's CP keyspaces (each call names its keyspace; "default" when absent). */
  get leases(): Leases {
    return (this.#leases ??= new Leases(this.core));
  }

  /** Lock `name`: acquire it (with a fencing token) and release it. */
  lock(name: string): NodeLock {
    return new NodeLock(this.core, name, this.leases);
  }

  /** Election `name`: campaign, proclaim, resign, observe who leads. */
  election(name: string): NodeElection {
    return new NodeElection(this.core, name, this.leases);
  }

  /**
   * Drains and stops: refuses new requests, lets the server finish calls in flight (up to
   * `graceMs`, then cancels them), closes peer channels, and closes the store if the node opened it.
   */
  close(graceMs = 2_000): Promise<void> {
    this.#closing ??= (async () => {
      this.health.close();
      await this.core.close();
      this.failureDetection.close();
      if (this.#ownsServer) await shutdown(this.#server, graceMs);
      this.#streaming.close();
      this.#replicas.close();
      for (const client of this.#clusterClients.values()) client.close();
      if (this.#ownsStore) await this.#store.close();
      this.logger.info('node stopped', { nodeId: this.nodeId });
    })();
    return this.#closing;
  }
}

const TRANSPORT_SECURITY_WIRE = {
  plaintext: TransportSecurityWire.TRANSPORT_SECURITY_PLAINTEXT,
  tls: TransportSecurityWire.TRANSPORT_SECURITY_TLS,
  'mutual-tls': TransportSecurityWire.TRANSPORT_SECURITY_MUTUAL_TLS,
} as const;

const PROTO_STATE = { ALIVE: MemberState.MEMBER_STATE_ALIVE, SUSPECT: MemberState.MEMBER_STATE_SUSPECT, DEAD: MemberState.MEMBER_STATE_DEAD } as const;

/** A keyspace policy's `stats()` (AP and causal policies have one), duck-typed: the interface does not require it. */
function policyStats(policy: object): Readonly<Record<string, unknown>> | undefined {
  if (!('stats' in policy) || typeof policy.stats !== 'function') return undefined;
  const stats: unknown = policy.stats();
  return typeof stats === 'object' && stats !== null ? (stats as Record<string, unknown>) : undefined;
}

function memberFields(m: MemberSnapshot) {
  return {
    state: PROTO_STATE[m.state],
    phi: Number.isFinite(m.phi) ? m.phi : Number.MAX_VALUE,
    lastHeardMs: m.lastHeardAgeMs ?? -1,
    rttMs: m.rttMs ?? -1,
    clockOffsetMs: m.clockOffsetMs ?? 0,
    clockOffsetExceeded: m.clockOffsetExceeded,
    incarnation: BigInt(m.incarnation ?? 0),
  };
}

function bind(server: Server, address: string, creds: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (err, port) => (err ? reject(new Error(`cannot listen on ${address}: ${err.message}`)) : resolve(port)));
  });
}

function shutdown(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    force.unref();
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

/**
 * Where a CP keyspace's Raft log lives: in the node's LMDB environment when the store is LMDB (one
 * commit, one sync, carries log appends and state together), in memory when the store is.
 */
function raftLogOf(store: Store): (keyspace: string) => RaftLogStore {
  if (store instanceof LmdbStore) return (keyspace) => LmdbRaftLogStore.open(store, keyspace);
  if (store instanceof MemoryStore) return () => new MemoryRaftLogStore();
  return (keyspace) => {
    throw new Error(`keyspace ${keyspace} is CP and needs a Raft log beside the store; replikit has one for LmdbStore and MemoryStore, not for ${store.constructor.name}`);
  };
}
