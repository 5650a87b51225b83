import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { areaOf, renderProfileSummary, summarizeProfiles, type CpuProfile } from '../../bench/cpu-profile.js';
import { parseProcStatCpuMs } from '../../bench/cpu-usage.js';
import {
  EtcdCompareResult,
  decodeRangeResponse,
  decodeStatusResponse,
  decodeTxnResponse,
  encodePutRequest,
  encodeRangeRequest,
  encodeTxnRequest,
} from '../../bench/etcd-wire.js';
import { COMPARE_FAILED, runLoad, type LoadResult } from '../../bench/load.js';
import { renderBar } from '../../bench/progress.js';
import {
  aggregate,
  evaluateTargets,
  median,
  renderMarkdown,
  toJson,
  type BenchReport,
  type OpName,
  type Sample,
  type SystemName,
} from '../../bench/report.js';
import { niceCeiling, renderThroughputSvg } from '../../bench/svg-plot.js';
import { CAS_CALLERS, CAS_KEYS_PER_CALLER, OwnedKeySwaps } from '../../bench/workload.js';

function result(opsPerSec: number, p50Ms: number, p99Ms: number, errors = 0): LoadResult {
  return { ops: Math.round(opsPerSec), errors, opsPerSec, p50Ms, p99Ms, maxMs: p99Ms * 2 };
}

function sample(system: SystemName, op: OpName, concurrency: number, round: number, r: LoadResult): Sample {
  return { system, op, concurrency, round, result: r };
}

describe('runLoad', () => {
  it('counts only calls that end inside the measured window, with exact latencies', async () => {
    // Virtual time: every call takes exactly 2 ms.
    let t = 0;
    const windowEdges: number[] = [];
    const r = await runLoad(
      async () => {
        await Promise.resolve();
        t += 2;
      },
      { concurrency: 1, durationMs: 100, warmupMs: 10, now: () => t, onWindowStart: () => windowEdges.push(t), onWindowEnd: () => windowEdges.push(t) },
    );
    expect(windowEdges).toEqual([10, 110]);
    // Calls end at 2, 4, 6, …; those ending in [10, 110) are 10, 12, …, 108: 50 calls.
    expect(r.ops).toBe(50);
    expect(r.errors).toBe(0);
    expect(r.opsPerSec).toBe(500);
    expect(r.p50Ms).toBeCloseTo(2, 2);
    expect(r.p99Ms).toBeCloseTo(2, 2);
  });

  it('keeps exactly `concurrency` calls in flight and numbers calls and callers', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const seen = new Set<number>();
    const callers = new Set<number>();
    const r = await runLoad(
      async (n, caller) => {
        seen.add(n);
        callers.add(caller);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 1));
        inFlight--;
      },
      { concurrency: 8, durationMs: 60 },
    );
    expect(maxInFlight).toBe(8);
    expect([...callers].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(seen.size).toBeGreaterThanOrEqual(r.ops);
    expect(r.ops).toBeGreaterThan(0);
  });

  it('counts failures apart and keeps the first message', async () => {
    let t = 0;
    const r = await runLoad(
      async (n) => {
        await Promise.resolve();
        t += 1;
        if (n % 4 === 3) throw new Error(`boom ${n}`);
      },
      { concurrency: 1, durationMs: 40.5, now: () => t },
    );
    // Calls end at 1, 2, …, 40 (inside [0, 40.5)); every fourth fails.
    expect(r.ops + r.errors).toBe(40);
    expect(r.errors).toBe(10);
    expect(r.firstError).toBe('boom 3');
  });

  it('counts compares that did not hold apart from calls and errors, and leaves them out of the latencies', async () => {
    let t = 0;
    const r = await runLoad(
      async (n) => {
        await Promise.resolve();
        t += n % 2 === 1 ? 10 : 1;
        return n % 2 === 1 ? COMPARE_FAILED : 'swapped';
      },
      { concurrency: 1, durationMs: 22, now: () => t },
    );
    // Calls end at 1, 11, 12, 22 (outside), …: two swaps of 1 ms, one failed compare of 10 ms.
    expect(r).toMatchObject({ ops: 2, failedCompares: 1, errors: 0 });
    expect(r.p99Ms).toBeCloseTo(1, 2);
  });

  it('refuses a bad concurrency or duration', async () => {
    await expect(runLoad(async () => undefined, { concurrency: 0, durationMs: 10 })).rejects.toThrow(/concurrency/);
    await expect(runLoad(async () => undefined, { concurrency: 1, durationMs: 0 })).rejects.toThrow(/durationMs/);
  });
});

