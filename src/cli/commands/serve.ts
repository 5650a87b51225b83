import { joinCluster, joinIfNew, JoinError } from '../../node/join.js';
import { Authorizer } from '../../auth/authorizer.js';
import { readAuthzFile, reloadAuthzFile } from '../../auth/authz-file.js';
import { AuthzFileError } from '../../auth/authz-rules.js';
import { IDENTITY_META } from '../../node/node-core.js';
import { NODE_DEFAULTS } from '../../node/config.js';
import { mkdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { ConfigError, type PeerConfig } from '../../node/config.js';
import { createPeerResolver, MAX_DISCOVERED_PEERS, PeerDiscoveryError, resolvePeersFromDns } from '../../node/peer-discovery.js';
import { ReplicaNode, type TransportSecurity } from '../../node/replica-node.js';
import { InvalidFailureDetectorConfigError } from '../../failure/index.js';
import { LOG_LEVELS, type LogLevel } from '../../logging/logger.js';
import { createPinoLogger } from '../../logging/pino-logger.js';
import { startMetricsEndpoint, type MetricsEndpoint } from '../../ops/metrics-server.js';
import { channelCredentialsOf, readTlsFiles, TlsConfigError, type TlsMaterial } from '../../ops/tls.js';
import { ReloadingTls } from '../../ops/tls-reload.js';
import { checkOwnNodeCertificate, IssuerCheck } from '../../interceptors/certificate-identity.js';
import { POLICIES, policyByName, type ConsistencyPolicy } from '../../policy/index.js';
import { LmdbStore } from '../../storage/lmdb-store.js';
import { MemoryStore } from '../../storage/memory-store.js';
import type { Store } from '../../storage/store.js';
import { hostPortFlag, intFlag, parseArgs, UsageError } from '../args.js';
import type { Command } from '../main.js';

/**
 * How long `serve` may take to drain after SIGTERM before it exits anyway (status 3): the node's
 * own grace for calls in flight is 2 s; a stopped peer must not hold the process beyond this.
 */
export const SHUTDOWN_BOUND_MS = 5_000;

/**
 * How long `--peers-dns-wait` waits for the DNS records to name its peers: long enough for a
 * StatefulSet's pods to be scheduled, pull the image and get their records on a busy cluster,
 * short enough that a wrong name fails the pod visibly (exit 1, restarted) instead of hanging.
 */
export const PEERS_DNS_WAIT_MS = 120_000;

/**
 * How often `serve` re-reads its TLS files (`--tls-reload-interval-ms`; SIGHUP re-reads them at
 * once): renewals land well before expiry (cert-manager renews at 2/3 of the lifetime, SPIRE at
 * 1/2, an hour-long SVID with half an hour to spare), so a minute's delay costs nothing, and
 * reading four small files a minute costs nothing either.
 */
export const TLS_RELOAD_INTERVAL_MS = 60_000;

/** The longest `--tls-reload-interval-ms`: Node's timers take at most 2^31-1 ms and turn a longer delay into 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

const USAGE = `usage: replikit serve --id ID --listen HOST:PORT [--peers ID=HOST:PORT,... | --peers-dns NAME | --join HOST:PORT,...]
                     [--peers-dns-port PORT] [--peers-dns-wait N] [--peers-dns-server IP:PORT] [--advertise HOST:PORT] [--auto-promote]
                     [--data-dir DIR | --memory] [--cluster-id ID]
                     [--policy cp|ap|causal] [--keyspace NAME=POLICY]... [--log-level debug|info|warn|error]
                     [--heartbeat-interval-ms N] [--request-timeout-ms N]
                     [--metrics-listen HOST:PORT] [--tls-cert PEM --tls-key PEM [--tls-ca PEM [--peer-tls-ca PEM]]]
                     [--tls-reload-interval-ms N] [--authz FILE]

Runs one replica until SIGTERM or SIGINT. The keyspace "default" is bound to --policy (cp unless
given); --keyspace adds more. Data lives in LMDB under --data-dir (default ./replikit-data/ID);
--memory keeps it in memory only. --peers-dns NAME reads the peers from DNS once, at startup,
instead of --peers: SRV records first (each target is a peer; its id is the target's first label,
e.g. a StatefulSet pod's name, and this node's own record is left out), else A/AAAA records with
--peers-dns-port (each address is the peer ip-ADDRESS, . and : as -, so run each node with --id
by that rule; prefer SRV: pod names are stable, IPs are not). --peers-dns-wait N re-resolves every
second until N peers besides this node are listed (give the first cluster's size minus one: the
nodes that form a cluster must all see each other), for at most ${PEERS_DNS_WAIT_MS / 1000} s.
--peers-dns-server asks that DNS server instead of the system's (e.g. Consul's on 127.0.0.1:8600).
With --peers-dns and an empty store, a node that finds a running cluster that does not know its id
(a StatefulSet scaled up) joins it as a learner at --advertise, as --join does.
--join HOST:PORT,... joins a running cluster instead: it asks those members for the membership and,
unless this id is a member already, to add it as a learner at --advertise (default --listen); it
copies its peers' state, follows every keyspace's log and serves; promote it once it caught up
(replikit member promote ID). A cluster of another --cluster-id refuses it (exit 1).
--auto-promote: the node leading the membership promotes each learner once it has caught up (give
it to every node), so that no one has to run member promote.
Prints one line once it serves (a new cluster: once every member has started; a node whose data is gone: once it has recovered it from its peers); logs JSON lines to stderr.
--heartbeat-interval-ms (default 100, the LAN profile: a crash is seen within about 0.8 s, and
beats of a few dozen bytes cost nothing on a LAN) sets how often peers exchange liveness beats.
--metrics-listen serves Prometheus metrics at http://HOST:PORT/metrics. --tls-cert and --tls-key
serve TLS and make peer calls over TLS with the same certificate; --tls-ca adds mutual TLS: peers
and clients must present a certificate that CA signed. With mutual TLS, identities are the
certificates' URI SANs: this node's certificate must name spiffe://CLUSTER-ID/node/ID (checked at
start), a peer call is accepted only from the node certificate of the node id it claims, of this
cluster, and a peer's server certificate must name the node called (docs/security.md; replikit
certs makes such certificates). --peer-tls-ca gives peers their own CA, as etcd's
--peer-trusted-ca-file: peer calls need a certificate it issued, clients keep --tls-ca. Without
--tls-cert the node warns at start that it runs in plaintext. The TLS files are re-read on SIGHUP
and every --tls-reload-interval-ms (default ${TLS_RELOAD_INTERVAL_MS}; 0: on SIGHUP only), so renewed certificates
and CA bundles replaced in place take effect without a restart (new connections use them); a set
of files that does not fit together (a key that is not the certificate's, a certificate naming
another node, a CA file without a certificate) is logged and the files in force are kept (docs/security.md).
Every node serves grpc.health.v1 (NOT_SERVING while a CP keyspace has no quorum or
this node's clock is off against a majority of peers) and gRPC server reflection.
--authz FILE (needs mutual TLS: --tls-ca) authorizes client calls by the identity in the caller's
certificate (spiffe://<cluster-id>/client/<name>) against FILE's grants, one a line:
"allow IDENTITY PERMISSIONS KEYSPACE [KEY-PREFIX]" (docs/security.md); anything not granted is
refused PERMISSION_DENIED; this cluster's node certificates may do everything. SIGHUP re-reads
FILE: a file that does not parse is logged (file, line) and the rules in force are kept.
--clock-skew-ms N adds N ms to this node's wall clock: a fault-injection drill, never for production.
Exit status: 0 drained cleanly after SIGTERM or SIGINT; 1 the store failed (a failed sync or a full
disk: the node stopped acknowledging at once), or --peers-dns found no usable peers; 2 bad flags;
3 it did not drain within 5 s of the signal (calls to a stopped peer, say) and exited anyway.
Policies available: ${Object.keys(POLICIES).join(', ')}.`;

/** The flags `serve` takes (flag names without the dashes). */
export const SERVE_FLAGS = {
  id: {},
  listen: {},
  peers: {},
  'peers-dns': {},
  'peers-dns-port': {},
  'peers-dns-wait': {},
  'peers-dns-server': {},
  join: {},
  advertise: {},
  'auto-promote': { boolean: true },
  'data-dir': {},
  memory: { boolean: true },
  'cluster-id': {},
  policy: {},
  keyspace: { repeated: true },
  'log-level': {},
  'request-timeout-ms': {},
  'heartbeat-interval-ms': {},
  'metrics-listen': {},
  'tls-cert': {},
  'tls-key': {},
  'tls-ca': {},
  'peer-tls-ca': {},
  'tls-reload-interval-ms': {},
  authz: {},
  'clock-skew-ms': {},
} as const;

/** Parses `--peers n2=127.0.0.1:7002,n3=127.0.0.1:7003`. */
export function parsePeers(text: string): PeerConfig[] {
  if (text.trim() === '') return [];
  return text.split(',').map((part) => {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`--peers must be ID=HOST:PORT,...; ${JSON.stringify(part)} has no ID=`);
    return { id: part.slice(0, eq), address: hostPortFlag('peers', part.slice(eq + 1)) };
  });
}

