/**
 * What the lease, lock and elect commands share: argument checks, connecting with failover, and
 * waiting for SIGINT/SIGTERM.
 */
import { constants } from 'node:os';
import { ReplikitClient } from '../../client/replikit-client.js';
import { UsageError } from '../args.js';
import type { EndpointSettings } from '../client.js';

/** The longest lease a node grants by default (LeaseGrantRequest.ttl_ms): one hour. */
export const MAX_TTL_MS = 3_600_000;

/**
 * Renewals per TTL of the leases the CLI keeps alive: ten, so that when a leader dies the holder
 * still has nine tenths of its TTL (by its own conservative count) to reach the next one, rather
 * than two thirds at worst with etcd's three.
 */
export const CLI_RENEWALS_PER_TTL = 10;

/** A TTL in milliseconds: a whole number from 1 to 3,600,000, or a UsageError naming `what` (`--ttl-ms`, `TTL_MS`). */
export function ttlArg(what: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a whole number of milliseconds, not ${JSON.stringify(text)}`);
  const value = Number(text);
  if (value < 1 || value > MAX_TTL_MS) throw new UsageError(`${what} must be between 1 and ${MAX_TTL_MS} ms (the nodes' default limits are 1000 to ${MAX_TTL_MS}), not ${text}`);
  return value;
}

/** A lease id: a positive whole number, or a UsageError naming `what`. */
export function leaseIdArg(what: string, text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < 1) throw new UsageError(`${what} must be a lease id (a positive whole number), not ${JSON.stringify(text)}`);
  return Number(text);
}

/** A lock or election name as the nodes accept it (1 to 256 bytes, no "/" at either end). */
export function nameArg(what: string, text: string): string {
  if (text === '') throw new UsageError(`${what} is empty`);
  if (Buffer.byteLength(text) > 256) throw new UsageError(`${what} is ${Buffer.byteLength(text)} bytes; at most 256`);
  if (text.startsWith('/') || text.endsWith('/')) throw new UsageError(`${what} ${JSON.stringify(text)} starts or ends with "/"`);
  return text;
}

export function connect(settings: EndpointSettings): Promise<ReplikitClient> {
  return ReplikitClient.connect({ endpoints: settings.endpoints, credentials: settings.credentials, timeoutMs: settings.timeoutMs });
}

/** SIGINT and SIGTERM, caught while `handlers` are installed: `signal` aborts with the name of the first. */
export class Interrupts {
  readonly #controller = new AbortController();
  readonly #listeners: [NodeJS.Signals, () => void][] = [];
  /** Keeps the process alive while it waits only on unref'd timers and promises. */
  readonly #keepAlive = setInterval(() => {}, 1 << 30);
  /** Every signal received, in order. */
  readonly received: NodeJS.Signals[] = [];

  constructor(onSignal?: (signal: NodeJS.Signals) => void) {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const listener = () => {
        this.received.push(sig);
        onSignal?.(sig);
        if (!this.#controller.signal.aborted) this.#controller.abort(sig);
      };
      process.on(sig, listener);
      this.#listeners.push([sig, listener]);
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The first signal received, if any. */
  get first(): NodeJS.Signals | undefined {
    return this.received[0];
  }

  /** Resolves at the first signal. */
  get next(): Promise<NodeJS.Signals> {
    if (this.first !== undefined) return Promise.resolve(this.first);
    return new Promise((resolve) => this.#controller.signal.addEventListener('abort', () => resolve(this.first!), { once: true }));
  }

  dispose(): void {
    clearInterval(this.#keepAlive);
    for (const [sig, listener] of this.#listeners) process.off(sig, listener);
  }
}

/** The exit status of a process ended by `signal`, as shells report it (128 + its number). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}
