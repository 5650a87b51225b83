/**
 * Long simulation campaigns: many seeds of one policy, spread over worker threads (one per core by
 * default), each worker calling {@link runSeed}. Workers take seeds in small chunks as they come
 * free, so slow seeds do not leave cores idle, and send back per seed only its stats and, when it
 * failed, a summary of the violation with its fault schedule and a short window of its history
 * (cut in the worker; the whole history never crosses threads). `npm run sim` is the command line
 * around this.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { historyWindow, type HistoryWindow } from './history-window.js';
import type { FaultEvent } from './nemesis.js';
import { addStats, type BrokenVariant, type SeedResult, type SeedViolation, type SimPolicy } from './seed-check.js';

export interface CampaignOptions {
  readonly policy: SimPolicy;
  /** How many seeds to run. */
  readonly seeds: number;
  /** The first seed; the campaign runs `from` … `from + seeds - 1`. @default 1 */
  readonly from?: number;
  /** Worker threads. @default os.availableParallelism() */
  readonly workers?: number;
  /** Run a deliberately broken variant, which the campaign should catch. */
  readonly broken?: BrokenVariant;
  /** Called after every seed, in the calling thread. */
  readonly onProgress?: (progress: CampaignProgress) => void;
  /** Stops handing out seeds; the campaign then returns what ran, with `interrupted` set. */
  readonly signal?: AbortSignal;
}

export interface CampaignProgress {
  readonly done: number;
  readonly total: number;
  readonly violations: number;
  readonly elapsedMs: number;
}

/** A failed seed, as a campaign reports it. */
export interface SeedViolationReport {
  readonly policy: SimPolicy;
  readonly seed: number;
  readonly kind: SeedViolation['kind'];
  readonly explanation: string;
  readonly key?: string;
  /** The nemesis's actions in the run, with their virtual times. */
  readonly schedule: readonly FaultEvent[];
  /** The seed's completions and faults. */
  readonly stats: Readonly<Record<string, number>>;
  /** How many operations the whole history has. */
  readonly operationCount: number;
  /** The short piece of the history to print (see history-window.ts). */
  readonly window: HistoryWindow;
}

export interface CampaignResult {
  readonly policy: SimPolicy;
  readonly from: number;
  /** Seeds asked for. */
  readonly seeds: number;
  /**
   * Seeds that ran: `from` … `from + seedsRun - 1` (seeds are handed out in order and every one
   * handed out finishes), fewer than asked only when interrupted.
   */
  readonly seedsRun: number;
  readonly workers: number;
  /** Every seed's stats added up: completions by type and the faults that landed. */
  readonly totals: Record<string, number>;
  /** By seed. */
  readonly violations: SeedViolationReport[];
  readonly elapsedMs: number;
  readonly interrupted: boolean;
}

/** What a worker is started with. */
export interface WorkerSetup {
  readonly policy: SimPolicy;
  readonly broken: BrokenVariant;
}

/** Parent to worker: run seeds `from` … `to - 1`, or stop. */
export type ToWorker = { readonly type: 'run'; readonly from: number; readonly to: number } | { readonly type: 'stop' };

/** Worker to parent: one seed's outcome; or the chunk is done. */
export type FromWorker =
  | { readonly type: 'seed'; readonly seed: number; readonly stats: Record<string, number>; readonly violation?: SeedViolationReport }
  | { readonly type: 'idle' };

/** A seed's result as a report, when it failed; cuts the history window (the costly part) here. */
export function reportOf(result: SeedResult): SeedViolationReport | undefined {
  const v = result.violation;
  if (v === undefined) return undefined;
  return {
    policy: result.policy,
    seed: result.seed,
    kind: v.kind,
    explanation: v.explanation,
    ...(v.key === undefined ? {} : { key: v.key }),
    schedule: result.schedule.map((e) => ({ atMs: e.atMs, action: e.action })),
    stats: { ...result.stats },
    operationCount: v.operations.length,
    window: windowOf(v),
  };
}

