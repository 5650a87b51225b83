import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import {
  EtcdEventType,
  decodeEtcdRangeResult,
  decodeEtcdWatchResponse,
  encodeEtcdRangeRequest,
  encodeEtcdWatchCreate,
  etcdPrefixRangeEnd,
} from '../../bench/etcd-wire.js';
import { latencyHistogram } from '../../bench/load.js';
import { renderMarkdown, toJson, type BenchReport } from '../../bench/report.js';
import { DeliveryTracker, settle, tagOf, taggedValue } from '../../bench/watch-latency.js';
import {
  aggregateRangeWatch,
  percentile,
  rangeWatchProblems,
  renderRangeWatch,
  type FanoutSample,
  type RangeSample,
  type RangeWatchConfig,
  type WatchLatencySample,
} from '../../bench/watch-report.js';

describe('watch event latency: tagged values and the delivery tracker', () => {
  it('tags a value of the benchmark size with the put number and the phase nonce', () => {
    const v = taggedValue(123_456_789, 0xdeadbeef, 100);
    expect(v).toHaveLength(100);
    expect(tagOf(v, 0xdeadbeef)).toBe(123_456_789);
    // Another phase's value, or a value too short to carry a tag, names no put.
    expect(tagOf(v, 1)).toBeUndefined();
    expect(tagOf(Buffer.from('short'), 0xdeadbeef)).toBeUndefined();
    expect(() => taggedValue(1, 1, 9)).toThrow(RangeError);
  });

  it('times acknowledgement to arrival, clamps early events to 0 and counts them, and counts only the window', () => {
    const h = latencyHistogram();
    const t = new DeliveryTracker(h);
    t.acked(1, 100, true);
    t.arrived(1, 103, 10n); // 3 ms after its ack
    t.arrived(2, 200, 11n); // before its ack: early
    t.acked(2, 201, true);
    t.acked(3, 50, false); // warm-up: neither recorded nor missing
    t.arrived(3, 60, 12n);
    t.acked(4, 300, true); // never arrives: missing
    expect(t.outstanding()).toBe(1);
    expect(t.finish()).toEqual({ events: 2, early: 1, missing: 1, duplicates: 0, outOfOrder: 0, strays: 0 });
    expect(h.totalCount).toBe(2);
    expect(h.maxValue).toBeGreaterThanOrEqual(2990);
    expect(h.maxValue).toBeLessThanOrEqual(3010);
    expect(h.minNonZeroValue).toBe(1);
    h.destroy();
  });

  it('counts duplicates, revisions that go back, and events that name no put', () => {
    const h = latencyHistogram();
    const t = new DeliveryTracker(h);
    t.acked(1, 0, true);
    t.arrived(1, 1, 5n);
    t.arrived(1, 2, 5n); // again
    t.arrived(undefined, 3, 6n); // another phase's value
    t.acked(2, 0, true);
    t.arrived(2, 4, 4n); // below revision 6
    expect(t.finish()).toEqual({ events: 2, early: 0, missing: 0, duplicates: 1, outOfOrder: 1, strays: 1 });
    h.destroy();
  });

  it('waits for outstanding events, no longer than it may', async () => {
    let left = 3;
    const waited = await settle(() => left--, 1_000, 1);
    expect(left).toBeLessThanOrEqual(0);
    expect(waited).toBeLessThan(1_000);
    const capped = await settle(() => 1, 30, 5);
    expect(capped).toBeGreaterThanOrEqual(25);
  });
});

