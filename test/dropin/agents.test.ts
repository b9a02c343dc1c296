/**
 * layer.httpAgent(), layer.httpsAgent(), layer.dispatcher(): keep-alive pools of the layer's sockets, reclaimed
 * pooled sockets replaced without an error, TLS verification, session reuse, and redirects vetted on every hop.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { fetch as undiciFetch } from 'undici';
import { SocketLayer } from '../../src/index.js';

const key = readFileSync(new URL('../fixtures/key.pem', import.meta.url));
const cert = readFileSync(new URL('../fixtures/cert.pem', import.meta.url));

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function layerOf(options: ConstructorParameters<typeof SocketLayer>[0]): SocketLayer {
  process.removeAllListeners('warning');
  const layer = new SocketLayer(options);
  cleanup.push(() => layer.close());
  return layer;
}

async function serve(server: http.Server, host = '127.0.0.1'): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  server.on('connection', () => accepted++);
  server.on('secureConnection', () => {});
  await new Promise<void>((r) => server.listen(0, host, r));
  cleanup.push(() => new Promise((r) => server.close(r)));
  cleanup.push(() => server.closeAllConnections());
  return { port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

function get(mod: typeof http | typeof https, url: string, options: https.RequestOptions): Promise<{ body: string; socket: unknown }> {
  return new Promise((resolve, reject) => {
    const req = mod.get(url, options, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ body, socket: req.socket }));
    });
    req.on('error', reject);
  });
}

describe('httpAgent', () => {
  test('keeps connections alive, and a pooled socket the layer reclaims is replaced with no error', async () => {
    const layer = layerOf({ policy: 'development', idleTimeoutMs: 200 });
    const { port, accepted } = await serve(http.createServer((req, res) => res.end(`ok ${req.url}`)));
    const agent = layer.httpAgent({ keepAlive: true });
    cleanup.push(() => agent.destroy());
    const a = await get(http, `http://127.0.0.1:${port}/1`, { agent });
    const b = await get(http, `http://127.0.0.1:${port}/2`, { agent });
    expect([a.body, b.body]).toEqual(['ok /1', 'ok /2']);
    expect(b.socket).toBe(a.socket);
    expect(accepted()).toBe(1);
    // Idle in the pool past the idle timeout: the layer reclaims it; the agent drops it.
    await new Promise((r) => (a.socket as NodeJS.EventEmitter).once('close', r));
    expect((a.socket as { reclaimed: boolean }).reclaimed).toBe(true);
    const c = await get(http, `http://127.0.0.1:${port}/3`, { agent });
    expect(c.body).toBe('ok /3');
    expect(c.socket).not.toBe(a.socket);
    expect(accepted()).toBe(2);
    expect(layer.usage().reclaimed).toBeGreaterThanOrEqual(1);
  });
});

describe('httpsAgent', () => {
  test('verifies the certificate, reuses the TLS session on a new connection, refuses an untrusted peer', async () => {
    const layer = layerOf({ policy: 'development', idleTimeoutMs: 0 });
    const { port } = await serve(https.createServer({ key, cert, maxVersion: 'TLSv1.2' }, (req, res) => res.end(`secure ${req.url}`)));
    const agent = layer.httpsAgent({ keepAlive: false, ca: cert });
    cleanup.push(() => agent.destroy());
    const a = await get(https, `https://localhost:${port}/a`, { agent });
    const b = await get(https, `https://localhost:${port}/b`, { agent });
    expect([a.body, b.body]).toEqual(['secure /a', 'secure /b']);
    expect((a.socket as { authorized: boolean }).authorized).toBe(true);
    expect((b.socket as { isSessionReused(): boolean }).isSessionReused()).toBe(true);
    const untrusting = layer.httpsAgent({});
    cleanup.push(() => untrusting.destroy());
    const err = (await get(https, `https://localhost:${port}/c`, { agent: untrusting }).catch((e) => e)) as NodeJS.ErrnoException;
    expect(err.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });
});

describe('dispatcher', () => {
  test("fetch through it, Node's global fetch and undici's, over http and https", async () => {
    const layer = layerOf({ policy: 'development', idleTimeoutMs: 0 });
    const w = await serve(http.createServer((req, res) => res.end(`plain ${req.url}`)));
    const s = await serve(https.createServer({ key, cert }, (req, res) => res.end(`secure ${req.url}`)));
    const d = layer.dispatcher({ tls: { ca: cert } }) as { close(): Promise<void> };
    cleanup.push(() => d.close());
    const before = layer.usage().connects;
    expect(await (await fetch(`http://127.0.0.1:${w.port}/g`, { dispatcher: d } as RequestInit)).text()).toBe('plain /g');
    expect(await (await undiciFetch(`https://localhost:${s.port}/u`, { dispatcher: d as never })).text()).toBe('secure /u');
    // Keep-alive: the second request to an origin rides the first connection.
    expect(await (await undiciFetch(`http://127.0.0.1:${w.port}/h`, { dispatcher: d as never })).text()).toBe('plain /h');
    expect(layer.usage().connects - before).toBe(2);
  });

  test('a redirect to a denied address fails with EACCES, and nothing reaches it', async () => {
    // Only 127.0.0.1 is opened: 127.0.0.2 is loopback, denied by the production rules.
    const layer = layerOf({
      idleTimeoutMs: 0,
      policy: { version: 1, mode: 'production', allow: [{ cidr: '127.0.0.1/32', openSpecialPurpose: true }] },
    });
    const target = await serve(http.createServer((_req, res) => res.end('should not be reached')), '127.0.0.2');
    const first = await serve(
      http.createServer((_req, res) => {
        res.writeHead(302, { location: `http://127.0.0.2:${target.port}/secret` });
        res.end();
      }),
    );
    const d = layer.dispatcher() as { close(): Promise<void> };
    cleanup.push(() => d.close());
    const err = (await undiciFetch(`http://127.0.0.1:${first.port}/`, { dispatcher: d as never }).catch((e) => e)) as Error & {
      cause?: NodeJS.ErrnoException & { rule?: string };
    };
    expect(err.cause?.code).toBe('EACCES');
    expect(err.cause?.rule).toBe('loopback');
    expect(first.accepted()).toBe(1);
    expect(target.accepted()).toBe(0);
  });
});
