/**
 * TLS options as tls.connect takes them, and the native client contexts they turn into. A context is made once
 * per distinct set of trust, identity and protocol settings and shared by every connection that uses it (as
 * Node shares a SecureContext), so a connection costs no certificate parsing.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { codedError, codes, describeValue, invalidOption } from '../errors.js';
import type { NativeBinding, TlsContextHandle } from '../core/native.js';

/** The options of `connect({ tls })`: the subset of tls.connect's that the native TLS path implements. */
export interface TlsConnectOptions {
  /** SNI and the name the certificate must match. @default the connect host, unless it is an IP address */
  servername?: string;
  /** Trusted roots (PEM). @default Node's bundled roots plus NODE_EXTRA_CA_CERTS */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client certificate chain (PEM), with its `key` (PEM) and the key's `passphrase`. */
  cert?: string | Buffer | Array<string | Buffer>;
  key?: string | Buffer | Array<string | Buffer>;
  passphrase?: string;
  /** Refuse a peer whose certificate does not verify or does not match the name. @default true */
  rejectUnauthorized?: boolean;
  /** Checks the name against the certificate; returns an Error to refuse. @default tls.checkServerIdentity */
  checkServerIdentity?: (hostname: string, cert: tls.PeerCertificate) => Error | undefined;
  /** ALPN protocols in order of preference (strings, or the wire form as one Buffer). */
  ALPNProtocols?: string[] | Buffer[] | Uint8Array[] | Uint8Array;
  /** A session from an earlier connection's 'session' event or getSession(), to resume. */
  session?: Buffer;
  minVersion?: tls.SecureVersion;
  maxVersion?: tls.SecureVersion;
  /** OpenSSL cipher list, TLS 1.3 suites included, as tls.connect takes it. @default tls.DEFAULT_CIPHERS */
  ciphers?: string;
  /**
   * `'native'`: TLS runs in sockguard's core (the default where the runtime provides OpenSSL to addons, as
   * Node does). `'node'`: the runtime's own tls module over the sockguard socket (`tls.connect({ socket })`),
   * which also takes every other tls.connect option. `'auto'` (default) picks native when it can, and node
   * when the options ask for something only Node's tls implements.
   */
  engine?: 'auto' | 'native' | 'node';
}

/** The options of `layer.upgradeTls(socket, options)`: those of `connect({ tls })`, and tls.connect's own. */
export interface UpgradeTlsOptions extends TlsConnectOptions {
  /** The name the certificate is checked against when there is no `servername` (no SNI is sent for it). @default 'localhost' */
  host?: string;
  /** As tls.connect: whether the TLS socket stays writable after the peer's end of stream. @default false */
  allowHalfOpen?: boolean;
}

/** Options the native path implements; any other tls.connect option selects the node engine under 'auto'. */
const NATIVE_KEYS = new Set([
  'servername',
  'ca',
  'cert',
  'key',
  'passphrase',
  'rejectUnauthorized',
  'checkServerIdentity',
  'ALPNProtocols',
  'session',
  'minVersion',
  'maxVersion',
  'ciphers',
  'engine',
]);

const VERSIONS: Record<string, number> = { TLSv1: 0x301, 'TLSv1.1': 0x302, 'TLSv1.2': 0x303, 'TLSv1.3': 0x304 };

/** What a native TLS connection needs, derived once from the options. */
export interface TlsParams {
  context: TlsContextHandle;
  /** SNI (null for an IP address). */
  sni: string | null;
  /** The name checkServerIdentity is asked about. */
  hostname: string;
  alpn: Uint8Array | null;
  session: Buffer | null;
  rejectUnauthorized: boolean;
  checkServerIdentity: (hostname: string, cert: tls.PeerCertificate) => Error | undefined;
}

/** The first option the native path does not implement, or undefined. */
export function unsupportedKey(options: object): string | undefined {
  for (const key of Object.keys(options)) {
    if (!NATIVE_KEYS.has(key) && (options as Record<string, unknown>)[key] !== undefined) return key;
  }
  return undefined;
}

export function validateEngine(value: unknown): 'auto' | 'native' | 'node' {
  if (value === undefined) return 'auto';
  if (value === 'auto' || value === 'native' || value === 'node') return value;
  throw invalidOption('tls.engine', `must be 'auto', 'native' or 'node'. Received ${describeValue(value)}`);
}

function pemText(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
  if (Array.isArray(value)) return value.map((v, i) => pemText(v, `${name}[${i}]`) ?? '').join('\n');
  throw invalidOption(`tls.${name}`, `must be a string, Buffer or an array of them. Received ${describeValue(value)}`);
}

function version(value: unknown, name: string, dflt: string): number {
  const v = value ?? dflt;
  const n = typeof v === 'string' ? VERSIONS[v] : undefined;
  if (n === undefined) throw invalidOption(`tls.${name}`, `must be one of ${Object.keys(VERSIONS).join(', ')}. Received ${describeValue(value)}`);
  return n;
}

