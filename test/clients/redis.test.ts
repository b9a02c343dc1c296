/**
 * Redis clients against a real redis-server on loopback, their sockets coming from a layer: ioredis through its
 * `Connector` option, node-redis (which has no socket hook for plain TCP) over TLS through the `socket` option it
 * passes on to `tls.connect`; then both with no option at all, through layer.install(). A counting relay in
 * front of the server says what crossed the wire.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AbstractConnector, Redis } from 'ioredis';
import { createClient, RESP_TYPES } from 'redis';
import type { SocketLayer } from '../../src/index.js';
import { payload, sha256 } from '../helpers.js';
import {
  allowLayer, countingRelay, denyLayer, expectLedgerEqualsWire, expectNeverReached, fixtureCert, installed, redisMissing,
  sentinel, skipMissing, startRedis, type RedisServer,
} from './servers.js';

const MiB = 1024 * 1024;

/** ioredis's documented extension point: a Connector whose connect() resolves with the stream to speak over. */
function layerConnector(layer: SocketLayer) {
  return class LayerConnector extends AbstractConnector {
    constructor(private readonly options: { host: string; port: number; disconnectTimeout: number }) {
      super(options.disconnectTimeout);
    }
    connect() {
      this.connecting = true;
      const socket = layer.connect({ host: this.options.host, port: this.options.port });
      // As ioredis's own connectors do: an error before ioredis attaches its handlers is kept for it.
      socket.once('error', (err) => (this.firstError = err));
      this.stream = socket as never;
      return Promise.resolve(socket as never);
    }
  };
}

