/**
 * Failure detection settings: one documented defaults object (the LAN profile), the WAN and local
 * profiles built from it, and one validation whose errors name both conflicting values. In the
 * manner of hashicorp/memberlist's `DefaultLANConfig`, every default is a named constant with its
 * unit and its reason; `test/failure/config-docs.test.ts` keeps the `@default` tags below equal
 * to the values.
 *
 * Detection time, as the defaults give it: suspicion comes when phi reaches the threshold, at
 * mean interval + acceptable pause + 5.23 standard deviations (phi 8) after the last beat; DEAD
 * follows `deadAfterMs` later; each step may lag by one tick. On a quiet LAN (deviation at its
 * 25 ms floor) that is 100 + 200 + 131 + 300 ≈ 730 ms from the last beat to DEAD, with beats
 * jittered by ±50 ms (deviation ≈ 41 ms) about 830 ms: under 1 s while the measured deviation
 * stays below about 65 ms.
 */

/** Beat every 100 ms: LAN round trips take well under 1 ms, and 10 beats/s on an open stream cost nothing. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 100;

/** Re-evaluate every 10 ms: a tenth of the beat interval, so tick lag is a small share of detection time. */
export const DEFAULT_TICK_INTERVAL_MS = 10;

/** Suspect at phi 8, Akka's and Cassandra's default: a 1e-8 chance that a live peer is this late. */
export const DEFAULT_PHI_THRESHOLD = 8;

/** Keep 1000 intervals, Akka's and Cassandra's window: 100 s of history at 100 ms beats, 8 KB per peer. */
export const DEFAULT_MAX_SAMPLE_SIZE = 1000;

/** Floor the deviation at 25 ms: Node.js event-loop and GC jitter does not shrink with the beat interval. */
export const DEFAULT_MIN_STD_DEVIATION_MS = 25;

/** Tolerate 200 ms of extra silence: Linux's minimum TCP retransmission timeout, one lost segment. */
export const DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_MS = 200;

/** Confirm DEAD after 300 ms of suspicion: three more beats' time to show life, still DEAD within 1 s. */
export const DEFAULT_DEAD_AFTER_MS = 300;

/** Wait 2 s for first beats: grpc-js retries a refused first dial after 1 s ± 20 %. */
export const DEFAULT_STARTUP_GRACE_MS = 2000;

/** Flag peers whose clocks are 500 ms off: DESIGN §4 and CockroachDB's default maximum offset. */
export const DEFAULT_MAX_CLOCK_OFFSET_MS = 500;

/** Keep the last 8 ClockSync samples and use the lowest-RTT one, as NTP's clock filter does. */
export const DEFAULT_CLOCK_SAMPLE_WINDOW = 8;

/** WAN: beat every second, Akka's default; beats far more frequent than a 30–300 ms RTT measure queueing. */
export const WAN_HEARTBEAT_INTERVAL_MS = 1000;

/** WAN: tick every 100 ms, a tenth of the beat interval as on the LAN. */
export const WAN_TICK_INTERVAL_MS = 100;

/** WAN: floor the deviation at 200 ms; queueing and route changes on long paths jitter by hundreds of ms. */
export const WAN_MIN_STD_DEVIATION_MS = 200;

/** WAN: tolerate 3 s of extra silence, Akka cluster's default: RTT-scaled retransmissions back off for seconds. */
export const WAN_ACCEPTABLE_HEARTBEAT_PAUSE_MS = 3000;

/** WAN: confirm DEAD after 5 s of suspicion, five beat intervals; about 10 s from the last beat to DEAD. */
export const WAN_DEAD_AFTER_MS = 5000;

/** WAN: wait 10 s for first beats: TLS over long round trips plus several grpc-js reconnect backoffs. */
export const WAN_STARTUP_GRACE_MS = 10_000;

/** Local: beat every 50 ms; loopback takes microseconds and tests want a crash DEAD in about 0.5 s. */
export const LOCAL_HEARTBEAT_INTERVAL_MS = 50;

