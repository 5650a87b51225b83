import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { Metadata, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { CampaignResult, KillRecord } from '../../bench/failover-campaign.js';
import { classifyEtcdError } from '../../bench/failover-etcd.js';
import { decodeStatusResponse } from '../../bench/etcd-wire.js';
import { percentile, renderMarkdown, renderTerminal, summarize, verdict, type LeaderKillReport } from '../../bench/failover-report.js';
import { classifyReplikitError } from '../../bench/failover-replikit.js';
import { REASON_METADATA_KEY } from '../../src/transport/status.js';

function grpcError(code: status, details: string, reason?: string) {
  const metadata = new Metadata();
  if (reason !== undefined) metadata.set(REASON_METADATA_KEY, reason);
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata });
}

function kill(n: number, recoveryMs: number | null): KillRecord {
  return { kill: n, victim: 'n1', term: String(n), killedAtMs: n * 1000, recoveryMs, newLeader: 'n2', restartMs: 900, catchUpMs: 300, refusedInWindow: 0, unknownInWindow: 3 };
}

function result(overrides: Partial<CampaignResult> & { lost?: number; refusedApplied?: number } = {}): CampaignResult {
  const { lost = 0, refusedApplied = 0, ...rest } = overrides;
  return {
    system: 'replikit',
    description: 'three nodes',
    kills: [kill(1, 1200), kill(2, 900), kill(3, 1500)],
    writes: { acknowledged: 1000, refused: 4, unknown: 9 },
    errors: { 'DEADLINE_EXCEEDED FORWARD_FAILED': 9 },
    readBack: { lost, lostExamples: [], unreadable: 0, unknownApplied: 5, unknownAbsent: 4, refusedApplied, refusedAppliedExamples: [], seconds: 1 },
    stoppedEarly: null,
    durationSeconds: 20,
    ...rest,
  };
}

function report(results: CampaignResult[]): LeaderKillReport {
  return {
    startedAt: '2026-11-30T00:00:00.000Z',
    wallClockSeconds: 60,
    machine: '2 cores',
    command: 'npm run leader-kill -- --kills 3',
    settings: { kills: 3, writers: 16, callDeadlineMs: 5000, recoveryBoundMs: 30000, settleMs: 1000, probeIntervalMs: 20 },
    results,
    unavailable: [{ system: 'etcd', reason: 'etcd not found' }],
    errors: [],
    notes: [],
  };
}

describe('leader-kill report', () => {
  it('takes nearest-rank percentiles', () => {
    expect(percentile([], 50)).toBeNull();
    expect(percentile([5], 50)).toBe(5);
    expect(percentile([4, 1, 3, 2], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4, 5], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4, 5], 100)).toBe(5);
  });

  it('summarizes recoveries and passes a clean run, naming an unavailable etcd without failing', () => {
    const row = summarize(result());
    expect(row).toMatchObject({ kills: 3, recovered: 3, recoveryP50Ms: 1200, recoveryMaxMs: 1500, acknowledged: 1000, lost: 0, unknown: 9, unknownApplied: 5 });
    const r = report([result()]);
    expect(verdict(r)).toEqual([]);
    expect(renderTerminal(r)).toMatch(/\| replikit \|\s+3 \|\s+1200 \|\s+1500 \|\s+1000 \|\s+0 \| 9 \(5\)/);
    expect(renderTerminal(r)).toContain('etcd: not available (etcd not found)');
    expect(renderMarkdown(r)).toContain('**PASS**');
  });

  it('fails on a lost write, a kill never recovered from, a campaign cut short, and replikit applying a refused write', () => {
    expect(verdict(report([result({ lost: 2 })]))).toEqual(['replikit: 2 acknowledged writes lost (missing or another value)']);
    const stuck = result({ kills: [kill(1, 1000), kill(2, null)], stoppedEarly: 'kill 2 (n1): no write sent after the kill was acknowledged within 30000 ms' });
    expect(verdict(report([stuck]))).toEqual([
      'replikit: 1 kills were not followed by an acknowledged write within 30000 ms',
      'replikit: stopped after 2 of 3 kills: kill 2 (n1): no write sent after the kill was acknowledged within 30000 ms',
    ]);
    expect(verdict(report([result({ refusedApplied: 1 })]))).toEqual(['replikit: 1 writes answered UNAVAILABLE ("nothing was done") took effect']);
    // etcd's refusals are only "never connected"; one applied anyway is reported, not failed.
    expect(verdict(report([result({ system: 'etcd', refusedApplied: 1 })]))).toEqual([]);
    expect(verdict(report([result({ system: 'etcd', lost: 1 })]))).toHaveLength(1);
  });
});

