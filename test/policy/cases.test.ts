/**
 * Adversarial cases for the production policy (docs/policy.md#spellings): every spelling family, range boundaries on both
 * sides, the exceptions on right and wrong ports, and malformed input. Each row asserts the exact outcome:
 * 'allow', the denying rule, or the error code of the invalid-argument error.
 */
import { describe, expect, it } from 'vitest';
import { loadPolicy, vet, type Family, type Resolver } from '../../src/policy/index.js';

type Outcome = 'allow' | 'HOST' | 'PORT' | (string & {});
type Row = readonly [host: unknown, port: unknown, outcome: Outcome];

/** Names the fake resolver knows; every other name is ENOTFOUND. No real DNS is ever used. */
const ZONE: Record<string, string[]> = {
  'public.example': ['93.184.216.34'],
  'v6only.example': ['2606:4700:4700::1111'],
  'rebind.example': ['127.0.0.1'],
  'metadata.example': ['169.254.169.254'],
  'mixed.example': ['10.0.0.1', '1.1.1.1'],
  'alldenied.example': ['10.0.0.1', '::1'],
  'mapped.example': ['::ffff:127.0.0.1'],
  'google.example': ['142.250.1.1'],
  'smtp.gmail.com': ['74.125.140.108', '2a00:1450:400c:c0a::6c'],
  'pop.gmail.com': ['74.125.140.109'],
  'imap.gmail.com': ['74.125.140.108'],
  'evil.example': ['74.125.140.108'],
  'poisoned.example': ['127.0.0.1'],
};

let resolverCalls: string[] = [];
const fakeResolver: Resolver = async (name) => {
  resolverCalls.push(name);
  const answers = name === 'smtp-poisoned.gmail.com' ? undefined : ZONE[name];
  if (answers === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  return answers.map((address) => ({ address, family: (address.includes(':') ? 6 : 4) as Family }));
};

const policy = loadPolicy('production');

async function outcome(host: unknown, port: unknown): Promise<string> {
  try {
    const v = await vet(policy, host, port, fakeResolver);
    if (v.allowed.length > 0) return 'allow';
    return v.nameDenied?.rule ?? v.denied[0]!.rule;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ERR_SOCKGUARD_INVALID_HOST') {
      expect(err).toBeInstanceOf(TypeError);
      return 'HOST';
    }
    if (code === 'ERR_SOCKGUARD_INVALID_PORT') {
      expect(err instanceof TypeError || err instanceof RangeError).toBe(true);
      return 'PORT';
    }
    throw err;
  }
}

const inetAton: Row[] = [
  ['127.0.0.1', 80, 'loopback'],
  ['2130706433', 80, 'loopback'],
  ['0x7f000001', 80, 'loopback'],
  ['0X7F000001', 80, 'loopback'],
  ['017700000001', 80, 'loopback'],
  ['0177.0.0.1', 80, 'loopback'],
  ['127.1', 80, 'loopback'],
  ['127.0.1', 80, 'loopback'],
  ['0x7f.1', 80, 'loopback'],
  ['0x7f.0.0.1', 80, 'loopback'],
  ['0x7F.0x0.0x0.0x1', 80, 'loopback'],
  ['0177.1', 80, 'loopback'],
  ['0000000177.0.0.1', 80, 'loopback'],
  ['127.000.000.001', 80, 'loopback'],
  ['127.0.0.01', 80, 'loopback'],
  ['0x00007f.1', 80, 'loopback'],
  ['127.255.255.255', 80, 'loopback'],
  ['127.16777215', 80, 'loopback'],
  ['0', 80, 'unspecified'],
  ['0.0.0.0', 80, 'unspecified'],
  ['0x0', 80, 'unspecified'],
  ['00', 80, 'unspecified'],
  ['0.0', 80, 'unspecified'],
  ['0.1.2.3', 80, 'unspecified'],
  ['0.255.255.255', 80, 'unspecified'],
  ['167772161', 80, 'private'],
  ['012.0.0.1', 80, 'private'],
  ['0xa.0.0.1', 80, 'private'],
  ['0xac100001', 80, 'private'],
  ['3232235777', 80, 'private'],
  ['0xc0a80101', 80, 'private'],
  ['192.168.257', 80, 'private'],
  ['169.254.169.254', 80, 'link-local'],
  ['0xa9fea9fe', 80, 'link-local'],
  ['2852039166', 80, 'link-local'],
  ['169.254.43518', 80, 'link-local'],
  ['0251.0376.0251.0376', 80, 'link-local'],
  ['0xa9.0xfe.0xa9.0xfe', 80, 'link-local'],
  ['4294967295', 80, 'broadcast'],
  ['0xffffffff', 80, 'broadcast'],
  ['0xe0000001', 80, 'multicast'],
  ['16843009', 443, 'allow'],
  ['0x01010101', 443, 'allow'],
  ['1.1.257', 443, 'allow'],
  ['1.65793', 443, 'allow'],
];

