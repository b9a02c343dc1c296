/**
 * Tearing down from above: a worker terminated with sockets in every state, layer.close() with writes still
 * queued, and a process whose last socket was ended without being read. Descriptors return to their baseline,
 * the ledger stays exact, and nothing keeps the process alive longer than net would.
 */
import { describe, expect, test } from 'vitest';
import { Worker } from 'node:worker_threads';
import type net from 'node:net';
import type { Socket } from '../../src/index.js';
import { blackhole, distPath, fdCount, once, until } from '../helpers.js';
import { cleanup, fdsBackTo, layerOf, peer, record, runProcess, settle, type Log } from './util.js';

describe('worker termination', () => {
  test('a worker terminated with queued writes, raw, connecting and UDP sockets leaves no descriptor behind', async () => {
    const reading = await peer((c) => c.resume());
    const stalled = await peer((c) => c.pause());
    const hole = await blackhole();
    cleanup(() => hole.close());
    const before = fdCount();
    const code = `
      import { workerData, parentPort } from 'node:worker_threads';
      const { SocketLayer } = await import(workerData.dist);
      const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
      const big = Buffer.alloc(4 * 1024 * 1024, 1);
      let up = 0;
      const ready = () => { if (++up === 16) parentPort.postMessage('up'); };
      // Duplex sockets with megabytes queued natively (their peer never reads).
      for (let i = 0; i < 10; i++) {
        const s = layer.connect(workerData.stalled, '127.0.0.1');
        s.on('error', () => {});
        s.on('connect', () => { s.write(big); ready(); });
      }
      // Raw sockets, open and reading.
      for (let i = 0; i < 5; i++) {
        layer.connectRaw({ host: '127.0.0.1', port: workerData.reading }, { onconnect: (err) => { if (!err) ready(); } });
      }
      // Connections that never complete.
      for (let i = 0; i < 3; i++) layer.connect(workerData.hole, '127.0.0.1').on('error', () => {});
      // A bound UDP socket.
      layer.createSocket('udp4').bind(0, ready);
    `;
    const w = new Worker(code, {
      eval: true,
      workerData: { dist: distPath, stalled: stalled.port, reading: reading.port, hole: hole.port },
    });
    let exited = false;
    w.on('exit', () => (exited = true));
    w.on('error', () => {});
    await once(w, 'message');
    await until(() => reading.connections.size === 5 && stalled.connections.size === 10, 5000, 'the peers to accept');
    // 18 TCP sockets, one UDP socket, the worker's poll descriptor.
    expect(fdCount()).toBeGreaterThanOrEqual(before + 19);
    await w.terminate();
    expect(exited).toBe(true);
    // The closes reach the wire: the reading peer sees every connection end.
    await until(() => reading.connections.size === 0, 5000, 'raw connections to close at the peer');
    await stalled.dropAll();
    await fdsBackTo(before);
  });
});

describe('layer.close() with pending writes', () => {
  test('resolves; every socket closes once; the ledger equals what the peers received', async () => {
    const serverSide: net.Socket[] = [];
    const p = await peer((c) => {
      c.pause();
      serverSide.push(c);
    });
    const hole = await blackhole();
    cleanup(() => hole.close());
    const before = fdCount();
    const layer = layerOf();

    const sockets: Socket[] = [];
    const logs: Log[] = [];
    const track = (s: Socket) => {
      sockets.push(s);
      logs.push(record(s));
      return s;
    };
    // Open sockets with megabytes queued natively, one of them also ending.
    for (let i = 0; i < 4; i++) {
      const s = track(layer.connect(p.port, '127.0.0.1'));
      await once(s, 'connect');
      s.write(Buffer.alloc(8 * 1024 * 1024, i));
      if (i === 3) s.end();
    }
    // Writes made before the connection is up, to a peer that never answers.
    const connecting = track(layer.connect(hole.port, '127.0.0.1'));
    connecting.write('queued before connect');
    // A raw socket with its own queue.
    let rawClosed = 0;
    const raw = layer.connectRaw(
      { host: '127.0.0.1', port: p.port },
      { onconnect: (err) => !err && raw.write(Buffer.alloc(8 * 1024 * 1024, 9)), onclose: () => rawClosed++ },
    );
    await until(() => raw.pendingBytes > 0, 5000, 'the raw socket to queue');
    await until(() => sockets.slice(0, 4).every((s) => s.raw.pendingBytes > 0), 5000, 'every socket to have bytes queued');

    let resolved = false;
    const closing = layer.close().then(() => (resolved = true));
    await until(() => resolved, 5000, 'layer.close() to resolve');
    await closing;
    await settle();

    for (const [i, s] of sockets.entries()) {
      expect(s.destroyed, `socket ${i} destroyed`).toBe(true);
      expect(logs[i]!.closes, `socket ${i}: 'close' events`).toBe(1);
      for (const e of logs[i]!.errors) expect(typeof e.code, `socket ${i}: error without a code: ${e.message}`).toBe('string');
    }
    expect(rawClosed).toBe(1);
    expect(layer.size).toBe(0);
    const u = layer.usage();
    expect(u.socketsOpen).toBe(0);
    expect(u.socketsCreated).toBe(6);
    const billed = sockets.reduce((n, s) => n + s.counters.bytesSent, 0) + raw.bytesWritten;
    expect(u.bytesSent).toBe(billed);
    expect(connecting.counters.bytesSent).toBe(0);

    // The peer now reads everything the kernel had accepted: exactly what was billed, not a byte more or less.
    let received = 0;
    for (const c of serverSide) {
      c.on('data', (d: Buffer) => (received += d.length));
      c.resume();
    }
    await until(() => serverSide.every((c) => c.readableEnded || c.destroyed), 10_000, 'the peer to read to the end');
    expect(received).toBe(u.bytesSent);
    await p.dropAll();
    hole.close();
    await fdsBackTo(before);
  });
});

describe('process exit', () => {
  /**
   * `end('x')` on a socket that is never read, then the peer ends its side: the process must exit by itself, as
   * it does with net. Not a speed check: the bound only tells "exits" from "hangs".
   */
  for (const [label, onPeer] of [
    ['the peer ends after reading', (c: net.Socket) => (c.resume(), c.on('end', () => c.end()))],
    ['the peer sends 256 kB and ends', (c: net.Socket) => (c.resume(), c.end(Buffer.alloc(256 * 1024, 1)))],
  ] as const) {
    test(`end('x') without reading, ${label}: the process exits, like net`, async () => {
      const p = await peer(onPeer);
      const script = `
        const port = Number(process.env.SG_PORT);
        const s = process.env.LIB === 'net'
          ? (await import('node:net')).connect(port, '127.0.0.1')
          : (await import(process.env.SG_DIST)).connect(port, '127.0.0.1');
        s.end('x');
      `;
      const run = (lib: string) =>
        // Generous: a sanitizer build on a loaded machine takes seconds just to start; a hang never ends.
        runProcess(process.execPath, ['--input-type=module', '-e', script], { LIB: lib, SG_PORT: String(p.port) }, 20_000);
      const [theirs, ours] = await Promise.all([run('net'), run('sockguard')]);
      expect(theirs.killed, 'net: still running after 20 s').toBe(false);
      expect(theirs.code).toBe(0);
      expect(ours.killed, 'sockguard: still running after 20 s').toBe(false);
      expect(ours.code, ours.stderr.slice(0, 500)).toBe(0);
    });
  }
});
