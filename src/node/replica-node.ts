import { Server, ServerCredentials, status as Status, type ServerDuplexStream } from '@grpc/grpc-js';
import { HybridLogicalClock, systemScheduler, systemWallClock, type Scheduler, type WallClock } from '../clock/index.js';
import { ClusterServiceService } from '../gen/replikit/v1/cluster_service.js';
import { KvServiceService } from '../gen/replikit/v1/kv_service.js';
import {
  ReplicaServiceService,
  type HeartbeatRequest,
  type HeartbeatResponse,
} from '../gen/replikit/v1/replica_service.js';
import {
  clockClientInterceptor,
  clockServerInterceptor,
  livenessEvidenceClientInterceptor,
  livenessEvidenceServerInterceptor,
  peerIdentityClientInterceptor,
  peerIdentityServerInterceptor,
} from '../interceptors/index.js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { cpQuorum } from '../policy/cp-quorum.js';
import type { LivenessOracle } from '../policy/policy.js';
import { MemoryStore } from '../storage/memory-store.js';
import type { Store } from '../storage/store.js';
import { handleClockSync } from '../transport/clock-sync-service.js';
import { clusterService, type StatusSource } from '../transport/cluster-service.js';
import { GrpcReplicaSet } from '../transport/grpc-replica-set.js';
import { kvService } from '../transport/kv-service.js';
import { replicaService } from '../transport/replica-service.js';
import { validateNodeConfig, type ReplicaNodeConfig } from './config.js';
import type { KeyspaceHandle } from './keyspace-handle.js';
import { NodeCore, settle } from './node-core.js';

/** Bytes of framing a peer message may carry beyond one maximal value (key, version, clocks). */
const MESSAGE_HEADROOM_BYTES = 64 * 1024;
/** Metadata key under which the node's incarnation counter is kept in the store. */
const INCARNATION_META = 'incarnation';

/** Where and how a node serves gRPC. */
export interface ListenOptions {
  /** HOST:PORT to bind; port 0 picks a free port (see {@link ReplicaNode.address}). */
  readonly listen?: string;
  /** An existing grpc-js Server to add replikit's services to; the application binds and starts it. */
  readonly server?: Server;
  readonly serverCredentials?: ServerCredentials;
  /** Injected time, for tests that skew one node's clock. @default the system's */
  readonly wallClock?: WallClock;
  readonly scheduler?: Scheduler;
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
  readonly #store: Store;
  readonly #ownsStore: boolean;
  #closing: Promise<void> | undefined;

  private constructor(parts: {
    core: NodeCore;
    clock: HybridLogicalClock;
    logger: Logger;
    incarnation: number;
    address: string | undefined;
    server: Server;
    ownsServer: boolean;
    replicas: GrpcReplicaSet;
    store: Store;
    ownsStore: boolean;
  }) {
    this.core = parts.core;
    this.clock = parts.clock;
    this.logger = parts.logger;
    this.incarnation = parts.incarnation;
    this.address = parts.address;
    this.#server = parts.server;
    this.#ownsServer = parts.ownsServer;
    this.#replicas = parts.replicas;
    this.#store = parts.store;
    this.#ownsStore = parts.ownsStore;
  }

