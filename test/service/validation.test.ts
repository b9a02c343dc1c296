/**
 * Bad input never leaves a trace: every refused option is a coded error thrown before anything is admitted (no
 * socket counted, nothing connected natively), and the few options that bound time are honoured exactly.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { SocketLayer, type Resolver } from '../../src/index.js';
import { distPath, echoServer, errorOf, fdCount, listen, moduleScriptArgs, once, until, type Peer } from '../helpers.js';

let layer: SocketLayer;
let peer: Peer;

beforeEach(async () => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
  peer = await echoServer();
});

afterEach(async () => {
  await layer.close();
  await peer.close();
});

/** The error a synchronous call throws (undefined when it does not throw). */
function thrown(fn: () => unknown): (Error & { code?: unknown }) | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: unknown };
  }
  return undefined;
}

/** A DataView whose buffer was transferred away: even describing it for a message can throw. */
function detachedView(): DataView {
  const ab = new ArrayBuffer(8);
  const view = new DataView(ab);
  structuredClone(ab, { transfer: [ab] });
  return view;
}

/** Nothing was admitted: no open socket, nothing created, and no connection reached the peer. */
async function nothingAdmitted(): Promise<void> {
  expect(layer.size).toBe(0);
  const u = layer.usage();
  expect(u.socketsOpen).toBe(0);
  expect(u.socketsCreated).toBe(0);
  // A connection the refused call might have started would reach the listener within a few turns.
  const probe = layer.connect(peer.port, '127.0.0.1');
  await once(probe, 'connect');
  await until(() => peer.connections.size >= 1, 2000, 'the probe connection');
  expect(peer.connections.size).toBe(1);
  probe.destroy();
  await once(probe, 'close');
}

describe('refused options admit nothing', () => {
  const rawCases: Array<[string, () => unknown, string]> = [
    ['connectRaw(undefined)', () => layer.connectRaw(undefined as never), 'ERR_INVALID_ARG_TYPE'],
    ['connectRaw(options, null)', () => layer.connectRaw({ host: '127.0.0.1', port: peer.port }, null as never), 'ERR_INVALID_ARG_TYPE'],
    ['a handler that is not a function', () => layer.connectRaw({ host: '127.0.0.1', port: peer.port }, { ondata: 5 } as never), 'ERR_INVALID_ARG_TYPE'],
    ["highWaterMark: 'abc'", () => layer.connectRaw({ host: '127.0.0.1', port: peer.port, highWaterMark: 'abc' as never }), 'ERR_SOCKGUARD_INVALID_OPTION'],
    ['highWaterMark: 0', () => layer.connectRaw({ host: '127.0.0.1', port: peer.port, highWaterMark: 0 }), 'ERR_SOCKGUARD_INVALID_OPTION'],
    ["raw connectTimeout: 'x'", () => layer.connectRaw({ host: '127.0.0.1', port: peer.port, connectTimeout: 'x' as never }), 'ERR_SOCKGUARD_INVALID_OPTION'],
  ];
  for (const [name, call, code] of rawCases) {
    test(`${name}: coded ${code}, no socket, no connection`, async () => {
      expect(thrown(call)?.code).toBe(code);
      await nothingAdmitted();
    });
  }

  const duplexCases: Array<[string, Record<string, unknown>, string]> = [
    ['connectTimeout: -1', { connectTimeout: -1 }, 'ERR_SOCKGUARD_INVALID_OPTION'],
    ['connectTimeout: NaN', { connectTimeout: Number.NaN }, 'ERR_SOCKGUARD_INVALID_OPTION'],
    ['connectTimeout: 3e9 (past the largest timer)', { connectTimeout: 3e9 }, 'ERR_SOCKGUARD_INVALID_OPTION'],
    ["signal: 'x'", { signal: 'x' }, 'ERR_INVALID_ARG_TYPE'],
    ["lookup: 'x'", { lookup: 'x' }, 'ERR_SOCKGUARD_INVALID_OPTION'],
    ['timeout: 3e9', { timeout: 3e9 }, 'ERR_OUT_OF_RANGE'],
    ['family: 5', { family: 5 }, 'ERR_SOCKGUARD_INVALID_OPTION'],
    ["highWaterMark: 'x'", { highWaterMark: 'x' }, 'ERR_INVALID_ARG_VALUE'],
    ['readableHighWaterMark: a detached DataView', { readableHighWaterMark: detachedView() }, 'ERR_INVALID_ARG_VALUE'],
    ['writableHighWaterMark: -1', { writableHighWaterMark: -1 }, 'ERR_INVALID_ARG_VALUE'],
  ];
  for (const [name, extra, code] of duplexCases) {
    test(`connect with ${name}: coded ${code}, no socket, no connection`, async () => {
      expect(thrown(() => layer.connect({ host: '127.0.0.1', port: peer.port, ...extra }))?.code).toBe(code);
      await nothingAdmitted();
    });
  }

  test("createSocket({ signal: 'x' }): coded, no socket created", async () => {
    expect(thrown(() => layer.createSocket({ type: 'udp4', signal: 'x' as never }))?.code).toBe('ERR_INVALID_ARG_TYPE');
    await nothingAdmitted();
  });

  test('the layer closes what it admitted: 100 refused raw connects leave no live connection behind', async () => {
    for (let i = 0; i < 100; i++) {
      expect(thrown(() => layer.connectRaw({ host: '127.0.0.1', port: peer.port, highWaterMark: 'abc' as never }))?.code).toBe(
        'ERR_SOCKGUARD_INVALID_OPTION',
      );
    }
    await layer.close();
    expect(peer.connections.size).toBe(0);
  });
});

