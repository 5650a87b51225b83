import { execFile } from 'node:child_process';
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
        execFile('npm', ['run', '--silent', 'bench:quick', '--', '--systems', 'echo,replikit-cp,replikit-cp-embedded', '--no-etcd', '--out', out], { cwd: root, timeout: 120_000 }, (err, _stdout, stderr) =>
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
});
