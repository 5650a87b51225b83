import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readAuthzFile } from '../../src/auth/authz-file.js';
import {
  AuthzFileError,
  globMatches,
  MAX_AUTHZ_FILE_BYTES,
  MAX_GRANTS,
  parseAuthzRules,
  rangeWithinPrefix,
  satisfies,
  type Need,
} from '../../src/auth/authz-rules.js';
import type { CertificateIdentity } from '../../src/interceptors/certificate-identity.js';

const EXAMPLE = `# replikit authz file: one grant per line; '#' starts a comment; blank lines are ignored.
# allow IDENTITY PERMISSIONS KEYSPACE [KEY-PREFIX]
allow client:reporting read metrics
allow client:app-* read,write orders user/

allow client:ops admin *   # the operators
allow * read public
allow node:n9 write audit
`;

const client = (name: string, clusterId = 'c1'): CertificateIdentity => ({ kind: 'client', clusterId, name, uri: `spiffe://${clusterId}/client/${name}` });
const node = (nodeId: string): CertificateIdentity => ({ kind: 'node', clusterId: 'c1', nodeId, uri: `spiffe://c1/node/${nodeId}` });
const key = (permission: 'read' | 'write', keyspace: string, k: string): Need => ({ kind: 'key', permission, keyspace, key: Buffer.from(k) });

function parseError(text: string): AuthzFileError {
  try {
    parseAuthzRules(text, 'authz.txt');
  } catch (err: unknown) {
    expect(err).toBeInstanceOf(AuthzFileError);
    return err as AuthzFileError;
  }
  throw new Error(`parsed: ${JSON.stringify(text)}`);
}

