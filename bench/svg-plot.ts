/**
 * A hand-written SVG line chart of throughput against concurrency: x on a log scale (1, 8, 64,
 * 256 sit evenly), y linear from zero, one line per series with its values printed at the points.
 * Pure: rows in, SVG text out.
 */

export interface PlotPoint {
  readonly x: number;
  readonly y: number;
}

export interface PlotSeries {
  readonly label: string;
  readonly color: string;
  readonly points: readonly PlotPoint[];
}

export interface PlotOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly PlotSeries[];
}

const WIDTH = 720;
const HEIGHT = 440;
const MARGIN = { left: 78, right: 24, top: 64, bottom: 64 } as const;
/** Space between the plot's edges and the first and last x, so that value labels stay clear of the axis. */
const X_INSET = 36;

/** Escapes text for SVG element content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^k) at or above `value`, for the y axis. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/** Renders the chart; series with no finite points are listed in the legend as "not measured". */
export function renderThroughputSvg(options: PlotOptions): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const finite = (p: PlotPoint) => Number.isFinite(p.x) && p.x > 0 && Number.isFinite(p.y);
  const xs = [...new Set(options.series.flatMap((s) => s.points.filter(finite).map((p) => p.x)))].sort((a, b) => a - b);
  const yMax = niceCeiling(Math.max(0, ...options.series.flatMap((s) => s.points.filter(finite).map((p) => p.y))) * 1.08);
  const logMin = Math.log2(xs[0] ?? 1);
  const logMax = Math.log2(xs[xs.length - 1] ?? 2);
  const xPos = (x: number) =>
    MARGIN.left + X_INSET + (logMax === logMin ? (plotW - 2 * X_INSET) / 2 : ((Math.log2(x) - logMin) / (logMax - logMin)) * (plotW - 2 * X_INSET));
  const yPos = (y: number) => MARGIN.top + plotH - (y / yMax) * plotH;
  const fmt = (v: number) => (Math.abs(v - Math.round(v)) < 1e-9 ? String(Math.round(v)) : v.toFixed(1));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(options.title)}</text>`,
  ];
  if (options.subtitle !== undefined) {
    out.push(`<text x="${WIDTH / 2}" y="43" text-anchor="middle" fill="#555">${escapeXml(options.subtitle)}</text>`);
  }
  // Horizontal grid lines and y tick labels: five steps of the rounded maximum.
  for (let i = 0; i <= 5; i++) {
    const v = (yMax / 5) * i;
    const y = yPos(v).toFixed(1);
    out.push(`<line x1="${MARGIN.left}" y1="${y}" x2="${WIDTH - MARGIN.right}" y2="${y}" stroke="${i === 0 ? '#000' : '#ddd'}"/>`);
    out.push(`<text x="${MARGIN.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(v)}</text>`);
  }
  for (const x of xs) {
    const px = xPos(x).toFixed(1);
    out.push(`<line x1="${px}" y1="${MARGIN.top}" x2="${px}" y2="${MARGIN.top + plotH}" stroke="#eee"/>`);
    out.push(`<text x="${px}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${x}</text>`);
  }
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 16}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  out.push(
    `<text x="18" y="${MARGIN.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 18 ${MARGIN.top + plotH / 2})">${escapeXml(options.yLabel)}</text>`,
  );
  options.series.forEach((series, index) => {
    const points = series.points.filter(finite).sort((a, b) => a.x - b.x);
    const color = escapeXml(series.color);
    if (points.length > 0) {
      const d = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${xPos(p.x).toFixed(1)},${yPos(p.y).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2.5"/>`);
      for (const p of points) {
        const cx = xPos(p.x).toFixed(1);
        const cy = yPos(p.y).toFixed(1);
        out.push(`<circle cx="${cx}" cy="${cy}" r="4" fill="${color}"><title>${escapeXml(`${series.label}, ${p.x} callers: ${Math.round(p.y)} ops/s`)}</title></circle>`);
        out.push(`<text x="${cx}" y="${(Number(cy) - 9).toFixed(1)}" text-anchor="middle" fill="${color}">${Math.round(p.y)}</text>`);
      }
    }
    const ly = MARGIN.top + 8 + index * 18;
    const lx = MARGIN.left + 12;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${color}" stroke-width="2.5"/>`);
    const label = points.length > 0 ? series.label : `${series.label} (not measured)`;
    out.push(`<text x="${lx + 28}" y="${ly}" dominant-baseline="middle">${escapeXml(label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
