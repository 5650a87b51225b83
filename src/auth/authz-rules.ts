/**
 * Client authorization rules: the authz file (`serve --authz FILE`), parsed and evaluated.
 *
 * ```
 * # replikit authz file: one grant per line; '#' starts a comment; blank lines are ignored.
 * # allow IDENTITY PERMISSIONS KEYSPACE [KEY-PREFIX]
 * allow client:reporting read metrics
 * allow client:app-* read,write orders user/
 * allow client:ops admin *
 * allow * read public
 * ```
 *
 * IDENTITY is `client:NAME`, `node:ID` (NAME and ID may hold `*` wildcards) or `*` alone (any
 * client). PERMISSIONS is a comma list of `read`, `write` and `admin`. KEYSPACE is a keyspace name
 * or a `*` pattern. KEY-PREFIX, when given, limits read and write to keys that start with it.
 * Everything not granted is refused (deny by default). `admin` is the cluster's permission
 * (membership changes): its keyspace must be `*` and it takes no key prefix.
 *
 * Pure code: {@link parseAuthzRules} takes the file's text; authz-file.ts reads the file.
 */
import { prefixEnd } from '../policy/watch/key-range.js';
import type { CertificateIdentity } from '../interceptors/certificate-identity.js';

/**
 * The largest authz file: 1 MiB. Ten thousand grants of a hundred bytes each fit with room to
 * spare; a larger file is a mistake (a log or a binary named by accident), and the whole file is
 * held in memory while it is parsed, on every SIGHUP.
 */
export const MAX_AUTHZ_FILE_BYTES = 1024 * 1024;

/**
 * Grants one file may hold: 10,000. Far more than people write by hand (a grant per client and
 * keyspace); a file generated per key instead of per prefix is a design to fix, and evaluation
 * looks through a caller's grants on every call.
 */
export const MAX_GRANTS = 10_000;

/**
 * The longest KEY-PREFIX, in bytes: 1024, the default largest key (NODE_DEFAULTS.maxKeyBytes).
 * A longer prefix would match no key a default node accepts, so it is a mistake.
 */
export const MAX_KEY_PREFIX_BYTES = 1024;

/**
 * The longest IDENTITY or KEYSPACE pattern after its `client:` / `node:` part: 64 characters,
 * the longest client name or node id a certificate may carry (keyspace names are at most 60).
 */
export const MAX_PATTERN_CHARS = 64;

/**
 * Identities whose matching grants are remembered per rule set: 1,024. A call looks its caller
 * up once instead of scanning every grant; a cluster has far fewer clients, and when more show
 * up the memory is cleared rather than grown.
 */
export const MAX_CACHED_IDENTITIES = 1024;

