/**
 * A campaign's worker thread (see campaign.ts): runs the seeds it is handed, one at a time, and
 * posts each seed's stats and, when it failed, its violation report.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { reportOf, type FromWorker, type ToWorker, type WorkerSetup } from './campaign.js';
import { runSeed } from './seed-check.js';

const port = parentPort;
if (port === null) throw new Error('campaign-worker runs as a worker thread of runCampaign');
const { policy, broken } = workerData as WorkerSetup;

port.on('message', async (message: ToWorker) => {
  if (message.type === 'stop') {
    port.close();
    return;
  }
  for (let seed = message.from; seed < message.to; seed++) {
    const result = await runSeed(policy, seed, broken);
    const violation = reportOf(result);
    port.postMessage({ type: 'seed', seed, stats: result.stats, ...(violation === undefined ? {} : { violation }) } satisfies FromWorker);
  }
  port.postMessage({ type: 'idle' } satisfies FromWorker);
});
port.postMessage({ type: 'idle' } satisfies FromWorker);
