/**
 * The loop backends: which one a thread gets, and the thread backend's lifetime rules (an unref'd socket lets
 * the process exit, teardown at process exit and at a worker's end closes everything and stops the helper).
 * Children run in the runtime running this file, with SOCKGUARD_BACKEND=thread (Bun and Deno use it anyway).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { codes } from '../../src/errors.js';
import { loopBackend } from '../../src/core/loop.js';
import { distPath, echoServer, fdCount, moduleScriptArgs, once, until, workerFromCode, type Peer } from '../helpers.js';

const versions = process.versions as NodeJS.ProcessVersions & { bun?: string; deno?: string };
const otherRuntime = versions.bun !== undefined || versions.deno !== undefined;

let peer: Peer;
beforeAll(async () => {
  peer = await echoServer();
});
afterAll(async () => {
  await peer.close();
});

/** Runs `script` as a module in a child of this runtime with the thread backend; its exit code and stdout. */
function child(script: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const c = spawn(process.execPath, moduleScriptArgs(script), {
    env: { ...process.env, SG_DIST: distPath, SG_PORT: String(peer.port), SOCKGUARD_POLICY: 'development', SOCKGUARD_BACKEND: 'thread', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  c.stdout.on('data', (d) => (out += d));
  c.stderr.on('data', (d) => (err += d));
  const killer = setTimeout(() => c.kill('SIGKILL'), 15_000);
  return new Promise((resolve) => {
    c.on('exit', (code, signal) => {
      clearTimeout(killer);
      resolve({ code: signal ? -1 : code, out, err });
    });
  });
}

describe('backend selection', () => {
  test.runIf(!otherRuntime)('Node uses libuv handles unless SOCKGUARD_BACKEND=thread asks for the helper thread', () => {
    expect(loopBackend({})).toBe('uv');
    expect(loopBackend({ SOCKGUARD_BACKEND: 'uv' })).toBe('uv');
    expect(loopBackend({ SOCKGUARD_BACKEND: '' })).toBe('uv');
    expect(loopBackend({ SOCKGUARD_BACKEND: 'thread' })).toBe('thread');
  });

  test.runIf(otherRuntime)('Bun and Deno always use the helper thread (their libuv cannot watch descriptors)', () => {
    expect(loopBackend({})).toBe('thread');
    expect(loopBackend({ SOCKGUARD_BACKEND: 'uv' })).toBe('thread');
  });

  test.runIf(!otherRuntime)('an unknown SOCKGUARD_BACKEND is a coded error, not a silent default', () => {
    expect(() => loopBackend({ SOCKGUARD_BACKEND: 'epoll' })).toThrow(expect.objectContaining({ code: codes.INVALID_OPTION }));
  });

  test('a thread-backend loop in a child: round trip, then the process exits by itself once the socket is closed', async () => {
    const r = await child(`
      const { SocketLayer } = await import(process.env.SG_DIST);
      const { getLoop } = await import(new URL('core/loop.js', 'file://' + process.env.SG_DIST).href);
      const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
      const s = layer.connect(Number(process.env.SG_PORT), '127.0.0.1');
      s.on('connect', () => { for (let i = 0; i < 100; i++) s.write('x'.repeat(100)); });
      let got = 0;
      s.on('data', (d) => { got += d.length; if (got === 10000) { console.log(JSON.stringify({ backend: getLoop().backend, got })); s.destroy(); layer.close(); } });`);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out.trim())).toEqual({ backend: 'thread', got: 10000 });
  });
});

describe('thread backend lifetime', () => {
  test('an unref()ed open socket lets the process exit', async () => {
    const r = await child(`
      const { SocketLayer } = await import(process.env.SG_DIST);
      const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
      const s = layer.connect(Number(process.env.SG_PORT), '127.0.0.1');
      s.on('connect', () => { s.unref(); console.log('up'); });`);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe('up');
  });

  test('process.exit() with open sockets and the helper thread waiting tears down cleanly', async () => {
    const r = await child(`
      const { SocketLayer } = await import(process.env.SG_DIST);
      const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
      let up = 0;
      for (let i = 0; i < 20; i++) {
        layer.connect(Number(process.env.SG_PORT), '127.0.0.1').on('connect', () => { if (++up === 20) { console.log('up'); process.exit(7); } });
      }`);
    expect(r.code).toBe(7);
    expect(r.out.trim()).toBe('up');
  });

  test('a worker that ends on its own and a terminated worker with open sockets both leave no descriptor', async () => {
    const before = fdCount();
    const code = `
      import { parentPort, workerData } from 'node:worker_threads';
      process.env.SOCKGUARD_BACKEND = 'thread';
      const { SocketLayer } = await import(workerData.dist);
      const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
      let up = 0;
      const socks = [];
      for (let i = 0; i < workerData.count; i++) {
        const s = layer.connect(workerData.port, '127.0.0.1');
        socks.push(s);
        s.on('connect', () => {
          if (++up < workerData.count) return;
          parentPort.postMessage('up');
          if (workerData.close) { for (const t of socks) t.destroy(); layer.close(); }
        });
      }`;
    const ending = workerFromCode(code, { workerData: { dist: distPath, port: peer.port, count: 5, close: true } });
    const ended = once(ending, 'exit');
    await once(ending, 'message');
    await ended;
    const held = workerFromCode(code, { workerData: { dist: distPath, port: peer.port, count: 10, close: false } });
    await once(held, 'message');
    await held.terminate();
    await until(() => peer.connections.size === 0, 5000, 'connections to close');
    await until(() => fdCount() <= before, 5000, 'descriptors back to baseline');
  });
});
