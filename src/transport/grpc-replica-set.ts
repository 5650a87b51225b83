import { connectivityState, credentials, Metadata, status, type ChannelCredentials, type ClientUnaryCall, type Interceptor, type ServiceError } from '@grpc/grpc-js';
import {
  ProbeState,
  ReplicaServiceClient,
  type ProbeResponse,
  type SnapshotResponse,
  type ReadResponse,
  type ReplicateResponse,
  type SyncDigestsResponse,
} from '../gen/replikit/v1/replica_service.js';

type UnaryCallback<Res> = (err: ServiceError | null, response?: Res) => void;
import type { PeerConfig } from '../node/config.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import { PeerCallError, type DigestAnswer, type MemberProgress, type ProbeAnswer, type ReplicaSet, type SnapshotPage } from './replica-set.js';
import { entryFromWire, entryToWire, optionalEntryFromWire, outcomeFromWire, asBuffer, vectorClockFromWire } from './wire.js';

export interface GrpcReplicaSetOptions {
  readonly selfId: string;
  readonly peers: readonly PeerConfig[];
  /** Interceptors for the client of one peer (identity, clock, liveness evidence). */
  readonly interceptorsFor: (peerId: string) => Interceptor[];
  /** The same credentials for every peer, or made per peer id (to check its server certificate). @default insecure */
  readonly credentials?: ChannelCredentials | ((peerId: string) => ChannelCredentials);
  /** The largest message a peer may send back, in bytes. */
  readonly maxMessageBytes: number;
  /**
   * Whether a call to `peer` should wait for its channel to connect rather than fail at once while
   * the channel backs off after a refused connection. A node says yes for peers its failure
   * detector believes alive (a peer that just restarted, whose beats already arrive on the other
   * direction's stream) and no for suspected or dead ones, which keeps failing fast.
   * @default never
   */
  readonly waitForReady?: (peer: string) => boolean;
}

/** Channel options for peer clients; the reasons are in the comments. */
function channelOptions(maxMessageBytes: number): Record<string, number> {
  return {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    // A dead peer must be noticed between calls too, not only when a call times out.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    // Reconnect quickly after a peer restarts: the default backoff starts at 1 s and grows to 120 s,
    // far too slow for a LAN cluster whose failure detector beats every 100 ms. Calls fail fast
    // while a channel backs off, so this bounds how long a restarted peer stays unusable.
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 500,
  };
}

/**
 * The replica set over gRPC: one long-lived channel per peer, a deadline on every call, and the
 * interceptors that carry identity, clocks and liveness evidence. A call fails fast when the
 * peer's connection is refused (no waitForReady), so a dead peer costs a quorum nothing.
 */
export class GrpcReplicaSet implements ReplicaSet {
  readonly selfId: string;
  #peerIds: readonly string[];
  readonly #clients = new Map<string, ReplicaServiceClient>();
  readonly #addresses = new Map<string, string>();
  readonly #options: GrpcReplicaSetOptions;
  readonly #waitForReady: (peer: string) => boolean;
  readonly #maxMessageBytes: number;
  /** Per peer, how to abandon each call in flight. */
  readonly #inFlight = new Map<string, Set<(why: string) => void>>();

  constructor(options: GrpcReplicaSetOptions) {
    this.#waitForReady = options.waitForReady ?? (() => false);
    this.#maxMessageBytes = options.maxMessageBytes;
    this.selfId = options.selfId;
    this.#options = options;
    this.#peerIds = [];
    this.setPeers(options.peers);
  }

  get peerIds(): readonly string[] {
    return this.#peerIds;
  }

  /** The address `peer` is reached at, or undefined for a non-member. */
  addressOf(peer: string): string | undefined {
    return this.#addresses.get(peer);
  }

