/** The remote client of a replikit cluster (KvService over gRPC): reads, writes, Range, Watch, Compact; leases, locks and elections. */
export { ReplikitClient, RemoteKeyspace, CLIENT_DEFAULTS, type ReplikitClientOptions, type RemoteWatchOptions, type PutResult, type GetResult as RemoteGetResult } from './replikit-client.js';
export { WatchError } from './watch-error.js';
export { RemoteWatch, MAX_QUEUED, RESUME_BACKOFF_MS, type ResumeInfo } from './remote-watch.js';
export { eventsOf, type Bytes, type KeyValue, type RangeOptions, type RangeResult, type WatchEvent, type WatchItem, type WatchOptions, type WatchStream } from './types.js';
export {
  RemoteLeases,
  RemoteLock,
  RemoteElection,
  DEFAULT_SESSION_TTL_MS,
  MAX_WAIT_MS,
  type RemoteCoordinationOptions,
  type RemoteKeepAliveOptions,
  type RemoteLeaseInfo,
  type RemoteHeldLock,
  type RemoteLeaderKey,
  type RemoteLeadership,
  type ElectionLeader,
  type ElectionChange,
} from './coordination.js';
export { KeptLease } from '../coordination/keep-alive.js';