  /** Validates the config, opens the store, binds the server and connects to the peers. */
  static async start(config: ReplicaNodeConfig & ListenOptions): Promise<ReplicaNode> {
    validateNodeConfig(config);
    if ((config.listen === undefined) === (config.server === undefined)) {
      throw new Error('give exactly one of listen (HOST:PORT to bind) or server (an existing grpc-js Server)');
    }
    const settings = settle({ ...config, keyspaces: config.keyspaces ?? { default: cpQuorum() } });
    const logger = config.logger ?? silentLogger;
    const wallClock = config.wallClock ?? systemWallClock;
    const scheduler = config.scheduler ?? systemScheduler;
    const clock = new HybridLogicalClock(wallClock);
    const ownsStore = config.store === undefined;
    const store = config.store ?? new MemoryStore();
    const incarnation = await nextIncarnation(store);
    const maxMessageBytes = settings.maxValueBytes + MESSAGE_HEADROOM_BYTES;
    const knownNodeIds = new Set(settings.peers.map((p) => p.id));
    const liveness: LivenessOracle = { isAlive: () => true };

    const replicas = new GrpcReplicaSet({
      selfId: settings.nodeId,
      peers: settings.peers,
      maxMessageBytes,
      interceptorsFor: (peerId) => [
        peerIdentityClientInterceptor({ clusterId: settings.clusterId, nodeId: settings.nodeId }),
        clockClientInterceptor({ clock, maxClockOffsetMs: settings.maxClockOffsetMs, logger }),
        livenessEvidenceClientInterceptor({ peerNodeId: peerId, onEvidence: () => {}, logger }),
      ],
    });
    const core = new NodeCore(settings, { replicas, scheduler, wallClock, clock, store, logger, liveness });

    const ownsServer = config.server === undefined;
    const server =
      config.server ??
      new Server({
        'grpc.max_receive_message_length': maxMessageBytes,
        'grpc.max_send_message_length': maxMessageBytes,
        interceptors: [
          peerIdentityServerInterceptor({ clusterId: settings.clusterId, knownNodeIds, logger }),
          clockServerInterceptor({ clock, maxClockOffsetMs: settings.maxClockOffsetMs, logger }),
          livenessEvidenceServerInterceptor({ onEvidence: () => {}, logger }),
        ],
      });
    const statusSource: StatusSource = {
      nodeId: settings.nodeId,
      clusterId: settings.clusterId,
      incarnation,
      clock,
      peers: settings.peers,
      keyspaces: () => core.keyspaceNames(),
      isAlive: (id) => liveness.isAlive(id),
    };
    server.addService(ReplicaServiceService, replicaService({
      replica: core,
      maxBatchEntries: settings.maxBatchEntries,
      clockSync: (request) => handleClockSync(request, { wallClock, clock, nodeId: settings.nodeId }),
      heartbeat: (stream: ServerDuplexStream<HeartbeatRequest, HeartbeatResponse>) =>
        stream.emit('error', { code: Status.UNIMPLEMENTED, details: 'heartbeats are not served yet' }),
    }));
    server.addService(KvServiceService, kvService(core, wallClock));
    server.addService(ClusterServiceService, clusterService(statusSource));

    let address: string | undefined;
    if (config.listen !== undefined) {
      const port = await bind(server, config.listen, config.serverCredentials ?? ServerCredentials.createInsecure());
      address = config.listen.replace(/:\d+$/, `:${port}`);
    }
    logger.info('node started', { nodeId: settings.nodeId, address, incarnation, peers: settings.peers.length });
    return new ReplicaNode({ core, clock, logger, incarnation, address, server, ownsServer, replicas, store, ownsStore });
  }

  get nodeId(): string {
    return this.core.settings.nodeId;
  }

  /** A typed handle on one keyspace; throws for a keyspace the node does not serve. */
  keyspace(name: string): KeyspaceHandle {
    return this.core.keyspace(name);
  }

  /**
   * Drains and stops: refuses new requests, lets the server finish calls in flight (up to
   * `graceMs`, then cancels them), closes peer channels, and closes the store if the node opened it.
   */
  close(graceMs = 2_000): Promise<void> {
    this.#closing ??= (async () => {
      await this.core.close();
      if (this.#ownsServer) await shutdown(this.#server, graceMs);
      this.#replicas.close();
      if (this.#ownsStore) await this.#store.close();
      this.logger.info('node stopped', { nodeId: this.nodeId });
    })();
    return this.#closing;
  }
}

async function nextIncarnation(store: Store): Promise<number> {
  const held = store.getMeta(INCARNATION_META);
  const previous = held === undefined ? 0 : Number(new DataView(held.buffer, held.byteOffset, held.byteLength).getBigUint64(0));
  const next = previous + 1;
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(next));
  await store.putMeta(INCARNATION_META, bytes);
  return next;
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