describe('compare-and-set load', () => {
  it('gives every caller keys of its own and compares on the mod revision it last learnt', async () => {
    const revisions = new Map<string, bigint>();
    let revision = 0n;
    const calls: { key: string; expected: bigint }[] = [];
    const swaps = new OwnedKeySwaps(async (key, expected) => {
      calls.push({ key: key.toString(), expected });
      const held = revisions.get(key.toString()) ?? 0n;
      if (held !== expected) return { swapped: false, modRevision: held };
      revisions.set(key.toString(), ++revision);
      return { swapped: true, modRevision: revision };
    });
    await swaps.prefill();
    expect(revisions.size).toBe(CAS_CALLERS * CAS_KEYS_PER_CALLER);
    calls.length = 0;
    // Caller 3 takes its keys in turn, each compared on the revision its own last write left.
    for (let i = 0; i < CAS_KEYS_PER_CALLER + 1; i++) expect(await swaps.op(i, 3)).not.toBe(COMPARE_FAILED);
    expect(new Set(calls.map((c) => c.key)).size).toBe(CAS_KEYS_PER_CALLER);
    expect(calls.every((c) => c.key.startsWith('bench-cas-c03-'))).toBe(true);
    expect(calls[CAS_KEYS_PER_CALLER]!.key).toBe(calls[0]!.key);
    // Someone else wrote caller 5's next key: the compare fails once, then holds on the revision read back.
    revisions.set('bench-cas-c05-k00', ++revision);
    expect(await swaps.op(0, 5)).toBe(COMPARE_FAILED);
    for (let i = 1; i < CAS_KEYS_PER_CALLER; i++) await swaps.op(i, 5);
    expect(await swaps.op(0, 5)).not.toBe(COMPARE_FAILED);
    await expect(swaps.op(0, CAS_CALLERS)).rejects.toThrow(/outside the 64 callers/);
  });

  it('refuses a prefill whose compare on an absent key fails', async () => {
    const swaps = new OwnedKeySwaps(async () => ({ swapped: false, modRevision: 7n }));
    await expect(swaps.prefill()).rejects.toThrow(/on mod revision 0 \(absent\) did not swap: the key is at mod revision 7/);
  });
});

