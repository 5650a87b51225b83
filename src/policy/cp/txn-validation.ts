/**
 * What a transaction must be before it is proposed: every field checked, every refusal an
 * INVALID_ARGUMENT naming the field, so nothing malformed ever reaches the log (where every
 * replica would have to apply it).
 */
import { CompareResult, CompareTarget, type RequestOp, type TxnRequest } from '../../gen/replikit/v1/kv_service.js';
import { invalidArgument } from '../../errors.js';
import { RESERVED_KEY_PREFIX } from './kv-state-machine.js';

/**
 * At most this many compares, and this many operations per branch: etcd's default (--max-txn-ops
 * 128). A transaction is one log entry, applied in one step on every replica: a bound on its size
 * bounds that step and the entry.
 */
export const MAX_TXN_OPS = 128;

/**
 * The targets and results a compare may name. Listed, not derived from the enums: ts-proto's
 * enums also hold UNSPECIFIED and UNRECOGNIZED (-1, what an unknown number decodes to), and a
 * compare naming either would reach every replica's state machine through the log.
 */
const COMPARE_TARGETS: ReadonlySet<number> = new Set([
  CompareTarget.COMPARE_TARGET_VALUE,
  CompareTarget.COMPARE_TARGET_VERSION,
  CompareTarget.COMPARE_TARGET_CREATE_REVISION,
  CompareTarget.COMPARE_TARGET_MOD_REVISION,
]);
const COMPARE_RESULTS: ReadonlySet<number> = new Set([
  CompareResult.COMPARE_RESULT_EQUAL,
  CompareResult.COMPARE_RESULT_NOT_EQUAL,
  CompareResult.COMPARE_RESULT_GREATER,
  CompareResult.COMPARE_RESULT_LESS,
]);

export interface TxnLimits {
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
}

export function validateTxn(txn: TxnRequest, limits: TxnLimits): void {
  if (txn.compares.length > MAX_TXN_OPS) {
    throw invalidArgument('TXN_TOO_LARGE', `compares has ${txn.compares.length} items; the limit is ${MAX_TXN_OPS}`, { field: 'compares' });
  }
  txn.compares.forEach((c, i) => {
    const field = `compares[${i}]`;
    checkKey(c.key, `${field}.key`, limits);
    if (!COMPARE_TARGETS.has(c.target)) {
      throw invalidArgument('COMPARE_TARGET_INVALID', `${field}.target is ${c.target}; use VALUE, VERSION, CREATE_REVISION or MOD_REVISION`, { field: `${field}.target` });
    }
    if (!COMPARE_RESULTS.has(c.result)) {
      throw invalidArgument('COMPARE_RESULT_INVALID', `${field}.result is ${c.result}; use EQUAL, NOT_EQUAL, GREATER or LESS`, { field: `${field}.result` });
    }
    if (c.target === CompareTarget.COMPARE_TARGET_VALUE && c.value.byteLength > limits.maxValueBytes) {
      throw invalidArgument('VALUE_TOO_LARGE', `${field}.value is ${c.value.byteLength} bytes; the limit is ${limits.maxValueBytes}`, { field: `${field}.value` });
    }
  });
  checkBranch(txn.success, 'success', limits);
  checkBranch(txn.failure, 'failure', limits);
}

function checkBranch(ops: readonly RequestOp[], branch: string, limits: TxnLimits): void {
  if (ops.length > MAX_TXN_OPS) {
    throw invalidArgument('TXN_TOO_LARGE', `${branch} has ${ops.length} operations; the limit is ${MAX_TXN_OPS}`, { field: branch });
  }
  // As etcd: one transaction writes a key at most once, so its outcome does not hang on the order
  // of its own operations.
  const written = new Set<string>();
  let valueBytes = 0;
  ops.forEach((op, i) => {
    const field = `${branch}[${i}]`;
    const set = [op.put, op.get, op.delete].filter((x) => x !== undefined).length;
    if (set !== 1) throw invalidArgument('TXN_OP_EMPTY', `${field} must hold exactly one of put, get or delete`, { field });
    const key = (op.put ?? op.get ?? op.delete)!.key;
    checkKey(key, `${field}.key`, limits);
    if (op.put !== undefined) {
      valueBytes += op.put.value.byteLength;
      if (op.put.value.byteLength > limits.maxValueBytes) {
        throw invalidArgument('VALUE_TOO_LARGE', `${field}.put.value is ${op.put.value.byteLength} bytes; the limit is ${limits.maxValueBytes}`, { field: `${field}.put.value` });
      }
    }
    if (op.put !== undefined || op.delete !== undefined) {
      const id = Buffer.from(key).toString('latin1');
      if (written.has(id)) throw invalidArgument('TXN_DUPLICATE_KEY', `${field} writes a key an earlier operation of ${branch} writes`, { field });
      written.add(id);
    }
  });
  // One log entry, and one message to each follower: the values together stay within one value's
  // limit, so a transaction never needs more than a put does.
  if (valueBytes > limits.maxValueBytes) {
    throw invalidArgument('TXN_TOO_LARGE', `${branch}'s values add up to ${valueBytes} bytes; together they may hold at most ${limits.maxValueBytes}`, { field: branch });
  }
}

function checkKey(key: Uint8Array, field: string, limits: TxnLimits): void {
  if (key.byteLength === 0) throw invalidArgument('KEY_EMPTY', `${field} is empty; keys are 1 to ${limits.maxKeyBytes} bytes`, { field });
  if (key.byteLength > limits.maxKeyBytes) {
    throw invalidArgument('KEY_TOO_LARGE', `${field} is ${key.byteLength} bytes; the limit (maxKeyBytes) is ${limits.maxKeyBytes}`, { field });
  }
  if (key.byteLength >= RESERVED_KEY_PREFIX.byteLength && RESERVED_KEY_PREFIX.equals(key.subarray(0, RESERVED_KEY_PREFIX.byteLength))) {
    throw invalidArgument('KEY_RESERVED', `${field} starts with the bytes ff ff ff ff, which CP keyspaces keep for their own records (leases); choose another key`, { field });
  }
}
