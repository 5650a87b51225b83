import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkLinearizability, parseJepsenLog } from '../../src/testing/index.js';

/**
 * The checker's first real exam: 102 histories Jepsen recorded against etcd, with known verdicts.
 * They live beside the repository, not in it (they are not ours to ship), so a clone without
 * them skips this suite.
 */
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dataDir = path.resolve(repoRoot, '../shared/testdata/jepsen-etcd');
const verdictsFile = path.join(dataDir, 'VERDICTS.tsv');
const present = existsSync(verdictsFile);
if (!present) {
  console.log(`jepsen-etcd: skipped, ${verdictsFile} is absent (the Jepsen etcd histories are not part of the repository)`);
}

/** Generous for a history of under 200 lines; each one takes milliseconds. */
const TIMEOUT_MS = 10_000;

describe.skipIf(!present)('Jepsen etcd histories', () => {
  const verdicts = present
    ? readFileSync(verdictsFile, 'utf8')
        .split('\n')
        .filter((row) => row.trim() !== '')
        .map((row) => row.split('\t') as [string, string])
    : [];

  it('lists 102 histories: 23 linearizable, 79 not', () => {
    expect(verdicts).toHaveLength(102);
    expect(verdicts.filter(([, v]) => v === 'linearizable')).toHaveLength(23);
    expect(verdicts.filter(([, v]) => v === 'not-linearizable')).toHaveLength(79);
  });

  it('matches the known verdict on every history', () => {
    const got = verdicts.map(([file]) => {
      const { operations } = parseJepsenLog(readFileSync(path.join(dataDir, file), 'utf8'), file);
      expect(operations.length, file).toBeGreaterThan(0);
      const result = checkLinearizability(operations, { timeoutMs: TIMEOUT_MS });
      if (result.verdict === 'not-linearizable') {
        // Every violation is explained on the register's one key.
        expect(result.keys[0]?.violation?.message, file).toMatch(/^key "" is not linearizable/);
      }
      return [file, result.verdict];
    });
    expect(got).toEqual(verdicts);
    expect(got.filter(([, v]) => v === 'linearizable')).toHaveLength(23);
    expect(got.filter(([, v]) => v === 'not-linearizable')).toHaveLength(79);
  });
});