function windowOf(v: SeedViolation): HistoryWindow {
  try {
    return historyWindow(v);
  } catch (error) {
    return { operations: [], named: [], description: `no window: cutting it failed: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/**
 * Starts the worker module next to this one: the compiled JavaScript when this module is (dist/),
 * else the TypeScript source through tsx. `new Worker(url-of-.ts, { execArgv: ['--import', 'tsx'] })`
 * is not enough: on Node before 22.22.3, tsx's `--import` entry registers its hooks on the main
 * thread only, and the worker fails with ERR_UNKNOWN_FILE_EXTENSION. So a small bootstrap
 * imports the worker with tsx's `tsImport`, which registers the hooks for that import inside
 * the worker, on every Node that tsx supports.
 */
function startWorker(setup: WorkerSetup): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./campaign-worker.js', import.meta.url), { workerData: setup });
  const worker = new URL('./campaign-worker.ts', import.meta.url).href;
  const bootstrap =
    `import(${JSON.stringify(tsxApi())})` +
    `.then(({ tsImport }) => tsImport(${JSON.stringify(worker)}, ${JSON.stringify(import.meta.url)}));`;
  return new Worker(bootstrap, { eval: true, workerData: setup });
}

/** The URL of tsx's ESM API (`tsx/esm/api`), resolved from this module. */
function tsxApi(): string {
  if (typeof import.meta.resolve === 'function') return import.meta.resolve('tsx/esm/api');
  // Module runners without import.meta.resolve (vitest's): the package's own exports map says where.
  return new URL('dist/esm/api/index.mjs', pathToFileURL(createRequire(import.meta.url).resolve('tsx/package.json'))).href;
}

/** Runs seeds `from` … `from + seeds - 1` of `policy` on worker threads. */
export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const { policy, seeds } = options;
  const from = options.from ?? 1;
  if (!Number.isSafeInteger(seeds) || seeds < 1) throw new RangeError(`seeds must be a positive integer, not ${seeds}`);
  if (!Number.isSafeInteger(from)) throw new RangeError(`from must be an integer, not ${from}`);
  const requested = options.workers ?? availableParallelism();
  if (!Number.isSafeInteger(requested) || requested < 1) throw new RangeError(`workers must be a positive integer, not ${requested}`);
  const workers = Math.min(requested, seeds);
  // Small enough that the cores stay evenly busy to the end, large enough to keep messages rare.
  const chunk = Math.max(1, Math.min(25, Math.ceil(seeds / (workers * 20))));
  const end = from + seeds;
  const started = performance.now();
  const totals: Record<string, number> = {};
  const violations: SeedViolationReport[] = [];
  let next = from;
  let done = 0;
  let interrupted = false;
  const setup: WorkerSetup = { policy, broken: options.broken ?? {} };

  await new Promise<void>((resolve, reject) => {
    let live = workers;
    let failed = false;
    const pool: Worker[] = [];
    const fail = (error: unknown): void => {
      if (failed) return;
      failed = true;
      for (const w of pool) void w.terminate();
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    // The seeds each worker is running, to name them when it fails.
    const running: string[] = [];
    const handOut = (worker: Worker, i: number): void => {
      if (options.signal?.aborted) interrupted = true;
      if (next >= end || interrupted) {
        running[i] = 'none';
        worker.postMessage({ type: 'stop' } satisfies ToWorker);
        return;
      }
      const to = Math.min(end, next + chunk);
      running[i] = `${next}..${to - 1}`;
      worker.postMessage({ type: 'run', from: next, to } satisfies ToWorker);
      next = to;
    };
    for (let i = 0; i < workers; i++) {
      const worker = startWorker(setup);
      pool.push(worker);
      worker.on('message', (message: FromWorker) => {
        if (failed) return;
        if (message.type === 'idle') return handOut(worker, i);
        addStats(totals, message.stats);
        if (message.violation !== undefined) violations.push(message.violation);
        done++;
        options.onProgress?.({ done, total: seeds, violations: violations.length, elapsedMs: performance.now() - started });
      });
      const where = (): string => `campaign worker ${i} (${policy}, seeds ${running[i] ?? 'none yet'})`;
      worker.on('error', (error) => fail(new Error(`${where()} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)));
      worker.on('exit', (code) => {
        if (failed) return;
        if (code !== 0) return fail(new Error(`${where()} exited with code ${code}`));
        if (--live === 0) resolve();
      });
      // The worker asks for its first chunk with an 'idle' once it has loaded.
    }
  });

  violations.sort((a, b) => a.seed - b.seed);
  return { policy, from, seeds, seedsRun: done, workers, totals, violations, elapsedMs: performance.now() - started, interrupted };
}
