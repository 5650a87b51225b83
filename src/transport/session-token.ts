import { createHmac, timingSafeEqual } from 'node:crypto';
import { VectorClock } from '../clock/index.js';
import { failedPrecondition, invalidArgument } from '../errors.js';
import { SessionToken } from '../gen/replikit/v1/types.js';
import { vectorClockFromWire, vectorClockToWire } from './wire.js';

/** Turns a causal context into the opaque `session_token` bytes and back. */
export interface SessionCodec {
  encode(keyspace: string, context: VectorClock): Uint8Array;
  /**
   * The context in `token`; an empty token is the empty context. Throws INVALID_ARGUMENT for a
   * malformed, altered or forged token or one of another keyspace, FAILED_PRECONDITION for one
   * issued by another cluster.
   */
  decode(keyspace: string, token: Uint8Array): VectorClock;
}

/** Bytes of HMAC-SHA256 kept in a token: 128 bits make forging by guessing hopeless. */
const MAC_BYTES = 16;
/** Tokens are small; anything larger is not one of ours (and bounds the work of decoding). */
export const MAX_SESSION_TOKEN_BYTES = 16 * 1024;

/**
 * Session tokens as defined by `replikit.v1.SessionToken`: the cluster id, the keyspace and the
 * causal context, with an HMAC over them keyed by `secret`. Every node of a cluster must use the
 * same secret. The default secret is derived from the cluster id: it catches altered and
 * hand-made tokens, but anyone who knows the cluster id can mint one; set a real secret where
 * clients are not trusted.
 */
export function sessionTokenCodec(clusterId: string, secret?: string | Uint8Array): SessionCodec {
  const key = secret ?? `replikit-session:${clusterId}`;
  const macOf = (bytes: Uint8Array) => createHmac('sha256', key).update(bytes).digest().subarray(0, MAC_BYTES);

  return {
    encode(keyspace, context) {
      const body = { clusterId, keyspace, context: vectorClockToWire(context) ?? { counters: {} }, mac: Buffer.alloc(0) };
      const unsigned = SessionToken.encode(body).finish();
      return SessionToken.encode({ ...body, mac: macOf(unsigned) }).finish();
    },
    decode(keyspace, token) {
      if (token.byteLength === 0) return VectorClock.EMPTY;
      if (token.byteLength > MAX_SESSION_TOKEN_BYTES) {
        throw invalidArgument('SESSION_TOKEN_INVALID', `the session token is ${token.byteLength} bytes; tokens are at most ${MAX_SESSION_TOKEN_BYTES}`);
      }
      let parsed: SessionToken;
      try {
        parsed = SessionToken.decode(token);
      } catch {
        throw invalidArgument('SESSION_TOKEN_INVALID', 'the session token is malformed: pass back the bytes of an earlier response unchanged');
      }
      if (parsed.clusterId !== clusterId) {
        throw failedPrecondition(
          'SESSION_TOKEN_OTHER_CLUSTER',
          `the session token was issued by cluster ${JSON.stringify(parsed.clusterId)}, not this cluster (${JSON.stringify(clusterId)}); start a new session`,
        );
      }
      const unsigned = SessionToken.encode({ ...parsed, mac: Buffer.alloc(0) }).finish();
      const expected = macOf(unsigned);
      if (parsed.mac.byteLength !== MAC_BYTES || !timingSafeEqual(parsed.mac, expected)) {
        throw invalidArgument('SESSION_TOKEN_INVALID', 'the session token was altered or forged (its integrity tag does not match)');
      }
      if (parsed.keyspace !== keyspace) {
        throw invalidArgument('SESSION_TOKEN_INVALID', `the session token belongs to keyspace ${JSON.stringify(parsed.keyspace)}, not ${JSON.stringify(keyspace)}`);
      }
      return vectorClockFromWire(parsed.context, 'the session token');
    },
  };
}