describe('connect timeout', () => {
  test('bounds name resolution: a resolver that never answers ends in ETIMEDOUT', async () => {
    const never: Resolver = () => new Promise(() => {});
    const own = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, resolver: never });
    try {
      const s = own.connect({ host: 'never.example', port: peer.port, connectTimeout: 50 });
      const err = await errorOf(s);
      expect(err.code).toBe('ETIMEDOUT');
      expect(err.syscall).toBe('connect');
      await until(() => own.size === 0, 2000, 'the socket released');
    } finally {
      await own.close();
    }
  });

  test("bounds a `lookup` option that never calls back", async () => {
    const s = layer.connect({ host: 'never.example', port: peer.port, connectTimeout: 50, lookup: () => {} });
    expect((await errorOf(s)).code).toBe('ETIMEDOUT');
  });

  test('the largest timer delay is a long timeout, not a 1 ms one', async () => {
    const s = layer.connect({ host: '127.0.0.1', port: peer.port, connectTimeout: 0x7fffffff });
    await once(s, 'connect');
    s.destroy();
  });
});

describe('a failing resolver reaches the socket with a code', () => {
  test('a lookup that fails with a plain Error gives an EAI_FAIL error', async () => {
    const s = layer.connect({ host: 'broken.example', port: peer.port, lookup: (_h, _o, cb) => cb(new Error('boom')) });
    const err = await errorOf(s);
    expect(err.code).toBe('EAI_FAIL');
  });
});

describe('high-water mark', () => {
  test("the layer's highWaterMark governs layer.connect() sockets", async () => {
    const own = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, highWaterMark: 4096 });
    let server!: net.Socket;
    const quiet = await listen((c) => {
      server = c;
      c.pause();
    });
    try {
      const s = own.connect(quiet.port, '127.0.0.1');
      await once(s, 'connect');
      // The client may see its connect before the server's connection callback has run (Bun orders them so).
      await until(() => server !== undefined, 5000, 'the server side of the connection');
      expect(s.raw.highWaterMark).toBe(4096);
      // 64 KiB at once is past 4 KiB: the write asks the caller to wait.
      expect(s.write(Buffer.alloc(64 * 1024))).toBe(false);
      expect(s.writableNeedDrain).toBe(true);
      server.resume();
      await once(s, 'drain');
      s.destroy();
    } finally {
      await own.close();
      await quiet.close();
    }
  });

  test('writableLength counts bytes waiting in the native queue, as net counts its pending writes', async () => {
    let server!: net.Socket;
    const quiet = await listen((c) => {
      server = c;
      c.pause();
    });
    try {
      const s = layer.connect(quiet.port, '127.0.0.1');
      await once(s, 'connect');
      await until(() => server !== undefined, 5000, 'the server side of the connection');
      const chunk = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < 64; i++) s.write(chunk);
      await new Promise((r) => setImmediate(r));
      expect(s.raw.pendingBytes).toBeGreaterThan(8 * 1024 * 1024);
      expect(s.writableLength).toBeGreaterThanOrEqual(s.raw.pendingBytes);
      expect(s.writableNeedDrain).toBe(true);
      server.destroy();
      s.destroy();
    } finally {
      await quiet.close();
    }
  });
});

