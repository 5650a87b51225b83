import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  evidenceOf,
  livenessEvidenceClientInterceptor,
  livenessEvidenceServerInterceptor,
  peerIdentityClientInterceptor,
} from '../../src/interceptors/index.js';
import { GrpcHarness, callEcho, echoService, echoServiceDefinition } from './support/grpc-harness.js';

type Evidence = [string | undefined, boolean, number];

describe('evidenceOf', () => {
  it('counts only unreachable or late peers as failures, and local cancellation as nothing', () => {
    expect(evidenceOf(status.OK)).toBe('alive');
    expect(evidenceOf(status.NOT_FOUND)).toBe('alive');
    expect(evidenceOf(status.UNAVAILABLE)).toBe('failed');
    expect(evidenceOf(status.DEADLINE_EXCEEDED)).toBe('failed');
    expect(evidenceOf(status.CANCELLED)).toBe('none');
  });
});

describe('liveness evidence interceptors over gRPC', () => {
  const harness = new GrpcHarness();
  afterEach(() => harness.closeAll());

  it('reports a caller as alive on the server, and the server as alive on the caller, even for an error answer', async () => {
    const serverEvidence: Evidence[] = [];
    const clientEvidence: Evidence[] = [];
    const address = await harness.startServer(
      [livenessEvidenceServerInterceptor({ onEvidence: (peer, ok, code) => serverEvidence.push([peer, ok, code]) })],
      (s) => s.addService(echoServiceDefinition, echoService()),
    );
    const client = harness.echoClient(address, [
      livenessEvidenceClientInterceptor({ peerNodeId: 'server-node', onEvidence: (peer, ok, code) => clientEvidence.push([peer, ok, code]) }),
      peerIdentityClientInterceptor({ clusterId: 'prod', nodeId: 'client-node' }),
    ]);
    await callEcho(client, 'hi');
    await callEcho(client, String(status.NOT_FOUND), { method: 'fail' });
    expect(serverEvidence).toEqual([
      ['client-node', true, status.OK],
      ['client-node', true, status.NOT_FOUND],
    ]);
    expect(clientEvidence).toEqual([
      ['server-node', true, status.OK],
      ['server-node', true, status.NOT_FOUND],
    ]);
  });

  it('reports a peer that cannot be reached as a failure', async () => {
    // Bind a port, then close the server, so that nothing listens there.
    const address = await harness.startServer([], (s) => s.addService(echoServiceDefinition, echoService()));
    harness.closeAll();
    const clientEvidence: Evidence[] = [];
    const client = harness.echoClient(address, [
      livenessEvidenceClientInterceptor({ peerNodeId: 'gone', onEvidence: (peer, ok, code) => clientEvidence.push([peer, ok, code]) }),
    ]);
    const outcome = await callEcho(client, 'hi', { callOptions: { deadline: Date.now() + 2_000 } });
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(outcome.error?.code);
    expect(clientEvidence).toEqual([['gone', false, outcome.error?.code]]);
  });
});

describe('liveness evidence dates each call', () => {
  const harness = new GrpcHarness();
  afterEach(() => harness.closeAll());

  it('passes the start time of the call from the injected clock, so a late failure is weighed against life heard meanwhile', async () => {
    let clock = 100;
    const seen: (number | undefined)[] = [];
    const address = await harness.startServer([], (s) => s.addService(echoServiceDefinition, echoService()));
    const client = harness.echoClient(address, [
      livenessEvidenceClientInterceptor({ peerNodeId: 'p', onEvidence: (_p, _ok, _code, startedAtMs) => seen.push(startedAtMs), now: () => clock }),
    ]);
    const call = callEcho(client, 'hi');
    clock = 200; // the call started at 100, whenever it ends
    await call;
    expect(seen).toEqual([100]);
  });
});
