/**
 * The leader-failover campaign, the same for every system: a closed-loop write load plus a probe
 * write every 20 ms (each write a key of its own with a value of its own) runs throughout; N times
 * the current leader is found, SIGKILLed, the time until the first write sent after the kill is
 * acknowledged is measured at the client, the killed member is restarted from its data and waited
 * for until it has caught up. At the end every write is read back (linearizably) from the whole
 * cluster.
 *
 * A write's outcome is taken as the client sees it: acknowledged (an OK answer), refused (the
 * system or the transport says nothing happened: never sent, or replikit's UNAVAILABLE) or unknown
 * (anything else: a deadline, a dropped connection, "leader changed"). Only acknowledged writes must
 * all be there; unknown ones may or may not be, and are read back to say how many took effect.
 */

/** How long a kill may take to be followed by an acknowledged write before the run gives up on it. */
export const RECOVERY_BOUND_MS = 30_000;
/** How long a restarted member may take to serve and then to catch up with the leader. */
export const RESTART_BOUND_MS = 30_000;
/** Every member agreeing on one leader, between kills and before the read-back. */
export const LEADER_BOUND_MS = 30_000;
/** Each write's and each read's client deadline: above replikit's request timeout (3 s), so it answers first. */
export const CALL_DEADLINE_MS = 5_000;
/** Time with every member up and no call left from the last kill, before the next kill. */
export const SETTLE_MS = 1_000;
/** A writer's pause after a failed write: a refusal comes back at once, and retrying at once would spin. */
const BACKOFF_MS = 25;
/** One probe write this often, each on its own (see the prober), and at most this many at once. */
export const PROBE_INTERVAL_MS = 20;
const MAX_PROBES_IN_FLIGHT = 2 * (CALL_DEADLINE_MS / PROBE_INTERVAL_MS);
/** Reads in flight during the read-back, and attempts per key before it counts as unreadable. */
const READS_IN_FLIGHT = 64;
const READ_ATTEMPTS = 10;
/** How often leader and catch-up conditions are polled. */
const POLL_MS = 50;
/** Lost writes listed by key in the report (all are counted). */
const EXAMPLES = 20;

export type SystemKind = 'replikit' | 'etcd';

/** How a failed write reads to the client. */
export interface FailedWrite {
  readonly outcome: 'refused' | 'unknown';
  /** Short and low-cardinality, for counting: the status and replikit's reason or etcd's message. */
  readonly label: string;
}

export interface LeaderView {
  readonly id: string;
  /** The Raft term it leads in, when the system tells. */
  readonly term: string;
}

/** A three-member system the campaign can write to, read from, kill and restart. */
export interface FailoverSystem {
  readonly kind: SystemKind;
  /** One line for the report: what runs and how it is driven. */
  readonly description: string;
  readonly memberIds: readonly string[];
  /** Puts through member `id`; resolves once acknowledged, rejects with the client's error. */
  put(id: string, key: string, value: string, deadlineMs: number): Promise<void>;
  /** A linearizable read through member `id`: the value, or undefined when the key is absent. */
  get(id: string, key: string, deadlineMs: number): Promise<string | undefined>;
  /** What a put's error means: nothing happened, or maybe something did. */
  classify(err: unknown): FailedWrite;
  /** The leader every member in `live` names, itself among them; undefined while they disagree. */
  leader(live: readonly string[]): Promise<LeaderView | undefined>;
  /** SIGKILLs member `id`; resolves once the process is gone. */
  kill(id: string): Promise<void>;
  /** Starts member `id` again from its data directory; resolves once it serves. */
  restart(id: string): Promise<void>;
  /**
   * Resolves once member `id` has caught up: it names the leader every other member names and has
   * applied what the cluster had committed when it came back. Rejects after `timeoutMs`.
   */
  caughtUp(id: string, others: readonly string[], timeoutMs: number): Promise<void>;
  /** The last lines each member logged: evidence for the report when something failed. */
  logTail(): string;
  close(): Promise<void>;
}

