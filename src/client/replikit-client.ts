/**
 * A client of a replikit cluster over KvService: any node answers any request, so the client
 * holds one channel per endpoint and moves on to the next when one is unreachable. Reads (Get,
 * Range) and Compact are retried on the next endpoint while UNAVAILABLE within the call's
 * deadline (they change nothing, or the same thing twice); writes are not (a connection that
 * dropped may have carried the write), but the next call goes to the next endpoint. Watches
 * resume on the next endpoint from where they were complete (remote-watch.ts). Leases, locks and
 * elections (LeaseService, LockService, ElectionService) go over the same channels
 * (coordination.ts): `client.leases`, `client.lock(name)`, `client.election(name)`.
 *
 * Failures are {@link ReplikitError}s with the node's reason and details (`fromGrpcError`).
 */
import { connectivityState as ConnectivityState, credentials as grpcCredentials, Metadata, status as Status, type ChannelCredentials, type Client as GrpcClient, type ClientOptions, type ServiceError } from '@grpc/grpc-js';
import { invalidArgument, ReplikitError, unavailable } from '../errors.js';
import { Consistency, KvServiceClient, SortOrder, type CompactRequest, type CompactResponse, type DeleteRequest, type DeleteResponse, type GetRequest, type GetResponse, type PutRequest, type PutResponse, type RangeRequest, type RangeResponse, type TxnRequest, type TxnResponse } from '../gen/replikit/v1/kv_service.js';
import { fromGrpcError } from '../transport/status.js';
import { keyValueFromWire, RemoteWatch, type ResumeInfo } from './remote-watch.js';
import { RemoteElection, RemoteLeases, RemoteLock } from './coordination.js';
import { toBuffer, type Bytes, type KeyValue, type RangeOptions, type RangeResult, type WatchOptions, type WatchStream } from './types.js';

export interface ReplikitClientOptions {
  /** The nodes, as `host:port`; any of them answers any request. */
  readonly endpoints: readonly string[];
  /** Plaintext when absent (see `channelCredentialsOf` for TLS). */
  readonly credentials?: ChannelCredentials;
  /** The deadline of each call, and how long `connect` waits for a first endpoint. @default 5000 */
  readonly timeoutMs?: number;
  /** How long a watch keeps trying to resume after its stream failed before it ends with an error. @default 30000 */
  readonly resumeTimeoutMs?: number;
  /** grpc-js channel options for every endpoint. */
  readonly channelOptions?: ClientOptions;
}

export const CLIENT_DEFAULTS = { timeoutMs: 5_000, resumeTimeoutMs: 30_000, rangePageSize: 1_000 } as const;

const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

export class ReplikitClient {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  readonly resumeTimeoutMs: number;
  readonly #credentials: ChannelCredentials;
  readonly #channelOptions: ClientOptions | undefined;
  readonly #clients: (KvServiceClient | undefined)[];
  /** Clients of the other services, sharing each endpoint's channel. */
  readonly #services: Map<unknown, GrpcClient>[];
  #leases: RemoteLeases | undefined;
  /** The endpoint the next call goes to first. */
  #preferred = 0;
  #closed = false;
  readonly #watches = new Set<RemoteWatch>();

  private constructor(options: ReplikitClientOptions) {
    if (options.endpoints.length === 0) throw invalidArgument('NO_ENDPOINTS', 'give at least one endpoint (host:port)', { field: 'endpoints' });
    for (const e of options.endpoints) {
      const m = HOST_PORT.exec(e);
      if (m === null || Number(m[2]) > 65535) throw invalidArgument('ENDPOINT_INVALID', `endpoint ${JSON.stringify(e)} is not host:port (e.g. 127.0.0.1:7001)`, { field: 'endpoints' });
    }
    this.endpoints = [...options.endpoints];
    this.timeoutMs = positive('timeoutMs', options.timeoutMs ?? CLIENT_DEFAULTS.timeoutMs);
    this.resumeTimeoutMs = positive('resumeTimeoutMs', options.resumeTimeoutMs ?? CLIENT_DEFAULTS.resumeTimeoutMs);
    this.#credentials = options.credentials ?? grpcCredentials.createInsecure();
    this.#channelOptions = options.channelOptions;
    this.#clients = this.endpoints.map(() => undefined);
    this.#services = this.endpoints.map(() => new Map());
  }

