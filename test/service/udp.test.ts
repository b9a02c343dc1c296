import { afterEach, describe, expect, test } from 'vitest';
import dgram from 'node:dgram';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { SocketLayer, constants as C, type Resolver } from '../../src/index.js';
import { getLoop } from '../../src/core/loop.js';
import type { RemoteInfo, UdpSocket } from '../../src/udp/socket.js';
import { SOCKOPT_MOCKS, distPath, fdCount, payload, runChild } from '../helpers.js';

// Every packet in this file goes to loopback only.

interface Closable {
  close(): unknown;
}
const opened: Closable[] = [];
afterEach(async () => {
  for (const x of opened.splice(0).reverse()) await x.close();
});

function layerOf(options: ConstructorParameters<typeof SocketLayer>[0] = {}): SocketLayer {
  const l = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, ...options });
  opened.push(l);
  return l;
}

/** Allows 127.0.0.1 only, as an operator would, without development mode's warnings. */
const loopbackOnly = { version: 1, allow: [{ cidr: '127.0.0.1/32', openSpecialPurpose: true }] };

interface Peer {
  port: number;
  host: string;
  /** Every datagram the peer received, in arrival order. */
  received: Buffer[];
  senders: RemoteInfo[];
  socket: dgram.Socket;
  close(): Promise<void>;
}

/** A node:dgram peer on loopback; it echoes every datagram unless `echo` is false. */
async function udpPeer(type: 'udp4' | 'udp6' = 'udp4', echo = true): Promise<Peer> {
  const host = type === 'udp4' ? '127.0.0.1' : '::1';
  const socket = dgram.createSocket(type);
  const received: Buffer[] = [];
  const senders: RemoteInfo[] = [];
  socket.on('message', (msg, rinfo) => {
    received.push(msg);
    senders.push(rinfo as RemoteInfo);
    if (echo) socket.send(msg, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => resolve());
  });
  const peer: Peer = {
    port: socket.address().port,
    host,
    received,
    senders,
    socket,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
  opened.push(peer);
  return peer;
}

function track(s: UdpSocket): UdpSocket {
  opened.push({ close: () => closeSocket(s) });
  return s;
}

/** Closes and waits for 'close' (a no-op on a socket that is already closed). */
function closeSocket(s: UdpSocket): Promise<void> {
  return new Promise<void>((resolve) => s.close(() => resolve()));
}

function sendP(s: UdpSocket, ...args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => {
    (s.send as (...a: unknown[]) => void)(...args, (err: Error | null, n?: number) => (err ? reject(err) : resolve(n!)));
  });
}

function sendErr(s: UdpSocket, ...args: unknown[]): Promise<NodeJS.ErrnoException & { rule?: string; resource?: string; window?: string }> {
  return new Promise((resolve, reject) => {
    (s.send as (...a: unknown[]) => void)(...args, (err: Error | null) => (err ? resolve(err) : reject(new Error('sent unexpectedly'))));
  });
}

function nextMessage(s: UdpSocket): Promise<[Buffer, RemoteInfo]> {
  return new Promise((resolve, reject) => {
    const onErr = (e: Error) => {
      s.off('message', onMsg);
      reject(e);
    };
    const onMsg = (m: Buffer, r: RemoteInfo) => {
      s.off('error', onErr);
      resolve([m, r]);
    };
    s.once('message', onMsg);
    s.once('error', onErr);
  });
}

function errorEvent(s: UdpSocket): Promise<NodeJS.ErrnoException & { rule?: string; resource?: string; window?: string }> {
  return new Promise((resolve) => s.once('error', resolve));
}

/**
 * Resolves once every datagram sent to `peer` before this call has arrived: a marker from another socket goes
 * out last and is awaited, and loopback delivers a datagram into the receiver's queue during the sending
 * syscall, so nothing sent earlier can still be on its way. Tests use it to show that nothing arrived, without
 * guessing a delay. The marker is taken out of `peer.received`.
 */
async function flushed(peer: Peer): Promise<void> {
  const marker = `flush ${Math.random()}`;
  const from = dgram.createSocket(peer.host === '::1' ? 'udp6' : 'udp4');
  try {
    const arrived = new Promise<void>((resolve) => {
      const onMsg = (m: Buffer) => {
        if (m.toString() !== marker) return;
        peer.socket.off('message', onMsg);
        resolve();
      };
      peer.socket.on('message', onMsg);
    });
    await new Promise<void>((resolve, reject) => from.send(marker, peer.port, peer.host, (e) => (e ? reject(e) : resolve())));
    await arrived;
  } finally {
    from.close();
  }
  const i = peer.received.findIndex((b) => b.toString() === marker);
  peer.received.splice(i, 1);
  peer.senders.splice(i, 1);
}

/**
 * Resolves with the peer's datagrams once it has received `n` in all: the peer's 'message' event, not a poll.
 * The peer's own listener was added first, so `received` is up to date when this one runs.
 */
function arrivals(peer: Peer, n: number): Promise<string[]> {
  return new Promise((resolve) => {
    const check = (): boolean => {
      if (peer.received.length < n) return false;
      peer.socket.off('message', check);
      resolve(peer.received.map(String));
      return true;
    };
    if (!check()) peer.socket.on('message', check);
  });
}

/**
 * Send callbacks that record their outcome as `tag` or `tag:detail` (the error's code unless `detail` says
 * otherwise); `all` resolves once `n` have run, in the order they ran.
 */
function reporter(n: number, detail: (err: NodeJS.ErrnoException & { rule?: string }) => unknown = (e) => e.code): {
  results: string[];
  cb(tag: string): (err: Error | null) => void;
  all: Promise<string[]>;
} {
  const results: string[] = [];
  let done!: (r: string[]) => void;
  const all = new Promise<string[]>((r) => (done = r));
  return {
    results,
    all,
    cb: (tag) => (err) => {
      results.push(err ? `${tag}:${String(detail(err))}` : tag);
      if (results.length === n) done(results);
    },
  };
}

/** A resolver that answers only when the test says so: an event instead of a delay. */
function gatedResolver(answer: (name: string) => Awaited<ReturnType<Resolver>>): { resolver: Resolver; open(): void } {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  return {
    resolver: async (name) => {
      await gate;
      return answer(name);
    },
    open,
  };
}

const IDLE = 60_000;

/**
 * A layer whose idle reclaim the test drives: a minute's timeout and a sweep timer of hours, so no real-time
 * sweep reclaims during a test; `sweep(ms)` sweeps at `ms` on the test's own monotonic clock.
 */
function reclaimLayer(): { layer: SocketLayer; sweep: (ms: number) => number } {
  const layer = layerOf({ idleTimeoutMs: IDLE, sweepIntervalMs: 0x7fffffff });
  // The sweeper opens its first epoch at the real time of the first track, and ends an epoch only once it is
  // long enough: the test's timeline starts a whole timeout after the real now of its first sweep. Whole
  // milliseconds, so `(base + IDLE) - IDLE` is exactly `base` and a sweep at the timeout is not a rounding
  // error short of it.
  let base: number | undefined;
  return { layer, sweep: (ms) => layer.sweeper.sweepNow((base ??= Math.ceil(performance.now()) + IDLE) + ms) };
}

