import descriptor from 'protobufjs/ext/descriptor/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { BUILT } from '../support/cli.js';
import { reflect } from '../support/ops.js';

let cluster: LocalCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

interface FileDescriptor {
  name: string;
  package: string;
  dependency: string[];
  service: { name: string; method: { name: string; inputType: string; outputType: string }[] }[];
  messageType: { name: string }[];
}

describe.skipIf(!BUILT)('gRPC server reflection on a real serve process', () => {
  it('lists the services and describes them, over both reflection versions, as grpcurl asks', async () => {
    cluster = await LocalCluster.create({ size: 1 });
    await cluster.startAll();
    const address = cluster.address('n1');

    const expected = ['grpc.health.v1.Health', 'replikit.v1.ClusterService', 'replikit.v1.KvService', 'replikit.v1.ReplicaService'];
    for (const version of ['v1', 'v1alpha'] as const) {
      const listed = await reflect(address, version, { listServices: '' });
      const names = (listed.listServicesResponse?.service ?? []).map((s) => s.name).sort();
      expect(names, `services listed by ${version}`).toEqual(expect.arrayContaining(expected));
    }

    // `grpcurl describe replikit.v1.KvService`: the file that defines it, with its dependencies.
    const described = await reflect(address, 'v1', { fileContainingSymbol: 'replikit.v1.KvService' });
    const files = (described.fileDescriptorResponse?.fileDescriptorProto ?? []).map(
      (bytes) => descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(bytes), { arrays: true }) as unknown as FileDescriptor,
    );
    // proto-loader rebuilds descriptors from protobufjs, one file per package: the services
    // and messages are all there, under the package's file name rather than the source's.
    const kv = files.find((f) => f.service.some((s) => s.name === 'KvService'));
    expect(kv, `files: ${files.map((f) => f.name).join(', ')}`).toBeDefined();
    expect(kv!.package).toBe('replikit.v1');
    expect(kv!.messageType.map((m) => m.name)).toEqual(expect.arrayContaining(['PutRequest', 'Version', 'Hlc']));
    expect(kv!.service.find((x) => x.name === 'KvService')!.method.map((m) => `${m.name}(${m.inputType}) ${m.outputType}`)).toEqual([
      'Put(.replikit.v1.PutRequest) .replikit.v1.PutResponse',
      'Get(.replikit.v1.GetRequest) .replikit.v1.GetResponse',
      'Delete(.replikit.v1.DeleteRequest) .replikit.v1.DeleteResponse',
      'Txn(.replikit.v1.TxnRequest) .replikit.v1.TxnResponse',
      'Range(.replikit.v1.RangeRequest) .replikit.v1.RangeResponse',
      'Watch(.replikit.v1.WatchRequest) .replikit.v1.WatchResponse',
      'Compact(.replikit.v1.CompactRequest) .replikit.v1.CompactResponse',
    ]);
    // The new Status field is described too, so tools show it.
    const cluster_ = await reflect(address, 'v1alpha', { fileContainingSymbol: 'replikit.v1.StatusResponse' });
    const messages = cluster_.fileDescriptorResponse!.fileDescriptorProto.flatMap(
      (bytes) => (descriptor.FileDescriptorProto.decode(bytes) as unknown as { messageType: { name: string; field: { name: string }[] }[] }).messageType,
    );
    const statusResponse = messages.find((m) => m.name === 'StatusResponse')!;
    expect(statusResponse.field.map((f) => f.name)).toContain('not_serving_reasons');

    const missing = await reflect(address, 'v1', { fileContainingSymbol: 'replikit.v1.NoSuchService' });
    expect(missing.errorResponse?.errorCode).toBe(5);
  });
});
