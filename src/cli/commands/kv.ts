import { EXIT_COMPARE_FAILED } from './txn.js';
import { CompareResult, CompareTarget, Consistency, TxnResponse as TxnJson, type Compare, KvServiceClient, type DeleteResponse, type GetResponse, type PutResponse, DeleteResponse as DeleteJson, GetResponse as GetJson, PutResponse as PutJson, CompactResponse as CompactJson } from '../../gen/replikit/v1/kv_service.js';
import { ReplikitClient } from '../../client/replikit-client.js';
import type { KeyValue } from '../../client/types.js';
import { parseArgs, UsageError } from '../args.js';
import { CLIENT_FLAGS, clientSettings, reportCallError, sessionFlag, TLS_CLIENT_USAGE, unary, type ClientSettings } from '../client.js';
import type { Command } from '../main.js';
import { positiveIntFlag, reportClientError, writeOut } from './watch.js';

const SPEC = { ...CLIENT_FLAGS, keyspace: {}, session: {}, 'if-value': {}, 'if-version': {}, 'if-absent': { boolean: true }, consistency: {}, prefix: { boolean: true }, limit: {}, rev: {}, lease: {} } as const;

/** Exit status of `get` for a key that holds nothing, so scripts can tell it from an error. */
export const EXIT_NOT_FOUND = 3;

const COMMON = `--target HOST:PORT [--keyspace K] [--session TOKEN] [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}`;

function formatVersion(v: PutResponse['version']): string {
  return v === undefined ? '-' : `${v.hlc?.wallTimeMs ?? 0n}.${v.hlc?.logical ?? 0}@${v.nodeId}`;
}

function tokenLine(token: Buffer): string {
  return token.byteLength > 0 ? `\nsession ${token.toString('base64')}` : '';
}

const EXTRA_USAGE: Readonly<Record<string, string>> = {
  put: '[--if-value OLD | --if-version N | --if-absent] [--lease ID] ',
  get: '[--consistency linearizable|serializable] [--prefix [--limit N] [--rev R]] ',
  delete: '',
};

/**
 * The compare of `put --if-*` (CP keyspaces), or undefined for a plain put. --if-version compares
 * the key's version (writes since created); --if-absent: the key does not exist.
 */
function conditionOf(args: ReturnType<typeof parseArgs>, key: Buffer): Compare | undefined {
  const given = ['if-value', 'if-version', 'if-absent'].filter((f) => args.flags.has(f) || args.switches.has(f));
  if (given.length > 1) throw new UsageError(`give at most one of --if-value, --if-version and --if-absent (got ${given.map((g) => '--' + g).join(', ')})`);
  const base = { key, result: CompareResult.COMPARE_RESULT_EQUAL, value: Buffer.alloc(0), number: 0n };
  if (args.switches.has('if-absent')) return { ...base, target: CompareTarget.COMPARE_TARGET_CREATE_REVISION };
  const value = args.flags.get('if-value');
  if (value !== undefined) return { ...base, target: CompareTarget.COMPARE_TARGET_VALUE, value: Buffer.from(value, 'utf8') };
  const version = args.flags.get('if-version');
  if (version !== undefined) {
    if (!/^\d+$/.test(version)) throw new UsageError(`--if-version must be a whole number, not ${JSON.stringify(version)}`);
    return { ...base, target: CompareTarget.COMPARE_TARGET_VERSION, number: BigInt(version) };
  }
  return undefined;
}

function consistencyOf(text: string | undefined): Consistency {
  if (text === undefined || text === 'linearizable') return text === undefined ? Consistency.CONSISTENCY_UNSPECIFIED : Consistency.CONSISTENCY_LINEARIZABLE;
  if (text === 'serializable') return Consistency.CONSISTENCY_SERIALIZABLE;
  throw new UsageError(`--consistency must be linearizable or serializable, not ${JSON.stringify(text)}`);
}