describe('etcd wire: prefix Range and Watch', () => {
  it('makes the range_end of a prefix as clientv3 does, without touching the prefix', () => {
    const prefix = Buffer.from('r/');
    expect(Buffer.from(etcdPrefixRangeEnd(prefix)).toString()).toBe('r0');
    expect(prefix.toString()).toBe('r/');
    expect([...etcdPrefixRangeEnd(new Uint8Array([0x61, 0xff, 0xff]))]).toEqual([0x62]);
    expect([...etcdPrefixRangeEnd(new Uint8Array([0xff]))]).toEqual([0]);
  });

  it('encodes a prefix RangeRequest (key 1, range_end 2, limit 3, serializable 7, keys_only 8, count_only 9)', () => {
    expect([...encodeEtcdRangeRequest({ key: Buffer.from('a'), rangeEnd: Buffer.from('b') })]).toEqual([0x0a, 1, 0x61, 0x12, 1, 0x62]);
    expect([...encodeEtcdRangeRequest({ key: Buffer.from('a'), limit: 5, serializable: true, keysOnly: true, countOnly: true })]).toEqual([
      0x0a, 1, 0x61, 0x18, 5, 0x38, 1, 0x40, 1, 0x48, 1,
    ]);
  });

  it('decodes a RangeResponse: header revision, kvs, more, count', () => {
    const header = new BinaryWriter().tag(3, WireType.Varint).int64(77).finish();
    const kv = (k: string) => new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(Buffer.from(k)).tag(3, WireType.Varint).int64(9).tag(5, WireType.LengthDelimited).bytes(Buffer.from('v')).finish();
    const res = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(2, WireType.LengthDelimited).bytes(kv('a')).tag(2, WireType.LengthDelimited).bytes(kv('b'))
      .tag(3, WireType.Varint).bool(true).tag(4, WireType.Varint).int64(10).finish();
    const decoded = decodeEtcdRangeResult(res);
    expect(decoded.revision).toBe(77n);
    expect(decoded.kvs.map((k) => Buffer.from(k.key).toString())).toEqual(['a', 'b']);
    expect(decoded.kvs[0]!.modRevision).toBe(9n);
    expect(decoded.more).toBe(true);
    expect(decoded.count).toBe(10);
  });

  it('encodes a WatchRequest with create_request (1) holding key 1, range_end 2, start_revision 3, prev_kv 6', () => {
    expect([...encodeEtcdWatchCreate({ key: Buffer.from('w/'), rangeEnd: Buffer.from('w0') })]).toEqual([0x0a, 8, 0x0a, 2, 0x77, 0x2f, 0x12, 2, 0x77, 0x30]);
    expect([...encodeEtcdWatchCreate({ key: Buffer.from('k'), startRevision: 5n, progressNotify: true, prevKv: true })]).toEqual([0x0a, 9, 0x0a, 1, 0x6b, 0x18, 5, 0x20, 1, 0x30, 1]);
  });

  it('decodes a WatchResponse: created, canceled with its reason, and events (11) of type, key, value, mod_revision', () => {
    const header = new BinaryWriter().tag(3, WireType.Varint).int64(12).finish();
    const created = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(2, WireType.Varint).int64(3).tag(3, WireType.Varint).bool(true).finish();
    expect(decodeEtcdWatchResponse(created)).toMatchObject({ revision: 12n, watchId: 3n, created: true, canceled: false, events: [] });
    const kv = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(Buffer.from('w/1')).tag(3, WireType.Varint).int64(13).tag(5, WireType.LengthDelimited).bytes(Buffer.from('x')).finish();
    const put = new BinaryWriter().tag(2, WireType.LengthDelimited).bytes(kv).finish();
    const del = new BinaryWriter().tag(1, WireType.Varint).int32(1).tag(2, WireType.LengthDelimited).bytes(kv).finish();
    const events = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(11, WireType.LengthDelimited).bytes(put).tag(11, WireType.LengthDelimited).bytes(del).finish();
    const decoded = decodeEtcdWatchResponse(events);
    expect(decoded.events.map((e) => e.type)).toEqual([EtcdEventType.PUT, EtcdEventType.DELETE]);
    expect(Buffer.from(decoded.events[0]!.kv.key).toString()).toBe('w/1');
    expect(Buffer.from(decoded.events[0]!.kv.value).toString()).toBe('x');
    expect(decoded.events[0]!.kv.modRevision).toBe(13n);
    const canceled = new BinaryWriter().tag(4, WireType.Varint).bool(true).tag(5, WireType.Varint).int64(4).tag(6, WireType.LengthDelimited).string('compacted').finish();
    expect(decodeEtcdWatchResponse(canceled)).toMatchObject({ canceled: true, compactRevision: 4n, cancelReason: 'compacted' });
  });
});

