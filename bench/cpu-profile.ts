/**
 * Summarizes V8 `.cpuprofile` files (what `node --cpu-prof` writes): self time per function and
 * per area (grpc-js, lmdb, protobuf, replikit's own folders, Node internals, GC, idle). Self time
 * comes from the sample time deltas, which are exact, rather than hit counts × interval. Pure.
 */

export interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
    readonly columnNumber?: number;
  };
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface SelfTime {
  /** `functionName (file:line)`, or the VM's own name for `(garbage collector)` and the like. */
  readonly name: string;
  readonly area: string;
  readonly selfMs: number;
}

export interface ProfileSummary {
  /** Wall time the profile covers. */
  readonly totalMs: number;
  /** Time the thread was not idle. */
  readonly busyMs: number;
  /** Self time per function, largest first, idle left out. */
  readonly functions: readonly SelfTime[];
  /** Self time per area, largest first, idle left out. */
  readonly areas: readonly { readonly area: string; readonly selfMs: number }[];
}

/** The area a script URL belongs to: a package, a replikit folder, Node internals, or the VM. */
export function areaOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(program)') return 'VM (program)';
    if (functionName === '(root)') return 'VM (program)';
    return 'native built-ins';
  }
  if (url.startsWith('node:')) return 'Node internals';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg !== null) return pkg[1]!;
  const own = /\/(?:dist|src)\/([^/]+)(\/|\.js|\.ts)/.exec(url);
  if (own !== null) return `replikit ${own[1]!.replace(/\.(js|ts)$/, '')}`;
  return 'other';
}

function shortUrl(url: string): string {
  const pkg = /node_modules\/(.*)$/.exec(url);
  if (pkg !== null) return pkg[1]!;
  const own = /\/((?:dist|src)\/.*)$/.exec(url);
  if (own !== null) return own[1]!;
  return url.replace(/^file:\/\//, '');
}

/**
 * A span of time on V8's profile clock, in µs. On Linux that clock is CLOCK_MONOTONIC, the same
 * as `process.hrtime`, so another process can mark a span with `process.hrtime.bigint() / 1000n`.
 */
export interface ProfileWindow {
  readonly fromUs: number;
  readonly toUs: number;
}

/**
 * Self time per function and per area over one or more profiles (e.g. the three nodes'), counting
 * only samples inside `window` when one is given (e.g. the measured load, without start-up).
 */
export function summarizeProfiles(profiles: readonly CpuProfile[], window?: ProfileWindow): ProfileSummary {
  const byFunction = new Map<string, SelfTime>();
  const byArea = new Map<string, number>();
  let totalMs = 0;
  let idleMs = 0;
  for (const profile of profiles) {
    const from = Math.max(profile.startTime, window?.fromUs ?? -Infinity);
    const to = Math.min(profile.endTime, window?.toUs ?? Infinity);
    totalMs += Math.max(0, to - from) / 1000;
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<number, number>();
    // timeDeltas[i] is the time between sample i-1 and sample i; it is charged to sample i, as
    // Chrome DevTools does.
    let at = profile.startTime;
    for (let i = 0; i < profile.samples.length; i++) {
      const delta = Math.max(0, profile.timeDeltas[i] ?? 0);
      at += delta;
      if (at < from || at > to) continue;
      const id = profile.samples[i]!;
      selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
    }
    for (const [id, us] of selfUs) {
      const frame = nodes.get(id)?.callFrame;
      if (frame === undefined) continue;
      const area = areaOf(frame.url, frame.functionName);
      const ms = us / 1000;
      if (area === 'idle') {
        idleMs += ms;
        continue;
      }
      const name = frame.url === '' ? frame.functionName || '(anonymous)' : `${frame.functionName || '(anonymous)'} (${shortUrl(frame.url)}:${frame.lineNumber + 1})`;
      const prev = byFunction.get(name);
      byFunction.set(name, { name, area, selfMs: (prev?.selfMs ?? 0) + ms });
      byArea.set(area, (byArea.get(area) ?? 0) + ms);
    }
  }
  return {
    totalMs,
    busyMs: totalMs - idleMs,
    functions: [...byFunction.values()].sort((a, b) => b.selfMs - a.selfMs),
    areas: [...byArea.entries()].map(([area, selfMs]) => ({ area, selfMs })).sort((a, b) => b.selfMs - a.selfMs),
  };
}

/** The summary as Markdown: busy share, top `topN` functions and the areas, each as a share of busy time. */
export function renderProfileSummary(title: string, summary: ProfileSummary, topN = 10): string {
  const pct = (ms: number) => `${((ms / Math.max(summary.busyMs, 1e-9)) * 100).toFixed(1)} %`;
  const lines = [
    `### ${title}`,
    '',
    `${(summary.totalMs / 1000).toFixed(1)} s profiled, ${(summary.busyMs / 1000).toFixed(1)} s busy (${((summary.busyMs / Math.max(summary.totalMs, 1e-9)) * 100).toFixed(0)} % of the thread).`,
    '',
    '| # | function | area | self ms | share of busy |',
    '|--:|---|---|--:|--:|',
    ...summary.functions.slice(0, topN).map((f, i) => `| ${i + 1} | \`${f.name}\` | ${f.area} | ${f.selfMs.toFixed(0)} | ${pct(f.selfMs)} |`),
    '',
    '| area | self ms | share of busy |',
    '|---|--:|--:|',
    ...summary.areas.map((a) => `| ${a.area} | ${a.selfMs.toFixed(0)} | ${pct(a.selfMs)} |`),
  ];
  return `${lines.join('\n')}\n`;
}
