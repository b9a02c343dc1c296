import { afterEach, describe, expect, test } from 'vitest';
import dgram from 'node:dgram';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { SocketLayer, constants as C, type Resolver } from '../../src/index.js';
import { getLoop } from '../../src/core/loop.js';
import type { RemoteInfo, UdpSocket } from '../../src/udp/socket.js';
import { SOCKOPT_MOCKS, distPath, fdCount, payload, runChild, until } from '../helpers.js';

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
    await new Promise<void>((resolve, reject) => from.send(marker, peer.port, peer.host, (e) => (e ? reject(e) : resolve())));
    await until(() => peer.received.some((b) => b.toString() === marker), 2000, 'the flush marker');
  } finally {
    from.close();
  }
  const i = peer.received.findIndex((b) => b.toString() === marker);
  peer.received.splice(i, 1);
  peer.senders.splice(i, 1);
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
    test(`${type}: unconnected sends reach the peer and replies arrive as 'message' with rinfo`, async () => {
      const peer = await udpPeer(type);
      const s = track(layerOf().createSocket(type));
      const reply = nextMessage(s);
      const n = await sendP(s, Buffer.from('hello'), peer.port, peer.host);
      expect(n).toBe(5);
      const [msg, rinfo] = await reply;
      expect(msg.toString()).toBe('hello');
      expect(rinfo).toEqual({ address: peer.host, family: type === 'udp4' ? 'IPv4' : 'IPv6', port: peer.port, size: 5 });
      // The sender the peer saw is this socket's implicitly bound port.
      expect(peer.senders[0]!.port).toBe(s.address().port);
      expect(s.address().address).toBe(type === 'udp4' ? '0.0.0.0' : '::');
    });

    test(`${type}: a connected socket sends without a destination and keeps datagram order`, async () => {
      const peer = await udpPeer(type);
      const layer = layerOf({ policy: type === 'udp4' ? loopbackOnly : 'development' });
      const s = track(layer.createSocket(type));
      const connected = new Promise<void>((resolve, reject) => s.connect(peer.port, peer.host, (err?: Error) => (err ? reject(err) : resolve())));
      await connected;
      expect(s.remoteAddress()).toEqual({ address: peer.host, family: type === 'udp4' ? 'IPv4' : 'IPv6', port: peer.port });
      const count = 300;
      const echoes = await exchange(s, count, (i) => Buffer.from(`seq ${i}`), []);
      expect(echoes.map((b) => b.toString())).toEqual(Array.from({ length: count }, (_, i) => `seq ${i}`));
      expect(peer.received.map((b) => b.toString())).toEqual(echoes.map((b) => b.toString()));
      expect(layer.usage().connects).toBe(1);
    });
  }

  test('sizes from 0 bytes to 60 KB come back intact, both families, connected and not', async () => {
    const sizes = [0, 1, 100, 1400, 1500, 9000, 32768, 60 * 1024];
    for (const type of ['udp4', 'udp6'] as const) {
      const peer = await udpPeer(type);
      const layer = layerOf();
      const loose = track(layer.createSocket(type));
      const bound = track(layer.createSocket(type));
      await new Promise<void>((resolve) => bound.connect(peer.port, peer.host, () => resolve()));
      for (const size of sizes) {
        const data = payload(size);
        const a = nextMessage(loose);
        await sendP(loose, data, peer.port, peer.host);
        expect((await a)[0].equals(data)).toBe(true);
        const b = nextMessage(bound);
        await sendP(bound, data);
        const [echo, rinfo] = await b;
        expect(echo.equals(data)).toBe(true);
        expect(rinfo.size).toBe(size);
      }
    }
  });

  test('many datagrams: every byte counted, counters equal the bytes really moved, usage() matches', async () => {
    const peer = await udpPeer('udp4');
    const layer = layerOf();
    const s = track(layer.createSocket('udp4'));
    const count = 500;
    const sizeOf = (i: number) => 1 + ((i * 977) % 4000);
    const echoes = await exchange(s, count, (i) => payload(sizeOf(i)), [peer.port, '127.0.0.1']);
    const total = Array.from({ length: count }, (_, i) => sizeOf(i)).reduce((a, b) => a + b, 0);
    const peerGot = peer.received.reduce((a, b) => a + b.length, 0);
    const got = echoes.reduce((a, b) => a + b.length, 0);
    expect(peerGot).toBe(total);
    expect(got).toBe(total);
    expect(s.bytesWritten).toBe(total);
    expect(s.bytesRead).toBe(total);
    expect(s.sendCalls).toBe(count);
    expect(s.recvCalls).toBe(count);
    const u = layer.usage();
    expect(u).toMatchObject({ bytesSent: total, bytesReceived: total, billedBytes: 2 * total, sendCalls: count, receiveCalls: count, socketsCreated: 1, socketsOpen: 1, connects: 0 });
    // Exact after close too: the final counters are folded into the ledger once.
    await closeSocket(s);
    expect(layer.usage()).toMatchObject({ bytesSent: total, bytesReceived: total, billedBytes: 2 * total, sendCalls: count, receiveCalls: count, socketsOpen: 0 });
  });

  test('every dgram send form: offset/length, string, array (one datagram), Uint8Array, DataView, empty list', async () => {
    const peer = await udpPeer('udp4', false);
    const s = track(layerOf().createSocket('udp4'));
    const buf = Buffer.from('0123456789');
    await sendP(s, buf, 2, 3, peer.port, '127.0.0.1');
    await sendP(s, 'text', peer.port, '127.0.0.1');
    await sendP(s, [Buffer.from('ab'), 'cd', new Uint8Array([0x65])], peer.port, '127.0.0.1');
    await sendP(s, new Uint8Array([1, 2, 3]), peer.port, '127.0.0.1');
    await sendP(s, new DataView(new Uint8Array([9, 8]).buffer), peer.port, '127.0.0.1');
    await sendP(s, [], peer.port, '127.0.0.1');
    await sendP(s, 'dflt', peer.port); // no address: loopback, as dgram does
    await until(() => peer.received.length === 7, 2000, 'seven datagrams');
    expect(peer.received.map((b) => b.toString('hex'))).toEqual([
      Buffer.from('234').toString('hex'),
      Buffer.from('text').toString('hex'),
      Buffer.from('abcde').toString('hex'),
      '010203',
      '0908',
      '',
      Buffer.from('dflt').toString('hex'),
    ]);
    // A connected socket takes offset/length too, and refuses a destination.
    const c = track(layerOf().createSocket('udp4'));
    await new Promise<void>((resolve) => c.connect(peer.port, '127.0.0.1', () => resolve()));
    await sendP(c, buf, 8, 2);
    await until(() => peer.received.length === 8, 2000, 'connected datagram');
    expect(peer.received[7]!.toString()).toBe('89');
    expect(() => c.send('x', peer.port, '127.0.0.1', () => {})).toThrow(expect.objectContaining({ code: 'EISCONN' }));
    expect(() => s.send(42 as unknown as string, peer.port, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => s.send('x', 0, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_BAD_PORT' }));
    expect(() => s.send(buf, 8, 5, peer.port, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'ERR_BUFFER_OUT_OF_BOUNDS' }));
  });

  test('sends keep call order while a name resolves; a failed resolution fails only its own send', async () => {
    const peer = await udpPeer('udp4', false);
    const { resolver, open } = gatedResolver((name) => (name === 'nowhere.example' ? [] : [{ address: '127.0.0.1', family: 4 }]));
    const s = track(layerOf({ resolver }).createSocket('udp4'));
    const results: Array<string> = [];
    const record = (tag: string) => (err: Error | null) => results.push(err ? `${tag}:${(err as NodeJS.ErrnoException).code}` : tag);
    s.send('1', peer.port, 'echo.example', record('1'));
    s.send('2', peer.port, '127.0.0.1', record('2'));
    s.send('3', peer.port, 'nowhere.example', record('3'));
    s.send('4', peer.port, '127.0.0.1', record('4'));
    expect(s.getSendQueueCount()).toBe(4);
    open();
    await until(() => results.length === 4, 3000, 'four callbacks');
    await until(() => peer.received.length === 3, 2000, 'three datagrams');
    expect(peer.received.map(String)).toEqual(['1', '2', '4']);
    expect(results).toEqual(['1', '2', '3:ENOTFOUND', '4']);
    expect(s.getSendQueueCount()).toBe(0);
  });

  test('a datagram larger than UDP allows fails with EMSGSIZE, and the socket carries on', async () => {
    const peer = await udpPeer('udp4', false);
    const s = track(layerOf().createSocket('udp4'));
    expect(await sendErr(s, Buffer.alloc(70_000), peer.port, '127.0.0.1')).toMatchObject({ code: 'EMSGSIZE', syscall: 'send', port: peer.port });
    await sendP(s, 'small', peer.port, '127.0.0.1');
    await until(() => peer.received.length === 1, 2000, 'datagram');
    expect(s.sendCalls).toBe(1);
  });

  test('a full kernel send buffer (EAGAIN) stalls the queue and retries in order', async () => {
    // Loopback drops at the receiver instead of refusing the sender, so the refusal is injected.
    const peer = await udpPeer('udp4', false);
    const s = track(layerOf().createSocket('udp4'));
    const nat = getLoop().nat;
    const real = nat.udp_send;
    let refusals = 3;
    nat.udp_send = (...args) => (refusals-- > 0 ? -osConstants.errno.EAGAIN : real.apply(nat, args));
    try {
      const done: string[] = [];
      for (const m of ['a', 'b', 'c']) s.send(m, peer.port, '127.0.0.1', (err) => done.push(err ? `${m}:${(err as NodeJS.ErrnoException).code}` : m));
      expect(s.getSendQueueCount()).toBe(3);
      expect(s.getSendQueueSize()).toBe(3);
      await until(() => done.length === 3, 2000, 'three callbacks');
      expect(done).toEqual(['a', 'b', 'c']);
      await until(() => peer.received.length === 3, 2000, 'three datagrams');
      expect(peer.received.map(String)).toEqual(['a', 'b', 'c']);
      expect(s.getSendQueueCount()).toBe(0);
    } finally {
      nat.udp_send = real;
    }
  });

  test('a destination of the other family is EINVAL, as with dgram', async () => {
    const s = track(layerOf().createSocket('udp4'));
    const err = await sendErr(s, 'x', 9, '::1');
    expect(err).toMatchObject({ code: 'EINVAL', syscall: 'send' });
    expect(s.bytesWritten).toBe(0);
  });
});

