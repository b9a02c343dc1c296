import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { SocketLayer } from '../../src/index.js';
import { getLoop } from '../../src/core/loop.js';
import { blackhole, distPath, echoServer, errorOf, fdCount, listen, once, runChild, until, workerFromCode } from '../helpers.js';

const dist = distPath;

let layer: SocketLayer;
// A layer per test, closed after it: no test sees sockets or counters another one left behind.
beforeEach(() => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
});
afterEach(() => layer.close());

describe('connect timeout', () => {
  test('a connection that never completes fails with ETIMEDOUT after connectTimeout', async () => {
    const hole = await blackhole();
    try {
      const s = layer.connect({ host: '127.0.0.1', port: hole.port, connectTimeout: 200 });
      const closed = new Promise<boolean>((r) => s.once('close', r));
      const started = Date.now();
      const err = await errorOf(s);
      expect(err.code).toBe('ETIMEDOUT');
      expect(err.syscall).toBe('connect');
      expect(err.address).toBe('127.0.0.1');
      expect(err.port).toBe(hole.port);
      expect(Date.now() - started).toBeGreaterThanOrEqual(150);
      expect(await closed).toBe(true);
    } finally {
      hole.close();
    }
  });

  test('destroy during an in-flight connect releases the descriptor, no error', async () => {
    const hole = await blackhole();
    try {
      // The thread's loop (created by the first socket of the process) exists before the baseline, so the
      // only new descriptor is the connecting socket's, whichever test runs first.
      getLoop();
      const before = fdCount();
      const s = layer.connect({ host: '127.0.0.1', port: hole.port });
      // The descriptor exists once the connect is in flight (the blackhole never answers it).
      await until(() => fdCount() === before + 1, 2000, 'the connecting descriptor');
      expect(s.connecting).toBe(true);
      let errored = false;
      s.on('error', () => (errored = true));
      const closed = new Promise<boolean>((r) => s.once('close', r));
      s.destroy();
      expect(await closed).toBe(false);
      expect(errored).toBe(false);
      expect(fdCount()).toBe(before);
    } finally {
      hole.close();
    }
  });
});

describe('worker threads', () => {
  test('several workers move data at once, each on its own loop', async () => {
    const peer = await echoServer();
    try {
      const code = `
        import { workerData, parentPort } from 'node:worker_threads';
        import { createHash, randomBytes } from 'node:crypto';
        const { SocketLayer } = await import(workerData.dist);
        const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
        const results = await Promise.all(Array.from({ length: 20 }, () => new Promise((resolve, reject) => {
          const data = randomBytes(200000);
          const s = layer.connect(workerData.port, '127.0.0.1');
          const got = [];
          s.on('data', (d) => got.push(d));
          s.on('error', reject);
          s.on('close', () => resolve(createHash('sha256').update(Buffer.concat(got)).digest('hex') === createHash('sha256').update(data).digest('hex')));
          s.end(data);
        })));
        parentPort.postMessage({ ok: results.every(Boolean), usage: layer.usage() });
      `;
      const workers = Array.from({ length: 4 }, () => workerFromCode(code, { workerData: { dist, port: peer.port } }));
      const exits = workers.map((w) => once(w, 'exit'));
      const results = await Promise.all(workers.map((w) => once<{ ok: boolean; usage: { bytesSent: number } }>(w, 'message')));
      // Each worker ends on its own once its sockets are closed: nothing of ours keeps a thread alive.
      await Promise.all(exits);
      for (const r of results) {
        expect(r.ok).toBe(true);
        expect(r.usage.bytesSent).toBe(20 * 200000);
      }
    } finally {
      await peer.close();
    }
  });

  // 50 sockets live in the worker's epoll set; a lone one is watched by libuv directly. Both must close.
  for (const count of [50, 1]) {
    test(`a worker terminated with ${count} open socket(s) closes them all (no descriptor leak)`, async () => {
      const peer = await listen(() => {});
      try {
        const before = fdCount();
        const code = `
          import { workerData, parentPort } from 'node:worker_threads';
          const { SocketLayer } = await import(workerData.dist);
          const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
          let up = 0;
          for (let i = 0; i < workerData.count; i++) {
            layer.connect(workerData.port, '127.0.0.1').on('connect', () => { if (++up === workerData.count) parentPort.postMessage('up'); });
          }
        `;
        const w = workerFromCode(code, { workerData: { dist, port: peer.port, count } });
        await once(w, 'message');
        await until(() => peer.connections.size === count, 5000, `server to accept ${count}`);
        expect(fdCount()).toBeGreaterThanOrEqual(before + count);
        await w.terminate();
        // The peer sees every connection close, and this process holds no descriptor of them.
        await until(() => peer.connections.size === 0, 5000, 'connections to close');
        await until(() => fdCount() <= before, 5000, 'descriptors back to baseline');
      } finally {
        await peer.close();
      }
    });
  }
});

