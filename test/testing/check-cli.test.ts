import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** `replikit check` as a user runs it: bin/replikit.js over the build in dist/. */
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const built = path.join(repoRoot, 'dist/cli/commands/check.js');

const ev = (process: number, type: string, f: string, value: unknown, time: number): string =>
  JSON.stringify({ process, type, f, key: 'x', value, time });

/** A write of 1, then a read: of 1 when `good`, else of 2. */
const writeThenRead = (good: boolean): string[] => [
  ev(1, 'invoke', 'write', 1, 0),
  ev(1, 'ok', 'write', 1, 1),
  ev(2, 'invoke', 'read', null, 2),
  ev(2, 'ok', 'read', good ? 1 : 2, 3),
];

let dir = '';
function file(name: string, lines: readonly string[]): string {
  const p = path.join(dir, name);
  writeFileSync(p, lines.map((l) => `${l}\n`).join(''));
  return p;
}

function check(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/replikit.js', 'check', ...args], { cwd: repoRoot, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  // `npm test` builds first; a bare `npx vitest run` on a fresh clone builds here. tsc emits even
  // when some other part of the tree does not type-check, so only the output file is required.
  if (!existsSync(built)) {
    const tsc = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot, encoding: 'utf8' });
    if (!existsSync(built)) throw new Error(`the build did not produce ${built}:\n${tsc.stdout}${tsc.stderr}`);
  }
  dir = mkdtempSync(path.join(tmpdir(), 'replikit-check-'));
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

const noStack = (stderr: string) => expect(stderr).not.toContain('    at ');

describe('replikit check', () => {
  it('exits 0 and says linearizable for a linearizable history', () => {
    const good = file('good.jsonl', writeThenRead(true));
    const r = check(good);
    expect(r.stdout).toBe(`${good}\tlinearizable\n`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('exits 1, says not linearizable and explains on stderr', () => {
    const bad = file('bad.jsonl', writeThenRead(false));
    const good = file('good2.jsonl', [ev(1, 'invoke', 'read', null, 0), ev(1, 'ok', 'read', null, 1)]);
    const r = check(good, bad);
    expect(r.stdout).toBe(`${good}\tlinearizable\n${bad}\tnot linearizable\n`);
    expect(r.stderr).toContain(`${bad}: key "x" is not linearizable. Why: read by process 2 at [2, 3] returned 2 (line 3)`);
    expect(r.status).toBe(1);

    const explained = check('--explain', bad);
    expect(explained.stderr).toContain('Longest linearizable prefix found: 1 operation');
    expect(explained.status).toBe(1);
  });

  it('reads Jepsen logs, chosen by the .log suffix or by --format', () => {
    const lines = [
      'INFO  jepsen.util - 0\t:invoke\t:write\t3',
      'INFO  jepsen.util - 0\t:ok\t:write\t3',
      'INFO  jepsen.util - 1\t:invoke\t:read\tnil',
      'INFO  jepsen.util - 1\t:ok\t:read\t4',
    ];
    const log = file('etcd.log', lines);
    const txt = file('etcd.txt', lines);
    expect(check(log)).toMatchObject({ status: 1, stdout: `${log}\tnot linearizable\n` });
    expect(check('--format', 'jepsen', txt)).toMatchObject({ status: 1, stdout: `${txt}\tnot linearizable\n` });
    // Read as JSON Lines, the same file is malformed.
    expect(check('--format=jsonl', log).stderr).toContain(`${log}:1: malformed JSON`);
  });

  it.each([
    ['a malformed line', [ev(1, 'invoke', 'write', 1, 0), '{"process": 1, "type":'], 2, /malformed JSON/],
    [
      'a completion without an invocation',
      [ev(1, 'invoke', 'write', 1, 0), ev(2, 'ok', 'read', 1, 1)],
      2,
      /without an invocation/,
    ],
    ['an unknown op type', [ev(1, 'invoke', 'write', 1, 0), ev(1, 'invoke', 'append', 1, 1)], 2, /unknown "f" "append"/],
    ['an unknown event type', [ev(1, 'start', 'write', 1, 0)], 1, /unknown "type" "start"/],
  ])('exits 2 on %s, naming the file and line, without a stack trace', (name, lines, line, message) => {
    const p = file(`${name.replace(/ /g, '-')}.jsonl`, lines);
    const r = check(p);
    expect(r.stderr).toContain(`${p}:${line}: `);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
    noStack(r.stderr);
    expect(r.status).toBe(2);
  });

  it('exits 2 on a file that does not exist, even when another is not linearizable', () => {
    const missing = path.join(dir, 'missing.jsonl');
    const bad = file('bad3.jsonl', writeThenRead(false));
    const r = check(bad, missing);
    expect(r.stderr).toContain(`${missing}: cannot read`);
    noStack(r.stderr);
    expect(r.status).toBe(2);
  });

  it('exits 2 with unknown when the time budget runs out', () => {
    // Twenty concurrent writes and a read of a value none wrote: far too many orders to try in 0 ms.
    const lines: string[] = [];
    for (let p = 0; p < 20; p++) lines.push(ev(p, 'invoke', 'write', p, 0));
    lines.push(ev(99, 'invoke', 'read', null, 1), ev(99, 'ok', 'read', 'never', 2));
    for (let p = 0; p < 20; p++) lines.push(ev(p, 'ok', 'write', p, 3));
    const hard = file('hard.jsonl', lines);
    const r = check('--timeout-ms', '0', hard);
    expect(r.stdout).toBe(`${hard}\tunknown\n`);
    expect(r.stderr).toContain('time budget');
    expect(r.status).toBe(2);
  });

  it('exits 2 on usage mistakes', () => {
    expect(check().status).toBe(2);
    const r = check('--format', 'csv', 'x.jsonl');
    expect(r.stderr).toContain('--format must be jsonl or jepsen');
    expect(r.status).toBe(2);
    expect(check('--timeout-ms', 'soon', 'x.jsonl').status).toBe(2);
  });
});
