/**
 * HTTP clients against Node's own http/https servers on loopback, their connections coming from a layer:
 * undici's `request` and `fetch` through an `Agent({ connect })` (keep-alive: one connection carries every
 * request), and node:https through `createConnection` returning the layer's TLS socket, with the fixture CA.
 * Then undici's request and fetch, Node's own fetch and https.request with no option at all, through
 * layer.install({ http: true }).
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Agent, fetch, request } from 'undici';
import type { SocketLayer } from '../../src/index.js';
import { payload, sha256, until } from '../helpers.js';
import {
  allowLayer, countingRelay, denyLayer, expectLedgerEqualsWire, expectNeverReached, fixtureCert, fixtureKey, installed, sentinel,
  whenReady,
} from './servers.js';

const MiB = 1024 * 1024;
/** What GET /blob serves: the same bytes for every request, so a client can check them. */
const BLOB = payload(MiB);

interface Origin {
  port: number;
  /**
   * Ends the server's idle keep-alive connections, as its keep-alive timeout would: the server's close (FIN, and
   * close_notify under TLS) is read by the client, so both ends have counted every byte when the relay closes.
   */
  closeIdle(): void;
  close(): Promise<void>;
}

/** GET /blob → BLOB; POST /sum → "<length> <sha256>" of the request body; anything else → "<method> <url>". */
async function startOrigin(secure: boolean): Promise<Origin> {
  const handler: http.RequestListener = (req, res) => {
    if (req.method === 'GET' && req.url === '/blob') {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(BLOB);
      return;
    }
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
    });
    req.on('end', () => res.end(req.url === '/sum' ? `${n} ${h.digest('hex')}` : `${req.method} ${req.url}`));
  };
  const server = secure ? https.createServer({ key: fixtureKey, cert: fixtureCert }, handler) : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    closeIdle: () => server.closeIdleConnections(),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** undici's connector hook: hands over the socket once it is connected (and, for https, verified). */
function undiciAgent(layer: SocketLayer): Agent {
  return new Agent({
    // One connection per origin: undici otherwise opens a second one for a request dispatched while the first
    // connection is still finishing its previous response, and keep-alive reuse is what is under test.
    connections: 1,
    connect(opts, cb) {
      const secure = opts.protocol === 'https:';
      const socket = layer.connect({
        host: opts.hostname,
        port: Number(opts.port) || (secure ? 443 : 80),
        ...(secure ? { tls: { ca: fixtureCert, servername: 'localhost' } } : {}),
      });
      whenReady(socket, secure ? 'secureConnect' : 'connect', (err) => (err ? cb(err, null) : cb(null, socket as never)));
    },
  });
}

let layer: SocketLayer;
beforeEach(() => {
  layer = allowLayer();
});
afterEach(() => layer.close());

describe('undici through a layer', () => {
  test('undici request via Agent connect: keep-alive, 1 MiB each way, one connection, the ledger equals the wire', async () => {
    const origin = await startOrigin(false);
    const relay = await countingRelay(origin.port);
    const agent = undiciAgent(layer);
    const base = `http://127.0.0.1:${relay.port}`;
    try {
      const blob = await request(`${base}/blob`, { dispatcher: agent });
      expect(blob.statusCode).toBe(200);
      expect(sha256(Buffer.from(await blob.body.arrayBuffer()))).toBe(sha256(BLOB));
      const body = payload(MiB);
      const sum = await request(`${base}/sum`, { dispatcher: agent, method: 'POST', body });
      expect(await sum.body.text()).toBe(`${MiB} ${sha256(body)}`);
      const small = await request(`${base}/small`, { dispatcher: agent });
      expect(await small.body.text()).toBe('GET /small');
      origin.closeIdle();
      await until(() => relay.open === 0, 5000, 'the relay to see the connection close');
      await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MiB, receivedOver: MiB });
    } finally {
      await agent.destroy();
      await relay.close();
      await origin.close();
    }
  });

  for (const secure of [false, true]) {
    const scheme = secure ? 'https' : 'http';
    test(`undici fetch via Agent connect (${scheme}): keep-alive, 1 MiB each way, one connection, the ledger equals the wire`, async () => {
      const origin = await startOrigin(secure);
      const relay = await countingRelay(origin.port);
      const agent = undiciAgent(layer);
      const base = `${scheme}://127.0.0.1:${relay.port}`;
      try {
        const blob = await fetch(`${base}/blob`, { dispatcher: agent });
        expect(blob.status).toBe(200);
        expect(sha256(Buffer.from(await blob.arrayBuffer()))).toBe(sha256(BLOB));
        const body = payload(MiB);
        const sum = await fetch(`${base}/sum`, { dispatcher: agent, method: 'POST', body });
        expect(await sum.text()).toBe(`${MiB} ${sha256(body)}`);
        expect(await (await fetch(`${base}/x?y=1`, { dispatcher: agent })).text()).toBe('GET /x?y=1');
        origin.closeIdle();
        await until(() => relay.open === 0, 5000, 'the relay to see the connection close');
        await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MiB, receivedOver: MiB });
      } finally {
        await agent.destroy();
        await relay.close();
        await origin.close();
      }
    });
  }

  test('undici request and fetch via Agent connect: a denied destination fails with EACCES and is never reached', async () => {
    const denied = denyLayer();
    const target = await sentinel();
    const agent = undiciAgent(denied);
    try {
      await expect(request(`http://127.0.0.1:${target.port}/`, { dispatcher: agent })).rejects.toMatchObject({
        code: 'EACCES', rule: 'loopback',
      });
      const err = await fetch(`http://127.0.0.1:${target.port}/`, { dispatcher: agent }).then(() => null, (e: Error) => e);
      expect(err).toBeInstanceOf(TypeError);
      expect(err!.cause).toMatchObject({ code: 'EACCES', rule: 'loopback' });
      expectNeverReached(denied, target, 2);
    } finally {
      await agent.destroy();
      await target.close();
      await denied.close();
    }
  });
});

