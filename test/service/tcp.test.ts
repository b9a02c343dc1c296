import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { SocketLayer, constants as C, type Socket } from '../../src/index.js';
import { SOCKOPT_MOCKS, echoServer, errorOf, listen, once, payload, until, type Peer } from '../helpers.js';

const opened: Array<SocketLayer | Peer> = [];
// Last opened, first closed: a test opens its peer before its layer, so clients close before their peers. A
// peer closing first could reset a connection it has not accepted yet (Deno's server accepts lazily), and that
// reset would land on a client the test no longer listens to.
afterEach(async () => {
  for (const x of opened.splice(0).reverse()) await x.close();
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

/** Resolves with the next 'close' event's hadError. */
const closeOf = (s: Socket) => new Promise<boolean>((r) => s.once('close', r));

const IDLE = 60_000;

/**
 * A layer whose idle reclaim the test drives: the timeout is a minute and the sweep timer hours, so no
 * real-time sweep can reclaim anything during a test, and `sweep(ms)` runs a sweep at `ms` on the test's own
 * clock (monotonic milliseconds, like the sweeper's own).
 */
function reclaimLayer(options: ConstructorParameters<typeof SocketLayer>[0] = {}): { layer: SocketLayer; sweep: (ms: number) => number } {
  const layer = layerOf({ idleTimeoutMs: IDLE, sweepIntervalMs: 0x7fffffff, ...options });
  // The sweeper opens its first epoch at the real time of the first track, and ends an epoch only once it is
  // long enough: the test's timeline starts a whole timeout after the real now of its first sweep. Whole
  // milliseconds, so `(base + IDLE) - IDLE` is exactly `base` and a sweep at the timeout is not a rounding
  // error short of it.
  let base: number | undefined;
  return { layer, sweep: (ms) => layer.sweeper.sweepNow((base ??= Math.ceil(performance.now()) + IDLE) + ms) };
}

/** Resolves with what one write's callback reports. */
const writeResult = (s: Socket, data: string | Buffer) =>
  new Promise<(NodeJS.ErrnoException & { resource?: string; window?: string }) | null | undefined>((r) => s.write(data, (e) => r(e as never)));

async function connected(layer: SocketLayer, port: number): Promise<Socket> {
  const s = layer.connect(port, '127.0.0.1');
  await once(s, 'connect');
  return s;
}

describe('socket options (emulate mode)', () => {
  for (const [level, name, value, hex] of SOCKOPT_MOCKS) {
    test(`option ${level}/${name} answers the App Engine mock value ${value} and bytes ${hex}`, async () => {
      const peer = await peerOf(echoServer());
      const s = await connected(layerOf(), peer.port);
      expect(s.getsockopt(level, name)).toBe(value);
      expect((s.getsockopt(level, name, 64) as Buffer).toString('hex')).toBe(hex);
      expect((s.getsockopt(level, name, 2) as Buffer).toString('hex')).toBe(hex.slice(0, 4));
    });
  }

  test('setting a supported option is accepted and ignored', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf(), peer.port);
    s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 4096);
    s.setsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE, 1);
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, { onoff: 1, linger: 5 });
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF)).toBe(2097152);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE)).toBe(0);
    expect((s.getsockopt(C.SOL_SOCKET, C.SO_LINGER, 8) as Buffer).toString('hex')).toBe('0000000000000000');
  });

  test('SO_ERROR reads the real (zero) error', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf(), peer.port);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_ERROR)).toBe(0);
  });

  const others: Array<[number, number]> = [
    [C.SOL_SOCKET, C.SO_TYPE],
    [C.SOL_SOCKET, C.SO_BROADCAST],
    [C.SOL_SOCKET, C.SO_RCVTIMEO],
    [C.SOL_IP, C.IP_TTL],
    [C.SOL_IP, C.IP_TOS],
    [C.SOL_TCP, C.TCP_KEEPIDLE],
    [C.SOL_TCP, C.TCP_CORK],
  ];

  test('every other option is EACCES on get', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf(), peer.port);
    for (const [level, name] of others) {
      expect(() => s.getsockopt(level, name)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'getsockopt' }));
    }
  });

  test('every other option, and SO_ERROR, is EACCES on set', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf(), peer.port);
    for (const [level, name] of [...others, [C.SOL_SOCKET, C.SO_ERROR] as [number, number]]) {
      expect(() => s.setsockopt(level, name, 1)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'setsockopt' }));
    }
  });
});

