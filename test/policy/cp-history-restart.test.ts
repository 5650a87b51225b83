import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaNode } from '../../src/node/replica-node.js';
import { cpQuorum } from '../../src/policy/index.js';
import type { WatchMessage } from '../../src/policy/watch/watch-hub.js';
import { LmdbStore } from '../../src/storage/lmdb-store.js';
import { freePorts } from '../support/free-ports.js';

const dirs: string[] = [];
const nodes: ReplicaNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close(100)));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function single(dir: string, port: number): Promise<ReplicaNode> {
  const node = await ReplicaNode.start({ nodeId: 'n1', listen: `127.0.0.1:${port}`, store: LmdbStore.open(dir), keyspaces: { default: cpQuorum() } });
  nodes.push(node);
  return node;
}

describe('CP history on disk', () => {
  it('survives a restart: a watch from revision 1 gets every change, and Range at a past revision sees the state then', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'replikit-history-'));
    dirs.push(dir);
    const [port] = await freePorts(1);
    let node = await single(dir, port!);
    const ks = node.core;
    const revisions: number[] = [];
    for (let i = 0; i < 40; i++) revisions.push((await ks.put('default', Buffer.from(`k/${i % 7}`), Buffer.from(`v${i}`))).revision!);
    await ks.delete('default', Buffer.from('k/0'));
    await node.close(1_000);
    nodes.splice(nodes.indexOf(node), 1);
    node = await single(dir, port!);
    const watcher = await node.core.watch('default', { key: Buffer.from('k/'), prefix: true, startRevision: 1 });
    const events: { revision: number; key: string; value: string; type: string }[] = [];
    for await (const m of watcher as AsyncIterable<WatchMessage>) {
      if (m.kind === 'events') events.push(...m.events.map((e) => ({ revision: e.revision, key: e.event.kv.key.toString(), value: e.event.kv.value.toString(), type: e.event.type })));
      if (events.length >= 41) break;
    }
    expect(events.slice(0, 40).map((e) => [e.revision, e.key, e.value])).toEqual(revisions.map((r, i) => [r, `k/${i % 7}`, `v${i}`]));
    expect(events[40]!.type).toBe('delete');
    const then = await node.core.range('default', { key: Buffer.from('k/'), prefix: true, revision: revisions[9]! });
    expect(then.kvs.map((kv) => [kv.key.toString(), kv.value.toString()])).toEqual([...Array(7).keys()].map((k) => [`k/${k}`, `v${k + (k <= 2 ? 7 : 0)}`]));
    const now = await node.core.range('default', { key: Buffer.from('k/'), prefix: true });
    expect(now.kvs.map((kv) => kv.key.toString())).not.toContain('k/0');
    expect(now.count).toBe(6);
  });
});
