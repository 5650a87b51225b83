import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { policyByName } from '../../src/policy/index.js';
import { BUILT } from '../support/cli.js';
import { makeSpiffePki, type SpiffePki } from '../support/pki.js';
import { stateOf, waitFor } from '../support/status-client.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUF = join(ROOT, 'node_modules/.bin/buf');
const CLIENT = join(ROOT, 'examples/python/client.py');

function works(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Debian's python3-grpcio and python3-protobuf live in /usr/lib/python3/dist-packages, which only
 * Debian's own /usr/bin/python3 sees (a pyenv python3 earlier on PATH does not); try it first.
 */
const PYTHON = ['/usr/bin/python3', 'python3'].find((p) => works(p, ['-c', 'import grpc, google.protobuf']));
const PROTOC = works('protoc', ['--version']) && works('which', ['grpc_python_plugin']);
const MISSING = [
  PYTHON === undefined ? 'python3-grpcio and python3-protobuf' : undefined,
  PROTOC ? undefined : 'protobuf-compiler and protobuf-compiler-grpc',
].filter((x) => x !== undefined);
if (MISSING.length > 0) {
  console.warn(`the Python client test is skipped: ${MISSING.join(' and ')} are not installed (apt-get install -y protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf; .ci/run does)`);
}

/** A causal keyspace when this build has the causal policy (tokens must then round-trip); else the CP default. */
const CAUSAL = policyByName('causal') !== undefined;

let cluster: LocalCluster | undefined;
let genDir: string | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
  if (genDir !== undefined) rmSync(genDir, { recursive: true, force: true });
});

interface Step {
  step: string;
  node?: string;
  found?: boolean;
  value?: string;
  sessionToken?: string;
  members?: Record<string, string>;
  keyspaces?: Record<string, boolean>;
  notServingReasons?: string[];
  ok?: boolean;
  failures?: string[];
}

describe.skipIf(!BUILT || MISSING.length > 0)('a Python client generated from proto/ with buf (buf.gen.python.yaml) against a 3-node cluster', () => {
  it(`puts, gets through another node with the session token, writes after reading, and reads Status (keyspace ${CAUSAL ? 'c=causal' : 'default=cp'})`, async () => {
    genDir = mkdtempSync(join(tmpdir(), 'replikit-python-'));
    // The same command as docs/other-languages.md, into a temporary folder.
    execFileSync(BUF, ['generate', '--template', 'buf.gen.python.yaml', '-o', genDir], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    const pythonPath = join(genDir, 'examples/python/gen');

    const keyspace = CAUSAL ? 'c' : 'default';
    cluster = await LocalCluster.create({ size: 3, serveArgs: ['--heartbeat-interval-ms', '100', ...(CAUSAL ? ['--keyspace', 'c=causal'] : [])] });
    const c = cluster;
    await c.startAll();
    for (const peer of ['n2', 'n3']) await waitFor(async () => (await stateOf(c.address('n1'), peer)).state === 'ALIVE', 5_000, `n1 hears ${peer}`);

    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        PYTHON!,
        [CLIENT, '--target', c.address('n1'), '--target', c.address('n2'), '--keyspace', keyspace],
        { env: { ...process.env, PYTHONPATH: pythonPath }, timeout: 30_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`client.py failed (${err.message}): ${stdout}${stderr}`)) : resolve(stdout)),
      ),
    );
    const steps = out.trim().split('\n').map((l) => JSON.parse(l) as Step);
    console.log(out.trim());
    expect(steps.map((s) => s.step)).toEqual(['put', 'get', 'put', 'get', 'status', 'done']);
    const [put1, get1, put2, get2, status, done] = steps as [Step, Step, Step, Step, Step, Step];
    expect(get1).toMatchObject({ node: c.address('n2'), found: true, value: 'one' });
    expect(get2).toMatchObject({ node: c.address('n1'), found: true, value: 'two' });
    if (CAUSAL) {
      // Causal keyspaces answer every request with the client's causal context.
      for (const s of [put1, get1, put2, get2]) expect(s.sessionToken, `${s.step} token`).not.toBe('');
    }
    // The Python client reads every member and its state enum by name. (Which state a peer is in
    // is the failure detector's business, tested elsewhere: on a loaded CI machine a peer can be
    // briefly SUSPECT at the moment of the call.)
    expect(Object.keys(status.members ?? {}).sort()).toEqual(['n1', 'n2', 'n3']);
    expect(status.members?.n1).toBe('MEMBER_STATE_ALIVE');
    for (const state of Object.values(status.members ?? {})) expect(state).toMatch(/^MEMBER_STATE_(ALIVE|SUSPECT|DEAD)$/);
    expect(typeof status.keyspaces?.[keyspace]).toBe('boolean');
    expect(Array.isArray(status.notServingReasons)).toBe(true);
    expect(done).toEqual({ step: 'done', ok: true, failures: [] });
  });
});