describe('report', () => {
  const samples: Sample[] = [
    // Echo: 3 rounds, median 10,000 at 64 callers, 4,000 at 1.
    ...[9_000, 10_000, 12_000].map((v, i) => sample('echo', 'echo', 64, i + 1, result(v, 4, 20))),
    ...[4_000, 3_900, 4_100].map((v, i) => sample('echo', 'echo', 1, i + 1, result(v, 0.2, 1))),
    ...[9_600, 9_500, 9_400].map((v, i) => sample('echo-interceptors', 'echo', 64, i + 1, result(v, 4.2, 21))),
    // etcd: Put 8,000 at 64, Range 10,000 at 64, Put p50 1.0 ms at 1.
    ...[8_000, 7_000, 9_000].map((v, i) => sample('etcd', 'put', 64, i + 1, result(v, 7, 26))),
    ...[10_000, 10_000, 10_000].map((v, i) => sample('etcd', 'get', 64, i + 1, result(v, 5, 20))),
    ...[1_000, 1_000, 1_000].map((v, i) => sample('etcd', 'put', 1, i + 1, result(v, 1.0, 3))),
    // replikit CP: put 4,000 at 64 (0.5× etcd), p99 52 ms (2× etcd); get 12,000 (1.2×); put p50 0.8 ms at 1.
    ...[4_000, 3_000, 5_000].map((v, i) => sample('replikit-cp', 'put', 64, i + 1, result(v, 15, 52, 1))),
    ...[12_000, 12_000, 12_000].map((v, i) => sample('replikit-cp', 'get', 64, i + 1, result(v, 5, 18))),
    ...[1_200, 1_200, 1_200].map((v, i) => sample('replikit-cp', 'put', 1, i + 1, result(v, 0.8, 2))),
  ];

  it('takes medians over rounds', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([NaN, 5])).toBe(5);
    expect(median([])).toBeNaN();
    const rows = aggregate(samples);
    const echo64 = rows.find((r) => r.system === 'echo' && r.concurrency === 64)!;
    expect(echo64.opsPerSec).toBe(10_000);
    expect(echo64.rounds).toBe(3);
    expect(echo64.opsPerSecByRound).toEqual([9_000, 10_000, 12_000]);
    const cpPut = rows.find((r) => r.system === 'replikit-cp' && r.op === 'put' && r.concurrency === 64)!;
    expect(cpPut.errors).toBe(3);
  });

  it('takes the CPU per call as the median over rounds of each round\'s CPU over its calls', () => {
    const rows = aggregate([
      { ...sample('etcd', 'put', 64, 1, result(1_000, 1, 2)), serverCpuMs: 300, clientCpuMs: 100 },
      { ...sample('etcd', 'put', 64, 2, result(2_000, 1, 2)), serverCpuMs: 400, clientCpuMs: 100 },
      { ...sample('etcd', 'put', 64, 3, result(500, 1, 2)), serverCpuMs: 400, clientCpuMs: 100 },
    ]);
    // 300 µs, 200 µs and 800 µs per call: the median is 300.
    expect(rows[0]!.serverCpuUsPerOp).toBe(300);
    expect(rows[0]!.clientCpuUsPerOp).toBe(100);
    expect(aggregate([sample('etcd', 'put', 1, 1, result(10, 1, 2))])[0]!.serverCpuUsPerOp).toBeNull();
    expect(parseProcStatCpuMs('4242 (node (x) y) S 1 2 3 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 11 0 5 6 7')).toBe(2810);
  });

  it('computes the ratios against etcd (same op) and echo (same callers)', () => {
    const rows = aggregate(samples);
    const row = (system: SystemName, op: OpName, c: number) => rows.find((r) => r.system === system && r.op === op && r.concurrency === c)!;
    expect(row('replikit-cp', 'put', 64).vsEtcd).toBeCloseTo(0.5, 10);
    expect(row('replikit-cp', 'put', 64).vsEcho).toBeCloseTo(0.4, 10);
    expect(row('replikit-cp', 'get', 64).vsEtcd).toBeCloseTo(1.2, 10);
    expect(row('etcd', 'put', 64).vsEtcd).toBe(1);
    expect(row('echo-interceptors', 'echo', 64).vsEtcd).toBeNull();
    expect(row('echo-interceptors', 'echo', 64).vsEcho).toBeCloseTo(0.95, 10);
    // Sorted by op, callers, then system: echo rows first, etcd before replikit.
    expect(rows.map((r) => `${r.system} ${r.op} ${r.concurrency}`).slice(0, 4)).toEqual([
      'echo echo 1',
      'echo echo 64',
      'echo-interceptors echo 64',
      'etcd put 1',
    ]);
  });

  it('says which targets are met and by how much the others miss', () => {
    const rows = aggregate(samples);
    const targets = evaluateTargets(rows, [{ system: 'replikit-ap', reason: 'not available in this build' }]);
    const byId = new Map(targets.map((t) => [t.id, t]));
    expect(byId.get('cp-put-64-throughput')).toMatchObject({ status: 'missed', ratio: 0.5, required: 1 });
    expect(byId.get('cp-put-64-throughput')!.detail).toMatch(/^missed by 50 %: 4000\/s vs etcd 8000\/s = 0\.50×.*needs 2\.0×/);
    expect(byId.get('cp-put-64-p99')).toMatchObject({ status: 'missed', ratio: 2 });
    expect(byId.get('cp-put-64-p99')!.detail).toMatch(/100 % higher: p99 52\.0 ms vs etcd 26\.0 ms/);
    expect(byId.get('cp-put-1-p50')).toMatchObject({ status: 'met', ratio: 0.8 });
    expect(byId.get('cp-get-64-throughput')).toMatchObject({ status: 'met' });
    expect(byId.get('cp-get-64-throughput')!.ratio).toBeCloseTo(1.2, 10);
    expect(byId.get('ap-put-64-vs-echo')).toMatchObject({ status: 'not measured' });
    expect(byId.get('ap-put-64-vs-echo')!.detail).toContain('not available in this build');
    expect(byId.get('interceptors-vs-echo')!.status).toBe('met');
  });

  it('says etcd is missing when it is, and compares against echo only', () => {
    const rows = aggregate(samples.filter((s) => s.system !== 'etcd'));
    expect(rows.every((r) => r.vsEtcd === null)).toBe(true);
    const targets = evaluateTargets(rows, [{ system: 'etcd', reason: 'etcd not found and apt-get failed' }]);
    const cp = targets.find((t) => t.id === 'cp-put-64-throughput')!;
    expect(cp.status).toBe('not measured');
    expect(cp.detail).toBe('etcd not measured: etcd not found and apt-get failed');
  });

  const report = (): BenchReport => {
    const rows = aggregate(samples);
    const unavailable = [{ system: 'replikit-causal' as const, reason: 'not available in this build (serve refused --policy causal)' }];
    return {
      meta: {
        mode: 'full',
        startedAt: '2026-01-01T00:00:00.000Z',
        wallSeconds: 300,
        rounds: 3,
        durationMs: 5_000,
        warmupMs: 1_000,
        valueBytes: 100,
        keys: 1_000,
        machine: '2 cores',
        durability: 'both sides fsync before they acknowledge.',
        notes: ['a note'],
      },
      rows,
      unavailable,
      targets: evaluateTargets(rows, unavailable),
    };
  };

  it('writes the Markdown table, the unavailable systems, the targets and durability', () => {
    const md = renderMarkdown(report());
    const lines = md.split('\n');
    const header = lines.find((l) => l.startsWith('| system'))!;
    expect(header.split('|').map((c) => c.trim())).toEqual([
      '', 'system', 'op', 'callers', 'ops/s', 'p50 ms', 'p99 ms', '× etcd', '× echo', 'server CPU µs/op', 'errors', 'rounds', 'note', '',
    ]);
    const cpPut = lines.find((l) => /^\| replikit-cp\s+\| put\s+\|\s+64 \|/.test(l))!;
    expect(cpPut.split('|').map((c) => c.trim()).slice(1, 12)).toEqual(['replikit-cp', 'put', '64', '4000', '15.0', '52.0', '0.50×', '0.40×', '—', '3', '3']);
    expect(md).toMatch(/\| replikit-causal .*not available in this build \(serve refused --policy causal\) \|/);
    expect(md).toContain('**Durability:** both sides fsync before they acknowledge.');
    expect(md).toContain('- **missed** — CP put at 64 callers ≥ 1.0× etcd Put throughput: missed by 50 %');
    expect(md).toContain('medians over rounds');
    // Every line of a table has the same width, so it reads as a table on a terminal too (the
    // results, then replikit CP next to etcd: tables are runs of lines starting with '|').
    const tables = md.split(/\n(?!\|)/).map((block) => block.split('\n').filter((l) => l.startsWith('|'))).filter((t) => t.length > 0);
    expect(tables).toHaveLength(2);
    for (const table of tables) expect(new Set(table.map((l) => l.length)).size).toBe(1);
  });

  it('keeps a multi-line reason on one table row', () => {
    const md = renderMarkdown({ ...report(), unavailable: [{ system: 'replikit-ap', reason: `failed to start: n1 exited (1):\nSyntaxError | x\n${'y'.repeat(300)}` }] });
    const line = md.split('\n').find((l) => l.startsWith('| replikit-ap '))!;
    expect(line).toContain('failed to start: n1 exited (1): SyntaxError \\| x y');
    expect(line.endsWith('… |')).toBe(true);
  });

  it('writes JSON with the fixed row names other tools read', () => {
    const parsed = JSON.parse(toJson(report())) as { rows: Record<string, unknown>[]; unavailable: unknown[]; targets: unknown[] };
    const cpGet = parsed.rows.find((r) => r['system'] === 'replikit-cp' && r['op'] === 'get')!;
    expect(cpGet).toMatchObject({ system: 'replikit-cp', op: 'get', concurrency: 64, opsPerSec: 12_000, p50Ms: 5, p99Ms: 18, vsEtcd: 1.2 });
    for (const row of parsed.rows) {
      for (const key of ['system', 'op', 'concurrency', 'opsPerSec', 'p50Ms', 'p99Ms']) expect(row).toHaveProperty(key);
    }
    expect(parsed.unavailable).toEqual([{ system: 'replikit-causal', reason: 'not available in this build (serve refused --policy causal)' }]);
    expect(parsed.targets).toHaveLength(7);
  });

  it('writes NaN (nothing measured) as null in JSON', () => {
    const rows = aggregate([sample('replikit-cp', 'put', 1, 1, { ops: 0, errors: 5, opsPerSec: 0, p50Ms: NaN, p99Ms: NaN, maxMs: NaN, firstError: 'UNAVAILABLE' })]);
    const parsed = JSON.parse(toJson({ ...report(), rows })) as { rows: Record<string, unknown>[] };
    expect(parsed.rows[0]).toMatchObject({ opsPerSec: 0, p50Ms: null, p99Ms: null, errors: 5, firstError: 'UNAVAILABLE' });
  });
});

