export type { Store } from './store.js';
export { StoreClosedError } from './store.js';
export type { ApplyOutcome, Entry, Version } from './entry.js';
export { compareVersion, formatVersion } from './entry.js';
export {
  MAX_KEY_BYTES,
  MAX_KEYSPACE_NAME_LENGTH,
  KEYSPACE_NAME_PATTERN,
  isValidKeyspaceName,
  assertKeyspaceName,
  assertKeySize,
} from './limits.js';
export { MemoryStore } from './memory-store.js';
export { LmdbStore } from './lmdb-store.js';
export type { RaftLogStore, RaftLogStoreFactory, RaftLogWrite } from './raft-log-store.js';
export { INITIAL_HARD_STATE, RaftLogCorruptionError } from './raft-log-store.js';
export { MemoryRaftLogStore, MemorySyncError } from './memory-raft-log-store.js';
export { LmdbRaftLogStore } from './lmdb-raft-log-store.js';