/** `--peers-dns NAME [--peers-dns-port PORT] [--peers-dns-wait N] [--peers-dns-server IP:PORT]`, or undefined without it. */
function peersDnsFlags(flags: ReadonlyMap<string, string>): { name: string; port?: number; wait: number; server?: string } | undefined {
  const name = flags.get('peers-dns');
  if (name === undefined) {
    const stray = ['peers-dns-port', 'peers-dns-wait', 'peers-dns-server'].find((f) => flags.has(f));
    if (stray !== undefined) throw new UsageError(`--${stray} needs --peers-dns NAME`);
    return undefined;
  }
  if (flags.has('peers')) throw new UsageError('give --peers or --peers-dns, not both');
  if (!/^[A-Za-z0-9_.-]{1,253}$/.test(name) || name.startsWith('.') || name.includes('..')) {
    throw new UsageError(`--peers-dns must be a DNS name (e.g. replikit.default.svc.cluster.local), not ${JSON.stringify(name)}`);
  }
  const server = flags.get('peers-dns-server');
  const serverIp = server === undefined ? undefined : /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+))(?::(\d{1,5}))?$/.exec(server);
  if (serverIp !== undefined && (serverIp === null || (serverIp[1] !== undefined ? isIP(serverIp[1]) !== 6 : isIP(serverIp[2]!) !== 4) || Number(serverIp[3] ?? 53) > 65535)) {
    throw new UsageError(`--peers-dns-server must be IP or IP:PORT (IPv6 as [::1]:53), not ${JSON.stringify(server)}`);
  }
  return {
    name,
    port: flags.has('peers-dns-port') ? intFlag('peers-dns-port', flags.get('peers-dns-port')!, 1, 65535) : undefined,
    wait: flags.has('peers-dns-wait') ? intFlag('peers-dns-wait', flags.get('peers-dns-wait')!, 0, MAX_DISCOVERED_PEERS) : 0,
    server,
  };
}

