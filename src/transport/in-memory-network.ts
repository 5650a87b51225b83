import type { HybridLogicalClock, Scheduler } from '../clock/index.js';
import type { SeededRandom } from '../sim/seeded-random.js';
import { LeaseAnswer, LeaseCall } from '../gen/replikit/v1/replica_service.js';
import { Metadata } from '@grpc/grpc-js';
import { failedPrecondition, ReplikitError } from '../errors.js';
import { describeTooFarAhead, observeHlc, stampHlc } from '../interceptors/index.js';
import type { ApplyOutcome, Entry } from '../storage/entry.js';
import { Entry as WireEntry } from '../gen/replikit/v1/types.js';
import { entryFromWire, entryToWire } from './wire.js';
import { raftMessageFromWire, raftMessageToWire } from './raft-wire.js';
import { RaftMessage as WireRaftMessage } from '../gen/replikit/v1/replica_service.js';
import { TxnRequest, TxnResponse } from '../gen/replikit/v1/kv_service.js';
import { PeerCallError, type DigestAnswer, type ReplicaHandler, type ReplicaSet, type SnapshotPage } from './replica-set.js';

/** The network's misbehaviour; every random choice comes from the seeded generator. */
export interface NetworkFaults {
  /** Probability that one message (request or response) is lost. */
  readonly dropRate: number;
  /** Probability that a request is delivered twice. */
  readonly duplicateRate: number;
  /** One-way delay bounds, in milliseconds of virtual time. */
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
}

/** A reliable, fast LAN: no loss, 0.1–1 ms one way. */
export const CALM_NETWORK: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelayMs: 0.1, maxDelayMs: 1 };

/** A node as the network sees it: where its requests go and the clock its messages carry. */
export interface AttachedNode {
  readonly handler: ReplicaHandler;
  readonly clock: HybridLogicalClock;
}

/**
 * Every node of a cluster in one process, on virtual time, with seeded delays, losses,
 * duplicates, partitions and crashes. Messages carry the sender's HLC both ways in metadata,
 * through the very functions the gRPC interceptors run (stampHlc / observeHlc), so the protocol
 * sees the same clocks, and the same refusals of a clock too far ahead, as on a real network.
 *
 * A crashed (detached) node refuses connections at once, like a dead process on a live host; a
 * partition silently loses messages, like a cut cable, so calls across it time out.
 */
export class InMemoryNetwork {
  readonly #nodes = new Map<string, AttachedNode>();
  readonly #blocked = new Set<string>();
  #faults: NetworkFaults;
  /** How far a sender's HLC may run ahead of a receiver's wall clock, as on the gRPC transport. */
  maxClockOffsetMs = 500;
  /** Messages sent, lost and duplicated, for tests and reports. */
  readonly stats = { sent: 0, dropped: 0, duplicated: 0 };

  constructor(
    readonly scheduler: Scheduler,
    readonly random: SeededRandom,
    faults: NetworkFaults = CALM_NETWORK,
  ) {
    this.#faults = faults;
  }

  setFaults(faults: NetworkFaults): void {
    this.#faults = faults;
  }

  /** Connects a node (at start or restart). */
  attach(nodeId: string, node: AttachedNode): void {
    this.#nodes.set(nodeId, node);
  }

  /** Disconnects a node: it crashed. Messages to it fail; its own in-flight replies are lost. */
  detach(nodeId: string): void {
    this.#nodes.delete(nodeId);
  }

  isAttached(nodeId: string): boolean {
    return this.#nodes.has(nodeId);
  }

  /** Cuts every link between the groups (links inside a group stay). */
  partition(groups: readonly (readonly string[])[]): void {
    for (let i = 0; i < groups.length; i++) {
      for (let j = 0; j < groups.length; j++) {
        if (i === j) continue;
        for (const a of groups[i]!) for (const b of groups[j]!) this.#blocked.add(linkKey(a, b));
      }
    }
  }

  /** Restores every link. */
  heal(): void {
    this.#blocked.clear();
  }

  canReach(from: string, to: string): boolean {
    return !this.#blocked.has(linkKey(from, to));
  }

