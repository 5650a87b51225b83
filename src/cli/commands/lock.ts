import { spawn, type ChildProcess } from 'node:child_process';
import type { RemoteHeldLock } from '../../client/coordination.js';
import type { ReplikitClient } from '../../client/replikit-client.js';
import type { KeptLease } from '../../coordination/keep-alive.js';
import { ReplikitError } from '../../errors.js';
import { parseArgs, UsageError } from '../args.js';
import { ENDPOINT_FLAGS, endpointSettings, ENDPOINTS_USAGE, TLS_CLIENT_USAGE } from '../client.js';
import type { Command } from '../main.js';
import { CLI_RENEWALS_PER_TTL, connect, Interrupts, nameArg, signalExitCode, ttlArg } from './coordination-common.js';
import { positiveIntFlag, reportClientError } from './watch.js';

const SPEC = { ...ENDPOINT_FLAGS, keyspace: {}, 'ttl-ms': {} } as const;

/** The TTL of the lease `lock` grants itself when --ttl-ms is not given. */
export const DEFAULT_LOCK_TTL_MS = 10_000;
/** Exit status when the lock was not acquired, or was lost while the command ran. */
export const EXIT_LOCK_FAILED = 1;
/** Exit status when COMMAND could not be started (as a shell's "command not found"). */
export const EXIT_NOT_STARTED = 127;
/** How often the validity of the lease is checked while the command runs. */
const WATCHDOG_MS = 20;

/**
 * How long before the lease's validity ends (by the holder's count: the send time of its last
 * confirmed renewal plus the TTL) the command is sent SIGTERM, and SIGKILL: a tenth of the TTL
 * (300 ms to 2 s), and a third of that (at least 100 ms). The nodes end the lease later still: at
 * the earliest one TTL after that renewal *arrived*, and a new leader adds one election time.
 */
export function stopMargins(ttlMs: number): { readonly termMs: number; readonly killMs: number } {
  const termMs = Math.min(2_000, Math.max(300, ttlMs / 10));
  return { termMs, killMs: Math.max(100, termMs / 3) };
}

