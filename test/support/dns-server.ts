/**
 * A tiny authoritative DNS server for tests: UDP on 127.0.0.1, port 0, answering SRV, A and AAAA
 * queries from a table that tests change while it runs. Answers follow RFC 1035 (header, the
 * question echoed, answers with full names: no compression) with TTL 0, so that resolvers cache
 * nothing; an unknown name gets NXDOMAIN, a known name without records of the asked type an empty
 * NOERROR answer (what node:dns reports as ENOTFOUND and ENODATA). Neither carries an SOA record,
 * so negative answers are not cached either.
 *
 * Limits, being a test tool: UDP only (no TCP), so an answer must fit the 512 bytes of RFC 1035
 * (the server throws rather than truncate); one question per query; class IN.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { promises as dns } from 'node:dns';
import { isIPv4, isIPv6 } from 'node:net';

export interface SrvAnswer {
  readonly target: string;
  readonly port: number;
  readonly priority?: number;
  readonly weight?: number;
}

/** What one name answers. */
export interface DnsRecords {
  readonly srv?: readonly SrvAnswer[];
  readonly a?: readonly string[];
  readonly aaaa?: readonly string[];
}

const TYPE = { A: 1, AAAA: 28, SRV: 33 } as const;
const CLASS_IN = 1;
const RCODE = { NOERROR: 0, FORMERR: 1, NXDOMAIN: 3 } as const;
const MAX_UDP_BYTES = 512;

export interface DnsQuery {
  readonly name: string;
  /** 'SRV', 'A', 'AAAA', or the type's number for others. */
  readonly type: string;
}

export class DnsTestServer {
  readonly #socket: Socket;
  readonly #records = new Map<string, DnsRecords>();
  /** Every query received, in order. */
  readonly queries: DnsQuery[] = [];
  /** 127.0.0.1:PORT, for `Resolver#setServers`. */
  readonly address: string;

  private constructor(socket: Socket, address: string) {
    this.#socket = socket;
    this.address = address;
  }

  /** Starts a server; `silent` makes one that reads queries and never answers (a dead DNS server). */
  static async start(options: { silent?: boolean } = {}): Promise<DnsTestServer> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const server = new DnsTestServer(socket, `127.0.0.1:${socket.address().port}`);
    socket.on('message', (message, from) => server.#onMessage(message, from, options.silent === true));
    return server;
  }

  /** Sets what `name` answers (replacing what it answered before). */
  set(name: string, records: DnsRecords): void {
    this.#records.set(normalize(name), records);
  }

  /** Makes `name` unknown again (NXDOMAIN). */
  delete(name: string): void {
    this.#records.delete(normalize(name));
  }

  /** A fresh node:dns resolver pointed at this server. */
  resolver(options: { timeout?: number; tries?: number } = {}): dns.Resolver {
    const resolver = new dns.Resolver(options);
    resolver.setServers([this.address]);
    return resolver;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }

