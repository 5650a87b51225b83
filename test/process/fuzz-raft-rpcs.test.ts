/**
 * Bad and random input to the Raft-era RPCs, through three real `serve` processes: KvService.Txn,
 * and the `raft` and `forward` calls of ReplicaService.Exchange, sent as raw bytes (identity
 * serializers) so that nothing on the client side tidies them up. Every unary call must end with
 * the status a dumb reference predicts (test/support/wire-fuzz.ts), never INTERNAL or UNKNOWN;
 * every stream must end with a status instead of hanging; afterwards every process must still run,
 * the cluster must still commit a put and serve a linearizable get on every node, and no node may
 * have logged an error or a stack.
 *
 * The bytes come from a seeded generator (see SEED; the seed is printed): a replay sends the same
 * bytes, to a cluster whose timing (elections, which node leads) may differ. Raft messages in a
 * term the group is in are not fuzzed here: forged-raft-messages.test.ts pins what one does.
 * Inputs answered INTERNAL or UNKNOWN are findings: the test fails and prints them, in hex.
 */
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { CompareResult, CompareTarget, Consistency, KvServiceClient, TxnRequest, type GetResponse, type TxnResponse } from '../../src/gen/replikit/v1/kv_service.js';
import { ExchangeRequest, ExchangeResponse } from '../../src/gen/replikit/v1/replica_service.js';
import { SeededRandom } from '../../src/sim/seeded-random.js';
import { BUILT } from '../support/cli.js';
import { retryUnavailable } from '../support/kv-client.js';
import { status as clusterStatus, waitFor } from '../support/status-client.js';
import { bytes, decodeTxn, expectTxn, randomExchangeCall, randomTxn, weighted, type Expected } from '../support/wire-fuzz.js';

/**
 * The seed: fixed unless REPLIKIT_FUZZ_SEED says otherwise (a number, or `random`), so that CI
 * sends the same bytes every run and a failure there replays.
 */
const SEED = seedFromEnvironment();
/** Random byte strings sent as a TxnRequest. */
const TXN_RANDOM_BYTES = 2_500;
/** Structurally valid TxnRequests with random (mostly bad) content. */
const TXN_STRUCTURED = 1_000;
/** Txn calls in flight at once, spread over the three nodes. */
const CONCURRENCY = 24;
/** Exchange streams opened as a claimed member, and calls (frames) on each. */
const MEMBER_STREAMS = 60;
const FRAMES_PER_STREAM = 20;
/** Exchange streams opened by callers that are not members. */
const STRANGER_STREAMS = 24;
const PATH_TXN = '/replikit.v1.KvService/Txn';
const PATH_EXCHANGE = '/replikit.v1.ReplicaService/Exchange';
/** The CP keyspaces the cluster serves: `default`, and `fuzz`, which the Raft fuzzing aims at. */
const KEYSPACES = ['default', 'fuzz'];

const identity = (b: Buffer) => b;
const codeName = (code: number) => status[code] ?? `CODE_${code}`;

let cluster: LocalCluster;
const logs: { node: string; line: string }[] = [];
/** One client channel per node, shared by every raw call to it. */
const raw = new Map<string, Client>();
/** Inputs answered INTERNAL or UNKNOWN: findings, printed with their bytes. */
const findings: string[] = [];

beforeAll(async () => {
  if (!BUILT) return;
  console.log(`fuzz-raft-rpcs: seed ${SEED} (REPLIKIT_FUZZ_SEED=${SEED} replays it)`);
  cluster = await LocalCluster.create({ size: 3, memory: true, serveArgs: ['--keyspace', 'fuzz=cp'], onLog: (node, line) => logs.push({ node, line }) });
  await cluster.startAll();
  for (const id of cluster.ids) raw.set(id, new Client(cluster.address(id), credentials.createInsecure()));
  // Every group has elected a leader on every node, so that term 0 is stale everywhere (see
  // wire-fuzz.ts, raftMessage) before the fuzzing starts.
  await waitFor(
    async () => {
      const all = await Promise.all(cluster.ids.map((id) => clusterStatus(cluster.address(id))));
      return all.every((s) => KEYSPACES.every((k) => (s.keyspaces.find((x) => x.name === k)?.raft?.term ?? 0n) >= 1n));
    },
    15_000,
    'every Raft group has a term on every node',
  );
});

