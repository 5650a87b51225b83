/**
 * Peer discovery by DNS: turns one DNS name into the peer list of a node (`replikit serve
 * --peers-dns NAME`), so that a Kubernetes StatefulSet, or any service registry that answers DNS
 * (Consul's `NAME.service.consul`), names the members instead of a hand-written `--peers`.
 *
 * Two forms, tried in this order:
 * - **SRV records** (recommended). Each record's target is a peer: its id is the target's first
 *   DNS label and its address `target:port`. A StatefulSet pod `replikit-0` behind the headless
 *   Service `replikit` has the target `replikit-0.replikit.default.svc.cluster.local`, so its id
 *   is `replikit-0`, the pod's name, which it keeps across restarts and rescheduling; the node is
 *   started with `--id $(POD_NAME)`. Priority and weight are ignored: every record is a member.
 * - **A and AAAA records**, when the name has no SRV records. They carry no port, so the caller
 *   gives one (`defaultPort`), and no name, so each address becomes the id `ip-` + the address
 *   with `.` and `:` replaced by `-` (10.0.0.5 → `ip-10-0-0-5`, fd00::1 → `ip-fd00--1`); a node
 *   found this way must be started with `--id` by the same rule. Prefer SRV: a node's id is its
 *   identity in the cluster (its data, its Raft votes), and pod names are stable while pod IPs
 *   change on every reschedule, which would make a restarted pod a stranger to its cluster.
 *
 * The peer list is read once, at startup: the membership is fixed from then on, so every node
 * must see the same list. With `waitForPeers` a node waits until the records name all the others
 * (a StatefulSet's pods, and their DNS records, appear one by one).
 */
import { promises as dns } from 'node:dns';
import type { PeerConfig } from './config.js';

/**
 * The most peers one name may yield. A replikit cluster is a handful of nodes: every node keeps
 * a heartbeat stream to every other and a CP write waits for a majority, so even 256 is far past
 * a useful size. The bound turns a name that points at the wrong, large service into a clear
 * error instead of thousands of connections; it fails rather than truncates, because truncated
 * lists would differ from node to node.
 */
export const MAX_DISCOVERED_PEERS = 256;

/** How lookups are made when the caller gives no resolver, each with its reason. */
export const PEER_DNS_DEFAULTS = {
  /**
   * A cluster DNS server answers in about a millisecond; 1 s per try leaves room for a loaded one
   * while a dead one fails in seconds (c-ares doubles the wait on each retry: 1 s + 2 s), not
   * the minutes a default resolver may spend.
   */
  timeoutMs: 1_000,
  /** One retry rides out a lost UDP datagram. */
  tries: 2,
  /** While waiting for peers: often enough that a node starts soon after the last record appears, rare enough to be no load. */
  pollIntervalMs: 1_000,
} as const;

/**
 * The lookups discovery needs: `dns.promises.Resolver` satisfies it as is. Each method rejects
 * with an error whose `code` is one of node:dns's (`ENODATA` the name has no records of that
 * type, `ENOTFOUND` the name does not exist, `ETIMEOUT`, `ECONNREFUSED`, `ESERVFAIL`, ...).
 */
export interface PeerResolver {
  resolveSrv(hostname: string): Promise<{ name: string; port: number; priority: number; weight: number }[]>;
  resolve4(hostname: string): Promise<string[]>;
  resolve6(hostname: string): Promise<string[]>;
}

/** Options of {@link createPeerResolver}. */
export interface PeerResolverOptions {
  /** DNS servers as IP or IP:PORT (`[IPv6]:PORT`); the system's (/etc/resolv.conf) when absent. */
  readonly servers?: readonly string[];
  /** @default PEER_DNS_DEFAULTS.timeoutMs */
  readonly timeoutMs?: number;
  /** @default PEER_DNS_DEFAULTS.tries */
  readonly tries?: number;
}

/** A `dns.promises.Resolver` whose lookups give up in seconds (see {@link PEER_DNS_DEFAULTS}). */
export function createPeerResolver(options: PeerResolverOptions = {}): PeerResolver {
  const resolver = new dns.Resolver({
    timeout: options.timeoutMs ?? PEER_DNS_DEFAULTS.timeoutMs,
    tries: options.tries ?? PEER_DNS_DEFAULTS.tries,
  });
  if (options.servers !== undefined) resolver.setServers([...options.servers]);
  return resolver;
}

