import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../../src/cli/local-cluster.js';
import { BUILT, cli } from '../support/cli.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const children: ChildProcess[] = [];
const dataDir = mkdtempSync(join(tmpdir(), 'replikit-readme-'));
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  // The commands run as written, so the nodes keep their data in the default ./replikit-data/ID.
  rmSync(dataDir, { recursive: true, force: true });
});

/** A command line split as a POSIX shell would, for single-quoted words. */
function shellWords(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

/** The README's "A cluster of three by hand" commands, run as written but on free ports. */
describe.skipIf(!BUILT)('README commands', () => {
  it('the three-node cluster by hand works as documented', async () => {
    const readme = readFileSync(`${root}README.md`, 'utf8');
    const block = /A cluster of three by hand:\n\n```sh\n([\s\S]*?)```/.exec(readme);
    expect(block, 'README section "A cluster of three by hand"').not.toBeNull();
    const ports = await freePorts(3);
    const lines = block![1]!
      .trim()
      .split('\n')
      .map((line) => line.replace(/700([123])/g, (_, n: string) => String(ports[Number(n) - 1])));
    const serves = lines.filter((l) => l.includes(' serve '));
    const clients = lines.filter((l) => !l.includes(' serve '));
    expect(serves).toHaveLength(3);
    await Promise.all(
      serves.map(async (line) => {
        const args = line.replace(/ &$/, '').split(/\s+/).slice(2); // drop "node bin/replikit.js"
        const child = spawn(process.execPath, [`${root}bin/replikit.js`, ...args], { cwd: dataDir, stdio: ['ignore', 'pipe', 'ignore'] });
        children.push(child);
        await new Promise<void>((resolve, reject) => {
          child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready on') && resolve());
          child.once('exit', (code) => reject(new Error(`${line} exited with ${code}`)));
        });
      }),
    );
    const outputs: string[] = [];
    for (const line of clients) {
      const result = await cli(line.split(/\s+/).slice(2));
      expect(result.code, `${line}\n${result.stderr}`).toBe(0);
      outputs.push(result.stdout);
    }
    expect(outputs[1]!.trim()).toBe('hello');
    expect(outputs[2]).toMatch(/default\s+cp\s+3\/3/);
    expect(existsSync(join(dataDir, 'replikit-data/n1/data.mdb'))).toBe(true); // the LMDB default

    // The compare-and-set block, on the same cluster: each line's exit status as its comment says.
    const casBlock = /serializable get answers[^`]*```sh\n([\s\S]*?)```/.exec(readme);
    expect(casBlock, 'README compare-and-set block').not.toBeNull();
    const casOutputs: string[] = [];
    for (const raw of casBlock![1]!.trim().split('\n')) {
      const [command, comment] = raw.split(/\s+# /) as [string, string | undefined];
      const line = command.replace(/700([123])/g, (_, n: string) => String(ports[Number(n) - 1]));
      const expected = Number(/exit (\d+)/.exec(comment ?? '')?.[1] ?? 0);
      const result = await cli(shellWords(line).slice(2));
      expect(result.code, `${line}\n${result.stderr}`).toBe(expected);
      if (comment !== undefined) expect(result.stderr).toContain(comment.replace(/^exit \d+: /, ''));
      casOutputs.push(result.stdout);
    }
    expect(casOutputs[3]).toMatch(/^SUCCEEDED revision \d+\nput OK revision \d+\nput OK revision \d+/);
    expect(casOutputs[4]!.trim()).toBe('2');
  });
});
