/**
 * Client authorization on a real node: one ReplicaNode on loopback with mutual TLS and an
 * Authorizer, called with real client certificates over grpc-js.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeClientConstructor, Metadata, Server, status, type ChannelCredentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authorizer } from '../../src/auth/authorizer.js';
import { parseAuthzRules } from '../../src/auth/authz-rules.js';
import { ClusterServiceClient, RemoveMemberRequest, StatusRequest } from '../../src/gen/replikit/v1/cluster_service.js';
import {
  GetRequest,
  KvServiceClient,
  PutRequest,
  RangeRequest,
  TxnRequest,
  WatchRequest,
  type WatchResponse,
} from '../../src/gen/replikit/v1/kv_service.js';
import { LeaseGrantRequest, LeaseKeepAliveRequest, LeaseServiceClient, type LeaseKeepAliveResponse } from '../../src/gen/replikit/v1/lease_service.js';
import { LockRequest, LockServiceClient } from '../../src/gen/replikit/v1/lock_service.js';
import type { Logger } from '../../src/logging/logger.js';
import { ReplicaNode } from '../../src/node/replica-node.js';
import { channelCredentialsOf, serverCredentialsOf } from '../../src/ops/tls.js';
import { cpQuorum } from '../../src/policy/cp/cp-quorum.js';
import { makeSpiffePki, type CertFiles, type SpiffePki } from '../support/pki.js';

const RULES = `# test rules
allow client:reporting read metrics
allow client:app-* read,write orders user/
allow client:ops admin *
allow client:ops read,write *
`;

let dir: string;
let pki: SpiffePki;
let node: ReplicaNode;
let authorizer: Authorizer;
const warnings: string[] = [];
const logger: Logger = { debug() {}, info() {}, warn: (m, f) => warnings.push(`${m} ${JSON.stringify(f)}`), error() {} };

const decodeBase = <T>(fns: { decode(bytes: Uint8Array): T }, partial: Partial<T>): T => ({ ...fns.decode(new Uint8Array(0)), ...partial });

function credsOf(files: CertFiles): ChannelCredentials {
  return channelCredentialsOf({ ca: readFileSync(pki.caFile), cert: readFileSync(files.cert), key: readFileSync(files.key) });
}

type Unary<Req, Res> = (req: Req, md: Metadata, options: { deadline: number }, cb: (err: ServiceError | null, res: Res) => void) => unknown;
function call<Req, Res>(client: Client, method: Unary<Req, Res>, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => method.call(client, req, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(res))));
}
async function refusal(promise: Promise<unknown>): Promise<ServiceError> {
  const err = (await promise.then(
    () => undefined,
    (e: unknown) => e,
  )) as ServiceError | undefined;
  if (err === undefined) throw new Error('the call succeeded; expected PERMISSION_DENIED');
  return err;
}

/** The KvService of `node` as the holder of `files`. */
function kvAs(files: CertFiles) {
  const client = new KvServiceClient(node.address!, credsOf(files));
  return {
    client,
    put: (keyspace: string, key: string, value = 'v') => call(client, client.put, decodeBase(PutRequest, { keyspace, key: Buffer.from(key), value: Buffer.from(value) })),
    get: (keyspace: string, key: string) => call(client, client.get, decodeBase(GetRequest, { keyspace, key: Buffer.from(key) })),
    range: (keyspace: string, key: string, prefix: boolean, rangeEnd = '') =>
      call(client, client.range, decodeBase(RangeRequest, { keyspace, key: Buffer.from(key), prefix, rangeEnd: Buffer.from(rangeEnd) })),
    txn: (request: Partial<TxnRequest>) => call(client, client.txn, decodeBase(TxnRequest, request)),
    close: () => client.close(),
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'replikit-authz-'));
  pki = await makeSpiffePki(dir, 'c1');
  const own = await pki.node('n1');
  const tls = { ca: readFileSync(pki.caFile), cert: readFileSync(own.cert), key: readFileSync(own.key) };
  authorizer = new Authorizer(parseAuthzRules(RULES, '/etc/replikit/authz.txt'));
  node = await ReplicaNode.start({
    nodeId: 'n1',
    clusterId: 'c1',
    listen: '127.0.0.1:0',
    peers: [],
    keyspaces: { default: cpQuorum(), orders: cpQuorum(), metrics: cpQuorum() },
    serverCredentials: serverCredentialsOf(tls),
    peerCredentials: channelCredentialsOf(tls),
    authorization: authorizer,
    logger,
  });
  await node.serving;
  // The node's own certificate may do anything: seed the data the clients read.
  const asNode = kvAs(own);
  for (;;) {
    try {
      await asNode.put('metrics', 'cpu', '42');
      break;
    } catch (err: unknown) {
      if ((err as ServiceError).code !== status.UNAVAILABLE) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  asNode.close();
}, 30_000);

