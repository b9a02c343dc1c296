/**
 * Property tests: every address of each denied range, in every spelling generated here, is denied with the
 * range's rule; random public addresses outside all tables are allowed. The expected rule comes from an oracle
 * written independently of the engine (the tables of docs/policy.md#denied-ranges matched with ipaddr.js).
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { loadPolicy } from '../../src/policy/index.js';

const policy = loadPolicy('production');
const RUNS = 400;

// ------------------------------------------------------------------------------------------------ oracle

const V4_TABLE: Array<[string, string]> = [
  ['0.0.0.0/8', 'unspecified'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'private'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'special-purpose'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', 'special-purpose'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
  ['255.255.255.255/32', 'broadcast'],
];

const googleDoc = JSON.parse(readFileSync(new URL('../../data/google-ranges.json', import.meta.url), 'utf8')) as {
  prefixes: Array<{ ipv4Prefix?: string; ipv6Prefix?: string }>;
};
const GOOGLE_V4 = googleDoc.prefixes.flatMap((p) => (p.ipv4Prefix ? [ipaddr.IPv4.parseCIDR(p.ipv4Prefix)] : []));
const GOOGLE_V6 = googleDoc.prefixes.flatMap((p) => (p.ipv6Prefix ? [ipaddr.IPv6.parseCIDR(p.ipv6Prefix)] : []));

const v4Ranges = V4_TABLE.map(([cidr, rule]) => {
  const [addr, len] = ipaddr.IPv4.parseCIDR(cidr);
  const start = toInt(addr.toString());
  const size = 2 ** (32 - len);
  return { cidr, rule, len, range: ipaddr.IPv4.parseCIDR(cidr), start, end: start + size - 1 };
});

function toInt(dotted: string): number {
  return dotted.split('.').reduce((acc, p) => acc * 256 + Number(p), 0);
}
function dotted(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Rule the special-purpose IPv4 table gives `n` (most specific entry), or null. */
function v4Rule(n: number): string | null {
  const a = ipaddr.IPv4.parse(dotted(n));
  let best: (typeof v4Ranges)[number] | undefined;
  for (const r of v4Ranges) if (a.match(r.range) && (best === undefined || r.len > best.len)) best = r;
  return best?.rule ?? null;
}
function isGoogleV4(n: number): boolean {
  const a = ipaddr.IPv4.parse(dotted(n));
  return GOOGLE_V4.some((r) => a.match(r));
}

// ------------------------------------------------------------------------------------------------ spellings

type Base = 'dec' | 'oct' | 'hex' | 'HEX';
const base = fc.constantFrom<Base>('dec', 'oct', 'hex', 'HEX');

/** One inet_aton part in the given base, with optional extra leading zeros where the base allows them. */
function part(v: number, b: Base, zeros: number): string {
  switch (b) {
    case 'dec':
      return String(v);
    case 'oct':
      return `0${'0'.repeat(zeros)}${v.toString(8)}`;
    case 'hex':
      return `0x${'0'.repeat(zeros)}${v.toString(16)}`;
    case 'HEX':
      return `0X${'0'.repeat(zeros)}${v.toString(16).toUpperCase()}`;
  }
}

const partArb = fc.tuple(base, fc.nat({ max: 3 }));

/** Every inet_aton spelling of `n`: 1, 2, 3 or 4 parts, each in any base, optional trailing dot. */
function v4Spelling(n: number): fc.Arbitrary<string> {
  const a = n >>> 24;
  const b = (n >>> 16) & 255;
  const c = (n >>> 8) & 255;
  const d = n & 255;
  return fc
    .oneof(
      fc.constant(dotted(n)),
      fc.tuple(partArb).map(([[x, z]]) => part(n, x, z)),
      fc.tuple(partArb, partArb).map(([[x1, z1], [x2, z2]]) => `${part(a, x1, z1)}.${part(n & 0xffffff, x2, z2)}`),
      fc.tuple(partArb, partArb, partArb).map(([[x1, z1], [x2, z2], [x3, z3]]) => `${part(a, x1, z1)}.${part(b, x2, z2)}.${part(n & 0xffff, x3, z3)}`),
      fc
        .tuple(partArb, partArb, partArb, partArb)
        .map(([[x1, z1], [x2, z2], [x3, z3], [x4, z4]]) => `${part(a, x1, z1)}.${part(b, x2, z2)}.${part(c, x3, z3)}.${part(d, x4, z4)}`),
    )
    .chain((s) => fc.boolean().map((dot) => (dot ? `${s}.` : s)));
}