/** Local: tick every 5 ms, a tenth of the beat interval. */
export const LOCAL_TICK_INTERVAL_MS = 5;

/** Local: confirm DEAD after 100 ms, two beat intervals; a test box has no flaky links to ride out. */
export const LOCAL_DEAD_AFTER_MS = 100;

/**
 * How a node detects failed peers and judges their clocks. All durations in milliseconds on the
 * node's monotonic clock. The pure parts (`PhiAccrualDetector`, `MembershipView`) read the fields
 * they need; `heartbeatIntervalMs` and `tickIntervalMs` also tell the driver how often to send
 * beats and call `MembershipView.tick`.
 */
export interface FailureDetectorConfig {
  /**
   * How often a node sends a beat on each peer's `Heartbeat` stream, in milliseconds; also the
   * interval the detector assumes before it has measured any (Akka's first-heartbeat estimate).
   * On a LAN round trips take well under a millisecond, so beats can come often enough for
   * sub-second detection, and 10 small messages a second on an already open stream cost nothing
   * measurable (DESIGN §6: one stream carries about 100k messages/s). Detection time grows with
   * it: roughly seven intervals from the last beat to DEAD.
   * @default 100
   */
  readonly heartbeatIntervalMs: number;

  /**
   * How often the driver calls `MembershipView.tick`, in milliseconds. Every state change lags
   * the moment it became due by up to one tick; a tenth of the beat interval keeps both steps
   * (ALIVE → SUSPECT → DEAD) within 20 ms of due, for a few phi evaluations per peer per tick.
   * @default 10
   */
  readonly tickIntervalMs: number;

  /**
   * The phi at or above which an ALIVE peer becomes SUSPECT (dimensionless: phi = −log10 of the
   * probability that a live peer would be this late). 8, Akka's and Cassandra's default, means a
   * 1e-8 chance under the learned distribution; it is reached about 5.23 standard deviations past
   * the mean interval plus the acceptable pause. Real delays have heavier tails than the normal
   * model, which the acceptable pause absorbs. See `bench/phi.ts` for the trade-off at 4, 8, 12.
   * @default 8
   */
  readonly phiThreshold: number;

  /**
   * How many recent beat inter-arrival intervals the statistics cover (a count). 1000, as in
   * Akka and Cassandra: at 100 ms beats the window spans the last 100 s, long enough that one
   * outlier moves the deviation little and the estimate's relative error stays near 2 %, short
   * enough to follow a change of load within a couple of minutes; 8 KB per peer. A 200-sample
   * window (20 s) would let each GC pause in it swing the deviation, and detection time with it.
   * @default 1000
   */
  readonly maxSampleSize: number;

  /**
   * The smallest standard deviation phi uses, in milliseconds. Akka uses 100 ms with 1 s beats;
   * scaling that by the interval would give 10 ms, but the jitter this floor guards against does
   * not shrink with the interval: a busy Node.js event loop and young-generation GC delay timers
   * and socket reads by tens of milliseconds. Without a floor, a quiet LAN's near-constant
   * intervals (deviation about 1 ms) would push phi to the threshold at a 20 ms hiccup. 25 ms is
   * a quarter interval, the spread Akka's first-heartbeat estimate assumes; it costs about 131 ms
   * (5.23 × 25) of detection time on a quiet network.
   * @default 25
   */
  readonly minStdDeviationMs: number;

  /**
   * Extra silence, in milliseconds, added to the mean interval before phi is computed: a pause
   * this long is no sign of failure at all. 200 ms is Linux's minimum TCP retransmission timeout
   * (one lost segment on the heartbeat stream holds a beat that long) and about a major GC pause
   * of a large Node.js heap. Akka allows three intervals on its cluster (3 s with 1 s beats); two
   * intervals here keep a crash under 1 s to DEAD.
   * @default 200
   */
  readonly acceptableHeartbeatPauseMs: number;