const trailingDotsAndNames: Row[] = [
  ['127.0.0.1.', 80, 'loopback'],
  ['127.1.', 80, 'loopback'],
  ['0x7f000001.', 80, 'loopback'],
  ['2130706433.', 80, 'loopback'],
  ['1.1.1.1.', 443, 'allow'],
  ['127.0.0.1..', 80, 'HOST'],
  ['localhost', 80, 'loopback'],
  ['LOCALHOST', 80, 'loopback'],
  ['localhost.', 80, 'loopback'],
  ['LocalHost.', 80, 'loopback'],
  ['foo.localhost', 80, 'loopback'],
  ['a.b.localhost.', 80, 'loopback'],
  ['FOO.LOCALHOST', 80, 'loopback'],
  ['xn--nxasmq6b.localhost', 80, 'loopback'],
  ['localhost..', 80, 'HOST'],
  ['public.example', 443, 'allow'],
  ['Public.Example.', 443, 'allow'],
  ['v6only.example', 443, 'allow'],
  ['rebind.example', 80, 'loopback'],
  ['REBIND.example.', 80, 'loopback'],
  ['metadata.example', 80, 'link-local'],
  ['mixed.example', 80, 'allow'],
  ['alldenied.example', 80, 'private'],
  ['mapped.example', 80, 'loopback'],
  ['google.example', 443, 'provider:google'],
  ['public.example', 25, 'port'],
];

const ipv4Ranges: Row[] = [
  ['10.0.0.1', 80, 'private'],
  ['10.255.255.255', 80, 'private'],
  ['9.255.255.255', 80, 'allow'],
  ['11.0.0.0', 80, 'allow'],
  ['100.64.0.0', 80, 'private'],
  ['100.127.255.255', 80, 'private'],
  ['100.63.255.255', 80, 'allow'],
  ['100.128.0.0', 80, 'allow'],
  ['126.255.255.255', 80, 'allow'],
  ['128.0.0.0', 80, 'allow'],
  ['169.254.0.0', 80, 'link-local'],
  ['169.254.255.255', 80, 'link-local'],
  ['169.253.255.255', 80, 'allow'],
  ['169.255.0.0', 80, 'allow'],
  ['172.16.0.0', 80, 'private'],
  ['172.31.255.255', 80, 'private'],
  ['172.15.255.255', 80, 'allow'],
  ['172.32.0.0', 80, 'allow'],
  ['192.0.0.0', 80, 'special-purpose'],
  ['192.0.0.255', 80, 'special-purpose'],
  ['191.255.255.255', 80, 'allow'],
  ['192.0.1.0', 80, 'allow'],
  ['192.0.2.0', 80, 'documentation'],
  ['192.0.2.255', 80, 'documentation'],
  ['192.0.3.0', 80, 'allow'],
  ['192.88.99.0', 80, 'special-purpose'],
  ['192.88.99.255', 80, 'special-purpose'],
  ['192.88.98.255', 80, 'allow'],
  ['192.88.100.0', 80, 'allow'],
  ['192.168.0.0', 80, 'private'],
  ['192.168.255.255', 80, 'private'],
  ['192.167.255.255', 80, 'allow'],
  ['192.169.0.0', 80, 'allow'],
  ['198.18.0.0', 80, 'benchmarking'],
  ['198.19.255.255', 80, 'benchmarking'],
  ['198.17.255.255', 80, 'allow'],
  ['198.20.0.0', 80, 'allow'],
  ['198.51.100.0', 80, 'documentation'],
  ['198.51.100.255', 80, 'documentation'],
  ['198.51.99.255', 80, 'allow'],
  ['198.51.101.0', 80, 'allow'],
  ['203.0.113.0', 80, 'documentation'],
  ['203.0.113.255', 80, 'documentation'],
  ['203.0.112.255', 80, 'allow'],
  ['203.0.114.0', 80, 'allow'],
  ['224.0.0.0', 80, 'multicast'],
  ['239.255.255.255', 80, 'multicast'],
  ['223.255.255.255', 80, 'allow'],
  ['240.0.0.0', 80, 'reserved'],
  ['254.255.255.255', 80, 'reserved'],
  ['255.255.255.254', 80, 'reserved'],
  ['255.255.255.255', 80, 'broadcast'],
  ['1.0.0.0', 80, 'allow'],
  ['1.1.1.1', 443, 'allow'],
  ['93.184.216.34', 443, 'allow'],
];

