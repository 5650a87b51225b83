import { ReplikitError } from '../errors.js';
import type { OperationHandle } from '../testing/history.js';

/**
 * Completes the recorded operations of one simulated cluster as the API promises their outcomes:
 * UNAVAILABLE and INVALID_ARGUMENT as `fail` (certainly no effect: the checkers hold the
 * policies to that), anything else as `info` (outcome unknown), and every operation still
 * running on a node when that node crashes as `info` at the moment of the crash (later answers
 * of the dead node are ignored).
 */
export class RecordedCalls {
  readonly #running = new Map<string, Set<() => void>>();
  readonly stats: Record<string, number>;

  constructor(stats: Record<string, number>) {
    this.stats = stats;
    for (const k of ['ok', 'fail', 'info']) stats[k] ??= 0;
  }

  /**
   * Runs `call` on `nodeId` and completes `handle` from its result: `call` resolves with the
   * function that records success (it may note more, e.g. the version written).
   */
  run(nodeId: string, handle: OperationHandle, call: () => Promise<() => void>): Promise<void> {
    let running = this.#running.get(nodeId);
    if (running === undefined) this.#running.set(nodeId, (running = new Set()));
    const nodeCalls = running;
    return new Promise<void>((resolve) => {
      let settled = false;
      const complete = (record: () => void, type: 'ok' | 'fail' | 'info') => {
        if (settled) return;
        settled = true;
        nodeCalls.delete(onCrash);
        record();
        this.stats[type]!++;
        resolve();
      };
      const onCrash = () => complete(() => handle.info(), 'info');
      nodeCalls.add(onCrash);
      call().then(
        (recordOk) => complete(recordOk, 'ok'),
        (err: unknown) => {
          const definite = err instanceof ReplikitError && (err.kind === 'unavailable' || err.kind === 'invalid-argument');
          complete(definite ? () => handle.fail() : () => handle.info(), definite ? 'fail' : 'info');
        },
      );
    });
  }

  /** Records a call that could not even be sent (the node is down): it certainly did nothing. */
  refused(handle: OperationHandle): void {
    handle.fail();
    this.stats.fail!++;
  }

  /** `nodeId` crashed: its running calls end as `info` now. */
  crashed(nodeId: string): void {
    for (const abandon of [...(this.#running.get(nodeId) ?? [])]) abandon();
  }
}
