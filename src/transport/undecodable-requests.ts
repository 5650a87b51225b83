/**
 * Request messages that do not parse are the caller's fault: INVALID_ARGUMENT, not INTERNAL.
 *
 * grpc-js answers INTERNAL ("Error deserializing request") when a request's deserializer throws
 * (server-interceptors.ts, `decompressAndMaybePush`), and its base call sends that status itself,
 * so no interceptor can change the code. INTERNAL tells a client "the server's bug, perhaps retry
 * elsewhere"; bytes that are not the method's message are the caller's, which INVALID_ARGUMENT
 * says (the Google error model, and replikit's promise that the status alone tells "your fault"
 * apart). So the deserializers of replikit's services never throw: a message that does not parse
 * becomes an {@link Undecodable}, which never reaches a handler. A unary call is answered
 * INVALID_ARGUMENT; a stream is ended with INVALID_ARGUMENT, since a message that cannot be read
 * cannot be answered on its own (an Exchange call's `call_id` is inside it) and a peer that sends
 * one is broken.
 */
import type {
  MethodDefinition,
  sendUnaryData,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { invalidArgument } from '../errors.js';
import { toGrpcStatus } from './status.js';

/** What a request deserializer returns for bytes that are not its message. */
export class Undecodable {
  constructor(
    /** The method whose request it was meant to be, `/package.Service/Method`. */
    readonly path: string,
    /** The parser's complaint. */
    readonly reason: string,
  ) {}

  /** The status that answers it: INVALID_ARGUMENT, reason REQUEST_UNPARSABLE. */
  status(): ReturnType<typeof toGrpcStatus> {
    return toGrpcStatus(
      invalidArgument('REQUEST_UNPARSABLE', `a request message to ${this.path} does not parse as that method's request: ${this.reason}`, { method: this.path }),
    );
  }
}

type AnyMethod = MethodDefinition<unknown, unknown>;
type AnyHandler = (...args: never[]) => void;

/**
 * The service definition and implementation to hand to `server.addService(...)`, changed so that
 * an unparsable request message is answered INVALID_ARGUMENT (see the module comment) and never
 * reaches `implementation`.
 */
export function answeringUndecodable<S extends ServiceDefinition, I extends UntypedServiceImplementation>(service: S, implementation: I): [S, I] {
  const definition: Record<string, AnyMethod> = {};
  const handlers: Record<string, AnyHandler> = {};
  for (const [name, method] of Object.entries(service as Record<string, AnyMethod>)) {
    definition[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error: unknown) {
          return new Undecodable(method.path, error instanceof Error ? error.message : String(error));
        }
      },
    };
    const handler = implementation[name] as AnyHandler | undefined;
    if (handler !== undefined) handlers[name] = guardHandler(method, handler);
  }
  return [definition as S, { ...implementation, ...handlers }];
}

function guardHandler(method: AnyMethod, handler: AnyHandler): AnyHandler {
  if (!method.requestStream) {
    if (!method.responseStream) {
      const unary = handler as (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;
      return ((call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        if (call.request instanceof Undecodable) return callback(call.request.status());
        unary(call, callback);
      }) as AnyHandler;
    }
    const serverStreaming = handler as (call: ServerWritableStream<unknown, unknown>) => void;
    return ((call: ServerWritableStream<unknown, unknown>) => {
      if (call.request instanceof Undecodable) {
        call.emit('error', call.request.status());
        return;
      }
      serverStreaming(call);
    }) as AnyHandler;
  }
  // Client and bidirectional streams: grpc-js pushes each parsed message into the stream the
  // handler reads. The first unparsable one ends the call instead (grpc-js answers an 'error'
  // event with that status once what was written before it is sent), and neither it nor anything
  // after it is delivered: the handler sees the 'error', as when a stream is cut.
  const streaming = handler as (call: ServerReadableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>, ...rest: unknown[]) => void;
  return ((call: ServerReadableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>, ...rest: unknown[]) => {
    const push = call.push.bind(call);
    let refused = false;
    call.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (refused) return false;
      if (chunk instanceof Undecodable) {
        refused = true;
        call.emit('error', chunk.status());
        return false;
      }
      return push(chunk, encoding);
    };
    streaming(call, ...rest);
  }) as AnyHandler;
}