/** Sends `count` datagrams keeping at most `window` unanswered, so no socket buffer on loopback overflows. */
async function exchange(s: UdpSocket, count: number, make: (i: number) => Buffer, dest: unknown[]): Promise<Buffer[]> {
  const echoes: Buffer[] = [];
  let sent = 0;
  const window = 8;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      while (sent < count && sent - echoes.length < window) (s.send as (...a: unknown[]) => void)(make(sent++), ...dest);
    };
    const onMsg = (m: Buffer) => {
      echoes.push(m);
      if (echoes.length === count) {
        s.off('message', onMsg);
        resolve();
      } else pump();
    };
    s.on('message', onMsg);
    s.once('error', reject);
    pump();
  });
  return echoes;
}

describe('echo against a node:dgram peer', () => {
  for (const type of ['udp4', 'udp6'] as const) {
    const family = type === 'udp4' ? 'IPv4' : 'IPv6';

    test(`${type}: an unconnected send reaches the peer and the reply arrives as 'message' with rinfo`, async () => {
      const peer = await udpPeer(type);
      const s = track(layerOf().createSocket(type));
      const reply = nextMessage(s);
      expect(await sendP(s, Buffer.from('hello'), peer.port, peer.host)).toBe(5);
      const [msg, rinfo] = await reply;
      expect(msg.toString()).toBe('hello');
      expect(rinfo).toEqual({ address: peer.host, family, port: peer.port, size: 5 });
    });

    test(`${type}: the first send binds the socket implicitly to the any-address, and the peer sees that port`, async () => {
      const peer = await udpPeer(type);
      const s = track(layerOf().createSocket(type));
      await sendP(s, 'hello', peer.port, peer.host);
      await arrivals(peer, 1);
      expect(peer.senders[0]!.port).toBe(s.address().port);
      expect(s.address().address).toBe(type === 'udp4' ? '0.0.0.0' : '::');
    });

    test(`${type}: a connected socket reports its peer in remoteAddress()`, async () => {
      const peer = await udpPeer(type);
      const s = track(layerOf().createSocket(type));
      await new Promise<void>((resolve, reject) => s.connect(peer.port, peer.host, (err?: Error) => (err ? reject(err) : resolve())));
      expect(s.remoteAddress()).toEqual({ address: peer.host, family, port: peer.port });
    });

    test(`${type}: a connected socket sends without a destination and keeps datagram order`, async () => {
      const peer = await udpPeer(type);
      // udp4 under an operator policy, udp6 under development: both admit the connected peer.
      const s = track(layerOf({ policy: type === 'udp4' ? loopbackOnly : 'development' }).createSocket(type));
      await new Promise<void>((resolve, reject) => s.connect(peer.port, peer.host, (err?: Error) => (err ? reject(err) : resolve())));
      const count = 300;
      const echoes = await exchange(s, count, (i) => Buffer.from(`seq ${i}`), []);
      expect(echoes.map((b) => b.toString())).toEqual(Array.from({ length: count }, (_, i) => `seq ${i}`));
      expect(peer.received.map((b) => b.toString())).toEqual(echoes.map((b) => b.toString()));
    });

    test(`${type}: a connect is counted once in usage(), however many datagrams follow`, async () => {
      const peer = await udpPeer(type);
      const layer = layerOf({ policy: type === 'udp4' ? loopbackOnly : 'development' });
      const s = track(layer.createSocket(type));
      await new Promise<void>((resolve, reject) => s.connect(peer.port, peer.host, (err?: Error) => (err ? reject(err) : resolve())));
      await exchange(s, 10, (i) => Buffer.from(`seq ${i}`), []);
      expect(layer.usage().connects).toBe(1);
    });
  }

  for (const type of ['udp4', 'udp6'] as const) {
    for (const mode of ['unconnected', 'connected'] as const) {
      for (const size of [0, 1, 100, 1400, 1500, 9000, 32768, 60 * 1024]) {
        test(`${type}, ${mode}: a datagram of ${size} bytes comes back intact, its size in rinfo`, async () => {
          const peer = await udpPeer(type);
          const s = track(layerOf().createSocket(type));
          if (mode === 'connected') await new Promise<void>((resolve) => s.connect(peer.port, peer.host, () => resolve()));
          const data = payload(size);
          const echo = nextMessage(s);
          await (mode === 'connected' ? sendP(s, data) : sendP(s, data, peer.port, peer.host));
          const [msg, rinfo] = await echo;
          expect(msg.equals(data)).toBe(true);
          expect(rinfo.size).toBe(size);
        });
      }
    }
  }

  describe('many datagrams', () => {
    const count = 500;
    const sizeOf = (i: number) => 1 + ((i * 977) % 4000);
    const total = Array.from({ length: count }, (_, i) => sizeOf(i)).reduce((a, b) => a + b, 0);

    /** 500 datagrams of assorted sizes echoed by a peer. */
    async function manyExchanged(): Promise<{ layer: SocketLayer; s: UdpSocket; peer: Peer; echoes: Buffer[] }> {
      const peer = await udpPeer('udp4');
      const layer = layerOf();
      const s = track(layer.createSocket('udp4'));
      const echoes = await exchange(s, count, (i) => payload(sizeOf(i)), [peer.port, '127.0.0.1']);
      return { layer, s, peer, echoes };
    }

    test('every byte sent reaches the peer and every byte echoed comes back', async () => {
      const { peer, echoes } = await manyExchanged();
      expect(peer.received.reduce((a, b) => a + b.length, 0)).toBe(total);
      expect(echoes.reduce((a, b) => a + b.length, 0)).toBe(total);
    });

    test("the socket's counters equal the bytes and datagrams really moved", async () => {
      const { s } = await manyExchanged();
      expect(s.bytesWritten).toBe(total);
      expect(s.bytesRead).toBe(total);
      expect(s.sendCalls).toBe(count);
      expect(s.recvCalls).toBe(count);
    });

    test('usage() matches the counters while the socket is open', async () => {
      const { layer } = await manyExchanged();
      expect(layer.usage()).toMatchObject({ bytesSent: total, bytesReceived: total, billedBytes: 2 * total, sendCalls: count, receiveCalls: count, socketsCreated: 1, socketsOpen: 1, connects: 0 });
    });

    test('usage() stays exact after close: the final counters are folded into the ledger once', async () => {
      const { layer, s } = await manyExchanged();
      await closeSocket(s);
      expect(layer.usage()).toMatchObject({ bytesSent: total, bytesReceived: total, billedBytes: 2 * total, sendCalls: count, receiveCalls: count, socketsOpen: 0 });
    });
  });

  describe('send forms', () => {
    const buf = Buffer.from('0123456789');
    const forms: Array<[string, unknown[], string]> = [
      ['a buffer with offset and length sends that slice', [buf, 2, 3], Buffer.from('234').toString('hex')],
      ['a string', ['text'], Buffer.from('text').toString('hex')],
      ['an array of buffers, strings and Uint8Arrays is one datagram', [[Buffer.from('ab'), 'cd', new Uint8Array([0x65])]], Buffer.from('abcde').toString('hex')],
      ['a Uint8Array', [new Uint8Array([1, 2, 3])], '010203'],
      ['a DataView', [new DataView(new Uint8Array([9, 8]).buffer)], '0908'],
      ['an empty list is an empty datagram', [[]], ''],
    ];
    for (const [what, data, hex] of forms) {
      test(`${what}`, async () => {
        const peer = await udpPeer('udp4', false);
        const s = track(layerOf().createSocket('udp4'));
        await sendP(s, ...data, peer.port, '127.0.0.1');
        await arrivals(peer, 1);
        expect(peer.received.map((b) => b.toString('hex'))).toEqual([hex]);
      });
    }

    test('without an address a datagram goes to loopback, as with dgram', async () => {
      const peer = await udpPeer('udp4', false);
      const s = track(layerOf().createSocket('udp4'));
      await sendP(s, 'dflt', peer.port);
      expect(await arrivals(peer, 1)).toEqual(['dflt']);
    });

    test('a connected socket takes offset and length too', async () => {
      const peer = await udpPeer('udp4', false);
      const c = track(layerOf().createSocket('udp4'));
      await new Promise<void>((resolve) => c.connect(peer.port, '127.0.0.1', () => resolve()));
      await sendP(c, buf, 8, 2);
      expect(await arrivals(peer, 1)).toEqual(['89']);
    });

    test('a connected socket refuses a destination: EISCONN, thrown', async () => {
      const peer = await udpPeer('udp4', false);
      const c = track(layerOf().createSocket('udp4'));
      await new Promise<void>((resolve) => c.connect(peer.port, '127.0.0.1', () => resolve()));
      expect(() => c.send('x', peer.port, '127.0.0.1', () => {})).toThrow(expect.objectContaining({ code: 'EISCONN' }));
    });

    test('a number as data is ERR_INVALID_ARG_TYPE, thrown', async () => {
      const peer = await udpPeer('udp4', false);
      const s = track(layerOf().createSocket('udp4'));
      expect(() => s.send(42 as unknown as string, peer.port, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    });

    test('port 0 is ERR_SOCKET_BAD_PORT, thrown', () => {
      const s = track(layerOf().createSocket('udp4'));
      expect(() => s.send('x', 0, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_BAD_PORT' }));
    });

    test('offset and length past the end of the buffer are ERR_BUFFER_OUT_OF_BOUNDS, thrown', async () => {
      const peer = await udpPeer('udp4', false);
      const s = track(layerOf().createSocket('udp4'));
      expect(() => s.send(buf, 8, 5, peer.port, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'ERR_BUFFER_OUT_OF_BOUNDS' }));
    });
  });

  describe('sends while a name resolves', () => {
    /**
     * Four sends behind a resolution the test holds: a name, an address, a name that does not resolve, an
     * address. `open()` lets the resolution answer.
     */
    async function fourSends(): Promise<{ s: UdpSocket; peer: Peer; all: Promise<string[]>; open(): void }> {
      const peer = await udpPeer('udp4', false);
      const { resolver, open } = gatedResolver((name) => (name === 'nowhere.example' ? [] : [{ address: '127.0.0.1', family: 4 }]));
      const s = track(layerOf({ resolver }).createSocket('udp4'));
      const { cb, all } = reporter(4);
      s.send('1', peer.port, 'echo.example', cb('1'));
      s.send('2', peer.port, '127.0.0.1', cb('2'));
      s.send('3', peer.port, 'nowhere.example', cb('3'));
      s.send('4', peer.port, '127.0.0.1', cb('4'));
      return { s, peer, all, open };
    }

    test('every send waits in the queue, also those to an address', async () => {
      const { s } = await fourSends();
      expect(s.getSendQueueCount()).toBe(4);
    });

    test('datagrams leave in call order; the one whose name failed is skipped', async () => {
      const { peer, open } = await fourSends();
      open();
      expect(await arrivals(peer, 3)).toEqual(['1', '2', '4']);
    });

    test('callbacks run in call order; a failed resolution fails only its own send (ENOTFOUND)', async () => {
      const { all, open } = await fourSends();
      open();
      expect(await all).toEqual(['1', '2', '3:ENOTFOUND', '4']);
    });

    test('the queue is empty once every send is reported', async () => {
      const { s, all, open } = await fourSends();
      open();
      await all;
      expect(s.getSendQueueCount()).toBe(0);
    });
  });

  test('a datagram larger than UDP allows fails with EMSGSIZE', async () => {
    const peer = await udpPeer('udp4', false);
    const s = track(layerOf().createSocket('udp4'));
    expect(await sendErr(s, Buffer.alloc(70_000), peer.port, '127.0.0.1')).toMatchObject({ code: 'EMSGSIZE', syscall: 'send', port: peer.port });
  });

  test('after EMSGSIZE the socket carries on, and only the datagram that left is counted', async () => {
    const peer = await udpPeer('udp4', false);
    const s = track(layerOf().createSocket('udp4'));
    await sendErr(s, Buffer.alloc(70_000), peer.port, '127.0.0.1');
    await sendP(s, 'small', peer.port, '127.0.0.1');
    expect(await arrivals(peer, 1)).toEqual(['small']);
    expect(s.sendCalls).toBe(1);
  });

  describe('a full kernel send buffer (EAGAIN)', () => {
    /**
     * Three sends whose first three attempts the kernel refuses with EAGAIN. Loopback drops at the receiver
     * instead of refusing the sender, so the refusal is injected into the binding (restored after the test).
     */
    async function refusedSends(): Promise<{ s: UdpSocket; peer: Peer; all: Promise<string[]> }> {
      const peer = await udpPeer('udp4', false);
      const s = track(layerOf().createSocket('udp4'));
      const nat = getLoop().nat;
      const real = nat.udp_send;
      let refusals = 3;
      nat.udp_send = (...args) => (refusals-- > 0 ? -osConstants.errno.EAGAIN : real.apply(nat, args));
      opened.push({ close: () => (nat.udp_send = real) });
      const { cb, all } = reporter(3);
      for (const m of ['a', 'b', 'c']) s.send(m, peer.port, '127.0.0.1', cb(m));
      return { s, peer, all };
    }

    test('stalls the queue: every send waits, counted and sized', async () => {
      const { s } = await refusedSends();
      expect(s.getSendQueueCount()).toBe(3);
      expect(s.getSendQueueSize()).toBe(3);
    });

    test('retries: every callback succeeds, in call order', async () => {
      const { all } = await refusedSends();
      expect(await all).toEqual(['a', 'b', 'c']);
    });

    test('retries: the datagrams arrive in call order and the queue empties', async () => {
      const { s, peer } = await refusedSends();
      expect(await arrivals(peer, 3)).toEqual(['a', 'b', 'c']);
      expect(s.getSendQueueCount()).toBe(0);
    });
  });

  test('a destination of the other family is EINVAL, as with dgram, and nothing is written', async () => {
    const s = track(layerOf().createSocket('udp4'));
    const err = await sendErr(s, 'x', 9, '::1');
    expect(err).toMatchObject({ code: 'EINVAL', syscall: 'send' });
    expect(s.bytesWritten).toBe(0);
  });
});

describe('policy', () => {
  /** A layer under the production policy, which denies loopback. */
  function productionLayer(): SocketLayer {
    const layer = new SocketLayer({ appId: 'x', idleTimeoutMs: 0 });
    opened.push(layer);
    return layer;
  }

  test('production policy denies a send to loopback: EACCES with the rule, in the callback', async () => {
    const peer = await udpPeer('udp4', false);
    const s = track(productionLayer().createSocket('udp4'));
    const err = await sendErr(s, 'secret', peer.port, '127.0.0.1');
    expect(err).toMatchObject({ code: 'EACCES', rule: 'loopback', syscall: 'send', address: '127.0.0.1', port: peer.port });
  });

  test("a denied send without a callback is an 'error' event", async () => {
    const peer = await udpPeer('udp4', false);
    const s = track(productionLayer().createSocket('udp4'));
    const ev = errorEvent(s);
    s.send('secret', peer.port, 'localhost');
    expect(await ev).toMatchObject({ code: 'EACCES', syscall: 'send' });
  });

  test('connecting is vetted the same way: EACCES with the rule, in the callback', async () => {
    const peer = await udpPeer('udp4', false);
    const c = track(productionLayer().createSocket('udp4'));
    const cerr = await new Promise<NodeJS.ErrnoException & { rule?: string }>((resolve) => c.connect(peer.port, '127.0.0.1', (e?: Error) => resolve(e as never)));
    expect(cerr).toMatchObject({ code: 'EACCES', rule: 'loopback', syscall: 'connect' });
  });

  test('a denied connect leaves the socket unconnected', async () => {
    const peer = await udpPeer('udp4', false);
    const c = track(productionLayer().createSocket('udp4'));
    await new Promise<void>((resolve) => c.connect(peer.port, '127.0.0.1', () => resolve()));
    expect(() => c.remoteAddress()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }));
  });

  test('nothing denied leaves: the peer receives nothing and the socket counts nothing', async () => {
    const peer = await udpPeer('udp4', false);
    const layer = productionLayer();
    const s = track(layer.createSocket('udp4'));
    await sendErr(s, 'secret', peer.port, '127.0.0.1');
    await sendErr(s, 'secret', peer.port, 'localhost');
    const c = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => c.connect(peer.port, '127.0.0.1', () => resolve()));
    await flushed(peer);
    expect(peer.received).toHaveLength(0);
    expect(s.bytesWritten).toBe(0);
    expect(s.sendCalls).toBe(0);
  });

  test('usage() counts every denial, and no bytes or connects for them', async () => {
    const peer = await udpPeer('udp4', false);
    const layer = productionLayer();
    const s = track(layer.createSocket('udp4'));
    await sendErr(s, 'secret', peer.port, '127.0.0.1');
    await sendErr(s, 'secret', peer.port, 'localhost');
    const c = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => c.connect(peer.port, '127.0.0.1', () => resolve()));
    const u = layer.usage();
    expect(u.denied).toBe(3);
    expect(u.bytesSent).toBe(0);
    expect(u.connects).toBe(0);
  });

  describe('an operator policy: allowed and denied destinations on one socket', () => {
    /** Sends to 127.0.0.1, 127.0.0.2 (denied: loopback), 127.0.0.1, recording each callback. */
    async function mixedSends(): Promise<{ layer: SocketLayer; peer: Peer; all: Promise<string[]> }> {
      const peer = await udpPeer('udp4', false);
      const layer = layerOf({ policy: loopbackOnly });
      const s = track(layer.createSocket('udp4'));
      const { cb, all } = reporter(3, (e) => e.rule);
      s.send('a', peer.port, '127.0.0.1', cb('a'));
      s.send('b', peer.port, '127.0.0.2', cb('b'));
      s.send('c', peer.port, '127.0.0.1', cb('c'));
      return { layer, peer, all };
    }

    test('callbacks report in call order, the denied one with its rule', async () => {
      const { all } = await mixedSends();
      expect(await all).toEqual(['a', 'b:loopback', 'c']);
    });

    test('only the allowed datagrams arrive, in order', async () => {
      const { peer } = await mixedSends();
      expect(await arrivals(peer, 2)).toEqual(['a', 'c']);
      await flushed(peer);
      expect(peer.received.map(String)).toEqual(['a', 'c']);
    });

    test('usage() counts the one denial', async () => {
      const { layer, all } = await mixedSends();
      await all;
      expect(layer.usage().denied).toBe(1);
    });
  });

  describe('a denied connect with a send queued behind it', () => {
    async function queuedBehindDeniedConnect(): Promise<{ peer: Peer; errors: Error[]; queued: NodeJS.ErrnoException & { rule?: string } }> {
      const peer = await udpPeer('udp4', false);
      const s = track(productionLayer().createSocket('udp4'));
      const errors: Error[] = [];
      s.on('error', (e) => errors.push(e));
      s.connect(peer.port, '127.0.0.1');
      const queued = await sendErr(s, 'queued');
      return { peer, errors, queued };
    }

    test("the queued send's callback fails with the connect's EACCES", async () => {
      const { queued } = await queuedBehindDeniedConnect();
      expect(queued).toMatchObject({ code: 'EACCES', rule: 'loopback' });
    });

    test("only the connect is an 'error' event: the queued send reports through its callback alone", async () => {
      const { errors } = await queuedBehindDeniedConnect();
      expect(errors).toHaveLength(1);
    });

    test('the peer receives nothing', async () => {
      const { peer } = await queuedBehindDeniedConnect();
      await flushed(peer);
      expect(peer.received).toHaveLength(0);
    });
  });
});