export const lockCommand: Command = {
  summary: 'run a command while holding a lock (its fencing token in $REPLIKIT_FENCING_TOKEN)',
  usage: [
    `usage: replikit lock ${ENDPOINTS_USAGE} [--keyspace K] [--ttl-ms N] [--timeout-ms N] ${TLS_CLIENT_USAGE} NAME -- COMMAND [ARGS...]`,
    `  Grants a lease of --ttl-ms (default ${DEFAULT_LOCK_TTL_MS}) and keeps it alive, waits for lock NAME (at most`,
    '  --timeout-ms when given), then runs COMMAND with its stdio and with REPLIKIT_FENCING_TOKEN, REPLIKIT_LOCK_KEY',
    "  and REPLIKIT_LEASE_ID in its environment. When COMMAND exits, releases the lock, revokes the lease and exits",
    "  with COMMAND's status (128+N when signal N ended it). SIGINT/SIGTERM are passed on to COMMAND.",
    '  If the lease is lost, or is about to pass its TTL unconfirmed (the nodes unreachable), COMMAND gets SIGTERM',
    `  and then SIGKILL before the lease can end, and replikit lock exits ${EXIT_LOCK_FAILED}; it also exits ${EXIT_LOCK_FAILED} when the lock was`,
    `  not acquired, and ${EXIT_NOT_STARTED} when COMMAND could not be started. Pass the fencing token to what the lock`,
    '  protects and have it refuse smaller ones: a process paused past its lease is stopped only by that.',
  ].join('\n'),
  async run(argv) {
    const dash = argv.indexOf('--');
    if (dash === -1) throw new UsageError('lock needs `-- COMMAND [ARGS...]` after NAME');
    const command = argv.slice(dash + 1);
    if (command.length === 0 || command[0] === '') throw new UsageError('COMMAND is missing after --');
    const args = parseArgs(argv.slice(0, dash), SPEC);
    if (args.positionals.length !== 1) throw new UsageError(`lock takes NAME before --; got ${args.positionals.length} argument(s)`);
    const name = nameArg('NAME', args.positionals[0]!);
    const ttlMs = args.flags.has('ttl-ms') ? ttlArg('--ttl-ms', args.flags.get('ttl-ms')!) : DEFAULT_LOCK_TTL_MS;
    const waitMs = args.flags.has('timeout-ms') ? positiveIntFlag('timeout-ms', args.flags.get('timeout-ms')!) : undefined;
    // --timeout-ms bounds the wait for the lock here; every other call has the default deadline.
    const settings = endpointSettings(args, { waitFlag: true });
    const keyspace = args.flags.get('keyspace') ?? 'default';

    let child: ChildProcess | undefined;
    const interrupts = new Interrupts((sig) => {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill(sig);
    });
    let client: ReplikitClient | undefined;
    let kept: KeptLease | undefined;
    try {
      client = await connect(settings);
      const leases = client.leases;
      const sentAt = leases.scheduler.nowMs();
      const granted = await leases.grant(ttlMs, { keyspace });
      kept = leases.keepAlive(granted.id, granted.ttlMs, { keyspace, grantedAtMs: sentAt, renewalsPerTtl: CLI_RENEWALS_PER_TTL });
      const session = kept;
      if (interrupts.first !== undefined) return await giveUp(client, session, keyspace, undefined, signalExitCode(interrupts.first));

      // Wait for the lock; stop waiting when interrupted or when the lease is lost.
      const waiting = new AbortController();
      interrupts.signal.addEventListener('abort', () => waiting.abort(), { once: true });
      void session.lost.then(() => waiting.abort());
      let held: RemoteHeldLock;
      try {
        held = await client.lock(name).acquire({ keyspace, lease: granted.id, ...(waitMs === undefined ? {} : { timeoutMs: waitMs }), signal: waiting.signal });
      } catch (err: unknown) {
        if (interrupts.first !== undefined) return await giveUp(client, session, keyspace, undefined, signalExitCode(interrupts.first));
        if (session.lostReason !== undefined) {
          process.stderr.write(`replikit lock: lease ${granted.id} lost while waiting for lock ${JSON.stringify(name)}: ${session.lostReason.message}\n`);
          return await giveUp(client, session, keyspace, undefined, EXIT_LOCK_FAILED);
        }
        await giveUp(client, session, keyspace, undefined, EXIT_LOCK_FAILED);
        return reportClientError('lock', err);
      }
      const { termMs, killMs } = stopMargins(granted.ttlMs);
      if (interrupts.first !== undefined) return await giveUp(client, session, keyspace, held, signalExitCode(interrupts.first));
      if (!session.valid(termMs)) {
        process.stderr.write(`replikit lock: acquired lock ${JSON.stringify(name)}, but lease ${granted.id} ${session.lostReason === undefined ? 'could not be renewed in time' : `was lost (${session.lostReason.message})`}; COMMAND was not run\n`);
        return await giveUp(client, session, keyspace, held, EXIT_LOCK_FAILED);
      }

      // Run the command; a watchdog stops it before the lease can end.
      try {
        child = spawn(command[0]!, command.slice(1), {
          stdio: 'inherit',
          env: { ...process.env, REPLIKIT_FENCING_TOKEN: String(held.fencingToken), REPLIKIT_LOCK_KEY: held.key.toString('utf8'), REPLIKIT_LEASE_ID: String(granted.id) },
        });
      } catch (err: unknown) {
        process.stderr.write(`replikit lock: could not start ${JSON.stringify(command[0])}: ${err instanceof Error ? err.message : String(err)}\n`);
        return await giveUp(client, session, keyspace, held, EXIT_NOT_STARTED);
      }
      const running = child;
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
        running.once('error', (error) => resolve({ code: null, signal: null, error }));
        running.once('exit', (code, signal) => resolve({ code, signal }));
      });
      let stopping: { why: string; termAt: number } | undefined;
      let killed = false;
      const watchdog = setInterval(() => {
        if (running.exitCode !== null || running.signalCode !== null) return;
        const now = leases.scheduler.nowMs();
        if (stopping === undefined && !session.valid(termMs)) {
          const why = session.lostReason !== undefined ? `lease ${granted.id} was lost (${session.lostReason.message})` : `lease ${granted.id} was not confirmed and its TTL runs out in ${Math.max(0, Math.round(session.validUntilMs - now))} ms`;
          stopping = { why, termAt: now };
          process.stderr.write(`replikit lock: ${why}; stopping COMMAND (SIGTERM)\n`);
          running.kill('SIGTERM');
        }
        if (stopping !== undefined && !killed && (!session.valid(killMs) || now - stopping.termAt >= termMs - killMs)) {
          killed = true;
          running.kill('SIGKILL');
        }
      }, WATCHDOG_MS);
      const result = await exited;
      clearInterval(watchdog);
      if (result.error !== undefined) {
        process.stderr.write(`replikit lock: could not start ${JSON.stringify(command[0])}: ${result.error.message}\n`);
        return await giveUp(client, session, keyspace, held, EXIT_NOT_STARTED);
      }
      if (stopping !== undefined) {
        process.stderr.write(`replikit lock: COMMAND stopped because ${stopping.why}; lock ${JSON.stringify(name)} may be held by another now\n`);
        return await giveUp(client, session, keyspace, held, EXIT_LOCK_FAILED);
      }
      const code = result.code ?? signalExitCode(result.signal ?? 'SIGKILL');
      return await release(client, session, keyspace, held, name, code);
    } catch (err: unknown) {
      if (kept !== undefined && client !== undefined) await giveUp(client, kept, keyspace, undefined, EXIT_LOCK_FAILED);
      return reportClientError('lock', err);
    } finally {
      interrupts.dispose();
      client?.close();
    }
  },
};

