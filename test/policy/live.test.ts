/**
 * The policy through real connections: listeners on every local address see zero connections from denied
 * spellings through `layer.connect()`, and a resolver that answers differently on each call cannot steer a
 * connection to a denied address. Every connection attempt targets this host's own addresses (loopback and
 * the addresses of its interfaces); nothing leaves the machine.
 */
import net from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import type { Family, Resolver } from '../../src/policy/index.js';

interface Listener {
  server: net.Server;
  /** An address that reaches the listener directly (for flush markers). */
  host: string;
  /** Connections accepted so far, flush markers excepted. */
  readonly accepted: number;
  port: number;
  close(): Promise<void>;
}

/** The accepted connections of each listener, as "address port" of their remote end. */
const remotes = new WeakMap<Listener, string[]>();

/** "address port" of a TCP endpoint, IPv4-mapped addresses written as IPv4, so both ends spell it alike. */
const endpoint = (address: string | undefined, port: number | undefined) => `${(address ?? '').replace(/^::ffff:/, '')} ${port}`;

async function listen(host: string, port = 0, ipv6Only = false): Promise<Listener> {
  const seen: string[] = [];
  const server = net.createServer();
  const sockets = new Set<net.Socket>();
  server.on('connection', (c) => {
    seen.push(endpoint(c.remoteAddress, c.remotePort));
    sockets.add(c);
    c.on('error', () => {});
    c.on('close', () => sockets.delete(c));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only }, () => resolve());
  });
  const l: Listener = {
    server,
    host: host === '::' ? '127.0.0.1' : host,
    get accepted() {
      return seen.length;
    },
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const c of sockets) c.destroy();
        server.close(() => resolve());
      }),
  };
  remotes.set(l, seen);
  return l;
}

/** Resolves once `l` has accepted the connection whose remote end is `local`, and removes it from the count if `forget`. */
function acceptedFrom(l: Listener, local: string, forget: boolean): Promise<void> {
  const seen = remotes.get(l)!;
  return new Promise((resolve) => {
    const check = (): boolean => {
      const i = seen.indexOf(local);
      if (i < 0) return false;
      if (forget) seen.splice(i, 1);
      l.server.off('connection', check);
      resolve();
      return true;
    };
    // The listener's own 'connection' handler was added first, so `seen` is up to date when this one runs.
    if (!check()) l.server.on('connection', check);
  });
}

/** Connects with plain net and resolves with the local end once connected. */
function plainConnect(host: string, port: number): Promise<{ s: net.Socket; local: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.once('error', reject);
    s.once('connect', () => resolve({ s, local: endpoint(s.localAddress, s.localPort) }));
  });
}

/**
 * Resolves once every connection made to `l` before this call has been accepted: a marker connection from
 * plain net goes in last and is awaited at the listener. A listening socket accepts in the order handshakes
 * completed, and on loopback a handshake completes while the connecting side sends it, so a connection from
 * an attempt that has already settled is queued ahead of the marker. Tests use it to show that nothing
 * arrived, without guessing a delay. The marker is not counted in `accepted`.
 */
async function flushed(l: Listener): Promise<void> {
  const { s, local } = await plainConnect(l.host, l.port);
  try {
    await acceptedFrom(l, local, true);
  } finally {
    s.destroy();
  }
}

/** Resolves with the error a connect attempt ends in, or 'connected'. */
function outcome(s: net.Socket | import('../../src/index.js').Socket): Promise<(Error & { code?: string; rule?: string }) | 'connected'> {
  return new Promise((resolve) => {
    s.once('error', (e: Error) => resolve(e));
    s.once('connect', () => {
      resolve('connected');
      s.destroy();
    });
  });
}