export interface KillRecord {
  /** 1-based. */
  readonly kill: number;
  readonly victim: string;
  readonly term: string;
  /** Since the campaign began. */
  readonly killedAtMs: number;
  /** Kill to the first acknowledgement of a write sent after it; null when none came within the bound. */
  readonly recoveryMs: number | null;
  /** The leader the members agreed on after the restart. */
  readonly newLeader: string | null;
  /** Restart to serving, and serving to caught up. */
  readonly restartMs: number | null;
  readonly catchUpMs: number | null;
  /** Writes that ended between the kill and the recovery, by outcome. */
  readonly refusedInWindow: number;
  readonly unknownInWindow: number;
}

export interface CampaignResult {
  readonly system: SystemKind;
  readonly description: string;
  readonly kills: readonly KillRecord[];
  readonly writes: { readonly acknowledged: number; readonly refused: number; readonly unknown: number };
  /** Failed writes by label. */
  readonly errors: Readonly<Record<string, number>>;
  readonly readBack: {
    /** Acknowledged writes missing or holding another value. */
    readonly lost: number;
    readonly lostExamples: readonly { readonly key: string; readonly acknowledged: string; readonly found: string | null }[];
    /** Acknowledged writes no read could answer for within its attempts: neither proven kept nor lost. */
    readonly unreadable: number;
    /** Writes of unknown outcome found applied, and found absent. */
    readonly unknownApplied: number;
    readonly unknownAbsent: number;
    /** Writes the system refused ("nothing was done") that were found applied anyway. */
    readonly refusedApplied: number;
    readonly refusedAppliedExamples: readonly string[];
    readonly seconds: number;
  };
  /** Why the kills stopped before the count asked for, when they did. */
  readonly stoppedEarly: string | null;
  readonly durationSeconds: number;
}

export interface CampaignOptions {
  readonly kills: number;
  readonly writers: number;
  readonly log: (line: string) => void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it yields a value or `boundMs` passes (then undefined). */
async function pollFor<T>(probe: () => Promise<T | undefined>, boundMs: number): Promise<T | undefined> {
  const until = performance.now() + boundMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (performance.now() > until) return undefined;
    await sleep(POLL_MS);
  }
}

/** The kill being measured: its time, and the first acknowledgement of a write sent after it. */
interface KillWindow {
  readonly atMs: number;
  recoveredAtMs: number | undefined;
  refused: number;
  unknown: number;
  readonly recovered: () => void;
}

