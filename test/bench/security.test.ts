import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { LoadResult } from '../../bench/load.js';
import { aggregateSecurity, renderSecurity, securityJson, type SecurityConfig, type SecuritySample } from '../../bench/security-report.js';
import { BENCH_CLIENT, benchAuthzFile, securityPlan, writeBenchPki } from '../../bench/security.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

const config: SecurityConfig = { rounds: 3, durationMs: 5_000, warmupMs: 1_000, concurrencies: [1, 64], authz: true, grants: 30, command: 'npm run bench' };

function result(opsPerSec: number, p50Ms: number, p99Ms: number): LoadResult {
  return { ops: opsPerSec * 5, errors: 0, failedCompares: 0, opsPerSec, p50Ms, p99Ms, maxMs: p99Ms * 2 };
}

function sample(variant: 'plaintext' | 'mtls-authz', round: number, opsPerSec: number, serverCpuMs: number): SecuritySample {
  return { variant, op: 'put', concurrency: 64, round, result: result(opsPerSec, 10, 40), serverCpuMs, clientCpuMs: serverCpuMs / 4, loadAverage: 2 + round / 10 };
}

describe('the security rows: medians, ratios, report', () => {
  it('takes medians over rounds and divides mtls-authz by plaintext, round by round too', () => {
    const report = aggregateSecurity(config, [
      sample('plaintext', 1, 1000, 5000),
      sample('mtls-authz', 1, 800, 5000),
      sample('plaintext', 2, 1200, 6000),
      sample('mtls-authz', 2, 900, 6000),
      sample('plaintext', 3, 1100, 5500),
      sample('mtls-authz', 3, 1100, 5500),
    ]);
    expect(report.rows.map((r) => r.variant)).toEqual(['plaintext', 'mtls-authz']);
    const [plain, secure] = report.rows;
    expect(plain!.opsPerSec).toBe(1100);
    expect(secure!.opsPerSec).toBe(900);
    // 5000 ms of CPU over 5000 calls = 1000 µs per call (plaintext round 1), medians over rounds.
    expect(plain!.serverCpuUsPerOp).toBe(1000);
    expect(secure!.serverCpuUsPerOp).toBeCloseTo(median([5000 / 4000, 6000 / 4500, 5500 / 5500].map((x) => x * 1000)), 6);
    const [ratio] = report.ratios;
    expect(ratio!.opsPerSec).toBeCloseTo(900 / 1100, 9);
    expect(ratio!.p99Ms).toBe(1);
    expect(ratio!.opsPerSecByRound).toEqual([0.8, 0.75, 1]);
    const md = renderSecurity(report).join('\n');
    expect(md).toContain('## Security: mutual TLS and authorization against plaintext');
    expect(md).toContain('`--authz FILE` (30 grants');
    expect(md).toContain('0.82×');
    expect(md).toContain('2.10–2.30');
    expect(md).toContain('**Check: ok**');
    const json = securityJson(report) as { problems: string[]; rows: { opsPerSec: number }[] };
    expect(json.problems).toEqual([]);
    expect(json.rows[0]!.opsPerSec).toBe(1100);
  });

  it('says when a variant could not be measured or calls failed, and when --authz was missing', () => {
    const failing = { ...sample('plaintext', 1, 100, 100), result: { ...result(100, 1, 2), errors: 3, firstError: 'UNAVAILABLE' } };
    const report = aggregateSecurity({ ...config, authz: false }, [failing], [{ variant: 'mtls-authz', reason: 'failed to start' }]);
    expect(report.ratios).toEqual([]);
    const md = renderSecurity(report).join('\n');
    expect(md).toContain('**without** `--authz`');
    expect(md).toMatch(/\*\*Check: FAILED\*\*: mtls-authz not measured \(failed to start\); plaintext put ×64: 3 errors \(UNAVAILABLE\)/);
  });

  it('writes a realistic authorization file: a few dozen grants, comments, the bench client on its keyspace', () => {
    const { text, grants } = benchAuthzFile();
    const allows = text.split('\n').filter((l) => l.startsWith('allow '));
    expect(allows).toHaveLength(grants);
    expect(grants).toBeGreaterThanOrEqual(24);
    expect(allows).toContain(`allow client:${BENCH_CLIENT} read,write default`);
    expect(allows.indexOf(`allow client:${BENCH_CLIENT} read,write default`)).toBeGreaterThan(0);
    for (const line of allows) expect(line).toMatch(/^allow client:[a-z*-]+ (read|write|read,write|admin) [a-z*]+( [a-z]+\/)?$/);
    // Nothing in it grants the bench keyspace to anyone else (the stranger check relies on it).
    expect(allows.filter((l) => / (default|\*)$/.test(l) && !l.includes('admin'))).toEqual([`allow client:${BENCH_CLIENT} read,write default`, 'allow client:oncall-* read *']);
    expect(text).toMatch(/^# /m);
  });

  it('issues a certificate per node and the bench client its SPIFFE identity', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'replikit-bench-pki-test-'));
    try {
      const pki = await writeBenchPki(dir, ['n1', 'n2', 'n3']);
      const client = new X509Certificate(readFileSync(pki.client.cert));
      expect(client.subjectAltName).toContain('URI:spiffe://replikit/client/bench');
      expect(new X509Certificate(readFileSync(pki.node('n2').cert)).subjectAltName).toContain('URI:spiffe://replikit/node/n2');
      expect(client.verify(new X509Certificate(readFileSync(pki.caFile)).publicKey)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('plans two variants × two ops × two caller counts per round', () => {
    expect(securityPlan({ rounds: 3, durationMs: 5_000, warmupMs: 1_000 })).toEqual({ steps: 24, plannedMs: 24 * 6_000 });
  });

  it('refuses --no-security with --security-only, and --security-only with another -only flag', async () => {
    const exit = (args: readonly string[]) =>
      new Promise<string>((resolve) =>
        execFile(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], { cwd: root, timeout: 60_000 }, (err, _stdout, stderr) => resolve(err ? `${err.code} ${stderr}` : 'exit 0')),
      );
    const [both, withCatchUp] = await Promise.all([exit(['--no-security', '--security-only']), exit(['--security-only', '--catch-up-only'])]);
    expect(both).toMatch(/^2 .*--no-security and --security-only exclude each other/s);
    expect(withCatchUp).toMatch(/^2 .*--security-only excludes/s);
  }, 60_000);
});

function median(values: number[]): number {
  const xs = [...values].sort((a, b) => a - b);
  return xs[xs.length >> 1]!;
}