const zoneArb = fc.stringMatching(/^[a-z][a-z0-9._-]{0,10}$/);

interface V6Style {
  pad: number[];
  upper: boolean;
  compress: number;
  bracket: boolean;
  zone: string | null;
  dottedTail: boolean;
}
const v6Style: fc.Arbitrary<V6Style> = fc.record({
  pad: fc.array(fc.nat({ max: 3 }), { minLength: 8, maxLength: 8 }),
  upper: fc.boolean(),
  compress: fc.nat({ max: 8 }),
  bracket: fc.boolean(),
  zone: fc.option(zoneArb, { nil: null }),
  dottedTail: fc.boolean(),
});

/** Text of eight 16-bit groups: any padding, case, choice of zero run to compress, dotted tail, brackets, zone. */
function v6Text(g: number[], s: V6Style, allowTail = true): string {
  const tail = allowTail && s.dottedTail;
  const hexGroups = (tail ? g.slice(0, 6) : g).map((x, i) => {
    const h = x.toString(16);
    const padded = '0'.repeat(Math.min(s.pad[i]!, 4 - h.length)) + h;
    return s.upper ? padded.toUpperCase() : padded;
  });
  const tailText = tail ? `${g[6]! >>> 8}.${g[6]! & 255}.${g[7]! >>> 8}.${g[7]! & 255}` : null;
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < hexGroups.length; ) {
    if (Number.parseInt(hexGroups[i]!, 16) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < hexGroups.length && Number.parseInt(hexGroups[j]!, 16) === 0) j++;
    runs.push([i, j]);
    i = j;
  }
  const pick = s.compress % (runs.length + 1);
  let text: string;
  if (pick === runs.length) {
    text = [...hexGroups, ...(tailText ? [tailText] : [])].join(':');
  } else {
    const [i, j] = runs[pick]!;
    // "::" must stand for at least one group and the result must not have 8 groups plus "::".
    const left = hexGroups.slice(0, i).join(':');
    const right = [...hexGroups.slice(j), ...(tailText ? [tailText] : [])].join(':');
    text = `${left}::${right}`;
  }
  if (s.zone !== null) text += `%${s.zone}`;
  return s.bracket ? `[${text}]` : text;
}

function groupsOf(w: [number, number, number, number]): number[] {
  return w.flatMap((x) => [x >>> 16, x & 0xffff]);
}

/** Random address in a v6 prefix given as its first four words and length. */
function v6In(prefix: [number, number, number, number], len: number): fc.Arbitrary<number[]> {
  return fc.tuple(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff })).map((r) => {
    const out: [number, number, number, number] = [0, 0, 0, 0];
    for (let k = 0; k < 4; k++) {
      const bits = Math.max(0, Math.min(32, len - 32 * k));
      const mask = bits === 0 ? 0 : bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
      out[k] = ((prefix[k]! & mask) | (r[k]! & ~mask)) >>> 0;
    }
    return groupsOf(out);
  });
}

function decide(host: string, port = 80): { allowed: boolean; rule?: string } {
  const t = policy.parse(host, port);
  if (t.kind !== 'ip') throw new Error(`${host} parsed as a name`);
  const d = policy.evaluate(t.address, t.family, port);
  return d.allowed ? { allowed: true } : { allowed: false, rule: d.rule };
}

// ------------------------------------------------------------------------------------------------ properties