const ipv6Forms: Row[] = [
  ['::1', 80, 'loopback'],
  ['0:0:0:0:0:0:0:1', 80, 'loopback'],
  ['0000:0000:0000:0000:0000:0000:0000:0001', 80, 'loopback'],
  ['::0:1', 80, 'loopback'],
  ['::0001', 80, 'loopback'],
  ['[::1]', 80, 'loopback'],
  ['::1%lo', 80, 'loopback'],
  ['[::1%lo]', 80, 'loopback'],
  ['::0.0.0.1', 80, 'loopback'],
  ['::', 80, 'unspecified'],
  ['0::0', 80, 'unspecified'],
  ['[::]', 80, 'unspecified'],
  ['::0.0.0.0', 80, 'unspecified'],
  ['fe80::1', 80, 'link-local'],
  ['FE80::1', 80, 'link-local'],
  ['fe80::1%eth0', 80, 'link-local'],
  ['fe80::1%en-0', 80, 'link-local'],
  ['fe80::1%eth0.100', 80, 'link-local'],
  ['[fe80::1%eth0]', 80, 'link-local'],
  ['[fe80::1%en-0]', 80, 'link-local'],
  ['fe80::1%25eth0', 80, 'link-local'],
  ['fe80::1%1', 80, 'link-local'],
  ['fe80:0000:0000:0000:0000:0000:0000:0001%wg_0', 80, 'link-local'],
  ['febf:ffff::1', 80, 'link-local'],
  ['fec0::1', 80, 'not-global-unicast'],
  ['fc00::1', 80, 'private'],
  ['fd12:3456:789a::1', 80, 'private'],
  ['FDFF:FFFF::1', 80, 'private'],
  ['fbff:ffff::1', 80, 'not-global-unicast'],
  ['ff02::1', 80, 'multicast'],
  ['ff02::1%eth0', 80, 'multicast'],
  ['FF05::2', 80, 'multicast'],
  ['ff00::', 80, 'multicast'],
  ['1::1', 80, 'not-global-unicast'],
  ['100::1', 80, 'not-global-unicast'],
  ['100::ffff:ffff:ffff:ffff', 80, 'not-global-unicast'],
  ['4000::1', 80, 'not-global-unicast'],
  ['e000::1', 80, 'not-global-unicast'],
  ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 80, 'not-global-unicast'],
  ['4000::', 80, 'not-global-unicast'],
  ['2000::', 443, 'allow'],
  ['3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 443, 'allow'],
  ['2001::1', 80, 'special-purpose'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 80, 'special-purpose'],
  ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', 80, 'special-purpose'],
  ['2001:100::1', 80, 'special-purpose'],
  ['2001:200::1', 443, 'allow'],
  ['2001:2::1', 80, 'benchmarking'],
  ['2001:db8::1', 80, 'documentation'],
  ['2001:DB8::1', 80, 'documentation'],
  ['2001:0db8:0000:0000:0000:0000:0000:0001', 80, 'documentation'],
  ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 80, 'documentation'],
  ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', 443, 'allow'],
  ['2001:db9::', 443, 'allow'],
  ['3fff::1', 80, 'documentation'],
  ['3fff:fff:ffff::1', 80, 'documentation'],
  ['3fff:1000::', 443, 'allow'],
  ['3ffe:ffff::1', 443, 'allow'],
  ['2606:4700:4700::1111', 443, 'allow'],
  ['2606:4700:4700:0:0:0:0:1111', 443, 'allow'],
  ['[2606:4700:4700::1111]', 443, 'allow'],
  ['2606:4700:4700::1111%eth0', 443, 'allow'],
  ['2A03:2880::1', 443, 'allow'],
  ['2001:4860::1', 443, 'provider:google'],
  ['2a00:1450:4001::1', 443, 'provider:google'],
  ['2607:f8b0::1', 443, 'provider:google'],
  ['2404:6800:4000::1', 443, 'provider:google'],
];

