import type { Logger } from '../logging/logger.js';

/**
 * Runs an application hook from inside a gRPC callback. Hooks are documented not to throw; when
 * one does anyway, the error is logged instead of escaping into grpc-js, where it would break the
 * call that happened to report the event rather than the code that has the bug.
 */
export function callHook(logger: Logger, hookName: string, hook: () => void): void {
  try {
    hook();
  } catch (err) {
    logger.error(`the ${hookName} hook threw; ignored`, {
      hook: hookName,
      error: err instanceof Error ? err.message : String(err),
    });
  }
}
