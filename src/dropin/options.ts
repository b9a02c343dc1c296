/**
 * Option objects as Node's own APIs build them (http agents, https, tls.connect, undici's connector), split
 * into what the TCP connection takes and what TLS takes, and the argument forms of tls.connect.
 */
import type { SocketConnectOptions } from '../tcp/args.js';
import type { TlsConnectOptions } from '../tls/context.js';

/** Every option tls.connect and tls.createSecureContext read: anything else belongs to the TCP connection. */
const TLS_KEYS = new Set([
  'ca',
  'cert',
  'key',
  'pfx',
  'passphrase',
  'ciphers',
  'ecdhCurve',
  'dhparam',
  'secureOptions',
  'secureProtocol',
  'sessionIdContext',
  'sigalgs',
  'privateKeyEngine',
  'privateKeyIdentifier',
  'clientCertEngine',
  'crl',
  'honorCipherOrder',
  'minVersion',
  'maxVersion',
  'ticketKeys',
  'sessionTimeout',
  'secureContext',
  'checkServerIdentity',
  'servername',
  'session',
  'rejectUnauthorized',
  'ALPNProtocols',
  'ALPNCallback',
  'requestOCSP',
  'pskCallback',
  'enableTrace',
  'minDHSize',
  'allowPartialTrustChain',
]);

/** Splits tls.connect-style options into the connection's and TLS's. Undefined values are left out. */
export function splitTlsOptions(options: Record<string, unknown>): { net: SocketConnectOptions; tls: TlsConnectOptions } {
  const net: Record<string, unknown> = {};
  const tls: Record<string, unknown> = {};
  for (const key of Object.keys(options)) {
    const v = options[key];
    if (v === undefined) continue;
    if (TLS_KEYS.has(key)) tls[key] = v;
    else net[key] = v;
  }
  return { net: net as SocketConnectOptions, tls: tls as TlsConnectOptions };
}

/** tls.connect's forms: (options[, cb]), (port[, host][, options][, cb]). */
export function normalizeTlsArgs(args: unknown[]): [Record<string, unknown>, (() => void) | undefined] {
  let cb: (() => void) | undefined;
  if (args.length > 0 && typeof args[args.length - 1] === 'function') cb = args.pop() as () => void;
  const [a, b, c] = args;
  if (a !== null && typeof a === 'object') return [{ ...(a as object) }, cb];
  let options: Record<string, unknown> = {};
  if (b !== null && typeof b === 'object') options = { ...(b as object) };
  else if (c !== null && typeof c === 'object') options = { ...(c as object) };
  if (a !== undefined) options.port = a;
  if (typeof b === 'string') options.host = b;
  return [options, cb];
}
