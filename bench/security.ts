/**
 * The security rows (issue #19): what mutual TLS with authorization costs. The same replikit
 * 3-node CP cluster (real `replikit serve --policy cp` processes on loopback, LmdbStore, as the
 * other rows start them) runs twice side by side: `plaintext`, and `mtls-authz`: every node with
 * its own certificate (`--tls-cert --tls-key --tls-ca`, so peers and clients must present one
 * signed by the CA) and `--authz FILE` (a few dozen grants, deny by default, the bench client's
 * certificate `client:bench` granted read,write on the bench keyspace). The certificates are made
 * in-process (src/ops/certificates.ts) into a temporary folder. CP put and get at 1 and 64
 * callers; in every round the two clusters are measured back to back on each (op, callers), the
 * order reversed in even rounds, the one not measured paused (SIGSTOP); medians over rounds.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { LocalCluster } from '../src/cli/local-cluster.js';
import { AckLevel, KvServiceClient } from '../src/gen/replikit/v1/kv_service.js';
import { createCa, issueClientCertificate, issueNodeCertificate, type CertificateAuthority } from '../src/ops/certificates.js';
import { channelCredentialsOf, readTlsFiles } from '../src/ops/tls.js';
import type { Reaper } from './children.js';
import { aggregateSecurity, SECURITY_OPS, type SecurityReport, type SecuritySample, type SecurityVariant } from './security-report.js';
import { CALL_DEADLINE_MS, drivenFromHere, replikitDriver, type Measurement, type PhaseOptions } from './systems.js';
import { VALUE, keyOf } from './workload.js';
import { resume, signalAll } from './pausing.js';

/** Callers: one (the latency a single client sees) and 64 (throughput), as in the other rows. */
export const SECURITY_CONCURRENCIES = [1, 64] as const;
/** The cluster id the certificates are issued for (serve's default). */
const CLUSTER_ID = 'replikit';
/** The bench client's name in its certificate: `spiffe://replikit/client/bench`. */
export const BENCH_CLIENT = 'bench';
/** The keyspace the load generator reads and writes. */
const BENCH_KEYSPACE = 'default';

export interface SecurityOptions {
  readonly reaper: Reaper;
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly pause: boolean;
  /** Extra flags for every `replikit serve` (--serve-arg). */
  readonly serveArgs: readonly string[];
  readonly command: string;
  readonly log: (line: string) => void;
  readonly phase?: (label: string, plannedMs: number) => void;
}

/** Phases, and the time they are planned to take: for the progress bar and the watchdog. */
export function securityPlan(options: Pick<SecurityOptions, 'rounds' | 'durationMs' | 'warmupMs'>): { steps: number; plannedMs: number } {
  const steps = options.rounds * SECURITY_OPS.length * SECURITY_CONCURRENCIES.length * 2;
  return { steps, plannedMs: steps * (options.durationMs + options.warmupMs) };
}

/**
 * An authorization file such as an operator would keep: a few dozen grants for the services and
 * people of a small company, comments, and among them the bench client's read,write on the bench
 * keyspace. Deny by default: whatever is not granted is refused.
 */
export function benchAuthzFile(): { text: string; grants: number } {
  const services: [string, string, string[]][] = [
    ['billing-api', 'read,write', ['accounts', 'invoices', 'payments']],
    ['billing-worker', 'read,write', ['invoices', 'payments']],
    ['reporting', 'read', ['accounts', 'invoices', 'payments', 'orders', 'inventory']],
    ['orders-api', 'read,write', ['orders', 'carts']],
    ['orders-worker', 'read,write', ['orders', 'shipments']],
    ['inventory-api', 'read,write', ['inventory']],
    ['inventory-sync', 'write', ['inventory']],
    ['session-gateway', 'read,write', ['sessions']],
    ['feature-flags', 'read', ['flags']],
    ['flags-admin', 'read,write', ['flags']],
    ['scheduler', 'read,write', ['locks', 'jobs']],
    ['audit-export', 'read', ['accounts', 'orders', 'sessions']],
    ['oncall-alice', 'read', ['accounts', 'orders', 'inventory', 'jobs']],
  ];
  const lines = [
    '# replikit authorization: who may read and write which keyspace (serve --authz FILE).',
    '# One grant a line: allow client:NAME PERMISSIONS KEYSPACE. Anything not granted is denied.',
    '# Written by bench/security.ts for the security rows of `npm run bench`.',
    '',
  ];
  let grants = 0;
  for (const [i, [client, permissions, keyspaces]] of services.entries()) {
    lines.push(`# ${client}`);
    for (const keyspace of keyspaces) {
      lines.push(`allow client:${client} ${permissions} ${keyspace}`);
      grants++;
    }
    // The bench client sits among the others, not first, as it would in a real file.
    if (i === 6) {
      lines.push('# the benchmark load generator', `allow client:${BENCH_CLIENT} read,write ${BENCH_KEYSPACE}`);
      grants++;
    }
  }
  const patterns = [
    '# application instances, each under its own key prefix',
    'allow client:app-* read,write orders app/',
    'allow client:app-* read catalog',
    '# people: operators change the membership, on-call engineers read everything',
    'allow client:ops-* admin *',
    'allow client:oncall-* read *',
  ];
  lines.push(...patterns);
  grants += patterns.filter((l) => l.startsWith('allow ')).length;
  return { text: `${lines.join('\n')}\n`, grants };
}