const embeddings: Row[] = [
  // IPv4-compatible ::/96
  ['::2', 80, 'unspecified'],
  ['::7f00:1', 80, 'loopback'],
  ['::127.0.0.1', 80, 'loopback'],
  ['0:0:0:0:0:0:127.0.0.1', 80, 'loopback'],
  ['::a00:1', 80, 'private'],
  ['::10.0.0.1', 80, 'private'],
  ['::a9fe:a9fe', 80, 'link-local'],
  ['::ffff:ffff', 80, 'broadcast'],
  // IPv4-mapped ::ffff:0:0/96, dotted and hex
  ['::ffff:127.0.0.1', 80, 'loopback'],
  ['::FFFF:127.0.0.1', 80, 'loopback'],
  ['::ffff:7f00:1', 80, 'loopback'],
  ['::ffff:7F00:0001', 80, 'loopback'],
  ['0:0:0:0:0:ffff:7f00:1', 80, 'loopback'],
  ['0:0:0:0:0:FFFF:127.0.0.1', 80, 'loopback'],
  ['0000:0000:0000:0000:0000:ffff:127.0.0.1', 80, 'loopback'],
  ['[::ffff:127.0.0.1]', 80, 'loopback'],
  ['::ffff:127.0.0.1%eth0', 80, 'loopback'],
  ['::ffff:169.254.169.254', 80, 'link-local'],
  ['::ffff:a9fe:a9fe', 80, 'link-local'],
  ['::ffff:10.0.0.1', 80, 'private'],
  ['::ffff:192.168.0.1', 80, 'private'],
  ['::ffff:100.64.0.1', 80, 'private'],
  ['::ffff:0.0.0.0', 80, 'unspecified'],
  ['::ffff:0:0', 80, 'unspecified'],
  ['::ffff:255.255.255.255', 80, 'broadcast'],
  ['::ffff:224.0.0.1', 80, 'multicast'],
  ['::ffff:192.0.2.1', 80, 'documentation'],
  ['::ffff:1.1.1.1', 443, 'allow'],
  ['::ffff:101:101', 443, 'allow'],
  ['::ffff:34.1.2.3', 443, 'provider:google'],
  ['::ffff:1.1.1.1', 25, 'port'],
  // SIIT ::ffff:0:0:0/96
  ['::ffff:0:7f00:1', 80, 'loopback'],
  ['::ffff:0:127.0.0.1', 80, 'loopback'],
  ['::ffff:0:a00:1', 80, 'private'],
  ['0:0:0:0:ffff:0:a9fe:a9fe', 80, 'link-local'],
  ['::ffff:0:1.1.1.1', 443, 'allow'],
  // NAT64 64:ff9b::/96 and local-use 64:ff9b:1::/48
  ['64:ff9b::7f00:1', 80, 'loopback'],
  ['64:ff9b::127.0.0.1', 80, 'loopback'],
  ['64:FF9B::7F00:1', 80, 'loopback'],
  ['64:ff9b::a9fe:a9fe', 80, 'link-local'],
  ['64:ff9b::192.168.0.1', 80, 'private'],
  ['64:ff9b::1.1.1.1', 443, 'allow'],
  ['64:ff9b::808:808', 53, 'allow'],
  ['64:ff9b::808:808', 443, 'provider:google'],
  ['64:ff9b:1::1', 80, 'special-purpose'],
  ['64:ff9b:1::101:101', 80, 'special-purpose'],
  ['64:ff9b:1:ffff:ffff:ffff:ffff:ffff', 80, 'special-purpose'],
  ['64:ff9b:2::1', 80, 'not-global-unicast'],
  ['64:ff9b:0:0:1::1', 80, 'not-global-unicast'],
  // 6to4 2002::/16, IPv4 in bits 16-47
  ['2002:7f00:1::', 80, 'loopback'],
  ['2002:7f00:0001::1', 80, 'loopback'],
  ['2002:7f00:1:ffff:ffff:ffff:ffff:ffff', 80, 'loopback'],
  ['2002:a00:1::1', 80, 'private'],
  ['2002:a9fe:a9fe::', 80, 'link-local'],
  ['2002:c0a8:101::1', 80, 'private'],
  ['2002:e000:1::', 80, 'multicast'],
  ['2002::', 80, 'unspecified'],
  ['2002:101:101::1', 443, 'allow'],
  ['2002:808:808::', 443, 'provider:google'],
];

