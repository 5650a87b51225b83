import { describe } from 'vitest';
import { describeMembershipSimulation } from './sim-support.js';

/**
 * AP keyspaces while the cluster's membership changes, under every fault (see membership.test.ts
 * for the changes and the faults). Every write asks for a quorum. Which disks may go (a wiped
 * node, a removed node's retired machine) is decided by what acknowledgements promised
 * (src/sim/loss-guard.ts), and each promise is checked when it is made; after the heal the
 * replicas must converge, every acknowledged write must be held by every node, and each node's
 * versions must be ordered — the AP checks of the disk-fault simulation.
 */
describe('AP keyspaces while the membership changes, under disk, clock, crash and network faults', () => {
  describeMembershipSimulation({
    policy: 'ap',
    checks: 'converge, keep every acknowledged write and keep what each acknowledgement promised',
    okPerSeed: 20,
    faults: ['crashes', 'crashesWithWritesInFlight', 'amnesia', 'recoveries', 'clockStepsBack', 'syncFailures', 'slowDisks', 'powerLosses', 'partitions'],
    // The build that keeps replicating to a removed voter and counting its acknowledgements
    // (ApAsyncOptions.unsafeCountRemoved): a write acknowledged by the coordinator and the removed
    // node has one copy among the voters where a quorum was promised, and the removed node's disk
    // goes with its machine. Caught by the promise check at seed 13 when this was written (3 of
    // the first 40 seeds).
    broken: { name: "that keeps counting a removed voter's acknowledgements", variant: { countRemoved: true }, limit: 100, kinds: ['ack-promise', 'lost-write'] },
  });
});
