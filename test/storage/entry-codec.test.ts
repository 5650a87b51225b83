import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VectorClock } from '../../src/clock/index.js';
import { decodeEntry, encodeEntry, ENTRY_FORMAT } from '../../src/storage/entry-codec.js';
import type { Entry } from '../../src/storage/index.js';
import { makeEntry } from './support/make-entry.js';

const nodeIdArbitrary = fc.string({ unit: 'grapheme', maxLength: 12 });

const entryArbitrary: fc.Arbitrary<Entry> = fc
  .record(
    {
      key: fc.uint8Array({ maxLength: 16 }),
      value: fc.uint8Array({ maxLength: 64 }),
      wallMs: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      logical: fc.integer({ min: 0, max: 0xffff_ffff }),
      nodeId: nodeIdArbitrary,
      tombstone: fc.boolean(),
      dependencies: fc.option(
        fc.dictionary(nodeIdArbitrary, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), { maxKeys: 5 }),
        { nil: undefined },
      ),
      originSequence: fc.option(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), { nil: undefined }),
    },
    { requiredKeys: ['key', 'value', 'wallMs', 'logical', 'nodeId', 'tombstone'] },
  )
  .map(({ dependencies, ...rest }) =>
    makeEntry({ ...rest, ...(dependencies === undefined ? {} : { dependencies: VectorClock.from(dependencies) }) }),
  );

describe('entry codec', () => {
  it('round-trips every entry, causal fields included', () => {
    fc.assert(
      fc.property(entryArbitrary, (entry) => {
        const decoded = decodeEntry(entry.key, encodeEntry(entry));
        expect(decoded).toEqual(entry);
        expect('dependencies' in decoded).toBe(entry.dependencies !== undefined);
        expect('originSequence' in decoded).toBe(entry.originSequence !== undefined);
        if (entry.dependencies !== undefined) {
          expect(decoded.dependencies).toBeInstanceOf(VectorClock);
          expect(decoded.dependencies!.compare(entry.dependencies)).toBe('equal');
        }
      }),
    );
  });

  it('adds a small fixed overhead to the value', () => {
    const entry = makeEntry({ key: 'k', wallMs: 1_732_600_000_000, logical: 3, nodeId: 'n1', value: new Uint8Array(100) });
    // 14 header bytes, 2 + 2 for the node id, then the value.
    expect(encodeEntry(entry).length).toBe(100 + 18);
  });

  it('copies out of the buffer it decodes', () => {
    const entry = makeEntry({ key: 'k', wallMs: 5, value: 'abc' });
    const bytes = encodeEntry(entry);
    const decoded = decodeEntry(entry.key, bytes);
    bytes.fill(0);
    expect(decoded).toEqual(entry);
  });

  it('refuses a format it does not know', () => {
    const bytes = encodeEntry(makeEntry({ key: 'k', wallMs: 5 }));
    bytes[0] = ENTRY_FORMAT + 1;
    expect(() => decodeEntry(new Uint8Array(), bytes)).toThrow(/format/);
  });

  it('refuses fields it cannot store', () => {
    expect(() => encodeEntry(makeEntry({ key: 'k', wallMs: 5, logical: 2 ** 32 }))).toThrow(RangeError);
    expect(() => encodeEntry(makeEntry({ key: 'k', wallMs: 5, nodeId: 'x'.repeat(0x10000) }))).toThrow(RangeError);
  });
});