export async function runCampaign(system: FailoverSystem, options: CampaignOptions): Promise<CampaignResult> {
  const { log } = options;
  const started = performance.now();
  const sinceStart = () => Math.round(performance.now() - started);
  const live = new Set(system.memberIds);
  const acknowledged = new Map<string, string>();
  const refused = new Map<string, string>();
  const unknown = new Map<string, string>();
  const errors = new Map<string, number>();
  let window: KillWindow | undefined;
  let stopping = false;
  let acksSeen = 0;
  /** When each call in flight was sent, by a number of its own. */
  const inFlight = new Map<number, number>();
  let calls = 0;

  /** One write through member `id`, its outcome recorded; true when it was acknowledged. */
  const write = async (id: string, key: string, value: string): Promise<boolean> => {
    const sentAt = performance.now();
    const call = calls++;
    inFlight.set(call, sentAt);
    try {
      await system.put(id, key, value, CALL_DEADLINE_MS);
      acknowledged.set(key, value);
      acksSeen++;
      const current = window;
      if (current !== undefined && current.recoveredAtMs === undefined && sentAt >= current.atMs) {
        current.recoveredAtMs = performance.now();
        current.recovered();
      }
      return true;
    } catch (err: unknown) {
      const failed = system.classify(err);
      (failed.outcome === 'refused' ? refused : unknown).set(key, value);
      errors.set(failed.label, (errors.get(failed.label) ?? 0) + 1);
      const current = window;
      if (current !== undefined && current.recoveredAtMs === undefined) current[failed.outcome]++;
      return false;
    } finally {
      inFlight.delete(call);
    }
  };
  const nonce = Math.random().toString(36).slice(2, 8);
  /** A caller in a closed loop: the load. */
  const writer = async (w: number): Promise<void> => {
    for (let seq = 0; !stopping; seq++) {
      const targets = [...live];
      const ok = targets.length > 0 && (await write(targets[(w + seq) % targets.length]!, `lk-${w}-${seq}`, `${w}.${seq}.${nonce}`));
      if (!ok) await sleep(BACKOFF_MS);
    }
  };
  /**
   * A write every PROBE_INTERVAL_MS whatever the others wait for: when every caller is stuck in a
   * call its leader died holding (etcd keeps such a call until its deadline), the probes still
   * see the first moment the cluster takes writes again.
   */
  const prober = async (): Promise<void> => {
    const probes = new Set<Promise<boolean>>();
    for (let seq = 0; !stopping; seq++) {
      const targets = [...live];
      if (targets.length > 0 && probes.size < MAX_PROBES_IN_FLIGHT) {
        const probe = write(targets[seq % targets.length]!, `lk-probe-${seq}`, `probe.${seq}.${nonce}`);
        probes.add(probe);
        void probe.then(() => probes.delete(probe));
      }
      await sleep(PROBE_INTERVAL_MS);
    }
    await Promise.all(probes);
  };
  const writers = [...Array.from({ length: options.writers }, (_, w) => writer(w)), prober()];
  /**
   * Waits for a steady state before a kill: every call sent before `since` (the previous kill's
   * catch-up) has ended, so that none left hanging by the last kill (etcd keeps a proposal its
   * leader died holding until the caller's deadline) is still holding a caller; then SETTLE_MS with
   * every member up; then a write acknowledged. False when none is within RECOVERY_BOUND_MS.
   */
  const settle = async (since: number): Promise<boolean> => {
    await pollFor(async () => ([...inFlight.values()].every((sentAt) => sentAt >= since) ? true : undefined), CALL_DEADLINE_MS + SETTLE_MS);
    await sleep(SETTLE_MS);
    const before = acksSeen;
    return (await pollFor(async () => (acksSeen > before ? true : undefined), RECOVERY_BOUND_MS)) === true;
  };

  const kills: KillRecord[] = [];
  let stoppedEarly: string | null = null;
  let steadySince = performance.now();
  for (let k = 1; k <= options.kills; k++) {
    if (!(await settle(steadySince))) {
      stoppedEarly = `before kill ${k}: no write was acknowledged for ${RECOVERY_BOUND_MS} ms with every member up`;
      break;
    }
    const leader = await pollFor(() => system.leader([...live]), LEADER_BOUND_MS);
    if (leader === undefined) {
      stoppedEarly = `before kill ${k}: the members did not agree on a leader within ${LEADER_BOUND_MS} ms`;
      break;
    }
    live.delete(leader.id);
    let recovered!: () => void;
    const recovery = new Promise<void>((resolve) => (recovered = resolve));
    const current: KillWindow = { atMs: performance.now(), recoveredAtMs: undefined, refused: 0, unknown: 0, recovered };
    window = current;
    const killedAtMs = sinceStart();
    await system.kill(leader.id);
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([recovery, new Promise<void>((resolve) => (bound = setTimeout(resolve, RECOVERY_BOUND_MS)))]);
    clearTimeout(bound);
    window = undefined;
    const recoveryMs = current.recoveredAtMs === undefined ? null : Math.round((current.recoveredAtMs - current.atMs) * 10) / 10;

    const restartAt = performance.now();
    let restartMs: number | null = null;
    let catchUpMs: number | null = null;
    let problem: string | undefined;
    try {
      await system.restart(leader.id);
      restartMs = Math.round(performance.now() - restartAt);
      live.add(leader.id);
      const catchUpAt = performance.now();
      await system.caughtUp(leader.id, [...live].filter((id) => id !== leader.id), RESTART_BOUND_MS);
      catchUpMs = Math.round(performance.now() - catchUpAt);
      steadySince = performance.now();
    } catch (err: unknown) {
      problem = `${leader.id} ${restartMs === null ? 'did not restart' : 'did not catch up'}: ${err instanceof Error ? err.message.slice(0, 400) : String(err)}`;
    }
    const newLeader = problem === undefined ? ((await pollFor(() => system.leader([...live]), LEADER_BOUND_MS))?.id ?? null) : null;
    kills.push({
      kill: k,
      victim: leader.id,
      term: leader.term,
      killedAtMs,
      recoveryMs,
      newLeader,
      restartMs,
      catchUpMs,
      refusedInWindow: current.refused,
      unknownInWindow: current.unknown,
    });
    log(
      `${system.kind} kill ${k}/${options.kills}: ${leader.id} led (term ${leader.term}); ` +
        (recoveryMs === null ? `NO write acknowledged within ${RECOVERY_BOUND_MS} ms` : `writes acknowledged again after ${recoveryMs} ms`) +
        (problem === undefined ? `; restarted in ${restartMs} ms, caught up in ${catchUpMs} ms; leader now ${newLeader ?? 'not agreed'}` : `; ${problem}`),
    );
    if (recoveryMs === null) {
      stoppedEarly = `kill ${k} (${leader.id}): no write sent after the kill was acknowledged within ${RECOVERY_BOUND_MS} ms`;
      break;
    }
    if (problem !== undefined) {
      stoppedEarly = `kill ${k}: ${problem}`;
      break;
    }
  }
  stopping = true;
  await Promise.all(writers);
  // Every member up for the read-back, whatever happened above.
  for (const id of system.memberIds) {
    if (live.has(id)) continue;
    await system.restart(id).then(
      () => live.add(id),
      (err: unknown) => log(`${system.kind}: ${id} did not restart for the read-back: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`),
    );
  }
  if ((await pollFor(() => system.leader([...live]), LEADER_BOUND_MS)) === undefined) {
    log(`${system.kind}: no agreed leader within ${LEADER_BOUND_MS} ms before the read-back; reading anyway`);
  }

  log(`${system.kind}: reading back ${acknowledged.size} acknowledged, ${unknown.size} unknown and ${refused.size} refused writes`);
  const readStarted = performance.now();
  const readers = [...live];
  const checks = [
    ...[...acknowledged].map(([key, value]) => ({ kind: 'acknowledged' as const, key, value })),
    ...[...unknown].map(([key, value]) => ({ kind: 'unknown' as const, key, value })),
    ...[...refused].map(([key, value]) => ({ kind: 'refused' as const, key, value })),
  ];
  const lostExamples: { key: string; acknowledged: string; found: string | null }[] = [];
  const refusedAppliedExamples: string[] = [];
  let lost = 0;
  let unreadable = 0;
  let unknownApplied = 0;
  let unknownAbsent = 0;
  let refusedApplied = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: READS_IN_FLIGHT }, async () => {
      while (next < checks.length) {
        const i = next++;
        const check = checks[i]!;
        const found = await readOnce(system, readers, i, check.key);
        if (found === UNREADABLE) {
          if (check.kind === 'acknowledged') unreadable++;
        } else if (check.kind === 'acknowledged') {
          if (found !== check.value) {
            lost++;
            if (lostExamples.length < EXAMPLES) lostExamples.push({ key: check.key, acknowledged: check.value, found: found ?? null });
          }
        } else if (check.kind === 'unknown') {
          if (found === check.value) unknownApplied++;
          else unknownAbsent++;
        } else if (found === check.value) {
          refusedApplied++;
          if (refusedAppliedExamples.length < EXAMPLES) refusedAppliedExamples.push(check.key);
        }
      }
    }),
  );
  return {
    system: system.kind,
    description: system.description,
    kills,
    writes: { acknowledged: acknowledged.size, refused: refused.size, unknown: unknown.size },
    errors: Object.fromEntries([...errors].sort((a, b) => b[1] - a[1])),
    readBack: {
      lost,
      lostExamples,
      unreadable,
      unknownApplied,
      unknownAbsent,
      refusedApplied,
      refusedAppliedExamples,
      seconds: Math.round((performance.now() - readStarted) / 100) / 10,
    },
    stoppedEarly,
    durationSeconds: Math.round((performance.now() - started) / 100) / 10,
  };
}

const UNREADABLE = Symbol('unreadable');

/** One key's value, asking member after member until one answers; UNREADABLE after READ_ATTEMPTS failures. */
async function readOnce(system: FailoverSystem, readers: readonly string[], i: number, key: string): Promise<string | undefined | typeof UNREADABLE> {
  for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
    try {
      return await system.get(readers[(i + attempt) % readers.length]!, key, CALL_DEADLINE_MS);
    } catch {
      await sleep(200);
    }
  }
  return UNREADABLE;
}