describe('report: compare-and-set and the embedded system', () => {
  const withFailures = (r: LoadResult, failedCompares: number): LoadResult => ({ ...r, failedCompares });
  const samples: Sample[] = [
    ...[2_000, 2_200, 1_800].map((v, i) => ({ ...sample('etcd', 'cas', 64, i + 1, withFailures(result(v, 20, 40), 0)), serverCpuMs: v * 0.4 })),
    ...[1_500, 1_600, 1_400].map((v, i) => ({ ...sample('replikit-cp', 'cas', 64, i + 1, withFailures(result(v, 30, 90), 2)), serverCpuMs: v * 0.9 })),
    ...[2_400, 2_500, 2_300].map((v, i) => sample('replikit-cp-embedded', 'cas', 64, i + 1, withFailures(result(v, 18, 35), 0))),
    ...[1_000, 1_000, 1_000].map((v, i) => sample('etcd', 'put', 1, i + 1, result(v, 1.0, 3))),
    ...[900, 900, 900].map((v, i) => sample('replikit-cp-embedded', 'put', 1, i + 1, result(v, 0.9, 2))),
  ];

  it('evaluates CAS at 64 callers against etcd Txn on successful swaps, and sums failed compares', () => {
    const rows = aggregate(samples);
    const cas = rows.find((r) => r.system === 'replikit-cp' && r.op === 'cas')!;
    expect(cas.failedCompares).toBe(6);
    expect(cas.vsEtcd).toBeCloseTo(0.75, 10);
    const target = evaluateTargets(rows, []).find((t) => t.id === 'cp-cas-64-throughput')!;
    expect(target).toMatchObject({ status: 'missed', ratio: 0.75 });
    expect(target.detail).toMatch(/^missed by 25 %: 1500\/s vs etcd 2000\/s = 0\.75×/);
    expect(evaluateTargets(rows.filter((r) => r.system !== 'etcd'), [{ system: 'etcd', reason: 'left out (--no-etcd)' }]).find((t) => t.id === 'cp-cas-64-throughput')).toMatchObject({
      status: 'not measured',
      detail: 'etcd not measured: left out (--no-etcd)',
    });
  });

  it('puts replikit CP, over gRPC and embedded, next to etcd with p50, p99 and CPU side by side', () => {
    const rows = aggregate(samples);
    const md = renderMarkdown({
      meta: {
        mode: 'full', startedAt: '2026-01-01T00:00:00.000Z', wallSeconds: 1, rounds: 3, durationMs: 5_000, warmupMs: 1_000,
        valueBytes: 100, keys: 1_000, machine: '2 cores', durability: 'both fsync.', notes: [],
      },
      rows,
      unavailable: [],
      targets: evaluateTargets(rows, []),
    });
    const lines = md.split('\n');
    expect(lines.find((l) => /^\| replikit-cp\s+\| cas /.test(l))).toMatch(/\| 6 failed compares \|$/);
    expect(md).toContain('## replikit CP next to etcd');
    const cells = (prefix: RegExp) => lines.find((l) => prefix.test(l))!.split('|').map((c) => c.trim()).slice(1, -1);
    expect(cells(/^\| cas \/ Txn .*\| gRPC /)).toEqual(['cas / Txn', '64', 'gRPC', '1500', '2000', '0.75×', '30.0 / 20.0', '90.0 / 40.0', '900 / 400', '6 / 0']);
    expect(cells(/^\| cas \/ Txn .*\| embedded /).slice(2, 6)).toEqual(['embedded', '2400', '2000', '1.20×']);
    expect(cells(/^\| put \/ Put .*\| embedded /)).toEqual(['put / Put', '1', 'embedded', '900', '1000', '0.90×', '0.900 / 1.00', '2.00 / 3.00', '— / —', '']);
    expect(md).toContain('- **missed** — CP compare-and-set at 64 callers ≥ 1.0× etcd Txn (successful swaps per second): missed by 25 %');
  });
});

