/**
 * The native boundary: argument validation (coded errors, no effect, no abort), the core's own decisions
 * (detach while bytes are queued, SO_LINGER), the layout the TS side reads from the addon, and what happens when
 * the addon or the loop cannot be created (missing build, out of descriptors, a second copy of the JS side).
 */
import { afterEach, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { SocketLayer, constants as C, type Socket } from '../../src/index.js';
import { getLoop } from '../../src/core/loop.js';
import * as N from '../../src/core/native.js';
import { distPath, listen, moduleScriptArgs, once, until, type Peer } from '../helpers.js';

const opened: Array<SocketLayer | Peer> = [];
const tmp: string[] = [];
afterEach(async () => {
  for (const x of opened.splice(0)) await x.close();
  for (const d of tmp.splice(0)) rmSync(d, { recursive: true, force: true });
});

function layerOf(options: ConstructorParameters<typeof SocketLayer>[0] = {}): SocketLayer {
  const l = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, ...options });
  opened.push(l);
  return l;
}

async function peer(onConnection: Parameters<typeof listen>[0]): Promise<Peer> {
  const p = await listen(onConnection);
  opened.push(p);
  return p;
}

async function connected(layer: SocketLayer, port: number): Promise<Socket> {
  const s = layer.connect(port, '127.0.0.1');
  await once(s, 'connect');
  return s;
}

const idOf = (s: Socket): number => s.raw.id;

const distDir = dirname(distPath);
const repo = fileURLToPath(new URL('../..', import.meta.url));

/** Runs an ES module script with plain Node (optionally under `ulimit -n`); resolves with its exit and output. */
function runNode(
  script: string,
  opts: { env?: Record<string, string | undefined>; ulimit?: number; cwd?: string } = {},
): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  const args = moduleScriptArgs(script);
  const child =
    opts.ulimit === undefined
      ? spawn(process.execPath, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd ?? repo })
      : spawn('bash', ['-c', `ulimit -n ${opts.ulimit} && exec "$0" "$@"`, process.execPath, ...args], {
          env: { ...process.env, ...opts.env },
          cwd: opts.cwd ?? repo,
        });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, out, err });
    });
  });
}

/** The last line of a child's stdout, as JSON. */
function result(r: { out: string; err: string; code: number | null }): Record<string, unknown> {
  const line = r.out.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`child printed no result (exit ${r.code}): ${r.out}\n${r.err}`);
  }
}

const codeOf = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (e) {
    return (e as { code?: unknown }).code;
  }
  return 'no error';
};