const config: RangeWatchConfig = {
  rounds: 3, durationMs: 5000, warmupMs: 1000, callers: 64, valueBytes: 100, fanoutWatchers: 1000, fanoutChannels: 10,
  fanoutPrefixes: 100, fanoutRate: 200, rangeKeys: 10000, rangeRunsPerRound: 10, settleMs: 5000,
};
const ok = { events: 100, early: 10, missing: 0, duplicates: 0, outOfOrder: 0, strays: 0 };

function latency(system: 'etcd' | 'replikit-cp', round: number, watcher: 'follower' | 'leader', p50Ms: number, p99Ms: number, counts = ok): WatchLatencySample {
  return { system, round, watcher, counts, p50Ms, p99Ms, maxMs: p99Ms * 2, putsPerSec: 1000, putP50Ms: 5, putP99Ms: 20, putErrors: 0, serverCpuUsPerPut: 200 };
}
function fanout(system: 'etcd' | 'replikit-cp', round: number, p50Ms: number, rss: [number, number, number], counts = ok): FanoutSample {
  return {
    system, round, watchers: 1000, openMs: 500, rssBeforeMb: rss[0], rssAfterOpenMb: rss[1], rssAfterLoadMb: rss[2], writesPerSec: 200, counts,
    p50Ms, p99Ms: p50Ms * 4, maxMs: p50Ms * 8, errors: 0, nodeCpuUsPerEvent: 50,
  };
}
function range(system: 'etcd' | 'replikit-cp', round: number, runsMs: number[]): RangeSample {
  return { system, round, keys: 10000, runsMs, pages: system === 'etcd' ? 1 : 3, errors: 0, serverCpuMsPerRange: 20 };
}

