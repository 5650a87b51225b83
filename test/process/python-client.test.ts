import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { policyByName } from '../../src/policy/index.js';
import { BUILT } from '../support/cli.js';
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
