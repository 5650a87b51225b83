import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logging/logger.js';
import type { ReplicaNode } from '../../src/node/replica-node.js';
import { MIN_COLLECTION_INTERVAL_MS, startMetricsEndpoint, type MetricsEndpoint } from '../../src/ops/metrics-server.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';

const nodes: ReplicaNode[] = [];
let endpoint: MetricsEndpoint | undefined;
afterEach(async () => {
  await endpoint?.close();
  endpoint = undefined;
  await Promise.all(nodes.splice(0).map((n) => n.close(100)));
});

describe('/metrics under many scrapers', () => {
  it('collects at most once per interval however many scrape at once: 32 scrapers × 5 rounds cost a couple of collections', async () => {
    nodes.push(...(await startInProcessCluster(1)));
    endpoint = await startMetricsEndpoint('127.0.0.1:0', nodes[0]!.metrics, silentLogger);
    const before = endpoint.collections;
    const t0 = performance.now();
    for (let round = 0; round < 5; round++) {
      const answers = await Promise.all(Array.from({ length: 32 }, () => fetch(`http://${endpoint!.address}/metrics`)));
      expect(answers.map((a) => a.status)).toEqual(Array(32).fill(200));
      await Promise.all(answers.map((a) => a.text()));
    }
    const elapsedMs = performance.now() - t0;
    const collected = endpoint.collections - before;
    console.log(`160 scrapes in ${elapsedMs.toFixed(0)} ms cost ${collected} collection(s)`);
    expect(collected).toBeLessThanOrEqual(Math.ceil(elapsedMs / MIN_COLLECTION_INTERVAL_MS) + 1);
    expect(collected).toBeLessThan(20); // 160 scrapes
  }, 30_000);
});