function v4Spellings(a: string): string[] {
  const [p0, p1, p2, p3] = a.split('.').map(Number) as [number, number, number, number];
  const n = ((p0 << 24) | (p1 << 16) | (p2 << 8) | p3) >>> 0;
  const hex = (x: number) => `0x${x.toString(16)}`;
  const oct = (x: number) => `0${x.toString(8)}`;
  const hi = p0 * 256 + p1;
  const lo = p2 * 256 + p3;
  return [
    a,
    `${a}.`,
    String(n),
    hex(n),
    hex(n).toUpperCase().replace('0X', '0X'),
    oct(n),
    [p0, p1, p2, p3].map(oct).join('.'),
    [p0, p1, p2, p3].map(hex).join('.'),
    `${p0}.${(p1 << 16) | lo}`,
    `${p0}.${p1}.${lo}`,
    `${hex(p0)}.${(p1 << 16) | lo}`,
    `::ffff:${a}`,
    `[::ffff:${a}]`,
    `::ffff:${hi.toString(16)}:${lo.toString(16)}`,
    `0:0:0:0:0:FFFF:${a}`,
    `::${a}`,
    `::ffff:0:${a}`,
    `64:ff9b::${a}`,
    `2002:${hi.toString(16)}:${lo.toString(16)}::1`,
  ];
}

function v6Spellings(a: string, zone: string | undefined): string[] {
  const groups = expand(a);
  const z = zone === undefined ? '' : `%${zone}`;
  const out = [a + z, `[${a}${z}]`, groups.join(':') + z, groups.map((g) => g.padStart(4, '0')).join(':').toUpperCase() + z];
  if (zone === undefined) out.push(`${a}%lo`, `${a}%en-0`, `${a}%eth0.100`);
  return out;
}

