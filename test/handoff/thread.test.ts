/**
 * Descriptor hand-off within one process: socket.detach() parks a live connection in the process's table and
 * layer.attach(token) resumes it in this thread or another worker thread, with nothing lost or duplicated.
 */
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import { getLoop } from '../../src/core/loop.js';
import { encodeToken, decodeToken } from '../../src/handoff/token.js';
import type { Socket } from '../../src/tcp/socket.js';
import { distPath, echoServer, errorOf, fdCount, listen, once, requireFreshBuild, until } from '../helpers.js';
import { connected, expectWholeStream, firstOwner, streamPeer, workerCode, type Turn } from './common.js';

const secret = 'handoff-test-secret';
let layer: SocketLayer;
beforeEach(() => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: 'app-a', secret });
  parkedBefore = getLoop().nat.park_count();
});
afterEach(() => layer.close());

const closed = (s: Socket) => new Promise<boolean>((resolve) => s.once('close', resolve));
// Connections parked in this process beyond those the test found there.
let parkedBefore = 0;
const parked = () => getLoop().nat.park_count() - parkedBefore;

describe('within one thread', () => {
  test('bytes received and not yet read travel with the token, ahead of what the peer sends later', async () => {
    let server!: import('node:net').Socket;
    const peer = await listen((c) => {
      server = c;
      c.write('hello ');
    });
    const before = fdCount();
    try {
      const s = layer.connect(peer.port, '127.0.0.1');
      await connected(s);
      // Nobody reads: the bytes wait in the stream's buffer.
      await until(() => s.readableLength === 6, 5000, 'bytes buffered');
      s.write('from the first owner;');
      const wasClosed = closed(s);
      const token = await s.detach();
      expect(typeof token).toBe('string');
      // Closed locally without an error; the connection is parked, not closed.
      expect(await wasClosed).toBe(false);
      expect(parked()).toBe(1);
      expect(peer.connections.size).toBe(1);
      server.write('world');
      const t = layer.attach(token);
      expect(t.connecting).toBe(true);
      await connected(t);
      expect(parked()).toBe(0);
      const got: Buffer[] = [];
      t.on('data', (d) => got.push(d));
      await until(() => Buffer.concat(got).toString() === 'hello world', 5000, 'unread bytes, then new ones');
      t.write(' and the second');
      const heard: Buffer[] = [];
      server.on('data', (d) => heard.push(d));
      await until(() => Buffer.concat(heard).toString().endsWith(' and the second'), 5000, 'peer hears the new owner');
      t.destroy();
      await closed(t);
      await until(() => peer.connections.size === 0, 5000, 'connection closed by the new owner');
      await until(() => fdCount() <= before, 5000, 'descriptors back to baseline');
    } finally {
      await peer.close();
    }
  });

  test('detach waits until every written byte left; the token carries family, peer and counters', async () => {
    // A peer that only reads: an echo nobody reads could fill both directions and stall the flush.
    let heard = 0;
    const peer = await listen((c) => c.on('data', (d: Buffer) => (heard += d.length)));
    try {
      const s = layer.connect(peer.port, '127.0.0.1');
      await connected(s);
      const big = randomBytes(8 * 1024 * 1024);
      s.write(big);
      const token = await s.detach();
      // Nothing was left in a queue for the descriptor's next owner to lose.
      expect(s.counters.bytesSent).toBe(big.length);
      const body = decodeToken(Buffer.from(secret), token)!;
      expect(body).toMatchObject({ app: 'app-a', family: 4, type: 'tcp', address: '127.0.0.1', port: peer.port, scope: 'process' });
      expect(body.counters[0]).toBe(big.length);
      const t = layer.attach(token);
      await connected(t);
      t.write(Buffer.alloc(1000));
      await until(() => heard === big.length + 1000, 20000, 'the peer gets every byte of both owners');
      expect(t.counters.bytesSent).toBe(big.length + 1000);
      t.destroy();
    } finally {
      await peer.close();
    }
  });

  test('writes after detach() fail with EPIPE; detach of a socket that is not connected rejects', async () => {
    const peer = await echoServer();
    try {
      const s = layer.connect(peer.port, '127.0.0.1');
      await expect(s.detach()).rejects.toMatchObject({ code: 'EBADF' });
      await connected(s);
      s.resume();
      // Enough queued that the detach has to wait for it.
      s.write(randomBytes(4 * 1024 * 1024));
      const p = s.detach();
      await expect(s.detach()).rejects.toMatchObject({ code: 'EALREADY' });
      const err = await new Promise<Error | null | undefined>((resolve) => s.write('late', resolve));
      expect(err).toMatchObject({ code: 'EPIPE' });
      const token = await p;
      await expect(s.detach()).rejects.toMatchObject({ code: 'EBADF' });
      const t = layer.attach(token);
      await connected(t);
      t.destroy();
    } finally {
      await peer.close();
    }
  });

  test('counters continue on the attached socket and each ledger bills its own part once', async () => {
    const peer = await echoServer();
    const other = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: 'app-a', secret });
    try {
      const s = layer.connect(peer.port, '127.0.0.1');
      await connected(s);
      const got: Buffer[] = [];
      s.on('data', (d) => got.push(d));
      s.write(Buffer.alloc(1000, 1));
      await until(() => Buffer.concat(got).length === 1000, 5000, 'first echo');
      const token = await s.detach();
      const t = other.attach(token);
      await connected(t);
      expect(t.counters).toMatchObject({ bytesSent: 1000, bytesReceived: 1000 });
      const got2: Buffer[] = [];
      t.on('data', (d) => got2.push(d));
      t.write(Buffer.alloc(500, 2));
      await until(() => Buffer.concat(got2).length === 500, 5000, 'second echo');
      expect(t.counters).toMatchObject({ bytesSent: 1500, bytesReceived: 1500 });
      expect(layer.usage()).toMatchObject({ bytesSent: 1000, bytesReceived: 1000, billedBytes: 2000, socketsOpen: 0 });
      expect(other.usage()).toMatchObject({ bytesSent: 500, bytesReceived: 500, billedBytes: 1000, socketsOpen: 1 });
      t.destroy();
      await closed(t);
      expect(other.usage()).toMatchObject({ bytesSent: 500, bytesReceived: 500, billedBytes: 1000, socketsOpen: 0 });
    } finally {
      await other.close();
      await peer.close();
    }
  });
});