describe('policy', () => {
  test('production policy denies loopback: EACCES with rule, and the peer receives nothing', async () => {
    const peer = await udpPeer('udp4', false);
    const layer = new SocketLayer({ appId: 'x', idleTimeoutMs: 0 });
    opened.push(layer);
    const s = track(layer.createSocket('udp4'));
    const err = await sendErr(s, 'secret', peer.port, '127.0.0.1');
    expect(err).toMatchObject({ code: 'EACCES', rule: 'loopback', syscall: 'send', address: '127.0.0.1', port: peer.port });
    // Without a callback the denial is an 'error' event.
    const ev = errorEvent(s);
    s.send('secret', peer.port, 'localhost');
    expect(await ev).toMatchObject({ code: 'EACCES', syscall: 'send' });
    // Connecting is vetted the same way.
    const c = track(layer.createSocket('udp4'));
    const cerr = await new Promise<NodeJS.ErrnoException & { rule?: string }>((resolve) => c.connect(peer.port, '127.0.0.1', (e?: Error) => resolve(e as never)));
    expect(cerr).toMatchObject({ code: 'EACCES', rule: 'loopback', syscall: 'connect' });
    expect(() => c.remoteAddress()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }));
    await flushed(peer);
    expect(peer.received).toHaveLength(0);
    expect(s.bytesWritten).toBe(0);
    expect(s.sendCalls).toBe(0);
    const u = layer.usage();
    expect(u.denied).toBe(3);
    expect(u.bytesSent).toBe(0);
    expect(u.connects).toBe(0);
  });

  test('an operator policy: allowed and denied destinations on one socket, in order, nothing denied leaves', async () => {
    const peer = await udpPeer('udp4', false);
    const layer = layerOf({ policy: loopbackOnly });
    const s = track(layer.createSocket('udp4'));
    const outcomes: string[] = [];
    const cb = (tag: string) => (err: Error | null) => outcomes.push(err ? `${tag}:${(err as NodeJS.ErrnoException & { rule?: string }).rule}` : tag);
    s.send('a', peer.port, '127.0.0.1', cb('a'));
    s.send('b', peer.port, '127.0.0.2', cb('b'));
    s.send('c', peer.port, '127.0.0.1', cb('c'));
    await until(() => outcomes.length === 3, 2000, 'three callbacks');
    expect(outcomes).toEqual(['a', 'b:loopback', 'c']);
    await until(() => peer.received.length === 2, 2000, 'two datagrams');
    expect(peer.received.map(String)).toEqual(['a', 'c']);
    expect(layer.usage().denied).toBe(1);
  });

  test('a connect failure fails the sends queued behind it (callbacks only) and the peer receives nothing', async () => {
    const peer = await udpPeer('udp4', false);
    const layer = new SocketLayer({ idleTimeoutMs: 0 });
    opened.push(layer);
    const s = track(layer.createSocket('udp4'));
    const errors: Error[] = [];
    s.on('error', (e) => errors.push(e));
    s.connect(peer.port, '127.0.0.1');
    const queued = await sendErr(s, 'queued');
    expect(queued).toMatchObject({ code: 'EACCES', rule: 'loopback' });
    expect(errors).toHaveLength(1);
    await flushed(peer);
    expect(peer.received).toHaveLength(0);
  });
});