/** Releases the lock the command ran under and revokes the lease: `code`, or 1 when the lock turned out not to be held. */
async function release(client: ReplikitClient, session: KeptLease, keyspace: string, held: RemoteHeldLock, name: string, code: number): Promise<number> {
  session.stop();
  let status = code;
  let released = false;
  try {
    await client.lock(name).unlock(held.key, { keyspace });
    released = true;
  } catch (err: unknown) {
    if (err instanceof ReplikitError && err.reason === 'LOCK_NOT_HELD') {
      process.stderr.write(`replikit lock: lock ${JSON.stringify(name)} was no longer held when COMMAND exited: ${err.message}\n`);
      status = code === 0 ? EXIT_LOCK_FAILED : code;
    } else {
      process.stderr.write(`replikit lock: could not release lock ${JSON.stringify(name)} (${err instanceof Error ? err.message : String(err)}); revoking its lease\n`);
    }
  }
  try {
    await client.leases.revoke(session.id, { keyspace });
  } catch (err: unknown) {
    const gone = err instanceof ReplikitError && err.kind === 'not-found';
    if (!released && !gone) process.stderr.write(`replikit lock: could not revoke lease ${session.id} either (${err instanceof Error ? err.message : String(err)}); the lock is freed when it expires\n`);
  }
  return status;
}

/** Stops keeping the lease alive, withdraws (or releases) the lock entry and revokes the lease, quietly; answers `code`. */
async function giveUp(client: ReplikitClient, session: KeptLease, keyspace: string, held: RemoteHeldLock | undefined, code: number): Promise<number> {
  session.stop();
  if (held !== undefined) await client.lock(held.name).unlock(held.key, { keyspace }).catch(() => {});
  await client.leases.revoke(session.id, { keyspace }).catch(() => {});
  return code;
}