describe('plot and progress', () => {
  it('draws one line per series with escaped labels', () => {
    const svg = renderThroughputSvg({
      title: 'Put <throughput>',
      xLabel: 'callers',
      yLabel: 'ops/s',
      series: [
        { label: 'replikit CP', color: '#1f77b4', points: [1, 8, 64, 256].map((x) => ({ x, y: x * 10 })) },
        { label: 'etcd & co', color: '#d62728', points: [] },
      ],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('Put &lt;throughput&gt;');
    expect(svg).toContain('etcd &amp; co (not measured)');
    expect(svg.match(/<path /g)).toHaveLength(1);
    expect(svg.match(/<circle /g)).toHaveLength(4);
    expect(niceCeiling(2_765)).toBe(3_000);
    expect(niceCeiling(5_486)).toBe(6_000);
    expect(niceCeiling(9_100)).toBe(10_000);
    expect(niceCeiling(0)).toBe(1);
  });

  it('renders a plain-text bar', () => {
    expect(renderBar(50, 100, '3/6 etcd put ×64', 30_000)).toBe('[############............]  50%  3/6 etcd put ×64  0:30 elapsed, ~0:30 left');
  });
});

describe('cpu profile summary', () => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 9 });
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(root)', ''), children: [2, 3, 4, 5] },
      { id: 2, callFrame: frame('(idle)', '') },
      { id: 3, callFrame: frame('makeUnaryRequest', 'file:///w/node_modules/@grpc/grpc-js/build/src/client.js') },
      { id: 4, callFrame: frame('(garbage collector)', '') },
      { id: 5, callFrame: frame('apply', 'file:///w/dist/storage/lmdb-store.js') },
    ],
    startTime: 1_000,
    endTime: 11_000,
    // Samples at 2,000 (idle), 4,000 (grpc), 6,000 (GC), 8,000 (grpc), 10,000 (apply): 2 ms each.
    samples: [2, 3, 4, 3, 5],
    timeDeltas: [1_000, 2_000, 2_000, 2_000, 2_000],
  };

  it('charges sample time to functions and areas, idle apart', () => {
    const summary = summarizeProfiles([profile]);
    expect(summary.totalMs).toBe(10);
    expect(summary.busyMs).toBe(9);
    expect(summary.functions[0]).toEqual({ name: 'makeUnaryRequest (@grpc/grpc-js/build/src/client.js:10)', area: '@grpc/grpc-js', selfMs: 4 });
    expect(summary.areas).toEqual([
      { area: '@grpc/grpc-js', selfMs: 4 },
      { area: 'GC', selfMs: 2 },
      { area: 'replikit storage', selfMs: 2 },
    ]);
    expect(renderProfileSummary('t', summary)).toContain('| 1 | `makeUnaryRequest (@grpc/grpc-js/build/src/client.js:10)` | @grpc/grpc-js | 4 | 44.4 % |');
  });

  it('counts only the samples inside a window', () => {
    const summary = summarizeProfiles([profile], { fromUs: 5_000, toUs: 9_000 });
    expect(summary.totalMs).toBe(4);
    expect(summary.areas).toEqual([
      { area: 'GC', selfMs: 2 },
      { area: '@grpc/grpc-js', selfMs: 2 },
    ]);
    expect(areaOf('node:internal/http2/core', 'request')).toBe('Node internals');
  });
});

