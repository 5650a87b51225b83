import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The `replikit` entry point that children run. */
const BIN = fileURLToPath(new URL('../../bin/replikit.js', import.meta.url));
/** How long a child may take to print its ready line; generous for a loaded 2-core machine. */
const READY_TIMEOUT_MS = 20_000;

export interface LocalClusterOptions {
  readonly size?: number;
  /** Extra `serve` flags for every node (e.g. ['--policy', 'ap']). */
  readonly serveArgs?: readonly string[];
  /** Keep every node's data in memory (`--memory`) instead of a data directory. @default false */
  readonly memory?: boolean;
  /** Where child stderr goes; dropped by default. */
  readonly onLog?: (nodeId: string, line: string) => void;
}

interface Member {
  readonly id: string;
  readonly port: number;
  readonly dataDir: string;
  child: ChildProcess | undefined;
}

/**
 * Real `replikit serve` processes on loopback, each with its own LMDB data directory under one
 * temporary folder: the demo's cluster and the integration tests' bed. Nodes can be killed with
 * any signal and restarted from their data directory. `stop()` kills every child and removes the
 * folder; call it on every exit path.
 */
export class LocalCluster {
  readonly root: string;
  readonly #members: Member[];
  readonly #options: LocalClusterOptions;

  private constructor(root: string, members: Member[], options: LocalClusterOptions) {
    this.root = root;
    this.#members = members;
    this.#options = options;
  }

  static async create(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const size = options.size ?? 3;
    const root = mkdtempSync(join(tmpdir(), 'replikit-cluster-'));
    const ports = await freePorts(size);
    const members = ports.map((port, i) => ({ id: `n${i + 1}`, port, dataDir: join(root, `n${i + 1}`), child: undefined }));
    return new LocalCluster(root, members, options);
  }

  get ids(): string[] {
    return this.#members.map((m) => m.id);
  }

  address(id: string): string {
    return `127.0.0.1:${this.#member(id).port}`;
  }

  pid(id: string): number | undefined {
    return this.#member(id).child?.pid;
  }

  isRunning(id: string): boolean {
    const child = this.#member(id).child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Starts every node and waits until all are ready. */
  async startAll(): Promise<void> {
    await Promise.all(this.#members.map((m) => this.start(m.id)));
  }

  /** Where node `id` keeps its data. */
  dataDir(id: string): string {
    return this.#member(id).dataDir;
  }

  /**
   * Makes room for one more node (a free port and an empty data directory) and returns its id,
   * the next `nN`; start it with `start(id, [], { join: [...] })` to have it join the cluster.
   */
  async addSlot(): Promise<string> {
    const [port] = await freePorts(1);
    const taken = new Set(this.#members.map((m) => m.id));
    let n = this.#members.length + 1;
    while (taken.has(`n${n}`)) n++;
    const id = `n${n}`;
    this.#members.push({ id, port: port!, dataDir: join(this.root, id), child: undefined });
    return id;
  }

  /**
   * Starts (or restarts) one node from its data directory; resolves with its ready line (printed
   * once it serves) or, with `until: 'listening'`, with its "node started" log line, for a node
   * that will wait (to recover lost data, or for its peers) before it serves.
   */
  start(id: string, extraArgs: readonly string[] = [], options: { until?: 'ready' | 'listening'; env?: NodeJS.ProcessEnv; join?: readonly string[] } = {}): Promise<string> {
    const member = this.#member(id);
    if (this.isRunning(id)) throw new Error(`${id} is already running`);
    const peers = this.#members.filter((m) => m.id !== id).map((m) => `${m.id}=127.0.0.1:${m.port}`).join(',');
    // A joining node names members to ask; the others know every slot (the membership in their
    // logs overrides this list once they run).
    const membership = options.join === undefined ? ['--peers', peers] : ['--join', options.join.join(',')];
    const args = [
      BIN, 'serve', '--id', id, '--listen', `127.0.0.1:${member.port}`, ...membership,
      ...(this.#options.memory ? ['--memory'] : ['--data-dir', member.dataDir]), ...(this.#options.serveArgs ?? []), ...extraArgs,
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env === undefined ? process.env : { ...process.env, ...options.env } });
    member.child = child;
    const onLog = this.#options.onLog;
    let errText = '';
    let listening: (line: string) => void = () => {};
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      errText = (errText + chunk).slice(-4000);
      for (const line of chunk.split('\n')) {
        if (!line) continue;
        onLog?.(id, line);
        if (line.includes('"msg":"node started"')) listening(line);
      }
    });
    return new Promise((resolve, reject) => {
      if (options.until === 'listening') {
        listening = (line) => {
          clearTimeout(timer);
          resolve(line);
        };
      }
      let out = '';
      const timer = setTimeout(() => reject(new Error(`${id} did not become ready within ${READY_TIMEOUT_MS} ms: ${errText}`)), READY_TIMEOUT_MS);
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        const line = out.split('\n').find((l) => l.includes(' ready on '));
        if (line !== undefined) {
          clearTimeout(timer);
          resolve(line);
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${id} exited (${signal ?? code}) before it was ready: ${errText}`));
      });
    });
  }

  /** Resolves with node `id`'s exit status (or null when a signal ended it) once it exits. */
  exitCode(id: string): Promise<number | null> {
    const child = this.#member(id).child;
    if (child === undefined || !this.isRunning(id)) return Promise.resolve(child?.exitCode ?? null);
    return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Sends `signal` to one node; for SIGKILL and SIGTERM waits until it has exited. */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#member(id).child;
    if (child === undefined || !this.isRunning(id)) return;
    // Only signals that end the process get an exit listener (SIGSTOP/SIGCONT would pile them up).
    const ends = signal === 'SIGKILL' || signal === 'SIGTERM' || signal === 'SIGINT';
    const exited = ends ? new Promise<void>((resolve) => child.once('exit', () => resolve())) : Promise.resolve();
    child.kill(signal);
    await exited;
  }

  /** Kills every node (SIGCONT first, in case one is stopped) and removes the data. */
  async stop(): Promise<void> {
    await Promise.all(
      this.#members.map(async (m) => {
        if (m.child !== undefined && this.isRunning(m.id)) {
          m.child.kill('SIGCONT');
          await this.kill(m.id, 'SIGKILL');
        }
      }),
    );
    rmSync(this.root, { recursive: true, force: true });
  }

  /** Kills every child synchronously: for process 'exit' handlers, where nothing can be awaited. */
  killAllNow(): void {
    for (const m of this.#members) {
      try {
        m.child?.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(this.root, { recursive: true, force: true });
  }

  #member(id: string): Member {
    const member = this.#members.find((m) => m.id === id);
    if (member === undefined) throw new Error(`no node ${id} in this cluster (${this.ids.join(', ')})`);
    return member;
  }
}

/** Asks the OS for `count` free loopback ports (bound on port 0, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        const server = createServer();
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve(server));
      }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}