function expand(a: string): string[] {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  if (tail === undefined) return h;
  const t = tail === '' ? [] : tail.split(':');
  return [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
}

describe('live: denied spellings never reach a local listener', () => {
  let wildcard: Listener;
  let layer: SocketLayer;
  const targets: string[] = [];

  beforeAll(async () => {
    // One dual-stack listener on every address of this host (IPv4 via mapped addresses), so a connection to
    // any local address on this port, however spelt, is counted.
    wildcard = await listen('::');
    layer = new SocketLayer({ policy: 'production', idleTimeoutMs: 0 });
    const v4 = new Set<string>(['127.0.0.1', '127.0.0.2', '0.0.0.0']);
    const v6 = new Map<string, string | undefined>([
      ['::1', undefined],
      ['::', undefined],
    ]);
    for (const [ifname, addrs] of Object.entries(os.networkInterfaces())) {
      for (const a of addrs ?? []) {
        if (a.family === 'IPv4') v4.add(a.address);
        else v6.set(a.address.split('%')[0]!, a.address.startsWith('fe80') ? ifname : undefined);
      }
    }
    for (const a of v4) targets.push(...v4Spellings(a));
    for (const [a, zone] of v6) targets.push(...v6Spellings(a, zone));
    targets.push('0', '0x0', '00', 'localhost', 'LOCALHOST.', 'foo.localhost');
  });

  afterAll(async () => {
    await layer?.close();
    await wildcard?.close();
  });

  it('the listener is reachable (control: plain net connects and is accepted)', async () => {
    const before = wildcard.accepted;
    const { s, local } = await plainConnect('127.0.0.1', wildcard.port);
    try {
      await acceptedFrom(wildcard, local, false);
    } finally {
      s.destroy();
    }
    expect(wildcard.accepted).toBe(before + 1);
  });

  it('every denied spelling of every local address fails with EACCES and a rule, and nothing arrives', async () => {
    expect(targets.length).toBeGreaterThan(40);
    const before = wildcard.accepted;
    const results = await Promise.all(
      targets.map(async (host) => {
        const s = layer.connect({ host, port: wildcard.port });
        return [host, await outcome(s)] as const;
      }),
    );
    for (const [host, r] of results) {
      expect(r, host).not.toBe('connected');
      expect((r as Error & { code?: string }).code, host).toBe('EACCES');
      expect(typeof (r as { rule?: string }).rule, host).toBe('string');
    }
    await flushed(wildcard);
    expect(wildcard.accepted).toBe(before);
  });

  it('check() agrees with connect() for every spelling', async () => {
    for (const host of targets) {
      const v = await layer.check(host, wildcard.port);
      expect(v.allowed, host).toBe(false);
    }
  });

  it('an operator rule opening 127.0.0.0/8 lets exactly those through', async () => {
    const open = new SocketLayer({ policy: { version: 1, allow: [{ cidr: '127.0.0.0/8', openSpecialPurpose: true }] }, idleTimeoutMs: 0 });
    const before = wildcard.accepted;
    try {
      expect(await outcome(open.connect({ host: '0x7f000001', port: wildcard.port }))).toBe('connected');
      const denied = await outcome(open.connect({ host: '::1', port: wildcard.port }));
      expect(denied).toMatchObject({ code: 'EACCES', rule: 'loopback' });
      await flushed(wildcard);
      expect(wildcard.accepted).toBe(before + 1);
    } finally {
      await open.close();
    }
  });
});

describe('live: a rebinding resolver cannot steer a connection to a denied address', () => {
  let allowedL: Listener;
  let deniedL: Listener;
  let port: number;
  // Only 127.0.0.1 is opened; 127.0.0.2 stays denied (loopback). Both listen on the same port.
  const policy = { version: 1, allow: [{ cidr: '127.0.0.1/32', openSpecialPurpose: true }] };

  beforeAll(async () => {
    // The port is free on 127.0.0.1 but may be taken on 127.0.0.2 (by any process on this host): take another.
    for (let attempt = 0; ; attempt++) {
      allowedL = await listen('127.0.0.1');
      port = allowedL.port;
      try {
        deniedL = await listen('127.0.0.2', port);
        return;
      } catch (e) {
        await allowedL.close();
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 9) throw e;
      }
    }
  });
  afterAll(async () => {
    await allowedL?.close();
    await deniedL?.close();
  });

  function flipping(first: string, then: string): Resolver & { calls: number } {
    const r = (async () => {
      const address = r.calls++ === 0 ? first : then;
      return [{ address, family: 4 as Family }];
    }) as unknown as Resolver & { calls: number };
    r.calls = 0;
    return r;
  }

  it('allowed first answer: connects to it, resolves once, the denied address sees nothing', async () => {
    const resolver = flipping('127.0.0.1', '127.0.0.2');
    const layer = new SocketLayer({ policy, resolver, idleTimeoutMs: 0 });
    const allowedBefore = allowedL.accepted;
    const deniedBefore = deniedL.accepted;
    try {
      for (let i = 0; i < 5; i++) {
        const r = flipping('127.0.0.1', '127.0.0.2');
        const l2 = new SocketLayer({ policy, resolver: r, idleTimeoutMs: 0 });
        try {
          expect(await outcome(l2.connect({ host: 'rebind.example', port }))).toBe('connected');
          expect(r.calls).toBe(1);
        } finally {
          await l2.close();
        }
      }
      // With one resolver shared across attempts, later attempts get the denied answer and are refused.
      expect(await outcome(layer.connect({ host: 'rebind.example', port }))).toBe('connected');
      const second = await outcome(layer.connect({ host: 'rebind.example', port }));
      expect(second).toMatchObject({ code: 'EACCES', rule: 'loopback' });
      expect(resolver.calls).toBe(2);
    } finally {
      await layer.close();
    }
    await flushed(deniedL);
    await flushed(allowedL);
    expect(deniedL.accepted).toBe(deniedBefore);
    expect(allowedL.accepted).toBe(allowedBefore + 6);
  });

  it('denied first answer: refused, even though a later answer would be allowed', async () => {
    const resolver = flipping('127.0.0.2', '127.0.0.1');
    const layer = new SocketLayer({ policy, resolver, idleTimeoutMs: 0 });
    const deniedBefore = deniedL.accepted;
    try {
      const r = await outcome(layer.connect({ host: 'rebind.example', port }));
      expect(r).toMatchObject({ code: 'EACCES', rule: 'loopback' });
      expect(resolver.calls).toBe(1);
    } finally {
      await layer.close();
    }
    await flushed(deniedL);
    expect(deniedL.accepted).toBe(deniedBefore);
  });

  it('mixed answers: the denied address is skipped, the allowed one is used', async () => {
    const resolver: Resolver = async () => [
      { address: '127.0.0.2', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ];
    const layer = new SocketLayer({ policy, resolver, idleTimeoutMs: 0 });
    const before = allowedL.accepted;
    const deniedBefore = deniedL.accepted;
    try {
      expect(await outcome(layer.connect({ host: 'mixed.example', port }))).toBe('connected');
      expect(await layer.check('mixed.example', port)).toEqual({ allowed: true, address: '127.0.0.1', family: 4, port });
    } finally {
      await layer.close();
    }
    await flushed(deniedL);
    await flushed(allowedL);
    expect(deniedL.accepted).toBe(deniedBefore);
    expect(allowedL.accepted).toBe(before + 1);
  });
});
