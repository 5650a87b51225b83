import { randomBytes } from 'node:crypto';
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { ClusterServiceService } from '../../src/gen/replikit/v1/cluster_service.js';
import { CompareResult, CompareTarget, KvServiceService, type Compare } from '../../src/gen/replikit/v1/kv_service.js';
import { ReplicaServiceService } from '../../src/gen/replikit/v1/replica_service.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { BUILT, cli } from '../support/cli.js';
import { statusOf, TestKvClient } from '../support/kv-client.js';

let cluster: LocalCluster;
let kv: TestKvClient;

beforeAll(async () => {
  if (!BUILT) return;
  cluster = await LocalCluster.create({ size: 3 });
  await cluster.startAll();
  kv = new TestKvClient(cluster.address('n1'));
});

afterAll(async () => {
  kv?.close();
  await cluster?.stop();
});

const identity = (b: Buffer) => b;

function rawUnary(address: string, path: string, payload: Buffer, metadata = new Metadata()): Promise<ServiceError | null> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, payload, metadata, { deadline: Date.now() + 3_000 }, (err) => {
      client.close();
      resolve(err);
    });
  });
}

describe.skipIf(!BUILT)('bad input against real serve processes', () => {
  it('answers INVALID_ARGUMENT for an empty key, a key over 1 KiB and a value over 1 MiB', async () => {
    const empty = await kv.put('', 'v').catch((e: unknown) => e);
    expect(statusOf(empty)).toBe('INVALID_ARGUMENT');
    expect((empty as ServiceError).details).toMatch(/key is empty/);

    const longKey = await kv.put('k'.repeat(1025), 'v').catch((e: unknown) => e);
    expect(statusOf(longKey)).toBe('INVALID_ARGUMENT');
    expect((longKey as ServiceError).details).toMatch(/1025 bytes; the limit \(maxKeyBytes\) is 1024/);

    const bigValue = await kv.put('k', Buffer.alloc(1024 * 1024 + 1)).catch((e: unknown) => e);
    expect(statusOf(bigValue)).toBe('INVALID_ARGUMENT');
    expect((bigValue as ServiceError).details).toMatch(/limit \(maxValueBytes\) is 1048576/);

    const getEmpty = await kv.get('').catch((e: unknown) => e);
    expect(statusOf(getEmpty)).toBe('INVALID_ARGUMENT');
  });

  it('answers NOT_FOUND for an unknown keyspace, naming the ones it serves', async () => {
    const err = await kv.put('k', 'v', { keyspace: 'nope' }).catch((e: unknown) => e);
    expect(statusOf(err)).toBe('NOT_FOUND');
    expect((err as ServiceError).details).toMatch(/no keyspace "nope".*"default"/);
  });

  it('refuses peer calls from another cluster or an unknown node', async () => {
    const foreign = new Metadata();
    foreign.set('replikit-cluster-id', 'other');
    foreign.set('replikit-node-id', 'n2');
    const wrongCluster = await rawUnary(cluster.address('n1'), '/replikit.v1.ReplicaService/Read', Buffer.alloc(0), foreign);
    expect(statusOf(wrongCluster)).toBe('FAILED_PRECONDITION');

    const stranger = new Metadata();
    stranger.set('replikit-cluster-id', 'replikit');
    stranger.set('replikit-node-id', 'mallory');
    const unknownNode = await rawUnary(cluster.address('n1'), '/replikit.v1.ReplicaService/Read', Buffer.alloc(0), stranger);
    expect(statusOf(unknownNode)).toBe('PERMISSION_DENIED');
    expect(unknownNode!.details).toMatch(/mallory/);
  });

  it('survives random bytes sent to every RPC method', async () => {
    const random = new SeededRandom(7);
    const peer = new Metadata();
    peer.set('replikit-cluster-id', 'replikit');
    peer.set('replikit-node-id', 'n2');
    const paths = [
      ...Object.values(KvServiceService).map((m) => m.path),
      ...Object.values(ClusterServiceService).map((m) => m.path),
      ...Object.values(ReplicaServiceService).filter((m) => !m.requestStream).map((m) => m.path),
    ];
    const codes = new Set<string>();
    for (const path of paths) {
      for (let i = 0; i < 25; i++) {
        const payload = randomBytes(random.int(0, 300));
        const err = await rawUnary(cluster.address('n1'), path, payload, path.includes('ReplicaService') ? peer.clone() : new Metadata());
        if (err) codes.add(statusOf(err));
      }
    }
    // Garbage on the streaming methods too (Heartbeat, Exchange).
    for (const method of Object.values(ReplicaServiceService).filter((m) => m.requestStream)) {
      const client = new Client(cluster.address('n1'), credentials.createInsecure());
      const stream = client.makeBidiStreamRequest(method.path, identity, identity, peer.clone());
      stream.on('error', () => {});
      stream.on('data', () => {});
      for (let i = 0; i < 20; i++) stream.write(randomBytes(random.int(1, 200)));
      stream.end();
      await new Promise((resolve) => setTimeout(resolve, 200));
      client.close();
    }

    // Every node is still up and serving.
    for (const id of cluster.ids) expect(cluster.isRunning(id), id).toBe(true);
    await kv.put('after-garbage', 'fine');
    expect((await kv.get('after-garbage')).value.toString()).toBe('fine');
    // A message that does not parse is the caller's fault: INVALID_ARGUMENT, never INTERNAL.
    expect([...codes].every((c) => ['INVALID_ARGUMENT', 'NOT_FOUND', 'UNAVAILABLE'].includes(c)), [...codes].join()).toBe(true);
  });
});

