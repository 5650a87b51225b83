/**
 * CPU time of processes, read from /proc/PID/stat (user + system, in clock ticks of 10 ms). On a
 * shared machine throughput depends on what else runs, but the CPU a system spends per operation
 * hardly does: it is the number that says how efficient each system is, side by side.
 */
import { readFileSync } from 'node:fs';

/** Linux's USER_HZ on every architecture Node runs on (`getconf CLK_TCK`). */
const TICKS_PER_SECOND = 100;

/**
 * User + system CPU of one process from the text of /proc/PID/stat, in ms. The command name in
 * parentheses may hold spaces, so fields are counted from the last ')'.
 */
export function parseProcStatCpuMs(stat: string): number {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15).
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unexpected /proc stat line: ${stat.slice(0, 120)}`);
  return ((utime + stime) * 1000) / TICKS_PER_SECOND;
}

/** Total CPU ms of the processes `pids` (a process already gone counts as 0). */
export function cpuMsOf(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += parseProcStatCpuMs(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      // Gone, or not Linux: nothing to add.
    }
  }
  return total;
}

/** This process's own CPU ms (the load generator's side). */
export function selfCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
