import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BIN, BUILT } from '../support/cli.js';

function runDemo(onLine?: (line: string, kill: () => void) => void): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      for (const line of chunk.split('\n')) onLine?.(line, () => child.kill('SIGINT'));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

/** `npm start` is `replikit demo`: the Quickstart's first line, run as a newcomer would. */
describe.skipIf(!BUILT)('npm start (replikit demo)', () => {
  it('shows the cluster survive one crash, refuse fast without a majority, and keep every acknowledged write', async () => {
    const { code, out } = await runDemo();
    expect(code, out).toBe(0);
    const refused = /refused in ([\d.]+) ms: UNAVAILABLE/.exec(out);
    expect(refused, out).not.toBeNull();
    expect(Number(refused![1])).toBeLessThan(1_000);
    expect(out.match(/\(all acknowledged writes present\)/g)).toHaveLength(3);
    expect(out).toContain('done: every acknowledged write survived; cleaning up');
    const dir = /data directories under (\S+)/.exec(out)![1]!;
    expect(existsSync(dir)).toBe(false);
  }, 60_000);

  it('cleans up on Ctrl-C', async () => {
    const { code, out } = await runDemo((line, kill) => {
      if (line.startsWith('2. put city-1')) kill();
    });
    expect(code).toBe(130);
    expect(out).toContain('interrupted: stopping the cluster and removing its data');
    const dir = /data directories under (\S+)/.exec(out)![1]!;
    expect(existsSync(dir)).toBe(false);
    // No serve process of that cluster is left running (their command lines name its folder).
    await new Promise((resolve) => setTimeout(resolve, 200));
    const leftovers = spawnSync('pgrep', ['-f', dir], { encoding: 'utf8' }).stdout.trim();
    expect(leftovers).toBe('');
  }, 60_000);
});