test('a socket with TLS in the core cannot be detached (ENOTSUP) and carries on as it was', async () => {
  const { readFileSync } = await import('node:fs');
  const tls = await import('node:tls');
  const { TlsSocket } = await import('../../src/index.js');
  const key = readFileSync(new URL('../fixtures/key.pem', import.meta.url));
  const cert = readFileSync(new URL('../fixtures/cert.pem', import.meta.url));
  const server = tls.createServer({ key, cert }, (c) => c.pipe(c));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const s = layer.connect({ host: '127.0.0.1', port: (server.address() as import('node:net').AddressInfo).port, tls: { ca: cert } });
    if (!(s instanceof TlsSocket)) return; // no OpenSSL for the core in this runtime: nothing to refuse
    await new Promise<void>((resolve, reject) => (s.once('secureConnect', resolve), s.once('error', reject)));
    await expect(s.detach()).rejects.toMatchObject({ code: 'ENOTSUP' });
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.write('still here');
    await until(() => Buffer.concat(got).toString() === 'still here', 5000, 'echo after the refused detach');
    expect(parked()).toBe(0);
    s.destroy();
  } finally {
    server.close();
  }
});

describe('refusals', () => {
  async function parkedToken(): Promise<{ token: string; close(): Promise<void> }> {
    const peer = await echoServer();
    const s = layer.connect(peer.port, '127.0.0.1');
    await connected(s);
    const token = await s.detach();
    return { token, close: () => peer.close() };
  }

  test("another app's layer, with the same key: EACCES", async () => {
    const { token, close } = await parkedToken();
    const other = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: 'app-b', secret });
    try {
      const err = await errorOf(other.attach(token));
      expect(err).toMatchObject({ code: 'EACCES', syscall: 'attach' });
      expect(other.usage().socketsOpen).toBe(0);
      // Still parked for its own app.
      const t = layer.attach(token);
      await connected(t);
      t.destroy();
    } finally {
      await other.close();
      await close();
    }
  });

  test("a layer of the same app without the app's key: EACCES even with a valid token", async () => {
    const { token, close } = await parkedToken();
    const keyless = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: 'app-a' });
    const wrong = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: 'app-a', secret: 'another secret' });
    try {
      expect(await errorOf(keyless.attach(token))).toMatchObject({ code: 'EACCES' });
      expect(await errorOf(wrong.attach(token))).toMatchObject({ code: 'EACCES' });
      expect(parked()).toBe(1);
      const t = layer.attach(token);
      await connected(t);
      t.destroy();
    } finally {
      await keyless.close();
      await wrong.close();
      await close();
    }
  });

  test('a tampered or forged token: EACCES', async () => {
    const { token, close } = await parkedToken();
    try {
      const [prefix, body, mac] = token.split('.') as [string, string, string];
      const json = JSON.parse(Buffer.from(body, 'base64url').toString());
      const reBody = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const flip = (t: string, i: number) => t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1);
      const bad = [
        flip(token, prefix.length + 3),
        flip(token, token.length - 2),
        `${prefix}.${reBody({ ...json, counters: [1, 2, 3, 4] })}.${mac}`,
        `${prefix}.${reBody({ ...json, app: 'app-b' })}.${mac}`,
        encodeToken(Buffer.from('forger'), json),
        '',
        'sgd1..',
        token + 'x',
        token.slice(0, -1),
      ];
      for (const t of bad) expect(await errorOf(layer.attach(t))).toMatchObject({ code: 'EACCES', syscall: 'attach' });
      expect(() => layer.attach(42 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
      expect(parked()).toBe(1);
      const t = layer.attach(token);
      await connected(t);
      t.destroy();
      await until(() => layer.size === 0, 5000, 'nothing left admitted');
    } finally {
      await close();
    }
  });

  test('a second attach: EPIPE', async () => {
    const { token, close } = await parkedToken();
    try {
      const t = layer.attach(token);
      await connected(t);
      expect(await errorOf(layer.attach(token))).toMatchObject({ code: 'EPIPE', syscall: 'attach' });
      t.destroy();
    } finally {
      await close();
    }
  });

  test('a token of a connection parked by another process: EPIPE', async () => {
    const { token, close } = await parkedToken();
    try {
      const body = decodeToken(Buffer.from(secret), token)!;
      const elsewhere = encodeToken(Buffer.from(secret), { ...body, pid: process.pid + 1 });
      expect(await errorOf(layer.attach(elsewhere))).toMatchObject({ code: 'EPIPE' });
      const t = layer.attach(token);
      await connected(t);
      t.destroy();
    } finally {
      await close();
    }
  });

  test('a parked connection is reclaimed by the idle rule and closed; its token then fails with EPIPE', async () => {
    const peer = await echoServer();
    const short = new SocketLayer({ policy: 'development', idleTimeoutMs: 200, sweepIntervalMs: 50, appId: 'app-a', secret });
    const before = fdCount();
    try {
      const s = short.connect(peer.port, '127.0.0.1');
      await connected(s);
      const token = await s.detach();
      expect(parked()).toBe(1);
      await until(() => parked() === 0, 5000, 'reclaim');
      expect(short.usage().reclaimed).toBe(1);
      await until(() => peer.connections.size === 0, 5000, 'the peer sees the connection close');
      expect(await errorOf(short.attach(token))).toMatchObject({ code: 'EPIPE' });
      await until(() => fdCount() <= before, 5000, 'descriptors back to baseline');
    } finally {
      await short.close();
      await peer.close();
    }
  });

  test('a token for a connection closed while parked (its owner gone): EPIPE, no descriptor left', async () => {
    const peer = await echoServer();
    const short = new SocketLayer({ policy: 'development', idleTimeoutMs: 100, appId: 'app-a', secret });
    const before = fdCount();
    try {
      const s = short.connect(peer.port, '127.0.0.1');
      await connected(s);
      const token = await s.detach();
      await new Promise((r) => setTimeout(r, 150));
      // Whoever calls next finds it expired, even if the detaching thread's timer has not run.
      getLoop().nat.park_sweep();
      expect(parked()).toBe(0);
      expect(await errorOf(layer.attach(token))).toMatchObject({ code: 'EPIPE' });
      await until(() => fdCount() <= before, 5000, 'descriptors back to baseline');
    } finally {
      await short.close();
      await peer.close();
    }
  });
});