/** Options of {@link resolvePeersFromDns}. */
export interface PeerDiscoveryOptions {
  /** This node's id: its own record is left out of the peers. */
  readonly selfId: string;
  /** The peers' port when the name has only A/AAAA records (which carry none); unused with SRV. */
  readonly defaultPort?: number;
  /** @default createPeerResolver() */
  readonly resolver?: PeerResolver;
  /**
   * Re-resolve every second until the records name at least `minPeers` peers besides this node,
   * or fail after `timeoutMs` saying how many were found. While waiting, a name with no records
   * yet, or a DNS server that does not answer, is retried; a record that cannot be a peer fails
   * at once. The last lookup may end up to one resolver timeout after `timeoutMs`.
   */
  readonly waitForPeers?: { readonly minPeers: number; readonly timeoutMs: number };
  /** Told about each lookup that did not find enough peers yet, and about records that look wrong. */
  readonly onNote?: (message: string) => void;
}

/**
 * Why discovery failed; the message names the DNS name and what was tried. `transient` failures
 * (no records yet, a DNS server that does not answer) may pass on their own and are retried while
 * waiting; the others (a record that cannot be a peer, a missing port) will not.
 */
export class PeerDiscoveryError extends Error {
  override readonly name = 'PeerDiscoveryError';
  readonly transient: boolean;

