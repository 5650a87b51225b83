import { describe, expect, it } from 'vitest';
import { notFound } from '../../src/errors.js';
import { toGrpcStatus } from '../../src/transport/status.js';

describe('toGrpcStatus', () => {
  it('escapes details that echo the caller’s bytes instead of throwing (a garbage keyspace name once ended the process)', () => {
    const keyspace = 'V`\u0000\u00ff\u2603\ud83d\ude00ok';
    const status = toGrpcStatus(notFound('UNKNOWN_KEYSPACE', `no keyspace ${JSON.stringify(keyspace)}`, { keyspace }));
    const value = status.metadata!.get('replikit-detail-keyspace')[0] as string;
    expect(value).toMatch(/^[\x20-\x7e]*$/);
    expect(value).toBe('V`\\u0000\\u00ff\\u2603\\ud83d\\ude00ok');
  });
});
