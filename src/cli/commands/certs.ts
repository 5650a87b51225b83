import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { NODE_DEFAULTS } from '../../node/config.js';
import { intFlag, parseArgs, UsageError } from '../args.js';
import type { Command } from '../main.js';

const USAGE = `usage: replikit certs init   --dir DIR [--days N] [--force]
       replikit certs node   --dir DIR --id ID [--cluster-id ID] [--dns NAME]... [--ip ADDR]... [--days N] [--force]
       replikit certs client --dir DIR --name NAME [--cluster-id ID] [--days N] [--force]

Certificates for development and tests (production: cert-manager or SPIRE, docs/security.md),
ECDSA P-256, signed by a CA kept in DIR:
  init     a new CA: DIR/ca.pem (give it to every node and client as --tls-ca) and DIR/ca.key
           (mode 0600); valid --days (default 3650)
  node     DIR/node-ID.pem and DIR/node-ID.key for serve --tls-cert/--tls-key: the URI SAN
           spiffe://CLUSTER-ID/node/ID and the names it serves on, --dns and --ip (default
           localhost, 127.0.0.1 and ::1 when neither is given); valid --days (default 365)
  client   DIR/client-NAME.pem and DIR/client-NAME.key for a client's --tls-cert/--tls-key: the
           URI SAN spiffe://CLUSTER-ID/client/NAME; valid --days (default 365)
--cluster-id is the cluster's (serve --cluster-id; default "${NODE_DEFAULTS.clusterId}"). Ids, names and cluster ids are 1
to 64 characters of [A-Za-z0-9._-]. An existing file is never overwritten without --force.
Exit status: 0 written, 1 a file exists, the CA is missing or a file cannot be written, 2 bad usage.`;

const FLAGS = {
  dir: {},
  days: {},
  force: { boolean: true },
  id: {},
  name: {},
  'cluster-id': {},
  dns: { repeated: true },
  ip: { repeated: true },
} as const;

/** The flags each action takes besides --dir, --days and --force. */
const ACTION_FLAGS: Readonly<Record<string, readonly string[]>> = {
  init: [],
  node: ['id', 'cluster-id', 'dns', 'ip'],
  client: ['name', 'cluster-id'],
};

const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** A DNS name (a leading `*.` wildcard allowed): labels of letters, digits and hyphens, 253 characters at most. */
const DNS_PATTERN = /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function nameFlag(flag: string, value: string | undefined, what: string): string {
  if (value === undefined) throw new UsageError(`--${flag} ${what.toUpperCase()} is required`);
  if (!NAME_PATTERN.test(value)) throw new UsageError(`--${flag}: a ${what} is 1 to 64 characters of [A-Za-z0-9._-], not ${JSON.stringify(value)}`);
  return value;
}

/** Writes `files` (all or nothing as far as refusals go: every one is checked before any is written). */
function writeAll(files: readonly { path: string; text: string; secret: boolean }[], force: boolean): void {
  if (!force) {
    const existing = files.find((f) => existsSync(f.path));
    if (existing !== undefined) throw new Error(`${existing.path} exists; pass --force to overwrite it`);
  }
  for (const f of files) {
    writeFileSync(f.path, f.text, { mode: f.secret ? 0o600 : 0o644, flag: force ? 'w' : 'wx' });
    // The mode of writeFileSync applies only to a file it creates; an overwritten key keeps 0600 too.
    if (f.secret) chmodSync(f.path, 0o600);
  }
}

