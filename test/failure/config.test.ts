import { describe, expect, it } from 'vitest';
import {
  DEFAULT_FAILURE_DETECTOR_CONFIG,
  InvalidFailureDetectorConfigError,
  MembershipView,
  failureDetectorConfigProblems,
  lanProfile,
  localProfile,
  standardScoreAtPhi,
  validateFailureDetectorConfig,
  wanProfile,
} from '../../src/failure/index.js';
import type { FailureDetectorConfig } from '../../src/failure/index.js';

describe('failure detector config', () => {
  it('has valid profiles built from the defaults', () => {
    for (const profile of [lanProfile(), wanProfile(), localProfile()]) {
      expect(failureDetectorConfigProblems(profile)).toEqual([]);
      expect(Object.keys(profile).sort()).toEqual(Object.keys(DEFAULT_FAILURE_DETECTOR_CONFIG).sort());
    }
    expect(lanProfile()).toEqual(DEFAULT_FAILURE_DETECTOR_CONFIG);
    expect(wanProfile().maxClockOffsetMs).toBe(DEFAULT_FAILURE_DETECTOR_CONFIG.maxClockOffsetMs);
    expect(Object.isFrozen(DEFAULT_FAILURE_DETECTOR_CONFIG)).toBe(true);
    expect(lanProfile()).not.toBe(lanProfile());
  });

  it('puts the worst-case LAN detection of a quiet network, and of ±50 ms jitter, under 1 s on paper', () => {
    // The same arithmetic the config comments state; the virtual-time tests measure it.
    const c = lanProfile();
    const budget = (deviationMs: number) =>
      c.heartbeatIntervalMs + c.acceptableHeartbeatPauseMs + standardScoreAtPhi(c.phiThreshold) * deviationMs + c.deadAfterMs + 2 * c.tickIntervalMs;
    expect(budget(c.minStdDeviationMs)).toBeLessThan(800);
    expect(budget(Math.sqrt(2 * 100 ** 2 / 12))).toBeLessThan(900); // slot ± U(50): intervals' deviation 40.8 ms
    expect(budget(65)).toBeLessThan(1000);
  });

  it('names both values when two fields conflict', () => {
    const cfg: FailureDetectorConfig = { ...lanProfile(), deadAfterMs: 50 };
    expect(failureDetectorConfigProblems(cfg)).toEqual([
      'deadAfterMs (50) must be at least heartbeatIntervalMs (100): a suspected peer needs at least one beat interval to show it is alive before it is declared dead',
    ]);
    expect(() => validateFailureDetectorConfig(cfg)).toThrow('deadAfterMs (50) must be at least heartbeatIntervalMs (100)');
    expect(failureDetectorConfigProblems({ ...lanProfile(), tickIntervalMs: 250 })[0]).toMatch(
      /^tickIntervalMs \(250\) must be at most heartbeatIntervalMs \(100\)/,
    );
    expect(failureDetectorConfigProblems({ ...lanProfile(), startupGraceMs: 40 })[0]).toMatch(
      /^startupGraceMs \(40\) must be at least heartbeatIntervalMs \(100\)/,
    );
  });

  it('lists every problem at once, and refuses non-numbers and non-integers', () => {
    const cfg: FailureDetectorConfig = {
      ...lanProfile(),
      heartbeatIntervalMs: Number.NaN,
      phiThreshold: 0,
      maxSampleSize: 1.5,
      acceptableHeartbeatPauseMs: -1,
      clockSampleWindow: 0,
    };
    let error: unknown;
    try {
      validateFailureDetectorConfig(cfg);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidFailureDetectorConfigError);
    const problems = (error as InvalidFailureDetectorConfigError).problems;
    expect(problems).toEqual([
      'heartbeatIntervalMs must be a positive finite number, not NaN',
      'phiThreshold must be a positive finite number, not 0',
      'maxSampleSize must be an integer of at least 2, not 1.5',
      'acceptableHeartbeatPauseMs must be a non-negative finite number, not -1',
      'clockSampleWindow must be an integer of at least 1, not 0',
    ]);
    expect((error as Error).message).toContain(problems.join('; '));
  });

  it('is validated when a membership view is built', () => {
    expect(
      () => new MembershipView({ selfId: 'a', peers: [], config: { ...lanProfile(), deadAfterMs: 50 }, startMs: 0 }),
    ).toThrow(InvalidFailureDetectorConfigError);
  });
});