  /**
   * A client of the cluster at `endpoints`, once one of them accepts a connection (within
   * `timeoutMs`; otherwise UNAVAILABLE naming them).
   */
  static async connect(options: ReplikitClientOptions): Promise<ReplikitClient> {
    const client = new ReplikitClient(options);
    try {
      client.#preferred = await client.#firstReady();
    } catch (err: unknown) {
      client.close();
      throw err;
    }
    return client;
  }

  /** One keyspace of the cluster. */
  keyspace(name: string): RemoteKeyspace {
    return new RemoteKeyspace(this, name);
  }

  /** Leases of the cluster's CP keyspaces (LeaseService): grant, keep alive, revoke, inspect. */
  get leases(): RemoteLeases {
    this.#leases ??= new RemoteLeases(this);
    return this.#leases;
  }

  /** The lock `name` (LockService), held by a lease. */
  lock(name: string): RemoteLock {
    return new RemoteLock(this, name);
  }

  /** The election `name` (ElectionService), whose campaigners hold leases. */
  election(name: string): RemoteElection {
    return new RemoteElection(this, name);
  }

  /** Closes every channel; watches end, kept leases stop being renewed. */
  close(): void {
    this.#closed = true;
    for (const w of [...this.#watches]) w.cancel();
    this.#leases?.closeStreams();
    for (const c of this.#clients) c?.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal the generated client of endpoint `index`. */
  clientOf(index: number): KvServiceClient {
    if (this.#closed) throw new ReplikitError('cancelled', 'CLIENT_CLOSED', 'the client is closed');
    let c = this.#clients[index];
    if (c === undefined) {
      c = new KvServiceClient(this.endpoints[index]!, this.#credentials, this.#channelOptions);
      this.#clients[index] = c;
    }
    return c;
  }

  /** @internal the generated client of another service on endpoint `index`, over the same channel. */
  serviceOf<C extends GrpcClient>(index: number, ctor: new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>) => C): C {
    const channel = this.clientOf(index).getChannel();
    const byService = this.#services[index]!;
    let c = byService.get(ctor) as C | undefined;
    if (c === undefined) {
      c = new ctor(this.endpoints[index]!, this.#credentials, { ...this.#channelOptions, channelOverride: channel });
      byService.set(ctor, c);
    }
    return c;
  }

  /** @internal the endpoint after `index` becomes the preferred one (when `index` still is). */
  failedOn(index: number): void {
    if (this.#preferred === index) this.#preferred = (index + 1) % this.endpoints.length;
  }

  /** @internal a watch that ends when the client closes. */
  track(watch: RemoteWatch): RemoteWatch {
    if (this.#closed) watch.cancel();
    else this.#watches.add(watch);
    return watch;
  }

  /** @internal */
  untrack(watch: RemoteWatch): void {
    this.#watches.delete(watch);
  }

  /** @internal the endpoint calls go to first. */
  get preferred(): number {
    return this.#preferred;
  }

  /**
   * @internal Calls a unary method on the preferred endpoint; on UNAVAILABLE moves the preference
   * on and, when `retry`, tries the next endpoint (backing off 50 → 1,000 ms) until the deadline.
   */
  unary<K extends keyof UnaryMethods>(name: K, request: UnaryMethods[K][0], retry: boolean): Promise<UnaryMethods[K][1]> {
    type Res = UnaryMethods[K][1];
    type Method = (request: UnaryMethods[K][0], metadata: Metadata, options: { deadline: Date }, callback: (err: ServiceError | null, res: Res) => void) => unknown;
    return this.call<Res>((index, deadline, callback) => {
      const client = this.clientOf(index);
      return (client[name] as unknown as Method).call(client, request, new Metadata(), { deadline }, callback);
    }, { retry });
  }

  /**
   * @internal Runs one unary call (`invoke` starts it on endpoint `index` with `deadline`) on the
   * preferred endpoint. On UNAVAILABLE the preference moves on; the call is tried again on the
   * next endpoint (backing off 50 → 1,000 ms) until the deadline when `retry` says so (true:
   * UNAVAILABLE only; a function: any failure it accepts). `timeoutMs` overrides the client's;
   * `signal` cancels the call (CANCELLED).
   */
  async call<Res>(
    invoke: (index: number, deadline: Date, callback: (err: ServiceError | null, res: Res) => void) => unknown,
    options: { readonly retry: boolean | ((error: ReplikitError) => boolean); readonly timeoutMs?: number; readonly signal?: AbortSignal },
  ): Promise<Res> {
    const deadline = Date.now() + (options.timeoutMs ?? this.timeoutMs);
    const retryable = typeof options.retry === 'function' ? options.retry : (e: ReplikitError) => options.retry === true && e.kind === 'unavailable';
    for (let attempt = 0; ; attempt++) {
      const index = this.#preferred;
      try {
        return await new Promise<Res>((resolve, reject) => {
          if (options.signal?.aborted) return reject(cancelledError());
          const call = invoke(index, new Date(deadline), (err, res) => {
            options.signal?.removeEventListener('abort', abort);
            if (err) reject(err);
            else resolve(res);
          }) as { cancel?: () => void } | undefined;
          const abort = () => call?.cancel?.();
          options.signal?.addEventListener('abort', abort, { once: true });
        });
      } catch (err: unknown) {
        if (!isServiceError(err)) throw err;
        const e = fromGrpcError(err);
        if (err.code === Status.UNAVAILABLE) this.failedOn(index);
        if (options.signal?.aborted) throw e;
        const pause = Math.min(1_000, 50 * 2 ** Math.min(attempt, 10));
        if (!retryable(e) || Date.now() + pause >= deadline) throw e;
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  }

  async #firstReady(): Promise<number> {
    const deadline = Date.now() + this.timeoutMs;
    const errors: string[] = [];
    return new Promise<number>((resolve, reject) => {
      let pending = this.endpoints.length;
      let done = false;
      this.endpoints.forEach((endpoint, i) =>
        this.#waitForReady(i, deadline, () => done || this.#closed, (error) => {
          if (done) return;
          if (error === undefined) {
            done = true;
            return resolve(i);
          }
          errors.push(`${endpoint}: ${error.message}`);
          if (--pending === 0) reject(unavailable('NO_ENDPOINT_REACHABLE', `no endpoint accepted a connection within ${this.timeoutMs} ms (${errors.join('; ')})`));
        }),
      );
    });
  }

  /**
   * grpc-js's `Client.waitForReady`, except that it stops looking once `stop()` holds. Theirs asks
   * the channel to connect again at every state change, even at the SHUTDOWN that `close()` causes,
   * which brings a closed channel back to CONNECTING with a timer that holds the process until the
   * deadline (grpc-js 1.14): a CLI given a dead endpoint would linger that long after its work.
   */
  #waitForReady(index: number, deadline: number, stop: () => boolean, callback: (error?: Error) => void): void {
    const channel = this.clientOf(index).getChannel();
    const check = (): void => {
      if (stop()) return;
      let state: ConnectivityState;
      try {
        state = channel.getConnectivityState(true);
      } catch {
        return callback(new Error('The channel has been closed'));
      }
      if (state === ConnectivityState.READY) return callback();
      if (state === ConnectivityState.SHUTDOWN) return callback(new Error('The channel has been closed'));
      try {
        channel.watchConnectivityState(state, deadline, (err) => (err ? callback(new Error('Failed to connect before the deadline')) : check()));
      } catch {
        callback(new Error('The channel has been closed'));
      }
    };
    setImmediate(check);
  }
}

/** The unary methods of KvService: request and response. */
interface UnaryMethods {
  put: [PutRequest, PutResponse];
  get: [GetRequest, GetResponse];
  delete: [DeleteRequest, DeleteResponse];
  txn: [TxnRequest, TxnResponse];
  range: [RangeRequest, RangeResponse];
  compact: [CompactRequest, CompactResponse];
}

/** What a remote watch takes beyond {@link WatchOptions}. */
export interface RemoteWatchOptions extends WatchOptions {
  /** How long to keep trying to resume after a failure; the client's `resumeTimeoutMs` when absent. */
  readonly resumeTimeoutMs?: number;
  /** Called before each attempt to resume (after a failure). */
  readonly onResume?: (info: ResumeInfo) => void;
  /** Called when a node confirms the watch, the first time and after each resume. */
  readonly onCreated?: (info: { readonly endpoint: string; readonly revision: number }) => void;
}

export interface PutResult {
  /** CP keyspaces: the write's revision (0 elsewhere). */
  readonly revision: number;
}

export interface GetResult {
  readonly found: boolean;
  /** The value, when found. */
  readonly value: Buffer | undefined;
  /** CP keyspaces: the revision the read saw. */
  readonly revision: number;
  readonly createRevision: number;
  readonly modRevision: number;
  /** Writes since the key was created. */
  readonly version: number;
}

/** One keyspace of a cluster, through a {@link ReplikitClient}. */
export class RemoteKeyspace {
  constructor(
    readonly client: ReplikitClient,
    readonly name: string,
  ) {}

  /** Writes a value; with `lease` (CP keyspaces), the key is deleted when that lease ends. */
  async put(key: Bytes, value: Bytes, options: { readonly lease?: number } = {}): Promise<PutResult> {
    const lease = BigInt(wholeNumber('lease', options.lease ?? 0));
    const res = await this.client.unary('put', { keyspace: this.name, key: toBuffer(key), value: toBuffer(value), sessionToken: Buffer.alloc(0), ack: 0, lease }, false);
    return { revision: Number(res.revision) };
  }

  async delete(key: Bytes): Promise<PutResult> {
    const res = await this.client.unary('delete', { keyspace: this.name, key: toBuffer(key), sessionToken: Buffer.alloc(0), ack: 0 }, false);
    return { revision: Number(res.revision) };
  }

  async get(key: Bytes, options: { serializable?: boolean } = {}): Promise<GetResult> {
    const consistency = options.serializable === true ? Consistency.CONSISTENCY_SERIALIZABLE : Consistency.CONSISTENCY_UNSPECIFIED;
    const res = await this.client.unary('get', { keyspace: this.name, key: toBuffer(key), sessionToken: Buffer.alloc(0), consistency }, true);
    return {
      found: res.found,
      value: res.found ? res.value : undefined,
      revision: Number(res.revision),
      createRevision: Number(res.createRevision),
      modRevision: Number(res.modRevision),
      version: Number(res.keyVersion),
    };
  }

  /** A transaction (CP keyspaces); see TxnRequest. */
  txn(request: Omit<TxnRequest, 'keyspace'>): Promise<TxnResponse> {
    return this.client.unary('txn', { ...request, keyspace: this.name }, false);
  }

  /** Reads a key, a range (`end`) or a prefix (`prefix`): one page of at most `limit` keys. */
  async range(key: Bytes, options: RangeOptions = {}): Promise<RangeResult> {
    const limit = wholeNumber('limit', options.limit ?? 0);
    const revision = wholeNumber('revision', options.revision ?? 0);
    const res = await this.client.unary(
      'range',
      {
        keyspace: this.name,
        key: toBuffer(key),
        rangeEnd: options.end === undefined ? Buffer.alloc(0) : toBuffer(options.end),
        prefix: options.prefix === true,
        limit: BigInt(limit),
        keysOnly: options.keysOnly === true,
        countOnly: options.countOnly === true,
        sortOrder: options.descending === true ? SortOrder.SORT_ORDER_DESCENDING : SortOrder.SORT_ORDER_ASCENDING,
        revision: BigInt(revision),
        consistency: options.serializable === true ? Consistency.CONSISTENCY_SERIALIZABLE : Consistency.CONSISTENCY_UNSPECIFIED,
        sessionToken: Buffer.alloc(0),
        continuation: options.continuation === undefined ? Buffer.alloc(0) : toBuffer(options.continuation),
      },
      true,
    );
    return {
      kvs: res.kvs.map(keyValueFromWire),
      count: Number(res.count),
      revision: Number(res.revision),
      more: res.more,
      ...(res.more ? { continuation: res.continuation } : {}),
      possiblyStale: res.possiblyStale,
    };
  }

  /**
   * Every key of a key, range or prefix, read a page (`limit` keys, 1,000 by default) at a time,
   * all pages at the revision of the first (CP keyspaces).
   */
  async *rangeAll(key: Bytes, options: Omit<RangeOptions, 'continuation' | 'countOnly'> = {}): AsyncGenerator<KeyValue, void, undefined> {
    const limit = options.limit === undefined || options.limit === 0 ? CLIENT_DEFAULTS.rangePageSize : options.limit;
    let continuation: Uint8Array | undefined;
    for (;;) {
      const page = await this.range(key, { ...options, limit, ...(continuation === undefined ? {} : { continuation }) });
      yield* page.kvs;
      if (!page.more || page.continuation === undefined) return;
      continuation = page.continuation;
    }
  }

  /** Discards the keyspace's history at and below `revision` (CP keyspaces). */
  async compact(revision: number): Promise<{ compactRevision: number; revision: number }> {
    const r = wholeNumber('revision', revision);
    const res = await this.client.unary('compact', { keyspace: this.name, revision: BigInt(r) }, true);
    return { compactRevision: Number(res.compactRevision), revision: Number(res.revision) };
  }

  /**
   * Watches a key, a range (`end`) or a prefix (`prefix`) from `fromRevision` (or from now): an
   * async iterator of event batches in revision order (and progress notifications with
   * `progressNotify`). It resumes on the next endpoint when its node fails, missing nothing and
   * repeating nothing; it ends with a WatchError (`compactRevision`) when the revision it needs
   * is compacted, or when it cannot resume within `resumeTimeoutMs`. `break` or `cancel()` ends it.
   *
   * Resuming elsewhere relies on revisions being the keyspace's, as they are in CP keyspaces.
   */
  watch(key: Bytes, options: RemoteWatchOptions = {}): RemoteWatch {
    const fromRevision = wholeNumber('fromRevision', options.fromRevision ?? 0);
    const progressIntervalMs = wholeNumber('progressIntervalMs', options.progressIntervalMs ?? 0);
    // eslint-disable-next-line prefer-const
    let watch: RemoteWatch | undefined;
    watch = new RemoteWatch({
      endpoints: this.client.endpoints,
      clientOf: (i) => this.client.clientOf(i),
      firstEndpoint: this.client.preferred,
      create: {
        keyspace: this.name,
        key: toBuffer(key),
        rangeEnd: options.end === undefined ? Buffer.alloc(0) : toBuffer(options.end),
        prefix: options.prefix === true,
        prevKv: options.prevKv === true,
        progressIntervalMs,
      },
      fromRevision,
      progressNotify: options.progressNotify === true,
      timeoutMs: this.client.timeoutMs,
      resumeTimeoutMs: positive('resumeTimeoutMs', options.resumeTimeoutMs ?? this.client.resumeTimeoutMs),
      ...(options.onResume === undefined ? {} : { onResume: options.onResume }),
      ...(options.onCreated === undefined ? {} : { onCreated: options.onCreated }),
      onEnd: () => {
        if (watch !== undefined) this.client.untrack(watch);
      },
    });
    return this.client.track(watch);
  }
}

function wholeNumber(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw invalidArgument('ARGUMENT_INVALID', `${name} must be a whole number ≥ 0, not ${value}`, { field: name });
  return value;
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw invalidArgument('ARGUMENT_INVALID', `${name} must be a positive whole number of milliseconds, not ${value}`, { field: name });
  return value;
}

function cancelledError(): ServiceError {
  return Object.assign(new Error('the call was cancelled'), { code: Status.CANCELLED, details: 'the call was cancelled', metadata: new Metadata() });
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';
}