function dateText(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export const certsCommand: Command = {
  summary: 'make a development CA, node and client certificates with SPIFFE ids (mutual TLS)',
  usage: USAGE,
  async run(argv) {
    const args = parseArgs(argv, FLAGS);
    const [action, ...extra] = args.positionals;
    if (action === undefined) throw new UsageError('certs needs an action: init, node or client');
    const allowed = ACTION_FLAGS[action];
    if (allowed === undefined) throw new UsageError(`unknown certs action ${JSON.stringify(action)}: use init, node or client`);
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    for (const flag of [...args.flags.keys(), ...args.lists.keys()]) {
      if (flag !== 'dir' && flag !== 'days' && !allowed.includes(flag)) throw new UsageError(`certs ${action} takes no --${flag}`);
    }
    const dir = args.flags.get('dir');
    if (dir === undefined || dir === '') throw new UsageError('--dir DIR is required');
    const force = args.switches.has('force');
    const days = args.flags.has('days') ? intFlag('days', args.flags.get('days')!, 1, 3650) : action === 'init' ? 3650 : 365;
    const clusterId = action === 'init' ? '' : args.flags.has('cluster-id') ? nameFlag('cluster-id', args.flags.get('cluster-id'), 'cluster id') : NODE_DEFAULTS.clusterId;
    let subject: { file: string; id: string; dnsNames?: string[]; ipAddresses?: string[] } | undefined;
    if (action === 'node') {
      const id = nameFlag('id', args.flags.get('id'), 'node id');
      const dns = args.lists.get('dns') ?? [];
      const ips = args.lists.get('ip') ?? [];
      for (const name of dns) {
        if (name.length > 253 || !DNS_PATTERN.test(name)) throw new UsageError(`--dns: ${JSON.stringify(name)} is not a DNS name`);
      }
      for (const ip of ips) {
        if (isIP(ip) === 0) throw new UsageError(`--ip: ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
      }
      const defaults = dns.length === 0 && ips.length === 0;
      subject = { file: `node-${id}`, id, dnsNames: defaults ? ['localhost'] : [...dns], ipAddresses: defaults ? ['127.0.0.1', '::1'] : [...ips] };
    } else if (action === 'client') {
      const name = nameFlag('name', args.flags.get('name'), 'client name');
      subject = { file: `client-${name}`, id: name };
    }

    // Validated: now the crypto (loaded only here, so a usage error costs nothing).
    const certs = await import('../../ops/certificates.js');
    const caPem = join(dir, 'ca.pem');
    const caKey = join(dir, 'ca.key');
    if (action === 'init') {
      mkdirSync(dir, { recursive: true });
      const files = [caPem, caKey];
      if (!force) {
        const existing = files.find((f) => existsSync(f));
        if (existing !== undefined) throw new Error(`${existing} exists; pass --force to overwrite it (and reissue every certificate it signed)`);
      }
      const ca = await certs.createCa('replikit development CA', days);
      writeAll([{ path: caPem, text: ca.certPem, secret: false }, { path: caKey, text: ca.keyPem, secret: true }], force);
      process.stdout.write(
        `wrote ${caPem} (CA certificate, valid until ${dateText(ca.certificate.notAfter)}: give it to every node and client as --tls-ca)\n` +
          `wrote ${caKey} (CA private key, mode 0600: keep it off the nodes)\n`,
      );
      return 0;
    }

    if (!existsSync(caPem) || !existsSync(caKey)) {
      const missing = !existsSync(caPem) ? caPem : caKey;
      throw new Error(`no CA: ${missing} does not exist; run \`replikit certs init --dir ${dir}\` first`);
    }
    let ca: Awaited<ReturnType<typeof certs.loadCa>>;
    try {
      ca = await certs.loadCa(readFileSync(caPem, 'utf8'), readFileSync(caKey, 'utf8'));
    } catch (err: unknown) {
      throw new Error(`cannot load the CA from ${caPem} and ${caKey} (an ECDSA P-256 certificate and its PKCS#8 key, as certs init writes): ${err instanceof Error ? err.message : String(err)}`);
    }
    const s = subject!;
    const uri = action === 'node' ? certs.nodeSpiffeId(clusterId, s.id) : certs.clientSpiffeId(clusterId, s.id);
    const pair =
      action === 'node'
        ? await certs.issueNodeCertificate(ca, clusterId, s.id, { days, dnsNames: s.dnsNames!, ipAddresses: s.ipAddresses! })
        : await certs.issueClientCertificate(ca, clusterId, s.id, { days });
    const certFile = join(dir, `${s.file}.pem`);
    const keyFile = join(dir, `${s.file}.key`);
    writeAll([{ path: certFile, text: pair.certPem, secret: false }, { path: keyFile, text: pair.keyPem, secret: true }], force);
    const notAfter = new Date(new X509Certificate(pair.certPem).validTo);
    const names = action === 'node' ? [...s.dnsNames!.map((n) => `DNS:${n}`), ...s.ipAddresses!.map((ip) => `IP:${ip}`)] : [];
    process.stdout.write(
      `wrote ${certFile} (${action} certificate, valid until ${dateText(notAfter)})\n` +
        `wrote ${keyFile} (private key, mode 0600)\n` +
        `spiffe id: ${uri}\n` +
        (names.length > 0 ? `serves as: ${names.join(', ')}\n` : ''),
    );
    if (notAfter.getTime() > ca.certificate.notAfter.getTime()) {
      process.stderr.write(`replikit certs: warning: the certificate outlives its CA (valid until ${dateText(ca.certificate.notAfter)}); it stops verifying when the CA expires\n`);
    }
    return 0;
  },
};
