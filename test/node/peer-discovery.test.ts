/**
 * Peer discovery by DNS against a real DNS server (test/support/dns-server.ts, UDP on loopback)
 * through node:dns's own resolver: SRV first, A/AAAA with a port as the fallback, the errors that
 * name the name and the record, waiting for records that appear late, and a dead DNS server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, validateNodeConfig } from '../../src/node/config.js';
import {
  createPeerResolver,
  MAX_DISCOVERED_PEERS,
  PeerDiscoveryError,
  peerIdOfAddress,
  resolvePeersFromDns,
  type PeerResolver,
} from '../../src/node/peer-discovery.js';
import { DnsTestServer } from '../support/dns-server.js';

const SERVICE = 'replikit.default.svc.cluster.local';
const pod = (i: number) => `replikit-${i}.${SERVICE}`;

let server: DnsTestServer;
beforeAll(async () => {
  server = await DnsTestServer.start();
});
afterAll(async () => {
  await server?.close();
});

/** The message of what `promise` rejects with, which must be a PeerDiscoveryError. */
async function failure(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PeerDiscoveryError);
  return (err as Error).message;
}

describe('resolvePeersFromDns', () => {
  it('takes SRV records first: one peer per target, its first label as the id, itself left out, sorted', async () => {
    const name = 'srv.' + SERVICE;
    // The trailing dot of a fully qualified target is stripped; the order of the records does not matter.
    server.set(name, {
      srv: [
        { target: `${pod(2)}.`, port: 7000 },
        { target: pod(0), port: 7000, priority: 10, weight: 50 },
        { target: pod(1), port: 7000 },
      ],
      a: ['10.0.0.9'],
    });
    const before = server.queries.length;
    const peers = await resolvePeersFromDns(name, { selfId: 'replikit-1', resolver: server.resolver() });
    expect(peers).toEqual([
      { id: 'replikit-0', address: `${pod(0)}:7000` },
      { id: 'replikit-2', address: `${pod(2)}:7000` },
    ]);
    // SRV answered, so A and AAAA were never asked.
    expect(server.queries.slice(before)).toEqual([{ name, type: 'SRV' }]);
    // A record listed twice with the same address is one peer; a trailing dot on the name is fine.
    server.set(name, { srv: [{ target: pod(0), port: 7000 }, { target: `${pod(0)}.`, port: 7000 }, { target: pod(1), port: 7000 }] });
    expect(await resolvePeersFromDns(`${name}.`, { selfId: 'replikit-1', resolver: server.resolver() })).toEqual([{ id: 'replikit-0', address: `${pod(0)}:7000` }]);
  });

  it('falls back to A and AAAA records with the default port, ids by the ip- rule', async () => {
    const name = 'plain.replikit.test';
    server.set(name, { a: ['10.0.0.7', '10.0.0.5', '10.0.0.6'], aaaa: ['fd00::6'] });
    const before = server.queries.length;
    const peers = await resolvePeersFromDns(name, { selfId: 'ip-10-0-0-5', defaultPort: 7000, resolver: server.resolver() });
    expect(peers).toEqual([
      { id: 'ip-10-0-0-6', address: '10.0.0.6:7000' },
      { id: 'ip-10-0-0-7', address: '10.0.0.7:7000' },
      { id: 'ip-fd00--6', address: '[fd00::6]:7000' },
    ]);
    expect(server.queries.slice(before).map((q) => q.type).sort()).toEqual(['A', 'AAAA', 'SRV']);
    expect(server.queries[before]).toEqual({ name, type: 'SRV' }); // SRV was asked first
    expect(peerIdOfAddress('2001:db8::1:0:0:2')).toBe('ip-2001-db8--1-0-0-2');
  });

  it('refuses A records without a port, saying which records it found and what to give', async () => {
    server.set('noport.replikit.test', { a: ['10.0.0.5', '10.0.0.6'] });
    const message = await failure(resolvePeersFromDns('noport.replikit.test', { selfId: 'ip-10-0-0-5', resolver: server.resolver() }));
    expect(message).toBe(
      "noport.replikit.test has no SRV records, only A/AAAA records (10.0.0.5, 10.0.0.6), which carry no port: give the peers' port (--peers-dns-port), or publish SRV records",
    );
  });

  it('names the name and every lookup tried when there are no records', async () => {
    expect(await failure(resolvePeersFromDns('missing.replikit.test', { selfId: 'n1', defaultPort: 7000, resolver: server.resolver() }))).toBe(
      'no SRV, A or AAAA records for missing.replikit.test (SRV: no such name, A: no such name, AAAA: no such name)',
    );
    // A name that exists with no records of these types (NODATA rather than NXDOMAIN).
    server.set('empty.replikit.test', {});
    expect(await failure(resolvePeersFromDns('empty.replikit.test', { selfId: 'n1', resolver: server.resolver() }))).toBe(
      'no SRV, A or AAAA records for empty.replikit.test (SRV: no records, A: no records, AAAA: no records)',
    );
  });

  it('names the record whose target cannot be a peer', async () => {
    server.set('bad.replikit.test', { srv: [{ target: 'n1.replikit.test', port: 7001 }, { target: 'pod+2.replikit.test', port: 7002, priority: 1, weight: 2 }] });
    expect(await failure(resolvePeersFromDns('bad.replikit.test', { selfId: 'n1', resolver: server.resolver() }))).toBe(
      'the record "SRV 1 2 7002 pod+2.replikit.test" of bad.replikit.test gives the peer id "pod+2" (from its first DNS label), which is not 1 to 64 characters of [A-Za-z0-9._-]',
    );
    server.set('bad.replikit.test', { srv: [{ target: 'n1.replikit.test', port: 0 }] });
    expect(await failure(resolvePeersFromDns('bad.replikit.test', { selfId: 'n2', resolver: server.resolver() }))).toBe(
      'the SRV record "SRV 0 0 0 n1.replikit.test" of bad.replikit.test has port 0; a peer needs 1 to 65535',
    );
    // One target on two ports (a Service with two named ports, asked by its bare name).
    server.set('bad.replikit.test', { srv: [{ target: 'n1.replikit.test', port: 7000 }, { target: 'n1.replikit.test', port: 9090 }] });
    expect(await failure(resolvePeersFromDns('bad.replikit.test', { selfId: 'n2', resolver: server.resolver() }))).toMatch(
      /^the records of bad\.replikit\.test give peer n1 two addresses, n1\.replikit\.test:7000 \("SRV 0 0 7000 n1\.replikit\.test"\) and n1\.replikit\.test:9090 .*_PORTNAME\._tcp\.bad\.replikit\.test$/,
    );
  });

  it('accepts exactly the ids validateNodeConfig accepts', async () => {
    const labels = ['n1', 'replikit-0', 'a.b', 'under_score', 'x'.repeat(64), 'x'.repeat(65), 'pod+1', 'pod 1', 'é', ''];
    for (const label of labels) {
      // A stub resolver: the real one cannot carry a 65-byte label, which DNS forbids.
      const resolver = stub({ srv: [{ name: `${label}.svc.test`, port: 7000, priority: 0, weight: 0 }] });
      const discovered = await resolvePeersFromDns('svc.test', { selfId: 'self', resolver }).then(
        () => true,
        (err: Error) => !/gives the peer id/.test(err.message),
      );
      let valid = true;
      try {
        validateNodeConfig({ nodeId: label });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        valid = false;
      }
      expect(discovered, JSON.stringify(label)).toBe(valid);
    }
  });

  it(`refuses more than ${MAX_DISCOVERED_PEERS} peers rather than truncate`, async () => {
    const srv = Array.from({ length: MAX_DISCOVERED_PEERS + 2 }, (_, i) => ({ name: `n${i}.svc.test`, port: 7000, priority: 0, weight: 0 }));
    // Itself and 256 others: at the limit.
    expect(await resolvePeersFromDns('svc.test', { selfId: 'n0', resolver: stub({ srv: srv.slice(0, -1) }) })).toHaveLength(MAX_DISCOVERED_PEERS);
    expect(await failure(resolvePeersFromDns('svc.test', { selfId: 'n0', resolver: stub({ srv }) }))).toBe(
      `the records of svc.test name ${MAX_DISCOVERED_PEERS + 1} peers; at most ${MAX_DISCOVERED_PEERS} are allowed (is it the right name?)`,
    );
  });

  it('waits for records that appear later (a StatefulSet starting), re-resolving every second', async () => {
    const name = 'late.' + SERVICE;
    server.set(name, { srv: [{ target: pod(0), port: 7000 }] }); // only this node's own record so far
    const notes: string[] = [];
    const t0 = performance.now();
    setTimeout(() => server.set(name, { srv: [0, 1, 2].map((i) => ({ target: pod(i), port: 7000 })) }), 1_500);
    const peers = await resolvePeersFromDns(name, {
      selfId: 'replikit-0',
      resolver: server.resolver(),
      waitForPeers: { minPeers: 2, timeoutMs: 10_000 },
      onNote: (m) => notes.push(m),
    });
    const elapsedMs = performance.now() - t0;
    expect(peers.map((p) => p.id)).toEqual(['replikit-1', 'replikit-2']);
    expect(elapsedMs).toBeGreaterThanOrEqual(1_450);
    expect(elapsedMs).toBeLessThan(6_000); // the next poll after the records appear, not the timeout
    expect(notes[0]).toBe(`waiting for the DNS records of ${name}: found 0 of the 2 peers awaited`);
    expect(notes.length).toBeGreaterThanOrEqual(2);

    // A name with no records at all yet is waited for too.
    const empty = 'later.' + SERVICE;
    setTimeout(() => server.set(empty, { srv: [{ target: pod(1), port: 7000 }] }), 1_500);
    expect(await resolvePeersFromDns(empty, { selfId: 'replikit-0', resolver: server.resolver(), waitForPeers: { minPeers: 1, timeoutMs: 10_000 } })).toEqual([
      { id: 'replikit-1', address: `${pod(1)}:7000` },
    ]);
  });

  it('gives up waiting after the timeout, saying how many it found', async () => {
    const name = 'short.' + SERVICE;
    server.set(name, { srv: [0, 1].map((i) => ({ target: pod(i), port: 7000 })) });
    const t0 = performance.now();
    const message = await failure(
      resolvePeersFromDns(name, { selfId: 'replikit-0', resolver: server.resolver(), waitForPeers: { minPeers: 2, timeoutMs: 1_200 } }),
    );
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(message).toBe(`waited 1200 ms for the DNS records of ${name} to name 2 peers besides replikit-0: found 1 of the 2 peers awaited (replikit-1)`);
    // A record that cannot be a peer is not waited out: it fails at once.
    server.set(name, { srv: [{ target: 'bad+pod.x', port: 7000 }] });
    const t1 = performance.now();
    expect(await failure(resolvePeersFromDns(name, { selfId: 'replikit-0', resolver: server.resolver(), waitForPeers: { minPeers: 2, timeoutMs: 30_000 } }))).toMatch(
      /gives the peer id "bad\+pod"/,
    );
    expect(performance.now() - t1).toBeLessThan(1_000);
  });

  it('fails within the resolver timeout when the DNS server never answers, without falling back to A', async () => {
    const dead = await DnsTestServer.start({ silent: true });
    try {
      const t0 = performance.now();
      const message = await failure(resolvePeersFromDns('replikit.test', { selfId: 'n1', defaultPort: 7000, resolver: dead.resolver({ timeout: 200, tries: 1 }) }));
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(message).toBe('the SRV lookup of replikit.test failed: the DNS server did not answer in time (ETIMEOUT)');
      expect(dead.queries.every((q) => q.type === 'SRV')).toBe(true);

      // The default resolver's own bound: seconds, not minutes.
      const t1 = performance.now();
      await failure(resolvePeersFromDns('replikit.test', { selfId: 'n1', resolver: createPeerResolver({ servers: [dead.address] }) }));
      expect(performance.now() - t1).toBeLessThan(8_000);

      // Waiting on a dead server ends at the wait's timeout (plus at most one lookup), naming the last failure.
      const t2 = performance.now();
      const waited = await failure(
        resolvePeersFromDns('replikit.test', { selfId: 'n1', resolver: dead.resolver({ timeout: 200, tries: 1 }), waitForPeers: { minPeers: 2, timeoutMs: 1_000 } }),
      );
      expect(performance.now() - t2).toBeLessThan(3_000);
      expect(waited).toMatch(/^waited 1000 ms for the DNS records of replikit\.test to name 2 peers besides n1: found 0 of the 2 peers awaited \(the SRV lookup of replikit\.test failed: .*\(ETIMEOUT\)\)$/);
    } finally {
      await dead.close();
    }
  });
});

/** A resolver answering from a fixed table, for what real DNS cannot carry (oversized labels, hundreds of records). */
function stub(records: { srv: Awaited<ReturnType<PeerResolver['resolveSrv']>> }): PeerResolver {
  const nodata = () => Promise.reject(Object.assign(new Error('ENODATA'), { code: 'ENODATA' }));
  return { resolveSrv: async () => records.srv, resolve4: nodata, resolve6: nodata };
}
