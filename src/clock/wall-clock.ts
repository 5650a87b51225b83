/**
 * A source of wall time in milliseconds since the Unix epoch. Protocol code never calls
 * `Date.now()` itself: a real node passes {@link systemWallClock}, a simulation passes virtual
 * time, and a test can skew one node's clock on purpose.
 */
export type WallClock = () => number;

/** The machine's wall clock. The only place in the library's protocol layers that reads it. */
export const systemWallClock: WallClock = () => Date.now();
