/**
 * Reads one sample out of Prometheus text exposition (what `/metrics` serves): the value of the
 * first line of metric `name` whose labels include all of `labels`, or undefined when there is
 * none. For tools and tests that scrape a node (the benchmarks, the metrics tests); not a general
 * parser: it skips comments and takes `name{labels} value` lines as prom-client writes them.
 */
export function sampleMetric(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}