/** A refusal's status, message and `replikit-detail-field` metadata (the field it names). */
async function refusal(call: Promise<unknown>): Promise<{ code: string; details: string; field: unknown }> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  if (err === undefined) return { code: 'OK', details: '', field: undefined };
  return { code: statusOf(err), details: err.details, field: err.metadata?.get('replikit-detail-field')[0] };
}

const key = (k: string | number) => (typeof k === 'number' ? Buffer.alloc(k, 0x6b) : Buffer.from(k));
const compare = (c: Partial<Compare>): Compare => ({
  key: key('k'),
  target: CompareTarget.COMPARE_TARGET_VERSION,
  result: CompareResult.COMPARE_RESULT_EQUAL,
  value: Buffer.alloc(0),
  number: 0n,
  ...c,
});

describe.skipIf(!BUILT)('Txn bad input against real serve processes: INVALID_ARGUMENT naming the field', () => {
  it('refuses more compares or operations than MAX_TXN_OPS (128)', async () => {
    const gets = (n: number) => Array.from({ length: n }, (_, i) => ({ get: { key: key(`k${i}`) } }));
    expect(await kv.txn({ success: gets(128) })).toMatchObject({ succeeded: true });

    const success = await refusal(kv.txn({ success: gets(129) }));
    expect(success).toEqual({ code: 'INVALID_ARGUMENT', details: 'success has 129 operations; the limit is 128', field: 'success' });
    const failure = await refusal(kv.txn({ failure: gets(200) }));
    expect(failure).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'failure' });
    expect(failure.details).toMatch(/^failure has 200 operations; the limit is 128/);
    const compares = await refusal(kv.txn({ compares: Array.from({ length: 129 }, () => compare({})) }));
    expect(compares).toEqual({ code: 'INVALID_ARGUMENT', details: 'compares has 129 items; the limit is 128', field: 'compares' });
  });

  it('refuses an unknown or unspecified compare target or result', async () => {
    for (const target of [99, CompareTarget.COMPARE_TARGET_UNSPECIFIED, 2 ** 31 - 1]) {
      const r = await refusal(kv.txn({ compares: [compare({}), compare({ target: target as CompareTarget })] }));
      expect(r, `target ${target}`).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'compares[1].target' });
      expect(r.details).toMatch(new RegExp(`^compares\\[1\\]\\.target is ${target}; use VALUE, VERSION, CREATE_REVISION or MOD_REVISION`));
    }
    const result = await refusal(kv.txn({ compares: [compare({ result: 5 as CompareResult })] }));
    expect(result).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'compares[0].result' });
    expect(result.details).toMatch(/^compares\[0\]\.result is 5; use EQUAL, NOT_EQUAL, GREATER or LESS/);
    // -1 (ts-proto's UNRECOGNIZED) has its own test in fuzz-raft-rpcs.test.ts: today it stops the
    // nodes that apply it, which would take this file's cluster down.
  });

  it('refuses a key over maxKeyBytes (1024) or empty anywhere in a transaction', async () => {
    expect(await kv.txn({ success: [{ put: { key: key(1024), value: Buffer.from('v'), lease: 0n } }] })).toMatchObject({ succeeded: true });
    const cases: [Parameters<TestKvClient['txn']>[0], string][] = [
      [{ success: [{ put: { key: key(1025), value: Buffer.from('v'), lease: 0n } }] }, 'success[0].key'],
      [{ success: [{ get: { key: key('a') } }, { delete: { key: key(4096) } }] }, 'success[1].key'],
      [{ failure: [{ get: { key: key(1025) } }] }, 'failure[0].key'],
      [{ compares: [compare({ key: key(1025) })] }, 'compares[0].key'],
    ];
    for (const [request, field] of cases) {
      const r = await refusal(kv.txn(request));
      expect(r, field).toMatchObject({ code: 'INVALID_ARGUMENT', field });
      expect(r.details).toMatch(new RegExp(`^${field.replace(/[[\].]/g, '\\$&')} is \\d+ bytes; the limit \\(maxKeyBytes\\) is 1024$`));
    }
    const empty = await refusal(kv.txn({ compares: [compare({ key: Buffer.alloc(0) })] }));
    expect(empty).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'compares[0].key' });
    expect(empty.details).toMatch(/^compares\[0\]\.key is empty/);
  });

  it('compares a missing key as etcd does: a value compare is false, its version and revisions are 0', async () => {
    const missing = key(`missing-${Date.now()}`);
    const holds = async (c: Partial<Compare>, present = false) => {
      const res = await kv.txn({ compares: [compare({ key: missing, ...c })], success: [{ get: { key: missing } }] });
      if (res.succeeded) expect(res.responses[0]?.get?.found).toBe(present);
      return res.succeeded;
    };
    const T = CompareTarget;
    const R = CompareResult;
    for (const result of [R.COMPARE_RESULT_EQUAL, R.COMPARE_RESULT_NOT_EQUAL, R.COMPARE_RESULT_GREATER, R.COMPARE_RESULT_LESS]) {
      for (const value of ['', 'x']) expect(await holds({ target: T.COMPARE_TARGET_VALUE, result, value: Buffer.from(value) }), `VALUE ${result} "${value}"`).toBe(false);
    }
    for (const target of [T.COMPARE_TARGET_VERSION, T.COMPARE_TARGET_CREATE_REVISION, T.COMPARE_TARGET_MOD_REVISION]) {
      expect(await holds({ target, result: R.COMPARE_RESULT_EQUAL, number: 0n }), `${target} = 0`).toBe(true);
      expect(await holds({ target, result: R.COMPARE_RESULT_LESS, number: 1n }), `${target} < 1`).toBe(true);
      expect(await holds({ target, result: R.COMPARE_RESULT_GREATER, number: 0n }), `${target} > 0`).toBe(false);
      expect(await holds({ target, result: R.COMPARE_RESULT_NOT_EQUAL, number: 0n }), `${target} != 0`).toBe(false);
    }
    // So CREATE_REVISION = 0 is "absent": put-if-absent takes once.
    const putIfAbsent = { compares: [compare({ key: missing, target: T.COMPARE_TARGET_CREATE_REVISION, number: 0n })], success: [{ put: { key: missing, value: Buffer.from('first'), lease: 0n } }] };
    expect((await kv.txn(putIfAbsent)).succeeded).toBe(true);
    expect((await kv.txn(putIfAbsent)).succeeded).toBe(false);
    expect(await holds({ target: T.COMPARE_TARGET_VALUE, result: R.COMPARE_RESULT_EQUAL, value: Buffer.from('first') }, true)).toBe(true);
    expect(await holds({ target: T.COMPARE_TARGET_VERSION, result: R.COMPARE_RESULT_EQUAL, number: 1n }, true)).toBe(true);
  });
});

