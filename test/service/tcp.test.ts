import { afterEach, describe, expect, test } from 'vitest';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { SocketLayer, constants as C, type Socket } from '../../src/index.js';
import { SOCKOPT_MOCKS, echoServer, errorOf, listen, once, payload, until, type Peer } from '../helpers.js';

const opened: Array<SocketLayer | Peer> = [];
afterEach(async () => {
  for (const x of opened.splice(0)) await x.close();
});

function layerOf(options: ConstructorParameters<typeof SocketLayer>[0] = {}): SocketLayer {
  const l = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, ...options });
  opened.push(l);
  return l;
}

async function peerOf(p: Promise<Peer>): Promise<Peer> {
  const peer = await p;
  opened.push(peer);
  return peer;
}

async function connected(layer: SocketLayer, port: number): Promise<Socket> {
  const s = layer.connect(port, '127.0.0.1');
  await once(s, 'connect');
  return s;
}

describe('socket options (emulate mode)', () => {
  const supported = SOCKOPT_MOCKS;

  test('the eight supported options answer App Engine mock values and bytes; sets are ignored', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf(), peer.port);
    for (const [level, name, value, hex] of supported) {
      expect(s.getsockopt(level, name)).toBe(value);
      expect((s.getsockopt(level, name, 64) as Buffer).toString('hex')).toBe(hex);
      expect((s.getsockopt(level, name, 2) as Buffer).toString('hex')).toBe(hex.slice(0, 4));
    }
    s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 4096);
    s.setsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE, 1);
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, { onoff: 1, linger: 5 });
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF)).toBe(2097152);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE)).toBe(0);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_ERROR)).toBe(0);
    s.destroy();
  });

  test('every other option is EACCES, on get and on set', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf(), peer.port);
    const others: Array<[number, number]> = [
      [C.SOL_SOCKET, C.SO_TYPE],
      [C.SOL_SOCKET, C.SO_BROADCAST],
      [C.SOL_SOCKET, C.SO_RCVTIMEO],
      [C.SOL_IP, C.IP_TTL],
      [C.SOL_IP, C.IP_TOS],
      [C.SOL_TCP, C.TCP_KEEPIDLE],
      [C.SOL_TCP, C.TCP_CORK],
    ];
    for (const [level, name] of others) {
      expect(() => s.getsockopt(level, name)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'getsockopt' }));
      expect(() => s.setsockopt(level, name, 1)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'setsockopt' }));
    }
    expect(() => s.setsockopt(C.SOL_SOCKET, C.SO_ERROR, 0)).toThrow(expect.objectContaining({ code: 'EACCES' }));
    s.destroy();
  });

  test("'native' mode applies and reads the real options", async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf({ sockopts: 'native' }), peer.port);
    // The core runs every socket with TCP_NODELAY on.
    expect(s.getsockopt(C.SOL_TCP, C.TCP_NODELAY)).toBe(1);
    s.setsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE, 1);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE)).toBe(1);
    s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 65536);
    // Linux doubles the requested size for bookkeeping.
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF)).toBe(131072);
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, { onoff: 1, linger: 7 });
    expect((s.getsockopt(C.SOL_SOCKET, C.SO_LINGER, 8) as Buffer).readInt32LE(4)).toBe(7);
    expect(() => s.getsockopt(C.SOL_IP, C.IP_TTL)).toThrow(expect.objectContaining({ code: 'EACCES' }));
    s.destroy();
  });
});