describe('argument validation', () => {
  test('a wrong type throws ERR_INVALID_ARG_TYPE and has no effect (socket_close(undefined) closes nothing)', async () => {
    const p = await peer((c) => c.pipe(c));
    const s = await connected(layerOf(), p.port);
    const nat = getLoop().nat;
    const id = idOf(s);
    for (const bad of [undefined, null, '0', String(id), {}, [], true, 0n, Symbol('x'), () => 0]) {
      expect(codeOf(() => nat.socket_close(bad as never))).toBe('ERR_INVALID_ARG_TYPE');
      expect(codeOf(() => nat.socket_detach(bad as never))).toBe('ERR_INVALID_ARG_TYPE');
    }
    const e = (() => {
      try {
        nat.socket_close(undefined as never);
      } catch (err) {
        return err as Error;
      }
    })();
    expect(e).toBeInstanceOf(TypeError);
    expect(e?.message).toMatch(/"id" argument must be of type number/);
    // The socket still works.
    s.write('still here');
    const [echo] = await Promise.all([once<Buffer>(s, 'data')]);
    expect(echo.toString()).toBe('still here');
    s.destroy();
  });

  test('numbers out of range throw ERR_OUT_OF_RANGE (RangeError), checked before any effect', () => {
    const nat = getLoop().nat;
    for (const bad of [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 32, Number.MAX_VALUE, -0.5]) {
      expect(codeOf(() => nat.socket_close(bad))).toBe('ERR_OUT_OF_RANGE');
    }
    expect(codeOf(() => nat.tcp_connect(0, 5 as never, '127.0.0.1', 80, 0))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.tcp_connect(0, 4, '127.0.0.1', 65536, 0))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.tcp_connect(0, 4, '127.0.0.1', -1, 0))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.tcp_connect(0, 4, 42 as never, 80, 0))).toBe('ERR_INVALID_ARG_TYPE');
    expect(codeOf(() => nat.socket_adopt(0, -1, 0))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.udp_open(0, 0 as never))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.socket_read(0, 1 as never))).toBe('ERR_INVALID_ARG_TYPE');
    expect(codeOf(() => nat.socket_write(0, 'text' as never))).toBe('ERR_INVALID_ARG_TYPE');
    expect(codeOf(() => nat.socket_flush('0' as never))).toBe('ERR_INVALID_ARG_TYPE');
    expect(codeOf(() => nat.socket_write(0, Buffer.from('a'), 1 as never))).toBe('ERR_INVALID_ARG_TYPE');
    expect(nat.socket_flush(N.LAYOUT.chunk - 1)).toBe(-9); // EBADF: no such socket
    expect(codeOf(() => nat.loop_add_chunk(new ArrayBuffer(8)))).toBe('ERR_OUT_OF_RANGE');
    // A new socket's id must be covered by a counter chunk (its counters live there).
    expect(codeOf(() => nat.udp_open(2 ** 31, 4))).toBe('ERR_OUT_OF_RANGE');
  });

  test('socket_writev with a 2^32-1 element array throws ERR_OUT_OF_RANGE instead of aborting', () => {
    const nat = getLoop().nat;
    expect(codeOf(() => nat.socket_writev(0, new Array(2 ** 32 - 1)))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.socket_writev(0, new Array(N.LAYOUT.writevMax + 1)))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.socket_writev(0, [Buffer.from('a'), 'b' as never]))).toBe('ERR_INVALID_ARG_TYPE');
    expect(codeOf(() => nat.socket_writev(0, {} as never))).toBe('ERR_INVALID_ARG_TYPE');
  });

  test('a getter in a writev array that closes the socket cannot pull it out from under the call', async () => {
    const p = await peer((c) => c.resume());
    const s = await connected(layerOf(), p.port);
    const nat = getLoop().nat;
    const id = idOf(s);
    const chunks: Buffer[] = [Buffer.from('a')];
    Object.defineProperty(chunks, 1, {
      get() {
        s.destroy();
        return Buffer.from('b');
      },
    });
    expect(nat.socket_writev(id, chunks)).toBe(-9); // EBADF: the socket was gone by the time the bytes were queued
  });

  test('SO_LINGER seconds are bounded at the boundary', async () => {
    const p = await peer(() => {});
    const s = await connected(layerOf({ sockopts: 'native' }), p.port);
    const nat = getLoop().nat;
    const id = idOf(s);
    expect(nat.socket_setsockopt(id, C.SOL_SOCKET, C.SO_LINGER, N.LAYOUT.lingerMax)).toBe(0);
    expect(nat.socket_getsockopt(id, C.SOL_SOCKET, C.SO_LINGER)).toBe(N.LAYOUT.lingerMax);
    expect(codeOf(() => nat.socket_setsockopt(id, C.SOL_SOCKET, C.SO_LINGER, N.LAYOUT.lingerMax + 1))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.socket_setsockopt(id, C.SOL_SOCKET, C.SO_LINGER, 2 ** 31 - 1))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => nat.socket_setsockopt(id, C.SOL_SOCKET, C.SO_LINGER, -2))).toBe('ERR_OUT_OF_RANGE');
    expect(nat.socket_setsockopt(id, C.SOL_SOCKET, C.SO_LINGER, N.LAYOUT.lingerOff)).toBe(0);
    expect(nat.socket_getsockopt(id, C.SOL_SOCKET, C.SO_LINGER)).toBe(N.LAYOUT.lingerOff);
    s.destroy();
  });
});