/** The CA, a certificate per node, the bench client's and a client nobody granted, as PEM files in `dir`. */
export async function writeBenchPki(
  dir: string,
  nodeIds: readonly string[],
): Promise<{ caFile: string; node: (id: string) => { cert: string; key: string }; client: { cert: string; key: string }; stranger: { cert: string; key: string } }> {
  const ca: CertificateAuthority = await createCa('replikit bench CA');
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, ca.certPem);
  const write = (name: string, pair: { certPem: string; keyPem: string }) => {
    const cert = join(dir, `${name}.pem`);
    const key = join(dir, `${name}.key`);
    writeFileSync(cert, pair.certPem);
    writeFileSync(key, pair.keyPem, { mode: 0o600 });
    return { cert, key };
  };
  const nodes = new Map<string, { cert: string; key: string }>();
  for (const id of nodeIds) nodes.set(id, write(`node-${id}`, await issueNodeCertificate(ca, CLUSTER_ID, id)));
  const client = write(`client-${BENCH_CLIENT}`, await issueClientCertificate(ca, CLUSTER_ID, BENCH_CLIENT));
  const stranger = write('client-stranger', await issueClientCertificate(ca, CLUSTER_ID, 'stranger'));
  return { caFile, node: (id) => nodes.get(id)!, client, stranger };
}

interface Target {
  readonly variant: SecurityVariant;
  readonly description: string;
  measure(op: 'put' | 'get', options: PhaseOptions): Promise<Measurement>;
  probe(): Promise<void>;
  pids(): number[];
  close(): Promise<void>;
}

/** One put by a client holding `credentials`; resolves to the gRPC status code (0: it worked). */
function putStatus(address: string, credentials: ChannelCredentials): Promise<number> {
  const client = new KvServiceClient(address, credentials);
  return new Promise<number>((resolve) => {
    const request = { keyspace: BENCH_KEYSPACE, key: keyOf(0), value: VALUE, sessionToken: Buffer.alloc(0), ack: AckLevel.ACK_LEVEL_UNSPECIFIED, lease: 0n };
    client.put(request, new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err: ServiceError | null) => resolve(err === null ? status.OK : err.code));
  }).finally(() => client.close());
}