describe('etcd wire: Txn', () => {
  it('encodes a compare-and-set Txn on mod_revision by hand, a zero operand included', () => {
    const key = Buffer.from('k');
    const value = Buffer.from('v');
    const bytes = encodeTxnRequest({
      compare: [{ key, result: EtcdCompareResult.EQUAL, operand: { modRevision: 0n } }],
      success: [{ put: { key, value } }],
      failure: [{ range: { key } }],
    });
    // compare: target MOD (2) = field 2; key = field 3; mod_revision 0 = field 6, present as the oneof's choice.
    const compare = [0x10, 2, 0x1a, 1, 0x6b, 0x30, 0];
    const put = [0x12, 6, 0x0a, 1, 0x6b, 0x12, 1, 0x76];
    const range = [0x0a, 3, 0x0a, 1, 0x6b];
    expect([...bytes]).toEqual([0x0a, compare.length, ...compare, 0x12, put.length, ...put, 0x1a, range.length, ...range]);
    const byValue = encodeTxnRequest({ compare: [{ key, result: EtcdCompareResult.NOT_EQUAL, operand: { value } }], success: [], failure: [] });
    // result NOT_EQUAL (3) = field 1; target VALUE (3) = field 2; value = field 7.
    expect([...byValue]).toEqual([0x0a, 10, 0x08, 3, 0x10, 3, 0x1a, 1, 0x6b, 0x3a, 1, 0x76]);
  });

  it('decodes a TxnResponse: the header revision, succeeded, and the keys a failure branch ranged', () => {
    const header = new BinaryWriter().tag(1, WireType.Varint).uint64(5n).tag(3, WireType.Varint).int64(42).finish();
    const succeeded = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(2, WireType.Varint).bool(true)
      .tag(3, WireType.LengthDelimited).bytes(new BinaryWriter().tag(2, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).finish()).finish())
      .finish();
    expect(decodeTxnResponse(succeeded)).toEqual({ revision: 42n, succeeded: true, responses: [null] });
    const kv = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(Buffer.from('k')).tag(2, WireType.Varint).int64(3).tag(3, WireType.Varint).int64(40)
      .tag(4, WireType.Varint).int64(7).tag(5, WireType.LengthDelimited).bytes(Buffer.from('v')).finish();
    const range = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(2, WireType.LengthDelimited).bytes(kv).tag(4, WireType.Varint).int64(1).finish();
    const failed = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(3, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(range).finish()).finish();
    const decoded = decodeTxnResponse(failed);
    expect(decoded.succeeded).toBe(false);
    expect(decoded.responses).toHaveLength(1);
    expect(decoded.responses[0]).toEqual([{ key: new Uint8Array(Buffer.from('k')), modRevision: 40n, version: 7n, value: new Uint8Array(Buffer.from('v')) }]);
  });
});

