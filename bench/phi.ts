/**
 * The phi trade-off: how fast a crash is detected against how often a live peer is suspected,
 * for phi thresholds 4, 8 and 12 (and more for the curve), under injected beat jitter.
 *
 * Run: `npx tsx bench/phi.ts` (optionally `--seeds N --minutes M --out FILE.svg`). Everything runs in virtual
 * time with seeded randomness, so a run takes seconds and prints the same table every time.
 *
 * Per scenario, threshold and seed: ten virtual minutes of beats from a live peer, counting the
 * gaps in which phi reached the threshold (phi only grows until the next beat, so its value just
 * before a beat is the gap's maximum: a gap counts once however long it lasts); then the peer
 * crashes, and the detection time is when phi reaches the threshold after its last beat, exactly
 * (`PhiAccrualDetector.suspicionAtMs`). DEAD comes `deadAfterMs` later, plus tick lag.
 *
 * Writes the table to stdout and the curve to bench/results/phi-tradeoff.svg.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PhiAccrualDetector, lanProfile } from '../src/failure/index.js';
import type { FailureDetectorConfig } from '../src/failure/index.js';
// The seeded source and beat model live with the failure tests until src/sim/ has its own.
import { beatArrivals } from '../test/failure/beat-schedule.js';
import type { BeatJitter } from '../test/failure/beat-schedule.js';
import { SeededRandom } from '../src/sim/seeded-random.js';

/** The thresholds of the table. */
const TABLE_THRESHOLDS = [4, 8, 12];

/** The thresholds of the curve: enough points to show its shape. */
const CURVE_THRESHOLDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16];

/** Seeds per point: 100 runs of 10 minutes is about 17 peer-hours, so one suspicion ≈ 0.06/h. */
const DEFAULT_SEEDS = 100;

/** Virtual minutes of live beats per run before the crash. */
const DEFAULT_MINUTES = 10;

const OUTPUT = fileURLToPath(new URL('./results/phi-tradeoff.svg', import.meta.url));

interface Scenario {
  readonly name: string;
  readonly jitter: BeatJitter;
  /** Overrides of the LAN profile besides the threshold. */
  readonly config: Partial<FailureDetectorConfig>;
  readonly colour: string;
}

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'quiet LAN: ±5 ms',
    jitter: { intervalMs: 100, jitterMs: 5, pauseProbability: 0, maxPauseMs: 0 },
    config: {},
    colour: '#2b8cbe',
  },
  {
    name: 'jittery: ±50 ms, 1% held ≤200 ms',
    jitter: { intervalMs: 100, jitterMs: 50, pauseProbability: 0.01, maxPauseMs: 200 },
    config: {},
    colour: '#31a354',
  },
  {
    name: 'stormy: ±50 ms, 3% held ≤600 ms',
    jitter: { intervalMs: 100, jitterMs: 50, pauseProbability: 0.03, maxPauseMs: 600 },
    config: {},
    colour: '#e6550d',
  },
  {
    name: 'jittery, no acceptable pause',
    jitter: { intervalMs: 100, jitterMs: 50, pauseProbability: 0.01, maxPauseMs: 200 },
    config: { acceptableHeartbeatPauseMs: 0 },
    colour: '#756bb1',
  },
];

interface Point {
  readonly scenario: Scenario;
  readonly threshold: number;
  readonly detectionMeanMs: number;
  readonly detectionP99Ms: number;
  readonly deadMeanMs: number;
  readonly falseSuspicionsPerHour: number;
  readonly runsWithFalseSuspicion: number;
  readonly runs: number;
}