describe('raw writes', () => {
  let raw: ReturnType<SocketLayer['connectRaw']>;
  let data: Buffer[];
  beforeEach(async () => {
    data = [];
    const connected = new Promise<void>((resolve, reject) => {
      raw = layer.connectRaw({ host: '127.0.0.1', port: peer.port }, {
        onconnect: (err) => (err ? reject(err) : resolve()),
        ondata: (buf, off, len) => data.push(Buffer.from(buf.subarray(off, off + len))),
      });
    });
    await connected;
  });
  afterEach(() => raw.destroy());

  for (const [name, value] of [['a string', 'abc'], ['a number', 5], ['undefined', undefined], ['an object', {}]] as const) {
    test(`write(${name}) is a coded TypeError and the connection keeps working`, async () => {
      expect(thrown(() => raw.write(value as never))?.code).toBe('ERR_INVALID_ARG_TYPE');
      raw.write(Buffer.from('still here'));
      await until(() => Buffer.concat(data).toString() === 'still here', 2000, 'the echo');
    });
  }

  test("writev('x') and writev([Buffer, 'x']) are coded TypeErrors that send nothing", async () => {
    expect(thrown(() => raw.writev('x' as never))?.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(thrown(() => raw.writev([Buffer.from('a'), 'x'] as never))?.code).toBe('ERR_INVALID_ARG_TYPE');
    raw.write(Buffer.from('ok'));
    await until(() => Buffer.concat(data).toString() === 'ok', 2000, 'the echo');
  });

  test('a 0-byte write of a detached view is accepted, as net accepts it', async () => {
    const ab = new ArrayBuffer(8);
    const view = new Uint8Array(ab);
    structuredClone(ab, { transfer: [ab] });
    expect(view.byteLength).toBe(0);
    expect(raw.write(view)).toBe(true);
    raw.write(Buffer.from('after'));
    await until(() => Buffer.concat(data).toString() === 'after', 2000, 'the echo');
  });

  test('writev of more buffers than one native call takes keeps their order', async () => {
    const parts = Array.from({ length: 5000 }, (_, i) => Buffer.from(`${i % 10}`));
    raw.writev(parts);
    const expected = Buffer.concat(parts).toString();
    await until(() => Buffer.concat(data).length === expected.length, 5000, 'every byte');
    expect(Buffer.concat(data).toString()).toBe(expected);
  });
});

describe('Duplex arguments', () => {
  let s: ReturnType<SocketLayer['connect']>;
  beforeEach(async () => {
    s = layer.connect(peer.port, '127.0.0.1');
    await once(s, 'connect');
  });
  afterEach(() => s.destroy());

  const hostile = new Proxy({}, { get: () => 80 });
  test('write() of a proxy is a coded TypeError', () => {
    expect(thrown(() => s.write(hostile as never))?.code).toBe('ERR_INVALID_ARG_TYPE');
  });
  test('write() with a detached view as the encoding is ERR_UNKNOWN_ENCODING', () => {
    expect(thrown(() => s.write('abc', detachedView() as never))?.code).toBe('ERR_UNKNOWN_ENCODING');
  });
  test('end() of a proxy is a coded TypeError and the socket stays writable', () => {
    expect(thrown(() => s.end(hostile as never))?.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(s.writable).toBe(true);
  });
  test('end() of a detached view ends the socket like end()', async () => {
    const ab = new ArrayBuffer(8);
    const view = new Uint8Array(ab);
    structuredClone(ab, { transfer: [ab] });
    s.end(view);
    await once(s, 'finish');
  });
  test('setTimeout() with a callback that is not a function is a coded TypeError', () => {
    expect(thrown(() => s.setTimeout(5, hostile as never))?.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(thrown(() => s.setTimeout(0, hostile as never))?.code).toBe('ERR_INVALID_ARG_TYPE');
  });
});

describe('process lifetime', () => {
  test("after end() and the peer's FIN, an unread socket lets the process exit (as net's does)", async () => {
    const script = `
      const { SocketLayer } = await import(process.env.SG_DIST);
      const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
      const s = layer.connect(Number(process.env.SG_PORT), '127.0.0.1');
      s.end('x');
    `;
    const ender = await listen((c) => {
      c.on('data', () => {});
      c.on('end', () => c.end());
    });
    try {
      const child = spawn(process.execPath, moduleScriptArgs(script), {
        env: { ...process.env, SG_DIST: distPath, SG_PORT: String(ender.port) },
        stdio: 'ignore',
      });
      const killer = setTimeout(() => child.kill(), 10_000);
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c, sig) => resolve(sig ? -1 : c)));
      clearTimeout(killer);
      expect(code).toBe(0);
    } finally {
      await ender.close();
    }
  });
});

describe('an addon that cannot load', () => {
  test("reaches the socket's 'error' listener with a coded error naming the consumer's fix", async () => {
    const script = `
      const { SocketLayer } = await import(process.env.SG_DIST);
      const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
      process.on('uncaughtException', (e) => { console.log('UNCAUGHT', e.code); process.exit(3); });
      const s = layer.connect(9, '127.0.0.1');
      s.on('error', (e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); });
    `;
    const child = spawn(process.execPath, moduleScriptArgs(script), {
      env: { ...process.env, SG_DIST: distPath, SOCKGUARD_NATIVE: '/nonexistent/sockguard.node' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    const reported = JSON.parse(out.trim()) as { code: string; message: string };
    expect(reported.code).toBe('ERR_SOCKGUARD_NATIVE_UNAVAILABLE');
    expect(reported.message).toContain('/nonexistent/sockguard.node');
    expect(reported.message).toContain('npm rebuild sockguard');
    expect(reported.message).not.toContain('build:native');
  });
});

test('descriptors return to the baseline after the refused calls above', async () => {
  const base = fdCount();
  for (let i = 0; i < 20; i++) thrown(() => layer.connectRaw({ host: '127.0.0.1', port: peer.port, highWaterMark: -1 }));
  expect(fdCount()).toBe(base);
});
