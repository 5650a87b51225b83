import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BUILT } from '../support/cli.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The documented benchmark command runs end to end and writes the report other tools read. A
 * subset (echo, replikit CP over gRPC and embedded in a node's process, no etcd) keeps it short;
 * the numbers are not checked here: speed is measured in benchmarks, not in tests.
 */
describe.skipIf(!BUILT)('npm run bench:quick', () => {
  it('runs and writes latest.json with the documented row shape', async () => {
    const out = mkdtempSync(join(tmpdir(), 'replikit-bench-'));
    try {
      await new Promise<void>((resolve, reject) =>
        execFile('npm', ['run', '--silent', 'bench:quick', '--', '--systems', 'echo,replikit-cp,replikit-cp-embedded', '--no-etcd', '--no-watch-range', '--no-coordination', '--no-catch-up', '--no-security', '--out', out], { cwd: root, timeout: 120_000 }, (err, _stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(),
        ),
      );
      type JsonRow = { system: string; op: string; concurrency: number; opsPerSec: number; p50Ms: number; p99Ms: number; errors: number; failedCompares: number };
      const latest = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { rows: JsonRow[]; targets: { id: string }[] };
      const keys = latest.rows.map((r) => `${r.system}/${r.op}/${r.concurrency}`);
      expect(keys).toEqual(
        expect.arrayContaining([
          'echo/echo/1', 'echo/echo/64', 'replikit-cp/put/1', 'replikit-cp/put/64', 'replikit-cp/get/64', 'replikit-cp/cas/1', 'replikit-cp/cas/64',
          'replikit-cp-embedded/put/64', 'replikit-cp-embedded/get/64', 'replikit-cp-embedded/cas/64',
        ]),
      );
      for (const row of latest.rows) {
        expect(row.opsPerSec, `${row.system} ${row.op}`).toBeGreaterThan(0);
        expect(row.p99Ms).toBeGreaterThanOrEqual(row.p50Ms);
      }
      // Failed compares are counted apart from swaps and errors (how many is a number, not a test).
      for (const row of latest.rows.filter((r) => r.op === 'cas')) expect(row.failedCompares, `${row.system} cas`).toBeGreaterThanOrEqual(0);
      expect(latest.targets.map((t) => t.id)).toContain('cp-cas-64-throughput');
      expect(readFileSync(join(out, 'latest.md'), 'utf8')).toMatch(/both sides fsync|Durability/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 150_000);

  /**
   * The Range and Watch rows alone (--watch-range-only), against etcd when it is on PATH (never
   * installed here): a watch that misses, repeats or reorders an event, a Range that does not read
   * every key, or a system that cannot be measured fails this test, whatever the numbers.
   */
  it('runs the Range and Watch rows: every event delivered once, every key read, memory reported', async () => {
    const out = mkdtempSync(join(tmpdir(), 'replikit-bench-watch-'));
    const etcdOnPath = spawnSync('etcd', ['--version']).status === 0;
    try {
      await new Promise<void>((resolve, reject) =>
        execFile(
          'npm',
          ['run', '--silent', 'bench:quick', '--', '--watch-range-only', '--systems', etcdOnPath ? 'replikit-cp,etcd' : 'replikit-cp', '--no-install', '--out', out],
          { cwd: root, timeout: 150_000 },
          (err, _stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve()),
        ),
      );
      type Counts = { events: number; missing: number; duplicates: number; outOfOrder: number };
      const latest = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as {
        rows: unknown[];
        rangeWatch: {
          problems: string[];
          latency: { system: string; watcher: string; counts: Counts; p50Ms: number | null; p99Ms: number | null }[];
          fanout: { system: string; watchers: number; counts: Counts; rssBeforeMb: number; rssAfterOpenMb: number; p99Ms: number | null }[];
          range: { system: string; keys: number; runs: number; errors: number; p50Ms: number; keysPerSec: number }[];
        };
      };
      // Only the section ran.
      expect(latest.rows).toEqual([]);
      const rw = latest.rangeWatch;
      expect(rw.problems).toEqual([]);
      const systems = etcdOnPath ? ['etcd', 'replikit-cp'] : ['replikit-cp'];
      expect(rw.latency.map((r) => `${r.system}/${r.watcher}`).sort()).toEqual(systems.flatMap((s) => [`${s}/follower`, `${s}/leader`]).sort());
      for (const r of rw.latency) {
        expect(r.counts.events, `${r.system} ${r.watcher}`).toBeGreaterThan(0);
        expect([r.counts.missing, r.counts.duplicates, r.counts.outOfOrder], `${r.system} ${r.watcher}`).toEqual([0, 0, 0]);
        expect(r.p99Ms!).toBeGreaterThanOrEqual(r.p50Ms!);
      }
      expect(rw.fanout.map((r) => r.system).sort()).toEqual(systems);
      for (const r of rw.fanout) {
        expect(r.watchers).toBe(1000);
        expect(r.counts.events, r.system).toBeGreaterThan(0);
        expect([r.counts.missing, r.counts.duplicates, r.counts.outOfOrder], r.system).toEqual([0, 0, 0]);
        expect(r.rssBeforeMb).toBeGreaterThan(0);
        expect(r.rssAfterOpenMb).toBeGreaterThan(0);
      }
      expect(rw.range.map((r) => r.system).sort()).toEqual(systems);
      for (const r of rw.range) {
        expect(r.keys).toBe(10_000);
        expect(r.runs, r.system).toBeGreaterThan(0);
        expect(r.errors, r.system).toBe(0);
        expect(r.keysPerSec).toBeGreaterThan(0);
      }
      const md = readFileSync(join(out, 'latest.md'), 'utf8');
      expect(md).toContain('## Range and Watch');
      expect(md).toContain('**Check: ok**');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);

  it('runs the catch-up row: a node joins a loaded cluster, is promoted once caught up; time and bytes reported', async () => {
    const out = mkdtempSync(join(tmpdir(), 'replikit-bench-catchup-'));
    try {
      const code = await new Promise<string>((resolve) =>
        execFile('npm', ['run', '--silent', 'bench:quick', '--', '--catch-up-only', '--systems', 'replikit-cp', '--out', out], { cwd: root, timeout: 150_000 }, (err, _stdout, stderr) =>
          resolve(err ? `${err.code} ${stderr}` : 'ok'),
        ),
      );
      expect(code).toBe('ok');
      const latest = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { catchUp?: { cpKeys: number; servingMs: number; promotedMs: number; loopbackBytes: number } };
      expect(latest.catchUp?.cpKeys).toBe(20_000);
      expect(latest.catchUp!.promotedMs).toBeGreaterThanOrEqual(latest.catchUp!.servingMs);
      // At least the keys and values themselves crossed the wire: 25,000 × 108 bytes.
      expect(latest.catchUp!.loopbackBytes).toBeGreaterThan(25_000 * 108);
      expect(readFileSync(join(out, 'latest.md'), 'utf8')).toMatch(/## A new node catches up/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 160_000);

  /**
   * The security rows alone (--security-only): the same CP cluster plaintext and with mutual TLS
   * and --authz, both measured, no call failed, the ratios there.
   */
  it('runs the security rows: plaintext and mutual TLS side by side, with the ratios', async () => {
    const out = mkdtempSync(join(tmpdir(), 'replikit-bench-security-'));
    try {
      const code = await new Promise<string>((resolve) =>
        execFile('npm', ['run', '--silent', 'bench:quick', '--', '--security-only', '--out', out], { cwd: root, timeout: 150_000 }, (err, _stdout, stderr) =>
          resolve(err ? `${err.code} ${stderr}` : 'ok'),
        ),
      );
      expect(code).toBe('ok');
      type SecurityRow = { variant: string; op: string; concurrency: number; opsPerSec: number; p50Ms: number; p99Ms: number; serverCpuUsPerOp: number | null; errors: number };
      type SecurityRatio = { op: string; concurrency: number; opsPerSec: number | null; p50Ms: number | null; p99Ms: number | null; serverCpuUsPerOp: number | null };
      const latest = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as {
        rows: unknown[];
        security?: { rows: SecurityRow[]; ratios: SecurityRatio[]; problems: string[]; config: { authz: boolean; grants: number } };
      };
      // Only the section ran.
      expect(latest.rows).toEqual([]);
      const security = latest.security!;
      expect(security.problems).toEqual([]);
      expect(security.config.grants).toBeGreaterThanOrEqual(24);
      // With --authz (the run also checked that a stranger is refused).
      expect(security.config.authz).toBe(true);
      expect(security.rows.map((r) => `${r.variant}/${r.op}/${r.concurrency}`).sort()).toEqual(
        ['plaintext', 'mtls-authz'].flatMap((v) => ['put', 'get'].flatMap((op) => [1, 64].map((c) => `${v}/${op}/${c}`))).sort(),
      );
      for (const r of security.rows) {
        expect(r.opsPerSec, `${r.variant} ${r.op} ×${r.concurrency}`).toBeGreaterThan(0);
        expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
        expect(r.serverCpuUsPerOp).toBeGreaterThan(0);
        expect(r.errors).toBe(0);
      }
      expect(security.ratios.map((r) => `${r.op}/${r.concurrency}`).sort()).toEqual(['get/1', 'get/64', 'put/1', 'put/64']);
      for (const r of security.ratios) for (const v of [r.opsPerSec, r.p50Ms, r.p99Ms, r.serverCpuUsPerOp]) expect(v).toBeGreaterThan(0);
      const md = readFileSync(join(out, 'latest.md'), 'utf8');
      expect(md).toContain('## Security: mutual TLS and authorization against plaintext');
      expect(md).toContain('mtls-authz / plaintext');
      expect(md).toContain('**Check: ok**');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 160_000);

  it('refuses --no-watch-range with --watch-range-only', async () => {
    const message = await new Promise<string>((resolve) =>
      execFile('npm', ['run', '--silent', 'bench', '--', '--no-watch-range', '--watch-range-only'], { cwd: root, timeout: 60_000 }, (err, _stdout, stderr) =>
        resolve(err ? `${err.code} ${stderr}` : 'exit 0'),
      ),
    );
    expect(message).toMatch(/^2 .*exclude each other/s);
  }, 60_000);

  it('refuses --coordination-only with --no-coordination or --watch-range-only', async () => {
    const exit = (args: readonly string[]) =>
      new Promise<string>((resolve) =>
        execFile('npm', ['run', '--silent', 'bench', '--', ...args], { cwd: root, timeout: 60_000 }, (err, _stdout, stderr) => resolve(err ? `${err.code} ${stderr}` : 'exit 0')),
      );
    const [both, withWatch] = await Promise.all([exit(['--no-coordination', '--coordination-only']), exit(['--watch-range-only', '--coordination-only'])]);
    expect(both).toMatch(/^2 .*--no-coordination and --coordination-only exclude each other/s);
    expect(withWatch).toMatch(/^2 .*--watch-range-only and --coordination-only exclude each other/s);
  }, 60_000);
});
