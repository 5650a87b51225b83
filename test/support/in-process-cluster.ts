import type { ReplicaNodeConfig } from '../../src/node/config.js';
import { ReplicaNode } from '../../src/node/replica-node.js';
import { freePorts } from './free-ports.js';

/**
 * `size` ReplicaNodes in this process on free loopback ports, each knowing the others; the caller
 * closes them (see `closeAll`). `extra` adds config to every node (keyspaces, store, …).
 */
export async function startInProcessCluster(size = 3, extra: (id: string) => Partial<ReplicaNodeConfig> = () => ({})): Promise<ReplicaNode[]> {
  const ports = await freePorts(size);
  const ids = ports.map((_, i) => `n${i + 1}`);
  return Promise.all(
    ids.map((id, i) =>
      ReplicaNode.start({
        nodeId: id,
        listen: `127.0.0.1:${ports[i]}`,
        peers: ids.filter((p) => p !== id).map((p) => ({ id: p, address: `127.0.0.1:${ports[ids.indexOf(p)]}` })),
        ...extra(id),
      }),
    ),
  );
}