describe('etcd wire', () => {
  it('encodes PutRequest and a linearizable RangeRequest by hand', () => {
    const key = Buffer.from('k1');
    const value = Buffer.from('vv');
    expect([...encodePutRequest(key, value)]).toEqual([0x0a, 2, 0x6b, 0x31, 0x12, 2, 0x76, 0x76]);
    expect([...encodeRangeRequest(key)]).toEqual([0x0a, 2, 0x6b, 0x31]);
    expect([...encodeRangeRequest(key, true)]).toEqual([0x0a, 2, 0x6b, 0x31, 0x38, 1]);
  });

  it('decodes RangeResponse values and StatusResponse leader and member', () => {
    const kv = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(Buffer.from('k')).tag(2, WireType.Varint).int64(7)
      .tag(5, WireType.LengthDelimited).bytes(Buffer.from('value')).finish();
    const header = new BinaryWriter().tag(1, WireType.Varint).uint64(1n).finish();
    const range = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(2, WireType.LengthDelimited).bytes(kv)
      .tag(4, WireType.Varint).int64(1).finish();
    const decoded = decodeRangeResponse(range);
    expect(decoded.count).toBe(1);
    expect(decoded.values.map((v) => Buffer.from(v).toString())).toEqual(['value']);

    const statusHeader = new BinaryWriter().tag(1, WireType.Varint).uint64(9n).tag(2, WireType.Varint).uint64(18_000_000_000_000_000_000n).finish();
    const status = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(statusHeader).tag(2, WireType.LengthDelimited).string('3.4.23')
      .tag(4, WireType.Varint).uint64(18_000_000_000_000_000_000n).finish();
    expect(decodeStatusResponse(status)).toMatchObject({ memberId: '18000000000000000000', leader: '18000000000000000000', version: '3.4.23' });
  });
});