  /** The replica set of `selfId`: calls to `peerIds` over this network. */
  replicaSet(selfId: string, peerIds: readonly string[]): ReplicaSet {
    let peers = peerIds;
    return {
      selfId,
      get peerIds() {
        return peers;
      },
      setPeers: (next) => {
        peers = next.map((p) => p.id).filter((id) => id !== selfId);
      },
      replicate: (peer, keyspace, entries, timeoutMs) =>
        this.#call<ApplyOutcome[]>(selfId, peer, timeoutMs, (h, from) => h.replicate(from, keyspace, entries.map(overTheWire))),
      read: (peer, keyspace, keys, timeoutMs) =>
        this.#call<(Entry | undefined)[]>(selfId, peer, timeoutMs, async (h, from) =>
          (await h.read(from, keyspace, keys)).map((e) => (e === undefined ? undefined : overTheWire(e))),
        ),
      syncDigests: (peer, keyspace, hashes, timeoutMs) =>
        this.#call<DigestAnswer>(selfId, peer, timeoutMs, async (h, from) => {
          const answer = await h.syncDigests(from, keyspace, hashes);
          return { ...answer, entries: answer.entries.map(overTheWire) };
        }),
      // Answered whatever the caller's clock, as on the gRPC transport (see replica-node.ts).
      probe: (peer, timeoutMs) => this.#call(selfId, peer, timeoutMs, (h, from) => h.probe(from), true),
      progress: (peer, timeoutMs) =>
        this.#call(selfId, peer, timeoutMs, async (h, from) => {
          if (h.progress === undefined) throw new Error('this replica cannot tell how far it caught up');
          return h.progress(from);
        }, true),
      snapshot: (peer, keyspace, afterKey, maxEntries, timeoutMs) =>
        this.#call<SnapshotPage>(selfId, peer, timeoutMs, async (h, from) => {
          const page = await h.snapshot(from, keyspace, afterKey, maxEntries);
          return { ...page, entries: page.entries.map(overTheWire) };
        }),
      // A crashed peer refuses connections, which a real node sees at once; a partition does not show.
      isConnected: (peer) => this.#nodes.has(peer),
      raft: (peer, keyspace, messages, timeoutMs) => {
        const wire = messages.map(raftMessageToWire);
        return this.#call<void>(selfId, peer, timeoutMs, (h, from) =>
          h.raft(from, keyspace, wire.map((m) => raftMessageFromWire(WireRaftMessage.decode(WireRaftMessage.encode(m).finish()), from, peer))),
        );
      },
      forward: async (peer, request, timeoutMs) => {
        const wire = TxnRequest.decode(TxnRequest.encode(request).finish());
        try {
          return await this.#call<TxnResponse>(
            selfId,
            peer,
            timeoutMs,
            async (h, from) => TxnResponse.decode(TxnResponse.encode(await h.forward(from, wire, timeoutMs)).finish()),
            false,
            false,
          );
        } catch (error: unknown) {
          // The leader's own error travels as a status (code, reason, message), as on gRPC.
          if (error instanceof PeerCallError && error.cause instanceof ReplikitError) throw new ReplikitError(error.cause.kind, error.cause.reason, error.cause.message);
          throw error;
        }
      },
      forwardLease: async (peer, call, timeoutMs) => {
        try {
          // Through the wire encoding, as on gRPC: nothing shared by reference.
          const wire = LeaseCall.decode(LeaseCall.encode(call).finish());
          return await this.#call(selfId, peer, timeoutMs, async (h, from) => LeaseAnswer.decode(LeaseAnswer.encode(await h.forwardLease(from, wire, timeoutMs)).finish()), false, false);
        } catch (error: unknown) {
          if (error instanceof PeerCallError && error.cause instanceof ReplikitError) throw new ReplikitError(error.cause.kind, error.cause.reason, error.cause.message);
          throw error;
        }
      },
      forwardCompact: async (peer, keyspace, revision, timeoutMs) => {
        try {
          return await this.#call(selfId, peer, timeoutMs, (h, from) => h.forwardCompact(from, keyspace, revision, timeoutMs), false, false);
        } catch (error: unknown) {
          if (error instanceof PeerCallError && error.cause instanceof ReplikitError) throw new ReplikitError(error.cause.kind, error.cause.reason, error.cause.message);
          throw error;
        }
      },
    };
  }

  /**
   * A one-way message, such as a heartbeat: lost, delayed and cut like any other, and delivered by
   * running `onDeliver` on arrival if `to` is running then.
   */
  send(from: string, to: string, onDeliver: () => void): void {
    if (!this.#nodes.has(from)) return;
    this.stats.sent++;
    if (this.random.chance(this.#faults.dropRate)) {
      this.stats.dropped++;
      return;
    }
    this.scheduler.setTimer(this.#delay(), () => {
      if (this.canReach(from, to) && this.#nodes.has(to)) onDeliver();
    });
  }

  #delay(): number {
    return this.random.between(this.#faults.minDelayMs, this.#faults.maxDelayMs);
  }

  /**
   * `duplicable`: whether the fault model may deliver the request twice. Calls that carry Raft
   * messages or replicate entries are made to withstand duplicates; a forwarded client transaction
   * is not (gRPC delivers a unary call at most once, and the forwarder never resends one whose
   * outcome is unknown), so it is never duplicated.
   */
  #call<T>(from: string, to: string, timeoutMs: number, invoke: (handler: ReplicaHandler, from: string) => Promise<T>, answerDespiteSkew = false, duplicable = true): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (fn: () => void): void => {
        if (done) return;
        done = true;
        timer.cancel();
        fn();
      };
      const timer = this.scheduler.setTimer(timeoutMs, () =>
        finish(() => reject(new PeerCallError(to, 'timeout', `no answer within ${timeoutMs} ms`))),
      );
      const sender = this.#nodes.get(from);
      if (sender === undefined) {
        finish(() => reject(new PeerCallError(to, 'unreachable', `${from} is not running`)));
        return;
      }
      const requestMetadata = new Metadata();
      stampHlc(requestMetadata, sender.clock);

      const deliver = (replyWanted: boolean): void => {
        this.stats.sent++;
        if (this.random.chance(this.#faults.dropRate)) {
          this.stats.dropped++;
          return;
        }
        this.scheduler.setTimer(this.#delay(), () => {
          if (!this.canReach(from, to)) return;
          const target = this.#nodes.get(to);
          if (target === undefined) {
            if (replyWanted) {
              this.scheduler.setTimer(this.#delay(), () =>
                finish(() => reject(new PeerCallError(to, 'unreachable', 'connection refused'))),
              );
            }
            return;
          }
          const observed = observeHlc(requestMetadata, target.clock, { maxClockOffsetMs: this.maxClockOffsetMs });
          const handled =
            observed.kind === 'too-far-ahead' && !answerDespiteSkew
              ? Promise.reject(failedPrecondition('CLOCK_TOO_FAR_AHEAD', describeTooFarAhead(observed, "caller's")))
              : invoke(target.handler, from);
          handled.then(
            (answer) => this.#reply(from, to, target, replyWanted, () => finish(() => resolve(answer))),
            (err: unknown) =>
              this.#reply(from, to, target, replyWanted, () =>
                finish(() => reject(new PeerCallError(to, 'rejected', describe(err), { cause: err }))),
              ),
          );
        });
      };

      deliver(true);
      if (duplicable && this.random.chance(this.#faults.duplicateRate)) {
        this.stats.duplicated++;
        deliver(false);
      }
    });
  }

  #reply(from: string, to: string, target: AttachedNode, replyWanted: boolean, settle: () => void): void {
    if (!replyWanted) return;
    // A node that crashed while handling the request sends nothing back.
    if (this.#nodes.get(to) !== target) return;
    const responseMetadata = new Metadata();
    stampHlc(responseMetadata, target.clock);
    this.stats.sent++;
    if (this.random.chance(this.#faults.dropRate)) {
      this.stats.dropped++;
      return;
    }
    this.scheduler.setTimer(this.#delay(), () => {
      if (!this.canReach(to, from)) return;
      const caller = this.#nodes.get(from);
      if (caller === undefined) return;
      observeHlc(responseMetadata, caller.clock, { maxClockOffsetMs: this.maxClockOffsetMs });
      settle();
    });
  }
}

/**
 * An entry as the receiving side of a gRPC call would see it: encoded to the wire message,
 * serialized, parsed and validated. The simulation then exercises the same conversions (and
 * catches the same omissions, like an empty vector clock that travels as "absent") as real nodes.
 */
function overTheWire(entry: Entry): Entry {
  return entryFromWire(WireEntry.decode(WireEntry.encode(entryToWire(entry)).finish()), 'a simulated message');
}

function linkKey(a: string, b: string): string {
  return `${a}\u0000${b}`;
}

function describe(err: unknown): string {
  if (err instanceof ReplikitError) return `${err.kind}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