/** An https.Agent whose connections are the layer's TLS sockets, verified against the CA the request names. */
class LayerHttpsAgent extends https.Agent {
  constructor(private readonly layer: SocketLayer, options: https.AgentOptions) {
    super(options);
  }
  override createConnection(options: https.RequestOptions) {
    return this.layer.connect({
      host: options.host!,
      port: Number(options.port),
      tls: { ca: options.ca as Buffer, servername: options.servername! },
    }) as never;
  }
}

function get(options: https.RequestOptions, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ method: body ? 'POST' : 'GET', ...options }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('node:https through a layer', () => {
  test('https.request via a keep-alive Agent createConnection with ca: verified, reused, the ledger equals the wire', async () => {
    const origin = await startOrigin(true);
    const relay = await countingRelay(origin.port);
    const agent = new LayerHttpsAgent(layer, { keepAlive: true, maxSockets: 1 });
    const opts = { host: '127.0.0.1', port: relay.port, ca: fixtureCert, servername: 'localhost', agent };
    try {
      const blob = await get({ ...opts, path: '/blob' });
      expect(blob.status).toBe(200);
      expect(sha256(blob.body)).toBe(sha256(BLOB));
      const body = payload(MiB);
      expect((await get({ ...opts, path: '/sum' }, body)).body.toString()).toBe(`${MiB} ${sha256(body)}`);
      expect((await get({ ...opts, path: '/again' })).body.toString()).toBe('GET /again');
      origin.closeIdle();
      await until(() => relay.open === 0, 5000, 'the relay to see the connection close');
      await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MiB, receivedOver: MiB });
    } finally {
      agent.destroy();
      await relay.close();
      await origin.close();
    }
  });

  const perRequest = (l: SocketLayer, servername: string) =>
    ((options: https.RequestOptions) =>
      l.connect({ host: options.host!, port: Number(options.port), tls: { ca: options.ca as Buffer, servername } })) as never;

  test('https.request via per-request createConnection: a certificate for another name is refused', async () => {
    const origin = await startOrigin(true);
    try {
      await expect(
        get({ host: '127.0.0.1', port: origin.port, path: '/', ca: fixtureCert, createConnection: perRequest(layer, 'db.example.com') }),
      ).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
      // The same route with the right name works, so the refusal was the verdict and nothing else.
      const ok = await get({ host: '127.0.0.1', port: origin.port, path: '/ok', ca: fixtureCert, createConnection: perRequest(layer, 'localhost') });
      expect(ok.body.toString()).toBe('GET /ok');
    } finally {
      await origin.close();
    }
  });

  test('https.request via createConnection: a denied destination fails with EACCES and is never reached', async () => {
    const denied = denyLayer();
    const target = await sentinel();
    try {
      await expect(
        get({ host: '127.0.0.1', port: target.port, path: '/', ca: fixtureCert, createConnection: perRequest(denied, 'localhost') }),
      ).rejects.toMatchObject({ code: 'EACCES', rule: 'loopback' });
      expectNeverReached(denied, target, 1);
    } finally {
      await target.close();
      await denied.close();
    }
  });
});