describe('every address of a denied IPv4 range, in every spelling, is denied', () => {
  for (const r of v4Ranges) {
    it(`${r.cidr} (${r.rule}) as inet_aton spellings`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: r.start, max: r.end }).chain((n) => v4Spelling(n).map((s) => [n, s] as const)),
          ([n, s]) => {
            expect(decide(s)).toEqual({ allowed: false, rule: v4Rule(n) });
          },
        ),
        { numRuns: RUNS },
      );
    });

    it(`${r.cidr} (${r.rule}) embedded in IPv6 (mapped, compatible, SIIT, NAT64, 6to4)`, () => {
      const embeddings = fc.constantFrom('mapped', 'compatible', 'siit', 'nat64', '6to4');
      fc.assert(
        fc.property(fc.integer({ min: r.start, max: r.end }), embeddings, v6Style, fc.nat({ max: 0xffff }), fc.nat({ max: 0xffffffff }), (n, kind, style, sub, low) => {
          const hi = n >>> 16;
          const lo = n & 0xffff;
          let g: number[];
          let tailOk = true;
          switch (kind) {
            case 'mapped':
              g = [0, 0, 0, 0, 0, 0xffff, hi, lo];
              break;
            case 'compatible':
              g = [0, 0, 0, 0, 0, 0, hi, lo];
              break;
            case 'siit':
              g = [0, 0, 0, 0, 0xffff, 0, hi, lo];
              break;
            case 'nat64':
              g = [0x64, 0xff9b, 0, 0, 0, 0, hi, lo];
              break;
            default:
              g = [0x2002, hi, lo, sub, low >>> 16, low & 0xffff, (low * 7) & 0xffff, (low * 13) & 0xffff];
              tailOk = false;
          }
          const text = v6Text(g, style, tailOk);
          // ::0.0.0.1 is ::1 itself, judged as IPv6 loopback before any embedding.
          const expected = kind === 'compatible' && n === 1 ? 'loopback' : v4Rule(n);
          expect(decide(text)).toEqual({ allowed: false, rule: expected });
        }),
        { numRuns: RUNS },
      );
    });
  }
});

describe('every address of a denied IPv6 range, in every spelling, is denied', () => {
  const ranges: Array<{ name: string; prefix: [number, number, number, number]; len: number; rule: string | null }> = [
    { name: '::1/128', prefix: [0, 0, 0, 1], len: 128, rule: 'loopback' },
    { name: '::/128', prefix: [0, 0, 0, 0], len: 128, rule: 'unspecified' },
    { name: 'fc00::/7', prefix: [0xfc000000, 0, 0, 0], len: 7, rule: 'private' },
    { name: 'fe80::/10', prefix: [0xfe800000, 0, 0, 0], len: 10, rule: 'link-local' },
    { name: 'fec0::/10', prefix: [0xfec00000, 0, 0, 0], len: 10, rule: 'not-global-unicast' },
    { name: 'ff00::/8', prefix: [0xff000000, 0, 0, 0], len: 8, rule: 'multicast' },
    { name: '100::/64', prefix: [0x01000000, 0, 0, 0], len: 64, rule: 'not-global-unicast' },
    { name: '0100::/8', prefix: [0x01000000, 0, 0, 0], len: 8, rule: 'not-global-unicast' },
    { name: '1000::/4', prefix: [0x10000000, 0, 0, 0], len: 4, rule: 'not-global-unicast' },
    { name: '4000::/2', prefix: [0x40000000, 0, 0, 0], len: 2, rule: 'not-global-unicast' },
    { name: '8000::/2', prefix: [0x80000000, 0, 0, 0], len: 2, rule: 'not-global-unicast' },
    { name: 'c000::/3', prefix: [0xc0000000, 0, 0, 0], len: 3, rule: 'not-global-unicast' },
    { name: '2001::/32 (Teredo)', prefix: [0x20010000, 0, 0, 0], len: 32, rule: 'special-purpose' },
    { name: '2001:2::/48', prefix: [0x20010002, 0, 0, 0], len: 48, rule: 'benchmarking' },
    { name: '2001:db8::/32', prefix: [0x20010db8, 0, 0, 0], len: 32, rule: 'documentation' },
    { name: '3fff::/20', prefix: [0x3fff0000, 0, 0, 0], len: 20, rule: 'documentation' },
    { name: '64:ff9b:1::/48', prefix: [0x0064ff9b, 0x00010000, 0, 0], len: 48, rule: 'special-purpose' },
    { name: '2001::/23', prefix: [0x20010000, 0, 0, 0], len: 23, rule: null },
  ];
  for (const r of ranges) {
    it(`${r.name} (${r.rule ?? 'denied'})`, () => {
      fc.assert(
        fc.property(v6In(r.prefix, r.len), v6Style, (g, style) => {
          const d = decide(v6Text(g, style));
          expect(d.allowed).toBe(false);
          if (r.rule !== null) expect(d.rule).toBe(r.rule);
        }),
        { numRuns: RUNS },
      );
    });
  }
});