const exceptionsAndPorts: Row[] = [
  ['8.8.8.8', 53, 'allow'],
  ['8.8.4.4', 53, 'allow'],
  ['8.8.8.8', 443, 'provider:google'],
  ['8.8.8.8', 853, 'provider:google'],
  ['8.8.4.4', 80, 'provider:google'],
  ['8.8.8.9', 53, 'provider:google'],
  ['8.8.8.8', 25, 'provider:google'],
  ['134744072', 53, 'allow'],
  ['0x8080808', 53, 'allow'],
  ['010.010.010.010', 53, 'allow'],
  ['::ffff:8.8.8.8', 53, 'allow'],
  ['::ffff:808:808', 53, 'allow'],
  ['[::ffff:8.8.8.8]', 53, 'allow'],
  ['::ffff:8.8.8.8', 443, 'provider:google'],
  ['::ffff:8.8.4.4', 53, 'allow'],
  ['2001:4860:4860::8888', 53, 'allow'],
  ['2001:4860:4860::8844', 53, 'allow'],
  ['2001:4860:4860:0:0:0:0:8888', 53, 'allow'],
  ['[2001:4860:4860::8888]', 53, 'allow'],
  ['2001:4860:4860::8888', 443, 'provider:google'],
  ['2001:4860:4860::8889', 53, 'provider:google'],
  ['smtp.gmail.com', 465, 'allow'],
  ['smtp.gmail.com', 587, 'allow'],
  ['SMTP.GMAIL.COM.', 587, 'allow'],
  ['smtp.gmail.com', 25, 'provider:google'],
  ['smtp.gmail.com', 443, 'provider:google'],
  ['smtp.gmail.com', 993, 'provider:google'],
  ['pop.gmail.com', 995, 'allow'],
  ['pop.gmail.com', 993, 'provider:google'],
  ['pop.gmail.com', 465, 'provider:google'],
  ['imap.gmail.com', 993, 'allow'],
  ['imap.gmail.com', 995, 'provider:google'],
  ['evil.example', 465, 'provider:google'],
  ['74.125.140.108', 465, 'provider:google'],
  ['74.125.140.108', 587, 'provider:google'],
  ['1.1.1.1', 25, 'port'],
  ['1.1.1.1', 20, 'port'],
  ['1.1.1.1', 21, 'port'],
  ['1.1.1.1', 22, 'allow'],
  ['1.1.1.1', 24, 'allow'],
  ['1.1.1.1', 26, 'allow'],
  ['1.1.1.1', 19, 'allow'],
  ['2606:4700:4700::1111', 21, 'port'],
  ['127.0.0.1', 25, 'loopback'],
  ['1.1.1.1', 1, 'allow'],
  ['1.1.1.1', 65535, 'allow'],
  ['1.1.1.1', '443', 'allow'],
  ['1.1.1.1', '25', 'port'],
];

