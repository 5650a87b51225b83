import { Client, credentials, Metadata, Server, ServerCredentials, status, type ServerDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterServiceService, StatusResponse } from '../../src/gen/replikit/v1/cluster_service.js';
import { ExchangeRequest, ReplicaServiceService, type ExchangeResponse } from '../../src/gen/replikit/v1/replica_service.js';
import { answeringUndecodable } from '../../src/transport/undecodable-requests.js';

/** Field 1, length-delimited, 127 bytes long: and then nothing. */
const GARBAGE = Buffer.from([0x0a, 0x7f]);
const identity = (b: Buffer) => b;

let server: Server;
let client: Client;
/** What the Exchange handler saw, per stream. */
const seen: { messages: bigint[]; errors: number }[] = [];
let statusCalls = 0;

beforeAll(async () => {
  server = new Server();
  server.addService(
    ...answeringUndecodable(ClusterServiceService, {
      status: (_call: unknown, callback: (err: null, res: StatusResponse) => void) => {
        statusCalls++;
        callback(null, { ...StatusResponse.decode(new Uint8Array(0)), nodeId: 'n1' });
      },
    }),
  );
  server.addService(
    ...answeringUndecodable(ReplicaServiceService, {
      exchange: (stream: ServerDuplexStream<ExchangeRequest, ExchangeResponse>) => {
        const mine = { messages: [] as bigint[], errors: 0 };
        seen.push(mine);
        stream.on('data', (req: ExchangeRequest) => {
          mine.messages.push(req.callId);
          stream.write({ callId: req.callId, hlc: undefined, raft: {} });
        });
        stream.on('error', () => mine.errors++);
        stream.on('end', () => stream.end());
      },
    }),
  );
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
});

afterAll(() => {
  client?.close();
  server?.forceShutdown();
});

function unary(payload: Buffer): Promise<ServiceError | null> {
  return new Promise((resolve) =>
    client.makeUnaryRequest(ClusterServiceService.status.path, identity, identity, payload, new Metadata(), { deadline: Date.now() + 2_000 }, (err) => resolve(err)),
  );
}

function exchange(frames: Buffer[]): Promise<{ code: number; details: string; answers: number }> {
  return new Promise((resolve) => {
    const stream = client.makeBidiStreamRequest(ReplicaServiceService.exchange.path, identity, identity, new Metadata(), { deadline: Date.now() + 2_000 });
    let answers = 0;
    stream.on('data', () => answers++);
    stream.on('error', () => {});
    stream.on('status', (s) => resolve({ code: s.code, details: s.details, answers }));
    for (const frame of frames) stream.write(frame);
    stream.end();
  });
}

const call = (callId: bigint) => Buffer.from(ExchangeRequest.encode({ ...ExchangeRequest.decode(new Uint8Array(0)), callId }).finish());

describe('answeringUndecodable: a request message that does not parse', () => {
  it('is answered INVALID_ARGUMENT (REQUEST_UNPARSABLE, naming the method) on a unary method, whose handler never runs', async () => {
    const err = await unary(GARBAGE);
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/^a request message to \/replikit\.v1\.ClusterService\/Status does not parse as that method's request: /);
    expect(err?.metadata.get('replikit-reason')).toEqual(['REQUEST_UNPARSABLE']);
    expect(statusCalls).toBe(0);
    expect(await unary(Buffer.alloc(0))).toBeNull();
    expect(statusCalls).toBe(1);
  });

  it('ends a stream INVALID_ARGUMENT after answering the messages before it; the handler sees an error and nothing after', async () => {
    const result = await exchange([call(1n), call(2n), GARBAGE, call(3n)]);
    expect(result.code, result.details).toBe(status.INVALID_ARGUMENT);
    expect(result.details).toMatch(/ReplicaService\/Exchange does not parse/);
    expect(result.answers).toBe(2);
    expect(seen.at(-1)).toEqual({ messages: [1n, 2n], errors: 1 });

    const clean = await exchange([call(4n), call(5n)]);
    expect(clean).toEqual({ code: status.OK, details: 'OK', answers: 2 });
  });
});
