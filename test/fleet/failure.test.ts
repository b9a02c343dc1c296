/**
 * Store failures against a real redis-server killed and started again mid-run: storeFailure 'open' keeps
 * connecting within this process's share, 'closed' refuses with ERR_SOCKGUARD_STORE_UNAVAILABLE; both report
 * the state changes on `sockguard:store`, recover when the store returns (the ledger flushed again), and never
 * crash or leave a rejection unhandled. A store that was never there behaves as one that went down.
 */
import { randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import { freePort, listen, until, type Peer } from '../helpers.js';
import { LOOPBACK_POLICY, RedisServer, redisMissing, skipMissing } from './redis.js';

const NOW = Date.UTC(2026, 0, 15, 10, 30, 5);

interface StoreEvent {
  appId: string;
  state: 'up' | 'down';
  failure: string;
  error?: Error & { code?: string };
}

function connect(layer: SocketLayer, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = layer.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve('ok');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

describe.skipIf(redisMissing && skipMissing)('fleet store failures', () => {
  let redis: RedisServer;
  let peer: Peer;
  let events: StoreEvent[] = [];
  let unhandled: unknown[] = [];
  const onEvent = (m: unknown) => events.push(m as StoreEvent);
  const onUnhandled = (err: unknown) => unhandled.push(err);
  beforeAll(async () => {
    redis = await RedisServer.start();
    peer = await listen((c) => c.pipe(c));
    subscribe('sockguard:store', onEvent);
    process.on('unhandledRejection', onUnhandled);
  });
  afterAll(async () => {
    unsubscribe('sockguard:store', onEvent);
    process.off('unhandledRejection', onUnhandled);
    await peer?.close();
    await redis?.stop();
  });
  beforeEach(() => {
    events = [];
    unhandled = [];
  });
  afterEach(async () => {
    // Whatever a test did to the server, the next one starts with it up.
    if (!(await reachable())) await redis.resume();
    expect(unhandled).toEqual([]);
  });
  const reachable = async () => {
    const probe = new SocketLayer({ appId: `probe-${randomUUID()}`, idleTimeoutMs: 0, store: redis.url });
    try {
      await probe.fleetUsage();
      return true;
    } catch {
      return false;
    } finally {
      await probe.close();
    }
  };
  const statesOf = (app: string) => events.filter((e) => e.appId === app).map((e) => e.state);

  test("'open': killed mid-run, connects go on within the local share; restarted, the ledger catches up", async () => {
    const app = `open-${randomUUID()}`;
    const layer = new SocketLayer({
      appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: redis.url, storeFlushMs: 50,
      quotas: { perMinute: { connects: 640 } }, clock: () => NOW,
    });
    try {
      for (let i = 0; i < 3; i++) expect(await connect(layer, peer.port)).toBe('ok');
      expect((await layer.fleetUsage()).connects).toBe(3);
      await redis.kill();
      // More than the 10 leases held: the rest is this process's share of the limit, enforced locally.
      for (let i = 0; i < 20; i++) expect(await connect(layer, peer.port)).toBe('ok');
      await until(() => statesOf(app).includes('down'), 3000, 'a down event');
      const down = events.find((e) => e.appId === app && e.state === 'down')!;
      expect(down.failure).toBe('open');
      await expect(layer.fleetUsage()).rejects.toMatchObject({ code: 'ERR_SOCKGUARD_STORE_UNAVAILABLE' });
      await redis.resume();
      await until(() => statesOf(app).at(-1) === 'up', 5000, 'an up event');
      // The restarted server started empty; the cumulative flush put this process's whole ledger back.
      expect((await layer.fleetUsage()).connects).toBe(23);
      expect(await connect(layer, peer.port)).toBe('ok');
    } finally {
      await layer.close();
    }
  });

  test("'open': the local share is the limit divided by the live processes", async () => {
    const app = `share-${randomUUID()}`;
    const make = () =>
      new SocketLayer({
        appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: redis.url, storeFlushMs: 50,
        quotas: { perMinute: { connects: 20 } }, clock: () => NOW,
      });
    const a = make();
    const b = make();
    try {
      await a.fleetUsage();
      await b.fleetUsage();
      await a.fleetUsage();
      await redis.kill();
      let ok = 0;
      for (let i = 0; i < 30; i++) if ((await connect(a, peer.port)) === 'ok') ok++;
      // 20 / 2 processes, including what a had leased before the store went away.
      expect(ok).toBe(10);
      expect(await connect(a, peer.port)).toBe('ERR_SOCKGUARD_OVER_QUOTA');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test("'closed': killed mid-run, connects without a lease fail with ERR_SOCKGUARD_STORE_UNAVAILABLE; restarted, they pass", async () => {
    const app = `closed-${randomUUID()}`;
    const layer = new SocketLayer({
      appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: redis.url, storeFlushMs: 50,
      storeFailure: 'closed', quotas: { perMinute: { connects: 64 } }, clock: () => NOW,
    });
    try {
      expect(await connect(layer, peer.port)).toBe('ok');
      expect(await connect(layer, peer.port)).toBe('ok');
      await redis.kill();
      await until(() => statesOf(app).includes('down'), 3000, 'a down event');
      // At most the one lease held (a batch of 1 here) is still spent; then the store is needed.
      const got = [await connect(layer, peer.port), await connect(layer, peer.port), await connect(layer, peer.port)];
      expect(got.filter((g) => g === 'ok').length).toBeLessThanOrEqual(1);
      expect(got.at(-1)).toBe('ERR_SOCKGUARD_STORE_UNAVAILABLE');
      // A store refusal is not a quota refusal.
      expect(layer.usage().overQuota).toBe(0);
      await redis.resume();
      await until(() => statesOf(app).at(-1) === 'up', 5000, 'an up event');
      expect(await connect(layer, peer.port)).toBe('ok');
    } finally {
      await layer.close();
    }
  });

  test('a store that is not there: open connects, closed refuses, close() does not hang', async () => {
    const port = await freePort();
    const common = { policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: `redis://127.0.0.1:${port}/0`, quotas: { perMinute: { connects: 100 } } };
    const open = new SocketLayer({ ...common, appId: `absent-open-${randomUUID()}` });
    const closed = new SocketLayer({ ...common, appId: `absent-closed-${randomUUID()}`, storeFailure: 'closed' });
    try {
      expect(await connect(open, peer.port)).toBe('ok');
      expect(await connect(closed, peer.port)).toBe('ERR_SOCKGUARD_STORE_UNAVAILABLE');
      await expect(open.fleetUsage()).rejects.toMatchObject({ code: 'ERR_SOCKGUARD_STORE_UNAVAILABLE' });
    } finally {
      const started = Date.now();
      await Promise.all([open.close(), closed.close()]);
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });
});