const malformed: Row[] = [
  ['256.0.0.1', 80, 'HOST'],
  ['1.2.3.256', 80, 'HOST'],
  ['1.2.3.4.5', 80, 'HOST'],
  ['1..2.3', 80, 'HOST'],
  ['.1.2.3', 80, 'HOST'],
  ['1.2.3.4..', 80, 'HOST'],
  ['08.0.0.1', 80, 'HOST'],
  ['09', 80, 'HOST'],
  ['0189', 80, 'HOST'],
  ['0x7g.0.0.1', 80, 'HOST'],
  ['0x', 80, 'HOST'],
  ['0x.1', 80, 'HOST'],
  ['4294967296', 80, 'HOST'],
  ['0x100000000', 80, 'HOST'],
  ['99999999999999999999', 80, 'HOST'],
  ['1.16777216', 80, 'HOST'],
  ['1.2.65536', 80, 'HOST'],
  ['1.2.3.0x100', 80, 'HOST'],
  ['example.123', 80, 'HOST'],
  ['１２７.0.0.1', 80, 'HOST'],
  ['127.0.0.１', 80, 'HOST'],
  ['١٢٧.0.0.1', 80, 'HOST'],
  ['127.٠.0.1', 80, 'HOST'],
  [' 127.0.0.1', 80, 'HOST'],
  ['127.0.0.1 ', 80, 'HOST'],
  ['127.0.0.1\t', 80, 'HOST'],
  ['127.0.0.1\n', 80, 'HOST'],
  ['127.0.0 .1', 80, 'HOST'],
  ['127.0.0.1/8', 80, 'HOST'],
  ['127.0.0.1:80', 80, 'HOST'],
  ['-1', 80, 'HOST'],
  ['+127.0.0.1', 80, 'HOST'],
  ['127.0.0.1%eth0', 80, 'HOST'],
  ['[127.0.0.1]', 80, 'HOST'],
  ['[localhost]', 80, 'HOST'],
  ['', 80, 'HOST'],
  ['.', 80, 'HOST'],
  ['..', 80, 'HOST'],
  ['a..b', 80, 'HOST'],
  ['-a.example', 80, 'HOST'],
  ['a-.example', 80, 'HOST'],
  ['a b.example', 80, 'HOST'],
  [`${'a'.repeat(64)}.example`, 80, 'HOST'],
  [`${'a.'.repeat(127)}ab`, 80, 'HOST'],
  ['é.example', 80, 'HOST'],
  ['a.example/x', 80, 'HOST'],
  ['user@a.example', 80, 'HOST'],
  ['a.example:80', 80, 'HOST'],
  ['::1::', 80, 'HOST'],
  ['[::1', 80, 'HOST'],
  ['::1]', 80, 'HOST'],
  ['[[::1]]', 80, 'HOST'],
  [':::1', 80, 'HOST'],
  [':1', 80, 'HOST'],
  ['1:', 80, 'HOST'],
  ['1::2::3', 80, 'HOST'],
  ['1:2:3:4:5:6:7:8:9', 80, 'HOST'],
  ['1:2:3:4:5:6:7:8::', 80, 'HOST'],
  ['::1:2:3:4:5:6:7:8', 80, 'HOST'],
  ['1:2:3:4:5:6:7', 80, 'HOST'],
  ['12345::1', 80, 'HOST'],
  ['g::1', 80, 'HOST'],
  ['::ffff:0177.0.0.1', 80, 'HOST'],
  ['::ffff:127.0.0.01', 80, 'HOST'],
  ['::ffff:127.1', 80, 'HOST'],
  ['::ffff:127.0.0.256', 80, 'HOST'],
  ['::ffff:1.2.3.4.5', 80, 'HOST'],
  ['::ffff:0x7f.0.0.1', 80, 'HOST'],
  ['::1.2.3.4:5', 80, 'HOST'],
  ['1:2:3:4:5:6:7:1.2.3.4', 80, 'HOST'],
  ['::1%', 80, 'HOST'],
  ['::1%eth 0', 80, 'HOST'],
  ['fe80::1%eth0/1', 80, 'HOST'],
  ['fe80::1%eth0%1', 80, 'HOST'],
  ['[::1]:80', 80, 'HOST'],
  ['::1/128', 80, 'HOST'],
  ['::１', 80, 'HOST'],
  ['[]', 80, 'HOST'],
  [' ::1', 80, 'HOST'],
  [123, 80, 'HOST'],
  [null, 80, 'HOST'],
  [undefined, 80, 'HOST'],
  [{ toString: () => '1.1.1.1' }, 80, 'HOST'],
  ['1.1.1.1', 0, 'PORT'],
  ['1.1.1.1', -1, 'PORT'],
  ['1.1.1.1', 65536, 'PORT'],
  ['1.1.1.1', 1.5, 'PORT'],
  ['1.1.1.1', Number.NaN, 'PORT'],
  ['1.1.1.1', Number.POSITIVE_INFINITY, 'PORT'],
  ['1.1.1.1', '80a', 'PORT'],
  ['1.1.1.1', ' 80', 'PORT'],
  ['1.1.1.1', '', 'PORT'],
  ['1.1.1.1', '0x50', 'PORT'],
  ['1.1.1.1', null, 'PORT'],
  ['1.1.1.1', undefined, 'PORT'],
  ['1.1.1.1', 80n, 'PORT'],
  ['localhost', 0, 'PORT'],
];

