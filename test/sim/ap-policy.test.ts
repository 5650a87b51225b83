import { describe, expect, it } from 'vitest';
import { ReplikitError } from '../../src/errors.js';
import type { Logger } from '../../src/logging/logger.js';
import { apAsync, conflictKeyspace, type ApAsyncKeyspace, type ApAsyncOptions } from '../../src/policy/ap/ap-async.js';
import { SimCluster } from '../../src/sim/sim-cluster.js';
import { INSTANT_DISK } from '../../src/sim/simulated-disk.js';
import { CALM_NETWORK } from '../../src/transport/in-memory-network.js';

const KS = 'kv';
const decoder = new TextDecoder();
const INTERVAL = 200;

function recordingLogger(): Logger & { lines: { level: string; message: string }[] } {
  const lines: { level: string; message: string }[] = [];
  const log = (level: string) => (message: string) => void lines.push({ level, message });
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

function cluster(options: ApAsyncOptions, seed = 1, logger?: Logger): SimCluster {
  return new SimCluster({
    seed,
    keyspaces: { [KS]: apAsync({ antiEntropyIntervalMs: INTERVAL, callTimeoutMs: 50, hintReplayIntervalMs: 50, ...options }) },
    faults: CALM_NETWORK,
    logger,
    // These scenarios await writes without running the scheduler; the fault simulations use the timed disk.
    disk: INSTANT_DISK,
  });
}

function values(c: SimCluster, id: string, keyspace = KS): Map<string, string | null> {
  return new Map(c.stores.get(id)!.entries(keyspace).map((e) => [decoder.decode(e.key), e.tombstone ? null : decoder.decode(e.value)]));
}

function stats(c: SimCluster, id: string) {
  return (c.node(id).policyOf(KS) as ApAsyncKeyspace).stats();
}

async function writeKeys(c: SimCluster, id: string, count: number, prefix = 'k'): Promise<void> {
  for (let i = 0; i < count; i++) await c.node(id).put(KS, Buffer.from(`${prefix}${i}`), Buffer.from(`v${i}`));
}

describe('AP async policy', () => {
  it('answers puts at once while every peer is unreachable', async () => {
    const c = cluster({});
    c.network.partition([['n1'], ['n2', 'n3']]);
    const t0 = c.scheduler.nowMs();
    const write = c.node('n1').put(KS, Buffer.from('k'), Buffer.from('v'));
    await c.scheduler.runUntilSettled(write, 1_000);
    await write;
    expect(c.scheduler.nowMs() - t0).toBe(0);
    expect(decoder.decode((await c.node('n1').get(KS, Buffer.from('k'))).value)).toBe('v');
  });

  it('repairs by anti-entropy what a crashed coordinator never sent, within two intervals; not without it', async () => {
    for (const antiEntropy of [true, false]) {
      const c = cluster({ antiEntropyIntervalMs: antiEntropy ? INTERVAL : 3_600_000 });
      c.network.partition([['n1'], ['n2', 'n3']]);
      await writeKeys(c, 'n1', 100);
      c.crash('n1'); // its in-memory replication queue dies with it; the writes are durable locally
      c.network.heal();
      c.start('n1');
      await c.scheduler.advance(2 * INTERVAL);
      const converged = ['n2', 'n3'].every((id) => values(c, id).size === 100);
      expect(converged, `anti-entropy ${antiEntropy ? 'on' : 'off'}`).toBe(antiEntropy);
    }
  });

  it('keeps hints durably across a restart of the hinting node and delivers them (hinted handoff)', async () => {
    const c = cluster({ antiEntropyIntervalMs: 3_600_000, hintAfterFailures: 1 });
    c.network.partition([['n1', 'n2'], ['n3']]);
    await writeKeys(c, 'n1', 100);
    await c.scheduler.advance(500);
    expect(stats(c, 'n1').hints).toBe(100);
    c.crash('n1');
    c.start('n1');
    expect(stats(c, 'n1').hints).toBe(100); // reloaded from the store
    c.network.heal();
    await c.scheduler.advance(500);
    expect(values(c, 'n3').size).toBe(100);
    expect(stats(c, 'n1').hints).toBe(0);
  });

  it('drops the oldest hints beyond the bound, with a warning, and bounds the queue', async () => {
    const logger = recordingLogger();
    const c = cluster({ antiEntropyIntervalMs: 3_600_000, hintAfterFailures: 1, maxHintsPerPeer: 10, maxQueuedKeys: 5 }, 1, logger);
    c.network.partition([['n1', 'n2'], ['n3']]);
    await writeKeys(c, 'n1', 50);
    await c.scheduler.advance(1_000);
    const s = stats(c, 'n1');
    expect(s.hints).toBeLessThanOrEqual(10);
    expect(s.hintsDropped).toBeGreaterThanOrEqual(40);
    expect(s.queuedKeys).toBeLessThanOrEqual(10); // 5 per peer at most
    expect(logger.lines.some((l) => l.level === 'warn' && /dropped the \d+ oldest hints for n3/.test(l.message))).toBe(true);
    // What the dropped hints would have delivered, anti-entropy repairs.
  });

  it('merges concurrent writes with the application merge function (set union)', async () => {
    const union = (a: Uint8Array, b: Uint8Array) =>
      Buffer.from([...new Set([...decoder.decode(a).split(','), ...decoder.decode(b).split(',')])].filter(Boolean).sort().join(','));
    const c = cluster({ merge: union });
    c.network.partition([['n1'], ['n2'], ['n3']]);
    await c.node('n1').put(KS, Buffer.from('set'), Buffer.from('a'));
    await c.node('n2').put(KS, Buffer.from('set'), Buffer.from('b'));
    await c.node('n3').put(KS, Buffer.from('set'), Buffer.from('c'));
    c.network.heal();
    await c.scheduler.advance(3 * INTERVAL);
    for (const id of c.nodeIds) expect(values(c, id).get('set'), id).toBe('a,b,c');
  });

  it('keeps both values and logs it when the merge function throws', async () => {
    const logger = recordingLogger();
    const c = cluster({ merge: () => { throw new Error('boom'); } }, 1, logger);
    c.network.partition([['n1'], ['n2', 'n3']]);
    await c.node('n1').put(KS, Buffer.from('k'), Buffer.from('from-n1'));
    await c.scheduler.advance(1);
    await c.node('n2').put(KS, Buffer.from('k'), Buffer.from('from-n2'));
    c.network.heal();
    await c.scheduler.advance(3 * INTERVAL);
    const kept = new Set<string>();
    for (const id of c.nodeIds) {
      const main = values(c, id).get('k');
      if (main) kept.add(main);
      for (const v of values(c, id, conflictKeyspace(KS)).values()) if (v) kept.add(v);
    }
    expect([...kept].sort()).toEqual(['from-n1', 'from-n2']);
    // Every replica agrees on the main value (the later write).
    expect(new Set(c.nodeIds.map((id) => values(c, id).get('k'))).size).toBe(1);
    expect(logger.lines.some((l) => l.level === 'error' && /merge function threw/.test(l.message))).toBe(true);
  });

  it('honours ack levels: QUORUM with one peer away succeeds, ALL reports an unknown outcome', async () => {
    const c = cluster({});
    c.network.partition([['n1', 'n2'], ['n3']]);
    await c.scheduler.runUntilSettled(c.node('n1').put(KS, Buffer.from('q'), Buffer.from('1'), { ack: 'quorum', timeoutMs: 300 }), 1_000);
    const all = c.node('n1').put(KS, Buffer.from('a'), Buffer.from('1'), { ack: 'all', timeoutMs: 300 });
    all.catch(() => {});
    await c.scheduler.runUntilSettled(all, 1_000);
    const err = await all.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplikitError);
    expect((err as ReplikitError).kind).toBe('outcome-unknown');
    expect((err as ReplikitError).message).toMatch(/on 1 of the 2 other replicas/);
  });

  it('purges tombstones only after every replica holds them, and deleted data never comes back', async () => {
    const c = cluster({ tombstoneGcGraceMs: 1_000 });
    await c.node('n1').put(KS, Buffer.from('gone'), Buffer.from('old'));
    await c.scheduler.advance(100);
    c.network.partition([['n1', 'n2'], ['n3']]); // n3 keeps the old value and misses the delete
    await c.node('n1').delete(KS, Buffer.from('gone'));
    await c.scheduler.advance(5_000); // far past the grace period
    // n3 has not matched anyone since: nobody may purge yet.
    for (const id of ['n1', 'n2']) expect(values(c, id).get('gone'), id).toBeNull();
    expect(values(c, 'n3').get('gone')).toBe('old');
    c.network.heal();
    await c.scheduler.advance(5_000);
    for (const id of c.nodeIds) {
      expect(values(c, id).has('gone'), `${id} still holds the key`).toBe(false);
      expect((await c.node(id).get(KS, Buffer.from('gone'))).value).toBeUndefined();
    }
    expect(c.nodeIds.reduce((n, id) => n + stats(c, id).tombstonesPurged, 0)).toBeGreaterThanOrEqual(3);
  });
});