  setPeers(peers: readonly PeerConfig[]): void {
    const wanted = new Map(peers.filter((p) => p.id !== this.selfId).map((p) => [p.id, p.address]));
    for (const [id, client] of this.#clients) {
      if (wanted.get(id) === this.#addresses.get(id)) continue;
      // Gone, or moved to another address: its calls end now and its channel closes.
      this.abandonCalls(id, wanted.has(id) ? `${id} moved to ${wanted.get(id)}` : `${id} is no longer a member`);
      client.close();
      this.#clients.delete(id);
      this.#addresses.delete(id);
    }
    for (const [id, address] of wanted) {
      if (this.#clients.has(id)) continue;
      this.#clients.set(
        id,
        new ReplicaServiceClient(address, credentialsFor(this.#options.credentials, id), {
          ...channelOptions(this.#options.maxMessageBytes),
          interceptors: this.#options.interceptorsFor(id),
        }),
      );
      this.#addresses.set(id, address);
    }
    this.#peerIds = [...wanted.keys()];
  }

  /** The client of one peer, for heartbeats and clock sync. */
  /** See ReplicaSet.isConnected: from the peer channel's state. */
  isConnected(peerId: string): boolean | undefined {
    const channel = this.#clients.get(peerId)?.getChannel();
    if (channel === undefined) return undefined;
    const state = channel.getConnectivityState(false);
    if (state === connectivityState.READY) {
      this.#everReady.add(peerId);
      return true;
    }
    // IDLE or CONNECTING after having been READY: the connection dropped (grpc-js goes IDLE when
    // the peer closes it) and has not come back.
    return this.#everReady.has(peerId) ? false : state === connectivityState.TRANSIENT_FAILURE ? false : undefined;
  }

  readonly #everReady = new Set<string>();

  client(peerId: string): ReplicaServiceClient {
    const client = this.#clients.get(peerId);
    if (client === undefined) throw new PeerCallError(peerId, 'rejected', 'not a member of this cluster');
    return client;
  }

  replicate(peer: string, keyspace: string, entries: readonly Entry[], timeoutMs: number): Promise<ApplyOutcome[]> {
    const client = this.client(peer);
    return this.#unary(
      peer,
      timeoutMs,
      (md, options, done: UnaryCallback<ReplicateResponse>) => client.replicate({ keyspace, entries: entries.map(entryToWire) }, md, options, done),
      (response) => {
        if (response.outcomes.length !== entries.length) {
          throw new PeerCallError(peer, 'rejected', `answered ${response.outcomes.length} outcomes for ${entries.length} entries`);
        }
        return response.outcomes.map(outcomeFromWire);
      },
    );
  }

  read(peer: string, keyspace: string, keys: readonly Uint8Array[], timeoutMs: number): Promise<(Entry | undefined)[]> {
    const client = this.client(peer);
    return this.#unary(
      peer,
      timeoutMs,
      (md, options, done: UnaryCallback<ReadResponse>) => client.read({ keyspace, keys: keys.map(asBuffer) }, md, options, done),
      (response) => {
        // A replica may answer a prefix of the keys, when all of them would exceed its byte budget.
        if (response.entries.length > keys.length || (keys.length > 0 && response.entries.length === 0)) {
          throw new PeerCallError(peer, 'rejected', `answered ${response.entries.length} entries for ${keys.length} keys`);
        }
        return response.entries.map((e, i) => optionalEntryFromWire(e, `${peer}'s entry ${i}`));
      },
    );
  }