describe('process lifetime', () => {
  test('an unref()ed socket lets the process exit', async () => {
    const peer = await listen(() => {});
    try {
      const unrefd = await runChild(
        `const { connect } = await import(process.env.SG_DIST);
         const s = connect(Number(process.env.SG_PORT), '127.0.0.1');
         s.on('connect', () => s.unref());`,
        peer.port,
      );
      expect(unrefd.code).toBe(0);
    } finally {
      await peer.close();
    }
  });

  test('a ref()ed socket keeps the process alive until it is destroyed', async () => {
    const peer = await listen(() => {});
    try {
      // Staying alive can only be shown over a span of time: the child destroys its socket 300 ms after
      // connecting and exits then. The timer is unref()ed, so only the socket keeps the process up meanwhile.
      const kept = await runChild(
        `const { connect } = await import(process.env.SG_DIST);
         const s = connect(Number(process.env.SG_PORT), '127.0.0.1');
         s.on('connect', () => setTimeout(() => { console.log('still alive'); s.destroy(); }, 300).unref());`,
        peer.port,
      );
      expect(kept.code).toBe(0);
      expect(kept.stdout).toBe('still alive\n');
      expect(kept.ms).toBeGreaterThanOrEqual(300);
    } finally {
      await peer.close();
    }
  });

  test('an idle layer never keeps the process alive', async () => {
    const peer = await listen(() => {});
    try {
      const r = await runChild(
        `const { SocketLayer } = await import(process.env.SG_DIST);
         const layer = new SocketLayer({ policy: 'development' });
         const s = layer.connect(Number(process.env.SG_PORT), '127.0.0.1');
         s.on('connect', () => s.destroy());`,
        peer.port,
      );
      expect(r.code).toBe(0);
    } finally {
      await peer.close();
    }
  });
});

describe('write pacing', () => {
  test("a writer driven only by 'drain' keeps going with nothing else to wake the loop", async () => {
    // The sink lives in another process: no other event in this one can mask a flush that waits for one.
    const child = spawn(process.execPath, ['-e', "const s=require('net').createServer(c=>c.resume()).listen(0,'127.0.0.1',()=>console.log(s.address().port))"], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(String(d)))));
      const chunk = Buffer.alloc(65536, 7);
      const total = 48 * 1024 * 1024;
      let written = 0;
      let drains = 0;
      await new Promise<void>((resolve, reject) => {
        const pump = () => {
          while (written < total) {
            written += chunk.length;
            if (!raw.write(chunk)) return;
          }
          raw.end();
        };
        const raw = layer.connectRaw(
          { host: '127.0.0.1', port, highWaterMark: 256 * 1024 },
          {
            onconnect: (err) => (err ? reject(err) : pump()),
            ondrain: () => {
              drains++;
              pump();
            },
            onfinish: () => {
              raw.destroy();
              resolve();
            },
            onclose: (err) => err && reject(err),
          },
        );
      });
      expect(written).toBe(total);
      expect(drains).toBeGreaterThan(10);
    } finally {
      child.kill();
    }
    // A liveness bound, not a speed check: this takes well under a second; a flush that waits for some other
    // event to wake the loop stalls each of the ~190 drain cycles and cannot finish in time.
  }, 8_000);
});