describe('bind rules', () => {
  test('bind() with no arguments binds the any-address and an ephemeral port', async () => {
    const a = track(layerOf().createSocket('udp4'));
    await new Promise<void>((resolve) => a.bind(() => resolve()));
    expect(a.address()).toMatchObject({ address: '0.0.0.0', family: 'IPv4' });
    expect(a.address().port).toBeGreaterThan(0);
  });

  test('a second bind() is ERR_SOCKET_ALREADY_BOUND, thrown', async () => {
    const a = track(layerOf().createSocket('udp4'));
    await new Promise<void>((resolve) => a.bind(() => resolve()));
    expect(() => a.bind()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_ALREADY_BOUND' }));
  });

  test("bind({ port: 0, address: '::' }) binds a udp6 socket", async () => {
    const b = track(layerOf().createSocket('udp6'));
    await new Promise<void>((resolve) => b.bind({ port: 0, address: '::' }, () => resolve()));
    expect(b.address()).toMatchObject({ address: '::', family: 'IPv6' });
  });

  test('address() of a socket that is not bound is EBADF, thrown', () => {
    const c = track(layerOf().createSocket('udp4'));
    expect(() => c.address()).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  const refused: Array<[string, unknown[], Record<string, unknown>]> = [
    ['a fixed port', [4000], { port: 4000 }],
    ['a specific address', [0, '127.0.0.1'], { address: '127.0.0.1' }],
    ['a fixed port on the any-address, as options', [{ port: 53, address: '0.0.0.0' }], { port: 53 }],
  ];
  for (const [what, args, fields] of refused) {
    test(`bind() to ${what} is an EACCES 'error' event, and no 'listening'`, async () => {
      const c = track(layerOf().createSocket('udp4'));
      let listening = false;
      c.on('listening', () => (listening = true));
      const err = errorEvent(c);
      (c.bind as (...a: unknown[]) => void)(...args);
      expect(await err).toMatchObject({ code: 'EACCES', syscall: 'bind', ...fields });
      expect(listening).toBe(false);
    });

    test(`after a refused bind() to ${what} the socket still binds to the any-address`, async () => {
      const c = track(layerOf().createSocket('udp4'));
      const err = errorEvent(c);
      (c.bind as (...a: unknown[]) => void)(...args);
      await err;
      const listening = new Promise<void>((resolve) => c.once('listening', () => resolve()));
      c.bind(0, '0.0.0.0');
      await listening;
      expect(c.address()).toMatchObject({ address: '0.0.0.0', family: 'IPv4' });
    });
  }

  test('several refused binds in a row still leave the socket usable', async () => {
    const c = track(layerOf().createSocket('udp4'));
    let listening = false;
    c.on('listening', () => (listening = true));
    for (const [, args] of refused) {
      const err = errorEvent(c);
      (c.bind as (...a: unknown[]) => void)(...args);
      await err;
    }
    expect(listening).toBe(false);
    const bound = new Promise<void>((resolve) => c.once('listening', () => resolve()));
    c.bind(0, '0.0.0.0');
    await bound;
  });
});

describe('connect rules', () => {
  /** A socket connected to an echoing peer. */
  async function connectedSocket(layer = layerOf()): Promise<{ s: UdpSocket; peer: Peer }> {
    const peer = await udpPeer('udp4');
    const s = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => s.connect(peer.port, '127.0.0.1', () => resolve()));
    return { s, peer };
  }

  /** A loopback port with no listener: bound, then released. */
  async function closedUdpPort(): Promise<number> {
    const tmp = dgram.createSocket('udp4');
    await new Promise<void>((r) => tmp.bind(0, '127.0.0.1', () => r()));
    const p = tmp.address().port;
    await new Promise<void>((r) => tmp.close(() => r()));
    return p;
  }

  test('remoteAddress() of a socket never connected is ERR_SOCKET_DGRAM_NOT_CONNECTED', () => {
    const s = track(layerOf().createSocket('udp4'));
    expect(() => s.remoteAddress()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }));
  });

  test('connecting a connected socket is EISCONN, thrown', async () => {
    const { s, peer } = await connectedSocket();
    expect(() => s.connect(peer.port, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'EISCONN' }));
  });

  test('disconnect() forgets the peer: remoteAddress() is ERR_SOCKET_DGRAM_NOT_CONNECTED', async () => {
    const { s } = await connectedSocket();
    s.disconnect();
    expect(() => s.remoteAddress()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }));
  });

  test('a second disconnect() is ERR_SOCKET_DGRAM_NOT_CONNECTED, thrown', async () => {
    const { s } = await connectedSocket();
    s.disconnect();
    expect(() => s.disconnect()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }));
  });

  test('disconnect() keeps the local port', async () => {
    const { s } = await connectedSocket();
    const local = s.address().port;
    s.disconnect();
    expect(s.address().port).toBe(local);
  });

  test('after disconnect() the socket sends with a destination and receives the reply', async () => {
    const { s, peer } = await connectedSocket();
    s.disconnect();
    const echo = nextMessage(s);
    await sendP(s, 'after', peer.port, '127.0.0.1');
    expect((await echo)[0].toString()).toBe('after');
  });

  // A connected socket learns that nobody listens from the ICMP answer; like dgram that is an 'error' with
  // syscall 'recvmsg', and the socket stays open.
  test("ICMP port unreachable on a connected socket is an ECONNREFUSED 'error' event (syscall recvmsg)", async () => {
    const closedPort = await closedUdpPort();
    const d = track(layerOf().createSocket('udp4'));
    await new Promise<void>((resolve) => d.connect(closedPort, '127.0.0.1', () => resolve()));
    const refused = errorEvent(d);
    await sendP(d, 'anyone?');
    expect(await refused).toMatchObject({ code: 'ECONNREFUSED', syscall: 'recvmsg', address: '127.0.0.1', port: closedPort });
  });

  test('after ICMP port unreachable the socket stays open and sends again', async () => {
    const closedPort = await closedUdpPort();
    const d = track(layerOf().createSocket('udp4'));
    await new Promise<void>((resolve) => d.connect(closedPort, '127.0.0.1', () => resolve()));
    const refused = errorEvent(d);
    await sendP(d, 'anyone?');
    await refused;
    // The second datagram is refused as well; that error is expected, and may arrive before teardown closes d.
    d.on('error', () => {});
    expect(await sendP(d, 'still open')).toBe(10);
  });

  test('usage() counts every connect, also one to a port nobody listens on', async () => {
    const layer = layerOf();
    await connectedSocket(layer);
    const closedPort = await closedUdpPort();
    const d = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => d.connect(closedPort, '127.0.0.1', () => resolve()));
    expect(layer.usage().connects).toBe(2);
  });
});

