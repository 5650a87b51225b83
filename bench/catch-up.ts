/**
 * The catch-up row of `npm run bench` (`--catch-up-only` runs it alone): a 3-node replikit cluster
 * (real `serve` processes, LMDB, fsync on) holding 100,000 CP keys and 20,000 AP keys of 100-byte
 * values; then a fourth node starts with an empty data directory and `--join`, and is promoted as
 * soon as `PromoteMember` accepts it (it refuses while the node is behind). Reported: how long the
 * node took to serve (its AP state copied), to be promoted (every CP log applied to near the
 * commit index: the keyspace's state came as a chunked snapshot), and the bytes that crossed the
 * loopback interface meanwhile (the cluster is otherwise idle: beats and Raft heartbeats, a few
 * kB/s, are included).
 */
import { readFileSync } from 'node:fs';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { LocalCluster } from '../src/cli/local-cluster.js';
import { ClusterServiceClient } from '../src/gen/replikit/v1/cluster_service.js';
import { AckLevel, KvServiceClient } from '../src/gen/replikit/v1/kv_service.js';

export interface CatchUpOptions {
  readonly cpKeys: number;
  readonly apKeys: number;
  readonly log: (line: string) => void;
}

export interface CatchUpReport {
  readonly cpKeys: number;
  readonly apKeys: number;
  readonly valueBytes: number;
  readonly loadMs: number;
  /** From the joining process's start to its ready line (AP and causal state copied). */
  readonly servingMs: number;
  /** From its start to the promotion accepted (every CP keyspace caught up). */
  readonly promotedMs: number;
  /** Bytes received on the loopback interface from the start to the promotion. */
  readonly loopbackBytes: number;
  /** Promotions refused as behind before the one accepted. */
  readonly refusedBehind: number;
}

const VALUE = Buffer.alloc(100, 'v');
/** Puts per transaction while loading (the transaction limit is 128 operations). */
const PUTS_PER_TXN = 128;
const LOADERS = 16;

function loopbackBytes(): number {
  const line = readFileSync('/proc/net/dev', 'utf8').split('\n').find((l) => l.trim().startsWith('lo:'));
  return line === undefined ? Number.NaN : Number(line.split(':')[1]!.trim().split(/\s+/)[0]);
}

function unary<Req, Res>(fn: (req: Req, md: Metadata, options: { deadline: Date }, cb: (err: ServiceError | null, res?: Res) => void) => unknown, req: Req, ms = 10_000): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, new Metadata(), { deadline: new Date(Date.now() + ms) }, (err, res) => (err ? reject(err) : resolve(res!))));
}

export async function runCatchUp(options: CatchUpOptions): Promise<CatchUpReport> {
  const cluster = await LocalCluster.create({ size: 3, serveArgs: ['--keyspace', 'ap=ap'] });
  try {
    await cluster.startAll();
    const kv = new KvServiceClient(cluster.address('n1'), credentials.createInsecure());
    const loadStarted = performance.now();
    let next = 0;
    const cpLoader = async () => {
      while (next < options.cpKeys) {
        const from = next;
        next = Math.min(options.cpKeys, next + PUTS_PER_TXN);
        const success = [];
        for (let i = from; i < next; i++) success.push({ put: { key: Buffer.from(`k${String(i).padStart(7, '0')}`), value: VALUE, lease: 0n } });
        for (;;) {
          try {
            await unary(kv.txn.bind(kv), { keyspace: 'default', compares: [], success, failure: [] });
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }
    };
    let nextAp = 0;
    const apLoader = async () => {
      while (nextAp < options.apKeys) {
        const key = Buffer.from(`a${String(nextAp++).padStart(7, '0')}`);
        for (;;) {
          try {
            await unary(kv.put.bind(kv), { keyspace: 'ap', key, value: VALUE, sessionToken: Buffer.alloc(0), ack: AckLevel.ACK_LEVEL_QUORUM, lease: 0n });
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }
    };
    await Promise.all([...Array.from({ length: LOADERS }, cpLoader), ...Array.from({ length: 4 * LOADERS }, apLoader)]);
    kv.close();
    const loadMs = performance.now() - loadStarted;
    options.log(`catch-up: loaded ${options.cpKeys} CP and ${options.apKeys} AP keys in ${Math.round(loadMs)} ms; a fourth node joins`);
    // Let the cluster settle (replication of the last AP writes, compaction) before measuring.
    await new Promise((r) => setTimeout(r, 2_000));

    const id = await cluster.addSlot();
    const bytesBefore = loopbackBytes();
    const started = performance.now();
    await cluster.start(id, [], { join: ['n1', 'n2', 'n3'].map((n) => cluster.address(n)) });
    const servingMs = performance.now() - started;
    const admin = new ClusterServiceClient(cluster.address('n1'), credentials.createInsecure());
    let refusedBehind = 0;
    try {
      for (;;) {
        try {
          await unary(admin.promoteMember.bind(admin), { nodeId: id });
          break;
        } catch (error) {
          if (!/MEMBER_BEHIND|behind|caught up/.test((error as ServiceError).details ?? '')) throw error;
          refusedBehind++;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      admin.close();
    }
    const promotedMs = performance.now() - started;
    const report: CatchUpReport = {
      cpKeys: options.cpKeys,
      apKeys: options.apKeys,
      valueBytes: VALUE.length,
      loadMs,
      servingMs,
      promotedMs,
      loopbackBytes: loopbackBytes() - bytesBefore,
      refusedBehind,
    };
    options.log(`catch-up: ${id} served after ${Math.round(servingMs)} ms and was promoted after ${Math.round(promotedMs)} ms; ${(report.loopbackBytes / 1e6).toFixed(1)} MB on loopback`);
    return report;
  } finally {
    await cluster.stop();
  }
}

export function renderCatchUp(r: CatchUpReport): string[] {
  const payload = (r.cpKeys + r.apKeys) * (r.valueBytes + 8);
  return [
    '## A new node catches up',
    '',
    `A 3-node replikit cluster (LMDB, fsync on) holding ${r.cpKeys.toLocaleString('en')} CP keys and ${r.apKeys.toLocaleString('en')} AP keys of ${r.valueBytes}-byte values ` +
      `(loaded in ${Math.round(r.loadMs).toLocaleString('en')} ms); a fourth node starts on an empty data directory with \`serve --join\` and is promoted as soon as ` +
      'PromoteMember accepts it (it refuses while the node is behind). Bytes: everything received on the loopback interface meanwhile (the cluster is otherwise idle).',
    '',
    '| measure | value |',
    '|---|--:|',
    `| serving (AP state copied from its peers) | ${Math.round(r.servingMs).toLocaleString('en')} ms |`,
    `| promoted (every CP keyspace caught up) | ${Math.round(r.promotedMs).toLocaleString('en')} ms |`,
    `| promotions refused as behind first | ${r.refusedBehind} |`,
    `| bytes on loopback | ${(r.loopbackBytes / 1e6).toFixed(1)} MB (${(r.loopbackBytes / payload).toFixed(2)}× the keys and values) |`,
    '',
  ];
}
