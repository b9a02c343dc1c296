/**
 * Fuzz of token decoding: whatever text arrives, decodeToken answers a well-formed body only for a token signed with
 * the key (never throws), and layer.attach() of anything else reports EACCES as an 'error' and admits nothing.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import { decodeToken, encodeToken, type TokenBody } from '../../src/handoff/token.js';

const RUNS = Math.max(1, Number(process.env.SOCKGUARD_FUZZ_RUNS) || 2000);
const key = Buffer.from('fuzz-key');
const valid: TokenBody = {
  app: 'app-f',
  key: '0123456789abcdef0123456789abcdef',
  scope: 'process',
  pid: 4242,
  family: 4,
  type: 'tcp',
  address: '127.0.0.1',
  port: 9,
  counters: [1, 2, 3, 4],
  unread: 0,
};
const token = encodeToken(key, valid);

/** Checks the decoder's promise for one input: undefined, or a body of exactly the documented shape. */
function judge(input: unknown, k = key): TokenBody | undefined {
  let body: TokenBody | undefined;
  expect(() => (body = decodeToken(k, input))).not.toThrow();
  if (body !== undefined) {
    expect(Object.keys(body).sort()).toEqual(Object.keys(valid).sort());
    expect(body.counters).toHaveLength(4);
    expect([4, 6]).toContain(body.family);
  }
  return body;
}

/** A valid token with one edit: a character replaced, inserted or removed, or a cut. */
const mutated = fc
  .tuple(fc.nat({ max: token.length }), fc.constantFrom('replace', 'insert', 'delete', 'cut'), fc.string({ minLength: 1, maxLength: 1 }))
  .map(([i, op, c]) => {
    if (op === 'replace') return token.slice(0, i) + c + token.slice(i + 1);
    if (op === 'insert') return token.slice(0, i) + c + token.slice(i);
    if (op === 'delete') return token.slice(0, i) + token.slice(i + 1);
    return token.slice(0, i);
  });

/** Any JSON value, signed with the key: only a body of the right shape may pass. */
const signedJunk = fc.jsonValue().map((v) => {
  const body = Buffer.from(JSON.stringify(v) ?? 'null').toString('base64url');
  return `sgd1.${body}.${encodeToken(key, valid).split('.')[2]}`;
});
const signedShapes = fc
  .record({
    app: fc.oneof(fc.string(), fc.integer()),
    key: fc.oneof(fc.constant(valid.key), fc.string()),
    scope: fc.constantFrom('process', 'broker', 'x', 1),
    pid: fc.oneof(fc.nat(), fc.double(), fc.constant(-1)),
    family: fc.constantFrom(4, 6, 0, '4'),
    type: fc.constantFrom('tcp', 'udp'),
    address: fc.string({ maxLength: 80 }),
    port: fc.oneof(fc.nat({ max: 70000 }), fc.double()),
    counters: fc.oneof(fc.array(fc.oneof(fc.nat(), fc.double()), { maxLength: 5 }), fc.constant('x')),
    unread: fc.oneof(fc.nat(), fc.constant(-1)),
  }, { requiredKeys: [] })
  .map((o) => encodeToken(key, o as unknown as TokenBody));

describe('token decoding', () => {
  test('arbitrary values and strings never decode, never throw', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.string({ maxLength: 5000 }), fc.string().map((s) => `sgd1.${s}`)), (v) => {
        expect(judge(v)).toBeUndefined();
      }),
      { numRuns: RUNS },
    );
  });

  test('a valid token with any single edit is refused (unless the edit changed nothing)', () => {
    fc.assert(
      fc.property(mutated, (t) => {
        const body = judge(t);
        if (t !== token) expect(body).toBeUndefined();
        else expect(body).toEqual(valid);
      }),
      { numRuns: RUNS },
    );
  });

  test('only a correctly shaped body passes, even when signed with the key', () => {
    fc.assert(
      fc.property(fc.oneof(signedJunk, signedShapes), (t) => {
        const body = judge(t);
        if (body !== undefined) {
          expect(typeof body.app).toBe('string');
          expect(Number.isSafeInteger(body.port) && body.port <= 65535).toBe(true);
          expect(body.counters.every((c) => Number.isSafeInteger(c) && c >= 0)).toBe(true);
        }
        // With any other key, nothing passes.
        expect(judge(t, Buffer.from('other'))).toBeUndefined();
      }),
      { numRuns: RUNS },
    );
  });

  const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: 'app-f', secret: 'fuzz-key' });
  afterAll(() => layer.close());

  test('layer.attach() of anything but a token it can use: an EACCES or EPIPE error, nothing left admitted', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutated, signedShapes, fc.string({ maxLength: 300 })), async (t) => {
        const s = layer.attach(t);
        const err = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
          s.once('error', resolve);
          s.once('connect', () => reject(new Error('attached')));
        });
        expect(['EACCES', 'EPIPE']).toContain(err.code);
        await new Promise((r) => setImmediate(r));
        expect(layer.size).toBe(0);
      }),
      { numRuns: Math.min(RUNS, 300) },
    );
  });
});