function measure(scenario: Scenario, threshold: number, seeds: number, minutes: number): Point {
  const config = { ...lanProfile(), ...scenario.config, phiThreshold: threshold };
  const durationMs = minutes * 60_000;
  const detections: number[] = [];
  let falseSuspicions = 0;
  let runsWithFalseSuspicion = 0;
  for (let seed = 1; seed <= seeds; seed += 1) {
    const detector = new PhiAccrualDetector({
      threshold,
      maxSampleSize: config.maxSampleSize,
      minStdDeviationMs: config.minStdDeviationMs,
      acceptableHeartbeatPauseMs: config.acceptableHeartbeatPauseMs,
      firstHeartbeatEstimateMs: config.heartbeatIntervalMs,
    });
    // Seeds differ per scenario only through the jitter model: threshold points share beats.
    const arrivals = beatArrivals(new SeededRandom(seed), scenario.jitter, scenario.jitter.intervalMs, durationMs);
    let suspicions = 0;
    for (const at of arrivals) {
      if (detector.lastHeartbeatMs !== undefined && detector.phi(at) >= threshold) suspicions += 1;
      detector.heartbeat(at);
    }
    falseSuspicions += suspicions;
    if (suspicions > 0) runsWithFalseSuspicion += 1;
    const last = arrivals[arrivals.length - 1] ?? 0;
    detections.push((detector.suspicionAtMs() ?? Number.NaN) - last);
  }
  detections.sort((a, b) => a - b);
  const mean = detections.reduce((s, x) => s + x, 0) / detections.length;
  return {
    scenario,
    threshold,
    detectionMeanMs: mean,
    detectionP99Ms: detections[Math.min(detections.length - 1, Math.ceil(0.99 * detections.length) - 1)] ?? Number.NaN,
    deadMeanMs: mean + config.deadAfterMs,
    falseSuspicionsPerHour: falseSuspicions / ((seeds * minutes) / 60),
    runsWithFalseSuspicion,
    runs: seeds,
  };
}

