/**
 * What replikit's clock interceptors cost per call, in one process: a grpc-js unary echo server
 * and client on loopback, driven by 64 callers, bare and with the interceptors on both sides,
 * alternating in rounds. Reports CPU microseconds per call (client + server, since both live in
 * this process) and the ratio. The interceptors come from dist/ (`npm run build` first).
 * Usage: npx tsx bench/interceptor-cost.ts [--rounds N] [--calls N]
 */
import { Client, Server, ServerCredentials, credentials, type Interceptor, type ServerInterceptor } from '@grpc/grpc-js';
import { loadBuiltClockInterceptors } from './built.js';

const PATH = '/bench.Echo/Echo';
const identity = (b: Buffer): Buffer => b;
const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const rounds = arg('--rounds', 5);
const callsPerRound = arg('--calls', 20_000);
const CONCURRENCY = 64;
const value = Buffer.alloc(100, 7);

async function startPair(withInterceptors: boolean): Promise<{ client: Client; server: Server }> {
  const pair = await loadBuiltClockInterceptors();
  const serverInterceptors: ServerInterceptor[] = withInterceptors ? [pair.server] : [];
  const clientInterceptors: Interceptor[] = withInterceptors ? [pair.client] : [];
  const server = new Server({ interceptors: serverInterceptors });
  server.addService(
    { echo: { path: PATH, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    { echo: (call: { request: Buffer }, callback: (e: null, v: Buffer) => void) => callback(null, call.request) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), { interceptors: clientInterceptors });
  return { client, server };
}

function call(client: Client): Promise<void> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(PATH, identity, identity, value, (err) => (err ? reject(err) : resolve())),
  );
}

async function drive(client: Client, calls: number): Promise<number> {
  let issued = 0;
  const started = process.cpuUsage();
  const caller = async (): Promise<void> => {
    while (issued < calls) {
      issued++;
      await call(client);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, caller));
  const used = process.cpuUsage(started);
  return (used.user + used.system) / calls;
}

const bare = await startPair(false);
const intercepted = await startPair(true);
await drive(bare.client, 5000);
await drive(intercepted.client, 5000);
const bareUs: number[] = [];
const interceptedUs: number[] = [];
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? [false, true] : [true, false];
  for (const withInterceptors of order) {
    const us = await drive(withInterceptors ? intercepted.client : bare.client, callsPerRound);
    (withInterceptors ? interceptedUs : bareUs).push(us);
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const b = median(bareUs);
const i = median(interceptedUs);
console.log(`CPU per call (client + server, one process, ${CONCURRENCY} callers, median of ${rounds} rounds of ${callsPerRound}):`);
console.log(`  bare          ${b.toFixed(1)} µs   rounds: ${bareUs.map((x) => x.toFixed(1)).join(' ')}`);
console.log(`  interceptors  ${i.toFixed(1)} µs   rounds: ${interceptedUs.map((x) => x.toFixed(1)).join(' ')}`);
console.log(`  cost ${(i - b).toFixed(1)} µs per call; throughput bound ratio bare/interceptors = ${(b / i).toFixed(3)}×`);
for (const p of [bare, intercepted]) {
  p.client.close();
  p.server.forceShutdown();
}
