import { Metadata, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CLUSTER_ID_METADATA_KEY,
  NODE_ID_METADATA_KEY,
  checkPeerIdentity,
  isReplicaServiceMethod,
  peerIdentityClientInterceptor,
  peerIdentityServerInterceptor,
  stampPeerIdentity,
} from '../../src/interceptors/index.js';
import { GrpcHarness, callEcho, echoService, echoServiceDefinition } from './support/grpc-harness.js';
import { RecordingLogger } from './support/recording-logger.js';

const policy = { clusterId: 'prod', knownNodeIds: new Set(['n1', 'n2', 'n3']) };

function identity(clusterId?: string, nodeId?: string): Metadata {
  const metadata = new Metadata();
  if (clusterId !== undefined) metadata.set(CLUSTER_ID_METADATA_KEY, clusterId);
  if (nodeId !== undefined) metadata.set(NODE_ID_METADATA_KEY, nodeId);
  return metadata;
}

describe('checkPeerIdentity', () => {
  it('accepts a known node of this cluster', () => {
    const metadata = new Metadata();
    stampPeerIdentity(metadata, { clusterId: 'prod', nodeId: 'n2' });
    expect(checkPeerIdentity(metadata, policy)).toEqual({ kind: 'ok', clusterId: 'prod', nodeId: 'n2' });
  });

  it('refuses another cluster with FAILED_PRECONDITION naming both cluster ids', () => {
    const result = checkPeerIdentity(identity('staging', 'n1'), policy);
    expect(result).toMatchObject({ kind: 'wrong-cluster', code: status.FAILED_PRECONDITION, callerClusterId: 'staging' });
    expect(result.kind !== 'ok' && result.message).toBe(
      'the caller belongs to cluster "staging", but this node belongs to cluster "prod"',
    );
  });

  it('refuses a missing cluster id with FAILED_PRECONDITION, even from a known node id', () => {
    const result = checkPeerIdentity(identity(undefined, 'n1'), policy);
    expect(result).toMatchObject({ kind: 'wrong-cluster', code: status.FAILED_PRECONDITION });
    expect(result.kind !== 'ok' && result.message).toMatch(/sent no cluster id \(replikit-cluster-id metadata\).*"prod"/);
  });

  it('refuses an unknown node with PERMISSION_DENIED naming it and the known ones', () => {
    const result = checkPeerIdentity(identity('prod', 'n9'), policy);
    expect(result).toMatchObject({ kind: 'unknown-node', code: status.PERMISSION_DENIED, callerNodeId: 'n9' });
    expect(result.kind !== 'ok' && result.message).toBe(
      'node id "n9" is not a member of cluster "prod"; the known node ids are "n1", "n2", "n3"',
    );
  });

  it('refuses a missing node id with PERMISSION_DENIED', () => {
    const result = checkPeerIdentity(identity('prod'), policy);
    expect(result).toMatchObject({ kind: 'unknown-node', code: status.PERMISSION_DENIED, callerNodeId: undefined });
  });

  it('keeps the list of known ids in a message bounded', () => {
    const many = new Set(Array.from({ length: 40 }, (_, i) => `n${String(i).padStart(2, '0')}`));
    const result = checkPeerIdentity(identity('prod', 'x'), { clusterId: 'prod', knownNodeIds: many });
    expect(result.kind !== 'ok' && result.message).toMatch(/"n15" and 24 more$/);
  });
});

describe('peer identity interceptors over gRPC', () => {
  const harness = new GrpcHarness();
  afterEach(() => harness.closeAll());

  async function startServer(appliesTo: (path: string) => boolean = (path) => path.startsWith('/test.EchoService/')) {
    const logger = new RecordingLogger();
    let handled = 0;
    const address = await harness.startServer([peerIdentityServerInterceptor({ ...policy, appliesTo, logger })], (s) =>
      s.addService(
        echoServiceDefinition,
        echoService(() => {
          handled += 1;
        }),
      ),
    );
    return { address, logger, handled: () => handled };
  }

  it('lets a known node of this cluster through', async () => {
    const { address, handled } = await startServer();
    const client = harness.echoClient(address, [peerIdentityClientInterceptor({ clusterId: 'prod', nodeId: 'n1' })]);
    const outcome = await callEcho(client, 'hi');
    expect(outcome.error).toBeUndefined();
    expect(outcome.response?.toString()).toBe('hi');
    expect(handled()).toBe(1);
  });

  it('answers a caller from another cluster with FAILED_PRECONDITION, without running the handler', async () => {
    const { address, handled, logger } = await startServer();
    const client = harness.echoClient(address, [peerIdentityClientInterceptor({ clusterId: 'staging', nodeId: 'n1' })]);
    const outcome = await callEcho(client, 'hi');
    expect(outcome.error?.code).toBe(status.FAILED_PRECONDITION);
    expect(outcome.error?.details).toBe('the caller belongs to cluster "staging", but this node belongs to cluster "prod"');
    expect(handled()).toBe(0);
    expect(logger.at('info')).toHaveLength(1);
  });

  it('answers an unknown node with PERMISSION_DENIED naming it and the known ones', async () => {
    const { address, handled } = await startServer();
    const client = harness.echoClient(address, [peerIdentityClientInterceptor({ clusterId: 'prod', nodeId: 'n9' })]);
    const outcome = await callEcho(client, 'hi');
    expect(outcome.error?.code).toBe(status.PERMISSION_DENIED);
    expect(outcome.error?.details).toContain('"n9"');
    expect(outcome.error?.details).toContain('"n1", "n2", "n3"');
    expect(handled()).toBe(0);
  });

  it('leaves methods outside its scope alone', async () => {
    const { address, handled } = await startServer(isReplicaServiceMethod);
    const outcome = await callEcho(harness.echoClient(address), 'hi');
    expect(outcome.error).toBeUndefined();
    expect(handled()).toBe(1);
  });

  it('scopes to ReplicaService by default', () => {
    expect(isReplicaServiceMethod('/replikit.v1.ReplicaService/Replicate')).toBe(true);
    expect(isReplicaServiceMethod('/replikit.v1.KvService/Put')).toBe(false);
  });
});
