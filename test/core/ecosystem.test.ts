import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { SocketLayer } from '../../src/index.js';
import { once, payload, sha256 } from '../helpers.js';

const key = readFileSync(new URL('../fixtures/key.pem', import.meta.url));
const cert = readFileSync(new URL('../fixtures/cert.pem', import.meta.url));

let layer: SocketLayer;
// A layer per test, closed after it: no test sees sockets or counters another one left behind.
beforeEach(() => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
});
afterEach(() => layer.close());

describe('TLS over a sockguard Socket', () => {
  test('tls.connect({ socket }) handshakes and moves data both ways', async () => {
    const server = tls.createServer({ key, cert }, (c) => c.pipe(c));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const raw = layer.connect(port, '127.0.0.1');
      const secure = tls.connect({ socket: raw, servername: 'localhost', ca: cert });
      await once(secure, 'secureConnect');
      expect(secure.authorized).toBe(true);
      const data = payload(2 * 1024 * 1024);
      const got: Buffer[] = [];
      secure.on('data', (d: Buffer) => got.push(d));
      secure.end(data);
      await once(secure, 'close');
      expect(sha256(Buffer.concat(got))).toBe(sha256(data));
      // The meter counts the encrypted bytes that really crossed the socket.
      expect(raw.bytesWritten).toBeGreaterThan(data.length);
      expect(raw.bytesRead).toBeGreaterThan(data.length);
    } finally {
      server.close();
    }
  });

  test('a certificate mismatch is a TLS error, not a hang', async () => {
    const server = tls.createServer({ key, cert }, (c) => c.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const raw = layer.connect(port, '127.0.0.1');
      const secure = tls.connect({ socket: raw, servername: 'not-localhost.example', ca: cert });
      const err = await once<Error>(secure, 'error').catch((e) => e as Error);
      expect((err as NodeJS.ErrnoException).code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
      secure.destroy();
      raw.destroy();
    } finally {
      server.close();
    }
  });
});

describe('HTTP over sockguard', () => {
  test('http.request({ createConnection }) with keep-alive reuse', async () => {
    const server = http.createServer((req, res) => {
      const body: Buffer[] = [];
      req.on('data', (d) => body.push(d));
      req.on('end', () => res.end(`${req.method} ${req.url} ${Buffer.concat(body).length}`));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    class Agent extends http.Agent {
      override createConnection(options: any, cb: any) {
        return layer.connect({ host: options.host, port: options.port }, cb);
      }
    }
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const request = (path: string, body?: Buffer) =>
        new Promise<string>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', agent }, (res) => {
            const parts: Buffer[] = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => resolve(Buffer.concat(parts).toString()));
          });
          req.on('error', reject);
          req.end(body);
        });
      expect(await request('/a')).toBe('GET /a 0');
      expect(await request('/b', payload(500_000))).toBe('POST /b 500000');
      expect(await request('/c')).toBe('GET /c 0');
      // One connection carried all three requests.
      expect(layer.usage().socketsCreated).toBe(1);
    } finally {
      agent.destroy();
      server.close();
    }
  });

  test('per-request createConnection without an agent', async () => {
    const server = http.createServer((_req, res) => res.end('hi'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port, path: '/', createConnection: (o: any, cb: any) => layer.connect({ host: o.host, port: o.port }, cb) } as any,
          (res) => {
            let t = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (t += d));
            res.on('end', () => resolve(t));
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(text).toBe('hi');
    } finally {
      server.close();
    }
  });
});