/** The permissions, in the order messages list them. */
export const PERMISSIONS = ['read', 'write', 'admin'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** Who a grant is for. */
export type IdentityPattern =
  /** `*`: every client certificate of this cluster (not nodes: they need no grant). */
  | { readonly kind: 'any-client' }
  | { readonly kind: 'client' | 'node'; readonly pattern: string };

/** One `allow` line. */
export interface Grant {
  /** The line of the file it came from (1-based), for messages. */
  readonly line: number;
  readonly identity: IdentityPattern;
  readonly permissions: ReadonlySet<Permission>;
  /** A keyspace name or a `*` pattern; `*` alone is every keyspace. */
  readonly keyspace: string;
  /** Keys the grant covers start with these bytes; undefined: every key of the keyspace. */
  readonly keyPrefix: Buffer | undefined;
  /** The prefix as written, for messages. */
  readonly keyPrefixText: string | undefined;
}

/** A parsed authz file. Immutable; swap a whole new one in to change the rules. */
export class AuthzRules {
  /** Grants by caller (its URI), computed on first use. */
  readonly #byIdentity = new Map<string, readonly Grant[]>();

  constructor(
    /** Where the rules came from (the file's path as given), named in every refusal. */
    readonly source: string,
    readonly grants: readonly Grant[],
  ) {}

  /** The grants that name `identity`, in file order. */
  grantsFor(identity: CertificateIdentity): readonly Grant[] {
    const cached = this.#byIdentity.get(identity.uri);
    if (cached !== undefined) return cached;
    const found = this.grants.filter((g) => identityMatches(g.identity, identity));
    if (this.#byIdentity.size >= MAX_CACHED_IDENTITIES) this.#byIdentity.clear();
    this.#byIdentity.set(identity.uri, found);
    return found;
  }
}

/** What a request needs, on which keys: one entry per thing it touches. */
export type Need =
  /** `permission` on `keyspace` for one key. */
  | { readonly kind: 'key'; readonly permission: Permission; readonly keyspace: string; readonly key: Uint8Array; readonly what?: string }
  /** `permission` on `keyspace` for every key in [start, end) (end null: to the last key). */
  | { readonly kind: 'range'; readonly permission: Permission; readonly keyspace: string; readonly start: Uint8Array; readonly end: Uint8Array | null }
  /** `permission` on `keyspace`, by any grant of it, whatever its key prefix (leases: not keys). */
  | { readonly kind: 'keyspace'; readonly permission: Permission; readonly keyspace: string }
  /** `permission` on every key of `keyspace`: a grant without a key prefix (Compact, LeaseRevoke reach every key). */
  | { readonly kind: 'whole-keyspace'; readonly permission: Permission; readonly keyspace: string }
  /** `admin` by a grant whose keyspace pattern is `*`. */
  | { readonly kind: 'cluster-admin' }
  /** Any grant at all (Status, ListMembers). */
  | { readonly kind: 'any-grant' };

/** True when some grant of `grants` satisfies `need`. */
export function satisfies(grants: readonly Grant[], need: Need): boolean {
  switch (need.kind) {
    case 'any-grant':
      return grants.length > 0;
    case 'cluster-admin':
      return grants.some((g) => g.permissions.has('admin') && g.keyspace === '*');
    case 'keyspace':
      return grants.some((g) => g.permissions.has(need.permission) && globMatches(g.keyspace, need.keyspace));
    case 'whole-keyspace':
      return grants.some((g) => g.permissions.has(need.permission) && globMatches(g.keyspace, need.keyspace) && (g.keyPrefix === undefined || g.keyPrefix.byteLength === 0));
    case 'key':
      return grants.some((g) => g.permissions.has(need.permission) && globMatches(g.keyspace, need.keyspace) && startsWith(need.key, g.keyPrefix));
    case 'range':
      return grants.some((g) => g.permissions.has(need.permission) && globMatches(g.keyspace, need.keyspace) && rangeWithinPrefix(need.start, need.end, g.keyPrefix));
  }
}

/** The key prefixes of the grants that give `permission` on `keyspace` (for a refusal's words). */
export function prefixesFor(grants: readonly Grant[], permission: Permission, keyspace: string): string[] {
  const out = new Set<string>();
  for (const g of grants) {
    if (g.permissions.has(permission) && globMatches(g.keyspace, keyspace) && g.keyPrefixText !== undefined) out.add(g.keyPrefixText);
  }
  return [...out];
}

function startsWith(key: Uint8Array, prefix: Buffer | undefined): boolean {
  if (prefix === undefined) return true;
  if (key.byteLength < prefix.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

/** Byte-wise comparison, as the key order of the keyspaces. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/**
 * True when every key of [start, end) starts with `prefix`: the range lies within
 * [prefix, successor of prefix). A range that runs to the last key (end null) lies within a
 * prefix only when the prefix has no successor (it is all 0xff bytes).
 */
export function rangeWithinPrefix(start: Uint8Array, end: Uint8Array | null, prefix: Buffer | undefined): boolean {
  if (prefix === undefined || prefix.byteLength === 0) return true;
  if (compareBytes(start, prefix) < 0) return false;
  const successor = prefixEnd(prefix);
  if (successor === null) return true; // every key ≥ prefix starts with it
  if (end === null) return false;
  return compareBytes(end, successor) <= 0;
}

function identityMatches(pattern: IdentityPattern, identity: CertificateIdentity): boolean {
  if (pattern.kind === 'any-client') return identity.kind === 'client';
  if (pattern.kind !== identity.kind) return false;
  return globMatches(pattern.pattern, identity.kind === 'client' ? identity.name : identity.nodeId);
}

/**
 * `*` matches any run of characters (the empty one too); every other character itself. Linear
 * in practice: the classic two-pointer match that backtracks only to the last `*`, never
 * exponentially as a regular expression built from the pattern could.
 */
export function globMatches(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] !== '*' && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === '*') {
      starP = p++;
      starT = t;
    } else if (starP >= 0) {
      p = starP + 1;
      t = ++starT;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** An authz file that cannot be used; the message names the file, the line and the problem. */
export class AuthzFileError extends Error {
  override readonly name = 'AuthzFileError';
  constructor(
    readonly source: string,
    /** 1-based; undefined for problems of the whole file (its size). */
    readonly line: number | undefined,
    readonly problem: string,
  ) {
    super(line === undefined ? `${source}: ${problem}` : `${source} line ${line}: ${problem}`);
  }
}

const NAME_PATTERN = /^[A-Za-z0-9._*-]+$/;
const FORMAT = 'allow IDENTITY PERMISSIONS KEYSPACE [KEY-PREFIX]';
const FIELDS = ['IDENTITY', 'PERMISSIONS', 'KEYSPACE'] as const;

/**
 * Parses an authz file's text. Any problem refuses the whole file (an AuthzFileError naming
 * `source`, the line and the problem): a file that half applies would grant what nobody meant, or
 * refuse what everybody expects.
 */
export function parseAuthzRules(text: string, source: string): AuthzRules {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_AUTHZ_FILE_BYTES) {
    throw new AuthzFileError(source, undefined, `${bytes} bytes; an authz file may hold at most ${MAX_AUTHZ_FILE_BYTES} bytes (MAX_AUTHZ_FILE_BYTES)`);
  }
  const grants: Grant[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const fail = (problem: string): never => {
      throw new AuthzFileError(source, line, problem);
    };
    const hash = lines[i]!.indexOf('#');
    const content = (hash < 0 ? lines[i]! : lines[i]!.slice(0, hash)).trim();
    if (content === '') continue;
    const fields = content.split(/\s+/);
    const verb = fields[0]!;
    if (verb !== 'allow') fail(`unknown verb ${JSON.stringify(verb)}: a grant is "${FORMAT}" (only allow: everything not allowed is refused)`);
    if (fields.length < 4) fail(`missing ${FIELDS.slice(fields.length - 1).join(' and ')}: a grant is "${FORMAT}"`);
    if (fields.length > 5) fail(`${fields.length - 5} field(s) too many after the key prefix ${JSON.stringify(fields[4])}: a grant is "${FORMAT}"`);
    if (grants.length >= MAX_GRANTS) fail(`more than ${MAX_GRANTS} grants (MAX_GRANTS); grant by name pattern and key prefix instead of one line per key or client`);
    const identity = parseIdentity(fields[1]!, fail);
    const permissions = parsePermissions(fields[2]!, fail);
    const keyspace = fields[3]!;
    if (keyspace.length > MAX_PATTERN_CHARS || !NAME_PATTERN.test(keyspace)) {
      fail(`bad keyspace ${JSON.stringify(keyspace)}: a keyspace name or pattern is 1 to ${MAX_PATTERN_CHARS} of [A-Za-z0-9._-] and * wildcards`);
    }
    const keyPrefixText = fields[4];
    const keyPrefix = keyPrefixText === undefined ? undefined : Buffer.from(keyPrefixText, 'utf8');
    if (keyPrefix !== undefined && keyPrefix.byteLength > MAX_KEY_PREFIX_BYTES) {
      fail(`the key prefix is ${keyPrefix.byteLength} bytes; at most ${MAX_KEY_PREFIX_BYTES} (MAX_KEY_PREFIX_BYTES: no longer key is accepted)`);
    }
    if (permissions.has('admin')) {
      if (keyspace !== '*') fail(`admin is the cluster's permission (adding and removing members): its keyspace must be *, not ${JSON.stringify(keyspace)}`);
      if (keyPrefixText !== undefined) fail(`admin is the cluster's permission (adding and removing members): it takes no key prefix (${JSON.stringify(keyPrefixText)}); give read and write with a prefix on a line of their own`);
    }
    grants.push({ line, identity, permissions, keyspace, keyPrefix, keyPrefixText });
  }
  return new AuthzRules(source, grants);
}

function parseIdentity(text: string, fail: (problem: string) => never): IdentityPattern {
  if (text === '*') return { kind: 'any-client' };
  const colon = text.indexOf(':');
  const kind = colon < 0 ? '' : text.slice(0, colon);
  const pattern = colon < 0 ? '' : text.slice(colon + 1);
  if ((kind !== 'client' && kind !== 'node') || pattern === '' || pattern.length > MAX_PATTERN_CHARS || !NAME_PATTERN.test(pattern)) {
    return fail(`bad identity ${JSON.stringify(text)}: expected client:NAME, node:ID or * (NAME and ID 1 to ${MAX_PATTERN_CHARS} of [A-Za-z0-9._-], with * wildcards)`);
  }
  return { kind, pattern };
}

function parsePermissions(text: string, fail: (problem: string) => never): Set<Permission> {
  const out = new Set<Permission>();
  for (const word of text.split(',')) {
    if (word === '') fail(`empty permission in ${JSON.stringify(text)}: a comma list of ${PERMISSIONS.join(', ')}`);
    if (!(PERMISSIONS as readonly string[]).includes(word)) fail(`unknown permission ${JSON.stringify(word)} (${PERMISSIONS.join(', ')})`);
    out.add(word as Permission);
  }
  return out;
}
