// Three replicas in one process, one keyspace per policy. In production each node runs in its
// own service; only `nodeId`, `listen` and `peers` change.
import { ReplicaNode, apAsync, causal, cpQuorum, LmdbStore } from 'replikit';

const ports = [7101, 7102, 7103];
const ids = ['n1', 'n2', 'n3'];
const stores = ids.map((nodeId) => LmdbStore.open(`.replikit-example/${nodeId}`));
const nodes = await Promise.all(
  ids.map((nodeId, i) =>
    ReplicaNode.start({
      nodeId,
      listen: `127.0.0.1:${ports[i]}`,
      peers: ids.filter((p) => p !== nodeId).map((p) => ({ id: p, address: `127.0.0.1:${ports[ids.indexOf(p)]}` })),
      keyspaces: { accounts: cpQuorum(), sessions: apAsync(), feed: causal() },
      store: stores[i],
    }),
  ),
);
const [n1, n2, n3] = nodes as [ReplicaNode, ReplicaNode, ReplicaNode];

// CP: linearizable; refuses (UNAVAILABLE) rather than answer without a majority.
await n1.keyspace('accounts').put('alice', '100');
console.log('accounts/alice via n2:', (await n2.keyspace('accounts').get('alice')).text());
// Compare-and-set: writes only if the key still holds what we read.
const swap = await n3.keyspace('accounts').compareAndSet('alice', '100', '90');
console.log('swapped:', swap.swapped, 'at revision', swap.revision);

// AP: answers at once from the local replica, replicates in the background.
await n2.keyspace('sessions').put('token-42', 'alice');

// Causal: a session carries its context from node to node.
const session = n1.keyspace('feed').session();
await session.put('post-1', 'hello');
session.moveTo(n3.keyspace('feed'));
console.log('feed/post-1 via n3, same session:', (await session.get('post-1')).text());

await Promise.all(nodes.map((node) => node.close()));
await Promise.all(stores.map((store) => store.close())); // the application opened them, so it closes them
