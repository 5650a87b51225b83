/**
 * The compare-and-set of bench/workload.ts in replikit's terms, the same whether it goes over
 * gRPC (KvService.Txn) or through the embedding API (`keyspace.txn`): the request, and what the
 * CAS load keeps of the response.
 */
import { CompareResult, CompareTarget, type TxnRequest, type TxnResponse } from '../src/gen/replikit/v1/kv_service.js';
import { VALUE, type SwapOutcome } from './workload.js';

const EMPTY = Buffer.alloc(0);

/**
 * The compare-and-set of bench/workload.ts as a KvService.Txn: compare the key's mod revision,
 * put on success, read the key back on failure (so a stale caller learns the current revision).
 */
export function replikitSwapRequest(key: Buffer, expectedModRevision: bigint): TxnRequest {
  return {
    keyspace: 'default',
    compares: [{ key, target: CompareTarget.COMPARE_TARGET_MOD_REVISION, result: CompareResult.COMPARE_RESULT_EQUAL, value: EMPTY, number: expectedModRevision }],
    success: [{ put: { key, value: VALUE, lease: 0n } }],
    failure: [{ get: { key } }],
  };
}

/** What a replikit Txn of {@link replikitSwapRequest} answered, as the CAS load keeps it. */
export function replikitSwapOutcome(response: TxnResponse): SwapOutcome {
  return response.succeeded
    ? { swapped: true, modRevision: response.responses[0]?.put?.revision ?? response.revision }
    : { swapped: false, modRevision: response.responses[0]?.get?.kv?.modRevision ?? 0n };
}