describe('idle reclaim', () => {
  test('an idle socket is reclaimed: close without error, EPIPE after, diagnostics event', async () => {
    const peer = await peerOf(echoServer());
    const layer = layerOf({ idleTimeoutMs: 150, sweepIntervalMs: 10 });
    const events: unknown[] = [];
    const onReclaim = (m: unknown) => events.push(m);
    subscribe('sockguard:reclaim', onReclaim);
    try {
      const idle = await connected(layer, peer.port);
      const busy = await connected(layer, peer.port);
      busy.resume();
      let errored = false;
      idle.on('error', () => (errored = true));
      const closed = new Promise<boolean>((r) => idle.once('close', r));
      // The busy socket keeps operating; each operation extends its deadline.
      const keep = setInterval(() => busy.write('x'), 20);
      try {
        expect(await closed).toBe(false);
        await new Promise((r) => setTimeout(r, 300));
        expect(busy.destroyed).toBe(false);
        expect(busy.reclaimed).toBe(false);
      } finally {
        clearInterval(keep);
      }
      expect(errored).toBe(false);
      expect(idle.reclaimed).toBe(true);
      const err = await new Promise<NodeJS.ErrnoException>((r) => idle.write('late', (e) => r(e as NodeJS.ErrnoException)));
      expect(err.code).toBe('EPIPE');
      expect(() => idle.getsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE)).toThrow(expect.objectContaining({ code: 'EPIPE' }));
      idle.destroy(); // closing a reclaimed socket again is a no-op
      expect(layer.usage().reclaimed).toBe(1);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ appId: 'default', address: '127.0.0.1', port: peer.port });
      await until(() => peer.connections.size === 1, 2000, 'the peer to see the reclaimed connection close');
      busy.destroy();
    } finally {
      unsubscribe('sockguard:reclaim', onReclaim);
    }
  });

  test('reading counts as activity: a socket receiving data is kept', async () => {
    const peer = await peerOf(listen((c) => {
      const t = setInterval(() => c.write('tick'), 20);
      c.on('close', () => clearInterval(t));
    }));
    const layer = layerOf({ idleTimeoutMs: 120, sweepIntervalMs: 10 });
    const s = await connected(layer, peer.port);
    s.resume();
    await new Promise((r) => setTimeout(r, 400));
    expect(s.reclaimed).toBe(false);
    s.destroy();
  });

  test('SOCKGUARD_IDLE_TIMEOUT_MS sets the default; 0 disables reclaim', async () => {
    const saved = process.env.SOCKGUARD_IDLE_TIMEOUT_MS;
    try {
      process.env.SOCKGUARD_IDLE_TIMEOUT_MS = '1234';
      expect(new SocketLayer({ policy: 'development' }).idleTimeoutMs).toBe(1234);
      process.env.SOCKGUARD_IDLE_TIMEOUT_MS = 'soon';
      expect(() => new SocketLayer({ policy: 'development' })).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
    } finally {
      if (saved === undefined) delete process.env.SOCKGUARD_IDLE_TIMEOUT_MS;
      else process.env.SOCKGUARD_IDLE_TIMEOUT_MS = saved;
    }
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf({ idleTimeoutMs: 0 }), peer.port);
    await new Promise((r) => setTimeout(r, 100));
    expect(s.reclaimed).toBe(false);
    s.destroy();
  });
});

describe('usage ledger', () => {
  test('exact under concurrency, with ended, destroyed and reclaimed sockets; layers never mix', async () => {
    let serverIn = 0;
    let serverOut = 0;
    const peer = await peerOf(listen((c) => {
      c.on('data', (d) => {
        serverIn += d.length;
        c.write(d, () => {});
        serverOut += d.length;
      });
      c.on('end', () => c.end());
    }));
    const a = layerOf({ appId: 'app-a', idleTimeoutMs: 300, sweepIntervalMs: 10 });
    const b = layerOf({ appId: 'app-b' });
    const sockets: Socket[] = [];
    for (let i = 0; i < 60; i++) {
      const s = a.connect(peer.port, '127.0.0.1');
      s.resume();
      s.on('error', () => {});
      sockets.push(s);
      s.write(payload(1 + ((i * 7919) % 50_000)));
      if (i % 3 === 0) s.end(payload(1000));
      else if (i % 3 === 1) setTimeout(() => s.destroy(), 30);
      // i % 3 === 2: left idle, reclaimed by the layer
    }
    const other = b.connect(peer.port, '127.0.0.1');
    other.resume();
    other.end(payload(777));
    await Promise.all([...sockets, other].map((s) => (s.closed ? Promise.resolve() : once(s, 'close').catch(() => {}))));
    await until(() => peer.connections.size === 0, 5000, 'server side to close');
    const ua = a.usage();
    const ub = b.usage();
    expect(ua.socketsOpen).toBe(0);
    expect(ua.socketsCreated).toBe(60);
    expect(ua.reclaimed).toBe(20);
    expect(ub.appId).toBe('app-b');
    expect(ub.bytesSent).toBe(777);
    expect(ua.bytesSent + ub.bytesSent).toBe(serverIn);
    expect(ua.bytesReceived + ub.bytesReceived).toBeLessThanOrEqual(serverOut);
    expect(ua.billedBytes).toBe(ua.bytesSent + ua.bytesReceived);
    // Per-socket counters add up to the ledger exactly.
    const sum = sockets.reduce((n, s) => n + s.counters.bytesSent, 0);
    expect(sum).toBe(ua.bytesSent);
    const recv = sockets.reduce((n, s) => n + s.counters.bytesReceived, 0);
    expect(recv).toBe(ua.bytesReceived);
  });
});