  #onMessage(message: Buffer, from: RemoteInfo, silent: boolean): void {
    let question: { name: string; type: number; end: number } | undefined;
    try {
      question = parseQuestion(message);
    } catch {
      question = undefined;
    }
    if (question !== undefined) this.queries.push({ name: question.name, type: typeName(question.type) });
    if (silent) return;
    const reply = question === undefined ? errorReply(message, RCODE.FORMERR) : this.#answer(message, question);
    if (reply.length > MAX_UDP_BYTES) throw new Error(`DnsTestServer: an answer of ${reply.length} bytes does not fit one UDP datagram of ${MAX_UDP_BYTES}`);
    this.#socket.send(reply, from.port, from.address);
  }

  #answer(query: Buffer, question: { name: string; type: number; end: number }): Buffer {
    const records = this.#records.get(normalize(question.name));
    const classIn = query.readUInt16BE(question.end - 2) === CLASS_IN;
    const answers: Buffer[] = [];
    if (records !== undefined && classIn) {
      if (question.type === TYPE.SRV) {
        for (const srv of records.srv ?? []) {
          const rdata = Buffer.concat([u16(srv.priority ?? 0), u16(srv.weight ?? 0), u16(srv.port), encodeName(srv.target)]);
          answers.push(resourceRecord(question.name, TYPE.SRV, rdata));
        }
      } else if (question.type === TYPE.A) {
        for (const ip of records.a ?? []) answers.push(resourceRecord(question.name, TYPE.A, ipv4Bytes(ip)));
      } else if (question.type === TYPE.AAAA) {
        for (const ip of records.aaaa ?? []) answers.push(resourceRecord(question.name, TYPE.AAAA, ipv6Bytes(ip)));
      }
    }
    const rcode = records === undefined ? RCODE.NXDOMAIN : RCODE.NOERROR;
    const header = Buffer.alloc(12);
    header.writeUInt16BE(query.readUInt16BE(0), 0); // the query's id
    // QR=1 (a response), the query's opcode, AA=1 (authoritative), the query's RD, RA=0, RCODE.
    const opcode = (query[2]! >> 3) & 0x0f;
    const rd = query[2]! & 0x01;
    header[2] = 0x80 | (opcode << 3) | 0x04 | rd;
    header[3] = rcode;
    header.writeUInt16BE(1, 4); // QDCOUNT
    header.writeUInt16BE(answers.length, 6); // ANCOUNT
    return Buffer.concat([header, query.subarray(12, question.end), ...answers]);
  }
}

/** Reads the one question of a query: its name (labels joined by dots), type, and where it ends. */
function parseQuestion(message: Buffer): { name: string; type: number; end: number } {
  if (message.length < 12) throw new Error('short header');
  if ((message[2]! & 0x80) !== 0) throw new Error('not a query');
  if (message.readUInt16BE(4) !== 1) throw new Error('not exactly one question');
  const labels: string[] = [];
  let at = 12;
  for (;;) {
    const length = message[at];
    if (length === undefined) throw new Error('name runs past the message');
    if (length === 0) break;
    if (length > 63) throw new Error('compressed or oversized label in a question');
    labels.push(message.toString('latin1', at + 1, at + 1 + length));
    at += 1 + length;
  }
  at += 1;
  if (at + 4 > message.length) throw new Error('question runs past the message');
  return { name: labels.join('.'), type: message.readUInt16BE(at), end: at + 4 };
}

function errorReply(query: Buffer, rcode: number): Buffer {
  const header = Buffer.alloc(12);
  if (query.length >= 2) header.writeUInt16BE(query.readUInt16BE(0), 0);
  header[2] = 0x80;
  header[3] = rcode;
  return header;
}

function resourceRecord(name: string, type: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(CLASS_IN, 2);
  fixed.writeUInt32BE(0, 4); // TTL 0: nothing is cached, so a test's change is seen at once
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([encodeName(name), fixed, rdata]);
}

/** A name as RFC 1035 labels, uncompressed. */
function encodeName(name: string): Buffer {
  const labels = normalizeKeepCase(name).split('.').filter((l) => l !== '');
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = Buffer.from(label, 'latin1');
    if (bytes.length > 63) throw new Error(`DnsTestServer: label ${JSON.stringify(label)} is longer than 63 bytes`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function u16(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value, 0);
  return b;
}

function ipv4Bytes(ip: string): Buffer {
  if (!isIPv4(ip)) throw new Error(`DnsTestServer: ${JSON.stringify(ip)} is not an IPv4 address`);
  return Buffer.from(ip.split('.').map(Number));
}

function ipv6Bytes(ip: string): Buffer {
  if (!isIPv6(ip) || ip.includes('.')) throw new Error(`DnsTestServer: ${JSON.stringify(ip)} is not an IPv6 address of hex groups`);
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const groups = (s: string | undefined) => (s === undefined || s === '' ? [] : s.split(':'));
  const left = groups(head);
  const right = groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = Buffer.alloc(16);
  all.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
  return bytes;
}

function typeName(type: number): string {
  return type === TYPE.SRV ? 'SRV' : type === TYPE.A ? 'A' : type === TYPE.AAAA ? 'AAAA' : String(type);
}

function normalizeKeepCase(name: string): string {
  return name.replace(/\.$/, '');
}

function normalize(name: string): string {
  return normalizeKeepCase(name).toLowerCase();
}