describe('leader-kill outcomes', () => {
  it('reads replikit UNAVAILABLE as nothing done, its DEADLINE_EXCEEDED and dropped connections as unknown', () => {
    expect(classifyReplikitError(grpcError(status.UNAVAILABLE, 'no leader', 'NO_LEADER'))).toEqual({ outcome: 'refused', label: 'UNAVAILABLE NO_LEADER' });
    expect(classifyReplikitError(grpcError(status.DEADLINE_EXCEEDED, 'may have', 'FORWARD_FAILED'))).toEqual({ outcome: 'unknown', label: 'DEADLINE_EXCEEDED FORWARD_FAILED' });
    expect(classifyReplikitError(grpcError(status.UNAVAILABLE, 'Connection dropped')).outcome).toBe('unknown');
    expect(classifyReplikitError(grpcError(status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1'))).toEqual({
      outcome: 'refused',
      label: 'UNAVAILABLE (not connected)',
    });
    expect(classifyReplikitError(grpcError(status.DEADLINE_EXCEEDED, 'Deadline exceeded after 5.002s,remote_addr=127.0.0.1:7001'))).toEqual({
      outcome: 'unknown',
      label: 'DEADLINE_EXCEEDED (client deadline)',
    });
    expect(classifyReplikitError(new Error('boom')).outcome).toBe('unknown');
  });

  it('reads every etcd failure but a refused connection as unknown, with numbers folded out of the label', () => {
    expect(classifyEtcdError(grpcError(status.UNAVAILABLE, 'etcdserver: leader changed'))).toEqual({ outcome: 'unknown', label: 'UNAVAILABLE etcdserver: leader changed' });
    expect(classifyEtcdError(grpcError(status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:2379')).outcome).toBe('refused');
    expect(classifyEtcdError(grpcError(status.UNKNOWN, 'raft proposal dropped after 1500 ms')).label).toBe('UNKNOWN raft proposal dropped after N ms');
    expect(classifyEtcdError(grpcError(status.DEADLINE_EXCEEDED, 'Deadline exceeded after 5.001s,LB pick: 0s,remote_addr=127.0.0.1:2379'))).toEqual({
      outcome: 'unknown',
      label: 'DEADLINE_EXCEEDED (client deadline)',
    });
  });

  it('decodes the leader, term and indexes of an etcd StatusResponse', () => {
    const header = new BinaryWriter().tag(1, WireType.Varint).uint64(7n).tag(2, WireType.Varint).uint64(18446744073709551615n).finish();
    const buf = new BinaryWriter()
      .tag(1, WireType.LengthDelimited).bytes(header)
      .tag(2, WireType.LengthDelimited).string('3.4.23')
      .tag(3, WireType.Varint).int64(20480n)
      .tag(4, WireType.Varint).uint64(12345678901234567890n)
      .tag(5, WireType.Varint).uint64(901n)
      .tag(6, WireType.Varint).uint64(4n)
      .tag(7, WireType.Varint).uint64(899n)
      .finish();
    expect(decodeStatusResponse(buf)).toMatchObject({ memberId: '18446744073709551615', leader: '12345678901234567890', raftIndex: 901n, raftTerm: 4n, raftAppliedIndex: 899n });
  });
});
