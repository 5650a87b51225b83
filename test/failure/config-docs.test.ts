import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_FAILURE_DETECTOR_CONFIG } from '../../src/failure/index.js';

/**
 * STYLE.md: "a test keeps docs and defaults equal". This reads config.ts as text, takes the JSDoc
 * of every field of `FailureDetectorConfig`, and checks it against the defaults object.
 */
const source = readFileSync(fileURLToPath(new URL('../../src/failure/config.ts', import.meta.url)), 'utf8');

function documentedFields(): Map<string, string> {
  const body = /export interface FailureDetectorConfig \{([\s\S]*?)\n\}/.exec(source)?.[1];
  if (body === undefined) throw new Error('config.ts has no FailureDetectorConfig interface');
  const fields = new Map<string, string>();
  for (const match of body.matchAll(/\/\*\*([\s\S]*?)\*\/\s*readonly (\w+): number;/g)) {
    fields.set(match[2] ?? '', match[1] ?? '');
  }
  // Every `readonly` line must have been matched with a doc comment in front of it.
  const declared = [...body.matchAll(/readonly (\w+):/g)].map((m) => m[1]);
  expect([...fields.keys()]).toEqual(declared);
  return fields;
}

describe('FailureDetectorConfig docs', () => {
  const fields = documentedFields();

  it('documents exactly the fields of the defaults object', () => {
    expect([...fields.keys()].sort()).toEqual(Object.keys(DEFAULT_FAILURE_DETECTOR_CONFIG).sort());
  });

  it.each(Object.entries(DEFAULT_FAILURE_DETECTOR_CONFIG))('%s: @default equals the value (%s)', (name, value) => {
    const doc = fields.get(name) ?? '';
    const tags = [...doc.matchAll(/@default\s+(\S+)/g)].map((m) => m[1]);
    expect(tags).toHaveLength(1);
    expect(Number((tags[0] ?? '').replaceAll('_', ''))).toBe(value);
  });

  it.each([...fields.keys()])('%s: says its unit and why, in sentences', (name) => {
    const doc = (fields.get(name) ?? '').replace(/^\s*\* ?/gm, '').replace(/@default.*/, '').trim();
    if (name.endsWith('Ms')) expect(doc).toMatch(/milliseconds/);
    if (name === 'maxSampleSize' || name === 'clockSampleWindow') expect(doc).toMatch(/a count/);
    // A reason is more than a restatement: at least three sentences.
    expect(doc.split(/[.:;]\s/).length).toBeGreaterThanOrEqual(3);
  });
});
