import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { credentials, loadPackageDefinition, makeClientConstructor, Metadata, type ChannelCredentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import { sampleMetric } from '../../src/ops/metrics-text.js';

type Callback<T> = (err: ServiceError | null, value: T) => void;
type UnaryMethod<Req, Res> = (req: Req, metadata: Metadata, options: { deadline: number }, cb: Callback<Res>) => void;

/** grpc.health.v1.Health/Check: 'SERVING' or 'NOT_SERVING'; rejects with NOT_FOUND for an unknown name. */
export async function healthCheck(address: string, service = '', creds: ChannelCredentials = credentials.createInsecure()): Promise<string> {
  const HealthClient = makeClientConstructor(healthService, 'grpc.health.v1.Health');
  const client = new HealthClient(address, creds) as unknown as Client & { check: UnaryMethod<{ service: string }, { status: string }> };
  try {
    return await new Promise<string>((resolve, reject) =>
      client.check({ service }, new Metadata(), { deadline: Date.now() + 2_000 }, (err, res) => (err ? reject(err) : resolve(res.status))),
    );
  } finally {
    client.close();
  }
}

const REFLECTION_PROTO_ROOT = fileURLToPath(new URL('../../node_modules/@grpc/reflection/build/proto/', import.meta.url));

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

/**
 * One request on grpc.reflection.<version>.ServerReflection/ServerReflectionInfo (a bidi stream),
 * as grpcurl sends it: `{ listServices: '' }` or `{ fileContainingSymbol: 'replikit.v1.KvService' }`.
 */
export async function reflect(address: string, version: 'v1' | 'v1alpha', req: Record<string, string>): Promise<ReflectionResponse> {
  const def = loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [REFLECTION_PROTO_ROOT] });
  const pkg = loadPackageDefinition(def) as unknown as { grpc: { reflection: Record<string, { ServerReflection: new (a: string, c: ChannelCredentials) => Client }> } };
  const client = new pkg.grpc.reflection[version]!.ServerReflection(address, credentials.createInsecure()) as Client & {
    serverReflectionInfo: (md: Metadata, options: { deadline: number }) => NodeJS.ReadWriteStream & { end(): void; write(m: unknown): boolean };
  };
  try {
    return await new Promise<ReflectionResponse>((resolve, reject) => {
      const call = client.serverReflectionInfo(new Metadata(), { deadline: Date.now() + 3_000 });
      call.on('data', (res: ReflectionResponse) => {
        resolve(res);
        call.end();
      });
      call.on('error', reject);
      call.write(req);
    });
  } finally {
    client.close();
  }
}

/** GET /metrics: the body and how long the answer took, in ms. */
export function scrape(address: string): Promise<{ body: string; ms: number; status: number; contentType: string }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ host, port, path: '/metrics', method: 'GET', timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ body, ms: performance.now() - t0, status: res.statusCode ?? 0, contentType: String(res.headers['content-type']) }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('scrape timed out')));
    req.end();
  });
}

/** One sample out of a `/metrics` text (see src/ops/metrics-text.ts). */
export const sample = sampleMetric;
