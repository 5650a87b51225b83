import { credentials, Metadata, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { Consistency, KvServiceClient, type GetResponse, type PutResponse, type TxnRequest, type TxnResponse } from '../../src/gen/replikit/v1/kv_service.js';

/** A thin promise wrapper over the generated KvService client, for tests. */
export class TestKvClient {
  readonly raw: KvServiceClient;

  constructor(address: string, creds: ChannelCredentials = credentials.createInsecure()) {
    this.raw = new KvServiceClient(address, creds);
  }

  put(key: string | Buffer, value: string | Buffer, opts: { keyspace?: string; timeoutMs?: number; sessionToken?: Buffer } = {}): Promise<PutResponse> {
    return new Promise((resolve, reject) =>
      this.raw.put(
        { keyspace: opts.keyspace ?? 'default', key: Buffer.from(key), value: Buffer.from(value), sessionToken: opts.sessionToken ?? Buffer.alloc(0), ack: 0, lease: 0n },
        new Metadata(),
        { deadline: Date.now() + (opts.timeoutMs ?? 5_000) },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
  }

  get(key: string | Buffer, opts: { keyspace?: string; timeoutMs?: number; sessionToken?: Buffer; consistency?: Consistency } = {}): Promise<GetResponse> {
    return new Promise((resolve, reject) =>
      this.raw.get(
        { keyspace: opts.keyspace ?? 'default', key: Buffer.from(key), sessionToken: opts.sessionToken ?? Buffer.alloc(0), consistency: opts.consistency ?? Consistency.CONSISTENCY_UNSPECIFIED },
        new Metadata(),
        { deadline: Date.now() + (opts.timeoutMs ?? 5_000) },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
  }

  /** A transaction; `request` gets the default keyspace and empty lists where it leaves them out. */
  txn(request: Partial<TxnRequest>, opts: { timeoutMs?: number } = {}): Promise<TxnResponse> {
    const full: TxnRequest = { keyspace: 'default', compares: [], success: [], failure: [], ...request };
    return new Promise((resolve, reject) =>
      this.raw.txn(full, new Metadata(), { deadline: Date.now() + (opts.timeoutMs ?? 5_000) }, (err, res) => (err ? reject(err) : resolve(res))),
    );
  }

  close(): void {
    this.raw.close();
  }
}

export function statusOf(err: unknown): string {
  const code = (err as ServiceError).code;
  return typeof code === 'number' ? (status[code] ?? String(code)) : `not a gRPC error: ${String(err)}`;
}

/** Retries while the call fails with UNAVAILABLE ("nothing happened, retry"), up to `limitMs`. */
export async function retryUnavailable<T>(fn: () => Promise<T>, limitMs = 5_000): Promise<T> {
  const deadline = performance.now() + limitMs;
  for (;;) {
    try {
      return await fn();
    } catch (err: unknown) {
      if ((err as ServiceError).code !== status.UNAVAILABLE || performance.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