  /**
   * How long, in milliseconds, a peer stays SUSPECT without any sign of life before it is DEAD
   * (the confirmation time). SUSPECT already takes the peer out of quorum counts; DEAD is what
   * heavier reactions (hinted handoff, dropping connections) wait for. Three beat intervals give
   * a peer whose beats were only held up (a long GC pause, a second retransmission) time to show
   * life first, and suspicion at about 0.43–0.53 s plus 0.3 s and two ticks stays under 1 s.
   * @default 300
   */
  readonly deadAfterMs: number;

  /**
   * How long after the view is created, in milliseconds, peers never heard from still count as
   * possibly reachable: quorums they could complete are `pending`, not `unreachable`, so a CP
   * keyspace does not refuse requests just because first beats are still on their way. When
   * nodes start together, the first dial may find a peer not yet listening, and grpc-js retries
   * after its initial reconnect backoff of 1 s ± 20 %; 2 s covers one such retry and a first beat.
   * @default 2000
   */
  readonly startupGraceMs: number;

  /**
   * The largest clock offset to a peer, in milliseconds, that is not flagged: a peer whose HLC
   * runs further ahead is refused, and one whose ClockSync offset exceeds it even after allowing
   * for measurement error is flagged. 500 ms is DESIGN §4's bound and CockroachDB's default
   * maximum offset: far above how far NTP-disciplined clocks drift apart, small enough that HLC
   * timestamps stay close to real time.
   * @default 500
   */
  readonly maxClockOffsetMs: number;

  /**
   * How many recent ClockSync samples per peer are kept (a count); the one with the lowest round
   * trip gives the offset and RTT. A sample delayed by queueing on one leg has an asymmetric path
   * and a wrong offset, while the lowest-RTT sample has the tightest error bound (± RTT / 2).
   * 8 is the size of NTP's clock filter (RFC 5905 §10).
   * @default 8
   */
  readonly clockSampleWindow: number;
}

/**
 * The defaults: the LAN profile. Frozen; copy it (or call a profile function) to change a field.
 */
export const DEFAULT_FAILURE_DETECTOR_CONFIG: Readonly<FailureDetectorConfig> = Object.freeze({
  heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
  tickIntervalMs: DEFAULT_TICK_INTERVAL_MS,
  phiThreshold: DEFAULT_PHI_THRESHOLD,
  maxSampleSize: DEFAULT_MAX_SAMPLE_SIZE,
  minStdDeviationMs: DEFAULT_MIN_STD_DEVIATION_MS,
  acceptableHeartbeatPauseMs: DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_MS,
  deadAfterMs: DEFAULT_DEAD_AFTER_MS,
  startupGraceMs: DEFAULT_STARTUP_GRACE_MS,
  maxClockOffsetMs: DEFAULT_MAX_CLOCK_OFFSET_MS,
  clockSampleWindow: DEFAULT_CLOCK_SAMPLE_WINDOW,
});

/** Nodes in one data centre: the defaults. About 0.75–0.85 s from a crash to DEAD. */
export function lanProfile(): FailureDetectorConfig {
  return { ...DEFAULT_FAILURE_DETECTOR_CONFIG };
}

/**
 * Nodes across regions: slower beats and more patience, as Akka's defaults (1 s beats, 3 s
 * acceptable pause). About 10 s from a crash to DEAD.
 */
export function wanProfile(): FailureDetectorConfig {
  return {
    ...DEFAULT_FAILURE_DETECTOR_CONFIG,
    heartbeatIntervalMs: WAN_HEARTBEAT_INTERVAL_MS,
    tickIntervalMs: WAN_TICK_INTERVAL_MS,
    minStdDeviationMs: WAN_MIN_STD_DEVIATION_MS,
    acceptableHeartbeatPauseMs: WAN_ACCEPTABLE_HEARTBEAT_PAUSE_MS,
    deadAfterMs: WAN_DEAD_AFTER_MS,
    startupGraceMs: WAN_STARTUP_GRACE_MS,
  };
}

