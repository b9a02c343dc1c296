/**
 * Resolution under the policy: vet() resolves once and evaluates every answer, verdictOf() shapes check()'s
 * verdict, createLookup() is a dns.lookup replacement answering only with allowed addresses, reverse lookups
 * reject with ENOTSUP, and development mode reports what production would deny. All resolvers are fakes.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createLookup,
  denialError,
  loadPolicy,
  lookupService,
  reverse,
  verdictOf,
  vet,
  type Family,
  type Resolver,
} from '../../src/policy/index.js';

function resolverOf(zone: Record<string, string[]>): Resolver & { calls: string[] } {
  const calls: string[] = [];
  const r = (async (name: string) => {
    calls.push(name);
    const answers = zone[name];
    if (answers === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND', hostname: name });
    return answers.map((address) => ({ address, family: (address.includes(':') ? 6 : 4) as Family }));
  }) as Resolver & { calls: string[] };
  r.calls = calls;
  return r;
}

const production = loadPolicy('production');

describe('vet', () => {
  it('IP literals never reach the resolver', async () => {
    const r = resolverOf({});
    const v = await vet(production, '0x01010101', 443, r);
    expect(v).toEqual({ target: { kind: 'ip', host: '0x01010101', address: '1.1.1.1', family: 4 }, allowed: [{ address: '1.1.1.1', family: 4 }], denied: [] });
    await vet(production, '[::1]', 80, r);
    expect(r.calls).toEqual([]);
  });

  it('localhost is denied without asking the resolver', async () => {
    const r = resolverOf({ localhost: ['93.184.216.34'] });
    const v = await vet(production, 'Foo.LOCALHOST.', 80, r);
    expect(v.nameDenied?.rule).toBe('loopback');
    expect(v.allowed).toEqual([]);
    expect(r.calls).toEqual([]);
    expect(verdictOf(v, 80)).toEqual({ allowed: false, rule: 'loopback', reason: v.nameDenied!.reason, port: 80 });
  });

  it('resolves once, keeps resolver order, deduplicates and canonicalises answers, skips denied ones', async () => {
    const r = resolverOf({ 'multi.example': ['10.0.0.1', '1.1.1.1', '2606:4700:4700:0:0:0:0:1111', '1.1.1.1', '::ffff:127.0.0.1', '1.0.0.1'] });
    const v = await vet(production, 'multi.example', 443, r);
    expect(r.calls).toEqual(['multi.example']);
    expect(v.allowed).toEqual([
      { address: '1.1.1.1', family: 4 },
      { address: '2606:4700:4700::1111', family: 6 },
      { address: '1.0.0.1', family: 4 },
    ]);
    expect(v.denied.map((d) => [d.address, d.rule])).toEqual([
      ['10.0.0.1', 'private'],
      ['::ffff:127.0.0.1', 'loopback'],
    ]);
    expect(verdictOf(v, 443)).toEqual({ allowed: true, address: '1.1.1.1', family: 4, port: 443 });
  });

  it('all denied: the verdict carries the first denied address and its rule', async () => {
    const r = resolverOf({ 'internal.example': ['192.168.1.10', 'fd00::1'] });
    const v = await vet(production, 'internal.example', 443, r);
    expect(verdictOf(v, 443)).toEqual({ allowed: false, rule: 'private', reason: '192.168.0.0/16: private network (RFC 1918)', address: '192.168.1.10', port: 443 });
    const err = denialError(v, 443);
    expect(err).toMatchObject({ code: 'EACCES', errno: -13, syscall: 'connect', address: '192.168.1.10', port: 443, rule: 'private' });
    expect(err.message).toBe(
      "connect EACCES 192.168.1.10:443 (denied: private). To allow it, use policy: 'development' or an operator policy rule " +
        '(https://github.com/sockguard/sockguard#allowing-loopback-and-private-destinations)',
    );
  });

  it('answers that are not addresses are denied, never passed on', async () => {
    const bad: Resolver = async () => [
      { address: 'localhost', family: 4 },
      { address: '999.1.1.1', family: 4 },
      { address: '1.1.1.1', family: 4 },
    ];
    const v = await vet(production, 'bad.example', 443, bad);
    expect(v.allowed).toEqual([{ address: '1.1.1.1', family: 4 }]);
    expect(v.denied.map((d) => d.rule)).toEqual(['invalid-address', 'invalid-address']);
  });

  it('an empty answer is ENOTFOUND; resolver errors pass through with their code', async () => {
    await expect(vet(production, 'empty.example', 443, async () => [])).rejects.toMatchObject({ code: 'ENOTFOUND', hostname: 'empty.example' });
    await expect(vet(production, 'missing.example', 443, resolverOf({}))).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('malformed input rejects before any resolution', async () => {
    const r = resolverOf({});
    await expect(vet(production, 'a..b', 443, r)).rejects.toMatchObject({ code: 'ERR_SOCKGUARD_INVALID_HOST' });
    await expect(vet(production, 'example.com', 0, r)).rejects.toBeInstanceOf(RangeError);
    await expect(vet(production, 42, 443, r)).rejects.toBeInstanceOf(TypeError);
    expect(r.calls).toEqual([]);
  });

  it('host exceptions apply to the name that was resolved, not to a literal or another name', async () => {
    const r = resolverOf({ 'smtp.gmail.com': ['74.125.140.108'], 'lookalike.example': ['74.125.140.108'] });
    expect(verdictOf(await vet(production, 'smtp.gmail.com', 587, r), 587).allowed).toBe(true);
    expect(verdictOf(await vet(production, 'lookalike.example', 587, r), 587)).toMatchObject({ allowed: false, rule: 'provider:google' });
    expect(verdictOf(await vet(production, '74.125.140.108', 587, r), 587)).toMatchObject({ allowed: false, rule: 'provider:google' });
    // evaluate() given a name it did not resolve is the caller's business: the layer only passes its own.
    expect(production.evaluate('74.125.140.108', 4, 587)).toMatchObject({ allowed: false, rule: 'provider:google' });
  });

  it('a resolver that answers differently on each call cannot change what was checked', async () => {
    let n = 0;
    const flip: Resolver = async () => [{ address: n++ % 2 === 0 ? '1.1.1.1' : '127.0.0.1', family: 4 }];
    const v = await vet(production, 'rebind.example', 443, flip);
    expect(n).toBe(1);
    expect(v.allowed).toEqual([{ address: '1.1.1.1', family: 4 }]);
  });
});

describe('evaluate', () => {
  it('fails closed on something that is not an address or does not match its family', () => {
    expect(production.evaluate('not-an-ip', 4, 80)).toMatchObject({ allowed: false, rule: 'invalid-address' });
    expect(production.evaluate('1.1.1.1', 6, 80)).toMatchObject({ allowed: false, rule: 'invalid-address' });
    expect(production.evaluate('::1', 4, 80)).toMatchObject({ allowed: false, rule: 'invalid-address' });
  });

  it('rejects invalid ports', () => {
    expect(() => production.evaluate('1.1.1.1', 4, 70000)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_PORT' }));
    expect(() => production.evaluate('1.1.1.1', 4, 1.5)).toThrow(RangeError);
  });

  it('publishes production denials on sockguard:policy:deny', () => {
    const seen: unknown[] = [];
    const onMessage = (m: unknown) => seen.push(m);
    diagnostics_channel.subscribe('sockguard:policy:deny', onMessage);
    try {
      production.evaluate('10.1.2.3', 4, 80);
      production.evaluate('1.1.1.1', 4, 80);
      production.evaluateName('localhost', 80);
    } finally {
      diagnostics_channel.unsubscribe('sockguard:policy:deny', onMessage);
    }
    expect(seen).toEqual([
      expect.objectContaining({ mode: 'production', address: '10.1.2.3', port: 80, rule: 'private' }),
      expect.objectContaining({ mode: 'production', name: 'localhost', port: 80, rule: 'loopback' }),
    ]);
  });
});

describe('development mode', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('allows, and reports each destination production would deny once (warning + channel)', async () => {
    const dev = loadPolicy('development');
    const warnings: Array<[string, unknown]> = [];
    vi.spyOn(process, 'emitWarning').mockImplementation(((w: string, o: unknown) => {
      warnings.push([w, o]);
    }) as typeof process.emitWarning);
    const channelSeen: unknown[] = [];
    const onMessage = (m: unknown) => channelSeen.push(m);
    diagnostics_channel.subscribe('sockguard:policy:would-deny', onMessage);
    try {
      expect(dev.evaluate('127.0.0.1', 4, 8080)).toEqual({ allowed: true });
      expect(dev.evaluate('127.0.0.1', 4, 8080)).toEqual({ allowed: true });
      expect(dev.evaluate('1.1.1.1', 4, 25)).toEqual({ allowed: true });
      expect(dev.evaluate('1.1.1.1', 4, 443)).toEqual({ allowed: true });
      expect(dev.evaluateName('localhost', 3000)).toBeNull();
      const v = await vet(dev, 'localhost', 3000, resolverOf({ localhost: ['127.0.0.1', '::1'] }));
      expect(v.allowed).toEqual([
        { address: '127.0.0.1', family: 4 },
        { address: '::1', family: 6 },
      ]);
    } finally {
      diagnostics_channel.unsubscribe('sockguard:policy:would-deny', onMessage);
    }
    expect(warnings.map(([w]) => w)).toEqual([
      'production policy would deny 127.0.0.1:8080 (rule loopback): 127.0.0.0/8: loopback (RFC 1122)',
      'production policy would deny 1.1.1.1:25 (rule port): SMTP port 25 is blocked; use authenticated submission on 587 or 465',
      expect.stringMatching(/^production policy would deny localhost:3000 \(rule loopback\)/),
      'production policy would deny localhost (127.0.0.1):3000 (rule loopback): 127.0.0.0/8: loopback (RFC 1122)',
      'production policy would deny localhost ([::1]):3000 (rule loopback): ::1/128: loopback (RFC 4291)',
    ]);
    expect(warnings[0]![1]).toEqual({ type: 'SockguardWarning', code: 'SOCKGUARD_WOULD_DENY' });
    expect(channelSeen).toHaveLength(5);
    expect(channelSeen[0]).toMatchObject({ mode: 'development', address: '127.0.0.1', port: 8080, rule: 'loopback' });
  });

  it('still rejects malformed input and non-addresses', () => {
    const dev = loadPolicy('development');
    expect(() => dev.parse('1.2.3.4.5', 80)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_HOST' }));
    expect(dev.evaluate('bogus', 4, 80)).toMatchObject({ allowed: false, rule: 'invalid-address' });
  });
});

describe('createLookup', () => {
  const zone = { 'mixed.example': ['10.0.0.1', '1.1.1.1', '2606:4700:4700::1111', '::1'], 'internal.example': ['10.0.0.1'], 'v6.example': ['2606:4700:4700::1111'] };

  function call(lookup: ReturnType<typeof createLookup>, host: unknown, options?: unknown): Promise<{ err: NodeJS.ErrnoException | null; args: unknown[] }> {
    return new Promise((resolve) => {
      const cb = (err: NodeJS.ErrnoException | null, ...args: unknown[]) => resolve({ err, args });
      if (options === undefined) (lookup as unknown as (h: unknown, cb: unknown) => void)(host, cb);
      else (lookup as unknown as (h: unknown, o: unknown, cb: unknown) => void)(host, options, cb);
    });
  }

  it('answers with the first allowed address, or all allowed with all: true', async () => {
    const lookup = createLookup(production, resolverOf(zone));
    expect(await call(lookup, 'mixed.example')).toEqual({ err: null, args: ['1.1.1.1', 4] });
    expect(await call(lookup, 'mixed.example', { all: true })).toEqual({
      err: null,
      args: [
        [
          { address: '1.1.1.1', family: 4 },
          { address: '2606:4700:4700::1111', family: 6 },
        ],
      ],
    });
  });

  it('honours family (number or option) and order', async () => {
    const lookup = createLookup(production, resolverOf(zone));
    expect(await call(lookup, 'mixed.example', 6)).toEqual({ err: null, args: ['2606:4700:4700::1111', 6] });
    expect(await call(lookup, 'mixed.example', { family: 'IPv6' })).toEqual({ err: null, args: ['2606:4700:4700::1111', 6] });
    expect(await call(lookup, 'mixed.example', { all: true, order: 'ipv6first' })).toMatchObject({ args: [[{ family: 6 }, { family: 4 }]] });
    expect((await call(lookup, 'v6.example', { family: 4 })).err).toMatchObject({ code: 'ENOTFOUND' });
  });

  it('calls back EACCES with the rule when every address is denied', async () => {
    const lookup = createLookup(production, resolverOf(zone));
    const { err } = await call(lookup, 'internal.example');
    expect(err).toMatchObject({ code: 'EACCES', rule: 'private', hostname: 'internal.example', syscall: 'lookup' });
    const local = await call(lookup, 'localhost', { all: true });
    expect(local.err).toMatchObject({ code: 'EACCES', rule: 'loopback' });
    expect((await call(lookup, '127.0.0.1')).err).toMatchObject({ code: 'EACCES', rule: 'loopback' });
    expect(await call(lookup, '0x01010101', { all: true })).toEqual({ err: null, args: [[{ address: '1.1.1.1', family: 4 }]] });
  });

  it('without a port fails closed on port-scoped exceptions; a port option applies them', async () => {
    const lookup = createLookup(production, resolverOf({ 'dns.google': ['8.8.8.8'] }));
    expect((await call(lookup, 'dns.google')).err).toMatchObject({ code: 'EACCES', rule: 'provider:google' });
    expect(await call(lookup, 'dns.google', { port: 53 })).toEqual({ err: null, args: ['8.8.8.8', 4] });
    expect((await call(lookup, '1.1.1.1', { port: 25 })).err).toMatchObject({ code: 'EACCES', rule: 'port' });
  });

  it('invalid hosts call back the coded error; bad arguments throw like dns.lookup', async () => {
    const lookup = createLookup(production, resolverOf(zone));
    expect((await call(lookup, '1.2.3.4.5')).err).toMatchObject({ code: 'ERR_SOCKGUARD_INVALID_HOST' });
    expect(() => (lookup as unknown as (h: unknown, cb: unknown) => void)(42, () => {})).toThrow(TypeError);
    expect(() => (lookup as unknown as (h: unknown, o: unknown) => void)('a.example', {})).toThrow(TypeError);
    expect(() => (lookup as unknown as (h: unknown, o: unknown, cb: unknown) => void)('a.example', { family: 5 }, () => {})).toThrow(TypeError);
  });

  it('supports util.promisify like dns.lookup', async () => {
    const lookup = promisify(createLookup(production, resolverOf(zone))) as unknown as (h: string, o?: unknown) => Promise<unknown>;
    await expect(lookup('mixed.example')).resolves.toEqual({ address: '1.1.1.1', family: 4 });
    await expect(lookup('mixed.example', { all: true })).resolves.toHaveLength(2);
    await expect(lookup('internal.example')).rejects.toMatchObject({ code: 'EACCES' });
  });
});

describe('reverse lookups', () => {
  it('reject with ENOTSUP', async () => {
    await expect(reverse('8.8.8.8')).rejects.toMatchObject({ code: 'ENOTSUP', syscall: 'getHostByAddr' });
    await expect(lookupService('8.8.8.8', 53)).rejects.toMatchObject({ code: 'ENOTSUP', syscall: 'getnameinfo' });
  });

  it('call back ENOTSUP in callback style without an unhandled rejection', async () => {
    const err = await new Promise<Error>((resolve) => {
      void reverse('8.8.8.8', (e: Error) => resolve(e));
    });
    expect(err).toMatchObject({ code: 'ENOTSUP' });
  });
});