async function startTarget(variant: SecurityVariant, options: SecurityOptions, notes: string[]): Promise<Target> {
  const cluster = await LocalCluster.create({ size: 3, serveArgs: ['--policy', 'cp', '--log-level', 'warn', ...options.serveArgs] });
  options.reaper.trackGroup(cluster);
  let credentials: ChannelCredentials | undefined;
  let stranger: ChannelCredentials | undefined;
  try {
    if (variant === 'plaintext') {
      await cluster.startAll();
    } else {
      const dir = mkdtempSync(join(tmpdir(), 'replikit-bench-pki-'));
      options.reaper.trackDir(dir);
      const pki = await writeBenchPki(dir, cluster.ids);
      const authzFile = join(dir, 'authz.conf');
      writeFileSync(authzFile, benchAuthzFile().text);
      await Promise.all(
        cluster.ids.map((id) =>
          cluster.start(id, ['--tls-cert', pki.node(id).cert, '--tls-key', pki.node(id).key, '--tls-ca', pki.caFile, '--authz', authzFile]),
        ),
      );
      credentials = channelCredentialsOf(readTlsFiles({ certFile: pki.client.cert, keyFile: pki.client.key, caFile: pki.caFile })!);
      stranger = channelCredentialsOf(readTlsFiles({ certFile: pki.stranger.cert, keyFile: pki.stranger.key, caFile: pki.caFile })!);
    }
  } catch (err: unknown) {
    await cluster.stop();
    options.reaper.untrackGroup(cluster);
    throw err;
  }
  const addresses = cluster.ids.map((id) => cluster.address(id));
  const driver = replikitDriver(addresses, `replikit-cp ${variant}`, credentials);
  const pids = () => cluster.ids.flatMap((id) => cluster.pid(id) ?? []);
  const close = async () => {
    driver.close();
    await cluster.stop();
    options.reaper.untrackGroup(cluster);
  };
  try {
    await driver.prefill();
    if (stranger !== undefined) {
      // The authorization is really in the path: a certificate the CA signed but the file does not grant is refused.
      const code = await putStatus(addresses[0]!, stranger);
      if (code !== status.PERMISSION_DENIED) throw new Error(`a put by client:stranger (no grant) ended with gRPC status ${code}, not PERMISSION_DENIED: --authz is not enforced`);
      notes.push('mtls-authz: checked before measuring that a put by `client:stranger` (a certificate from the same CA, no grant) is refused with PERMISSION_DENIED');
    }
  } catch (err: unknown) {
    await close();
    throw err;
  }
  const { put, get } = driver.ops;
  const driven = drivenFromHere({ put, get }, pids);
  return {
    variant,
    description:
      variant === 'plaintext'
        ? '3 `replikit serve --policy cp` processes, plaintext, calls round-robin over the 3 nodes'
        : `the same with --tls-cert/--tls-key/--tls-ca (a certificate per node, peers over mutual TLS) and --authz; the bench client presents client:${BENCH_CLIENT}`,
    measure: (op, phaseOptions) => driven.measure(op, phaseOptions),
    probe: driven.probe,
    pids,
    close,
  };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Starts both clusters, measures every round, stops them. */
export async function runSecurity(options: SecurityOptions): Promise<SecurityReport> {
  const { grants } = benchAuthzFile();
  const notes: string[] = [];
  const unavailable: { variant: SecurityVariant; reason: string }[] = [];
  const targets: Target[] = [];
  for (const variant of ['plaintext', 'mtls-authz'] as const) {
    try {
      const target = await startTarget(variant, options, notes);
      targets.push(target);
      notes.push(`${variant}: ${target.description}`);
      if (options.pause) signalAll(target, 'SIGSTOP');
      options.log(`security: ${variant} cluster started and filled`);
    } catch (err: unknown) {
      unavailable.push({ variant, reason: message(err) });
      options.log(`security: ${variant}: ${message(err)}`);
    }
  }
  if (options.pause) notes.push('the cluster not being measured was paused (SIGSTOP) and continued before its turn');
  const samples: SecuritySample[] = [];
  let active: Target | undefined;
  try {
    for (let round = 1; round <= options.rounds; round++) {
      for (const concurrency of SECURITY_CONCURRENCIES) {
        for (const op of SECURITY_OPS) {
          const order = round % 2 === 0 ? [...targets].reverse() : targets;
          for (const target of order) {
            options.phase?.(`security ${target.variant} CP ${op} ×${concurrency} (round ${round}/${options.rounds})`, options.durationMs + options.warmupMs);
            if (options.pause && active !== target) {
              if (active !== undefined) signalAll(active, 'SIGSTOP');
              active = target;
              try {
                await resume(target, target.variant);
              } catch (err: unknown) {
                notes.push(message(err));
                options.log(message(err));
              }
            }
            const loadAverage = loadavg()[0]!;
            const { result, ...cpu } = await target.measure(op, { concurrency, durationMs: options.durationMs, warmupMs: options.warmupMs });
            samples.push({ variant: target.variant, op, concurrency, round, result, ...cpu, loadAverage });
            if (result.errors > 0) options.log(`security ${target.variant} ${op} ×${concurrency}: ${result.errors} errors, first: ${result.firstError}`);
          }
        }
      }
    }
  } finally {
    for (const t of targets) signalAll(t, 'SIGCONT');
    await Promise.all(targets.map((t) => t.close()));
  }
  return aggregateSecurity(
    {
      rounds: options.rounds,
      durationMs: options.durationMs,
      warmupMs: options.warmupMs,
      concurrencies: [...SECURITY_CONCURRENCIES],
      authz: true,
      grants,
      command: options.command,
    },
    samples,
    unavailable,
    notes,
  );
}