function kvCommand(name: 'put' | 'get' | 'delete', positionals: string, summary: string, want: number): Command {
  return {
    summary,
    usage: `usage: replikit ${name} ${COMMON} ${EXTRA_USAGE[name]}${positionals}`,
    async run(argv) {
      const args = parseArgs(argv, SPEC);
      const settings = clientSettings(args);
      if (args.positionals.length !== want) {
        throw new UsageError(`${name} takes ${positionals}; got ${args.positionals.length} argument(s)`);
      }
      const [key, value] = args.positionals as [string, string | undefined];
      for (const flag of ['if-value', 'if-version', 'if-absent'] as const) {
        if (name !== 'put' && (args.flags.has(flag) || args.switches.has(flag))) throw new UsageError(`--${flag} is a flag of put`);
      }
      if (name !== 'put' && args.flags.has('lease')) throw new UsageError('--lease is a flag of put');
      // The key is deleted when the lease ends (`replikit lease grant`; CP keyspaces).
      const lease = args.flags.has('lease') ? BigInt(positiveIntFlag('lease', args.flags.get('lease')!)) : 0n;
      if (name !== 'get' && args.flags.has('consistency')) throw new UsageError('--consistency is a flag of get');
      if (name !== 'get' && args.switches.has('prefix')) throw new UsageError('--prefix is a flag of get');
      for (const flag of ['limit', 'rev'] as const) {
        if (args.flags.has(flag) && !args.switches.has('prefix')) throw new UsageError(`--${flag} is a flag of get --prefix`);
      }
      if (args.switches.has('prefix')) return getPrefix(args, settings, key);
      const condition = name === 'put' ? conditionOf(args, Buffer.from(key, 'utf8')) : undefined;
      const consistency = consistencyOf(args.flags.get('consistency'));
      const keyspace = args.flags.get('keyspace') ?? 'default';
      const sessionToken = sessionFlag(args.flags.get('session'));
      const client = new KvServiceClient(settings.target, settings.credentials);
      try {
        const request = { keyspace, key: Buffer.from(key, 'utf8'), sessionToken };
        if (condition !== undefined) {
          const k = Buffer.from(key, 'utf8');
          const res = await unary(client.txn.bind(client), { keyspace, compares: [condition], success: [{ put: { key: k, value: Buffer.from(value!, 'utf8'), lease } }], failure: [{ get: { key: k } }] }, settings.timeoutMs);
          if (settings.json) print(true, TxnJson.toJSON(res), () => '');
          if (res.succeeded) {
            if (!settings.json) print(false, undefined, () => `OK revision ${res.revision}`);
            return 0;
          }
          const kv = res.responses[0]?.get?.kv;
          process.stderr.write(
            `replikit put: compare failed: ${kv === undefined ? `${key} is absent` : `${key} is at version ${kv.version} (mod revision ${kv.modRevision}), holding ${JSON.stringify(kv.value.toString('utf8'))}`}\n`,
          );
          return EXIT_COMPARE_FAILED;
        }
        if (name === 'put') {
          const res: PutResponse = await unary(client.put.bind(client), { ...request, value: Buffer.from(value!, 'utf8'), ack: 0, lease }, settings.timeoutMs);
          print(settings.json, PutJson.toJSON(res), () => `OK ${formatVersion(res.version)}${tokenLine(res.sessionToken)}`);
          return 0;
        }
        if (name === 'delete') {
          const res: DeleteResponse = await unary(client.delete.bind(client), { ...request, ack: 0 }, settings.timeoutMs);
          print(settings.json, DeleteJson.toJSON(res), () => `OK deleted ${formatVersion(res.version)}${tokenLine(res.sessionToken)}`);
          return 0;
        }
        const res: GetResponse = await unary(client.get.bind(client), { ...request, consistency }, settings.timeoutMs);
        if (!res.found && !settings.json) {
          process.stderr.write(`replikit get: not found: key ${JSON.stringify(key)} in keyspace ${keyspace}${tokenLine(res.sessionToken)}\n`);
          return EXIT_NOT_FOUND;
        }
        print(settings.json, GetJson.toJSON(res), () => res.value.toString('utf8') + tokenLine(res.sessionToken));
        return res.found ? 0 : EXIT_NOT_FOUND;
      } catch (err: unknown) {
        return reportCallError(name, err);
      } finally {
        client.close();
      }
    },
  };
}

