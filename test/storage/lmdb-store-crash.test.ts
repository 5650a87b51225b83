import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LmdbStore } from '../../src/storage/index.js';
import { KEYS, KEYSPACE, writeNumber } from './fixtures/lmdb-writer.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WRITER = fileURLToPath(new URL('./fixtures/lmdb-writer.ts', import.meta.url));

/** Acknowledged writes to wait for before each kill: enough that many commits have happened. */
const ACKS_BEFORE_KILL = [300, 1000, 2000];
/** Versions of each round start here times the round number, above anything an earlier round wrote. */
const ROUND_VERSION_STRIDE = 1_000_000;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'replikit-lmdb-crash-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** What one round of the writer acknowledged before it was killed: key → largest acked version. */
interface Round {
  readonly acked: Map<string, number>;
  readonly ackCount: number;
  readonly signal: NodeJS.Signals | null;
}

/** Starts the writer on `dir`, kills it with SIGKILL once `acksBeforeKill` writes are acknowledged. */
function runWriterUntilKilled(first: number, acksBeforeKill: number): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, String(first)], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Map<string, number>();
    let ackCount = 0;
    let pending = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      // The last piece is a line still being written (or empty): only whole lines count.
      pending = lines.pop()!;
      for (const line of lines) {
        const [key, version] = line.split(' ');
        acked.set(key!, Math.max(acked.get(key!) ?? 0, Number(version)));
        ackCount++;
      }
      if (ackCount >= acksBeforeKill && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code ?? signal} before the kill: ${stderr}`));
      else resolve({ acked, ackCount, signal });
    });
  });
}

describe('LmdbStore durability across a real crash (SIGKILL)', () => {
  it('keeps every acknowledged write, round after round', async () => {
    const everAcked = new Map<string, number>();
    for (const [round, acksBeforeKill] of ACKS_BEFORE_KILL.entries()) {
      const { acked, ackCount, signal } = await runWriterUntilKilled((round + 1) * ROUND_VERSION_STRIDE, acksBeforeKill);
      expect(signal).toBe('SIGKILL');
      expect(ackCount).toBeGreaterThanOrEqual(acksBeforeKill);
      for (const [key, version] of acked) everAcked.set(key, version);

      const store = LmdbStore.open(dir);
      try {
        const entries = store.entries(KEYSPACE);
        expect(entries.length).toBeLessThanOrEqual(KEYS);
        // Every record reads back whole: the version it carries says what it must hold.
        for (const entry of entries) expect(entry).toEqual(writeNumber(entry.version.hlc.wallMs));
        // Every acknowledged write is there, or a newer one to the same key.
        for (const [key, version] of everAcked) {
          const held = store.get(KEYSPACE, new TextEncoder().encode(key));
          expect(held, `acknowledged write ${version} of key ${key}`).toBeDefined();
          expect(held!.version.hlc.wallMs).toBeGreaterThanOrEqual(version);
        }
      } finally {
        await store.close();
      }
    }
  });
});