/**
 * Every node on one machine (tests, simulations, loopback clusters): faster beats and a shorter
 * confirmation, but the same acceptable pause and deviation floor, because a loaded CI machine
 * stalls event loops as much as a LAN delays packets. About 0.5 s from a crash to DEAD.
 */
export function localProfile(): FailureDetectorConfig {
  return {
    ...DEFAULT_FAILURE_DETECTOR_CONFIG,
    heartbeatIntervalMs: LOCAL_HEARTBEAT_INTERVAL_MS,
    tickIntervalMs: LOCAL_TICK_INTERVAL_MS,
    deadAfterMs: LOCAL_DEAD_AFTER_MS,
  };
}

/** Thrown by {@link validateFailureDetectorConfig}; `problems` lists every problem found. */
export class InvalidFailureDetectorConfigError extends Error {
  override readonly name = 'InvalidFailureDetectorConfigError';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid failure detector config: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

/**
 * Every problem with `cfg`, in field order; empty when it is valid. A problem between two fields
 * names both with their values, e.g. "deadAfterMs (50) must be at least heartbeatIntervalMs (100)".
 */
export function failureDetectorConfigProblems(cfg: FailureDetectorConfig): string[] {
  const problems: string[] = [];
  const positive = (name: keyof FailureDetectorConfig): void => {
    const value = cfg[name];
    if (!(value > 0) || !Number.isFinite(value)) problems.push(`${name} must be a positive finite number, not ${value}`);
  };
  const atLeast = (name: keyof FailureDetectorConfig, min: number): void => {
    const value = cfg[name];
    if (!Number.isSafeInteger(value) || value < min) problems.push(`${name} must be an integer of at least ${min}, not ${value}`);
  };

  positive('heartbeatIntervalMs');
  positive('tickIntervalMs');
  positive('phiThreshold');
  atLeast('maxSampleSize', 2);
  positive('minStdDeviationMs');
  if (!(cfg.acceptableHeartbeatPauseMs >= 0) || !Number.isFinite(cfg.acceptableHeartbeatPauseMs)) {
    problems.push(`acceptableHeartbeatPauseMs must be a non-negative finite number, not ${cfg.acceptableHeartbeatPauseMs}`);
  }
  positive('deadAfterMs');
  positive('startupGraceMs');
  positive('maxClockOffsetMs');
  atLeast('clockSampleWindow', 1);

  // Relations between fields; each message names both values and says why.
  if (cfg.tickIntervalMs > cfg.heartbeatIntervalMs) {
    problems.push(
      `tickIntervalMs (${cfg.tickIntervalMs}) must be at most heartbeatIntervalMs (${cfg.heartbeatIntervalMs}): ` +
        'slower ticks would delay every state change by more than a missed beat',
    );
  }
  if (cfg.deadAfterMs < cfg.heartbeatIntervalMs) {
    problems.push(
      `deadAfterMs (${cfg.deadAfterMs}) must be at least heartbeatIntervalMs (${cfg.heartbeatIntervalMs}): ` +
        'a suspected peer needs at least one beat interval to show it is alive before it is declared dead',
    );
  }
  if (cfg.startupGraceMs < cfg.heartbeatIntervalMs) {
    problems.push(
      `startupGraceMs (${cfg.startupGraceMs}) must be at least heartbeatIntervalMs (${cfg.heartbeatIntervalMs}): ` +
        'a peer cannot send its first beat sooner than one interval after it connects',
    );
  }
  return problems;
}

/** Throws an {@link InvalidFailureDetectorConfigError} listing every problem when `cfg` is invalid. */
export function validateFailureDetectorConfig(cfg: FailureDetectorConfig): void {
  const problems = failureDetectorConfigProblems(cfg);
  if (problems.length > 0) throw new InvalidFailureDetectorConfigError(problems);
}
