import type { ApplyOutcome, Entry, Version } from '../storage/entry.js';
import { StoreClosedError, type ConflictResolver, type Store, type StoreSnapshot } from '../storage/store.js';

/**
 * A store that stops the node at its first operating failure (a failed fsync, a full disk): the
 * failure is reported once through `onFailure`, and every later call fails with the same error.
 *
 * Why fail-stop: after a failed fsync the kernel may have dropped the dirty pages and cleared the
 * error, so a retried sync can "succeed" over lost data (PostgreSQL's fsyncgate, 2018). A process
 * that retries and carries on may acknowledge writes it no longer holds; one that stops loses
 * nothing it acknowledged, and restarts from what the disk really has.
 *
 * Programmer errors (RangeError: a bad keyspace name or key size) and calls after `close()` are
 * passed through unchanged: they say nothing about the medium.
 */
export class FailStopStore implements Store {
  readonly #inner: Store;
  readonly #onFailure: (error: unknown) => void;
  #failure: unknown;

  constructor(inner: Store, onFailure: (error: unknown) => void) {
    this.#inner = inner;
    this.#onFailure = onFailure;
  }

  /** The failure that stopped the store, or undefined while it is healthy. */
  get failure(): unknown {
    return this.#failure;
  }

  get(keyspace: string, key: Uint8Array): Entry | undefined {
    this.#assertHealthy();
    return this.#guardSync(() => this.#inner.get(keyspace, key));
  }

  readDurable(keyspace: string, key: Uint8Array): Promise<Entry | undefined> {
    return this.#guard(() => this.#inner.readDurable(keyspace, key));
  }

  apply(keyspace: string, entries: readonly Entry[], resolve?: ConflictResolver): Promise<ApplyOutcome[]> {
    return this.#guard(() => this.#inner.apply(keyspace, entries, resolve));
  }

  remove(keyspace: string, items: readonly { readonly key: Uint8Array; readonly version: Version }[]): Promise<number> {
    return this.#guard(() => this.#inner.remove(keyspace, items));
  }

  snapshot(keyspace: string, metaName: string): StoreSnapshot {
    return this.#guardSync(() => this.#inner.snapshot(keyspace, metaName));
  }

  entries(keyspace: string): Entry[] {
    this.#assertHealthy();
    return this.#guardSync(() => this.#inner.entries(keyspace));
  }

  getMeta(name: string): Uint8Array | undefined {
    this.#assertHealthy();
    return this.#guardSync(() => this.#inner.getMeta(name));
  }

  putMeta(name: string, value: Uint8Array): Promise<void> {
    return this.#guard(() => this.#inner.putMeta(name, value));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #assertHealthy(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  #guardSync<T>(call: () => T): T {
    try {
      return call();
    } catch (error) {
      this.#fail(error);
      throw error;
    }
  }

  async #guard<T>(call: () => Promise<T>): Promise<T> {
    this.#assertHealthy();
    try {
      return await call();
    } catch (error) {
      this.#fail(error);
      throw error;
    }
  }

  #fail(error: unknown): void {
    if (error instanceof RangeError || error instanceof StoreClosedError || this.#failure !== undefined) return;
    this.#failure = error;
    this.#onFailure(error);
  }
}