describe('socket types', () => {
  for (const [type, code] of [
    ['tcp', 'EPROTONOSUPPORT'],
    ['unix_dgram', 'EAFNOSUPPORT'],
  ] as const) {
    test(`createSocket('${type}') is ${code}, thrown, and creates nothing`, () => {
      const layer = layerOf();
      expect(() => layer.createSocket(type as 'udp4')).toThrow(expect.objectContaining({ code }));
      expect(layer.usage().socketsCreated).toBe(0);
    });
  }

  test("createSocket({ type: 'udp5' }) is EPROTONOSUPPORT, thrown, and creates nothing", () => {
    const layer = layerOf();
    expect(() => layer.createSocket({ type: 'udp5' as 'udp4' })).toThrow(expect.objectContaining({ code: 'EPROTONOSUPPORT' }));
    expect(layer.usage().socketsCreated).toBe(0);
  });
});

describe('broadcast and multicast', () => {
  test('setBroadcast(false) is accepted', () => {
    const s = track(layerOf().createSocket('udp4'));
    expect(() => s.setBroadcast(false)).not.toThrow();
  });

  const denied: Array<[string, (s: UdpSocket) => unknown, string | undefined]> = [
    ['setBroadcast(true)', (s) => s.setBroadcast(true), 'setBroadcast'],
    ['setTTL(64)', (s) => s.setTTL(64), 'setTTL'],
    ['addMembership', (s) => s.addMembership('239.1.1.1'), 'addMembership'],
    ['dropMembership', (s) => s.dropMembership('239.1.1.1'), undefined],
    ['addSourceSpecificMembership', (s) => s.addSourceSpecificMembership('10.0.0.1', '232.1.1.1'), undefined],
    ['dropSourceSpecificMembership', (s) => s.dropSourceSpecificMembership('10.0.0.1', '232.1.1.1'), undefined],
    ['setMulticastTTL', (s) => s.setMulticastTTL(1), undefined],
    ['setMulticastLoopback', (s) => s.setMulticastLoopback(true), undefined],
    ['setMulticastInterface', (s) => s.setMulticastInterface('0.0.0.0'), undefined],
  ];
  for (const [what, call, syscall] of denied) {
    test(`${what} is denied: EACCES, thrown`, () => {
      const s = track(layerOf().createSocket('udp4'));
      expect(() => call(s)).toThrow(expect.objectContaining({ code: 'EACCES', ...(syscall === undefined ? {} : { syscall }) }));
    });
  }

  test('setTTL() with a non-number is ERR_INVALID_ARG_TYPE, thrown', () => {
    const s = track(layerOf().createSocket('udp4'));
    expect(() => s.setTTL('64' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

describe('socket options (emulate mode)', () => {
  // Before and after the socket exists natively: the emulation does not need it.
  for (const bound of [false, true]) {
    const when = bound ? 'after bind' : 'before bind';
    for (const [level, name, value, hex] of SOCKOPT_MOCKS) {
      test(`${when}: option ${level}/${name} answers the mock value ${value}, bytes ${hex}, truncated to the length asked`, async () => {
        const s = track(layerOf().createSocket('udp4'));
        if (bound) await new Promise<void>((resolve) => s.bind(() => resolve()));
        expect(s.getsockopt(level, name)).toBe(value);
        expect((s.getsockopt(level, name, 64) as Buffer).toString('hex')).toBe(hex);
        expect((s.getsockopt(level, name, 1) as Buffer).toString('hex')).toBe(hex.slice(0, 2));
      });
    }

    test(`${when}: SO_ERROR reads the real (zero) error`, async () => {
      const s = track(layerOf().createSocket('udp4'));
      if (bound) await new Promise<void>((resolve) => s.bind(() => resolve()));
      expect(s.getsockopt(C.SOL_SOCKET, C.SO_ERROR)).toBe(0);
    });
  }

  test('setting supported options is accepted and ignored: the buffer sizes still read the mock values', () => {
    const s = track(layerOf().createSocket('udp4'));
    s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 4096);
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, { onoff: 1, linger: 3 });
    s.setRecvBufferSize(8192);
    s.setSendBufferSize(8192);
    expect(s.getRecvBufferSize()).toBe(2097152);
    expect(s.getSendBufferSize()).toBe(2097152);
  });

  for (const [level, name, what] of [
    [C.SOL_SOCKET, C.SO_TYPE, 'SO_TYPE'],
    [C.SOL_SOCKET, C.SO_BROADCAST, 'SO_BROADCAST'],
    [C.SOL_IP, C.IP_TTL, 'IP_TTL'],
    [C.SOL_IP, C.IP_TOS, 'IP_TOS'],
    [C.SOL_UDP, 1, 'SOL_UDP/1'],
  ] as const) {
    test(`${what} is not supported: getting and setting it are EACCES, thrown`, () => {
      const s = track(layerOf().createSocket('udp4'));
      expect(() => s.getsockopt(level, name)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'getsockopt' }));
      expect(() => s.setsockopt(level, name, 1)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'setsockopt' }));
    });
  }

  test('setting SO_ERROR is EACCES, thrown', () => {
    const s = track(layerOf().createSocket('udp4'));
    expect(() => s.setsockopt(C.SOL_SOCKET, C.SO_ERROR, 0)).toThrow(expect.objectContaining({ code: 'EACCES' }));
  });

  test('a non-number option value is ERR_INVALID_ARG_TYPE, thrown', () => {
    const s = track(layerOf().createSocket('udp4'));
    expect(() => s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 'big' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

describe('socket options (native mode)', () => {
  async function nativeBound(): Promise<UdpSocket> {
    const s = track(layerOf({ sockopts: 'native' }).createSocket('udp4'));
    await new Promise<void>((resolve) => s.bind(() => resolve()));
    return s;
  }

  test('before the socket exists natively, reading an option is EBADF, thrown', () => {
    const s = track(layerOf({ sockopts: 'native' }).createSocket('udp4'));
    expect(() => s.getRecvBufferSize()).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  test('setRecvBufferSize() applies the real option', async () => {
    const s = await nativeBound();
    s.setRecvBufferSize(65536);
    // Linux doubles the value it stores for bookkeeping, as dgram's getRecvBufferSize() shows too.
    expect(s.getRecvBufferSize()).toBe(131072);
  });

  test('SO_REUSEADDR is set and read back natively, on and off', async () => {
    const s = await nativeBound();
    s.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, 1);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_REUSEADDR)).toBe(1);
    s.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, 0);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_REUSEADDR)).toBe(0);
  });

  test('an option outside the supported set is still EACCES', async () => {
    const s = await nativeBound();
    expect(() => s.getsockopt(C.SOL_IP, C.IP_TTL)).toThrow(expect.objectContaining({ code: 'EACCES' }));
  });

  test('the recvBufferSize option is validated at creation: -1 is ERR_OUT_OF_RANGE, thrown', () => {
    const layer = layerOf({ sockopts: 'native' });
    expect(() => layer.createSocket({ type: 'udp4', recvBufferSize: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  test('the recvBufferSize option is applied when the socket opens', async () => {
    const s = track(layerOf({ sockopts: 'native' }).createSocket({ type: 'udp4', recvBufferSize: 32768 }));
    await new Promise<void>((resolve) => s.bind(() => resolve()));
    expect(s.getRecvBufferSize()).toBe(65536);
  });
});

describe('close and lifetime', () => {
  /** A socket that sent one byte to a silent peer, then closed. */
  async function closedAfterOneSend(): Promise<{ layer: SocketLayer; s: UdpSocket; peer: Peer }> {
    const peer = await udpPeer('udp4', false);
    const layer = layerOf();
    const s = layer.createSocket('udp4');
    await sendP(s, 'x', peer.port, '127.0.0.1');
    await closeSocket(s);
    return { layer, s, peer };
  }

  test("close() twice: 'close' is emitted once, and the second close() is a no-op", async () => {
    const s = layerOf().createSocket('udp4');
    let closes = 0;
    s.on('close', () => closes++);
    s.close();
    await new Promise<void>((resolve) => s.close(() => resolve()));
    // A second 'close' would be emitted in the same or the next turn as the first.
    await new Promise((r) => setImmediate(r));
    expect(closes).toBe(1);
  });

  const afterClose: Array<[string, (s: UdpSocket, port: number) => unknown, Record<string, unknown>]> = [
    ['send() without a callback', (s, port) => s.send('y', port, '127.0.0.1'), { code: 'EPIPE', syscall: 'send' }],
    ['address()', (s) => s.address(), { code: 'EPIPE' }],
    ['bind()', (s) => s.bind(), { code: 'EPIPE' }],
    ['connect()', (s, port) => s.connect(port), { code: 'EPIPE' }],
    ['getsockopt()', (s) => s.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF), { code: 'EPIPE' }],
  ];
  for (const [what, call, fields] of afterClose) {
    test(`after close(), ${what} is EPIPE, thrown`, async () => {
      const { s, peer } = await closedAfterOneSend();
      expect(() => call(s, peer.port)).toThrow(expect.objectContaining(fields));
    });
  }

  test('after close(), a send with a callback fails it with EPIPE', async () => {
    const { s, peer } = await closedAfterOneSend();
    expect(await sendErr(s, 'y', peer.port, '127.0.0.1')).toMatchObject({ code: 'EPIPE' });
  });

  test('after close(), usage() and the socket keep the counters of what was sent', async () => {
    const { layer, s } = await closedAfterOneSend();
    expect(layer.usage()).toMatchObject({ socketsOpen: 0, bytesSent: 1, sendCalls: 1 });
    expect(s.bytesWritten).toBe(1);
  });

  describe('sends waiting on a resolution when the socket closes', () => {
    async function closedWhileResolving(): Promise<{ peer: Peer; err: ReturnType<typeof sendErr>; open(): void }> {
      const peer = await udpPeer('udp4', false);
      const { resolver, open } = gatedResolver(() => [{ address: '127.0.0.1', family: 4 }]);
      const s = layerOf({ resolver }).createSocket('udp4');
      const err = sendErr(s, 'late', peer.port, 'slow.example');
      s.close();
      return { peer, err, open };
    }

    test('fail with EPIPE', async () => {
      const { err } = await closedWhileResolving();
      expect(await err).toMatchObject({ code: 'EPIPE' });
    });

    test('send nothing when the resolution completes after the close', async () => {
      const { peer, err, open } = await closedWhileResolving();
      await err;
      open();
      // Let the resolution's continuation run before the flush marker goes out.
      await new Promise((r) => setImmediate(r));
      await flushed(peer);
      expect(peer.received).toHaveLength(0);
    });
  });

  describe('layer.close() with 40 UDP sockets open', () => {
    /**
     * 40 open sockets, half udp4 that sent a datagram, half udp6 bound; `closes` resolve on their 'close';
     * `before` is the descriptor count once the peer is up and before any socket opened.
     */
    async function fortyOpen(): Promise<{ layer: SocketLayer; closes: Promise<void>[]; before: number }> {
      const peer = await udpPeer('udp4');
      // The thread's loop (created by the first socket of the process) exists before the baseline, whichever
      // test runs first.
      getLoop();
      const before = fdCount();
      const layer = new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0 });
      opened.push(layer);
      const sockets = Array.from({ length: 40 }, (_, i) => layer.createSocket(i % 2 ? 'udp4' : 'udp6'));
      const closes = sockets.map((s) => new Promise<void>((r) => s.once('close', () => r())));
      await Promise.all(sockets.filter((s) => s.type === 'udp4').map((s) => sendP(s, 'hi', peer.port, '127.0.0.1')));
      await Promise.all(sockets.filter((s) => s.type === 'udp6').map((s) => new Promise<void>((r) => s.bind(() => r()))));
      return { layer, closes, before };
    }

    test("closes every socket ('close' on each) and returns descriptors to the baseline", async () => {
      const { layer, closes, before } = await fortyOpen();
      expect(fdCount()).toBe(before + 40);
      expect(layer.size).toBe(40);
      await layer.close();
      await Promise.all(closes);
      expect(fdCount()).toBe(before);
    });

    test('usage() afterwards holds every socket and send, none open', async () => {
      const { layer, closes } = await fortyOpen();
      await layer.close();
      await Promise.all(closes);
      expect(layer.usage()).toMatchObject({ socketsOpen: 0, socketsCreated: 40, sendCalls: 20, bytesSent: 40 });
    });

    test('createSocket() afterwards is ERR_SOCKGUARD_LAYER_CLOSED, thrown', async () => {
      const { layer } = await fortyOpen();
      await layer.close();
      expect(() => layer.createSocket('udp4')).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_LAYER_CLOSED' }));
    });
  });

  test('open/use/close cycles leave no descriptor behind', async () => {
    const peer = await udpPeer('udp6');
    const layer = layerOf();
    getLoop(); // exists before the baseline, whichever test runs first
    const before = fdCount();
    for (let round = 0; round < 5; round++) {
      const sockets = Array.from({ length: 20 }, () => layer.createSocket('udp6'));
      await Promise.all(sockets.map((s) => sendP(s, 'ping', peer.port, '::1')));
      await Promise.all(sockets.map((s) => closeSocket(s)));
    }
    expect(fdCount()).toBe(before);
  });

  // Run against the built package (npm run build:ts), like the other process-lifetime tests.
  test.runIf(existsSync(distPath))('an unref()ed UDP socket lets the process exit', async () => {
    const peer = await udpPeer('udp4');
    const unrefd = await runChild(
      `const { SocketLayer } = await import(process.env.SG_DIST);
       const layer = new SocketLayer({ policy: 'development' });
       const s = layer.createSocket('udp4');
       s.unref();
       s.send('hi', Number(process.env.SG_PORT), '127.0.0.1');`,
      peer.port,
    );
    expect(unrefd.code).toBe(0);
    expect(peer.received.map(String)).toEqual(['hi']);
  });

  test.runIf(existsSync(distPath))('a ref()ed UDP socket keeps the process alive until it is closed', async () => {
    const peer = await udpPeer('udp4');
    // Staying alive can only be shown over a span of time: the child holds its socket open 300 ms after the
    // echo, and exits only once it closes it. The timer is unref()ed, so only the socket keeps the process up.
    const kept = await runChild(
      `const { SocketLayer } = await import(process.env.SG_DIST);
       const layer = new SocketLayer({ policy: 'development' });
       const s = layer.createSocket('udp4');
       s.on('message', () => setTimeout(() => { s.close(); }, 300).unref());
       s.send('echo me', Number(process.env.SG_PORT), '127.0.0.1');`,
      peer.port,
    );
    expect(kept.code).toBe(0);
    expect(kept.ms).toBeGreaterThanOrEqual(300);
  });
});

describe('idle reclaim', () => {
  test("the layer's own timer reclaims an idle UDP socket: 'close' without 'error'", async () => {
    // End to end through the real sweep timer; the tests below drive sweeps on a clock of their own.
    const s = track(layerOf({ idleTimeoutMs: 100, sweepIntervalMs: 10 }).createSocket('udp4'));
    let errored = false;
    s.on('error', () => (errored = true));
    await new Promise<void>((resolve) => s.bind(() => resolve()));
    await new Promise<void>((resolve) => s.once('close', () => resolve()));
    expect(errored).toBe(false);
    expect(s.reclaimed).toBe(true);
  });

  /** A connected socket that exchanged one datagram with an echoing peer, then idles. */
  async function usedSocket(layer: SocketLayer): Promise<{ s: UdpSocket; peer: Peer }> {
    const peer = await udpPeer('udp4');
    const s = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => s.connect(peer.port, '127.0.0.1', () => resolve()));
    const echo = nextMessage(s);
    await sendP(s, 'once');
    await echo;
    return { s, peer };
  }

  test('a socket idle for the timeout is reclaimed and counted in usage()', async () => {
    const { layer, sweep } = reclaimLayer();
    const { s } = await usedSocket(layer);
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    sweep(0);
    expect(sweep(IDLE)).toBe(1);
    await closed;
    expect(s.reclaimed).toBe(true);
    expect(layer.usage()).toMatchObject({ reclaimed: 1, socketsOpen: 0, bytesSent: 4, bytesReceived: 4 });
  });

  test('a socket is not reclaimed before the timeout', async () => {
    const { layer, sweep } = reclaimLayer();
    const { s } = await usedSocket(layer);
    sweep(0);
    expect(sweep(IDLE - 1)).toBe(0);
    expect(s.reclaimed).toBe(false);
  });

  /** A used socket, reclaimed by a sweep a timeout after its last operation. */
  async function reclaimedSocket(): Promise<{ s: UdpSocket; peer: Peer }> {
    const { layer, sweep } = reclaimLayer();
    const used = await usedSocket(layer);
    const closed = new Promise<void>((resolve) => used.s.once('close', () => resolve()));
    sweep(0);
    sweep(IDLE);
    await closed;
    return used;
  }

  test('a reclaimed socket fails a send with a callback with EPIPE', async () => {
    const { s } = await reclaimedSocket();
    expect(await sendErr(s, 'late')).toMatchObject({ code: 'EPIPE', syscall: 'send' });
  });

  const afterReclaim: Array<[string, (s: UdpSocket) => unknown]> = [
    ['send() without a callback', (s) => s.send('late')],
    ['address()', (s) => s.address()],
    ['setsockopt()', (s) => s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 1)],
  ];
  for (const [what, call] of afterReclaim) {
    test(`on a reclaimed socket, ${what} is EPIPE, thrown`, async () => {
      const { s } = await reclaimedSocket();
      expect(() => call(s)).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    });
  }

  test('close() of a reclaimed socket is a no-op', async () => {
    const { s } = await reclaimedSocket();
    expect(() => s.close()).not.toThrow();
  });

  test('nothing a reclaimed socket is asked to send leaves', async () => {
    const { s, peer } = await reclaimedSocket();
    s.send('late', () => {});
    await flushed(peer);
    expect(peer.received.map(String)).toEqual(['once']);
  });

  test('reclaim publishes one sockguard:reclaim event with the peer and the bytes moved', async () => {
    const { layer, sweep } = reclaimLayer();
    const events: Array<Record<string, unknown>> = [];
    const onReclaim = (m: unknown) => events.push(m as Record<string, unknown>);
    subscribe('sockguard:reclaim', onReclaim);
    try {
      const { peer } = await usedSocket(layer);
      sweep(0);
      sweep(IDLE);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ appId: layer.appId, address: '127.0.0.1', port: peer.port, bytesSent: 4, bytesReceived: 4 });
    } finally {
      unsubscribe('sockguard:reclaim', onReclaim);
    }
  });

  test('sending is activity: a socket that sent since the last sweep is kept while an idle one goes', async () => {
    const peer = await udpPeer('udp4', false);
    const { layer, sweep } = reclaimLayer();
    const sender = track(layer.createSocket('udp4'));
    const idle = track(layer.createSocket('udp4'));
    sweep(0);
    await sendP(sender, 'tick', peer.port, '127.0.0.1');
    expect(sweep(IDLE)).toBe(1);
    expect(idle.reclaimed).toBe(true);
    expect(sender.reclaimed).toBe(false);
  });

  test('receiving is activity: a socket that received a datagram since the last sweep is kept', async () => {
    const { layer, sweep } = reclaimLayer();
    const reader = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => reader.bind(() => resolve()));
    const idle = track(layer.createSocket('udp4'));
    const feeder = dgram.createSocket('udp4');
    opened.push({ close: () => new Promise<void>((r) => feeder.close(() => r())) });
    sweep(0);
    const got = nextMessage(reader);
    feeder.send('tock', reader.address().port, '127.0.0.1');
    await got;
    expect(sweep(IDLE)).toBe(1);
    expect(idle.reclaimed).toBe(true);
    expect(reader.reclaimed).toBe(false);
  });

  test('an option read is activity: a socket asked for an option since the last sweep is kept', async () => {
    const { layer, sweep } = reclaimLayer();
    const asker = track(layer.createSocket('udp4'));
    const idle = track(layer.createSocket('udp4'));
    sweep(0);
    asker.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF);
    expect(sweep(IDLE)).toBe(1);
    expect(idle.reclaimed).toBe(true);
    expect(asker.reclaimed).toBe(false);
  });
});