describe('worker threads', () => {
  // The workers load dist/, not src/.
  beforeEach(requireFreshBuild);

  test('mid-stream, while the peer keeps sending: main → worker → worker, checksums both ways', async () => {
    const total = 3 * 1024 * 1024;
    const peer = await streamPeer(total, 8192, 1);
    const before = fdCount();
    try {
      const writes = [randomBytes(300_000), randomBytes(200_000), randomBytes(100_000)];
      const first = await firstOwner(layer, peer, writes[0]!, 256 * 1024);
      let token = await first.socket.detach();
      const parts: Buffer[] = [first.received()];
      const usages: Array<Turn['usage']> = [layer.usage()];
      let counters: Turn['counters'] | undefined;
      for (let i = 1; i <= 2; i++) {
        const last = i === 2;
        const w = new Worker(workerCode, {
          eval: true,
          workerData: { dist: distPath, app: 'app-a', secret, token, write: writes[i]!.toString('base64'), take: last ? total : 1024 * 1024, last },
        });
        const exit = once(w, 'exit');
        const r = await once<Turn>(w, 'message');
        expect(r.error).toBeUndefined();
        await exit;
        parts.push(Buffer.from(r.got, 'base64'));
        usages.push(r.usage);
        counters = r.counters;
        token = r.token!;
      }
      // The last owner's counters continue from the first's: the whole connection's traffic.
      await expectWholeStream(peer, parts, writes, counters, usages);
      expect(parked()).toBe(0);
      await until(() => peer.connections.size === 0, 5000, 'connection closed');
      await until(() => fdCount() <= before, 5000, 'descriptors back to baseline');
    } finally {
      await peer.close();
    }
  });

  test('a worker that attaches with the wrong key or app is refused; the connection stays parked', async () => {
    const peer = await echoServer();
    try {
      const s = layer.connect(peer.port, '127.0.0.1');
      await connected(s);
      const token = await s.detach();
      for (const [app, key] of [['app-b', secret], ['app-a', 'wrong']] as const) {
        const w = new Worker(workerCode, { eval: true, workerData: { dist: distPath, app, secret: key, token, write: '', take: 0, last: true } });
        const r = await once<{ error?: string }>(w, 'message');
        expect(r.error).toBe('EACCES');
        await w.terminate();
      }
      expect(parked()).toBe(1);
      const t = layer.attach(token);
      await connected(t);
      t.destroy();
    } finally {
      await peer.close();
    }
  });
});
