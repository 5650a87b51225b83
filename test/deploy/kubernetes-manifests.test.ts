/**
 * deploy/kubernetes/statefulset.yaml is consistent with itself and with `replikit serve`: the
 * container's flags are flags serve takes, the DNS name it discovers peers by is the headless
 * Service's and finds the StatefulSet's pods, the probes and Services point at the port it listens
 * on, and the disruption budget keeps a majority.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/cli/args.js';
import { PEERS_DNS_WAIT_MS, SERVE_FLAGS, SHUTDOWN_BOUND_MS } from '../../src/cli/commands/serve.js';
import { resolvePeersFromDns } from '../../src/node/peer-discovery.js';
import { CLUSTER_SERVICE_HEALTH_NAME } from '../../src/ops/health.js';
import { DnsTestServer } from '../support/dns-server.js';
import { parseYamlDocuments, type YamlValue } from './yaml-subset.js';

// The manifests' shapes, as far as the checks below read them.
interface Probe {
  grpc?: { port: number; service?: string };
  periodSeconds?: number;
  failureThreshold?: number;
}
interface Container {
  name: string;
  image: string;
  command: string[];
  args: string[];
  env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  startupProbe: Probe;
  livenessProbe: Probe;
  readinessProbe: Probe;
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  volumeMounts: { name: string; mountPath: string }[];
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown>;
}
interface StatefulSetSpec {
  serviceName: string;
  replicas: number;
  podManagementPolicy: string;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[]; terminationGracePeriodSeconds: number; securityContext: { runAsUser: number; fsGroup: number } } };
  volumeClaimTemplates: { metadata: { name: string } }[];
}
interface ServiceSpec {
  clusterIP?: string;
  publishNotReadyAddresses?: boolean;
  selector: Record<string, string>;
  ports: { name: string; port: number; targetPort: string | number }[];
}

const root = new URL('../../', import.meta.url);
const manifests = parseYamlDocuments(readFileSync(new URL('deploy/kubernetes/statefulset.yaml', root), 'utf8')) as unknown as Manifest[];
const only = (kind: string) => manifests.filter((m) => m.kind === kind);
const statefulSet = only('StatefulSet')[0]!;
const sts = statefulSet.spec as unknown as StatefulSetSpec;
const container = sts.template.spec.containers[0]!;
const services = only('Service');
const headless = services.find((s) => (s.spec as unknown as ServiceSpec).clusterIP === 'None')!;
const headlessSpec = headless.spec as unknown as ServiceSpec;
const podLabels = sts.template.metadata.labels;

/** The container's args with Kubernetes' $(VAR) expansion, for pod `ordinal` in namespace `namespace`. */
function expandedArgs(ordinal: number, namespace: string): string[] {
  const env: Record<string, string> = { POD_NAME: `${statefulSet.metadata.name}-${ordinal}`, POD_NAMESPACE: namespace };
  return container.args.map((a) => a.replace(/\$\((\w+)\)/g, (_, name: string) => env[name] ?? `$(${name})`));
}
/** Pod 0's flags as serve parses them (throwing serve's own UsageError for a flag it does not take). */
const flags = {
  get: (name: string) => parseArgs(expandedArgs(0, 'default').slice(1), SERVE_FLAGS).flags.get(name),
};
const listenPort = Number(/:(\d+)$/.exec(container.args[container.args.indexOf('--listen') + 1] ?? '')?.[1]);

/** Whether a selector picks the pods: every label it names, with the pods' value. */
const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);

let dns: DnsTestServer;
beforeAll(async () => {
  dns = await DnsTestServer.start();
});
afterAll(async () => {
  await dns?.close();
});