describe('quotas', () => {
  // A fake wall clock for the quota windows: mid-minute, mid-day UTC, so no window rolls unless a test moves it.
  const T0 = Date.UTC(2024, 2, 10, 12, 0, 30);
  function quotaLayer(quotas: unknown): { layer: SocketLayer; clock: { now: number } } {
    const clock = { now: T0 };
    return { layer: layerOf({ quotas: quotas as never, clock: () => clock.now }), clock };
  }

  test('the 4th send over { sends: 3 } per minute fails its callback with ERR_SOCKGUARD_OVER_QUOTA', async () => {
    const peer = await udpPeer('udp4', false);
    const { layer } = quotaLayer({ perMinute: { sends: 3 } });
    const s = track(layer.createSocket('udp4'));
    for (let i = 0; i < 3; i++) await sendP(s, `m${i}`, peer.port, '127.0.0.1');
    expect(await sendErr(s, 'm3', peer.port, '127.0.0.1')).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'sends', window: 'minute' });
  });

  test('usage() counts the sends admitted and the one over quota', async () => {
    const peer = await udpPeer('udp4', false);
    const { layer } = quotaLayer({ perMinute: { sends: 3 } });
    const s = track(layer.createSocket('udp4'));
    for (let i = 0; i < 3; i++) await sendP(s, `m${i}`, peer.port, '127.0.0.1');
    await sendErr(s, 'm3', peer.port, '127.0.0.1');
    expect(layer.usage()).toMatchObject({ sendCalls: 3, overQuota: 1 });
  });

  test("a send over quota without a callback is an 'error' event and the socket stays open", async () => {
    const peer = await udpPeer('udp4', false);
    const { layer } = quotaLayer({ perMinute: { sends: 1 } });
    const s = track(layer.createSocket('udp4'));
    await sendP(s, 'm0', peer.port, '127.0.0.1');
    const ev = errorEvent(s);
    s.send('m1', peer.port, '127.0.0.1');
    expect(await ev).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'sends' });
    expect(() => s.address()).not.toThrow();
  });

  test('nothing of a send over quota leaves', async () => {
    const peer = await udpPeer('udp4', false);
    const { layer } = quotaLayer({ perMinute: { sends: 1 } });
    const s = track(layer.createSocket('udp4'));
    await sendP(s, 'm0', peer.port, '127.0.0.1');
    await sendErr(s, 'm1', peer.port, '127.0.0.1');
    await flushed(peer);
    expect(peer.received.map(String)).toEqual(['m0']);
    expect(s.sendCalls).toBe(1);
  });

  test('the next minute window admits sends again', async () => {
    const peer = await udpPeer('udp4', false);
    const { layer, clock } = quotaLayer({ perMinute: { sends: 1 } });
    const s = track(layer.createSocket('udp4'));
    await sendP(s, 'm0', peer.port, '127.0.0.1');
    await sendErr(s, 'm1', peer.port, '127.0.0.1');
    clock.now += 60_000;
    await sendP(s, 'm2', peer.port, '127.0.0.1');
    expect(await arrivals(peer, 2)).toEqual(['m0', 'm2']);
  });

  test('creates are metered: createSocket over quota throws and creates nothing', () => {
    const { layer } = quotaLayer({ perMinute: { creates: 2 } });
    track(layer.createSocket('udp4'));
    track(layer.createSocket('udp4'));
    expect(() => layer.createSocket('udp4')).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'creates', window: 'minute' }));
    expect(layer.usage().socketsCreated).toBe(2);
  });

  test("binds are metered: a bind over quota is an 'error' event", async () => {
    const { layer } = quotaLayer({ perMinute: { binds: 1 } });
    const a = track(layer.createSocket('udp4'));
    const b = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => a.bind(() => resolve()));
    b.bind();
    expect(await errorEvent(b)).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'binds' });
  });

  test('connects are metered: a connect over quota fails its callback and is not counted', async () => {
    const peer = await udpPeer('udp4', false);
    const { layer } = quotaLayer({ perMinute: { connects: 1 } });
    const a = track(layer.createSocket('udp4'));
    const b = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve, reject) => a.connect(peer.port, '127.0.0.1', (e?: Error) => (e ? reject(e) : resolve())));
    const cerr = await new Promise<Error | undefined>((resolve) => b.connect(peer.port, '127.0.0.1', resolve));
    expect(cerr).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'connects' });
    expect(layer.usage().connects).toBe(1);
  });

  test('bytesSent is metered: the datagram that would cross the limit fails and does not leave', async () => {
    const peer = await udpPeer('udp4', false);
    const { layer } = quotaLayer({ perMinute: { bytesSent: 10 } });
    const a = track(layer.createSocket('udp4'));
    await sendP(a, Buffer.alloc(8), peer.port, '127.0.0.1');
    expect(await sendErr(a, Buffer.alloc(8), peer.port, '127.0.0.1')).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'bytesSent' });
    await flushed(peer);
    expect(peer.received).toHaveLength(1);
  });

  /** A socket under { receives: 1 } that sent two datagrams to an echoing peer; the second echo is over quota. */
  async function secondEchoOverQuota(): Promise<{ layer: SocketLayer; messages: string[]; failed: ReturnType<typeof errorEvent>; closed: Promise<void> }> {
    const peer = await udpPeer('udp4');
    const { layer } = quotaLayer({ perMinute: { receives: 1 } });
    const s = layer.createSocket('udp4');
    const messages: string[] = [];
    s.on('message', (m) => messages.push(String(m)));
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    const failed = errorEvent(s);
    const first = nextMessage(s);
    await sendP(s, 'one', peer.port, '127.0.0.1');
    await first;
    await sendP(s, 'two', peer.port, '127.0.0.1');
    return { layer, messages, failed, closed };
  }

  test("a receive over quota is an 'error' event with the quota error", async () => {
    const { failed } = await secondEchoOverQuota();
    expect(await failed).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'receives', window: 'minute' });
  });

  test('a receive over quota closes the socket without delivering the datagram', async () => {
    const { messages, failed, closed } = await secondEchoOverQuota();
    await failed;
    await closed;
    expect(messages).toEqual(['one']);
  });

  test('the datagram received over quota is still billed: it crossed the network', async () => {
    const { layer, failed, closed } = await secondEchoOverQuota();
    await failed;
    await closed;
    expect(layer.usage()).toMatchObject({ bytesReceived: 6, socketsOpen: 0, overQuota: 1 });
  });
});
