import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BUILT } from '../support/cli.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const example = join(root, 'examples/embed.ts');
const tsxLoader = join(root, 'node_modules/tsx/dist/loader.mjs');

describe('the README', () => {
  it('shows the embedding example exactly as examples/embed.ts has it', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    expect(readme).toContain(readFileSync(example, 'utf8').trim());
  });

  it.skipIf(!BUILT)('embedding example runs: three nodes, one keyspace per policy', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'replikit-embed-'));
    try {
      const out = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, ['--import', tsxLoader, example], { cwd, timeout: 30_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        ),
      );
      expect(out).toContain('accounts/alice via n2: 100');
      expect(out).toMatch(/swapped: true at revision \d+/);
      expect(out).toContain('feed/post-1 via n3, same session: hello');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