describe('Range and Watch report', () => {
  const samples = {
    latency: [1, 2, 3].flatMap((round) => [
      latency('etcd', round, 'follower', 2, 10),
      latency('etcd', round, 'leader', 1, 8),
      latency('replikit-cp', round, 'follower', 3 * round, 30),
      latency('replikit-cp', round, 'leader', 2, 16),
    ]),
    fanout: [1, 2, 3].flatMap((round) => [fanout('etcd', round, 0.5, [50, 110, 112]), fanout('replikit-cp', round, 20, [130, 140, 150])]),
    range: [1, 2, 3].flatMap((round) => [range('etcd', round, [20, 25, 30]), range('replikit-cp', round, [300, 330, 360])]),
  };

  it('takes medians over rounds, sums counts, and puts replikit over etcd', () => {
    const report = aggregateRangeWatch(config, samples);
    expect(report.latency.map((r) => `${r.watcher}/${r.system}`)).toEqual(['follower/etcd', 'follower/replikit-cp', 'leader/etcd', 'leader/replikit-cp']);
    const follower = report.latency.find((r) => r.system === 'replikit-cp' && r.watcher === 'follower')!;
    expect(follower.p50Ms).toBe(6);
    expect(follower.p50VsEtcd).toBe(3);
    expect(follower.p99VsEtcd).toBe(3);
    expect(follower.counts.events).toBe(300);
    expect(follower.rounds).toBe(3);
    expect(report.latency.find((r) => r.system === 'etcd')!.p50VsEtcd).toBeNull();
    const fan = report.fanout.find((r) => r.system === 'replikit-cp')!;
    expect(fan.kibPerWatcher).toBeCloseTo(10.24, 2);
    expect(fan.kibPerWatcherByRound).toHaveLength(3);
    expect(fan.p50VsEtcd).toBe(40);
    const r = report.range.find((x) => x.system === 'replikit-cp')!;
    expect(r.runs).toBe(9);
    expect(r.p50Ms).toBe(330);
    expect(r.p99Ms).toBe(360);
    expect(r.keysPerSec).toBeCloseTo(30303, 0);
    expect(r.p50VsEtcd).toBeCloseTo(13.2, 5);
    expect(rangeWatchProblems(report)).toEqual([]);
  });

  it('gives no latency ratio when either side is at the clamp (most events beat their acknowledgement)', () => {
    const report = aggregateRangeWatch(config, {
      latency: [latency('etcd', 1, 'follower', 5, 10), latency('replikit-cp', 1, 'follower', 0.001, 20)],
      fanout: [],
      range: [],
    });
    const row = report.latency.find((r) => r.system === 'replikit-cp')!;
    expect(row.p50VsEtcd).toBeNull();
    expect(row.p99VsEtcd).toBe(2);
    expect(renderRangeWatch(report).join('\n')).toMatch(/\| follower \| replikit-cp \|.*\|\s+0\.001 \|/);
  });

  it('fails the check on missing, duplicate or out-of-order events, Range errors and systems not measured', () => {
    const broken = aggregateRangeWatch(
      config,
      {
        latency: [latency('replikit-cp', 1, 'follower', 1, 2, { ...ok, missing: 4 }), latency('replikit-cp', 1, 'leader', 1, 2, { ...ok, duplicates: 1 })],
        fanout: [fanout('replikit-cp', 1, 1, [1, 2, 3], { ...ok, outOfOrder: 2 })],
        range: [{ ...range('replikit-cp', 1, []), errors: 3, firstError: 'boom' }],
      },
      [{ system: 'etcd', reason: 'failed to start' }],
    );
    const problems = rangeWatchProblems(broken);
    expect(problems).toEqual([
      'etcd not measured (failed to start)',
      'replikit-cp watch latency (follower): 4 events missing',
      'replikit-cp watch latency (leader): 1 events delivered twice',
      'replikit-cp 1000 watchers: 2 events out of revision order',
      'replikit-cp Range of 10000 keys: 3 errors (boom)',
      'replikit-cp Range of 10000 keys: no successful run',
    ]);
    expect(renderRangeWatch(broken).join('\n')).toContain('**Check: FAILED**');
  });

  it('renders three tables and the check into the report, and the section into latest.json', () => {
    const rangeWatch = aggregateRangeWatch(config, samples, [], ['a note']);
    const report: BenchReport = {
      meta: { mode: 'full', startedAt: 'now', wallSeconds: 1, rounds: 3, durationMs: 5000, warmupMs: 1000, valueBytes: 100, keys: 1000, machine: 'm', durability: 'd', notes: [] },
      rows: [],
      unavailable: [],
      targets: [],
      rangeWatch,
    };
    const md = renderMarkdown(report);
    expect(md).toContain('## Range and Watch');
    expect(md).toContain('**Check: ok**');
    expect(md).toContain('- a note');
    const row = md.split('\n').find((l) => l.startsWith('| follower | replikit-cp '))!;
    expect(row.split('|').map((c) => c.trim()).slice(1, 12)).toEqual(['follower', 'replikit-cp', '300', '30', '0', '0', '6.00', '30.0', '60.0', '3.00×', '3.00×']);
    expect(md.split('\n').find((l) => l.startsWith('| replikit-cp |') && l.includes('10000'))).toMatch(/\| replikit-cp \| 10000 \|\s+9 \|\s+330 \|\s+360 \|/);
    const json = JSON.parse(toJson(report)) as { rangeWatch: { latency: { system: string; p50Ms: number }[]; problems: string[]; samples: { range: unknown[] } } };
    expect(json.rangeWatch.problems).toEqual([]);
    expect(json.rangeWatch.latency.map((r) => r.system)).toContain('replikit-cp');
    expect(json.rangeWatch.samples.range).toHaveLength(6);
    // Without the section, the JSON has no rangeWatch key (other tools see the same shape as before).
    expect(JSON.parse(toJson({ ...report, rangeWatch: undefined }))).not.toHaveProperty('rangeWatch');
  });

  it('takes a nearest-rank percentile', () => {
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(percentile([5, 1, 3, 2, 4], 99)).toBe(5);
    expect(percentile([], 50)).toBeNaN();
  });
});
