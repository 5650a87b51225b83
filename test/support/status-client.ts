import { credentials, Metadata } from '@grpc/grpc-js';
import { ClusterServiceClient, MemberState, type StatusResponse } from '../../src/gen/replikit/v1/cluster_service.js';

export const STATE = {
  [MemberState.MEMBER_STATE_ALIVE]: 'ALIVE',
  [MemberState.MEMBER_STATE_SUSPECT]: 'SUSPECT',
  [MemberState.MEMBER_STATE_DEAD]: 'DEAD',
} as Record<number, string>;

export async function status(address: string): Promise<StatusResponse> {
  const client = new ClusterServiceClient(address, credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) =>
      client.status({}, new Metadata(), { deadline: Date.now() + 2_000 }, (err, res) => (err ? reject(err) : resolve(res))),
    );
  } finally {
    client.close();
  }
}

/** `observer`'s verdict on `member`: ALIVE, SUSPECT or DEAD. */
export async function stateOf(observer: string, member: string): Promise<{ state: string; incarnation: bigint }> {
  const res = await status(observer);
  const m = res.members.find((x) => x.nodeId === member);
  if (m === undefined) throw new Error(`${member} is not a member in ${observer}'s view`);
  return { state: STATE[m.state] ?? 'UNSPECIFIED', incarnation: m.incarnation };
}

/** Polls every 20 ms until `predicate` holds; resolves with the elapsed ms, rejects after `limitMs`. */
export async function waitFor(predicate: () => Promise<boolean>, limitMs: number, what: string): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await predicate().catch(() => false)) return performance.now() - t0;
    if (performance.now() - t0 > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