describe('bind and connect rules', () => {
  test('bind() to the any-address and port 0 only; anything else is an EACCES error and leaves the socket usable', async () => {
    const layer = layerOf();
    const a = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => a.bind(() => resolve()));
    expect(a.address()).toMatchObject({ address: '0.0.0.0', family: 'IPv4' });
    expect(a.address().port).toBeGreaterThan(0);
    expect(() => a.bind()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_ALREADY_BOUND' }));

    const b = track(layer.createSocket('udp6'));
    await new Promise<void>((resolve) => b.bind({ port: 0, address: '::' }, () => resolve()));
    expect(b.address()).toMatchObject({ address: '::', family: 'IPv6' });

    const c = track(layer.createSocket('udp4'));
    expect(() => c.address()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    let listening = false;
    c.on('listening', () => (listening = true));
    c.bind(4000);
    expect(await errorEvent(c)).toMatchObject({ code: 'EACCES', syscall: 'bind', port: 4000 });
    c.bind(0, '127.0.0.1');
    expect(await errorEvent(c)).toMatchObject({ code: 'EACCES', syscall: 'bind', address: '127.0.0.1' });
    c.bind({ port: 53, address: '0.0.0.0' });
    expect(await errorEvent(c)).toMatchObject({ code: 'EACCES', syscall: 'bind', port: 53 });
    expect(listening).toBe(false);
    c.bind(0, '0.0.0.0');
    await until(() => listening, 2000, "'listening'");
  });

  test('connect: remoteAddress(), EISCONN, disconnect() keeps the local port, ICMP port unreachable is an error event', async () => {
    const peer = await udpPeer('udp4');
    const layer = layerOf();
    const s = track(layer.createSocket('udp4'));
    expect(() => s.remoteAddress()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }));
    await new Promise<void>((resolve) => s.connect(peer.port, '127.0.0.1', () => resolve()));
    expect(() => s.connect(peer.port, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'EISCONN' }));
    const local = s.address().port;
    s.disconnect();
    expect(() => s.remoteAddress()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }));
    expect(() => s.disconnect()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_CONNECTED' }));
    expect(s.address().port).toBe(local);
    const echo = nextMessage(s);
    await sendP(s, 'after', peer.port, '127.0.0.1');
    expect((await echo)[0].toString()).toBe('after');

    // A connected socket learns that nobody listens from the ICMP answer; like dgram that is an 'error' with
    // syscall 'recvmsg', and the socket stays open.
    const closedPort = await (async () => {
      const tmp = dgram.createSocket('udp4');
      await new Promise<void>((r) => tmp.bind(0, '127.0.0.1', () => r()));
      const p = tmp.address().port;
      await new Promise<void>((r) => tmp.close(() => r()));
      return p;
    })();
    const d = track(layer.createSocket('udp4'));
    await new Promise<void>((resolve) => d.connect(closedPort, '127.0.0.1', () => resolve()));
    const refused = errorEvent(d);
    await sendP(d, 'anyone?');
    expect(await refused).toMatchObject({ code: 'ECONNREFUSED', syscall: 'recvmsg', address: '127.0.0.1', port: closedPort });
    expect(await sendP(d, 'still open')).toBe(10);
    expect(layer.usage().connects).toBe(2);
  });

  test('unsupported socket types: EPROTONOSUPPORT / EAFNOSUPPORT, thrown synchronously', () => {
    const layer = layerOf();
    expect(() => layer.createSocket('tcp' as 'udp4')).toThrow(expect.objectContaining({ code: 'EPROTONOSUPPORT' }));
    expect(() => layer.createSocket({ type: 'udp5' as 'udp4' })).toThrow(expect.objectContaining({ code: 'EPROTONOSUPPORT' }));
    expect(() => layer.createSocket('unix_dgram' as 'udp4')).toThrow(expect.objectContaining({ code: 'EAFNOSUPPORT' }));
    expect(layer.usage().socketsCreated).toBe(0);
  });

  test('broadcast and multicast are denied: EACCES; setBroadcast(false) and setTTL validation', () => {
    const s = track(layerOf().createSocket('udp4'));
    s.setBroadcast(false);
    expect(() => s.setBroadcast(true)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'setBroadcast' }));
    expect(() => s.setTTL(64)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'setTTL' }));
    expect(() => s.setTTL('64' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => s.addMembership('239.1.1.1')).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'addMembership' }));
    expect(() => s.dropMembership('239.1.1.1')).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => s.addSourceSpecificMembership('10.0.0.1', '232.1.1.1')).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => s.dropSourceSpecificMembership('10.0.0.1', '232.1.1.1')).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => s.setMulticastTTL(1)).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => s.setMulticastLoopback(true)).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => s.setMulticastInterface('0.0.0.0')).toThrow(expect.objectContaining({ code: 'EACCES' }));
  });
});

