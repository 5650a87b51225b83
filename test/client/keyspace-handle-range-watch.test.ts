import { afterEach, describe, expect, it } from 'vitest';
import { WatchError, type WatchEvent, type WatchStream } from '../../src/client/index.js';
import type { ReplicaNode } from '../../src/node/replica-node.js';
import { startInProcessCluster } from '../support/in-process-cluster.js';

const started: ReplicaNode[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((n) => n.close(100)));
});

async function take(watch: WatchStream, count: number): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  const timer = setTimeout(() => watch.cancel(), 10_000);
  for await (const e of watch.events()) {
    out.push(e);
    if (out.length === count) break;
  }
  clearTimeout(timer);
  return out;
}

/** The embedded API: KeyspaceHandle.range and .watch, in the remote client's shapes. */
describe('KeyspaceHandle range and watch', () => {
  it('pages a prefix, watches it from a revision, and reports a compacted start', async () => {
    const nodes = await startInProcessCluster(3);
    started.push(...nodes);
    const a = nodes[0]!.keyspace('default');
    const b = nodes[1]!.keyspace('default');
    for (let i = 0; i < 25; i++) await a.put(`h/${String(i).padStart(2, '0')}`, `v${i}`);

    const first = await b.range('h/', { prefix: true, limit: 10 });
    expect(first.kvs.map((kv) => kv.key.toString())).toEqual(Array.from({ length: 10 }, (_, i) => `h/${String(i).padStart(2, '0')}`));
    expect(first).toMatchObject({ count: 25, more: true });
    const rest = await b.range('h/', { prefix: true, continuation: first.continuation });
    expect(rest.kvs).toHaveLength(15);
    expect(rest.revision).toBe(first.revision);

    const watch = await b.watch('h/', { prefix: true, fromRevision: first.revision + 1, prevKv: true });
    const r1 = (await a.put('h/00', 'changed')).revision!;
    const r2 = (await a.delete('h/01')).revision!;
    await a.put('other', 'unwatched');
    const events = await take(watch, 2);
    expect(events.map((e) => [e.type, e.key.toString(), e.value.toString(), e.revision, e.prevValue?.toString()])).toEqual([
      ['put', 'h/00', 'changed', r1, 'v0'],
      ['delete', 'h/01', '', r2, 'v1'],
    ]);

    await a.compact(r2 - 1);
    // A linearizable read on b waits until b has applied the compaction too.
    await expect(b.range('h/', { prefix: true, revision: 1 })).rejects.toMatchObject({ kind: 'out-of-range' });
    const late = await b.watch('h/', { prefix: true, fromRevision: 1 });
    const error = await late.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WatchError);
    expect((error as WatchError).compactRevision).toBe(r2 - 1);
  });
});
