import { describe, expect, it } from 'vitest';
import { addStats } from '../../src/sim/seed-check.js';
import { runWatchSeed } from '../../src/sim/watch-workload.js';
import { expectFaultsLanded } from './sim-support.js';

/**
 * Watch and Range on CP keyspaces, proved in the disk-fault simulation (src/sim/watch-workload.ts):
 * under partitions, crashes (inside commits, two at once), wiped disks, clock steps, slow disks,
 * failed syncs, lossy networks and the leader changes they cause, two or three logical watches
 * (a prefix, a single key or a key range, with and without previous values) run on different
 * nodes from revision 1, resuming on another node after every failure; clients read Range at
 * current and past revisions on random nodes, with limits, continuation pages, descending order,
 * keys-only and count-only reads. Followers that fall behind take snapshots in (their watchers
 * must move), the leader compacts history to 12 revisions (resumes from further back start fresh
 * chains), and consumers that pause are cut off as too slow.
 *
 * Each seed's ground truth is the history the nodes' disks hold, merged (they must agree, and it
 * must run from revision 1 to the head without a gap); every acknowledged write must be exactly
 * the changes at its revision; every Range page must equal the model (the committed changes
 * folded up to the revision it answered at); and the watch checker must pass every watch and
 * resume chain. A failing seed prints itself; REPLIKIT_SEED=SEED reruns this file on it alone.
 */
const SEED_COUNT = 300;
const SEEDS = process.env.REPLIKIT_SEED ? [Number(process.env.REPLIKIT_SEED)] : Array.from({ length: SEED_COUNT }, (_, i) => i + 1);
const BROKEN_SEEDS = 50;

describe('Watch and Range on CP keyspaces under disk, clock, crash and network faults', () => {
  it(`pass the watch checker and Range equals the model at its revision on every one of ${SEEDS.length} seeds, and every fault kind lands`, async () => {
    const started = performance.now();
    const totals: Record<string, number> = {};
    for (const seed of SEEDS) {
      const result = await runWatchSeed(seed);
      addStats(totals, result.stats);
      if (result.violation !== undefined) {
        throw new Error(`seed ${seed}: ${result.violation.kind}\n${result.violation.explanation}\nreplay: REPLIKIT_SEED=${seed} npx vitest run test/sim/cp-watch.test.ts`);
      }
    }
    const pick = ['watchesOpened', 'watchResumes', 'watchFreshChains', 'watchEndsStopped', 'watchEndsNoHistory', 'watchEndsCompacted', 'watchEndsSlow', 'watchEvents', 'watchProgress', 'rangesOk', 'rangesPast', 'rangesPaged', 'rangesCompacted', 'committedRevisions', 'compacted', 'leaderChanges', 'crashes', 'partitions', 'amnesia', 'snapshotsInstalled'];
    console.log(`cp watch simulation, ${SEEDS.length} seeds in ${((performance.now() - started) / 1000).toFixed(1)} s: ${pick.map((k) => `${k} ${totals[k] ?? 0}`).join(', ')}`);
    if (SEEDS.length < SEED_COUNT) return;
    const n = SEEDS.length;
    // The runs must have exercised the faults, or they prove nothing (floors at about a third of
    // what 300 seeds show).
    expectFaultsLanded(totals, n);
    expect(totals.leaderChanges!, 'leader changes').toBeGreaterThan(0.4 * n);
    expect(totals.snapshotsInstalled!, 'snapshots installed on lagging followers').toBeGreaterThan(0.15 * n);
    expect(totals.compacted!, 'seeds whose history the leader compacted').toBeGreaterThan(0.3 * n);
    // Watches did real work, failed in every way, and were resumed.
    expect(totals.watchEvents!).toBeGreaterThan(20 * n);
    expect(totals.watchProgress!).toBeGreaterThan(10 * n);
    expect(totals.watchResumes!, 'watch resumes').toBeGreaterThan(0.8 * n);
    expect(totals.watchEndsStopped!, 'watches ended by their node stopping').toBeGreaterThan(0.5 * n);
    expect(totals.watchEndsNoHistory!, 'watches ended by a snapshot taken in').toBeGreaterThan(0.05 * n);
    expect(totals.watchEndsSlow!, 'watches cut off as too slow').toBeGreaterThan(0.05 * n);
    expect(totals.watchEndsCompacted! + totals.watchFreshChains!, 'watches that found their revision compacted').toBeGreaterThan(0.03 * n);
    // Ranges at past revisions, in pages, and below the compaction.
    expect(totals.rangesPast!, 'ranges at past revisions').toBeGreaterThan(3 * n);
    expect(totals.rangesPaged!, 'continuation pages').toBeGreaterThan(n);
    expect(totals.rangesCompacted!, 'ranges refused as compacted').toBeGreaterThan(0.03 * n);
  }, 600_000);

  it('the watch checker catches a deliberately broken resume: each resumed watch drops the first change it delivers', async () => {
    const caught: number[] = [];
    let dropping = 0;
    for (let seed = 1; seed <= BROKEN_SEEDS; seed++) {
      const result = await runWatchSeed(seed, { unsafeDropEventOnResume: true });
      if (result.droppedOnResume.length > 0) dropping++;
      // The checker must name the very change dropped, as lost.
      const named = result.droppedOnResume.some((d) =>
        result.check?.violations.some((v) => (v.kind === 'reliable' || v.kind === 'resumable') && v.watchId === d.watchId && v.revision === d.revision && v.key !== undefined && d.keys.includes(v.key)),
      );
      if (named) caught.push(seed);
    }
    console.log(`drop-on-resume: ${dropping} of ${BROKEN_SEEDS} seeds dropped a change; the checker named it on ${caught.length}`);
    expect(caught.length).toBeGreaterThanOrEqual(Math.max(1, Math.floor(dropping * 0.9)));
    expect(caught.length).toBeGreaterThan(BROKEN_SEEDS / 5);
  }, 300_000);
});