afterAll(async () => {
  for (const client of raw.values()) client.close();
  await cluster?.stop();
  if (findings.length > 0) console.log(`fuzz-raft-rpcs (seed ${SEED}) findings:\n${findings.join('\n')}`);
});

function unary(node: string, path: string, payload: Buffer): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    raw.get(node)!.makeUnaryRequest(path, identity, identity, payload, new Metadata(), { deadline: Date.now() + 10_000 }, (err: ServiceError | null) =>
      resolve(err === null ? { code: status.OK, details: '' } : { code: err.code, details: err.details }),
    );
  });
}

interface StreamResult {
  readonly code: number;
  readonly details: string;
  readonly answers: ExchangeResponse[];
  readonly ms: number;
}

/** Opens an Exchange stream to `node` with `metadata`, writes `frames`, half-closes, and collects everything until the status. */
function exchange(node: string, metadata: Metadata, frames: readonly Buffer[]): Promise<StreamResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    // Longer than any call on it may take (a forwarded transaction: at most 4 × requestTimeoutMs,
    // 12 s), so that the deadline passing means the stream hung.
    const stream = raw.get(node)!.makeBidiStreamRequest(PATH_EXCHANGE, identity, identity, metadata, { deadline: Date.now() + 20_000 });
    const answers: ExchangeResponse[] = [];
    stream.on('data', (b: Buffer) => answers.push(ExchangeResponse.decode(b)));
    stream.on('error', () => {});
    stream.on('status', (s) => resolve({ code: s.code, details: s.details, answers, ms: performance.now() - started }));
    for (const frame of frames) stream.write(frame);
    stream.end();
  });
}

function peerMetadata(clusterId: string | undefined, nodeId: string | undefined): Metadata {
  const m = new Metadata();
  if (clusterId !== undefined) m.set('replikit-cluster-id', clusterId);
  if (nodeId !== undefined) m.set('replikit-node-id', nodeId);
  return m;
}

/** Runs `jobs` with at most `limit` in flight. */
async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]!();
      }
    }),
  );
  return results;
}

/** The status codes a valid request may end with: done, or (an election under way) nothing done / outcome unknown. */
const ACCEPTED_CODES = ['OK', 'UNAVAILABLE', 'DEADLINE_EXCEEDED'];
const CODE_OF: Record<Exclude<Expected, 'accepted'>, string> = {
  invalid: 'INVALID_ARGUMENT',
  'not-found': 'NOT_FOUND',
  'too-far-ahead': 'FAILED_PRECONDITION',
};

function tally(into: Map<string, number>, key: string): void {
  into.set(key, (into.get(key) ?? 0) + 1);
}

function show(counts: Map<string, number>): string {
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ');
}

