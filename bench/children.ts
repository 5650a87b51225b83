/**
 * Every process and temporary folder the benchmark starts is registered here, so that every exit
 * path — the normal end, an error, Ctrl-C, SIGTERM, the watchdog — stops them all. `killAllNow`
 * is synchronous because a process 'exit' handler cannot await.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { rmSync } from 'node:fs';

/** Anything that can kill its own processes synchronously (LocalCluster does). */
export interface SyncKillable {
  killAllNow(): void;
}

export class Reaper {
  readonly #children = new Set<ChildProcess>();
  readonly #groups = new Set<SyncKillable>();
  readonly #dirs = new Set<string>();

  /** Tracks a child until it exits. */
  track(child: ChildProcess): ChildProcess {
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  trackGroup(group: SyncKillable): void {
    this.#groups.add(group);
  }

  untrackGroup(group: SyncKillable): void {
    this.#groups.delete(group);
  }

  /** A folder removed when everything is killed. */
  trackDir(path: string): void {
    this.#dirs.add(path);
  }

  /** SIGKILLs every child (SIGCONT first, in case one is stopped) and removes the folders. */
  killAllNow(): void {
    for (const child of this.#children) {
      try {
        child.kill('SIGCONT');
        child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
    this.#children.clear();
    for (const group of this.#groups) {
      try {
        group.killAllNow();
      } catch {
        // Best effort: the others must still be stopped.
      }
    }
    this.#groups.clear();
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
    this.#dirs.clear();
  }
}

export interface ReadyChild {
  readonly child: ChildProcess;
  /** The line that matched `ready`. */
  readonly readyLine: string;
  /** The last few KB of the child's stderr, for error messages. */
  stderrTail(): string;
}

/**
 * Spawns a tracked child and resolves once a line of its stdout (or stderr, for programs that
 * log there) matches `ready`, or for `ready: null` once it has been spawned; rejects with its
 * stderr if it exits first or takes longer than `timeoutMs` (and then kills it).
 */
export function spawnReady(
  reaper: Reaper,
  command: string,
  args: readonly string[],
  ready: RegExp | null,
  timeoutMs: number,
  options: SpawnOptions = {},
): Promise<ReadyChild> {
  const child = reaper.track(spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] }));
  let errText = '';
  const stderrTail = () => errText;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(() => reject(new Error(`${command} was not ready within ${timeoutMs} ms: ${errText.trim().slice(-600)}`)));
    }, timeoutMs);
    const scan = (buffered: { text: string }, chunk: string) => {
      buffered.text = (buffered.text + chunk).slice(-8000);
      const line = ready === null ? undefined : buffered.text.split('\n').find((l) => ready.test(l));
      if (line !== undefined) settle(() => resolve({ child, readyLine: line, stderrTail }));
    };
    const out = { text: '' };
    const err = { text: '' };
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => scan(out, chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      errText = (errText + chunk).slice(-4000);
      scan(err, chunk);
    });
    child.once('error', (e) => settle(() => reject(e)));
    if (ready === null) child.once('spawn', () => settle(() => resolve({ child, readyLine: '', stderrTail })));
    child.once('exit', (code, signal) =>
      settle(() => reject(new Error(`${command} exited (${signal ?? code}) before it was ready: ${errText.trim().slice(-600)}`))),
    );
  });
}