describe('public addresses outside every table are allowed', () => {
  it('IPv4, in any spelling and IPv4-mapped', () => {
    const publicV4 = fc.nat({ max: 0xffffffff }).filter((n) => v4Rule(n) === null && !isGoogleV4(n));
    fc.assert(
      fc.property(
        publicV4.chain((n) => v4Spelling(n).map((s) => [n, s] as const)),
        v6Style,
        ([n, s], style) => {
          expect(decide(s, 443)).toEqual({ allowed: true });
          expect(decide(v6Text([0, 0, 0, 0, 0, 0xffff, n >>> 16, n & 0xffff], style), 443)).toEqual({ allowed: true });
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('IPv6 global unicast outside the special and provider tables', () => {
    const special6 = ['2001::/23', '2001:db8::/32', '3fff::/20'].map((c) => ipaddr.IPv6.parseCIDR(c));
    const publicV6 = v6In([0x20000000, 0, 0, 0], 3).filter((g) => {
      const a = new ipaddr.IPv6(g);
      if (special6.some((r) => a.match(r)) || GOOGLE_V6.some((r) => a.match(r))) return false;
      if (g[0] === 0x2002) {
        const n = ((g[1]! << 16) | g[2]!) >>> 0;
        return v4Rule(n) === null && !isGoogleV4(n);
      }
      return true;
    });
    fc.assert(
      fc.property(publicV6, v6Style, (g, style) => {
        expect(decide(v6Text(g, style, false), 443)).toEqual({ allowed: true });
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('every Google prefix is denied as provider:google, and its neighbours outside every table are allowed', () => {
    for (const [addr, len] of GOOGLE_V4) {
      const start = toInt(addr.toString());
      const end = start + 2 ** (32 - len) - 1;
      expect(decide(dotted(start), 443)).toEqual({ allowed: false, rule: 'provider:google' });
      expect(decide(dotted(end), 443)).toEqual({ allowed: false, rule: 'provider:google' });
      for (const n of [start - 1, end + 1]) {
        if (v4Rule(n) === null && !isGoogleV4(n)) expect(decide(dotted(n), 443)).toEqual({ allowed: true });
      }
    }
    for (const [addr] of GOOGLE_V6) {
      expect(decide(addr.toString(), 443)).toEqual({ allowed: false, rule: 'provider:google' });
    }
  });
});

describe('literal parsing agrees with the OS reference behaviour', () => {
  it('inet_aton spellings parse to the address ipaddr.js computes from the bytes', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 0xffffffff }).chain((n) => v4Spelling(n).map((s) => [n, s] as const)),
        ([n, s]) => {
          const t = policy.parse(s, 80);
          expect(t).toMatchObject({ kind: 'ip', family: 4, address: ipaddr.fromByteArray([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]).toString() });
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('IPv6 spellings parse to the RFC 5952 text of the same bytes', () => {
    fc.assert(
      fc.property(v6In([0, 0, 0, 0], 0), v6Style, (g, style) => {
        const t = policy.parse(v6Text(g, { ...style, zone: null }), 80);
        const a = new ipaddr.IPv6(g);
        const expected = a.isIPv4MappedAddress() ? `::ffff:${a.toIPv4Address().toString()}` : a.toRFC5952String();
        expect(t).toMatchObject({ kind: 'ip', family: 6, address: expected });
      }),
      { numRuns: RUNS },
    );
  });

  it('a decimal part with an 8 or 9 after a leading zero is rejected, never read as decimal', () => {
    fc.assert(
      fc.property(fc.nat({ max: 3 }), fc.stringMatching(/^0[0-7]*[89][0-9]*$/), (pos, bad) => {
        const parts = ['1', '2', '3', '4'];
        parts[pos] = bad;
        expect(() => policy.parse(parts.join('.'), 80)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_HOST' }));
      }),
    );
  });
});
