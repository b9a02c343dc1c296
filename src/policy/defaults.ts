/**
 * The built-in production tables (docs/policy.md#denied-ranges). The special-purpose table is fixed: operators can open parts of
 * it only with an explicit `openSpecialPurpose` allow entry, never replace it. Ports, provider lists and
 * exceptions are defaults that a policy file may extend or replace.
 */
import { readFileSync } from 'node:fs';

/** A special-purpose entry: `rule: null` hands the range to the embedded IPv4 address instead of denying it. */
export interface SpecialEntry {
  readonly cidr: string;
  readonly rule: string | null;
  readonly reason: string;
}

export const SPECIAL_V4: readonly SpecialEntry[] = [
  { cidr: '0.0.0.0/8', rule: 'unspecified', reason: '"this network" (RFC 1122); 0.0.0.0 reaches the local host' },
  { cidr: '10.0.0.0/8', rule: 'private', reason: 'private network (RFC 1918)' },
  { cidr: '100.64.0.0/10', rule: 'private', reason: 'shared address space / carrier-grade NAT (RFC 6598)' },
  { cidr: '127.0.0.0/8', rule: 'loopback', reason: 'loopback (RFC 1122)' },
  { cidr: '169.254.0.0/16', rule: 'link-local', reason: 'link-local, including cloud metadata endpoints (RFC 3927)' },
  { cidr: '172.16.0.0/12', rule: 'private', reason: 'private network (RFC 1918)' },
  { cidr: '192.0.0.0/24', rule: 'special-purpose', reason: 'IETF protocol assignments (RFC 6890)' },
  { cidr: '192.0.2.0/24', rule: 'documentation', reason: 'documentation, TEST-NET-1 (RFC 5737)' },
  { cidr: '192.88.99.0/24', rule: 'special-purpose', reason: '6to4 relay anycast (RFC 7526)' },
  { cidr: '192.168.0.0/16', rule: 'private', reason: 'private network (RFC 1918)' },
  { cidr: '198.18.0.0/15', rule: 'benchmarking', reason: 'network benchmarking (RFC 2544)' },
  { cidr: '198.51.100.0/24', rule: 'documentation', reason: 'documentation, TEST-NET-2 (RFC 5737)' },
  { cidr: '203.0.113.0/24', rule: 'documentation', reason: 'documentation, TEST-NET-3 (RFC 5737)' },
  { cidr: '224.0.0.0/4', rule: 'multicast', reason: 'multicast (RFC 5771)' },
  { cidr: '240.0.0.0/4', rule: 'reserved', reason: 'reserved for future use (RFC 1112)' },
  { cidr: '255.255.255.255/32', rule: 'broadcast', reason: 'limited broadcast (RFC 919)' },
];

export const SPECIAL_V6: readonly SpecialEntry[] = [
  // Everything outside global unicast 2000::/3, in three prefixes; more specific entries below name the parts.
  { cidr: '::/3', rule: 'not-global-unicast', reason: 'outside global unicast 2000::/3' },
  { cidr: '4000::/2', rule: 'not-global-unicast', reason: 'outside global unicast 2000::/3' },
  { cidr: '8000::/1', rule: 'not-global-unicast', reason: 'outside global unicast 2000::/3' },
  { cidr: '::/128', rule: 'unspecified', reason: 'unspecified address (RFC 4291)' },
  { cidr: '::1/128', rule: 'loopback', reason: 'loopback (RFC 4291)' },
  // These four carry an IPv4 address in their last 32 bits and are judged by it.
  { cidr: '::/96', rule: null, reason: 'IPv4-compatible' },
  { cidr: '::ffff:0:0/96', rule: null, reason: 'IPv4-mapped' },
  { cidr: '::ffff:0:0:0/96', rule: null, reason: 'IPv4-translated (SIIT)' },
  { cidr: '64:ff9b::/96', rule: null, reason: 'NAT64' },
  { cidr: '64:ff9b:1::/48', rule: 'special-purpose', reason: 'local-use NAT64 (RFC 8215)' },
  { cidr: '100::/64', rule: 'not-global-unicast', reason: 'discard-only (RFC 6666)' },
  { cidr: 'fc00::/7', rule: 'private', reason: 'unique local (RFC 4193)' },
  { cidr: 'fe80::/10', rule: 'link-local', reason: 'link-local (RFC 4291)' },
  { cidr: 'fec0::/10', rule: 'not-global-unicast', reason: 'site-local, deprecated (RFC 3879)' },
  { cidr: 'ff00::/8', rule: 'multicast', reason: 'multicast (RFC 4291)' },
  { cidr: '2001::/23', rule: 'special-purpose', reason: 'IETF protocol assignments (RFC 2928)' },
  { cidr: '2001::/32', rule: 'special-purpose', reason: 'Teredo (RFC 4380)' },
  { cidr: '2001:2::/48', rule: 'benchmarking', reason: 'benchmarking (RFC 5180)' },
  { cidr: '2001:db8::/32', rule: 'documentation', reason: 'documentation (RFC 3849)' },
  { cidr: '3fff::/20', rule: 'documentation', reason: 'documentation (RFC 9637)' },
];