/** Generates the Python stubs into a new temporary folder (removed after each test) and returns their PYTHONPATH. */
function generatePython(): string {
  genDir = mkdtempSync(join(tmpdir(), 'replikit-python-'));
  execFileSync(BUF, ['generate', '--template', 'buf.gen.python.yaml', '-o', genDir], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  return join(genDir, 'examples/python/gen');
}

/** Runs client.py; resolves with its exit status and its JSON steps, whatever the status. */
function runClient(pythonPath: string, args: readonly string[]): Promise<{ code: number; steps: (Step & Record<string, unknown>)[]; output: string }> {
  return new Promise((resolve) =>
    execFile(PYTHON!, [CLIENT, ...args], { env: { ...process.env, PYTHONPATH: pythonPath }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      const steps = stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Step & Record<string, unknown>);
      resolve({ code, steps, output: `${stdout}${stderr}` });
    }),
  );
}

/** Three `serve` processes with mutual TLS on node certificates from `pki` (their ids n1..n3). */
async function startMutualTlsCluster(pki: SpiffePki, serveArgs: readonly string[]): Promise<LocalCluster> {
  const logs: string[] = [];
  cluster = await LocalCluster.create({ size: 3, memory: true, serveArgs: ['--heartbeat-interval-ms', '100', ...serveArgs], onLog: (id, line) => logs.push(`${id} ${line}`) });
  const c = cluster;
  const files = await Promise.all(c.ids.map((id) => pki.node(id)));
  await Promise.all(c.ids.map((id, i) => c.start(id, ['--tls-cert', files[i]!.cert, '--tls-key', files[i]!.key, '--tls-ca', pki.caFile]))).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${logs.slice(-20).join('\n')}`);
  });
  return c;
}

/** The client.py flags for mutual TLS with client `name`'s certificate. */
async function clientTls(pki: SpiffePki, name: string): Promise<string[]> {
  const files = await pki.client(name);
  return ['--tls-ca', pki.caFile, '--tls-cert', files.cert, '--tls-key', files.key];
}

describe.skipIf(!BUILT || MISSING.length > 0)('the Python client over mutual TLS (grpc.ssl_channel_credentials with a client certificate)', () => {
  it('puts and gets through two nodes and reads Status with its client certificate', async () => {
    const pythonPath = generatePython();
    const pki = await makeSpiffePki(genDir!);
    const c = await startMutualTlsCluster(pki, []);
    const tls = await clientTls(pki, 'py-app');
    const run = await runClient(pythonPath, ['--target', c.address('n1'), '--target', c.address('n2'), ...tls]);
    console.log(run.output.trim());
    expect(run.code, run.output).toBe(0);
    expect(run.steps.map((s) => s.step)).toEqual(['put', 'get', 'put', 'get', 'status', 'done']);
    expect(run.steps[1]).toMatchObject({ node: c.address('n2'), found: true, value: 'one' });

    // The same client without its certificate: the mutual-TLS handshake fails, nothing is served.
    const anonymous = await runClient(pythonPath, ['--target', c.address('n1'), '--tls-ca', pki.caFile]);
    expect(anonymous.code, anonymous.output).toBe(2);
    expect(anonymous.steps[0]).toMatchObject({ step: 'error', code: 'UNAVAILABLE' });
  }, 90_000);

  it('with serve --authz granting client:py-app read,write on keyspace default only: puts and gets there, PERMISSION_DENIED in keyspace other', async () => {
    const pythonPath = generatePython();
    const pki = await makeSpiffePki(genDir!);
    const authz = join(genDir!, 'authz');
    writeFileSync(authz, '# the Python client may read and write keyspace default, nothing else\nallow client:py-app read,write default\n');
    const c = await startMutualTlsCluster(pki, ['--keyspace', 'other=cp', '--authz', authz]);
    const tls = await clientTls(pki, 'py-app');
    const run = await runClient(pythonPath, ['--target', c.address('n1'), '--target', c.address('n3'), ...tls, '--no-status', '--expect-denied', 'other']);
    console.log(run.output.trim());
    expect(run.steps.map((s) => s.step)).toEqual(['put', 'get', 'put', 'get', 'denied', 'denied', 'done']);
    expect(run.steps[3]).toMatchObject({ node: c.address('n1'), found: true, value: 'two' });
    const denied = run.steps.filter((s) => s.step === 'denied');
    expect(denied.map((s) => [s.call, s.keyspace, s.code])).toEqual([
      ['get', 'other', 'PERMISSION_DENIED'],
      ['put', 'other', 'PERMISSION_DENIED'],
    ]);
    // The refusal names who was refused and what it lacks.
    expect(String(denied[0]!.details)).toMatch(/client py-app .*may not read keyspace "other"/);
    expect(String(denied[1]!.details)).toMatch(/client py-app .*may not write keyspace "other"/);
    expect(run.steps.at(-1)).toEqual({ step: 'done', ok: true, failures: [] });
    expect(run.code, run.output).toBe(0);

    // Another client of the same CA, granted nothing: refused in keyspace default too.
    const stranger = await runClient(pythonPath, ['--target', c.address('n2'), ...(await clientTls(pki, 'stranger')), '--no-status']);
    expect(stranger.code, stranger.output).toBe(2);
    expect(stranger.steps[0]).toMatchObject({ step: 'error', code: 'PERMISSION_DENIED' });
  }, 90_000);
});
