/**
 * Descriptor tokens: what `socket.detach()` returns and `layer.attach()` takes. A token names a parked connection
 * and says what the attaching side needs to resume it (family, type, peer, counters, how many unread bytes wait
 * with it). It is signed with the app's key (HMAC-SHA256) and bound to its appId, so only a layer of the same app
 * holding the same key can use it; the parked entry it names is taken once, so it attaches once.
 *
 * Wire form: `sgd1.<body>.<mac>`, body = base64url(JSON), mac = base64url(HMAC-SHA256(key, "sgd1." + body)).
 * The MAC is checked before the body is parsed: text that is not signed by the key is never interpreted.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const PREFIX = 'sgd1.';
/** Longest token accepted: far beyond any real one (an IPv6 peer, a broker path), short enough to bound work. */
export const TOKEN_MAX = 4096;
const SHAPE = /^sgd1\.([A-Za-z0-9_-]{1,4000})\.([A-Za-z0-9_-]{43})$/;

/** Where the connection is parked: this process's table (reachable from its worker threads) or the broker. */
export type ParkScope = 'process' | 'broker';

export interface TokenBody {
  /** The app the connection belongs to. */
  app: string;
  /** Key of the parked entry (random, 128 bits, hex). */
  key: string;
  scope: ParkScope;
  /** The process whose table holds it (scope 'process'). */
  pid: number;
  family: 4 | 6;
  type: 'tcp';
  address: string;
  port: number;
  /** bytesWritten, bytesRead, sendCalls, recvCalls when it was detached. */
  counters: [number, number, number, number];
  /** Bytes read before the detach and not consumed, parked with the descriptor. */
  unread: number;
}

function mac(key: Buffer, signed: string): Buffer {
  return createHmac('sha256', key).update(signed).digest();
}

export function encodeToken(key: Buffer, body: TokenBody): string {
  const b = Buffer.from(JSON.stringify(body)).toString('base64url');
  const signed = PREFIX + b;
  return `${signed}.${mac(key, signed).toString('base64url')}`;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * The body of a token signed with `key`, or undefined for anything else (not a token, a bad signature, a body
 * that is not one this version writes). Never throws.
 */
export function decodeToken(key: Buffer, token: unknown): TokenBody | undefined {
  if (typeof token !== 'string' || token.length > TOKEN_MAX) return undefined;
  const m = SHAPE.exec(token);
  if (m === null) return undefined;
  // Compared as text: base64 leaves slack bits in the last character, so decoding first would let several
  // spellings of one MAC pass, and a token must have exactly one.
  const given = Buffer.from(m[2]!, 'latin1');
  const want = Buffer.from(mac(key, PREFIX + m[1]!).toString('base64url'), 'latin1');
  if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return undefined;
  const t = o as Record<string, unknown>;
  const c = t.counters;
  if (
    typeof t.app !== 'string' ||
    typeof t.key !== 'string' ||
    !/^[0-9a-f]{32}$/.test(t.key) ||
    (t.scope !== 'process' && t.scope !== 'broker') ||
    !isCount(t.pid) ||
    (t.family !== 4 && t.family !== 6) ||
    t.type !== 'tcp' ||
    typeof t.address !== 'string' ||
    t.address.length > 63 ||
    !isCount(t.port) ||
    t.port > 65535 ||
    !Array.isArray(c) ||
    c.length !== 4 ||
    !c.every(isCount) ||
    !isCount(t.unread)
  ) {
    return undefined;
  }
  return {
    app: t.app,
    key: t.key,
    scope: t.scope,
    pid: t.pid,
    family: t.family,
    type: 'tcp',
    address: t.address,
    port: t.port,
    counters: [c[0], c[1], c[2], c[3]] as [number, number, number, number],
    unread: t.unread,
  };
}
