/**
 * The fleet ledger against a real redis-server: fleetUsage() equals the sum of every process's usage(), this
 * process's counters included before any timed flush, and a repeated flush never counts twice.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SocketLayer, type Usage } from '../../src/index.js';
import { echoServer, type Peer } from '../helpers.js';
import { LOOPBACK_POLICY, RedisServer, redisMissing, runNode, skipMissing } from './redis.js';

const TALKER = `
const { SocketLayer } = await import(process.env.SG_DIST);
const e = process.env;
const layer = new SocketLayer({ appId: e.APP, policy: JSON.parse(e.POLICY), idleTimeoutMs: 0, store: e.STORE });
const size = Number(e.SIZE);
for (let k = 0; k < Number(e.ROUNDS); k++) {
  await new Promise((resolve, reject) => {
    const s = layer.connect(Number(e.PORT), '127.0.0.1');
    let got = 0;
    s.on('error', reject);
    s.on('connect', () => s.write(Buffer.alloc(size, k)));
    s.on('data', (d) => { got += d.length; if (got >= size) s.end(); });
    s.on('close', resolve);
  });
}
// A denied destination counts too.
await new Promise((resolve) => layer.connect(9, '192.0.2.1').on('error', resolve));
const usage = layer.usage();
await layer.close();
console.log(JSON.stringify(usage));
`;

const SUMMED = ['bytesSent', 'bytesReceived', 'billedBytes', 'socketsCreated', 'connects', 'denied', 'reclaimed', 'sendCalls', 'receiveCalls', 'overQuota'] as const;

describe.skipIf(redisMissing && skipMissing)('fleet ledger', () => {
  let redis: RedisServer;
  let peer: Peer;
  beforeAll(async () => {
    redis = await RedisServer.start();
    peer = await echoServer();
  });
  afterAll(async () => {
    await peer?.close();
    await redis?.stop();
  });

  test('fleetUsage() equals the sum of the traffic of every process, this one unflushed included', async () => {
    const app = `ledger-${randomUUID()}`;
    const env = { APP: app, POLICY: JSON.stringify(LOOPBACK_POLICY), STORE: redis.url, PORT: String(peer.port) };
    const children = [
      runNode(TALKER, { ...env, SIZE: '1000', ROUNDS: '3' }),
      runNode(TALKER, { ...env, SIZE: '70000', ROUNDS: '2' }),
      runNode(TALKER, { ...env, SIZE: '5', ROUNDS: '5' }),
    ];
    // This process flushes only on demand here: fleetUsage() must include what it has not flushed yet.
    const layer = new SocketLayer({ appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: redis.url, storeFlushMs: 3_600_000 });
    try {
      const results = await Promise.all(children.map((c) => c.done));
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      const usages = results.map((r) => r.out as Usage);
      const open = layer.connect(peer.port, '127.0.0.1');
      await new Promise<void>((resolve) => open.on('connect', () => open.write(Buffer.alloc(123), () => resolve())));
      await new Promise<void>((resolve) => open.once('data', () => resolve()));
      const mine = layer.usage();
      const fleet = await layer.fleetUsage();
      for (const f of SUMMED) expect(fleet[f], f).toBe(usages.reduce((a, u) => a + u[f], 0) + mine[f]);
      expect(fleet.bytesSent).toBe(3 * 1000 + 2 * 70000 + 5 * 5 + 123);
      expect(fleet.denied).toBe(3);
      // The children left with nothing open; this process has one socket open.
      expect(fleet.socketsOpen).toBe(1);
      expect(fleet.appId).toBe(app);
      // Asking again changes nothing: each flush is applied once.
      expect(await layer.fleetUsage()).toEqual({ ...fleet, ...diff(fleet, layer.usage(), mine) });
      open.destroy();
    } finally {
      await layer.close();
    }
  });

  test('two layers of one app in one process: each sees the other once it flushed', async () => {
    const app = `pair-${randomUUID()}`;
    const make = () => new SocketLayer({ appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: redis.url, storeFlushMs: 50 });
    const a = make();
    const b = make();
    try {
      await new Promise<void>((resolve) => a.connect(9, '192.0.2.1').on('error', () => resolve()));
      expect((await a.fleetUsage()).denied).toBe(1);
      // b flushes within storeFlushMs; its view then includes a's denial.
      await new Promise((r) => setTimeout(r, 150));
      expect((await b.fleetUsage()).denied).toBe(1);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    const c = make();
    try {
      // Closed layers left their totals behind and no open sockets.
      const u = await c.fleetUsage();
      expect(u.denied).toBe(1);
      expect(u.socketsOpen).toBe(0);
    } finally {
      await c.close();
    }
  });
});

/** What changed in this process between two of its snapshots, applied to a fleet total. */
function diff(fleet: Usage, now: Usage, before: Usage): Partial<Usage> {
  const out: Partial<Usage> = {};
  for (const f of SUMMED) (out as Record<string, number>)[f] = fleet[f] + now[f] - before[f];
  return out;
}

describe.skipIf(redisMissing && skipMissing)('the store connection under install()', () => {
  test("is the service's own: not vetted by the app's policy, not in its ledger", async () => {
    const redis = await RedisServer.start();
    // Production policy: 127.0.0.1 is denied to the application, yet its store there is reachable.
    const layer = new SocketLayer({ appId: `installed-${randomUUID()}`, policy: 'production', idleTimeoutMs: 0, store: redis.url });
    const uninstall = layer.install();
    try {
      const u = await layer.fleetUsage();
      expect(u.socketsCreated).toBe(0);
      expect(u.denied).toBe(0);
      expect(layer.usage().socketsCreated).toBe(0);
    } finally {
      uninstall();
      await layer.close();
      await redis.stop();
    }
  });
});