describe('TLS exports', () => {
  test('wrong types throw coded errors; unusable text and unknown sockets are answers, not exceptions', () => {
    const nat = getLoop().nat;
    expect(typeof nat.tls_available()).toBe('boolean');
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as NodeJS.ErrnoException).code;
      }
      return 'no throw';
    };
    expect(code(() => nat.tls_context(42 as never, null, null, null, null, null, 0, 0))).toBe('ERR_INVALID_ARG_TYPE');
    expect(code(() => nat.tls_context('', null, null, null, null, null, 1.5, 0))).toBe('ERR_OUT_OF_RANGE');
    expect(nat.tls_context('a\u0000b', null, null, null, null, null, 0, 0)).toMatch(/NUL/);
    expect(nat.tls_context('no certificate here', null, null, null, null, null, 0, 0)).toMatch(/no certificate in ca/);
    // Only a context made by tls_context() is accepted: anything else is refused before it is used.
    expect(code(() => nat.tls_start(0, {} as never, null, null, null, 65536))).toBe('ERR_INVALID_ARG_TYPE');
    expect(code(() => nat.tls_start(0, null as never, null, null, null, 65536))).toBe('ERR_INVALID_ARG_TYPE');
    expect(nat.tls_info(4000)).toBe(-9);
    expect(nat.tls_peer_cert(4000, 0)).toBe(null);
    expect(nat.tls_session(4000)).toBe(null);
    expect(nat.tls_error(4000)).toBe(null);
  });
});

describe('decisions in the core', () => {
  test('tls_start on a connected socket queues the ClientHello at once; a second start, or one after end(), is -EINVAL', async () => {
    const nat = getLoop().nat;
    if (!nat.tls_available()) return;
    const ctx = nat.tls_context(readFileSync(new URL('../fixtures/cert.pem', import.meta.url), 'latin1'), null, null, null, null, null, 0, 0);
    if (typeof ctx === 'string') throw new Error(ctx);
    const got: Buffer[] = [];
    const p = await peer((c) => c.on('data', (d: Buffer) => got.push(d)));
    const layer = layerOf();
    const s = await connected(layer, p.port);
    s.write('plain first');
    expect(nat.tls_start(idOf(s), ctx, 'localhost', null, null, 65536)).toBe(0);
    expect(nat.tls_start(idOf(s), ctx, null, null, null, 65536)).toBe(-22);
    // Closing hands what is queued to the kernel: the plaintext, then the ClientHello (a handshake record, 0x16).
    s.destroy();
    await until(() => Buffer.concat(got).length > 'plain first'.length, 5000, 'the ClientHello');
    const wire = Buffer.concat(got);
    expect(wire.subarray(0, 11).toString()).toBe('plain first');
    expect(wire[11]).toBe(0x16);

    const ended = await connected(layer, p.port);
    ended.end();
    await once(ended, 'finish');
    expect(nat.tls_start(idOf(ended), ctx, null, null, null, 65536)).toBe(-22);
    ended.destroy();
  });

  test('socket_detach answers -EBUSY while bytes are queued natively, and leaves the socket working', async () => {
    const p = await peer(() => {}); // never reads
    const s = await connected(layerOf(), p.port);
    const nat = getLoop().nat;
    const id = idOf(s);
    s.write(Buffer.alloc(32 * 1024 * 1024));
    await until(() => nat.socket_detach(id) === -16, 5000, 'EBUSY from detach'); // EBUSY
    expect(nat.socket_so_error(id)).toBe(0);
    s.destroy();
  });

  test('destroy() with unsent data and SO_LINGER {1, 3} set natively does not block the thread', async () => {
    const p = await peer(() => {}); // never reads: the kernel's send queue stays full
    const s = await connected(layerOf({ sockopts: 'native' }), p.port);
    s.write(Buffer.alloc(32 * 1024 * 1024));
    await new Promise((r) => setTimeout(r, 50));
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, { onoff: 1, linger: 3 });
    // A timer due at once must run well before the linger time: a blocking close() would hold it for 3 s.
    const started = performance.now();
    const lag = new Promise<number>((r) => setImmediate(() => r(performance.now() - started)));
    s.destroy();
    expect(await lag).toBeLessThan(1000);
  });
});