  syncDigests(peer: string, keyspace: string, bucketHashes: readonly bigint[], timeoutMs: number): Promise<DigestAnswer> {
    const client = this.client(peer);
    return this.#unary(
      peer,
      timeoutMs,
      (md, options, done: UnaryCallback<SyncDigestsResponse>) => client.syncDigests({ keyspace, bucketHashes: [...bucketHashes] }, md, options, done),
      (response) => ({
        differingBuckets: response.differingBuckets,
        entries: response.entries.map((e, i) => entryFromWire(e, `${peer}'s repair entry ${i}`)),
        truncated: response.truncated,
      }),
    );
  }

  progress(peer: string, timeoutMs: number): Promise<MemberProgress> {
    const client = this.client(peer);
    return this.#unary(
      peer,
      timeoutMs,
      (md, options, done: UnaryCallback<ProbeResponse>) => client.probe({}, md, options, done),
      (response) => ({ serving: response.serving, applied: Object.fromEntries(response.keyspaces.map((k) => [k.keyspace, Number(k.appliedIndex)])) }),
    );
  }

  probe(peer: string, timeoutMs: number): Promise<ProbeAnswer> {
    const client = this.client(peer);
    return this.#unary(
      peer,
      timeoutMs,
      (md, options, done: UnaryCallback<ProbeResponse>) => client.probe({}, md, options, done),
      (response) => {
        if (response.state === ProbeState.PROBE_STATE_NEW) return 'new';
        if (response.state === ProbeState.PROBE_STATE_READY) return 'ready';
        if (response.state === ProbeState.PROBE_STATE_MEMBER) return 'member';
        throw new PeerCallError(peer, 'rejected', `answered a probe with state ${response.state}`);
      },
    );
  }

  snapshot(peer: string, keyspace: string, afterKey: Uint8Array | undefined, maxEntries: number, timeoutMs: number): Promise<SnapshotPage> {
    const client = this.client(peer);
    return this.#unary(
      peer,
      timeoutMs,
      (md, options, done: UnaryCallback<SnapshotResponse>) =>
        client.snapshot({ keyspace, afterKey: afterKey === undefined ? Buffer.alloc(0) : asBuffer(afterKey), maxEntries }, md, options, done),
      (response) => ({
        entries: response.entries.map((e, i) => entryFromWire(e, `${peer}'s snapshot entry ${i}`)),
        more: response.more,
        applied: response.applied === undefined ? undefined : vectorClockFromWire(response.applied, `${peer}'s applied clock`),
      }),
    );
  }

  /** The largest message sent to or taken from a peer, in bytes. */
  get maxMessageBytes(): number {
    return this.#maxMessageBytes;
  }

  /**
   * Fails every call to `peer` still in flight, as unreachable: the failure detector has just
   * stopped believing it alive, and a call that waits for its channel (waitForReady) would
   * otherwise hold a quorum operation until its deadline.
   */
  abandonCalls(peer: string, why: string): void {
    const calls = this.#inFlight.get(peer);
    if (calls === undefined) return;
    for (const abandon of [...calls]) abandon(why);
  }

  /** One unary call to `peer`, tracked so that {@link abandonCalls} can end it. */
  #unary<Res, T>(
    peer: string,
    timeoutMs: number,
    invoke: (md: Metadata, options: { deadline: number }, done: UnaryCallback<Res>) => ClientUnaryCall,
    convert: (response: Res) => T,
  ): Promise<T> {
    let calls = this.#inFlight.get(peer);
    if (calls === undefined) this.#inFlight.set(peer, (calls = new Set()));
    const inFlight = calls;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        inFlight.delete(abandon);
        fn();
      };
      const abandon = (why: string): void =>
        settle(() => {
          call.cancel();
          reject(new PeerCallError(peer, 'unreachable', why));
        });
      const call = invoke(this.#metadata(peer), this.#callOptions(timeoutMs), (err, response) =>
        settle(() => {
          if (err) return reject(toPeerError(peer, err));
          try {
            resolve(convert(response!));
          } catch (e: unknown) {
            reject(e instanceof PeerCallError ? e : new PeerCallError(peer, 'rejected', String(e), { cause: e }));
          }
        }),
      );
      inFlight.add(abandon);
    });
  }

  /** grpc-js takes waitForReady from the call's metadata options, not from its call options. */
  #metadata(peer: string): Metadata {
    return new Metadata({ waitForReady: this.#waitForReady(peer) });
  }

  #callOptions(timeoutMs: number): { deadline: number } {
    return { deadline: Date.now() + timeoutMs };
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
  }
}

function toPeerError(peer: string, err: ServiceError): PeerCallError {
  const failure = err.code === status.UNAVAILABLE ? 'unreachable' : err.code === status.DEADLINE_EXCEEDED ? 'timeout' : 'rejected';
  return new PeerCallError(peer, failure, `${status[err.code]}: ${err.details}`, { cause: err });
}

/** The credentials of the channel to peer `id`: the same for every peer, or made per peer (to check its server certificate names it). */
function credentialsFor(given: ChannelCredentials | ((peerId: string) => ChannelCredentials) | undefined, id: string): ChannelCredentials {
  if (given === undefined) return credentials.createInsecure();
  return typeof given === 'function' ? given(id) : given;
}