function table(points: readonly Point[]): string {
  const header = ['scenario', 'phi', 'detect mean', 'detect p99', 'DEAD mean', 'false susp./peer-h', 'runs w/ false susp.'];
  const rows = points.map((p) => [
    p.scenario.name,
    String(p.threshold),
    `${p.detectionMeanMs.toFixed(0)} ms`,
    `${p.detectionP99Ms.toFixed(0)} ms`,
    `${p.deadMeanMs.toFixed(0)} ms`,
    p.falseSuspicionsPerHour.toFixed(2),
    `${p.runsWithFalseSuspicion}/${p.runs}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => (i < 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i < 1 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

/**
 * The curve as a hand-written SVG: detection time (x, linear) against false suspicions per
 * peer-hour (y, logarithmic, with zero drawn on its own row below the lowest decade, since a
 * log axis has no zero and "none seen" is the most common result).
 */
function svg(curves: readonly Point[][], seeds: number, minutes: number): string {
  const width = 960;
  const height = 520;
  const margin = { left: 80, right: 290, top: 50, bottom: 60 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const all = curves.flat();
  const xMin = 0;
  const xMax = Math.ceil(Math.max(...all.map((p) => p.detectionMeanMs)) / 100) * 100;
  const resolution = 1 / ((seeds * minutes) / 60); // one suspicion in all runs
  const decadeLow = Math.floor(Math.log10(resolution));
  const decadeHigh = Math.max(decadeLow + 1, Math.ceil(Math.log10(Math.max(...all.map((p) => p.falseSuspicionsPerHour), 1))));
  const zeroRow = plotH; // y of "none seen"
  const logTop = 0;
  const logBottom = plotH - 40;
  const x = (ms: number) => margin.left + ((ms - xMin) / (xMax - xMin)) * plotW;
  const y = (rate: number) =>
    margin.top +
    (rate <= 0 ? zeroRow : logTop + ((decadeHigh - Math.log10(rate)) / (decadeHigh - decadeLow)) * (logBottom - logTop));

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${margin.left}" y="24" font-size="15" font-weight="bold">Phi accrual trade-off: detection time vs false suspicions (100 ms beats, LAN profile)</text>`,
    `<text x="${margin.left}" y="40" fill="#555">${seeds} seeds × ${minutes} virtual min per point; labels are phi thresholds; DEAD comes deadAfterMs (300 ms) after detection</text>`,
  );
  // Axes and grid.
  for (let ms = xMin; ms <= xMax; ms += 100) {
    parts.push(
      `<line x1="${x(ms)}" y1="${margin.top}" x2="${x(ms)}" y2="${margin.top + plotH}" stroke="#eee"/>`,
      `<text x="${x(ms)}" y="${margin.top + plotH + 18}" text-anchor="middle">${ms}</text>`,
    );
  }
  for (let d = decadeLow; d <= decadeHigh; d += 1) {
    const rate = 10 ** d;
    parts.push(
      `<line x1="${margin.left}" y1="${y(rate)}" x2="${margin.left + plotW}" y2="${y(rate)}" stroke="#eee"/>`,
      `<text x="${margin.left - 8}" y="${y(rate) + 4}" text-anchor="end">${rate >= 1 ? rate.toFixed(0) : rate.toPrecision(1)}</text>`,
    );
  }
  parts.push(
    `<line x1="${margin.left}" y1="${y(0)}" x2="${margin.left + plotW}" y2="${y(0)}" stroke="#ccc" stroke-dasharray="4 3"/>`,
    `<text x="${margin.left - 8}" y="${y(0) + 4}" text-anchor="end">none</text>`,
    `<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${margin.left + plotW / 2}" y="${height - 16}" text-anchor="middle">mean time from the last beat to suspicion (phi ≥ threshold), ms</text>`,
    `<text transform="translate(20 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">false suspicions per peer-hour (log)</text>`,
  );
  // Curves.
  curves.forEach((points, i) => {
    const scenario = points[0]?.scenario;
    if (scenario === undefined) return;
    const path = points.map((p) => `${x(p.detectionMeanMs).toFixed(1)},${y(p.falseSuspicionsPerHour).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${path}" fill="none" stroke="${scenario.colour}" stroke-width="2"/>`);
    for (const p of points) {
      const highlighted = TABLE_THRESHOLDS.includes(p.threshold);
      // Points with no suspicion share the bottom row; stack their labels by curve so they stay legible.
      const labelLift = p.falseSuspicionsPerHour > 0 ? 9 : 9 + 13 * i;
      parts.push(
        `<circle cx="${x(p.detectionMeanMs).toFixed(1)}" cy="${y(p.falseSuspicionsPerHour).toFixed(1)}" r="${highlighted ? 5 : 3}" fill="${highlighted ? scenario.colour : 'white'}" stroke="${scenario.colour}" stroke-width="1.5"/>`,
      );
      if (highlighted) {
        parts.push(
          `<text x="${x(p.detectionMeanMs).toFixed(1)}" y="${(y(p.falseSuspicionsPerHour) - labelLift).toFixed(1)}" text-anchor="middle" fill="${scenario.colour}" font-weight="bold">${p.threshold}</text>`,
        );
      }
    }
    const ly = margin.top + 10 + i * 22;
    parts.push(
      `<line x1="${width - margin.right + 20}" y1="${ly}" x2="${width - margin.right + 44}" y2="${ly}" stroke="${scenario.colour}" stroke-width="2"/>`,
      `<text x="${width - margin.right + 50}" y="${ly + 4}">${escapeXml(scenario.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function main(): void {
  const { values } = parseArgs({
    options: { seeds: { type: 'string' }, minutes: { type: 'string' }, out: { type: 'string' } },
  });
  const seeds = Number(values.seeds ?? DEFAULT_SEEDS);
  const minutes = Number(values.minutes ?? DEFAULT_MINUTES);
  const started = performance.now();
  const curves = SCENARIOS.map((scenario) => CURVE_THRESHOLDS.map((threshold) => measure(scenario, threshold, seeds, minutes)));
  const rows = curves.flat().filter((p) => TABLE_THRESHOLDS.includes(p.threshold));
  const elapsed = (performance.now() - started) / 1000;

  console.log(`phi trade-off: 100 ms beats, LAN profile (min deviation 25 ms, acceptable pause 200 ms unless noted, DEAD +300 ms)`);
  console.log(`${seeds} seeds × ${minutes} virtual minutes per point (${((seeds * minutes) / 60).toFixed(1)} peer-hours); ${elapsed.toFixed(1)} s\n`);
  console.log(table(rows));
  const output = values.out ?? OUTPUT;
  mkdirSync(dirname(output), { recursive: true });
  writeFileSync(output, svg(curves, seeds, minutes));
  console.log(`\nwrote ${output}`);
}

main();
