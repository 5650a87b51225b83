/**
 * The ceiling: a bare grpc-js unary echo server, run as its own process like a replikit node.
 * Usage: tsx bench/echo-server.ts PORT [--interceptors]. Prints "ready" once bound.
 * With --interceptors it installs replikit's clock interceptors from the build (dist/), as an
 * application using the package would, not the source through tsx's transform.
 */
import { Server, ServerCredentials, type ServerInterceptor, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { loadBuiltClockInterceptors } from './built.js';

export const ECHO_PATH = '/bench.Echo/Echo';
const identity = (b: Buffer) => b;

const port = Number(process.argv[2] ?? 0);
const withInterceptors = process.argv.includes('--interceptors');
const interceptors: ServerInterceptor[] = withInterceptors
  ? [(await loadBuiltClockInterceptors()).server]
  : [];
const server = new Server({ interceptors });
server.addService(
  {
    echo: {
      path: ECHO_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  { echo: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, call.request) },
);
server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, bound) => {
  if (err) throw err;
  process.stdout.write(`ready ${bound}\n`);
});