export const DEFAULT_DENIED_PORTS: readonly number[] = [25, 20, 21];

export const PORT_REASONS: Readonly<Record<number, string>> = {
  25: 'SMTP port 25 is blocked; use authenticated submission on 587 or 465',
  20: 'FTP data port is blocked',
  21: 'FTP control port is blocked',
};

export interface AddressException {
  readonly address: string;
  readonly ports: readonly number[];
}
export interface HostException {
  readonly host: string;
  readonly ports: readonly number[];
}
export type Exception = AddressException | HostException;

/** Google Public DNS on port 53 and Gmail's mail submission/retrieval hosts on their ports (docs/policy.md#exceptions). */
export const DEFAULT_EXCEPTIONS: readonly Exception[] = [
  { address: '8.8.8.8', ports: [53] },
  { address: '8.8.4.4', ports: [53] },
  { address: '2001:4860:4860::8888', ports: [53] },
  { address: '2001:4860:4860::8844', ports: [53] },
  { host: 'smtp.gmail.com', ports: [465, 587] },
  { host: 'pop.gmail.com', ports: [995] },
  { host: 'imap.gmail.com', ports: [993] },
];

/** Location of the vendored list, next to the package root whether running from src/ or dist/. */
export const GOOGLE_RANGES_URL = new URL('../../data/google-ranges.json', import.meta.url);

let googleCache: string[] | undefined;

/**
 * Prefixes of the vendored Google list. Read on first use (never at import), then cached for the process;
 * a missing or malformed file is a packaging error and throws.
 */
export function googlePrefixes(): string[] {
  if (googleCache === undefined) {
    const doc = JSON.parse(readFileSync(GOOGLE_RANGES_URL, 'utf8')) as unknown;
    googleCache = providerPrefixesOf(doc, 'data/google-ranges.json');
  }
  return googleCache;
}

/** Is `list` the vendored Google list itself (as returned by {@link googlePrefixes}), not an operator's list? */
export function isGooglePrefixes(list: readonly string[]): boolean {
  return googleCache !== undefined && list === googleCache;
}

/**
 * Extracts the prefixes of a provider list: Google's published shape (`{ prefixes: [{ ipv4Prefix } |
 * { ipv6Prefix }] }`), `{ prefixes: ["cidr", ...] }`, or a bare array of CIDR strings.
 */
export function providerPrefixesOf(doc: unknown, where: string): string[] {
  const list = Array.isArray(doc) ? doc : doc !== null && typeof doc === 'object' ? (doc as { prefixes?: unknown }).prefixes : undefined;
  if (!Array.isArray(list)) throw new Error(`${where}: expected an array of prefixes or an object with a "prefixes" array`);
  return list.map((p: unknown, i) => {
    if (typeof p === 'string') return p;
    if (p !== null && typeof p === 'object') {
      const o = p as { ipv4Prefix?: unknown; ipv6Prefix?: unknown };
      const v = o.ipv4Prefix ?? o.ipv6Prefix;
      if (typeof v === 'string') return v;
    }
    throw new Error(`${where}: prefixes[${i}] is neither a CIDR string nor an object with ipv4Prefix/ipv6Prefix`);
  });
}