describe('quotas', () => {
  test('per-minute connects: the third connect fails naming the resource and window; others are unaffected', async () => {
    const peer = await peerOf(echoServer());
    const layer = layerOf({ quotas: { perMinute: { connects: 2 } } });
    const s1 = await connected(layer, peer.port);
    const s2 = await connected(layer, peer.port);
    const s3 = layer.connect(peer.port, '127.0.0.1');
    const err = (await errorOf(s3)) as NodeJS.ErrnoException & { resource?: string; window?: string };
    expect(err.code).toBe('ERR_SOCKGUARD_OVER_QUOTA');
    expect(err.resource).toBe('connects');
    expect(err.window).toBe('minute');
    // Nothing else breaks: the open sockets still move data.
    const echoed = once<Buffer>(s1, 'data');
    s1.write('still fine');
    expect(String(await echoed)).toBe('still fine');
    expect(layer.usage().overQuota).toBe(1);
    s1.destroy();
    s2.destroy();
  });

  test('per-day window and bytesSent: the write that would cross the limit fails, nothing of it is sent', async () => {
    let received = 0;
    const peer = await peerOf(listen((c) => c.on('data', (d) => (received += d.length))));
    const layer = layerOf({ quotas: { perDay: { bytesSent: 1000 } } });
    const s = await connected(layer, peer.port);
    s.on('error', () => {});
    await new Promise<void>((r, j) => s.write(payload(600), (e) => (e ? j(e) : r())));
    const err = await new Promise<NodeJS.ErrnoException & { resource?: string; window?: string }>((r) =>
      s.write(payload(600), (e) => r(e as NodeJS.ErrnoException)),
    );
    expect(err.code).toBe('ERR_SOCKGUARD_OVER_QUOTA');
    expect(err.resource).toBe('bytesSent');
    expect(err.window).toBe('day');
    await until(() => received === 600, 2000, 'the allowed bytes');
    await new Promise((r) => setTimeout(r, 50));
    expect(received).toBe(600);
  });

  test('received bytes past bytesReceived fail the socket with the quota error', async () => {
    const peer = await peerOf(listen((c) => c.write(payload(5000))));
    const layer = layerOf({ quotas: { perMinute: { bytesReceived: 1000 } } });
    const s = layer.connect(peer.port, '127.0.0.1');
    const err = (await new Promise((r) => s.once('error', r))) as NodeJS.ErrnoException & { resource?: string };
    expect(err.code).toBe('ERR_SOCKGUARD_OVER_QUOTA');
    expect(err.resource).toBe('bytesReceived');
  });

  test("the 'app-engine' preset is accepted and does not get in the way of normal use", async () => {
    const peer = await peerOf(echoServer());
    const layer = layerOf({ quotas: 'app-engine' });
    const s = await connected(layer, peer.port);
    const echoed = once<Buffer>(s, 'data');
    s.write('hi');
    expect(String(await echoed)).toBe('hi');
    s.destroy();
    expect(() => layerOf({ quotas: { perHour: {} } as never })).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
  });
});

describe('bind rules', () => {
  test('only the any-address and port 0 may be requested locally', async () => {
    const peer = await peerOf(echoServer());
    const layer = layerOf();
    for (const localAddress of ['0.0.0.0', '::']) {
      const s = layer.connect({ host: '127.0.0.1', port: peer.port, localAddress, localPort: 0 });
      await once(s, 'connect');
      s.destroy();
    }
    const a = layer.connect({ host: '127.0.0.1', port: peer.port, localAddress: '127.0.0.1' });
    const ea = await errorOf(a);
    expect(ea.code).toBe('EACCES');
    expect(ea.syscall).toBe('bind');
    const p = layer.connect({ host: '127.0.0.1', port: peer.port, localPort: 40000 });
    const ep = await errorOf(p);
    expect(ep.code).toBe('EACCES');
    expect(ep.port).toBe(40000);
    await new Promise((r) => setTimeout(r, 50));
    // Neither refused socket ever reached the peer.
    expect(peer.connections.size).toBe(0);
  });
});
