import { compareVersion, formatVersion } from '../storage/entry.js';
import type { AcknowledgedWrite } from './register-workload.js';

/**
 * What HLC versions promise a node's own writes: two writes of one key coordinated by one node,
 * the second begun after the first was acknowledged, carry increasing versions; and no two
 * acknowledged writes share a version. A node whose clock went back across a restart and minted
 * versions from it breaks this (its later write loses to its earlier one under last-writer-wins,
 * or reuses its version). Returns a description of the first violation, or undefined.
 */
export function checkVersionOrder(writes: readonly { readonly key: string; readonly node: string; readonly version: AcknowledgedWrite['version']; readonly invokedAtMs: number; readonly completedAtMs: number; readonly value?: string | null }[]): string | undefined {
  const seen = new Map<string, (typeof writes)[number]>();
  for (const w of writes) {
    const id = `${w.key}\u0000${formatVersion(w.version)}`;
    const twin = seen.get(id);
    if (twin !== undefined) {
      return `two acknowledged writes of ${w.key} share version ${formatVersion(w.version)} (by ${twin.node} at ${twin.invokedAtMs} ms and by ${w.node} at ${w.invokedAtMs} ms)`;
    }
    seen.set(id, w);
  }
  const byNodeAndKey = new Map<string, (typeof writes)[number][]>();
  for (const w of writes) {
    const id = `${w.node}\u0000${w.key}`;
    let list = byNodeAndKey.get(id);
    if (list === undefined) byNodeAndKey.set(id, (list = []));
    list.push(w);
  }
  for (const list of byNodeAndKey.values()) {
    for (const a of list) {
      for (const b of list) {
        if (a.completedAtMs < b.invokedAtMs && compareVersion(a.version, b.version) >= 0) {
          return (
            `${a.node} acknowledged a write of ${a.key} with version ${formatVersion(a.version)} at ${a.completedAtMs} ms, ` +
            `then began another at ${b.invokedAtMs} ms and gave it the older version ${formatVersion(b.version)}: its clock went back`
          );
        }
      }
    }
  }
  return undefined;
}