  constructor(message: string, options: { transient: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.transient = options.transient;
  }
}

/** validateNodeConfig's rule for node ids (src/node/config.ts); a test keeps the two equal. */
const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** The host part validateNodeConfig accepts in a peer address. */
const HOST_PATTERN = /^[A-Za-z0-9.-]+$/;

/** The peer id of an address found in an A or AAAA record: `ip-` + the address, `.` and `:` as `-`. */
export function peerIdOfAddress(ip: string): string {
  return `ip-${ip.replace(/[.:]/g, '-')}`;
}

/**
 * The peers that the DNS records of `name` list, this node left out, sorted by id. Throws a
 * {@link PeerDiscoveryError} naming `name` and what was tried when there are none, or when a
 * record cannot be a peer.
 */
export async function resolvePeersFromDns(name: string, options: PeerDiscoveryOptions): Promise<PeerConfig[]> {
  const resolver = options.resolver ?? createPeerResolver();
  const bare = name.replace(/\.$/, '');
  if (bare === '') throw new PeerDiscoveryError('the DNS name to discover peers by is empty', { transient: false });
  const wait = options.waitForPeers;
  if (wait === undefined || wait.minPeers <= 0) return resolveOnce(bare, resolver, options);
  if (!Number.isInteger(wait.minPeers) || wait.minPeers > MAX_DISCOVERED_PEERS) {
    throw new RangeError(`waitForPeers.minPeers must be a whole number up to ${MAX_DISCOVERED_PEERS}, not ${wait.minPeers}`);
  }
  const startMs = performance.now();
  for (;;) {
    let found: PeerConfig[] = [];
    let failure: PeerDiscoveryError | undefined;
    try {
      found = await resolveOnce(bare, resolver, options);
      if (found.length >= wait.minPeers) return found;
    } catch (err: unknown) {
      if (!(err instanceof PeerDiscoveryError) || !err.transient) throw err;
      failure = err;
    }
    const elapsedMs = performance.now() - startMs;
    const status =
      failure === undefined
        ? `found ${found.length} of the ${wait.minPeers} peers awaited` + (found.length > 0 ? ` (${found.map((p) => p.id).join(', ')})` : '')
        : `found 0 of the ${wait.minPeers} peers awaited (${failure.message})`;
    if (elapsedMs >= wait.timeoutMs) {
      throw new PeerDiscoveryError(`waited ${wait.timeoutMs} ms for the DNS records of ${bare} to name ${wait.minPeers} peers besides ${options.selfId}: ${status}`, {
        transient: true,
        cause: failure,
      });
    }
    options.onNote?.(`waiting for the DNS records of ${bare}: ${status}`);
    await new Promise((resolve) => setTimeout(resolve, Math.min(PEER_DNS_DEFAULTS.pollIntervalMs, wait.timeoutMs - elapsedMs)));
  }
}

/** One lookup: SRV first, then A and AAAA. */
async function resolveOnce(name: string, resolver: PeerResolver, options: PeerDiscoveryOptions): Promise<PeerConfig[]> {
  const srv = await lookup('SRV', name, () => resolver.resolveSrv(name));
  let found: { id: string; address: string; record: string }[];
  if (srv.records.length > 0) {
    found = srv.records.map((r) => {
      const target = r.name.replace(/\.$/, '');
      const record = `SRV ${r.priority} ${r.weight} ${r.port} ${target}`;
      // RFC 2782: a target of "." means the service is decidedly not available at this name.
      if (target === '') throw new PeerDiscoveryError(`the SRV records of ${name} say no service is available there (record "${record}")`, { transient: false });
      const id = target.split('.')[0]!;
      checkId(id, name, record, 'its first DNS label');
      if (!HOST_PATTERN.test(target)) {
        throw new PeerDiscoveryError(`the SRV record "${record}" of ${name} has a target that is not a host name of [A-Za-z0-9.-]`, { transient: false });
      }
      if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535) {
        throw new PeerDiscoveryError(`the SRV record "${record}" of ${name} has port ${r.port}; a peer needs 1 to 65535`, { transient: false });
      }
      return { id, address: `${target}:${r.port}`, record };
    });
  } else {
    const [v4, v6] = await Promise.all([lookup('A', name, () => resolver.resolve4(name)), lookup('AAAA', name, () => resolver.resolve6(name))]);
    const ips = [...v4.records, ...v6.records];
    if (ips.length === 0) {
      throw new PeerDiscoveryError(`no SRV, A or AAAA records for ${name} (SRV: ${srv.why}, A: ${v4.why}, AAAA: ${v6.why})`, { transient: true });
    }
    if (options.defaultPort === undefined) {
      throw new PeerDiscoveryError(
        `${name} has no SRV records, only A/AAAA records (${ips.slice(0, 5).join(', ')}${ips.length > 5 ? ', ...' : ''}), which carry no port: ` +
          'give the peers\' port (--peers-dns-port), or publish SRV records',
        { transient: false },
      );
    }
    const port = options.defaultPort;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`defaultPort must be 1 to 65535, not ${port}`);
    found = ips.map((ip) => {
      const record = `${ip.includes(':') ? 'AAAA' : 'A'} ${ip}`;
      const id = peerIdOfAddress(ip);
      checkId(id, name, record, 'the address');
      return { id, address: ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`, record };
    });
  }

  const byId = new Map<string, { id: string; address: string; record: string }>();
  for (const peer of found) {
    const seen = byId.get(peer.id);
    if (seen === undefined) {
      byId.set(peer.id, peer);
    } else if (seen.address !== peer.address) {
      throw new PeerDiscoveryError(
        `the records of ${name} give peer ${peer.id} two addresses, ${seen.address} ("${seen.record}") and ${peer.address} ("${peer.record}")` +
          (srv.records.length > 0 ? `; if the Service has several ports, ask for the peers' port by name: _PORTNAME._tcp.${name}` : ''),
        { transient: false },
      );
    }
  }
  if (!byId.has(options.selfId)) {
    options.onNote?.(
      `this node's id ${options.selfId} is not among the ids the DNS records of ${name} give (${[...byId.keys()].sort().join(', ') || 'none'}): ` +
        'either its own record has not appeared yet, or its --id does not follow the rule the others use',
    );
  }
  byId.delete(options.selfId);
  if (byId.size > MAX_DISCOVERED_PEERS) {
    throw new PeerDiscoveryError(`the records of ${name} name ${byId.size} peers; at most ${MAX_DISCOVERED_PEERS} are allowed (is it the right name?)`, { transient: false });
  }
  return [...byId.values()].map(({ id, address }) => ({ id, address })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function checkId(id: string, name: string, record: string, from: string): void {
  if (!ID_PATTERN.test(id)) {
    throw new PeerDiscoveryError(
      `the record "${record}" of ${name} gives the peer id ${JSON.stringify(id)} (from ${from}), which is not 1 to 64 characters of [A-Za-z0-9._-]`,
      { transient: false },
    );
  }
}

/**
 * Runs one query. A name without records of that type (`ENODATA`) or without any (`ENOTFOUND`)
 * gives no records, with the code as the reason; any other failure is a transient error naming
 * the query.
 */
async function lookup<T>(type: string, name: string, query: () => Promise<T[]>): Promise<{ records: T[]; why: string }> {
  try {
    const records = await query();
    return { records, why: records.length === 0 ? 'none' : `${records.length}` };
  } catch (err: unknown) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ENODATA' || code === 'ENOTFOUND') return { records: [], why: code === 'ENODATA' ? 'no records' : 'no such name' };
    const why = code === 'ETIMEOUT' ? 'the DNS server did not answer in time' : err instanceof Error ? err.message : String(err);
    throw new PeerDiscoveryError(`the ${type} lookup of ${name} failed: ${why}${typeof code === 'string' ? ` (${code})` : ''}`, { transient: true, cause: err });
  }
}