describe('layout from the addon', () => {
  test('the TS constants are the layout the addon reports', () => {
    getLoop();
    const l = N.LAYOUT;
    expect(l.version).toBeGreaterThan(0);
    expect([N.REC_DATA, N.REC_DGRAM, N.REC_EOF, N.REC_ERROR, N.REC_CONNECT, N.REC_DRAIN, N.REC_SHUTDOWN, N.REC_SESSION]).toEqual([
      l.rec.data,
      l.rec.dgram,
      l.rec.eof,
      l.rec.error,
      l.rec.connect,
      l.rec.drain,
      l.rec.shutdown,
      l.rec.session,
    ]);
    expect(new Set(Object.values(l.rec)).size).toBe(8);
    expect(N.CTR_PENDING).toBe(l.ctr.pending * 2);
    expect(N.CTR_STAGED).toBe(l.ctr.staged * 2);
    expect(N.syscallNames[l.sys.write]).toBe('write');
    expect(N.syscallNames[l.sys.connect]).toBe('connect');
    expect(getLoop().records.length).toBe(l.recCap * l.recInts);
  });
});

describe('loading the addon and creating the loop', () => {
  test('an unloadable addon names the path tried and advises `npm rebuild sockguard`', async () => {
    const missing = join(tmpdir(), 'sockguard-no-such-dir', 'sockguard.node');
    const r = await runNode(
      `const { native } = await import(${JSON.stringify(join(distDir, 'core/native.js'))});
       const out = [];
       for (let i = 0; i < 2; i++) { try { native(); out.push('loaded'); } catch (e) { out.push({ code: e.code, message: e.message }); } }
       console.log(JSON.stringify({ out }));`,
      { env: { SOCKGUARD_NATIVE: missing } },
    );
    const { out } = result(r) as { out: Array<{ code: string; message: string }> };
    for (const e of out) {
      expect(e.code).toBe('ERR_SOCKGUARD_NATIVE_UNAVAILABLE');
      expect(e.message).toContain(missing);
      expect(e.message).toContain('npm rebuild sockguard');
      expect(e.message).not.toContain('build:native');
    }
  });

  test("a broken Release build is what the error names, not the Debug build's absence", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sockguard-pkg-'));
    tmp.push(dir);
    cpSync(distDir, join(dir, 'dist'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    mkdirSync(join(dir, 'build/Release'), { recursive: true });
    writeFileSync(join(dir, 'build/Release/sockguard.node'), 'not an ELF file');
    const r = await runNode(
      `const { native } = await import(${JSON.stringify(join(dir, 'dist/core/native.js'))});
       try { native(); console.log('{}'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`,
      { env: { SOCKGUARD_NATIVE: undefined } },
    );
    const e = result(r) as { code: string; message: string };
    expect(e.code).toBe('ERR_SOCKGUARD_NATIVE_UNAVAILABLE');
    expect(e.message).toContain(join(dir, 'build/Release/sockguard.node'));
    expect(e.message).not.toContain('Debug');
  });

  test('out of descriptors: a coded EMFILE that is not remembered, neither for the addon nor for the loop', async () => {
    const p = await peer((c) => c.end('hello'));
    const script = `
      import { openSync, closeSync } from 'node:fs';
      const N = await import(${JSON.stringify(join(distDir, 'core/native.js'))});
      const L = await import(${JSON.stringify(join(distDir, 'core/loop.js'))});
      const { SocketLayer } = await import(${JSON.stringify(distPath)});
      const fill = () => { const fds = []; try { for (;;) fds.push(openSync('/dev/null', 'r')); } catch {} return fds; };
      const free = (fds) => { for (const fd of fds) closeSync(fd); };
      const err = (fn) => { try { fn(); return 'no error'; } catch (e) { return { code: e.code, errno: e.errno, syscall: e.syscall }; } };
      const out = {};
      let fds = fill();
      out.load = err(() => N.native());       // dlopen needs a descriptor
      free(fds);
      N.native();                              // loads once descriptors are back
      fds = fill();
      out.loop = err(() => L.getLoop());       // epoll_create needs one
      free(fds);
      const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
      const s = layer.connect(Number(process.env.SG_PORT), '127.0.0.1');
      out.data = await new Promise((res, rej) => { s.on('data', (d) => res(String(d))); s.on('error', (e) => rej(e)); });
      s.destroy();
      await layer.close();
      console.log(JSON.stringify(out));`;
    const r = await runNode(script, { ulimit: 64, env: { SG_PORT: String(p.port) } });
    const out = result(r);
    expect(out.load).toEqual({ code: 'EMFILE', errno: -24, syscall: 'dlopen' });
    expect(out.loop).toEqual({ code: 'EMFILE', errno: -24, syscall: 'epoll_create' });
    expect(out.data).toBe('hello');
  });

  test('two copies of the JS side in one thread share its loop', async () => {
    const p = await peer((c) => c.pipe(c));
    const dir = mkdtempSync(join(tmpdir(), 'sockguard-copy-'));
    tmp.push(dir);
    cpSync(distDir, join(dir, 'dist'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
    symlinkSync(join(repo, 'data'), join(dir, 'data'));
    const addon = process.env.SOCKGUARD_NATIVE ?? join(repo, 'build/Release/sockguard.node');
    const script = `
      const a = await import(${JSON.stringify(distPath)});
      const b = await import(${JSON.stringify(join(dir, 'dist/index.js'))});
      const la = await import(${JSON.stringify(join(distDir, 'core/loop.js'))});
      const lb = await import(${JSON.stringify(join(dir, 'dist/core/loop.js'))});
      const echo = async (mod, text) => {
        const layer = new mod.SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
        const s = layer.connect(Number(process.env.SG_PORT), '127.0.0.1');
        s.write(text);
        const got = await new Promise((res, rej) => { s.on('data', (d) => res(String(d))); s.on('error', rej); });
        s.destroy();
        await layer.close();
        return got;
      };
      const first = await echo(a, 'from a');
      const second = await echo(b, 'from b');
      console.log(JSON.stringify({ first, second, same: la.getLoop() === lb.getLoop(), distinct: la.Loop !== lb.Loop }));`;
    const r = await runNode(script, { env: { SG_PORT: String(p.port), SOCKGUARD_NATIVE: addon } });
    expect(result(r)).toEqual({ first: 'from a', second: 'from b', same: true, distinct: true });
  });

  test('a loop owned by a copy that speaks another protocol is refused with a coded error', async () => {
    const script = `
      const N = await import(${JSON.stringify(join(distDir, 'core/native.js'))});
      const L = await import(${JSON.stringify(join(distDir, 'core/loop.js'))});
      const nat = N.native();
      const l = N.LAYOUT;
      const r = nat.loop_init(new ArrayBuffer(l.slabMin), new Int32Array(l.recCap * l.recInts), () => {},
        new ArrayBuffer(64), new Int32Array(l.stageHeader + l.stageInts), {},
        L.loopBackend() === 'thread' ? l.backends.thread : l.backends.uv, () => {});
      try { L.getLoop(); console.log(JSON.stringify({ r, code: 'none' })); }
      catch (e) { console.log(JSON.stringify({ r, code: e.code })); }`;
    expect(result(await runNode(script))).toEqual({ r: 0, code: 'ERR_SOCKGUARD_NATIVE_UNAVAILABLE' });
  });
});