describe.skipIf(!BUILT)('random and bad input to the Raft-era RPCs of live serve processes', () => {
  it(`Txn: ${TXN_RANDOM_BYTES} random byte strings and ${TXN_STRUCTURED} random TxnRequests get the status a dumb reference predicts`, async () => {
    const random = new SeededRandom(SEED).fork(1);
    const inputs: { node: string; payload: Buffer }[] = [];
    for (let i = 0; i < TXN_RANDOM_BYTES; i++) {
      // Short strings parse as a TxnRequest (of junk) fairly often; longer ones almost never do.
      inputs.push({ node: random.pick(cluster.ids), payload: bytes(random, weighted(random, [[60, () => 24], [30, () => 200], [10, () => 4_000]])) });
    }
    for (let i = 0; i < TXN_STRUCTURED; i++) inputs.push({ node: random.pick(cluster.ids), payload: Buffer.from(TxnRequest.encode(randomTxn(random, KEYSPACES)).finish()) });

    const answers = await pool(inputs.map(({ node, payload }) => () => unary(node, PATH_TXN, payload)), CONCURRENCY);

    const codes = new Map<string, number>();
    const byExpectation = new Map<string, number>();
    const wrong: string[] = [];
    answers.forEach((answer, i) => {
      const { node, payload } = inputs[i]!;
      const txn = decodeTxn(payload);
      const expected: Expected | 'unparsable' = txn === undefined ? 'unparsable' : expectTxn(txn, KEYSPACES);
      const code = codeName(answer.code);
      tally(codes, code);
      tally(byExpectation, `${expected}→${code}`);
      if (code === 'INTERNAL' || code === 'UNKNOWN') findings.push(`Txn to ${node} answered ${code} (${answer.details}); request hex ${payload.toString('hex')}`);
      const allowed = expected === 'accepted' ? ACCEPTED_CODES : [expected === 'unparsable' ? 'INVALID_ARGUMENT' : CODE_OF[expected]];
      if (!allowed.includes(code)) wrong.push(`${expected} answered ${code} (${answer.details.slice(0, 200)}): ${payload.toString('hex').slice(0, 400)}`);
      if (expected === 'unparsable') expect(answer.details, payload.toString('hex')).toMatch(/does not parse/);
    });
    console.log(`Txn: ${answers.length} calls; status codes: ${show(codes)}; reference→answer: ${show(byExpectation)}`);

    expect(answers).toHaveLength(TXN_RANDOM_BYTES + TXN_STRUCTURED);
    expect(wrong.slice(0, 5), `${wrong.length} answers differ from the reference`).toEqual([]);
    // The generators reach every class the reference knows, not only the easy ones.
    for (const kind of ['unparsable→INVALID_ARGUMENT', 'invalid→INVALID_ARGUMENT', 'not-found→NOT_FOUND', 'accepted→OK']) {
      expect(byExpectation.get(kind) ?? 0, kind).toBeGreaterThanOrEqual(25);
    }
    for (const id of cluster.ids) expect(cluster.isRunning(id), id).toBe(true);
  });

  it('Exchange from callers that are not members: every stream ends PERMISSION_DENIED or FAILED_PRECONDITION, unanswered', async () => {
    const random = new SeededRandom(SEED).fork(2);
    const strangers = [
      { who: 'an unknown node id', metadata: () => peerMetadata('replikit', 'mallory'), code: 'PERMISSION_DENIED' },
      { who: 'no node id', metadata: () => peerMetadata('replikit', undefined), code: 'PERMISSION_DENIED' },
      { who: "the receiver's own id", metadata: () => undefined, code: 'PERMISSION_DENIED' },
      { who: 'another cluster', metadata: () => peerMetadata('other-cluster', 'n2'), code: 'FAILED_PRECONDITION' },
      { who: 'no metadata at all', metadata: () => new Metadata(), code: 'FAILED_PRECONDITION' },
    ];
    const jobs = Array.from({ length: STRANGER_STREAMS }, (_, i) => {
      const stranger = strangers[i % strangers.length]!;
      const node = random.pick(cluster.ids);
      const frames = Array.from({ length: 8 }, (_, j) =>
        random.chance(0.5)
          ? bytes(random, 64)
          : Buffer.from(ExchangeRequest.encode(randomExchangeCall(random, BigInt(j), { sender: 'n2', self: node, members: cluster.ids, keyspaces: KEYSPACES, nowMs: Date.now() }).message).finish()),
      );
      return async () => ({ stranger, result: await exchange(node, stranger.metadata() ?? peerMetadata('replikit', node), frames) });
    });
    const results = await pool(jobs, 8);
    const ends = new Map<string, number>();
    for (const { stranger, result } of results) {
      tally(ends, codeName(result.code));
      expect(codeName(result.code), `${stranger.who}: ${result.details}`).toBe(stranger.code);
      expect(result.answers, stranger.who).toEqual([]);
    }
    console.log(`Exchange as a stranger: ${results.length} streams, ${results.length * 8} frames; streams ended: ${show(ends)}`);
  });

  it('Exchange as a claimed member: every raft and forward call is answered as the reference predicts, every stream ends with a status', async () => {
    const random = new SeededRandom(SEED).fork(3);
    const calls = new Map<string, number>();
    const ends = new Map<string, number>();
    const wrong: string[] = [];
    let framesSent = 0;
    let garbageFrames = 0;
    const jobs = Array.from({ length: MEMBER_STREAMS }, () => {
      const node = random.pick(cluster.ids);
      const sender = random.pick(cluster.ids.filter((id) => id !== node));
      const cases = Array.from({ length: FRAMES_PER_STREAM }, (_, j): { message: ExchangeRequest; expected: Expected | 'any' } => {
        if (random.chance(0.85)) return randomExchangeCall(random, BigInt(j), { sender, self: node, members: cluster.ids, keyspaces: KEYSPACES, nowMs: Date.now() });
        // Random bytes that happen to parse, with this call's id: no reference, but never INTERNAL.
        for (;;) {
          const junk = bytes(random, 48);
          if (decodesAsExchange(junk)) return { message: { ...ExchangeRequest.decode(junk), callId: BigInt(j) }, expected: 'any' };
        }
      });
      const frames: Buffer[] = cases.map((c) => Buffer.from(ExchangeRequest.encode(c.message).finish()));
      // One stream in four ends with bytes that are not an ExchangeRequest: the node must end the
      // stream (INVALID_ARGUMENT), having answered the calls before it.
      let garbageAt = -1;
      if (random.chance(0.25)) {
        for (;;) {
          const junk = bytes(random, 40);
          if (decodesAsExchange(junk)) continue;
          garbageAt = frames.length;
          frames.push(junk);
          break;
        }
      }
      return async () => {
        framesSent += frames.length;
        if (garbageAt >= 0) garbageFrames++;
        const result = await exchange(node, peerMetadata('replikit', sender), frames);
        return { node, sender, cases, frames, garbageAt, result };
      };
    });
    // Few at a time: each stream from a claimed member replaces that member's own stream to the
    // node (one live Exchange stream per peer), so the real one reconnects and may cut ours.
    const results = await pool(jobs, 3);

    let answered = 0;
    for (const { node, sender, cases, frames, garbageAt, result } of results) {
      const end = codeName(result.code);
      tally(ends, end);
      const why = `stream ${sender}→${node}: ${end} ${result.details}`;
      // OK: half-closed and drained; INVALID_ARGUMENT: the frame that does not parse; ABORTED: the
      // real peer reconnected and replaced this stream.
      expect(garbageAt >= 0 ? ['INVALID_ARGUMENT', 'ABORTED'] : ['OK', 'ABORTED'], why).toContain(end);
      if (end === 'INVALID_ARGUMENT') expect(result.details, why).toMatch(/ExchangeRequest|does not parse/);
      if (end === 'OK') expect(result.answers, why).toHaveLength(cases.length);
      const seen = new Set<bigint>();
      for (const answer of result.answers) {
        answered++;
        const c = cases[Number(answer.callId)];
        expect(c, `${why}: an answer to call ${answer.callId}, which was never made`).toBeDefined();
        expect(seen.has(answer.callId), `${why}: call ${answer.callId} answered twice`).toBe(false);
        seen.add(answer.callId);
        const got =
          answer.error !== undefined
            ? codeName(answer.error.code)
            : (['raft', 'forward', 'replicate', 'read'] as const).find((k) => answer[k] !== undefined) ?? 'nothing';
        const kind = c!.message.raft !== undefined ? 'raft' : c!.message.forward !== undefined ? 'forward' : 'empty';
        tally(calls, `${kind}:${c!.expected}→${got}`);
        const hex = frames[Number(answer.callId)]!.toString('hex');
        if (got === 'INTERNAL' || got === 'UNKNOWN') findings.push(`Exchange ${kind} call ${sender}→${node} answered ${got} (${answer.error!.message}); frame hex ${hex}`);
        const allowed =
          c!.expected === 'any'
            ? [got].filter((x) => x !== 'INTERNAL' && x !== 'UNKNOWN' && x !== 'nothing')
            : c!.expected === 'accepted'
              ? kind === 'raft'
                ? ['raft']
                : ['forward', ...ACCEPTED_CODES.filter((x) => x !== 'OK')]
              : [CODE_OF[c!.expected]];
        if (!allowed.includes(got)) wrong.push(`${kind} ${c!.expected} answered ${got} (${answer.error?.message.slice(0, 200) ?? ''}): ${hex.slice(0, 400)}`);
      }
    }
    console.log(
      `Exchange as a claimed member: ${results.length} streams, ${framesSent} frames (${garbageFrames} not an ExchangeRequest), ${answered} calls answered; ` +
        `streams ended: ${show(ends)}; call→answer: ${show(calls)}`,
    );
    expect(wrong.slice(0, 5), `${wrong.length} answers differ from the reference`).toEqual([]);
    expect(answered).toBeGreaterThan(MEMBER_STREAMS * FRAMES_PER_STREAM * 0.5);
    for (const kind of ['raft:invalid→INVALID_ARGUMENT', 'raft:accepted→raft', 'forward:invalid→INVALID_ARGUMENT', 'raft:not-found→NOT_FOUND', 'forward:not-found→NOT_FOUND', 'raft:too-far-ahead→FAILED_PRECONDITION']) {
      expect(calls.get(kind) ?? 0, kind).toBeGreaterThanOrEqual(3);
    }
    expect(ends.get('INVALID_ARGUMENT') ?? 0, 'streams ended by a frame that does not parse').toBeGreaterThan(0);
  });

  it('an Exchange frame over the message limit ends its stream RESOURCE_EXHAUSTED', async () => {
    const frame = Buffer.from(
      ExchangeRequest.encode({ ...ExchangeRequest.decode(new Uint8Array(0)), callId: 1n, raft: { keyspace: 'x'.repeat(2 * 1024 * 1024), messages: [] } }).finish(),
    );
    const result = await exchange('n1', peerMetadata('replikit', 'n3'), [frame]);
    expect(codeName(result.code), result.details).toBe('RESOURCE_EXHAUSTED');
  });

  it('after all that: every process runs, the cluster commits a put and every node serves it linearizably, no node logged an error', async () => {
    for (const id of cluster.ids) expect(cluster.isRunning(id), `${id} exited`).toBe(true);
    expect(findings, 'inputs answered INTERNAL or UNKNOWN').toEqual([]);

    const clients = cluster.ids.map((id) => new KvServiceClient(cluster.address(id), credentials.createInsecure()));
    try {
      const value = Buffer.from(`after-fuzz-${SEED}`);
      await retryUnavailable(
        () =>
          new Promise<TxnResponse>((resolve, reject) =>
            clients[0]!.txn(
              { keyspace: 'default', compares: [], success: [{ put: { key: Buffer.from('after-fuzz'), value, lease: 0n } }], failure: [] },
              new Metadata(),
              { deadline: Date.now() + 5_000 },
              (err, res) => (err ? reject(err) : resolve(res)),
            ),
          ),
        10_000,
      );
      for (const [i, client] of clients.entries()) {
        const got = await retryUnavailable(
          () =>
            new Promise<GetResponse>((resolve, reject) =>
              client.get(
                { keyspace: 'default', key: Buffer.from('after-fuzz'), sessionToken: Buffer.alloc(0), consistency: Consistency.CONSISTENCY_LINEARIZABLE },
                new Metadata(),
                { deadline: Date.now() + 5_000 },
                (err, res) => (err ? reject(err) : resolve(res)),
              ),
            ),
          10_000,
        );
        expect(got.value.toString(), cluster.ids[i]).toBe(value.toString());
        expect(got.possiblyStale, cluster.ids[i]).toBe(false);
      }
    } finally {
      for (const client of clients) client.close();
    }

    const bad = logs.filter(({ line }) => !line.startsWith('{') || /"level":"(error|fatal)"/.test(line) || /uncaught|unhandled/i.test(line));
    expect(bad.map(({ node, line }) => `${node}: ${line}`).slice(0, 10)).toEqual([]);
  });

  // FINDING, failing until fixed. txn-validation.ts accepts any value of ts-proto's CompareTarget
  // and CompareResult enums, and those include UNRECOGNIZED = -1; the state machine then throws on
  // it (kv-state-machine.ts), which fail-stops the node: a read-only transaction stops the leader
  // that serves it, one that writes is committed and stops every replica that applies it (and
  // applies it again after a restart). Last in the file, since it takes the cluster down.
  // The random transactions above never carry -1 (see wire-fuzz.ts, enumValue).
  it('a compare whose target or result is -1 on the wire (ts-proto UNRECOGNIZED) is INVALID_ARGUMENT naming the field, and stops no node', async () => {
    const client = new KvServiceClient(cluster.address('n1'), credentials.createInsecure());
    const txn = (c: { target: number; result: number }, write: boolean): TxnRequest => ({
      keyspace: 'default',
      compares: [{ key: Buffer.from('k'), target: c.target as CompareTarget, result: c.result as CompareResult, value: Buffer.alloc(0), number: 0n }],
      success: write ? [{ put: { key: Buffer.from('minus-one'), value: Buffer.from('v'), lease: 0n } }] : [{ get: { key: Buffer.from('k') } }],
      failure: [],
    });
    const call = (request: TxnRequest) =>
      new Promise<ServiceError | null>((resolve) => client.txn(request, new Metadata(), { deadline: Date.now() + 5_000 }, (err) => resolve(err)));
    try {
      for (const [c, field] of [
        [{ target: -1, result: CompareResult.COMPARE_RESULT_EQUAL }, 'compares\\[0\\]\\.target'],
        [{ target: CompareTarget.COMPARE_TARGET_VERSION, result: -1 }, 'compares\\[0\\]\\.result'],
      ] as const) {
        for (const write of [false, true]) {
          const err = await call(txn(c, write));
          const hex = Buffer.from(TxnRequest.encode(txn(c, write)).finish()).toString('hex');
          expect(err === null ? 'OK' : codeName(err.code), `request hex ${hex}: ${err?.details ?? ''}`).toBe('INVALID_ARGUMENT');
          expect(err!.details).toMatch(new RegExp(field));
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (const id of cluster.ids) expect(cluster.isRunning(id), `${id} exited`).toBe(true);
    } finally {
      client.close();
    }
  });
});

function seedFromEnvironment(): number {
  const given = process.env.REPLIKIT_FUZZ_SEED;
  if (given === undefined || given === '') return 20261130;
  if (given === 'random') return Math.floor(Math.random() * 2 ** 31);
  const seed = Number(given);
  if (!Number.isSafeInteger(seed)) throw new Error(`REPLIKIT_FUZZ_SEED must be an integer or "random", not ${JSON.stringify(given)}`);
  return seed;
}

function decodesAsExchange(b: Buffer): boolean {
  try {
    ExchangeRequest.decode(b);
    return true;
  } catch {
    return false;
  }
}