/** `--authz FILE`: its rules, or a usage error naming the file and line (or why mutual TLS is needed). */
function authorizerOf(file: string, tls: TlsMaterial | undefined): Authorizer {
  if (tls?.ca === undefined) {
    throw new UsageError('--authz needs mutual TLS (--tls-cert, --tls-key and --tls-ca): the rules grant to the identities in client certificates, which only mutual TLS verifies');
  }
  try {
    return new Authorizer(readAuthzFile(file));
  } catch (err: unknown) {
    if (err instanceof AuthzFileError) throw new UsageError(`--authz: ${err.message}`);
    throw err;
  }
}

function policyFlag(flag: string, name: string): ConsistencyPolicy {
  const policy = policyByName(name);
  if (policy === undefined) {
    throw new UsageError(`--${flag}: unknown policy ${JSON.stringify(name)}; available: ${Object.keys(POLICIES).join(', ')}`);
  }
  return policy;
}

export const serveCommand: Command = {
  summary: 'run one replica',
  usage: USAGE,
  async run(argv) {
    const args = parseArgs(argv, SERVE_FLAGS);
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const id = args.flags.get('id');
    if (id === undefined) throw new UsageError('--id is required');
    const listen = args.flags.get('listen');
    if (listen === undefined) throw new UsageError('--listen is required');
    hostPortFlag('listen', listen);
    let peers = parsePeers(args.flags.get('peers') ?? '');
    const peersDns = peersDnsFlags(args.flags);
    const joinSeeds = args.flags.has('join') ? args.flags.get('join')!.split(',').map((seed) => hostPortFlag('join', seed)) : undefined;
    if (joinSeeds !== undefined && (args.flags.has('peers') || peersDns !== undefined)) {
      throw new UsageError('give --join or --peers (or --peers-dns), not both: a joining node learns its peers from the cluster');
    }
    const advertise = args.flags.has('advertise') ? hostPortFlag('advertise', args.flags.get('advertise')!) : undefined;
    if (joinSeeds !== undefined && advertise === undefined && /^(0\.0\.0\.0|\[::\]):|:0$/.test(listen)) {
      throw new UsageError(`--join needs --advertise HOST:PORT when --listen ${listen} is not an address peers can reach`);
    }
    const levelText = args.flags.get('log-level') ?? 'info';
    if (!(LOG_LEVELS as readonly string[]).includes(levelText)) {
      throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(levelText)}`);
    }
    const keyspaces: Record<string, ConsistencyPolicy> = { default: policyFlag('policy', args.flags.get('policy') ?? 'cp') };
    for (const binding of args.lists.get('keyspace') ?? []) {
      const eq = binding.indexOf('=');
      if (eq <= 0) throw new UsageError(`--keyspace must be NAME=POLICY, not ${JSON.stringify(binding)}`);
      keyspaces[binding.slice(0, eq)] = policyFlag('keyspace', binding.slice(eq + 1));
    }
    const requestTimeoutMs =
      args.flags.has('request-timeout-ms') ? intFlag('request-timeout-ms', args.flags.get('request-timeout-ms')!, 1, 3_600_000) : undefined;
    const heartbeatIntervalMs =
      args.flags.has('heartbeat-interval-ms') ? intFlag('heartbeat-interval-ms', args.flags.get('heartbeat-interval-ms')!, 1, 60_000) : undefined;
    if (args.switches.has('memory') && args.flags.has('data-dir')) {
      throw new UsageError('give --data-dir or --memory, not both');
    }
    const metricsListen = args.flags.get('metrics-listen');
    if (metricsListen !== undefined) hostPortFlag('metrics-listen', metricsListen);
    const clockSkewMs =
      args.flags.has('clock-skew-ms') ? intFlag('clock-skew-ms', args.flags.get('clock-skew-ms')!, -86_400_000, 86_400_000) : 0;
    let tls: TlsMaterial | undefined;
    try {
      tls = readTlsFiles({ certFile: args.flags.get('tls-cert'), keyFile: args.flags.get('tls-key'), caFile: args.flags.get('tls-ca') });
    } catch (err: unknown) {
      if (err instanceof TlsConfigError) throw new UsageError(err.message);
      throw err;
    }
    if (tls !== undefined && tls.cert === undefined) throw new UsageError('--tls-ca needs --tls-cert and --tls-key: a TLS node presents a certificate');
    const clusterIdFlag = args.flags.get('cluster-id') ?? NODE_DEFAULTS.clusterId;
    const mutualTls = tls?.ca !== undefined;
    if (mutualTls && tls?.cert !== undefined) {
      // Every peer would refuse a node whose certificate names someone else: say so now, not in their logs.
      const problem = checkOwnNodeCertificate(tls.cert, clusterIdFlag, id);
      if (problem !== undefined) throw new UsageError(`--tls-cert: ${problem}`);
    }
    let peerTlsCa: Buffer | undefined;
    const peerTlsCaFile = args.flags.get('peer-tls-ca');
    if (peerTlsCaFile !== undefined) {
      if (!mutualTls) throw new UsageError("--peer-tls-ca needs mutual TLS: give --tls-cert, --tls-key and --tls-ca (the clients' CA) too");
      try {
        peerTlsCa = readTlsFiles({ caFile: peerTlsCaFile })?.ca;
        // Refuses a file without a certificate, in the words the peer trust uses.
        new IssuerCheck(peerTlsCa!);
      } catch (err: unknown) {
        throw new UsageError(`--peer-tls-ca: ${err instanceof Error ? err.message.replace(/^--tls-ca: /, '') : String(err)}`);
      }
    }
    // Peers: this node's certificate, trusting the peer CA (or the one CA), and each peer's server
    // certificate checked against the node called.
    const peerTls: TlsMaterial | undefined = tls === undefined ? undefined : { ...tls, ca: peerTlsCa ?? tls.ca };
    // The server and the peer calls use the files in force, re-read on SIGHUP and on a timer. The
    // server accepts certificates from either CA; which one a call needs is checked per call.
    let reloadingTls: ReloadingTls | undefined;
    if (tls?.cert !== undefined) {
      try {
        reloadingTls = new ReloadingTls(
          { certFile: args.flags.get('tls-cert')!, keyFile: args.flags.get('tls-key')!, caFile: args.flags.get('tls-ca'), peerCaFile: peerTlsCaFile },
          { clusterId: clusterIdFlag, nodeId: id },
        );
      } catch (err: unknown) {
        if (err instanceof TlsConfigError) throw new UsageError(err.message);
        throw err;
      }
    }
    const tlsReloadIntervalMs = args.flags.has('tls-reload-interval-ms')
      ? intFlag('tls-reload-interval-ms', args.flags.get('tls-reload-interval-ms')!, 0, MAX_TIMER_MS)
      : TLS_RELOAD_INTERVAL_MS;
    if (args.flags.has('tls-reload-interval-ms') && reloadingTls === undefined) {
      throw new UsageError('--tls-reload-interval-ms needs --tls-cert and --tls-key: without TLS there are no files to re-read');
    }
    const transportSecurity: TransportSecurity = tls === undefined ? 'plaintext' : mutualTls ? 'mutual-tls' : 'tls';
    const authzFile = args.flags.get('authz');
    const authorizer = authzFile === undefined ? undefined : authorizerOf(authzFile, tls);

    const logger = createPinoLogger({ level: levelText as LogLevel, base: { node: id } });
    if (peersDns !== undefined) {
      try {
        peers = await resolvePeersFromDns(peersDns.name, {
          selfId: id,
          defaultPort: peersDns.port,
          resolver: createPeerResolver({ servers: peersDns.server === undefined ? undefined : [peersDns.server] }),
          waitForPeers: { minPeers: peersDns.wait, timeoutMs: PEERS_DNS_WAIT_MS },
          onNote: (message) => logger.info(message, { peersDns: peersDns.name }),
        });
      } catch (err: unknown) {
        if (!(err instanceof PeerDiscoveryError)) throw err;
        process.stderr.write(`replikit serve: --peers-dns: ${err.message}\n`);
        return 1;
      }
      logger.info(`--peers-dns ${peersDns.name}: ${peers.length} peers: ${peers.map((p) => `${p.id}=${p.address}`).join(',') || 'none'}`, {
        peersDns: peersDns.name,
        peers: peers.map((p) => p.id),
      });
    }
    if (joinSeeds !== undefined) {
      const address = advertise ?? listen;
      try {
        const joined = await joinCluster({
          seeds: joinSeeds,
          nodeId: id,
          address,
          clusterId: args.flags.get('cluster-id') ?? NODE_DEFAULTS.clusterId,
          credentials: peerTls === undefined ? undefined : channelCredentialsOf(peerTls),
        });
        peers = joined.peers;
        logger.info(
          joined.added ? `joined the cluster as a learner at ${address} (membership version ${joined.version}); promote it once it caught up: replikit member promote ${id}` : `already a ${joined.role} of the cluster (membership version ${joined.version})`,
          { peers: peers.map((p) => p.id), version: joined.version },
        );
      } catch (err: unknown) {
        if (!(err instanceof JoinError)) throw err;
        process.stderr.write(`replikit serve: --join: ${err.message}\n`);
        return 1;
      }
    }
    let store: Store;
    let storeLabel: string;
    if (args.switches.has('memory')) {
      store = new MemoryStore();
      storeLabel = 'memory';
    } else {
      const dir = args.flags.get('data-dir') ?? `replikit-data/${id}`;
      mkdirSync(dir, { recursive: true });
      // DELIBERATELY BROKEN, for testing the test harness only (test/storage/lmdb-durability.test.ts).
      const unsafeNoSync = process.env.REPLIKIT_UNSAFE_NO_SYNC === '1';
      if (unsafeNoSync) {
        process.stderr.write('replikit serve: WARNING: REPLIKIT_UNSAFE_NO_SYNC=1: LMDB syncing is OFF, acknowledged writes can be lost in a crash\n');
      }
      store = LmdbStore.open(dir, { unsafeNoSync });
      storeLabel = `lmdb:${dir}`;
    }

    // A pod of a scaled-up StatefulSet finds its peers by DNS like the first ones did, but the
    // cluster does not know it yet: it joins as a learner instead of taking its empty disk for a
    // lost one.
    let joining = joinSeeds !== undefined;
    if (peersDns !== undefined && store.getMeta(IDENTITY_META) === undefined && peers.length > 0) {
      try {
        const joined = await joinIfNew({
          peers,
          nodeId: id,
          address: advertise ?? listen,
          clusterId: args.flags.get('cluster-id') ?? NODE_DEFAULTS.clusterId,
          credentials: peerTls === undefined ? undefined : channelCredentialsOf(peerTls),
        });
        if (joined !== undefined) {
          peers = joined.peers;
          joining = true;
          logger.info(`the cluster found by --peers-dns does not know ${id}: joined it as a learner at ${advertise ?? listen} (membership version ${joined.version}); promote it once it caught up: replikit member promote ${id}`);
        }
      } catch (err: unknown) {
        if (!(err instanceof JoinError)) throw err;
        await store.close();
        process.stderr.write(`replikit serve: --peers-dns: ${err.message}\n`);
        return 1;
      }
    }

    let node: ReplicaNode;
    try {
      node = await ReplicaNode.start({
        nodeId: id,
        listen,
        peers,
        join: joining,
        autoPromote: args.switches.has('auto-promote'),
        advertiseAddress: advertise,
        clusterId: args.flags.get('cluster-id'),
        keyspaces,
        store,
        logger,
        requestTimeoutMs,
        failureDetector: heartbeatIntervalMs === undefined ? undefined : { heartbeatIntervalMs },
        serverCredentials: reloadingTls?.serverCredentials(),
        peerCredentials: reloadingTls === undefined ? undefined : (peerId) => reloadingTls.peerChannelCredentials({ clusterId: clusterIdFlag, nodeId: peerId }),
        transportSecurity,
        peerTrust: reloadingTls?.peerTrust,
        ownCertificate: tls?.cert,
        wallClock: clockSkewMs === 0 ? undefined : () => Date.now() + clockSkewMs,
        processMetrics: true,
        authorization: authorizer,
        // DELIBERATELY BROKEN, for testing the test harness only (test/process/wiped-replica.test.ts).
        unsafeSkipRecovery: process.env.REPLIKIT_UNSAFE_SKIP_RECOVERY === '1',
      });
    } catch (err: unknown) {
      await store.close();
      if (err instanceof ConfigError) throw new UsageError(err.message);
      if (err instanceof InvalidFailureDetectorConfigError) throw new UsageError(`--heartbeat-interval-ms: ${err.message}`);
      process.stderr.write(`replikit serve: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }

    let metricsEndpoint: MetricsEndpoint | undefined;
    if (metricsListen !== undefined) {
      try {
        metricsEndpoint = await startMetricsEndpoint(metricsListen, node.metrics, logger);
      } catch (err: unknown) {
        await node.close();
        await store.close();
        process.stderr.write(`replikit serve: ${err instanceof Error ? err.message : String(err)}\n`);
        return 1;
      }
    }
    if (transportSecurity === 'plaintext') {
      logger.warn(`this node runs without TLS: anyone who can reach ${listen} can read and write every keyspace and act as a peer (give --tls-cert, --tls-key and --tls-ca for mutual TLS; docs/security.md)`, { transportSecurity });
    }
    if (clockSkewMs !== 0) logger.warn(`this node's wall clock is skewed by ${clockSkewMs} ms on purpose (--clock-skew-ms)`, { clockSkewMs });
    /** What SIGHUP re-reads: the authz file and the TLS files, each keeping what is in force when the new file is refused. */
    const onHangup: (() => void)[] = [];
    if (authorizer !== undefined && authzFile !== undefined) {
      logger.info(`client authorization: ${authorizer.rules.grants.length} grants from ${authzFile}`, { file: authzFile, grants: authorizer.rules.grants.length });
      // SIGHUP re-reads the file: new rules on success, the old ones kept (and the error logged) on failure.
      onHangup.push(() => reloadAuthzFile(authzFile, authorizer, { logger, onReload: (outcome) => node.metrics.countAuthzReload(outcome) }));
    }
    let tlsReloadTimer: NodeJS.Timeout | undefined;
    if (reloadingTls !== undefined) {
      const inForce = reloadingTls;
      node.metrics.trackCertificateExpiry(() => ({ serial: inForce.serialNumber, expirySeconds: Math.floor(inForce.notAfter.getTime() / 1000) }));
      const reloadTls = (trigger: 'SIGHUP' | 'interval') => {
        const result = inForce.reload();
        node.metrics.countTlsReload(result.outcome);
        if (result.outcome === 'applied') {
          logger.info(`reloaded TLS certificates: serial ${inForce.serialNumber}, valid until ${inForce.notAfter.toISOString()}`, {
            serial: inForce.serialNumber,
            validUntil: inForce.notAfter.toISOString(),
            trigger,
          });
        } else if (result.outcome === 'refused') {
          logger.warn(`kept the certificates in force: ${result.problem}`, { serial: inForce.serialNumber, trigger });
        }
      };
      onHangup.push(() => reloadTls('SIGHUP'));
      // unref: the timer alone must not keep a stopping process alive; it is cleared at shutdown too.
      if (tlsReloadIntervalMs > 0) tlsReloadTimer = setInterval(() => reloadTls('interval'), tlsReloadIntervalMs).unref();
      logger.info(
        `TLS certificate serial ${inForce.serialNumber}, valid until ${inForce.notAfter.toISOString()}; the TLS files are re-read on SIGHUP${tlsReloadIntervalMs > 0 ? ` and every ${tlsReloadIntervalMs} ms` : ''}`,
        { serial: inForce.serialNumber, validUntil: inForce.notAfter.toISOString(), reloadIntervalMs: tlsReloadIntervalMs },
      );
    }
    // Without a handler SIGHUP would end the process: install one only for what can be re-read.
    if (onHangup.length > 0) process.on('SIGHUP', () => onHangup.forEach((reload) => reload()));

    // Signals and a failed store end the process in every phase, the wait for serving included.
    let stopped: (why: string) => void = () => {};
    const stop = new Promise<string>((resolve) => (stopped = resolve));
    process.once('SIGTERM', () => stopped('SIGTERM'));
    process.once('SIGINT', () => stopped('SIGINT'));
    const failed = node.failed.then((error) => {
      // Fail-stop: the node acknowledges nothing more; exit non-zero so a supervisor restarts it
      // from what its disk really holds (see FailStopStore).
      process.stderr.write(`replikit serve: the store failed (${error instanceof Error ? error.message : String(error)}); stopping\n`);
      stopped('store failure');
      return 'store failure';
    });

    // The ready line comes once the node serves: at once after a restart; for a new cluster once
    // every node has started; for a node that lost its data once it has recovered it (its
    // waiting lines on stderr say what for).
    const first = await Promise.race([node.serving.then(() => 'serving'), stop]);
    if (first === 'serving') {
      const bindings = Object.entries(keyspaces).map(([name, p]) => `${name}=${p.name}`).join(' ');
      const tlsLabel = tls === undefined ? '' : tls.ca === undefined ? ', tls' : ', mutual tls';
      const metricsLabel = metricsEndpoint === undefined ? '' : `, metrics http://${metricsEndpoint.address}/metrics`;
      process.stdout.write(
        `replikit ${id} ready on ${node.address} (cluster ${node.core.settings.clusterId}, incarnation ${node.incarnation}, ` +
          `${peers.length} peers, keyspaces ${bindings}, store ${storeLabel}${tlsLabel}${metricsLabel})\n`,
      );
    }
    const why = first === 'serving' ? await stop : first;
    clearInterval(tlsReloadTimer);
    logger.info('shutting down', { signal: why });
    const storeFailed = why === 'store failure' || (await Promise.race([failed, Promise.resolve('')])) === 'store failure';
    // Drain within a bound whatever the peers do: calls to a peer that stopped answering are
    // abandoned when the node closes, and whatever still holds the process past the bound (a
    // channel to a stopped peer) does not keep it running.
    const drained = await Promise.race([
      (async () => {
        await metricsEndpoint?.close();
        await node.close();
        await store.close().catch(() => {});
        return true;
      })(),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), SHUTDOWN_BOUND_MS).unref()),
    ]);
    if (!drained) logger.warn(`did not drain within ${SHUTDOWN_BOUND_MS} ms of ${why}; exiting anyway`, { boundMs: SHUTDOWN_BOUND_MS });
    const code = storeFailed ? 1 : drained ? 0 : 3;
    logger.info('stopped', { code, drained });
    // Exit even if a handle (a socket to a stopped peer) would keep the event loop alive: the
    // timer is unref'd, so it fires only then, after the log lines above have been written.
    setTimeout(() => process.exit(code), 200).unref();
    return code;
  },
};
