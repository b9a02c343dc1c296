/**
 * The vendored Google range list: it parses, keeps the published structure (syncToken, creationTime, prefixes
 * of ipv4Prefix/ipv6Prefix), every prefix is a valid network prefix, and the policy denies each of them.
 */
import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { loadPolicy } from '../../src/policy/index.js';

const text = readFileSync(new URL('../../data/google-ranges.json', import.meta.url), 'utf8');
const doc = JSON.parse(text) as { syncToken: unknown; creationTime: unknown; prefixes: Array<Record<string, unknown>> };

describe('data/google-ranges.json', () => {
  it('has the structure of the published goog.json', () => {
    expect(Object.keys(doc)).toEqual(['syncToken', 'creationTime', 'prefixes']);
    expect(doc.syncToken).toMatch(/^\d+$/);
    expect(typeof doc.creationTime).toBe('string');
    expect(Number.isNaN(Date.parse(doc.creationTime as string))).toBe(false);
    expect(Array.isArray(doc.prefixes)).toBe(true);
    expect(doc.prefixes.length).toBeGreaterThan(50);
    for (const p of doc.prefixes) {
      const keys = Object.keys(p);
      expect(keys.length === 1 && (keys[0] === 'ipv4Prefix' || keys[0] === 'ipv6Prefix')).toBe(true);
    }
  });

  it('every prefix is a valid CIDR of its family with no host bits set', () => {
    for (const p of doc.prefixes) {
      const v4 = p.ipv4Prefix as string | undefined;
      const cidr = (v4 ?? p.ipv6Prefix) as string;
      expect(ipaddr.isValidCIDR(cidr), cidr).toBe(true);
      const [addr] = ipaddr.parseCIDR(cidr);
      expect(addr.kind()).toBe(v4 !== undefined ? 'ipv4' : 'ipv6');
      const net = v4 !== undefined ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr);
      expect(net.toString(), cidr).toBe(addr.toString());
    }
  });

  it('contains the Google Public DNS ranges, and none of the Google Cloud customer ranges', () => {
    const v4 = doc.prefixes.map((p) => p.ipv4Prefix).filter(Boolean);
    expect(v4).toContain('8.8.8.0/24');
    expect(v4).toContain('8.8.4.0/24');
  });

  it('every prefix is denied as provider:google by the production policy (first address, port 443)', () => {
    const policy = loadPolicy();
    for (const p of doc.prefixes) {
      const cidr = (p.ipv4Prefix ?? p.ipv6Prefix) as string;
      const [addr] = ipaddr.parseCIDR(cidr);
      const d = policy.evaluate(addr.toString(), addr.kind() === 'ipv4' ? 4 : 6, 443);
      expect(d, cidr).toMatchObject({ allowed: false, rule: 'provider:google' });
    }
  });

  it('the refresh script validates the vendored file', async () => {
    const script = new URL('../../scripts/refresh-google-ranges.mjs', import.meta.url).href;
    const { validateGoogleRanges } = (await import(script)) as { validateGoogleRanges: (d: unknown) => void };
    expect(() => validateGoogleRanges(doc)).not.toThrow();
    expect(() => validateGoogleRanges({ ...doc, prefixes: [{ ipv4Prefix: '8.8.8.1/24' }] })).toThrow(/host bits/);
    expect(() => validateGoogleRanges({ ...doc, syncToken: undefined })).toThrow(/syncToken/);
  });
});
