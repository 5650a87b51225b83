import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/replikit.js', import.meta.url));

/** Real-process tests run the built CLI; `npm test` builds first. */
export const BUILT = existsSync(fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url)));
if (!BUILT) console.warn('dist/ is missing: run `npm run build` (npm test does) for the real-process tests');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node bin/replikit.js ...args` and collects its exit status and output. */
export function cli(args: readonly string[], timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}
