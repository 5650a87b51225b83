/**
 * The metadata keys replikit puts on RPCs. They are part of the wire contract (documented in
 * proto/replikit/v1/types.proto), so clients in other languages use the same names.
 */

/**
 * The sender's hybrid logical clock: a serialized `replikit.v1.Hlc` message. The `-bin` suffix
 * tells gRPC to carry the value as base64-encoded binary.
 */
export const HLC_METADATA_KEY = 'replikit-hlc-bin';

/** The cluster the sender belongs to (peer RPCs only). */
export const CLUSTER_ID_METADATA_KEY = 'replikit-cluster-id';

/** The sender's node id (peer RPCs only). */
export const NODE_ID_METADATA_KEY = 'replikit-node-id';
