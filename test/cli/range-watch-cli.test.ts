import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplikitClient } from '../../src/client/index.js';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BIN, BUILT, cli } from '../support/cli.js';

let cluster: LocalCluster;
let client: ReplikitClient;
let target: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  if (!BUILT) return;
  cluster = await LocalCluster.create({ size: 3, memory: true });
  await cluster.startAll();
  target = `--target=${cluster.address('n1')}`;
  client = await ReplikitClient.connect({ endpoints: cluster.ids.map((id) => cluster.address(id)) });
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  client?.close();
  await cluster?.stop();
});

/** `replikit watch ...` as a child process: its stdout lines as they come, its stderr, its exit. */
function watchProcess(args: readonly string[]) {
  const child = spawn(process.execPath, [BIN, 'watch', target, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: string[] = [];
  let stderr = '';
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    const parts = out.split('\n');
    out = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exit,
    get stderr() {
      return stderr;
    },
    async until(done: () => boolean, what: string, ms = 15_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stdout ${JSON.stringify(lines)}, stderr ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

describe.skipIf(!BUILT)('replikit get --prefix, watch and compact', () => {
  it('get --prefix prints one line per key, pages, limits, reads a past revision, and plain get is unchanged', async () => {
    const ks = client.keyspace('default');
    const first = await ks.put('p/a', '1');
    await ks.put('p/b', '2');
    await ks.put('p/c', 'three words');
    await ks.put('p/a', '10');
    await ks.put('pz', 'outside');

    const all = await cli(['get', target, '--prefix', 'p/']);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toBe('p/a 10\np/b 2\np/c three words\n');

    const limited = await cli(['get', target, '--prefix', '--limit', '2', 'p/']);
    expect(limited.stdout).toBe('p/a 10\np/b 2\n');

    const past = await cli(['get', target, '--prefix', `--rev=${first.revision}`, 'p/']);
    expect(past.code, past.stderr).toBe(0);
    expect(past.stdout).toBe('p/a 1\n');

    const json = await cli(['get', target, '--prefix', '--json', '--consistency', 'serializable', 'p/']);
    expect(json.code, json.stderr).toBe(0);
    const objects = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objects.map((o) => [o['key'], o['value']])).toEqual([['p/a', '10'], ['p/b', '2'], ['p/c', 'three words']]);
    expect(objects[0]).toMatchObject({ createRevision: first.revision, version: 2, modRevision: expect.any(Number), revision: expect.any(Number) });

    const none = await cli(['get', target, '--prefix', 'nothing/']);
    expect(none).toMatchObject({ code: 0, stdout: '' });

    // Without --prefix, get is the same as ever: the value alone, exit 3 when absent.
    expect(await cli(['get', target, 'p/a'])).toMatchObject({ code: 0, stdout: '10\n' });
    expect((await cli(['get', target, 'p/'])).code).toBe(3);
  });

  it('watch prints each change as it happens and exits 0 on SIGTERM and SIGINT', async () => {
    const ks = client.keyspace('default');
    const w = watchProcess(['--prefix', 'w/']);
    await w.until(() => w.stderr.includes('watching'), 'the watch to be created');
    expect(w.stderr).toMatch(/watching "w\/" \(prefix\) on 127\.0\.0\.1:\d+: changes after revision \d+/);
    const r1 = (await ks.put('w/a', '1')).revision;
    await ks.put('x/outside', 'no');
    const r2 = (await ks.put('w/b', 'two')).revision;
    const r3 = (await ks.delete('w/a')).revision;
    await w.until(() => w.lines.length >= 3, 'three events');
    w.child.kill('SIGTERM');
    expect(await w.exit).toBe(0);
    expect(w.lines).toEqual([`PUT w/a 1 ${r1}`, `PUT w/b two ${r2}`, `DELETE w/a ${r3}`]);

    // --rev replays from a past revision; --json prints one object per event.
    const j = watchProcess(['--prefix', '--json', `--rev=${r1}`, 'w/']);
    await j.until(() => j.lines.length >= 3, 'three replayed events');
    j.child.kill('SIGINT');
    expect(await j.exit).toBe(0);
    expect(j.lines.map((l) => JSON.parse(l))).toEqual([
      { type: 'PUT', key: 'w/a', value: '1', revision: r1 },
      { type: 'PUT', key: 'w/b', value: 'two', revision: r2 },
      { type: 'DELETE', key: 'w/a', value: '', revision: r3 },
    ]);

    // A single key, without --prefix.
    const k = watchProcess([`--rev=${r1}`, 'w/b']);
    await k.until(() => k.lines.length >= 1, 'one event');
    k.child.kill('SIGTERM');
    expect(await k.exit).toBe(0);
    expect(k.lines).toEqual([`PUT w/b two ${r2}`]);
  });

  it('compact discards history: reads and watches below it fail with OUT_OF_RANGE', async () => {
    const ks = client.keyspace('default');
    const old = (await ks.put('c/k', 'old')).revision;
    await ks.put('c/k', 'middle');
    const current = (await ks.put('c/k', 'new')).revision;
    const res = await cli(['compact', target, String(current - 1)]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe(`OK history kept after revision ${current - 1} (revision ${current})\n`);
    const json = await cli(['compact', target, '--json', String(current - 1)]);
    expect(JSON.parse(json.stdout)).toMatchObject({ compactRevision: String(current - 1) });

    const past = await cli(['get', target, '--prefix', `--rev=${old}`, 'c/']);
    expect(past.code).toBe(1);
    expect(past.stderr).toMatch(/^replikit get: OUT_OF_RANGE: .*compacted/);
    // The state at the compaction revision itself can still be read.
    expect(await cli(['get', target, '--prefix', `--rev=${current - 1}`, 'c/'])).toMatchObject({ code: 0, stdout: 'c/k middle\n' });

    const watch = await cli(['watch', target, '--prefix', `--rev=${old}`, 'c/']);
    expect(watch.code).toBe(1);
    expect(watch.stderr).toMatch(/replikit watch: OUT_OF_RANGE: .*compacted/);

    const future = await cli(['compact', target, String(current + 1000)]);
    expect(future.code).toBe(1);
    expect(future.stderr).toContain('INVALID_ARGUMENT');
  });

  it('refuses bad flags with exit status 2, naming the flag', async () => {
    const t = '--target=127.0.0.1:1';
    const cases: [string[], string][] = [
      [['watch', t, '--rev', '0', 'k'], '--rev must be a positive integer, not "0"'],
      [['watch', t, '--rev', 'abc', 'k'], '--rev must be a positive integer, not "abc"'],
      [['watch', t, '--rev=-3', 'k'], '--rev must be a positive integer, not "-3"'],
      [['watch', t], 'watch takes KEY; got 0 argument(s)'],
      [['watch', t, 'a', 'b'], 'watch takes KEY; got 2 argument(s)'],
      [['watch', t, ''], 'KEY is empty'],
      [['watch', t, '--limit', '3', 'k'], 'unknown flag --limit'],
      [['get', t, '--prefix', '--limit', '0', 'k'], '--limit must be a positive integer, not "0"'],
      [['get', t, '--prefix', '--limit', 'ten', 'k'], '--limit must be a positive integer, not "ten"'],
      [['get', t, '--prefix', '--rev', '1.5', 'k'], '--rev must be a positive integer, not "1.5"'],
      [['get', t, '--limit', '3', 'k'], '--limit is a flag of get --prefix'],
      [['get', t, '--rev', '3', 'k'], '--rev is a flag of get --prefix'],
      [['get', t, '--prefix', '--session', 'AA==', 'k'], '--session is not used with --prefix'],
      [['put', t, '--prefix', 'k', 'v'], '--prefix is a flag of get'],
      [['compact', t], 'compact takes REVISION; got 0 argument(s)'],
      [['compact', t, 'abc'], 'REVISION must be a positive integer, not "abc"'],
      [['compact', t, '0'], 'REVISION must be a positive integer, not "0"'],
      [['compact', t, '--rev', '3'], 'unknown flag --rev'],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    results.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(message);
    });
    const help = await cli(['--help']);
    expect(help.stdout).toMatch(/\n {2}watch\n/);
    expect(help.stdout).toMatch(/\n {2}compact\n/);
    expect((await cli(['watch', '--help'])).stdout).toContain('usage: replikit watch --target HOST:PORT');
    expect((await cli(['get', '--help'])).stdout).toContain('[--prefix [--limit N] [--rev R]]');
  });
});
