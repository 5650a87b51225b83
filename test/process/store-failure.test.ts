import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, BUILT } from '../support/cli.js';
import { freePorts } from '../support/free-ports.js';
import { statusOf, TestKvClient } from '../support/kv-client.js';

/**
 * A real disk that fails: `serve`'s data directory on a 2 MiB tmpfs, filled until LMDB's commit
 * fails (EIO from the full file system). The node must stop acknowledging at the first failure
 * (fail-stop: never retry a failed sync and carry on), say so in a log line and in health, and
 * exit non-zero. Mounting needs root (as on the CI machine); elsewhere the test skips and says why.
 */
const mountPoint = mkdtempSync(join(tmpdir(), 'replikit-full-disk-'));
const mounted = BUILT && process.getuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountPoint]).status === 0;
if (!mounted) console.warn(`the full-disk test is skipped: it needs root to mount a small tmpfs (mount -t tmpfs -o size=2m tmpfs ${mountPoint})`);
afterAll(() => {
  if (mounted) spawnSync('umount', [mountPoint]);
  rmSync(mountPoint, { recursive: true, force: true });
});

describe.skipIf(!mounted)('serve on a disk that fails', () => {
  it('stops acknowledging at the first failed commit, logs it, reports NOT_SERVING and exits 1', async () => {
    const [port] = await freePorts(1);
    const child = spawn(process.execPath, [BIN, 'serve', '--id', 'n1', '--listen', `127.0.0.1:${port}`, '--data-dir', join(mountPoint, 'n1')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => d.includes(' ready on ') && resolve());
      child.once('exit', () => reject(new Error(`serve exited before it was ready: ${stderr}`)));
    });
    const client = new TestKvClient(`127.0.0.1:${port}`);
    const outcomes: string[] = [];
    for (let i = 0; i < 40; i++) {
      try {
        await client.put(`k${i}`, Buffer.alloc(200_000, i), { timeoutMs: 3_000 });
        outcomes.push('ok');
      } catch (err: unknown) {
        outcomes.push(statusOf(err));
      }
    }
    client.close();
    const code = await exited;
    const firstFailure = outcomes.findIndex((o) => o !== 'ok');
    console.log(`full disk: ${firstFailure} puts acknowledged, then ${outcomes.slice(firstFailure).join(', ').slice(0, 160)}; exit ${code}`);
    expect(firstFailure).toBeGreaterThan(0);
    // Nothing is acknowledged after the first failure.
    expect(outcomes.slice(firstFailure)).not.toContain('ok');
    expect(code).toBe(1);
    expect(stderr).toMatch(/its store failed .* it acknowledges nothing more and must be restarted/);
    expect(stderr).toMatch(/"health":"NOT_SERVING".*stopped: its store failed/);
    expect(stderr).toContain('replikit serve: the store failed');
  }, 60_000);
});