/**
 * `get --prefix`: every key that starts with KEY (an empty KEY: every key), one `KEY VALUE` line
 * each (--json: one object per line), all read at one revision (`--rev`, or the current one), at
 * most `--limit` of them. No key is not an error: nothing is printed, exit 0.
 */
async function getPrefix(args: ReturnType<typeof parseArgs>, settings: ClientSettings, prefix: string): Promise<number> {
  if (args.flags.has('session')) throw new UsageError('--session is not used with --prefix');
  const limit = args.flags.has('limit') ? positiveIntFlag('limit', args.flags.get('limit')!) : undefined;
  const revision = args.flags.has('rev') ? positiveIntFlag('rev', args.flags.get('rev')!) : undefined;
  const serializable = consistencyOf(args.flags.get('consistency')) === Consistency.CONSISTENCY_SERIALIZABLE;
  const keyspace = args.flags.get('keyspace') ?? 'default';
  let client: ReplikitClient | undefined;
  try {
    client = await ReplikitClient.connect({ endpoints: [settings.target], credentials: settings.credentials, timeoutMs: settings.timeoutMs });
    const ks = client.keyspace(keyspace);
    const options = { prefix: true, serializable, ...(revision === undefined ? {} : { revision }) };
    const line = (kv: KeyValue, at: number) =>
      settings.json
        ? `${JSON.stringify({ key: kv.key.toString('utf8'), value: kv.value.toString('utf8'), createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version, revision: at })}\n`
        : `${kv.key.toString('utf8')} ${kv.value.toString('utf8')}\n`;
    // Pages of at most 1,000 keys, each at the first page's revision, until --limit keys are printed.
    let continuation: Uint8Array | undefined;
    let printed = 0;
    for (;;) {
      const want = limit === undefined ? 1_000 : Math.min(1_000, limit - printed);
      const page = await ks.range(prefix, { ...options, limit: want, ...(continuation === undefined ? {} : { continuation }) });
      for (const kv of page.kvs) await writeOut(line(kv, page.revision));
      printed += page.kvs.length;
      if (!page.more || page.continuation === undefined || (limit !== undefined && printed >= limit)) return 0;
      continuation = page.continuation;
    }
  } catch (err: unknown) {
    return reportClientError('get', err);
  } finally {
    client?.close();
  }
}

/** `compact REVISION`: discards the keyspace's history at and below REVISION (CP keyspaces). */
export const compactCommand: Command = {
  summary: "discard a CP keyspace's history at and below a revision",
  usage: `usage: replikit compact --target HOST:PORT [--keyspace K] [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE} REVISION`,
  async run(argv) {
    const args = parseArgs(argv, { ...CLIENT_FLAGS, keyspace: {} });
    const settings = clientSettings(args);
    if (args.positionals.length !== 1) throw new UsageError(`compact takes REVISION; got ${args.positionals.length} argument(s)`);
    const text = args.positionals[0]!;
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < 1) throw new UsageError(`REVISION must be a positive integer, not ${JSON.stringify(text)}`);
    const keyspace = args.flags.get('keyspace') ?? 'default';
    const client = new KvServiceClient(settings.target, settings.credentials);
    try {
      const res = await unary(client.compact.bind(client), { keyspace, revision: BigInt(text) }, settings.timeoutMs);
      print(settings.json, CompactJson.toJSON(res), () => `OK history kept after revision ${res.compactRevision} (revision ${res.revision})`);
      return 0;
    } catch (err: unknown) {
      return reportCallError('compact', err);
    } finally {
      client.close();
    }
  },
};

function print(json: boolean, message: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(message)}\n` : `${text()}\n`);
}

export const putCommand = kvCommand('put', 'KEY VALUE', 'write a value', 2);
export const getCommand = kvCommand('get', 'KEY', 'read a value (exit 3 when not found)', 1);
export const deleteCommand = kvCommand('delete', 'KEY', 'delete a key', 1);