describe('deploy/kubernetes/statefulset.yaml', () => {
  it('holds a headless Service, a client Service, a PodDisruptionBudget and a StatefulSet', () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual(['PodDisruptionBudget', 'Service', 'Service', 'StatefulSet']);
    expect(headless, 'a Service with clusterIP: None').toBeDefined();
    expect(services.filter((s) => s !== headless).map((s) => (s.spec as { type?: string }).type)).toEqual(['ClusterIP']);
    for (const s of services) expect(selects((s.spec as unknown as ServiceSpec).selector), s.metadata.name).toBe(true);
    expect(selects(sts.selector.matchLabels)).toBe(true);
    expect(sts.replicas).toBe(3);
    expect(sts.podManagementPolicy).toBe('Parallel'); // see the README: OrderedReady would never finish
    expect(container.image).toBe('replikit:latest');
  });

  it('runs `replikit serve` with flags serve takes, on a port everything else agrees with', () => {
    expect(container.command).toEqual(['replikit']);
    expect(container.args[0]).toBe('serve');
    // parseArgs throws a UsageError for any flag serve does not take, or one without its value.
    const parsed = parseArgs(expandedArgs(1, 'prod').slice(1), SERVE_FLAGS);
    expect(parsed.positionals).toEqual([]);
    expect(parsed.flags.get('id')).toBe('replikit-1');
    expect(flags.get('listen')).toMatch(/^0\.0\.0\.0:\d+$/);
    // Every $(VAR) the args use comes from the downward API.
    const vars = new Set([...container.args.join(' ').matchAll(/\$\((\w+)\)/g)].map((m) => m[1]!));
    const fieldPaths = Object.fromEntries(container.env.map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
    expect(fieldPaths).toMatchObject({ POD_NAME: 'metadata.name', POD_NAMESPACE: 'metadata.namespace' });
    for (const v of vars) expect(fieldPaths[v], v).toBeDefined();

    const grpcPort = container.ports.find((p) => p.name === 'grpc')!;
    expect(grpcPort.containerPort).toBe(listenPort);
    for (const s of services) {
      const port = (s.spec as unknown as ServiceSpec).ports.find((p) => p.name === 'grpc')!;
      expect([listenPort, 'grpc'], s.metadata.name).toContain(port.targetPort);
    }
    for (const probe of [container.startupProbe, container.livenessProbe, container.readinessProbe]) expect(probe.grpc?.port).toBe(listenPort);
  });

  it('probes: readiness is the node\'s overall health; liveness and startup a name that is SERVING whenever the node answers', () => {
    expect(container.readinessProbe.grpc?.service ?? '').toBe('');
    expect(container.livenessProbe.grpc?.service).toBe(CLUSTER_SERVICE_HEALTH_NAME);
    expect(container.startupProbe.grpc?.service).toBe(CLUSTER_SERVICE_HEALTH_NAME);
    const windowS = (p: Probe) => (p.periodSeconds ?? 10) * (p.failureThreshold ?? 3);
    // The startup probe outlasts the longest wait for the peers' DNS records, before the node binds its port.
    expect(windowS(container.startupProbe) * 1000).toBeGreaterThan(PEERS_DNS_WAIT_MS);
    expect(windowS(container.livenessProbe)).toBeGreaterThanOrEqual(60);
    // Kubernetes waits longer than serve's own shutdown bound before it sends SIGKILL.
    expect(sts.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(SHUTDOWN_BOUND_MS);
  });

  it('discovers the peers by the headless Service, whose DNS records list every pod', async () => {
    expect(sts.serviceName).toBe(headless.metadata.name); // pods get NAME-i.SERVICE.NAMESPACE.svc records
    expect(headlessSpec.publishNotReadyAddresses).toBe(true);
    const name = flags.get('peers-dns')!;
    const m = /^(?:_([a-z0-9-]+)\._tcp\.)?([a-z0-9-]+)\.default\.svc\.cluster\.local$/.exec(name);
    expect(m, name).not.toBeNull();
    expect(m![2]).toBe(headless.metadata.name);
    if (m![1] !== undefined) expect(headlessSpec.ports.map((p) => p.name)).toContain(m![1]);
    // The member list is fixed at startup: each node waits for all the others.
    expect(Number(flags.get('peers-dns-wait'))).toBe(sts.replicas - 1);

    // What the cluster DNS answers for this manifest (Kubernetes' DNS spec: one SRV record per
    // pod, target POD.SERVICE.NAMESPACE.svc.cluster.local), asked as each pod would.
    const zone = `${headless.metadata.name}.default.svc.cluster.local`;
    const pods = Array.from({ length: sts.replicas }, (_, i) => `${statefulSet.metadata.name}-${i}`);
    dns.set(name, { srv: pods.map((pod) => ({ target: `${pod}.${zone}`, port: listenPort })) });
    for (const [i, pod] of pods.entries()) {
      const podFlags = parseArgs(expandedArgs(i, 'default').slice(1), SERVE_FLAGS).flags;
      const peers = await resolvePeersFromDns(podFlags.get('peers-dns')!, {
        selfId: podFlags.get('id')!,
        resolver: dns.resolver(),
        waitForPeers: { minPeers: Number(podFlags.get('peers-dns-wait')), timeoutMs: 1_000 },
      });
      expect(peers).toEqual(pods.filter((p) => p !== pod).map((p) => ({ id: p, address: `${p}.${zone}:${listenPort}` })));
    }
  });

  it('keeps a majority through voluntary disruptions, and data on a claim mounted at --data-dir', () => {
    const pdb = only('PodDisruptionBudget')[0]!;
    const spec = pdb.spec as { maxUnavailable: number; selector: { matchLabels: Record<string, string> } };
    expect(selects(spec.selector.matchLabels)).toBe(true);
    const majority = Math.floor(sts.replicas / 2) + 1;
    expect(spec.maxUnavailable).toBeGreaterThanOrEqual(1);
    expect(sts.replicas - spec.maxUnavailable).toBeGreaterThanOrEqual(majority);

    const claim = sts.volumeClaimTemplates[0]!.metadata.name;
    expect(container.volumeMounts).toContainEqual({ name: claim, mountPath: flags.get('data-dir') });
    expect(container.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(container.resources.limits?.['cpu'], 'no CPU limit: throttling delays heartbeats').toBeUndefined();
  });

  it('matches deploy/Dockerfile: the command is on its PATH, as the user the pod runs as', () => {
    const dockerfile = readFileSync(new URL('deploy/Dockerfile', root), 'utf8');
    expect(dockerfile).toContain(`/usr/local/bin/${container.command[0]}`);
    expect(dockerfile).toMatch(/^USER node$/m); // uid 1000 in the node images
    expect(sts.template.spec.securityContext).toMatchObject({ runAsUser: 1000, fsGroup: 1000 });
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${listenPort}$`, 'm'));
  });
});

describe('the YAML subset reader', () => {
  it('reads what the manifests use and refuses what it does not understand', () => {
    const docs: YamlValue[] = parseYamlDocuments(
      '# c\n---\na: 1\nb:\n  - x\n  - k: "v"\n    n: true\nc:\n- \'q\'\nd: ["e"]\n---\n- 2\n',
    );
    expect(docs).toEqual([{ a: 1, b: ['x', { k: 'v', n: true }], c: ['q'], d: ['e'] }, [2]]);
    expect(() => parseYamlDocuments('a: &x 1\n')).toThrow(/line 1/);
    expect(() => parseYamlDocuments('a: |\n  text\n')).toThrow(/line 1/);
    expect(() => parseYamlDocuments('a: 1 # no\n')).toThrow(/inline comments/);
    expect(() => parseYamlDocuments('a: 1\n   b: 2\n')).toThrow(/line 2/);
  });
});
