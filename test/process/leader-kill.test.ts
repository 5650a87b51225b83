import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { CampaignResult } from '../../bench/failover-campaign.js';
import { BUILT } from '../support/cli.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'replikit-leader-kill-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

interface Run {
  /** The exit status; -1 when the run was killed (its signal in `signal`, e.g. at the timeout). */
  readonly code: number;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `npm run leader-kill -- ...args`, as the README documents it. */
function leaderKill(args: readonly string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve) =>
    execFile('npm', ['run', '--silent', 'leader-kill', '--', ...args], { cwd: root, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, signal: err?.signal ?? null, stdout, stderr }),
    ),
  );
}

describe.skipIf(!BUILT)('npm run leader-kill', () => {
  it('kills the replikit leader twice, measures both recoveries and loses no acknowledged write', async () => {
    // Four writers rather than the campaign's 16: the same steps for less CPU (about 15 s on 2 cores).
    const run = await leaderKill(['--kills', '2', '--systems', 'replikit', '--writers', '4', '--out', out], 55_000);
    expect(run.code, `signal ${run.signal}\n${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/^\| replikit \|\s+2 \|/m);
    expect(run.stdout).toContain('PASS');

    const report = JSON.parse(readFileSync(join(out, 'leader-kill-latest.json'), 'utf8')) as { results: CampaignResult[]; verdict: string[] };
    expect(report.verdict).toEqual([]);
    expect(report.results.map((r) => r.system)).toEqual(['replikit']);
    const [replikit] = report.results;
    expect(replikit!.kills).toHaveLength(2);
    for (const kill of replikit!.kills) {
      expect(kill.recoveryMs, `kill ${kill.kill}`).not.toBeNull();
      expect(kill.recoveryMs!).toBeLessThan(30_000);
      expect(kill.catchUpMs, `kill ${kill.kill}`).not.toBeNull();
    }
    // Each kill found the leader of its moment: a new election follows every kill, so no two share a term.
    expect(new Set(replikit!.kills.map((k) => k.term)).size).toBe(2);
    expect(replikit!.writes.acknowledged).toBeGreaterThan(0);
    expect(replikit!.readBack.lost).toBe(0);
    expect(replikit!.readBack.unreadable).toBe(0);
    expect(replikit!.stoppedEarly).toBeNull();
    expect(readFileSync(join(out, 'leader-kill-latest.md'), 'utf8')).toMatch(/# Leader-kill campaign[\s\S]*\| replikit \|\s+2 \|/);
    expect(existsSync(join(out, 'leader-kill-latest.log')), 'node logs are written only when something failed').toBe(false);
  }, 60_000);

  it('refuses bad flags with exit status 2 and says why', async () => {
    const [zero, word, unknownSystem, unknownFlag] = await Promise.all([
      leaderKill(['--kills', '0', '--out', out], 30_000),
      leaderKill(['--kills', 'many', '--out', out], 30_000),
      leaderKill(['--systems', 'replikit,zookeeper', '--out', out], 30_000),
      leaderKill(['--kill', '3', '--out', out], 30_000),
    ]);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain('--kills must be a positive integer, not "0"');
    expect(word.code).toBe(2);
    expect(word.stderr).toContain('--kills must be a positive integer, not "many"');
    expect(unknownSystem.code).toBe(2);
    expect(unknownSystem.stderr).toContain('--systems: unknown system "zookeeper"; known: replikit, etcd');
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toMatch(/Unknown option '--kill'/);
  }, 60_000);
});
