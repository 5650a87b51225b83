/**
 * `replikit/interceptors`: clock propagation, peer identity and liveness evidence over gRPC
 * metadata. The plain functions (stamp / observe / check) are the protocol; the grpc-js
 * interceptors are thin wrappers over them, for replikit's own services and for applications that
 * want replikit's clock on theirs (see {@link createClockInterceptors}).
 */
export { HLC_METADATA_KEY, CLUSTER_ID_METADATA_KEY, NODE_ID_METADATA_KEY } from './metadata-keys.js';
export type { ObserveHlcResult, RemoteHlcOptions } from './remote-hlc.js';
export {
  DEFAULT_MAX_CLOCK_OFFSET_MS,
  assertMaxClockOffsetMs,
  describeTooFarAhead,
  observeRemoteHlc,
  remoteHlcProblem,
} from './remote-hlc.js';
export type { ObserveHlcOptions } from './hlc-metadata.js';
export { decodeHlc, encodeHlc, observeHlc, stampHlc } from './hlc-metadata.js';
export type { ClockInterceptorOptions, ClockInterceptors } from './clock-interceptors.js';
export { clockClientInterceptor, clockServerInterceptor, createClockInterceptors } from './clock-interceptors.js';
export type { PeerIdentity, PeerIdentityPolicy, PeerIdentityResult } from './peer-identity.js';
export { MAX_NODE_IDS_IN_MESSAGE, checkPeerIdentity, readPeerNodeId, stampPeerIdentity } from './peer-identity.js';
export type { CertificateIdentity, CertificateIdentityResult, CertificateRefusal, IssuerTrust, PeerCertificatePolicy } from './certificate-identity.js';
export {
  IssuerCheck,
  callerCertificate,
  checkOwnNodeCertificate,
  checkPeerCertificate,
  describeIdentity,
  identityOfCertificate,
  clientSpiffeId,
  identityOfSubjectAltName,
  nodeSpiffeId,
} from './certificate-identity.js';
export type { PeerIdentityServerOptions } from './peer-identity-interceptors.js';
export {
  REPLICA_SERVICE_PATH_PREFIX,
  isReplicaServiceMethod,
  peerIdentityClientInterceptor,
  peerIdentityServerInterceptor,
} from './peer-identity-interceptors.js';
export type { EvidenceInterceptorOptions, EvidenceListener } from './liveness-evidence.js';
export { evidenceOf, livenessEvidenceClientInterceptor, livenessEvidenceServerInterceptor } from './liveness-evidence.js';
export type { Logger, LogFields } from '../logging/logger.js';