afterAll(async () => {
  await node?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('authorizationServerInterceptor on a node with mutual TLS', () => {
  it('lets a read-only client read its keyspace and refuses its write, naming identity, keyspace and permission, never the value', async () => {
    const reporting = kvAs(await pki.client('reporting'));
    try {
      expect((await reporting.get('metrics', 'cpu')).value.toString()).toBe('42');
      const err = await refusal(reporting.put('metrics', 'cpu', 'SECRET-VALUE-1'));
      expect(err.code).toBe(status.PERMISSION_DENIED);
      expect(err.details).toBe('client reporting (spiffe://c1/client/reporting) may not write keyspace "metrics": no grant in /etc/replikit/authz.txt gives it write there');
      expect(err.metadata.get('replikit-reason')).toEqual(['NOT_AUTHORIZED']);
      // Another keyspace: no grant at all.
      const other = await refusal(reporting.get('orders', 'user/1'));
      expect(other.code).toBe(status.PERMISSION_DENIED);
      expect(other.details).toContain('may not read keyspace "orders"');
      // The refused write did not happen.
      expect((await reporting.get('metrics', 'cpu')).value.toString()).toBe('42');
      expect(warnings.join('\n')).not.toContain('SECRET-VALUE');
    } finally {
      reporting.close();
    }
  });

  it('applies key prefixes to keys, ranges and every key of a transaction', async () => {
    const app = kvAs(await pki.client('app-7'));
    try {
      await app.put('orders', 'user/1', 'a');
      expect((await app.get('orders', 'user/1')).found).toBe(true);
      const outside = await refusal(app.put('orders', 'admin/1'));
      expect(outside.code).toBe(status.PERMISSION_DENIED);
      expect(outside.details).toContain('client app-7 (spiffe://c1/client/app-7) may not write keyspace "orders" beyond keys starting with "user/"');
      expect((await app.range('orders', 'user/', true)).kvs.map((kv) => kv.key.toString())).toEqual(['user/1']);
      expect((await app.range('orders', 'user/0', false, 'user/9')).kvs).toHaveLength(1);
      // A range that reaches past the prefix is refused whole, even though it starts inside it.
      expect((await refusal(app.range('orders', 'user/', false, 'v'))).code).toBe(status.PERMISSION_DENIED);
      expect((await refusal(app.range('orders', '', true))).details).toContain('on the whole range asked for');
      // Txn: every key it touches; the put inside the prefix does not happen when one compare is outside.
      const txnOutside = await refusal(
        app.txn({ keyspace: 'orders', compares: [{ key: Buffer.from('admin/x'), target: 2, result: 1, value: Buffer.alloc(0), number: 0n }], success: [{ put: { key: Buffer.from('user/2'), value: Buffer.from('b'), lease: 0n } }] }),
      );
      expect(txnOutside.code).toBe(status.PERMISSION_DENIED);
      expect(txnOutside.details).toContain('may not read keyspace "orders"');
      expect((await app.get('orders', 'user/2')).found).toBe(false);
      const txnWriteOutside = await refusal(app.txn({ keyspace: 'orders', failure: [{ delete: { key: Buffer.from('other') } }] }));
      expect(txnWriteOutside.details).toContain('may not write keyspace "orders"');
      const ok = await app.txn({ keyspace: 'orders', success: [{ put: { key: Buffer.from('user/3'), value: Buffer.from('c'), lease: 0n } }, { get: { key: Buffer.from('user/1') } }] });
      expect(ok.succeeded).toBe(true);
    } finally {
      app.close();
    }
  });

  it('checks every message of a client stream: a watch outside the prefix, a keep-alive for another keyspace', async () => {
    const files = await pki.client('app-7');
    const kv = new KvServiceClient(node.address!, credsOf(files));
    const leases = new LeaseServiceClient(node.address!, credsOf(files));
    try {
      // A watch of the prefix is created; a watch of everything is refused.
      const watch = (prefix: string) =>
        new Promise<WatchResponse | ServiceError>((resolve) => {
          const stream = kv.watch(new Metadata(), { deadline: Date.now() + 5_000 });
          stream.on('data', (res: WatchResponse) => {
            resolve(res);
            stream.cancel();
          });
          stream.on('error', (err: ServiceError) => resolve(err));
          stream.write(decodeBase(WatchRequest, { create: { keyspace: 'orders', key: Buffer.from(prefix), rangeEnd: Buffer.alloc(0), prefix: true, startRevision: 0n, prevKv: false, progressIntervalMs: 0 } }));
        });
      expect(((await watch('user/')) as WatchResponse).created).toBe(true);
      const refused = (await watch('')) as ServiceError;
      expect(refused.code).toBe(status.PERMISSION_DENIED);
      expect(refused.details).toContain('may not read keyspace "orders"');

      const lease = await call(leases, leases.leaseGrant, decodeBase(LeaseGrantRequest, { keyspace: 'orders', ttlMs: 10_000n }));
      const answers: LeaseKeepAliveResponse[] = [];
      const ended = new Promise<ServiceError | undefined>((resolve) => {
        const stream = leases.leaseKeepAlive(new Metadata(), { deadline: Date.now() + 5_000 });
        stream.on('data', (res: LeaseKeepAliveResponse) => {
          answers.push(res);
          // The first message (orders) is answered; the second names a keyspace it may not write.
          stream.write(decodeBase(LeaseKeepAliveRequest, { keyspace: 'metrics', id: lease.id }));
        });
        stream.on('error', (err: ServiceError) => resolve(err));
        stream.on('end', () => resolve(undefined));
        stream.write(decodeBase(LeaseKeepAliveRequest, { keyspace: 'orders', id: lease.id }));
      });
      const err = await ended;
      expect(answers).toHaveLength(1);
      expect(err?.code).toBe(status.PERMISSION_DENIED); // not the handler's INVALID_ARGUMENT: it never saw the message
      expect(err?.details).toContain('may not write keyspace "metrics"');
    } finally {
      kv.close();
      leases.close();
    }
  });

  it('applies prefixes to lock names; ClusterService needs a grant (Status) or admin on * (membership)', async () => {
    const app = await pki.client('app-7');
    const locks = new LockServiceClient(node.address!, credsOf(app));
    const leases = new LeaseServiceClient(node.address!, credsOf(app));
    const clusterAsApp = new ClusterServiceClient(node.address!, credsOf(app));
    const clusterAsStranger = new ClusterServiceClient(node.address!, credsOf(await pki.client('stranger')));
    const clusterAsOps = new ClusterServiceClient(node.address!, credsOf(await pki.client('ops')));
    try {
      const lease = await call(leases, leases.leaseGrant, decodeBase(LeaseGrantRequest, { keyspace: 'orders', ttlMs: 10_000n }));
      const held = await call(locks, locks.lock, decodeBase(LockRequest, { keyspace: 'orders', name: 'user/job', lease: lease.id }));
      expect(held.key.toString()).toMatch(/^_lock\/user\/job\//);
      const lockErr = await refusal(call(locks, locks.lock, decodeBase(LockRequest, { keyspace: 'orders', name: 'nightly', lease: lease.id })));
      expect(lockErr.code).toBe(status.PERMISSION_DENIED);
      expect(lockErr.details).toContain('on this lock name');

      expect((await call(clusterAsApp, clusterAsApp.status, decodeBase(StatusRequest, {}))).nodeId).toBe('n1');
      const stranger = await refusal(call(clusterAsStranger, clusterAsStranger.status, decodeBase(StatusRequest, {})));
      expect(stranger.code).toBe(status.PERMISSION_DENIED);
      expect(stranger.details).toContain('client stranger (spiffe://c1/client/stranger) may not call /replikit.v1.ClusterService/Status: no grant in /etc/replikit/authz.txt names it');
      const notAdmin = await refusal(call(clusterAsApp, clusterAsApp.removeMember, decodeBase(RemoveMemberRequest, { nodeId: 'n9' })));
      expect(notAdmin.code).toBe(status.PERMISSION_DENIED);
      expect(notAdmin.details).toContain('may not admin keyspace "*"');
      // ops has admin: the call gets past authorization to the handler (which refuses n9, unknown, its own way).
      const asOps = await refusal(call(clusterAsOps, clusterAsOps.removeMember, decodeBase(RemoveMemberRequest, { nodeId: 'n9' })));
      expect(asOps.code).not.toBe(status.PERMISSION_DENIED);
    } finally {
      for (const c of [locks, leases, clusterAsApp, clusterAsStranger, clusterAsOps]) c.close();
    }
  });

  it("grants this cluster's nodes everything; refuses another cluster's certificates and certificates without an identity", async () => {
    const ownNode = kvAs(await pki.node('n2'));
    const foreignNode = kvAs(await pki.node('n2', 'c2'));
    const foreignClient = kvAs(await pki.client('ops', 'c2'));
    const noIdentity = kvAs(await pki.leaf('no-spiffe', { commonName: 'someone', uris: [] }));
    try {
      await ownNode.put('orders', 'anything', 'x');
      const a = await refusal(foreignNode.get('orders', 'anything'));
      expect(a.code).toBe(status.PERMISSION_DENIED);
      expect(a.details).toContain('node n2 (spiffe://c2/node/n2) is an identity of cluster "c2", but this node belongs to cluster "c1"');
      const b = await refusal(foreignClient.get('orders', 'anything'));
      expect(b.code).toBe(status.PERMISSION_DENIED);
      expect(b.details).toContain('cluster "c2"');
      const c = await refusal(noIdentity.get('orders', 'anything'));
      expect(c.code).toBe(status.PERMISSION_DENIED);
      expect(c.details).toContain('names no replikit identity');
    } finally {
      for (const k of [ownNode, foreignNode, foreignClient, noIdentity]) k.close();
    }
  });

  it('keeps grpc.health open to a caller without grants', async () => {
    const HealthClient = makeClientConstructor(healthService, 'grpc.health.v1.Health');
    const client = new HealthClient(node.address!, credsOf(await pki.client('stranger'))) as unknown as Client & { check: Unary<{ service: string }, { status: string }> };
    try {
      expect((await call(client, client.check, { service: '' })).status).toBe('SERVING');
    } finally {
      client.close();
    }
  });

  it('swaps the rules at run time; counts refusals in the metrics; rate-limits the log lines', async () => {
    const reporting = kvAs(await pki.client('reporting'));
    try {
      expect((await refusal(reporting.put('metrics', 'mem', '1'))).code).toBe(status.PERMISSION_DENIED);
      authorizer.replace(parseAuthzRules(`${RULES}allow client:reporting write metrics mem\n`, '/etc/replikit/authz.txt'));
      await reporting.put('metrics', 'mem', '1');
      expect((await refusal(reporting.put('metrics', 'disk', '1'))).details).toContain('beyond keys starting with "mem"');
      const text = await node.metrics.scrape();
      expect(text).toMatch(/replikit_authz_grants\{node="n1"\} 5/);
      const refusedWrites = Number(/replikit_authz_refused_total\{permission="write",node="n1"\} (\d+)/.exec(text)?.[1] ?? /replikit_authz_refused_total\{node="n1",permission="write"\} (\d+)/.exec(text)?.[1]);
      expect(refusedWrites).toBeGreaterThanOrEqual(4);

      // A burst of refusals: at most 10 log lines in 10 s, the rest counted.
      const before = warnings.length;
      const linesBefore = warnings.filter((w) => w.startsWith('refused ')).length;
      for (let i = 0; i < 25; i++) await refusal(reporting.put('orders', `k${i}`, 'v'));
      const logged = warnings.slice(before).filter((w) => w.startsWith('refused '));
      expect(linesBefore + logged.length).toBeLessThanOrEqual(10);
      expect(linesBefore).toBeGreaterThan(0);
      for (const line of warnings.filter((w) => w.startsWith('refused '))) {
        expect(line).toMatch(/"identity":"client [a-z0-9-]+ \(spiffe:\/\/c\d\/client\/|"identity":"(node|an invalid)/);
        expect(line).toMatch(/"method":"\/replikit\.v1\./);
      }
    } finally {
      reporting.close();
      authorizer.replace(parseAuthzRules(RULES, '/etc/replikit/authz.txt'));
    }
  });

  it('refuses authorization on an application-owned server (it could not be enforced there)', async () => {
    const server = new Server();
    await expect(ReplicaNode.start({ nodeId: 'x', server, peers: [], authorization: authorizer })).rejects.toThrow(/add authorizationServerInterceptor/);
    server.forceShutdown();
  });
});
