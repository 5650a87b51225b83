import { KvServiceClient, type DeleteResponse, type GetResponse, type PutResponse, DeleteResponse as DeleteJson, GetResponse as GetJson, PutResponse as PutJson } from '../../gen/replikit/v1/kv_service.js';
import { parseArgs, UsageError } from '../args.js';
import { CLIENT_FLAGS, clientSettings, reportCallError, sessionFlag, TLS_CLIENT_USAGE, unary } from '../client.js';
import type { Command } from '../main.js';

const SPEC = { ...CLIENT_FLAGS, keyspace: {}, session: {} } as const;

/** Exit status of `get` for a key that holds nothing, so scripts can tell it from an error. */
export const EXIT_NOT_FOUND = 3;

const COMMON = `--target HOST:PORT [--keyspace K] [--session TOKEN] [--json] [--timeout-ms N] ${TLS_CLIENT_USAGE}`;

function formatVersion(v: PutResponse['version']): string {
  return v === undefined ? '-' : `${v.hlc?.wallTimeMs ?? 0n}.${v.hlc?.logical ?? 0}@${v.nodeId}`;
}

function tokenLine(token: Buffer): string {
  return token.byteLength > 0 ? `\nsession ${token.toString('base64')}` : '';
}

function kvCommand(name: 'put' | 'get' | 'delete', positionals: string, summary: string, want: number): Command {
  return {
    summary,
    usage: `usage: replikit ${name} ${COMMON} ${positionals}`,
    async run(argv) {
      const args = parseArgs(argv, SPEC);
      const settings = clientSettings(args);
      if (args.positionals.length !== want) {
        throw new UsageError(`${name} takes ${positionals}; got ${args.positionals.length} argument(s)`);
      }
      const [key, value] = args.positionals as [string, string | undefined];
      const keyspace = args.flags.get('keyspace') ?? 'default';
      const sessionToken = sessionFlag(args.flags.get('session'));
      const client = new KvServiceClient(settings.target, settings.credentials);
      try {
        const request = { keyspace, key: Buffer.from(key, 'utf8'), sessionToken };
        if (name === 'put') {
          const res: PutResponse = await unary(client.put.bind(client), { ...request, value: Buffer.from(value!, 'utf8'), ack: 0 }, settings.timeoutMs);
          print(settings.json, PutJson.toJSON(res), () => `OK ${formatVersion(res.version)}${tokenLine(res.sessionToken)}`);
          return 0;
        }
        if (name === 'delete') {
          const res: DeleteResponse = await unary(client.delete.bind(client), { ...request, ack: 0 }, settings.timeoutMs);
          print(settings.json, DeleteJson.toJSON(res), () => `OK deleted ${formatVersion(res.version)}${tokenLine(res.sessionToken)}`);
          return 0;
        }
        const res: GetResponse = await unary(client.get.bind(client), request, settings.timeoutMs);
        if (!res.found && !settings.json) {
          process.stderr.write(`replikit get: not found: key ${JSON.stringify(key)} in keyspace ${keyspace}${tokenLine(res.sessionToken)}\n`);
          return EXIT_NOT_FOUND;
        }
        print(settings.json, GetJson.toJSON(res), () => res.value.toString('utf8') + tokenLine(res.sessionToken));
        return res.found ? 0 : EXIT_NOT_FOUND;
      } catch (err: unknown) {
        return reportCallError(name, err);
      } finally {
        client.close();
      }
    },
  };
}

function print(json: boolean, message: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(message)}\n` : `${text()}\n`);
}

export const putCommand = kvCommand('put', 'KEY VALUE', 'write a value', 2);
export const getCommand = kvCommand('get', 'KEY', 'read a value (exit 3 when not found)', 1);
export const deleteCommand = kvCommand('delete', 'KEY', 'delete a key', 1);
