import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Server } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';

/**
 * The package's own proto/ folder: shipped in the npm package ("files"), two levels above both
 * src/ops/ (tests, tsx) and dist/ops/ (the built CLI).
 */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

/** The wire contract's files, relative to {@link PROTO_DIR}: every `.proto` of replikit/v1. */
export function replikitProtoFiles(): string[] {
  return readdirSync(join(PROTO_DIR, 'replikit', 'v1'))
    .filter((f) => f.endsWith('.proto'))
    .sort()
    .map((f) => `replikit/v1/${f}`);
}

let cached: PackageDefinition | undefined;

/**
 * The package definition reflection answers from: replikit's services and messages, read from the
 * `.proto` files themselves (the ts-proto stubs carry no descriptors), plus grpc.health.v1 so that
 * tools discover the health service too. Loaded once per process: parsing takes ~10 ms.
 * proto-loader rebuilds the descriptors through protobufjs, one file per package
 * (`replikit_v1.proto`, `grpc_health_v1.proto`): every service, message and field is there and
 * grpcurl is content with that, but the source's file names are not preserved.
 */
export function reflectionPackageDefinition(): PackageDefinition {
  // health/v1/health.proto lives under the grpc-health-check package's own proto/ folder.
  const healthRoot = dirname(dirname(dirname(healthProtoPath)));
  // keepCase: without it, protobufjs renames fields to camelCase and the descriptors would
  // describe `nodeId` where the contract says `node_id`.
  cached ??= loadSync([...replikitProtoFiles(), 'health/v1/health.proto'], { includeDirs: [PROTO_DIR, healthRoot], keepCase: true });
  return cached;
}

/**
 * Adds gRPC server reflection (grpc.reflection.v1 and v1alpha) to a server, so that grpcurl,
 * grpcui or Postman can list and describe replikit's services without the `.proto` files:
 * `grpcurl -plaintext 127.0.0.1:7001 list`.
 */
export function addReflection(server: Pick<Server, 'addService'>): void {
  new ReflectionService(reflectionPackageDefinition()).addToServer(server);
}