describe('socket options', () => {
  test('emulate mode: the eight mock values and bytes, sets ignored, EACCES otherwise, SO_ERROR real', async () => {
    const s = track(layerOf().createSocket('udp4'));
    const table = SOCKOPT_MOCKS;
    // Before and after the socket exists natively: the emulation does not need it.
    for (const bound of [false, true]) {
      if (bound) await new Promise<void>((resolve) => s.bind(() => resolve()));
      for (const [level, name, value, hex] of table) {
        expect(s.getsockopt(level, name)).toBe(value);
        expect((s.getsockopt(level, name, 64) as Buffer).toString('hex')).toBe(hex);
        expect((s.getsockopt(level, name, 1) as Buffer).toString('hex')).toBe(hex.slice(0, 2));
      }
      expect(s.getsockopt(C.SOL_SOCKET, C.SO_ERROR)).toBe(0);
    }
    s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 4096);
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, { onoff: 1, linger: 3 });
    s.setRecvBufferSize(8192);
    s.setSendBufferSize(8192);
    expect(s.getRecvBufferSize()).toBe(2097152);
    expect(s.getSendBufferSize()).toBe(2097152);
    for (const [level, name] of [
      [C.SOL_SOCKET, C.SO_TYPE],
      [C.SOL_SOCKET, C.SO_BROADCAST],
      [C.SOL_IP, C.IP_TTL],
      [C.SOL_IP, C.IP_TOS],
      [C.SOL_UDP, 1],
    ] as const) {
      expect(() => s.getsockopt(level, name)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'getsockopt' }));
      expect(() => s.setsockopt(level, name, 1)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'setsockopt' }));
    }
    expect(() => s.setsockopt(C.SOL_SOCKET, C.SO_ERROR, 0)).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 'big' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });

  test("native mode reads and applies the real options", async () => {
    const s = track(layerOf({ sockopts: 'native' }).createSocket('udp4'));
    expect(() => s.getRecvBufferSize()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    await new Promise<void>((resolve) => s.bind(() => resolve()));
    s.setRecvBufferSize(65536);
    // Linux doubles the value it stores for bookkeeping, as dgram's getRecvBufferSize() shows too.
    expect(s.getRecvBufferSize()).toBe(131072);
    s.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, 1);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_REUSEADDR)).toBe(1);
    s.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, 0);
    expect(s.getsockopt(C.SOL_SOCKET, C.SO_REUSEADDR)).toBe(0);
    expect(() => s.getsockopt(C.SOL_IP, C.IP_TTL)).toThrow(expect.objectContaining({ code: 'EACCES' }));
  });

  test('the recvBufferSize option is validated at creation and applied on open', async () => {
    const layer = layerOf({ sockopts: 'native' });
    expect(() => layer.createSocket({ type: 'udp4', recvBufferSize: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    const s = track(layer.createSocket({ type: 'udp4', recvBufferSize: 32768 }));
    await new Promise<void>((resolve) => s.bind(() => resolve()));
    expect(s.getRecvBufferSize()).toBe(65536);
  });
});

describe('close and lifetime', () => {
  test("close(): 'close' once, later operations EPIPE, a second close is a no-op", async () => {
    const peer = await udpPeer('udp4', false);
    const layer = layerOf();
    const s = layer.createSocket('udp4');
    await sendP(s, 'x', peer.port, '127.0.0.1');
    let closes = 0;
    s.on('close', () => closes++);
    s.close();
    await new Promise<void>((resolve) => s.close(() => resolve()));
    // A second 'close' would be emitted in the same or the next turn as the first.
    await new Promise((r) => setImmediate(r));
    expect(closes).toBe(1);
    expect(() => s.send('y', peer.port, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'EPIPE', syscall: 'send' }));
    expect(await sendErr(s, 'y', peer.port, '127.0.0.1')).toMatchObject({ code: 'EPIPE' });
    expect(() => s.address()).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(() => s.bind()).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(() => s.connect(peer.port)).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(() => s.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF)).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(layer.usage()).toMatchObject({ socketsOpen: 0, bytesSent: 1, sendCalls: 1 });
    expect(s.bytesWritten).toBe(1);
  });

  test('sends waiting on a resolution when the socket closes fail with EPIPE and nothing leaves', async () => {
    const peer = await udpPeer('udp4', false);
    const { resolver, open } = gatedResolver(() => [{ address: '127.0.0.1', family: 4 }]);
    const s = layerOf({ resolver }).createSocket('udp4');
    const err = sendErr(s, 'late', peer.port, 'slow.example');
    s.close();
    expect(await err).toMatchObject({ code: 'EPIPE' });
    // The resolution completes after the close: its answer must not send anything.
    open();
    await new Promise((r) => setImmediate(r));
    await flushed(peer);
    expect(peer.received).toHaveLength(0);
  });

  test('layer.close() closes every UDP socket; descriptors return to the baseline', async () => {
    const peer = await udpPeer('udp4');
    const before = fdCount();
    const layer = new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0 });
    const sockets = Array.from({ length: 40 }, (_, i) => layer.createSocket(i % 2 ? 'udp4' : 'udp6'));
    const closes = sockets.map((s) => new Promise<void>((r) => s.once('close', () => r())));
    await Promise.all(sockets.filter((s) => s.type === 'udp4').map((s) => sendP(s, 'hi', peer.port, '127.0.0.1')));
    await Promise.all(sockets.filter((s) => s.type === 'udp6').map((s) => new Promise<void>((r) => s.bind(() => r()))));
    expect(fdCount()).toBe(before + 40);
    expect(layer.size).toBe(40);
    await layer.close();
    await Promise.all(closes);
    expect(fdCount()).toBe(before);
    expect(layer.usage()).toMatchObject({ socketsOpen: 0, socketsCreated: 40, sendCalls: 20, bytesSent: 40 });
    expect(() => layer.createSocket('udp4')).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_LAYER_CLOSED' }));
  });

  test('open/use/close cycles leave no descriptor behind', async () => {
    const peer = await udpPeer('udp6');
    const layer = layerOf();
    const before = fdCount();
    for (let round = 0; round < 5; round++) {
      const sockets = Array.from({ length: 20 }, () => layer.createSocket('udp6'));
      await Promise.all(sockets.map((s) => sendP(s, 'ping', peer.port, '::1')));
      await Promise.all(sockets.map((s) => closeSocket(s)));
    }
    expect(fdCount()).toBe(before);
  });

  // Runs against the built package (npm run build:ts), like the other process-lifetime tests.
  test.runIf(existsSync(distPath))("an unref()ed UDP socket lets the process exit; a ref()ed one keeps it alive", async () => {
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
    const kept = await runChild(
      `const { SocketLayer } = await import(process.env.SG_DIST);
       const layer = new SocketLayer({ policy: 'development' });
       const s = layer.createSocket('udp4');
       s.on('message', () => setTimeout(() => { s.close(); }, 300));
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

  test('a reclaimed socket fails sends, address() and options with EPIPE; close() is a no-op', async () => {
    const { layer, sweep } = reclaimLayer();
    const { s } = await usedSocket(layer);
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    sweep(0);
    sweep(IDLE);
    await closed;
    expect(await sendErr(s, 'late')).toMatchObject({ code: 'EPIPE', syscall: 'send' });
    expect(() => s.send('late')).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(() => s.address()).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(() => s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, 1)).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(() => s.close()).not.toThrow();
  });

  test('nothing a reclaimed socket is asked to send leaves', async () => {
    const { layer, sweep } = reclaimLayer();
    const { s, peer } = await usedSocket(layer);
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    sweep(0);
    sweep(IDLE);
    await closed;
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
    await until(() => peer.received.length === 2, 2000, 'two datagrams');
    expect(peer.received.map(String)).toEqual(['m0', 'm2']);
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

  test('a receive over quota closes the socket with the quota error, and the datagram is still billed', async () => {
    const peer = await udpPeer('udp4');
    const { layer } = quotaLayer({ perMinute: { receives: 1 } });
    const s = layer.createSocket('udp4');
    const messages: string[] = [];
    s.on('message', (m) => messages.push(String(m)));
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    const failed = errorEvent(s);
    await sendP(s, 'one', peer.port, '127.0.0.1');
    await until(() => messages.length === 1, 2000, 'first echo');
    await sendP(s, 'two', peer.port, '127.0.0.1');
    expect(await failed).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'receives', window: 'minute' });
    await closed;
    expect(messages).toEqual(['one']);
    // The datagram crossed the network, so it is billed even though it was not delivered.
    expect(layer.usage()).toMatchObject({ bytesReceived: 6, socketsOpen: 0, overQuota: 1 });
  });
});