describe.skipIf(!BUILT)('CLI usage errors name the flag', () => {
  it('refuses an unknown policy, a malformed peer list and missing flags', async () => {
    const policy = await cli(['serve', '--id', 'n1', '--listen', '127.0.0.1:0', '--memory', '--policy', 'bogus']);
    expect(policy.code).toBe(2);
    expect(policy.stderr).toMatch(/--policy: unknown policy "bogus"/);

    const keyspace = await cli(['serve', '--id', 'n1', '--listen', '127.0.0.1:0', '--memory', '--keyspace', 'x=bogus']);
    expect(keyspace.code).toBe(2);
    expect(keyspace.stderr).toMatch(/--keyspace: unknown policy "bogus"/);

    const peers = await cli(['serve', '--id', 'n1', '--listen', '127.0.0.1:0', '--memory', '--peers', 'n2:7002']);
    expect(peers.code).toBe(2);
    expect(peers.stderr).toMatch(/--peers must be ID=HOST:PORT/);

    const badAddress = await cli(['serve', '--id', 'n1', '--listen', '127.0.0.1:0', '--memory', '--peers', 'n2=nowhere']);
    expect(badAddress.code).toBe(2);
    expect(badAddress.stderr).toMatch(/--peers must be HOST:PORT/);

    const noTarget = await cli(['put', 'k', 'v']);
    expect(noTarget.code).toBe(2);
    expect(noTarget.stderr).toMatch(/--target HOST:PORT is required/);

    const unknownFlag = await cli(['get', '--target', '127.0.0.1:1', '--bogus', 'k']);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toMatch(/unknown flag --bogus/);
    for (const r of [policy, keyspace, peers, badAddress, noTarget, unknownFlag]) expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe.skipIf(!BUILT)('CLI against a real cluster', () => {
  it('puts, gets, deletes and shows status, in text and proto3 JSON', async () => {
    const target = ['--target', cluster.address('n2')];
    const put = await cli(['put', ...target, 'cli-key', 'cli-value']);
    expect(put.code, put.stderr).toBe(0);
    // A CP write's version carries the id of the leader that proposed it.
    expect(put.stdout).toMatch(/^OK \d+\.\d+@n[123]/);

    const get = await cli(['get', ...target, 'cli-key']);
    expect(get.stdout.trim()).toBe('cli-value');

    const getJson = await cli(['get', ...target, '--json', 'cli-key']);
    const parsed = JSON.parse(getJson.stdout) as { found: boolean; value: string; version: { nodeId: string } };
    expect(parsed.found).toBe(true);
    expect(Buffer.from(parsed.value, 'base64').toString()).toBe('cli-value');
    expect(parsed.version.nodeId).toBe(/^n[123]$/.exec(put.stdout.split('@')[1]!.trim())?.[0]);

    const del = await cli(['delete', ...target, 'cli-key']);
    expect(del.code).toBe(0);
    const missing = await cli(['get', ...target, 'cli-key']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/not found/);

    const status = await cli(['status', ...target]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/node n2 of cluster replikit/);
    expect(status.stdout).toMatch(/default\s+cp\s+3\/3\s+2\s+yes/);
    const statusJson = JSON.parse((await cli(['status', ...target, '--json'])).stdout) as { members: { nodeId: string; state: string }[] };
    expect(statusJson.members.map((m) => m.nodeId)).toEqual(['n2', 'n1', 'n3']);
    expect(statusJson.members[0]!.state).toBe('MEMBER_STATE_ALIVE');

    const refused = await cli(['put', '--target', '127.0.0.1:1', '--timeout-ms', '500', 'k', 'v']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/UNAVAILABLE/);
  });
});