const families: Array<[string, Row[]]> = [
  ['inet_aton spellings', inetAton],
  ['trailing dots, case and names', trailingDotsAndNames],
  ['IPv4 ranges and their neighbours', ipv4Ranges],
  ['IPv6 spellings and ranges', ipv6Forms],
  ['embedded IPv4', embeddings],
  ['exceptions and ports', exceptionsAndPorts],
  ['malformed input', malformed],
];

describe('production policy: adversarial cases', () => {
  const total = families.reduce((n, [, rows]) => n + rows.length, 0);
  it(`has at least 200 cases (${total})`, () => {
    expect(total).toBeGreaterThanOrEqual(200);
  });

  for (const [family, rows] of families) {
    describe(family, () => {
      it.each(rows.map((r) => [typeof r[0] === 'string' ? JSON.stringify(r[0]) : String(r[0]), ...r] as const))(
        '%s port %s',
        async (_label, host, port, expected) => {
          resolverCalls = [];
          expect(await outcome(host, port)).toBe(expected);
          // IP literals and malformed input never reach the resolver.
          let kind: string | undefined;
          try {
            kind = policy.parse(host, 1).kind;
          } catch {
            kind = undefined;
          }
          if (kind !== 'name') expect(resolverCalls).toEqual([]);
        },
      );
    });
  }
});

describe('canonical addresses', () => {
  it.each([
    ['0x7f000001', '127.0.0.1', 4],
    ['2130706433', '127.0.0.1', 4],
    ['0177.0.0.1', '127.0.0.1', 4],
    ['127.1', '127.0.0.1', 4],
    ['1.1.1.1.', '1.1.1.1', 4],
    ['[::1]', '::1', 6],
    ['0:0:0:0:0:0:0:1', '::1', 6],
    ['::FFFF:7F00:1', '::ffff:127.0.0.1', 6],
    ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 6],
    ['2606:4700:4700::1111%eth0', '2606:4700:4700::1111', 6],
    ['fe80::1%eth0', 'fe80::1%eth0', 6],
    ['[FE80::0001%en-0]', 'fe80::1%en-0', 6],
    ['ff02::1%eth0.100', 'ff02::1%eth0.100', 6],
    ['ff05::1%eth0', 'ff05::1', 6],
  ] as const)('%s -> %s', (host, address, family) => {
    const t = policy.parse(host, 80);
    expect(t).toEqual({ kind: 'ip', host, address, family });
  });

  it('normalises names', () => {
    expect(policy.parse('WWW.Example.COM.', 443)).toEqual({ kind: 'name', host: 'WWW.Example.COM.', name: 'www.example.com' });
    expect(policy.parse('under_score.example', 443)).toEqual({ kind: 'name', host: 'under_score.example', name: 'under_score.example' });
  });
});