describe.skipIf(redisMissing && skipMissing)('redis clients through a layer', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis({ tls: true });
  });
  afterAll(() => server?.stop());

  test('ioredis via Connector: a 1 MiB random value round-trips, the ledger equals the wire', async () => {
    const layer = allowLayer();
    const relay = await countingRelay(server.port);
    const redis = new Redis({
      host: '127.0.0.1', port: relay.port, Connector: layerConnector(layer) as never,
      lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0,
    });
    try {
      await redis.connect();
      const value = payload(MiB);
      expect(await redis.set('ioredis:blob', value)).toBe('OK');
      const back = await redis.getBuffer('ioredis:blob');
      expect(back!.length).toBe(MiB);
      expect(sha256(back!)).toBe(sha256(value));
      // Pipelined small commands take the same route.
      const replies = await redis.pipeline().incr('ioredis:n').incr('ioredis:n').get('ioredis:n').exec();
      expect(replies!.map(([, v]) => v)).toEqual([1, 2, '2']);
      await redis.quit();
      await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MiB, receivedOver: MiB });
    } finally {
      redis.disconnect();
      await relay.close();
      await layer.close();
    }
  });

  test('ioredis via Connector: a denied destination fails with EACCES and is never reached', async () => {
    const layer = denyLayer();
    const target = await sentinel();
    const redis = new Redis({
      host: '127.0.0.1', port: target.port, Connector: layerConnector(layer) as never,
      lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0,
    });
    const errors: NodeJS.ErrnoException[] = [];
    redis.on('error', (e) => errors.push(e));
    try {
      await expect(redis.connect()).rejects.toThrow();
      expect(errors[0]?.code).toBe('EACCES');
      expect((errors[0] as { rule?: string }).rule).toBe('loopback');
      expectNeverReached(layer, target, 1);
    } finally {
      redis.disconnect();
      await target.close();
      await layer.close();
    }
  });

  test('node-redis over TLS via the socket option: verified, 1 MiB round-trips, the ledger equals the wire', async () => {
    const layer = allowLayer();
    const relay = await countingRelay(server.tlsPort!);
    const client = createClient({
      socket: {
        tls: true, host: '127.0.0.1', port: relay.port, ca: fixtureCert, servername: 'localhost',
        // tls.connect takes an open duplex to run TLS over; allowHalfOpen keeps it from ending itself when the
        // server's FIN overtakes the TLS socket's close_notify.
        socket: layer.connect({ host: '127.0.0.1', port: relay.port, allowHalfOpen: true }) as never,
        reconnectStrategy: false,
      },
    });
    client.on('error', () => {});
    try {
      await client.connect();
      const value = payload(MiB);
      expect(await client.set('node-redis:blob', value)).toBe('OK');
      const back = await client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get('node-redis:blob');
      expect(Buffer.isBuffer(back)).toBe(true);
      expect(sha256(back as Buffer)).toBe(sha256(value));
      expect(await client.hSet('node-redis:h', { a: '1', b: '2' })).toBe(2);
      expect(await client.hGetAll('node-redis:h')).toEqual({ a: '1', b: '2' });
      await client.close();
      // The encrypted bytes are what is counted: more than the payload each way.
      await expectLedgerEqualsWire(layer, relay, { sentOver: MiB, receivedOver: MiB });
    } finally {
      client.destroy();
      await relay.close();
      await layer.close();
    }
  });

  test('node-redis over TLS via the socket option: a denied destination fails with EACCES and is never reached', async () => {
    const layer = denyLayer();
    const target = await sentinel();
    const client = createClient({
      socket: {
        tls: true, host: '127.0.0.1', port: target.port, ca: fixtureCert, servername: 'localhost',
        socket: layer.connect({ host: '127.0.0.1', port: target.port, allowHalfOpen: true }) as never,
        reconnectStrategy: false,
      },
    });
    client.on('error', () => {});
    try {
      const err = await client.connect().then(
        () => null,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(err?.code).toBe('EACCES');
      expectNeverReached(layer, target, 1);
    } finally {
      client.destroy();
      await target.close();
      await layer.close();
    }
  });

  test('ioredis through install() with no option: a 1 MiB value round-trips, the ledger equals the wire', async () => {
    const layer = allowLayer();
    const relay = await countingRelay(server.port);
    try {
      await installed(layer, async () => {
        const redis = new Redis({ host: '127.0.0.1', port: relay.port, lazyConnect: true, retryStrategy: () => null });
        try {
          await redis.connect();
          const value = payload(MiB);
          await redis.set('install:ioredis', value);
          expect(sha256((await redis.getBuffer('install:ioredis'))!)).toBe(sha256(value));
          await redis.quit();
        } finally {
          redis.disconnect();
        }
      });
      await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MiB, receivedOver: MiB });
    } finally {
      await relay.close();
      await layer.close();
    }
  });

  test('node-redis through install() with no option: a 1 MiB value round-trips, the ledger equals the wire', async () => {
    const layer = allowLayer();
    const relay = await countingRelay(server.port);
    try {
      await installed(layer, async () => {
        const client = createClient({ socket: { host: '127.0.0.1', port: relay.port, reconnectStrategy: false } });
        client.on('error', () => {});
        try {
          await client.connect();
          const value = payload(MiB);
          await client.set('install:node-redis', value);
          const back = await client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get('install:node-redis');
          expect(sha256(back as Buffer)).toBe(sha256(value));
          await client.close();
        } finally {
          client.destroy();
        }
      });
      await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MiB, receivedOver: MiB });
    } finally {
      await relay.close();
      await layer.close();
    }
  });

  test('ioredis and node-redis through install(): a denied destination fails with EACCES and is never reached', async () => {
    const layer = denyLayer();
    const target = await sentinel();
    try {
      await installed(layer, async () => {
        const redis = new Redis({ host: '127.0.0.1', port: target.port, lazyConnect: true, retryStrategy: () => null });
        const errors: NodeJS.ErrnoException[] = [];
        redis.on('error', (e) => errors.push(e));
        await expect(redis.connect()).rejects.toThrow();
        redis.disconnect();
        expect(errors[0]).toMatchObject({ code: 'EACCES', rule: 'loopback' });

        const client = createClient({ socket: { host: '127.0.0.1', port: target.port, reconnectStrategy: false } });
        client.on('error', () => {});
        await expect(client.connect()).rejects.toMatchObject({ code: 'EACCES', rule: 'loopback' });
        client.destroy();
      });
      expectNeverReached(layer, target, 2);
    } finally {
      await target.close();
      await layer.close();
    }
  });
});