describe('parseAuthzRules: the format', () => {
  it('parses the example: comments, blank lines, wildcards, several permissions, a key prefix', () => {
    const rules = parseAuthzRules(EXAMPLE, 'authz.txt');
    expect(rules.source).toBe('authz.txt');
    expect(rules.grants.map((g) => g.line)).toEqual([3, 4, 6, 7, 8]);
    const [reporting, app, ops, anyone, n9] = rules.grants;
    expect(reporting!.identity).toEqual({ kind: 'client', pattern: 'reporting' });
    expect([...reporting!.permissions]).toEqual(['read']);
    expect(reporting!.keyPrefix).toBeUndefined();
    expect([...app!.permissions]).toEqual(['read', 'write']);
    expect(app!.keyPrefix).toEqual(Buffer.from('user/'));
    expect(ops!.keyspace).toBe('*');
    expect(anyone!.identity).toEqual({ kind: 'any-client' });
    expect(n9!.identity).toEqual({ kind: 'node', pattern: 'n9' });
  });

  it('takes an empty file (no grants: every client is refused) and CRLF line ends', () => {
    expect(parseAuthzRules('', 'f').grants).toHaveLength(0);
    expect(parseAuthzRules('# nothing\n\n', 'f').grants).toHaveLength(0);
    expect(parseAuthzRules('allow client:a read ks\r\nallow client:b write ks\r\n', 'f').grants.map((g) => g.keyspace)).toEqual(['ks', 'ks']);
  });

  it.each([
    ['allow client:a read ks\nallow client:b read,delete ks', 2, 'unknown permission "delete" (read, write, admin)'],
    ['deny client:a read ks', 1, 'unknown verb "deny"'],
    ['\n\nallow client:a read', 3, 'missing KEYSPACE'],
    ['allow client:a', 1, 'missing PERMISSIONS and KEYSPACE'],
    ['allow user:a read ks', 1, 'bad identity "user:a"'],
    ['allow client: read ks', 1, 'bad identity "client:"'],
    ['allow client:a/b read ks', 1, 'bad identity "client:a/b"'],
    ['allow app read ks', 1, 'bad identity "app"'],
    ['allow client:a read,,write ks', 1, 'empty permission'],
    ['allow client:a read ks/x', 1, 'bad keyspace "ks/x"'],
    ['allow client:a read ks p extra', 1, 'too many'],
    ['allow client:ops admin orders', 1, 'its keyspace must be *'],
    ['allow client:ops admin * user/', 1, 'it takes no key prefix'],
    [`allow client:a read ks ${'x'.repeat(1025)}`, 1, 'at most 1024 (MAX_KEY_PREFIX_BYTES'],
  ])('refuses %j: line %i, %s', (text, line, problem) => {
    const err = parseError(text);
    expect(err.line).toBe(line);
    expect(err.message).toContain(`authz.txt line ${line}: `);
    expect(err.message).toContain(problem);
  });

  it('names the exact message format of an unknown permission', () => {
    expect(parseError('# c\n\nallow client:a delete ks').message).toBe('authz.txt line 3: unknown permission "delete" (read, write, admin)');
  });

  it('refuses more than MAX_GRANTS grants, naming the first line beyond, and a file over MAX_AUTHZ_FILE_BYTES', () => {
    const lines = Array.from({ length: MAX_GRANTS }, (_, i) => `allow client:c${i} read ks`);
    expect(parseAuthzRules(lines.join('\n'), 'f').grants).toHaveLength(MAX_GRANTS);
    const err = parseError([...lines, 'allow client:one-more read ks'].join('\n'));
    expect(err.line).toBe(MAX_GRANTS + 1);
    expect(err.message).toContain(`more than ${MAX_GRANTS} grants (MAX_GRANTS)`);
    const big = parseError(`#${'x'.repeat(MAX_AUTHZ_FILE_BYTES)}`);
    expect(big.line).toBeUndefined();
    expect(big.message).toContain('MAX_AUTHZ_FILE_BYTES');
  });

  it('readAuthzFile reads a file, names the path in its errors, and refuses a huge file without parsing it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'replikit-authz-'));
    try {
      const path = join(dir, 'authz.txt');
      writeFileSync(path, EXAMPLE);
      expect(readAuthzFile(path).grants).toHaveLength(5);
      writeFileSync(path, 'allow client:a read ks\nallow client:a reed ks\n');
      expect(() => readAuthzFile(path)).toThrow(`${path} line 2: unknown permission "reed" (read, write, admin)`);
      writeFileSync(path, Buffer.alloc(MAX_AUTHZ_FILE_BYTES + 10, 0x23));
      expect(() => readAuthzFile(path)).toThrow(/MAX_AUTHZ_FILE_BYTES/);
      expect(() => readAuthzFile(join(dir, 'missing.txt'))).toThrow(/missing\.txt: cannot read it/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('matching: wildcards, prefixes, deny by default', () => {
  const rules = parseAuthzRules(EXAMPLE, 'authz.txt');

  it('globs: * matches any run, the empty one too; nothing else is special', () => {
    expect(globMatches('app-*', 'app-1')).toBe(true);
    expect(globMatches('app-*', 'app-')).toBe(true);
    expect(globMatches('app-*', 'ap')).toBe(false);
    expect(globMatches('*-prod-*', 'eu-prod-7')).toBe(true);
    expect(globMatches('*-prod-*', 'eu-test-7')).toBe(false);
    expect(globMatches('a.c', 'abc')).toBe(false);
    expect(globMatches('*', '')).toBe(true);
    expect(globMatches('a*a*a*a*a*a*b', 'a'.repeat(60))).toBe(false); // no exponential backtracking
  });

  it('grants a client what its lines say, and nothing else', () => {
    const reporting = rules.grantsFor(client('reporting'));
    expect(satisfies(reporting, key('read', 'metrics', 'cpu'))).toBe(true);
    expect(satisfies(reporting, key('write', 'metrics', 'cpu'))).toBe(false); // read only
    expect(satisfies(reporting, key('read', 'orders', 'user/1'))).toBe(false); // another keyspace
    expect(satisfies(reporting, key('read', 'public', 'anything'))).toBe(true); // allow * read public
    expect(satisfies(reporting, { kind: 'cluster-admin' })).toBe(false);
    expect(satisfies(reporting, { kind: 'any-grant' })).toBe(true);
  });

  it('applies key prefixes to keys and ranges', () => {
    const app = rules.grantsFor(client('app-7'));
    expect(satisfies(app, key('write', 'orders', 'user/42'))).toBe(true);
    expect(satisfies(app, key('write', 'orders', 'admin/42'))).toBe(false);
    expect(satisfies(app, key('read', 'orders', 'user'))).toBe(false);
    const range = (start: string, end: string | null): Need => ({ kind: 'range', permission: 'read', keyspace: 'orders', start: Buffer.from(start), end: end === null ? null : Buffer.from(end) });
    expect(satisfies(app, range('user/', 'user0'))).toBe(true); // exactly the prefix
    expect(satisfies(app, range('user/a', 'user/b'))).toBe(true);
    expect(satisfies(app, range('user/', 'user1'))).toBe(false); // runs past it
    expect(satisfies(app, range('user', 'user/z'))).toBe(false); // starts before it
    expect(satisfies(app, range('user/', null))).toBe(false); // to the last key
    expect(satisfies(app, { kind: 'keyspace', permission: 'write', keyspace: 'orders' })).toBe(true); // leases: any grant of the keyspace
    expect(satisfies(app, { kind: 'whole-keyspace', permission: 'write', keyspace: 'orders' })).toBe(false); // compact: needs every key
    expect(rangeWithinPrefix(Buffer.from([0xff, 1]), null, Buffer.from([0xff]))).toBe(true); // no successor: all keys after it start with it
  });

  it('denies by default: an unknown client, a client of the wrong name shape, a node without a grant line', () => {
    expect(rules.grantsFor(client('stranger')).filter((g) => g.identity.kind !== 'any-client')).toHaveLength(0);
    expect(satisfies(rules.grantsFor(client('stranger')), key('read', 'orders', 'user/1'))).toBe(false);
    expect(satisfies(rules.grantsFor(client('app')), key('read', 'orders', 'user/1'))).toBe(false); // app-* needs the dash
    // `*` is any client, not a node; node:n9 names node n9 only.
    expect(rules.grantsFor(node('n1'))).toHaveLength(0);
    expect(satisfies(rules.grantsFor(node('n9')), key('write', 'audit', 'x'))).toBe(true);
    expect(satisfies(parseAuthzRules('', 'f').grantsFor(client('ops')), { kind: 'any-grant' })).toBe(false);
  });

  it('admin is granted only by a grant on keyspace *', () => {
    expect(satisfies(rules.grantsFor(client('ops')), { kind: 'cluster-admin' })).toBe(true);
    expect(satisfies(rules.grantsFor(client('ops')), key('read', 'orders', 'x'))).toBe(false); // admin is not read
  });
});
