import {
  Client,
  Metadata,
  Server,
  ServerCredentials,
  credentials,
  makeGenericClientConstructor,
  status,
  type CallOptions,
  type Interceptor,
  type ServerInterceptor,
  type ServerUnaryCall,
  type ServiceDefinition,
  type ServiceError,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';

/**
 * Real grpc-js servers and clients on 127.0.0.1, port 0, for interceptor tests. Every server and
 * client made through a harness is closed by `closeAll()`, which each test file calls in
 * afterEach so that vitest exits.
 */
export class GrpcHarness {
  readonly #servers: Server[] = [];
  readonly #clients: Client[] = [];

  /** Starts a server with `interceptors`, lets `setup` add services, and returns its address. */
  async startServer(interceptors: ServerInterceptor[], setup: (server: Server) => void): Promise<string> {
    const server = new Server({ interceptors });
    setup(server);
    this.#servers.push(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, boundPort) =>
        err === null ? resolve(boundPort) : reject(err),
      ),
    );
    return `127.0.0.1:${port}`;
  }

  /** Registers a client made elsewhere (e.g. a generated one) so that it is closed too. */
  track<C extends Client>(client: C): C {
    this.#clients.push(client);
    return client;
  }

  echoClient(address: string, interceptors: Interceptor[] = []): Client {
    return this.track(new EchoClient(address, credentials.createInsecure(), { interceptors }));
  }

  closeAll(): void {
    for (const client of this.#clients.splice(0)) client.close();
    for (const server of this.#servers.splice(0)) server.forceShutdown();
  }
}

/**
 * A test-only "application" service with no proto: raw Buffers in and out. `Echo` answers its
 * request; `Fail` answers with the status named by the request's text (an integer), so that a
 * trailers-only response can be provoked.
 */
/** A unary method whose messages are raw bytes: no proto needed for a test service. */
function rawUnaryMethod(path: string) {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Buffer) => value,
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: (value: Buffer) => value,
    responseDeserialize: (bytes: Buffer) => bytes,
  } as const;
}

export const echoServiceDefinition: ServiceDefinition = {
  echo: rawUnaryMethod('/test.EchoService/Echo'),
  fail: rawUnaryMethod('/test.EchoService/Fail'),
};

export const EchoClient = makeGenericClientConstructor(echoServiceDefinition, 'test.EchoService');

/** The echo service; `onCall` sees every call (its metadata) before it is answered. */
export function echoService(
  onCall: (call: ServerUnaryCall<Buffer, Buffer>) => void = () => {},
): UntypedServiceImplementation {
  return {
    echo(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) {
      onCall(call);
      callback(null, call.request);
    },
    fail(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) {
      onCall(call);
      callback({ code: Number(call.request.toString()), details: 'failed on purpose' });
    },
  };
}

/** The outcome of one unary call, with the response headers and trailers the client saw. */
export interface UnaryOutcome {
  readonly response: Buffer | undefined;
  readonly error: ServiceError | undefined;
  readonly headers: Metadata | undefined;
  readonly trailers: Metadata | undefined;
}

/** Calls `Echo` (or `Fail`) and resolves with whatever happened; never rejects. */
export function callEcho(
  client: Client,
  request: Buffer | string,
  options: { metadata?: Metadata; method?: 'echo' | 'fail'; callOptions?: Partial<CallOptions> } = {},
): Promise<UnaryOutcome> {
  const method = echoServiceDefinition[options.method ?? 'echo']!;
  return new Promise((resolve) => {
    let headers: Metadata | undefined;
    let trailers: Metadata | undefined;
    let settled: { response: Buffer | undefined; error: ServiceError | undefined } | undefined;
    const finish = (): void => {
      if (settled !== undefined && trailers !== undefined) resolve({ ...settled, headers, trailers });
    };
    const call = client.makeUnaryRequest<Buffer, Buffer>(
      method.path,
      (value) => value,
      (bytes) => bytes,
      Buffer.from(request),
      options.metadata ?? new Metadata(),
      { deadline: Date.now() + 10_000, ...options.callOptions },
      (error, response) => {
        settled = { response, error: error ?? undefined };
        finish();
      },
    );
    call.on('metadata', (metadata: Metadata) => {
      headers = metadata;
    });
    call.on('status', (s: { metadata: Metadata }) => {
      trailers = s.metadata;
      finish();
    });
  });
}

export { status };