/** ALPN protocols in the wire form (length-prefixed), as tls.connect converts them. */
function alpnWire(value: unknown): Uint8Array | null {
  if (value === undefined || value === null) return null;
  if (value instanceof Uint8Array && !Array.isArray(value)) return value.byteLength > 0 ? value : null;
  if (!Array.isArray(value)) throw invalidOption('tls.ALPNProtocols', `must be an array of strings or Buffers. Received ${describeValue(value)}`);
  const parts: Buffer[] = [];
  for (let i = 0; i < value.length; i++) {
    const p = value[i];
    const b = typeof p === 'string' ? Buffer.from(p) : p instanceof Uint8Array ? Buffer.from(p) : undefined;
    if (b === undefined || b.length === 0 || b.length > 255) {
      throw invalidOption(`tls.ALPNProtocols[${i}]`, `must be a non-empty string or Buffer of at most 255 bytes. Received ${describeValue(p)}`);
    }
    parts.push(Buffer.from([b.length]), b);
  }
  return parts.length ? Buffer.concat(parts) : null;
}

let defaultRoots: string | undefined;
/** Node's default trust: its bundled roots, plus the file NODE_EXTRA_CA_CERTS names (read once, as Node does). */
function roots(): string {
  if (defaultRoots !== undefined) return defaultRoots;
  let pem = tls.rootCertificates.join('\n');
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      pem += '\n' + readFileSync(extra, 'latin1');
    } catch {
      // Node warns once about an unreadable file at startup and goes on with its own roots; so does this.
    }
  }
  return (defaultRoots = pem);
}

const CACHE_MAX = 16;
const contexts = new Map<string, TlsContextHandle>();

function contextFor(nat: NativeBinding, o: TlsConnectOptions): TlsContextHandle {
  const ca = pemText(o.ca, 'ca');
  const cert = pemText(o.cert, 'cert');
  const key = pemText(o.key, 'key');
  if (o.passphrase !== undefined && typeof o.passphrase !== 'string') {
    throw invalidOption('tls.passphrase', `must be a string. Received ${describeValue(o.passphrase)}`);
  }
  if (o.ciphers !== undefined && typeof o.ciphers !== 'string') {
    throw invalidOption('tls.ciphers', `must be a string. Received ${describeValue(o.ciphers)}`);
  }
  // As tls.connect: TLS 1.3 suites are the TLS_ entries of the list; a list without any leaves TLS 1.3 out.
  const all = (o.ciphers ?? tls.DEFAULT_CIPHERS).split(':').filter((c) => c !== '');
  const suites = all.filter((c) => c.startsWith('TLS_')).join(':');
  const list = all.filter((c) => !c.startsWith('TLS_')).join(':');
  if (suites === '' && list === '') throw invalidOption('tls.ciphers', `names no cipher. Received ${describeValue(o.ciphers)}`);
  const minVersion = version(o.minVersion, 'minVersion', tls.DEFAULT_MIN_VERSION);
  let maxVersion = version(o.maxVersion, 'maxVersion', tls.DEFAULT_MAX_VERSION);
  if (suites === '' && maxVersion > 0x303) maxVersion = 0x303;
  const cacheKey = [ca ?? '', cert ?? '', key ?? '', o.passphrase ?? '', o.ciphers ?? '', minVersion, maxVersion].join('\u0000');
  const hit = contexts.get(cacheKey);
  if (hit !== undefined) {
    contexts.delete(cacheKey);
    contexts.set(cacheKey, hit);
    return hit;
  }
  const made = nat.tls_context(ca ?? roots(), cert ?? null, key ?? null, o.passphrase ?? null, list || null, suites || null, minVersion, maxVersion);
  if (typeof made === 'string') throw codedError(Error, codes.TLS_CONTEXT, `Cannot create the TLS context: ${made}`);
  contexts.set(cacheKey, made);
  if (contexts.size > CACHE_MAX) contexts.delete(contexts.keys().next().value as string);
  return made;
}

/** Checks the options and builds what a native connection needs. Throws coded errors for bad options. */
export function tlsParams(nat: NativeBinding, o: TlsConnectOptions, host: string): TlsParams {
  if (o.servername !== undefined && typeof o.servername !== 'string') {
    throw invalidOption('tls.servername', `must be a string. Received ${describeValue(o.servername)}`);
  }
  if (o.rejectUnauthorized !== undefined && typeof o.rejectUnauthorized !== 'boolean') {
    throw invalidOption('tls.rejectUnauthorized', `must be a boolean. Received ${describeValue(o.rejectUnauthorized)}`);
  }
  if (o.checkServerIdentity !== undefined && typeof o.checkServerIdentity !== 'function') {
    throw invalidOption('tls.checkServerIdentity', `must be a function. Received ${describeValue(o.checkServerIdentity)}`);
  }
  if (o.session !== undefined && o.session !== null && !(o.session instanceof Uint8Array)) {
    throw invalidOption('tls.session', `must be a Buffer. Received ${describeValue(o.session)}`);
  }
  const hostname = o.servername || host;
  return {
    context: contextFor(nat, o),
    // Node sends no SNI for an IP address; neither does this.
    sni: hostname && isIP(hostname) === 0 ? hostname : null,
    hostname,
    alpn: alpnWire(o.ALPNProtocols),
    session: o.session ? Buffer.from(o.session) : null,
    rejectUnauthorized: o.rejectUnauthorized !== false,
    checkServerIdentity: o.checkServerIdentity ?? tls.checkServerIdentity,
  };
}
