import { credentials, Metadata, status as Status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { channelCredentialsOf, readTlsFiles, TlsConfigError } from '../ops/tls.js';
import { hostPortFlag, intFlag, type ParsedArgs, UsageError } from './args.js';

/** Flags every client command takes. */
export const CLIENT_FLAGS = {
  target: {},
  json: { boolean: true },
  'timeout-ms': {},
  'tls-ca': {},
  'tls-cert': {},
  'tls-key': {},
} as const;

/** The usage text of {@link CLIENT_FLAGS}' TLS part. */
export const TLS_CLIENT_USAGE = '[--tls-ca PEM [--tls-cert PEM --tls-key PEM]]';

/** The default deadline of a CLI call: longer than a node's own request timeout (3 s), so the node answers first. */
export const DEFAULT_CLI_TIMEOUT_MS = 5_000;

export interface ClientSettings {
  readonly target: string;
  readonly json: boolean;
  readonly timeoutMs: number;
  /** Plaintext, or TLS when any --tls-* flag is given (with a client certificate for mutual TLS). */
  readonly credentials: ChannelCredentials;
}

export function clientSettings(args: ParsedArgs): ClientSettings {
  const target = args.flags.get('target');
  if (target === undefined) throw new UsageError('--target HOST:PORT is required');
  return {
    target: hostPortFlag('target', target),
    json: args.switches.has('json'),
    timeoutMs: args.flags.has('timeout-ms') ? intFlag('timeout-ms', args.flags.get('timeout-ms')!, 1, 3_600_000) : DEFAULT_CLI_TIMEOUT_MS,
    credentials: tlsCredentials(args),
  };
}

function tlsCredentials(args: ParsedArgs): ChannelCredentials {
  try {
    const tls = readTlsFiles({ caFile: args.flags.get('tls-ca'), certFile: args.flags.get('tls-cert'), keyFile: args.flags.get('tls-key') });
    return tls === undefined ? credentials.createInsecure() : channelCredentialsOf(tls);
  } catch (err: unknown) {
    if (err instanceof TlsConfigError) throw new UsageError(err.message);
    throw err;
  }
}

/** Flags of the commands that go through {@link ReplikitClient} with failover: `--endpoints` besides `--target`. */
export const ENDPOINT_FLAGS = { ...CLIENT_FLAGS, endpoints: {} } as const;

/** The usage text of {@link ENDPOINT_FLAGS}' endpoint part. */
export const ENDPOINTS_USAGE = '(--target HOST:PORT | --endpoints HOST:PORT,HOST:PORT,...)';

export interface EndpointSettings extends Omit<ClientSettings, 'target'> {
  /** The nodes, in the order tried: `--endpoints`, or `--target` alone. */
  readonly endpoints: readonly string[];
}

/**
 * Settings of a command that takes `--target` or `--endpoints` (one of them, not both). With
 * `waitFlag`, --timeout-ms is the command's own (how long it waits for a lock or to lead) and
 * calls keep the default deadline.
 */
export function endpointSettings(args: ParsedArgs, options: { readonly waitFlag?: boolean } = {}): EndpointSettings {
  const list = args.flags.get('endpoints');
  const target = args.flags.get('target');
  if (list !== undefined && target !== undefined) throw new UsageError('give --target or --endpoints, not both');
  if (list === undefined && target === undefined) throw new UsageError('--target HOST:PORT or --endpoints HOST:PORT,... is required');
  const endpoints = list === undefined ? [hostPortFlag('target', target!)] : list.split(',').map((e) => hostPortFlag('endpoints', e.trim()));
  if (endpoints.length === 0 || endpoints.some((e) => e === '')) throw new UsageError('--endpoints needs at least one HOST:PORT');
  return {
    endpoints,
    json: args.switches.has('json'),
    timeoutMs: args.flags.has('timeout-ms') && options.waitFlag !== true ? intFlag('timeout-ms', args.flags.get('timeout-ms')!, 1, 3_600_000) : DEFAULT_CLI_TIMEOUT_MS,
    credentials: tlsCredentials(args),
  };
}

export const insecure = credentials.createInsecure;

/** Calls a unary method in the callback style of generated clients, as a promise. */
export function unary<Req, Res>(
  method: (req: Req, metadata: Metadata, options: { deadline: number }, cb: (err: ServiceError | null, res: Res) => void) => unknown,
  request: Req,
  timeoutMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Prints a failed call as `STATUS_NAME: message` and returns exit status 1. */
export function reportCallError(command: string, err: unknown): number {
  if (isServiceError(err)) {
    process.stderr.write(`replikit ${command}: ${Status[err.code] ?? err.code}: ${err.details || err.message}\n`);
    return 1;
  }
  throw err;
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';
}

/** Decodes `--session` (the base64 `sessionToken` that `--json` prints). */
export function sessionFlag(text: string | undefined): Buffer {
  if (text === undefined) return Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) throw new UsageError('--session must be the base64 sessionToken printed by --json');
  return Buffer.from(text, 'base64');
}