describe('socket options (native mode)', () => {
  test('TCP_NODELAY reads as on: the core runs every socket with it', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf({ sockopts: 'native' }), peer.port);
    expect(s.getsockopt(C.SOL_TCP, C.TCP_NODELAY)).toBe(1);
  });

  test('a set option reads back as the kernel stores it', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf({ sockopts: 'native' }), peer.port);
    s.setsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE, 1);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE)).toBe(1);
    s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 65536);
    // Linux doubles the requested size for bookkeeping.
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF)).toBe(131072);
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, { onoff: 1, linger: 7 });
    expect((s.getsockopt(C.SOL_SOCKET, C.SO_LINGER, 8) as Buffer).readInt32LE(4)).toBe(7);
  });

  test('options outside the supported set stay EACCES', async () => {
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf({ sockopts: 'native' }), peer.port);
    expect(() => s.getsockopt(C.SOL_IP, C.IP_TTL)).toThrow(expect.objectContaining({ code: 'EACCES' }));
  });
});

describe('idle reclaim', () => {
  test("the layer's own timer reclaims an idle socket: 'close' without 'error'", async () => {
    // End to end through the real sweep timer; the tests below drive sweeps on a clock of their own.
    const peer = await peerOf(echoServer());
    const s = await connected(layerOf({ idleTimeoutMs: 100, sweepIntervalMs: 10 }), peer.port);
    let errored = false;
    s.on('error', () => (errored = true));
    expect(await closeOf(s)).toBe(false);
    expect(errored).toBe(false);
    expect(s.reclaimed).toBe(true);
  });

  test('a socket idle for the timeout is reclaimed and counted in usage()', async () => {
    const peer = await peerOf(echoServer());
    const { layer, sweep } = reclaimLayer();
    const s = await connected(layer, peer.port);
    const closed = closeOf(s);
    sweep(0);
    expect(sweep(IDLE)).toBe(1);
    expect(await closed).toBe(false);
    expect(s.reclaimed).toBe(true);
    expect(layer.usage().reclaimed).toBe(1);
  });

  test('a socket is not reclaimed before the timeout', async () => {
    const peer = await peerOf(echoServer());
    const { layer, sweep } = reclaimLayer();
    const s = await connected(layer, peer.port);
    sweep(0);
    expect(sweep(IDLE - 1)).toBe(0);
    expect(s.reclaimed).toBe(false);
  });

  test('writing is activity: a socket written to since the last sweep is kept while an idle one goes', async () => {
    const peer = await peerOf(echoServer());
    const { layer, sweep } = reclaimLayer();
    const idle = await connected(layer, peer.port);
    const busy = await connected(layer, peer.port);
    busy.resume();
    sweep(0);
    busy.write('x');
    expect(sweep(IDLE)).toBe(1);
    expect(idle.reclaimed).toBe(true);
    expect(busy.reclaimed).toBe(false);
    expect(busy.destroyed).toBe(false);
  });

  test('reading is activity: a socket receiving data since the last sweep is kept', async () => {
    const peer = await peerOf(listen(() => {}));
    const { layer, sweep } = reclaimLayer();
    const reader = await connected(layer, peer.port);
    const idle = await connected(layer, peer.port);
    sweep(0);
    // The peer sends unasked, so the reader's only operation after the sweep at 0 is the read.
    await until(() => peer.connections.size === 2, 2000, 'the peer to accept both');
    const tick = once<Buffer>(reader, 'data');
    [...peer.connections].find((c) => c.remotePort === reader.localPort)!.write('tick');
    expect(String(await tick)).toBe('tick');
    expect(sweep(IDLE)).toBe(1);
    expect(idle.reclaimed).toBe(true);
    expect(reader.reclaimed).toBe(false);
  });

  test('a reclaimed socket fails later writes with EPIPE', async () => {
    const peer = await peerOf(echoServer());
    const { layer, sweep } = reclaimLayer();
    const s = await connected(layer, peer.port);
    const closed = closeOf(s);
    sweep(0);
    sweep(IDLE);
    await closed;
    expect((await writeResult(s, 'late'))?.code).toBe('EPIPE');
  });

  test('a reclaimed socket fails option reads with EPIPE', async () => {
    const peer = await peerOf(echoServer());
    const { layer, sweep } = reclaimLayer();
    const s = await connected(layer, peer.port);
    const closed = closeOf(s);
    sweep(0);
    sweep(IDLE);
    await closed;
    expect(() => s.getsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE)).toThrow(expect.objectContaining({ code: 'EPIPE' }));
  });

  test('destroying a reclaimed socket again is a no-op', async () => {
    const peer = await peerOf(echoServer());
    const { layer, sweep } = reclaimLayer();
    const s = await connected(layer, peer.port);
    let closes = 0;
    s.on('close', () => closes++);
    const closed = closeOf(s);
    sweep(0);
    sweep(IDLE);
    await closed;
    s.destroy();
    expect(closes).toBe(1);
    expect(layer.usage().reclaimed).toBe(1);
  });

  test('reclaim publishes one sockguard:reclaim event naming the app and peer', async () => {
    const peer = await peerOf(echoServer());
    const { layer, sweep } = reclaimLayer();
    const events: unknown[] = [];
    const onReclaim = (m: unknown) => events.push(m);
    subscribe('sockguard:reclaim', onReclaim);
    try {
      await connected(layer, peer.port);
      sweep(0);
      sweep(IDLE);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ appId: 'default', address: '127.0.0.1', port: peer.port });
    } finally {
      unsubscribe('sockguard:reclaim', onReclaim);
    }
  });

  test('the peer sees a reclaimed connection close', async () => {
    const peer = await peerOf(echoServer());
    const { layer, sweep } = reclaimLayer();
    await connected(layer, peer.port);
    await until(() => peer.connections.size === 1, 2000, 'the peer to accept');
    sweep(0);
    sweep(IDLE);
    await until(() => peer.connections.size === 0, 2000, 'the peer to see the reclaimed connection close');
  });

  test('idleTimeoutMs 0 disables reclaim: no sweeper timer, nothing reclaimed', async () => {
    const peer = await peerOf(echoServer());
    const layer = layerOf({ idleTimeoutMs: 0 });
    const s = await connected(layer, peer.port);
    expect(layer.sweeper.enabled).toBe(false);
    expect(layer.sweeper.sweepNow(performance.now() + 10 * IDLE)).toBe(0);
    expect(s.reclaimed).toBe(false);
  });
});

