import {
  CompareResult,
  CompareTarget,
  KvServiceClient,
  TxnResponse as TxnJson,
  type Compare,
  type RequestOp,
  type TxnResponse,
} from '../../gen/replikit/v1/kv_service.js';
import { parseArgs, UsageError } from '../args.js';
import { CLIENT_FLAGS, clientSettings, reportCallError, TLS_CLIENT_USAGE, unary } from '../client.js';
import type { Command } from '../main.js';

/** Exit status when a transaction's compares did not hold (its `else` ran; a failed `put --if-*`). */
export const EXIT_COMPARE_FAILED = 4;

const TARGETS: Readonly<Record<string, CompareTarget>> = {
  value: CompareTarget.COMPARE_TARGET_VALUE,
  version: CompareTarget.COMPARE_TARGET_VERSION,
  create: CompareTarget.COMPARE_TARGET_CREATE_REVISION,
  mod: CompareTarget.COMPARE_TARGET_MOD_REVISION,
};
const RESULTS: Readonly<Record<string, CompareResult>> = {
  '=': CompareResult.COMPARE_RESULT_EQUAL,
  '!=': CompareResult.COMPARE_RESULT_NOT_EQUAL,
  '>': CompareResult.COMPARE_RESULT_GREATER,
  '<': CompareResult.COMPARE_RESULT_LESS,
};

/**
 * One compare, written `TARGET(KEY) OP OPERAND`: TARGET is value, version, create or mod; OP is
 * =, !=, > or <; OPERAND is the rest of the text (for value) or a whole number. For example
 * `value(config) = v1`, `version(counter) > 3`, `create(lock) = 0` (the key is absent).
 */
export function parseCompare(text: string): Compare {
  const match = /^\s*(value|version|create|mod)\(([^)]+)\)\s*(!=|=|>|<)\s?(.*)$/s.exec(text);
  if (match === null) {
    throw new UsageError(`--if ${JSON.stringify(text)} is not TARGET(KEY) OP OPERAND, e.g. 'value(k) = v1', 'version(k) > 3', 'create(k) = 0'`);
  }
  const [, target, key, op, operand] = match as unknown as [string, string, string, string, string];
  const compare: Compare = { key: Buffer.from(key, 'utf8'), target: TARGETS[target]!, result: RESULTS[op]!, value: Buffer.alloc(0), number: 0n };
  if (target === 'value') return { ...compare, value: Buffer.from(operand, 'utf8') };
  if (!/^\d+$/.test(operand.trim())) throw new UsageError(`--if ${JSON.stringify(text)}: ${target} compares with a whole number, not ${JSON.stringify(operand)}`);
  return { ...compare, number: BigInt(operand.trim()) };
}

/** One operation, written `put KEY VALUE`, `get KEY` or `delete KEY` (the value is the rest of the text). */
export function parseOperation(text: string, flag: string): RequestOp {
  const match = /^\s*(put|get|delete)\s+(\S+)(?:\s(.*))?$/s.exec(text);
  if (match === null) throw new UsageError(`--${flag} ${JSON.stringify(text)} is not 'put KEY VALUE', 'get KEY' or 'delete KEY'`);
  const [, verb, key, rest] = match as unknown as [string, string, string, string | undefined];
  const k = Buffer.from(key, 'utf8');
  if (verb === 'put') {
    if (rest === undefined) throw new UsageError(`--${flag} ${JSON.stringify(text)}: put needs a value`);
    return { put: { key: k, value: Buffer.from(rest, 'utf8'), lease: 0n } };
  }
  if (rest !== undefined && rest.trim() !== '') throw new UsageError(`--${flag} ${JSON.stringify(text)}: ${verb} takes only a key`);
  return verb === 'get' ? { get: { key: k } } : { delete: { key: k } };
}

/** The lines a transaction's answer prints: the outcome and revision, then one line per operation. */
export function describeTxn(res: TxnResponse): string {
  const lines = [`${res.succeeded ? 'SUCCEEDED' : 'FAILED'} revision ${res.revision}`];
  for (const r of res.responses) {
    if (r.put !== undefined) lines.push(`put OK revision ${r.put.revision}`);
    else if (r.delete !== undefined) lines.push(`delete ${r.delete.deleted === 1 ? 'OK' : 'absent'}`);
    else if (r.get !== undefined) {
      const kv = r.get.kv;
      lines.push(kv === undefined ? 'get absent' : `get ${kv.key.toString('utf8')} = ${kv.value.toString('utf8')} (version ${kv.version}, mod ${kv.modRevision}, create ${kv.createRevision})`);
    }
  }
  return lines.join('\n');
}

const SPEC = { ...CLIENT_FLAGS, keyspace: {}, if: { repeated: true }, then: { repeated: true }, else: { repeated: true } } as const;

export const txnCommand: Command = {
  summary: 'run a transaction on a CP keyspace (exit 4 when its compares fail)',
  usage: [
    `usage: replikit txn --target HOST:PORT [--keyspace K] [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}`,
    "         [--if 'TARGET(KEY) OP OPERAND']... [--then 'OP ...']... [--else 'OP ...']...",
    '  TARGET: value | version | create | mod (create(k) = 0: k is absent);  OP: = | != | > | <',
    "  operations: 'put KEY VALUE' | 'get KEY' | 'delete KEY'",
    "  example: replikit txn --target 127.0.0.1:7001 --if 'value(config) = v1' --then 'put config v2' --else 'get config'",
  ].join('\n'),
  async run(argv) {
    const args = parseArgs(argv, SPEC);
    const settings = clientSettings(args);
    if (args.positionals.length > 0) throw new UsageError(`txn takes only flags; got ${JSON.stringify(args.positionals[0])}`);
    const compares = (args.lists.get('if') ?? []).map(parseCompare);
    const success = (args.lists.get('then') ?? []).map((t) => parseOperation(t, 'then'));
    const failure = (args.lists.get('else') ?? []).map((t) => parseOperation(t, 'else'));
    if (success.length === 0 && failure.length === 0) throw new UsageError('txn needs at least one --then or --else operation');
    const keyspace = args.flags.get('keyspace') ?? 'default';
    const client = new KvServiceClient(settings.target, settings.credentials);
    try {
      const res: TxnResponse = await unary(client.txn.bind(client), { keyspace, compares, success, failure }, settings.timeoutMs);
      process.stdout.write(settings.json ? `${JSON.stringify(TxnJson.toJSON(res))}\n` : `${describeTxn(res)}\n`);
      return res.succeeded ? 0 : EXIT_COMPARE_FAILED;
    } catch (err: unknown) {
      return reportCallError('txn', err);
    } finally {
      client.close();
    }
  },
};