describe('HTTP clients through install() with no option', () => {
  test('undici request, undici fetch and Node fetch through install(): bodies round-trip, the ledger equals the wire', async () => {
    const origin = await startOrigin(false);
    const relay = await countingRelay(origin.port);
    const base = `http://127.0.0.1:${relay.port}`;
    try {
      await installed(layer, async () => {
        const blob = await request(`${base}/blob`);
        expect(sha256(Buffer.from(await blob.body.arrayBuffer()))).toBe(sha256(BLOB));
        const body = payload(MiB);
        expect(await (await request(`${base}/sum`, { method: 'POST', body })).body.text()).toBe(`${MiB} ${sha256(body)}`);
        expect(await (await fetch(`${base}/sum`, { method: 'POST', body })).text()).toBe(`${MiB} ${sha256(body)}`);
        expect(sha256(Buffer.from(await (await fetch(`${base}/blob`)).arrayBuffer()))).toBe(sha256(BLOB));
        const viaNode = await globalThis.fetch(`${base}/sum`, { method: 'POST', body: new Uint8Array(body) });
        expect(await viaNode.text()).toBe(`${MiB} ${sha256(body)}`);
        expect(sha256(Buffer.from(await (await globalThis.fetch(`${base}/blob`)).arrayBuffer()))).toBe(sha256(BLOB));
      });
      origin.closeIdle();
      await until(() => relay.open === 0, 5000, 'the relay to see the connections close');
      const u = await expectLedgerEqualsWire(layer, relay, { sentOver: 3 * MiB, receivedOver: 3 * MiB });
      // Every connection the relay saw was the layer's, and keep-alive carried six requests on fewer.
      expect(u.socketsCreated).toBe(relay.accepted);
      expect(relay.accepted).toBeLessThan(6);
    } finally {
      await relay.close();
      await origin.close();
    }
  });

  test('https.request through install() with ca: verified, kept alive, the ledger equals the wire', async () => {
    const origin = await startOrigin(true);
    const relay = await countingRelay(origin.port);
    const opts = { host: '127.0.0.1', port: relay.port, ca: fixtureCert, servername: 'localhost' };
    try {
      await installed(layer, async () => {
        expect(sha256((await get({ ...opts, path: '/blob' })).body)).toBe(sha256(BLOB));
        const body = payload(MiB);
        expect((await get({ ...opts, path: '/sum' }, body)).body.toString()).toBe(`${MiB} ${sha256(body)}`);
        expect((await get({ ...opts, path: '/again' })).body.toString()).toBe('GET /again');
        origin.closeIdle();
        await until(() => relay.open === 0, 5000, 'the relay to see the connection close');
        await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MiB, receivedOver: MiB });
        // Without the CA the same request is refused: the route verifies.
        await expect(get({ host: '127.0.0.1', port: relay.port, path: '/', servername: 'localhost' })).rejects.toMatchObject({
          code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
        });
      });
    } finally {
      await relay.close();
      await origin.close();
    }
  });

  test('undici request and fetch, Node fetch, https.request through install(): a denied destination fails with EACCES and is never reached', async () => {
    const denied = denyLayer();
    const target = await sentinel();
    const url = `http://127.0.0.1:${target.port}/`;
    try {
      await installed(denied, async () => {
        await expect(request(url)).rejects.toMatchObject({ code: 'EACCES', rule: 'loopback' });
        const viaUndici = await fetch(url).then(() => null, (e: Error) => e);
        expect(viaUndici?.cause).toMatchObject({ code: 'EACCES', rule: 'loopback' });
        const viaNode = await globalThis.fetch(url).then(() => null, (e: Error) => e);
        expect(viaNode?.cause).toMatchObject({ code: 'EACCES', rule: 'loopback' });
        await expect(get({ host: '127.0.0.1', port: target.port, path: '/', ca: fixtureCert, servername: 'localhost' })).rejects.toMatchObject({
          code: 'EACCES', rule: 'loopback',
        });
      });
      expectNeverReached(denied, target, 4);
    } finally {
      await target.close();
      await denied.close();
    }
  });
});
