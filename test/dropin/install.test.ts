/**
 * layer.install(): every outbound route of Node's public APIs goes through the layer (on the core, metered) or
 * is vetted at its last step; a denied destination is refused through each route and a listener there sees no
 * connection; listen: 'deny'; uninstall() restores Node's own functions; sockguard/register in a child process.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net, { connect as namedConnect, type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { fetch as undiciFetch } from 'undici';
import { SocketLayer, Socket, TlsSocket } from '../../src/index.js';
import { distPath, once } from '../helpers.js';

const key = readFileSync(new URL('../fixtures/key.pem', import.meta.url));
const cert = readFileSync(new URL('../fixtures/cert.pem', import.meta.url));

const origConnect = net.connect;
const origSocket = net.Socket;
const origTlsConnect = tls.connect;

let dev: SocketLayer;
let prod: SocketLayer;
let uninstall: (() => void) | undefined;
const servers: Array<{ close(cb?: () => void): unknown }> = [];

beforeEach(() => {
  process.removeAllListeners('warning');
  dev = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
  prod = new SocketLayer({ policy: 'production', idleTimeoutMs: 0 });
});
afterEach(async () => {
  uninstall?.();
  uninstall = undefined;
  await dev.close();
  await prod.close();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(() => r(undefined)));
});

async function serve<T extends net.Server>(server: T): Promise<{ server: T; port: number; accepted: () => number }> {
  let accepted = 0;
  server.on('connection', () => accepted++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { server, port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

const echo = () => serve(net.createServer((c) => c.pipe(c)));
const web = () =>
  serve(
    http.createServer((req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => res.end(`${req.method} ${req.url} ${n}`));
    }),
  );
const secureWeb = () => serve(https.createServer({ key, cert }, (req, res) => res.end(`secure ${req.url}`)));

function get(mod: typeof http | typeof https, url: string, options: https.RequestOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    mod
      .get(url, options, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

function errorOf(emitter: NodeJS.EventEmitter): Promise<NodeJS.ErrnoException & { rule?: string }> {
  return new Promise((resolve) => emitter.once('error', resolve));
}

describe('routes on the core', () => {
  test('net.connect, net.createConnection, named ESM imports and new net.Socket() are sockguard sockets', async () => {
    const { port } = await echo();
    uninstall = dev.install();
    const before = dev.usage();
    const sockets = [net.connect(port, '127.0.0.1'), net.createConnection({ port, host: '127.0.0.1' }), namedConnect(port, '127.0.0.1')];
    const made = new net.Socket();
    made.connect(port, '127.0.0.1');
    sockets.push(made);
    for (const s of sockets) {
      expect(s).toBeInstanceOf(Socket);
      // Libraries that check instanceof net.Socket keep working.
      expect(s instanceof net.Socket).toBe(true);
      s.resume();
      s.end('0123456789');
    }
    await Promise.all(sockets.map((s) => once(s, 'close')));
    const after = dev.usage();
    expect(after.connects - before.connects).toBe(4);
    expect(after.bytesSent - before.bytesSent).toBe(40);
    expect(after.bytesReceived - before.bytesReceived).toBe(40);
  });

  test('tls.connect without a socket is TLS on a sockguard socket; with a sockguard socket it is TLS in the core on that connection', async () => {
    const { port } = await secureWeb();
    uninstall = dev.install();
    const t = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: cert });
    expect(t).toBeInstanceOf(TlsSocket);
    expect(t instanceof tls.TLSSocket).toBe(true);
    await once(t, 'secureConnect');
    expect(t.authorized).toBe(true);
    t.destroy();
    // net.connect is the layer's: a sockguard socket, still connecting, whose connection TLS then continues.
    const created = dev.usage().socketsCreated;
    const raw = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const over = tls.connect({ socket: raw, servername: 'localhost', ca: cert });
    expect(over).toBeInstanceOf(TlsSocket);
    await once(over, 'secureConnect');
    expect(over.authorized).toBe(true);
    expect(dev.usage().socketsCreated - created).toBe(1);
    over.destroy();
    await once(raw, 'close');
  });

  test('https and http2 reach the server through the layer', async () => {
    const { port } = await secureWeb();
    const h2 = await serve(
      http2.createSecureServer({ key, cert }, (req, res) => res.end(`h2 ${req.url}`)) as unknown as net.Server,
    );
    uninstall = dev.install();
    const before = dev.usage().connects;
    expect(await get(https, `https://localhost:${port}/x`, { ca: cert })).toBe('secure /x');
    const session = http2.connect(`https://localhost:${h2.port}`, { ca: cert });
    const req = session.request({ ':path': '/y' });
    let body = '';
    req.on('data', (d: Buffer) => (body += d));
    await once(req, 'end');
    session.close();
    expect(body).toBe('h2 /y');
    expect(dev.usage().connects - before).toBe(2);
  });

  test('http: true routes the global agents, new http.Agents and fetch (global, and undici with its dispatcher)', async () => {
    const { port } = await web();
    const s = await secureWeb();
    uninstall = dev.install({ http: true });
    const before = dev.usage();
    expect(await get(http, `http://127.0.0.1:${port}/a`)).toBe('GET /a 0');
    expect(await get(http, `http://127.0.0.1:${port}/b`, { agent: new http.Agent() })).toBe('GET /b 0');
    const res = await fetch(`http://127.0.0.1:${port}/c`, { method: 'POST', body: 'x'.repeat(1000) });
    expect(await res.text()).toBe('POST /c 1000');
    expect(await get(https, `https://localhost:${s.port}/d`, { ca: cert })).toBe('secure /d');
    const u = await undiciFetch(`http://127.0.0.1:${port}/e`, { dispatcher: dev.dispatcher() as never });
    expect(await u.text()).toBe('GET /e 0');
    const after = dev.usage();
    expect(after.connects - before.connects).toBeGreaterThanOrEqual(5);
    expect(after.bytesSent - before.bytesSent).toBeGreaterThan(1000);
  });
});

describe('a denied destination is refused through every route, and its listener sees nothing', () => {
  test('with http: true', async () => {
    const e = await echo();
    const w = await web();
    const s = await secureWeb();
    uninstall = prod.install({ http: true });
    const codes: string[] = [];
    codes.push((await errorOf(net.connect(e.port, '127.0.0.1'))).code!);
    const made = new net.Socket();
    made.connect(e.port, '127.0.0.1');
    codes.push((await errorOf(made)).code!);
    codes.push((await errorOf(tls.connect({ port: s.port, host: '127.0.0.1', ca: cert }))).code!);
    codes.push(((await get(http, `http://127.0.0.1:${w.port}/`).catch((err) => err)) as NodeJS.ErrnoException).code!);
    codes.push(((await get(https, `https://localhost:${s.port}/`, { ca: cert }).catch((err) => err)) as NodeJS.ErrnoException).code!);
    const f = (await fetch(`http://127.0.0.1:${w.port}/`).catch((err) => err)) as Error & { cause?: NodeJS.ErrnoException };
    codes.push(f.cause?.code ?? 'none');
    const session = http2.connect(`https://localhost:${s.port}`, { ca: cert });
    codes.push((await errorOf(session)).code!);
    session.destroy();
    expect(codes).toEqual(Array(7).fill('EACCES'));
    expect([e.accepted(), w.accepted(), s.accepted()]).toEqual([0, 0, 0]);
  });

  test("without http: true, and a Node socket made before install(): vetted at the kernel connect's last step", async () => {
    const e = await echo();
    const w = await web();
    const early = new origSocket();
    uninstall = prod.install();
    const err = await new Promise<NodeJS.ErrnoException & { rule?: string }>((resolve) => {
      early.once('error', resolve);
      early.connect(e.port, '127.0.0.1');
    });
    expect([err.code, err.rule]).toEqual(['EACCES', 'loopback']);
    // A name goes through a lookup that answers only allowed addresses.
    const byName = await get(http, `http://localhost:${w.port}/`).catch((x) => x as NodeJS.ErrnoException);
    expect((byName as NodeJS.ErrnoException).code).toBe('EACCES');
    const byAddress = await get(http, `http://127.0.0.1:${w.port}/`).catch((x) => x as NodeJS.ErrnoException);
    expect((byAddress as NodeJS.ErrnoException).code).toBe('EACCES');
    // Another spelling of the address is read as the policy reads it.
    const early2 = new origSocket();
    const err2 = await new Promise<NodeJS.ErrnoException>((resolve) => {
      early2.once('error', resolve);
      early2.connect(e.port, '0x7f.1');
    });
    expect(err2.code).toBe('EACCES');
    expect([e.accepted(), w.accepted()]).toEqual([0, 0]);
  });

  test('Unix domain connects are refused', async () => {
    uninstall = dev.install();
    expect((await errorOf(net.connect('/nonexistent/sockguard.sock'))).code).toBe('EAFNOSUPPORT');
    const early = new origSocket();
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      early.once('error', resolve);
      early.connect({ path: '/nonexistent/sockguard.sock' });
    });
    expect(err.code).toBe('EAFNOSUPPORT');
  });
});

describe("listen: 'deny'", () => {
  test('refuses listening servers and UDP binds to a specific port; an any-address port-0 bind still works', async () => {
    uninstall = dev.install({ listen: 'deny' });
    const server = net.createServer();
    expect((await errorOf(server.listen(0, '127.0.0.1'))).code).toBe('EACCES');
    const h = http.createServer();
    expect((await errorOf(h.listen(0))).code).toBe('EACCES');
    const u = dgram.createSocket('udp4');
    expect((await errorOf(u.bind(40000))).code).toBe('EACCES');
    u.close();
    const ok = dgram.createSocket('udp4');
    ok.bind();
    await once(ok, 'listening');
    expect(ok.address().port).toBeGreaterThan(0);
    ok.close();
  });
});

describe('uninstall() and install() twice', () => {
  test("uninstall restores Node's functions; a second install while one is active is refused", async () => {
    uninstall = dev.install();
    expect(() => prod.install()).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_ALREADY_INSTALLED' }));
    uninstall();
    uninstall = undefined;
    expect(net.connect).toBe(origConnect);
    expect(net.Socket).toBe(origSocket);
    expect(tls.connect).toBe(origTlsConnect);
    expect(namedConnect).toBe(origConnect);
    const { port } = await echo();
    const s = net.connect(port, '127.0.0.1');
    expect(s).toBeInstanceOf(origSocket);
    s.destroy();
    uninstall = prod.install();
  });

  test('options are checked', () => {
    expect(() => dev.install({ http: 'yes' } as never)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
    expect(() => dev.install({ listen: 'no' } as never)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
  });
});

describe('sockguard/register', () => {
  // Asynchronous: the servers the child talks to run in this process.
  const run = (env: Record<string, string>, code: string) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'sockguard/register', '--input-type=module', '-e', code], {
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
        env: { ...process.env, ...env },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill(), 20_000);
      child.on('exit', (status) => {
        clearTimeout(timer);
        resolve({ status, stdout, stderr });
      });
    });

  test('installs the default layer from the environment (SOCKGUARD_HTTP present and empty routes fetch)', async () => {
    const { port } = await web();
    const code = `
      process.removeAllListeners('warning');
      const { getDefaultLayer } = await import(${JSON.stringify(distPath)});
      const r = await fetch('http://127.0.0.1:${port}/r');
      console.log(JSON.stringify({ body: await r.text(), usage: getDefaultLayer().usage() }));
    `;
    const out = await run({ SOCKGUARD_POLICY: 'development', SOCKGUARD_HTTP: '', SOCKGUARD_APP_ID: 'registered' }, code);
    expect(out.status, out.stderr).toBe(0);
    const r = JSON.parse(out.stdout.trim().split('\n').pop()!);
    expect(r.body).toBe('GET /r 0');
    expect(r.usage.appId).toBe('registered');
    expect(r.usage.connects).toBe(1);
    expect(r.usage.bytesSent).toBeGreaterThan(0);
  });

  test('SOCKGUARD_LISTEN=deny refuses a server; the production default refuses loopback', async () => {
    const e = await echo();
    const code = `
      import net from 'node:net';
      net.createServer().listen(0).on('error', (err) => console.log('listen', err.code));
      net.connect(${e.port}, '127.0.0.1').on('error', (err) => console.log('connect', err.code, err.rule));
    `;
    const out = await run({ SOCKGUARD_LISTEN: 'deny', SOCKGUARD_POLICY: '' }, code);
    expect(out.status, out.stderr).toBe(0);
    expect(out.stdout.trim().split('\n').sort()).toEqual(['connect EACCES loopback', 'listen EACCES']);
    expect(e.accepted()).toBe(0);
  });
});
