import { describe, expect, it } from 'vitest';
import { classifyTlsError, readTlsFiles, TlsConfigError, tlsRefusalLogger } from '../../src/ops/tls.js';
import type { LogFields } from '../../src/logging/logger.js';

const err = (code: string) => Object.assign(new Error(code), { code });

describe('TLS refusals', () => {
  it('names what an operator does about each failed handshake', () => {
    expect(classifyTlsError(err('ERR_SSL_WRONG_VERSION_NUMBER')).reason).toBe('plaintext-client');
    expect(classifyTlsError(err('ERR_SSL_HTTP_REQUEST')).reason).toBe('plaintext-client');
    expect(classifyTlsError(err('UNABLE_TO_VERIFY_LEAF_SIGNATURE')).reason).toBe('untrusted-certificate');
    expect(classifyTlsError(err('UNABLE_TO_GET_ISSUER_CERT')).reason).toBe('untrusted-certificate');
    expect(classifyTlsError(err('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE')).reason).toBe('no-client-certificate');
    expect(classifyTlsError(err('CERT_HAS_EXPIRED')).reason).toBe('certificate-expired');
    expect(classifyTlsError(err('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA')).reason).toBe('server-certificate-refused');
    expect(classifyTlsError(err('ECONNRESET')).reason).toBe('client-hung-up');
    expect(classifyTlsError(err('SOMETHING_ELSE')).reason).toBe('handshake-failed');
  });

  it('logs a burst of refusals, then counts them, and says how many were not logged', () => {
    const lines: { message: string; fields?: LogFields }[] = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (message: string, fields?: LogFields) => lines.push({ message, fields }) };
    let now = 0;
    const log = tlsRefusalLogger(logger, () => now);
    for (let i = 0; i < 25; i++) log({ remote: `127.0.0.1:${1000 + i}`, reason: 'plaintext-client', detail: 'the client did not speak TLS' });
    expect(lines).toHaveLength(10);
    now = 10_000;
    log({ remote: '127.0.0.1:2000', reason: 'plaintext-client', detail: 'the client did not speak TLS' });
    expect(lines).toHaveLength(11);
    expect(lines[10]!.message).toBe('refused a TLS connection from 127.0.0.1:2000: the client did not speak TLS');
    expect(lines[10]!.fields).toMatchObject({ suppressedSinceLastLine: 15 });
  });

  it('rejects TLS flags that cannot work, naming the flag', () => {
    expect(readTlsFiles({})).toBeUndefined();
    expect(() => readTlsFiles({ certFile: '/x.pem' })).toThrow(new TlsConfigError('--tls-cert and --tls-key go together: give both, or neither'));
    expect(() => readTlsFiles({ caFile: '/no/such/ca.pem' })).toThrow(/--tls-ca: cannot read \/no\/such\/ca.pem/);
    expect(() => readTlsFiles({ caFile: '/etc/hostname' })).toThrow(/--tls-ca: \/etc\/hostname is not a PEM file/);
  });
});
