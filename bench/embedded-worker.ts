/**
 * One replikit node embedded in this process, as an application embeds it, and the benchmark's
 * load run against it through the embedding API (`node.keyspace('default')`): no client, no
 * socket between the callers and the node. Started by bench/embedded.ts as one member of a
 * three-node cluster whose other two members are `replikit serve` processes.
 *
 *   node --import tsx bench/embedded-worker.ts --id n1 --listen HOST:PORT --peers n2=HOST:PORT,n3=HOST:PORT --data-dir DIR
 *
 * The node is the compiled package (dist/), as an application imports it; only this file and the
 * load loop run through tsx. It is configured as `replikit serve --policy cp` would configure it
 * (src/cli/commands/serve.ts): keyspace "default" on CP, LmdbStore in the data directory with
 * synchronous commits, a pino logger at warn, process metrics on, every other setting default.
 *
 * It talks to its parent over the IPC channel (advanced serialization, so NaN and bigint survive):
 * it sends {@link WorkerReady} once the node serves, then answers each {@link WorkerRequest} with
 * one {@link WorkerReply} of the same id.
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type * as Replikit from '../src/index.js';
import { cpuMsOf } from './cpu-usage.js';
import { runLoad, type LoadOp, type LoadResult } from './load.js';
import { replikitSwapOutcome, replikitSwapRequest } from './replikit-swap.js';
import type { OpName } from './report.js';
import { KEY_COUNT, OwnedKeySwaps, VALUE, keyOf, type Swap } from './workload.js';

/** The one keyspace `replikit serve --policy cp` binds, and the one the load uses. */
const KEYSPACE = 'default';
/** Puts in flight while the put/get keys are first written, as for the other systems. */
const PREFILL_CONCURRENCY = 32;

export interface WorkerReady {
  readonly type: 'ready';
}

export type WorkerRequest =
  | { readonly id: number; readonly call: 'prefill' }
  | { readonly id: number; readonly call: 'probe' }
  | {
      readonly id: number;
      readonly call: 'measure';
      readonly op: OpName;
      readonly concurrency: number;
      readonly durationMs: number;
      readonly warmupMs: number;
      /** The other members' processes, whose CPU counts with this one's. */
      readonly peerPids: readonly number[];
    };

/** What a measure answers: the load's result and the CPU of the whole cluster over its window. */
export interface WorkerMeasurement {
  readonly result: LoadResult;
  readonly serverCpuMs?: number;
}

export type WorkerReply = { readonly id: number; readonly ok: true; readonly value?: WorkerMeasurement } | { readonly id: number; readonly ok: false; readonly error: string };

function send(message: WorkerReady | WorkerReply): void {
  process.send!(message);
}

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error('embedded-worker runs under bench/embedded.ts, with an IPC channel');
  const { values } = parseArgs({
    options: { id: { type: 'string' }, listen: { type: 'string' }, peers: { type: 'string' }, 'data-dir': { type: 'string' } },
    strict: true,
  });
  const { id, listen, peers, 'data-dir': dataDir } = values;
  if (id === undefined || listen === undefined || peers === undefined || dataDir === undefined) {
    throw new Error('embedded-worker needs --id, --listen, --peers and --data-dir');
  }
  const dist = fileURLToPath(new URL('../dist/', import.meta.url));
  const replikit = (await import(pathToFileURL(`${dist}index.js`).href)) as typeof Replikit;

  mkdirSync(dataDir, { recursive: true });
  const store = replikit.LmdbStore.open(dataDir);
  const node = await replikit.ReplicaNode.start({
    nodeId: id,
    listen,
    peers: peers.split(',').map((part) => {
      const eq = part.indexOf('=');
      return { id: part.slice(0, eq), address: part.slice(eq + 1) };
    }),
    keyspaces: { [KEYSPACE]: replikit.policyByName('cp')! },
    store,
    logger: replikit.createPinoLogger({ level: 'warn', base: { node: id } }),
    processMetrics: true,
  });
  // A failed store stops the node acknowledging; the process ends, as `serve` does, and the
  // parent reports the exit.
  void node.failed.then((error) => {
    process.stderr.write(`embedded-worker: the store failed (${error instanceof Error ? error.message : String(error)})\n`);
    process.exit(1);
  });
  await node.serving;

  const keyspace = node.keyspace(KEYSPACE);
  const put: LoadOp = (n) => keyspace.put(keyOf(n), VALUE);
  // Linearizable, the default: ReadIndex on the leader, as the gRPC get and etcd's Range are.
  const get: LoadOp = (n) => keyspace.get(keyOf(n));
  const swap: Swap = async (key, expectedModRevision) => replikitSwapOutcome(await keyspace.txn(replikitSwapRequest(key, expectedModRevision)));
  const swaps = new OwnedKeySwaps(swap);
  const ops: Record<Exclude<OpName, 'echo'>, LoadOp> = { put, get, cas: swaps.op };

  const handle = async (request: WorkerRequest): Promise<WorkerMeasurement | undefined> => {
    switch (request.call) {
      case 'prefill': {
        for (let i = 0; i < KEY_COUNT; i += PREFILL_CONCURRENCY) {
          await Promise.all(Array.from({ length: Math.min(PREFILL_CONCURRENCY, KEY_COUNT - i) }, (_, j) => put(i + j, j)));
        }
        const read = await keyspace.get(keyOf(0));
        if (!read.found || !Buffer.from(read.value!).equals(VALUE)) throw new Error('a get after the prefill did not return the value written');
        await swaps.prefill();
        return undefined;
      }
      case 'probe':
        await get(0, 0);
        return undefined;
      case 'measure': {
        if (request.op === 'echo') throw new Error('the embedded node has no echo op');
        const pids = [process.pid, ...request.peerPids];
        let atStart: number | undefined;
        let atEnd: number | undefined;
        const result = await runLoad(ops[request.op], {
          concurrency: request.concurrency,
          durationMs: request.durationMs,
          warmupMs: request.warmupMs,
          onWindowStart: () => (atStart = cpuMsOf(pids)),
          onWindowEnd: () => (atEnd = cpuMsOf(pids)),
        });
        return atStart === undefined || atEnd === undefined ? { result } : { result, serverCpuMs: atEnd - atStart };
      }
    }
  };
  process.on('message', (request: WorkerRequest) => {
    handle(request).then(
      (value) => send(value === undefined ? { id: request.id, ok: true } : { id: request.id, ok: true, value }),
      (err: unknown) => send({ id: request.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  });
  // The parent going away (its channel closing) ends this process: nothing else would.
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}

main().catch((err: unknown) => {
  process.stderr.write(`embedded-worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
