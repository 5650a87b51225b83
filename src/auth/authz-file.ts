import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { Logger } from '../logging/logger.js';
import type { Authorizer } from './authorizer.js';
import { AuthzFileError, MAX_AUTHZ_FILE_BYTES, parseAuthzRules, type AuthzRules } from './authz-rules.js';

/**
 * Reads and parses an authz file (`serve --authz FILE`, again on SIGHUP). Reads at most one byte
 * more than {@link MAX_AUTHZ_FILE_BYTES}, so a huge file named by mistake is refused without
 * being read whole. Every failure is an {@link AuthzFileError} naming `path` (and the line).
 */
export function readAuthzFile(path: string): AuthzRules {
  let text: string;
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    if (size > MAX_AUTHZ_FILE_BYTES) {
      throw new AuthzFileError(path, undefined, `${size} bytes; an authz file may hold at most ${MAX_AUTHZ_FILE_BYTES} bytes (MAX_AUTHZ_FILE_BYTES)`);
    }
    const buffer = Buffer.alloc(MAX_AUTHZ_FILE_BYTES + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.byteLength - length, null);
      if (n === 0) break;
      length += n;
      if (length === buffer.byteLength) break;
    }
    if (length > MAX_AUTHZ_FILE_BYTES) {
      throw new AuthzFileError(path, undefined, `more than ${MAX_AUTHZ_FILE_BYTES} bytes; an authz file may hold at most that (MAX_AUTHZ_FILE_BYTES)`);
    }
    text = buffer.toString('utf8', 0, length);
  } catch (err: unknown) {
    if (err instanceof AuthzFileError) throw err;
    throw new AuthzFileError(path, undefined, `cannot read it: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return parseAuthzRules(text, path);
}

/** What {@link reloadAuthzFile} needs besides the file. */
export interface AuthzReloadOptions {
  /** Gets the outcome: info with the number of grants, or error with the file, line and problem. */
  readonly logger: Logger;
  /** Called with every outcome (a metric). */
  readonly onReload?: (outcome: 'ok' | 'error') => void;
}

/**
 * Re-reads `path` (serve does on SIGHUP): when it parses, its rules replace `authorizer`'s for
 * every call from now on; when it does not, the rules in force stay, and the error is logged
 * naming the file and the line. Returns the outcome; never throws.
 */
export function reloadAuthzFile(path: string, authorizer: Authorizer, options: AuthzReloadOptions): 'ok' | 'error' {
  let rules: AuthzRules;
  try {
    rules = readAuthzFile(path);
  } catch (err: unknown) {
    const message = err instanceof Error ? err.message : String(err);
    options.logger.error(`kept the authorization rules in force (${authorizer.rules.grants.length} grants): the reloaded authz file is refused: ${message}`, {
      file: path,
      ...(err instanceof AuthzFileError && err.line !== undefined ? { line: err.line } : {}),
      grants: authorizer.rules.grants.length,
    });
    options.onReload?.('error');
    return 'error';
  }
  authorizer.replace(rules);
  options.logger.info(`reloaded the authorization rules from ${path}: ${rules.grants.length} grants in force`, { file: path, grants: rules.grants.length });
  options.onReload?.('ok');
  return 'ok';
}
