import { Worker } from 'node:worker_threads';
import type { Logger } from '../logging/logger.js';
import type { NodeMetrics } from './metrics.js';

/** The path Prometheus scrapes by default. */
export const METRICS_PATH = '/metrics';
/**
 * How long a scrape waits for fresh numbers from the node's event loop before it is answered
 * with the previous snapshot instead. A node saturated by clients runs event-loop turns of tens
 * of milliseconds; a monitoring system should still get an answer at once, and slightly old
 * numbers (their age is in the `x-replikit-metrics-age-ms` header) beat a timed-out scrape.
 */
export const DEFAULT_FRESH_WAIT_MS = 25;
/**
 * The least time between two collections of the node's metrics: scrapes that come sooner share
 * the last one (and scrapes that come together share one collection), so any number of scrapers
 * cost the node at most four collections a second (Prometheus scrapes every 15 s or more; a tool
 * that scrapes before and after a stretch of load still sees fresh numbers).
 */
export const MIN_COLLECTION_INTERVAL_MS = 250;

/** A running `/metrics` endpoint. */
export interface MetricsEndpoint {
  /** The bound HOST:PORT (port 0 picks one). */
  readonly address: string;
  /** How many times the node's metrics were collected (scrapes share collections). */
  readonly collections: number;
  close(): Promise<void>;
}

export interface MetricsEndpointOptions {
  /** See {@link DEFAULT_FRESH_WAIT_MS}. */
  readonly freshWaitMs?: number;
}

/**
 * The HTTP side, run in a worker thread so that it answers even while the node's own event loop
 * is busy: on each GET it asks the node for fresh text and waits up to `freshWaitMs`, then
 * answers with the freshest text it has. Plain JavaScript, evaluated as a CommonJS worker, so it
 * runs the same from src/ (tests) and dist/ (the CLI).
 */
const WORKER_SOURCE = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const { host, port, path, freshWaitMs, contentType } = workerData;
let latest; // { text, atMs }
let nextId = 0;
const waiting = new Map(); // id -> callback(text | undefined)
parentPort.on('message', (m) => {
  if (m.type === 'text') {
    latest = { text: m.text, atMs: Date.now() };
    const cb = waiting.get(m.id);
    if (cb) { waiting.delete(m.id); cb(); }
  } else if (m.type === 'close') {
    server.close(() => parentPort.postMessage({ type: 'closed' }));
    server.closeAllConnections();
  }
});
function answer(req, res) {
  if (latest === undefined) {
    res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('metrics not collected yet\\n');
    return;
  }
  res.writeHead(200, { 'content-type': contentType, 'x-replikit-metrics-age-ms': String(Date.now() - latest.atMs) });
  res.end(req.method === 'HEAD' ? undefined : latest.text);
}
const server = http.createServer((req, res) => {
  const url = (req.url || '/').split('?')[0];
  if (url !== path) { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at ' + path + '\\n'); return; }
  if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('use GET\\n'); return; }
  const id = nextId++;
  let done = false;
  const finish = () => { if (!done) { done = true; clearTimeout(timer); waiting.delete(id); answer(req, res); } };
  // Without any snapshot yet, wait longer: an empty answer is worse than a slow first one.
  const timer = setTimeout(finish, latest === undefined ? 5000 : freshWaitMs);
  waiting.set(id, finish);
  parentPort.postMessage({ type: 'scrape', id });
});
server.setTimeout(10000);
server.on('error', (err) => parentPort.postMessage({ type: 'error', message: err.message }));
server.listen(port, host, () => parentPort.postMessage({ type: 'listening', port: server.address().port }));
`;

/**
 * Serves `metrics` as Prometheus text on `GET /metrics` at `listen` (HOST:PORT); other paths get
 * 404, other methods 405. The HTTP server runs in a worker thread (see WORKER_SOURCE): a scrape
 * gets the node's numbers of that moment when its event loop answers within `freshWaitMs`, and
 * the previous snapshot otherwise, so that scrapes stay fast while the node is saturated.
 */
export async function startMetricsEndpoint(
  listen: string,
  metrics: NodeMetrics,
  logger: Logger,
  options: MetricsEndpointOptions = {},
): Promise<MetricsEndpoint> {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(listen);
  if (m === null) throw new Error(`metrics address must be HOST:PORT, not ${JSON.stringify(listen)}`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { host, port: Number(m[2]), path: METRICS_PATH, freshWaitMs: options.freshWaitMs ?? DEFAULT_FRESH_WAIT_MS, contentType: metrics.contentType },
    // The worker holds one snapshot and a small HTTP server; keep it small.
    resourceLimits: { maxOldGenerationSizeMb: 64 },
  });
  let collections = 0;
  let latest: { text: string; atMs: number } | undefined;
  let collecting: Promise<string> | undefined;
  const collect = (): Promise<string> => {
    if (collecting !== undefined) return collecting;
    if (latest !== undefined && performance.now() - latest.atMs < MIN_COLLECTION_INTERVAL_MS) return Promise.resolve(latest.text);
    collections++;
    collecting = metrics.scrape().then((text) => {
      latest = { text, atMs: performance.now() };
      return text;
    });
    collecting.then(
      () => (collecting = undefined),
      () => (collecting = undefined),
    );
    return collecting;
  };
  const send = (id: number | undefined) =>
    collect().then(
      (text) => worker.postMessage({ type: 'text', id, text }),
      (err: unknown) => logger.error('metrics collection failed', { error: err instanceof Error ? err.message : String(err) }),
    );
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('error', (err) => reject(new Error(`the metrics endpoint on ${listen} failed: ${err.message}`)));
    worker.on('message', (msg: { type: string; port?: number; message?: string; id?: number }) => {
      if (msg.type === 'listening') resolve(msg.port!);
      else if (msg.type === 'error') reject(new Error(`cannot listen for metrics on ${listen}: ${msg.message}`));
      else if (msg.type === 'scrape') void send(msg.id);
    });
  }).catch(async (err: unknown) => {
    await worker.terminate();
    throw err;
  });
  worker.on('error', (err) => logger.error('the metrics endpoint failed; metrics are no longer served', { error: err.message }));
  // A first snapshot, so that even the first scrape of a busy node has something to answer with.
  await send(undefined);
  return {
    address: listen.replace(/:\d+$/, `:${port}`),
    get collections() {
      return collections;
    },
    close: async () => {
      const closed = new Promise<void>((resolve) => worker.on('message', (msg: { type: string }) => msg.type === 'closed' && resolve()));
      worker.postMessage({ type: 'close' });
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
      await worker.terminate();
    },
  };
}
