/**
 * The `ws` client against a `ws` server on loopback, its connection coming from a layer through the
 * `createConnection` option (ws hands it to http.request). Over wss the layer's own TLS socket is returned and
 * the HTTP upgrade runs over it. Then both with no option at all, through layer.install().
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import type { SocketLayer } from '../../src/index.js';
import { payload, sha256, until } from '../helpers.js';
import {
  allowLayer, countingRelay, denyLayer, expectLedgerEqualsWire, expectNeverReached, fixtureCert, fixtureKey, installed, sentinel,
} from './servers.js';

const MiB = 1024 * 1024;

interface EchoServer {
  port: number;
  close(): Promise<void>;
}

/** Echoes every message back with its type (binary or text) preserved. */
async function echoServer(secure: boolean): Promise<EchoServer> {
  const tlsServer = secure ? https.createServer({ key: fixtureKey, cert: fixtureCert }) : undefined;
  const wss = tlsServer
    ? new WebSocketServer({ server: tlsServer, maxPayload: 4 * MiB })
    : new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 4 * MiB });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise<void>((resolve) => {
    if (tlsServer) tlsServer.listen(0, '127.0.0.1', () => resolve());
    else wss.once('listening', () => resolve());
  });
  const port = ((tlsServer ? tlsServer.address() : wss.address()) as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => (tlsServer ? tlsServer.close(() => resolve()) : resolve()));
      }),
  };
}

const createConnection = (layer: SocketLayer, secure: boolean) =>
  ((options: { host?: string; port?: number | string }) =>
    layer.connect({
      host: options.host!,
      port: Number(options.port),
      ...(secure ? { tls: { ca: fixtureCert, servername: 'localhost' } } : {}),
    })) as never;

/** The error a client aimed at a denied destination gets (and a failure if it opens instead). */
function refusal(ws: WebSocket): Promise<NodeJS.ErrnoException & { rule?: string }> {
  return new Promise((resolve, reject) => {
    ws.once('error', resolve);
    ws.once('open', () => reject(new Error('opened a denied destination')));
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary }));
    ws.once('error', reject);
  });
}

let layer: SocketLayer;
beforeEach(() => {
  layer = allowLayer();
});
afterEach(() => layer.close());

describe('ws through a layer', () => {
  for (const [secure, route] of [[false, 'createConnection'], [true, 'createConnection'], [false, 'install'], [true, 'install']] as const) {
    const scheme = secure ? 'wss' : 'ws';
    const how = route === 'install' ? 'through install() with no option' : 'via createConnection';
    test(`ws ${how} (${scheme}): a 1 MiB binary message and a text message echo, the ledger equals the wire`, async () => {
      const server = await echoServer(secure);
      const relay = await countingRelay(server.port);
      const uninstall = route === 'install' ? layer.install({ http: true }) : undefined;
      const ws = new WebSocket(`${scheme}://127.0.0.1:${relay.port}/`, {
        ...(route === 'createConnection' ? { createConnection: createConnection(layer, secure) } : { ca: fixtureCert }),
        perMessageDeflate: false,
        maxPayload: 4 * MiB,
      });
      try {
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
        });
        const blob = payload(MiB);
        const echoed = nextMessage(ws);
        ws.send(blob);
        const got = await echoed;
        expect(got.isBinary).toBe(true);
        expect(got.data.length).toBe(MiB);
        expect(sha256(got.data)).toBe(sha256(blob));
        const text = nextMessage(ws);
        ws.send('héllo, sockguard');
        const t = await text;
        expect(t.isBinary).toBe(false);
        expect(t.data.toString('utf8')).toBe('héllo, sockguard');
        const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
        ws.close(1000);
        expect(await closed).toBe(1000);
        await until(() => relay.open === 0, 5000, 'the relay to see the connection close');
        await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MiB, receivedOver: MiB });
      } finally {
        ws.terminate();
        uninstall?.();
        await relay.close();
        await server.close();
      }
    });
  }

  test('ws via createConnection: a denied destination fails with EACCES and is never reached', async () => {
    const denied = denyLayer();
    const target = await sentinel();
    const ws = new WebSocket(`ws://127.0.0.1:${target.port}/`, { createConnection: createConnection(denied, false) });
    try {
      expect(await refusal(ws)).toMatchObject({ code: 'EACCES', rule: 'loopback' });
      expectNeverReached(denied, target, 1);
    } finally {
      ws.terminate();
      await target.close();
      await denied.close();
    }
  });

  test('ws and wss through install(): a denied destination fails with EACCES and is never reached', async () => {
    const denied = denyLayer();
    const target = await sentinel();
    try {
      await installed(denied, async () => {
        for (const scheme of ['ws', 'wss']) {
          const ws = new WebSocket(`${scheme}://127.0.0.1:${target.port}/`, { ca: fixtureCert });
          try {
            expect(await refusal(ws)).toMatchObject({ code: 'EACCES', rule: 'loopback' });
          } finally {
            ws.terminate();
          }
        }
      });
      expectNeverReached(denied, target, 2);
    } finally {
      await target.close();
      await denied.close();
    }
  });
});
