/**
 * Operability: the standard gRPC health service, server reflection, Prometheus metrics and TLS.
 * A {@link ReplicaNode} sets up health, reflection and metrics itself (`node.health`,
 * `node.metrics`); these are the parts an application uses directly.
 */
export { CLUSTER_SERVICE_HEALTH_NAME, KV_SERVICE_HEALTH_NAME, NodeHealth, judgeHealth, keyspaceHealthName, type HealthInput, type HealthVerdict } from './health.js';
export { NodeMetrics, RPC_LATENCY_BUCKETS_S, type MetricsSource, type NodeMetricsOptions } from './metrics.js';
export { DEFAULT_FRESH_WAIT_MS, METRICS_PATH, startMetricsEndpoint, type MetricsEndpoint, type MetricsEndpointOptions } from './metrics-server.js';
export { PROTO_DIR, addReflection, reflectionPackageDefinition } from './reflection.js';
export {
  TlsConfigError,
  channelCredentialsOf,
  classifyTlsError,
  observeTlsRefusals,
  peerTlsFailureInterceptor,
  readTlsFiles,
  serverCredentialsOf,
  tlsRefusalLogger,
  type TlsFiles,
  type TlsMaterial,
  type TlsRefusal,
} from './tls.js';