describe('SOCKGUARD_IDLE_TIMEOUT_MS', () => {
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.SOCKGUARD_IDLE_TIMEOUT_MS;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.SOCKGUARD_IDLE_TIMEOUT_MS;
    else process.env.SOCKGUARD_IDLE_TIMEOUT_MS = saved;
  });

  test('sets the default idle timeout', () => {
    process.env.SOCKGUARD_IDLE_TIMEOUT_MS = '1234';
    expect(layerOf({ idleTimeoutMs: undefined }).idleTimeoutMs).toBe(1234);
  });

  test('a value that is not a number of milliseconds is an invalid option', () => {
    process.env.SOCKGUARD_IDLE_TIMEOUT_MS = 'soon';
    expect(() => new SocketLayer({ policy: 'development' })).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
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
    const { layer: a, sweep } = reclaimLayer({ appId: 'app-a' });
    const b = layerOf({ appId: 'app-b' });
    const sockets: Socket[] = [];
    const idle: Array<{ s: Socket; size: number }> = [];
    for (let i = 0; i < 60; i++) {
      const s = a.connect(peer.port, '127.0.0.1');
      s.resume();
      s.on('error', () => {});
      sockets.push(s);
      const size = 1 + ((i * 7919) % 50_000);
      s.write(payload(size));
      if (i % 3 === 0) s.end(payload(1000));
      else if (i % 3 === 1) s.once('data', () => s.destroy()); // mid-exchange: at the first echo bytes, not after a guessed delay
      else idle.push({ s, size }); // left idle, reclaimed by the layer
    }
    const other = b.connect(peer.port, '127.0.0.1');
    other.resume();
    other.end(payload(777));
    const idleSet = new Set(idle.map((x) => x.s));
    const finite = [...sockets.filter((s) => !idleSet.has(s)), other];
    await Promise.all(finite.map((s) => (s.closed ? Promise.resolve() : once(s, 'close').catch(() => {}))));
    // The idle sockets got their echo back and did nothing since: now a timeout passes for them.
    await until(() => idle.every(({ s, size }) => s.bytesRead === size), 5000, 'echoes on the idle sockets');
    sweep(0);
    expect(sweep(IDLE)).toBe(20);
    await Promise.all(idle.map(({ s }) => (s.closed ? Promise.resolve() : once(s, 'close').catch(() => {}))));
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
  // A fake wall clock for the quota windows: mid-minute, mid-day UTC, so no window rolls during a test.
  const T0 = Date.UTC(2024, 2, 10, 12, 0, 30);
  function quotaLayer(quotas: unknown, clock = { now: T0 }): { layer: SocketLayer; clock: { now: number } } {
    return { layer: layerOf({ quotas: quotas as never, clock: () => clock.now }), clock };
  }

  test('a connect over the per-minute limit fails naming the resource and window', async () => {
    const peer = await peerOf(echoServer());
    const { layer } = quotaLayer({ perMinute: { connects: 2 } });
    await connected(layer, peer.port);
    await connected(layer, peer.port);
    const err = (await errorOf(layer.connect(peer.port, '127.0.0.1'))) as NodeJS.ErrnoException & { resource?: string; window?: string };
    expect(err).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'connects', window: 'minute' });
    expect(layer.usage().overQuota).toBe(1);
  });

  test('a refused connect leaves the open sockets moving data', async () => {
    const peer = await peerOf(echoServer());
    const { layer } = quotaLayer({ perMinute: { connects: 1 } });
    const s1 = await connected(layer, peer.port);
    await errorOf(layer.connect(peer.port, '127.0.0.1'));
    const echoed = once<Buffer>(s1, 'data');
    s1.write('still fine');
    expect(String(await echoed)).toBe('still fine');
  });

  test('the next minute window admits connects again', async () => {
    const peer = await peerOf(echoServer());
    const { layer, clock } = quotaLayer({ perMinute: { connects: 1 } });
    await connected(layer, peer.port);
    await errorOf(layer.connect(peer.port, '127.0.0.1'));
    clock.now += 60_000;
    await connected(layer, peer.port);
  });

  test('per-day bytesSent: the write that would cross the limit fails naming the resource and window', async () => {
    const peer = await peerOf(listen(() => {}));
    const { layer } = quotaLayer({ perDay: { bytesSent: 1000 } });
    const s = await connected(layer, peer.port);
    s.on('error', () => {});
    expect(await writeResult(s, payload(600))).toBeFalsy();
    expect(await writeResult(s, payload(600))).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'bytesSent', window: 'day' });
  });

  test('nothing of a refused write is sent', async () => {
    let received = 0;
    const peer = await peerOf(listen((c) => c.on('data', (d) => (received += d.length))));
    const { layer } = quotaLayer({ perDay: { bytesSent: 1000 } });
    const s = await connected(layer, peer.port);
    s.on('error', () => {});
    await writeResult(s, payload(600));
    await until(() => peer.connections.size === 1, 2000, 'the peer to accept');
    await writeResult(s, payload(600));
    // The refusal fails the socket; the peer sees the close after every byte that was sent (TCP order).
    await until(() => peer.connections.size === 0, 2000, 'the peer to see the close');
    expect(received).toBe(600);
  });

  test('received bytes past bytesReceived fail the socket with the quota error', async () => {
    const peer = await peerOf(listen((c) => c.write(payload(5000))));
    const { layer } = quotaLayer({ perMinute: { bytesReceived: 1000 } });
    const s = layer.connect(peer.port, '127.0.0.1');
    const err = (await new Promise((r) => s.once('error', r))) as NodeJS.ErrnoException & { resource?: string };
    expect(err.code).toBe('ERR_SOCKGUARD_OVER_QUOTA');
    expect(err.resource).toBe('bytesReceived');
  });

  test("the 'app-engine' preset does not get in the way of normal use", async () => {
    const peer = await peerOf(echoServer());
    const { layer } = quotaLayer('app-engine');
    const s = await connected(layer, peer.port);
    const echoed = once<Buffer>(s, 'data');
    s.write('hi');
    expect(String(await echoed)).toBe('hi');
  });

  test('an unknown window is an invalid option', () => {
    expect(() => layerOf({ quotas: { perHour: {} } as never })).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
  });

  test('a clock that is not a function is an invalid option', () => {
    expect(() => layerOf({ clock: 42 as never })).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
  });
});

describe('bind rules', () => {
  for (const localAddress of ['0.0.0.0', '::']) {
    test(`the any-address ${localAddress} with port 0 may be requested locally`, async () => {
      const peer = await peerOf(echoServer());
      const s = layerOf().connect({ host: '127.0.0.1', port: peer.port, localAddress, localPort: 0 });
      await once(s, 'connect');
    });
  }

  test('a specific local address is EACCES on bind and never reaches the peer', async () => {
    const peer = await peerOf(echoServer());
    const ea = await errorOf(layerOf().connect({ host: '127.0.0.1', port: peer.port, localAddress: '127.0.0.1' }));
    expect(ea).toMatchObject({ code: 'EACCES', syscall: 'bind' });
    expect(peer.connections.size).toBe(0);
  });

  test('a specific local port is EACCES naming the port and never reaches the peer', async () => {
    const peer = await peerOf(echoServer());
    const ep = await errorOf(layerOf().connect({ host: '127.0.0.1', port: peer.port, localPort: 40000 }));
    expect(ep).toMatchObject({ code: 'EACCES', port: 40000 });
    expect(peer.connections.size).toBe(0);
  });
});
