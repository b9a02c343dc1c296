/**
 * Fleet quotas against a real redis-server: processes racing for a connects quota get exactly the limit
 * between them, windows roll over on an injected clock (unused leases go back to the day), byte quotas are
 * batched within the documented overshoot, and the store option is validated.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { SocketLayer } from '../../src/index.js';
import { listen, until, type Peer } from '../helpers.js';
import { LOOPBACK_POLICY, connectOnce, fleetRig, redisMissing, runNode, skipMissing } from './redis.js';

const RACER = `
const { SocketLayer } = await import(process.env.SG_DIST);
const e = process.env;
const layer = new SocketLayer({
  appId: e.APP, policy: JSON.parse(e.POLICY), idleTimeoutMs: 0, store: e.STORE,
  quotas: { perMinute: { connects: Number(e.LIMIT) } }, clock: () => Number(e.NOW),
});
let ok = 0, over = 0;
const other = [];
const attempt = () => new Promise((resolve) => {
  const s = layer.connect(Number(e.PORT), '127.0.0.1');
  s.on('connect', () => { ok++; s.destroy(); resolve(true); });
  s.on('error', (err) => { if (err.code === 'ERR_SOCKGUARD_OVER_QUOTA') over++; else other.push(err.code); resolve(false); });
});
await new Promise((r) => setTimeout(r, Math.max(0, Number(e.START) - Date.now())));
// Each lane connects until it is refused: a process stops only once the fleet has nothing left to lease it.
const lanes = [];
for (let w = 0; w < 4; w++) lanes.push((async () => { for (let k = 0; k < 1000 && (await attempt()); k++); })());
await Promise.all(lanes);
const usage = layer.usage();
await layer.close();
console.log(JSON.stringify({ ok, over, other, usage }));
`;

const NOW = Date.UTC(2026, 0, 15, 10, 30, 5);

describe.skipIf(redisMissing && skipMissing)('fleet quotas', () => {
  const rig = fleetRig();

  test('three processes racing for a connects quota get exactly the limit between them', async () => {
    const app = `race-${randomUUID()}`;
    const limit = 320;
    const before = rig.accepted;
    const env = {
      APP: app, POLICY: JSON.stringify(LOOPBACK_POLICY), STORE: rig.redis.url, LIMIT: String(limit), NOW: String(NOW),
      PORT: String(rig.peer.port), START: String(Date.now() + 2500),
    };
    const children = [runNode(RACER, env), runNode(RACER, env), runNode(RACER, env)];
    const results = await Promise.all(children.map((c) => c.done));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const outs = results.map((r) => r.out as { ok: number; over: number; other: string[]; usage: { connects: number; overQuota: number } });
    const ok = outs.reduce((a, o) => a + o.ok, 0);
    expect(outs.flatMap((o) => o.other)).toEqual([]);
    expect(ok).toBe(limit);
    // The leases are small batches, not the whole budget to the first comer; every lane was refused in the end.
    for (const o of outs) expect(o.over).toBe(4);
    expect(outs.filter((o) => o.ok > 0).length).toBeGreaterThan(1);
    expect(outs.reduce((a, o) => a + o.usage.connects, 0)).toBe(limit);
    await until(() => rig.accepted - before === limit, 5000, 'the server to accept every admitted connection');
    // The store's count is the limit: nothing leased and left unused was lost or double spent.
    const minuteKey = `sockguard:{${app}}:q:m:${Math.floor(NOW / 60_000) * 60_000}`;
    expect(Number(await rig.admin.hget(minuteKey, 'connects'))).toBe(limit);
  });

  test('window rollover on an injected clock: a fresh minute, the day still counted, unused leases returned', async () => {
    const app = `roll-${randomUUID()}`;
    let now = Date.UTC(2026, 0, 15, 23, 58, 10);
    const quotas = { perMinute: { connects: 1000 }, perDay: { connects: 650 } };
    const make = () => new SocketLayer({ appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: rig.redis.url, quotas, clock: () => now });
    const a = make();
    const b = make();
    const connect = async (layer: SocketLayer) => {
      const r = await connectOnce(layer, rig.peer.port);
      return r === 'ok' ? r : `${r.code}:${r.window}`;
    };
    try {
      expect(a.fleet!.meter!.batchOf('connects')).toBe(10);
      for (let i = 0; i < 3; i++) expect(await connect(a)).toBe('ok');
      expect(await connect(b)).toBe('ok');
      const dayKey = `sockguard:{${app}}:q:d:${Date.UTC(2026, 0, 15)}`;
      // Each process holds a batch: the day counts what was leased, spent or not.
      expect(Number(await rig.admin.hget(dayKey, 'connects'))).toBe(20);
      now += 60_000;
      // a's next charge rolls its window: its 7 unused leases go back to the day, and it leases a new batch.
      expect(await connect(a)).toBe('ok');
      const day = async () => Number(await rig.admin.hget(dayKey, 'connects'));
      await until(() => false, 0).catch(() => {});
      let seen = 0;
      for (let i = 0; i < 100 && seen !== 20 - 7 + 10; i++) {
        seen = await day();
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(seen).toBe(23);
      // Spend the rest of the day across both processes until both are refused: exactly 650 in all.
      let ok = 5;
      const refused = new Set<SocketLayer>();
      while (refused.size < 2) {
        for (const layer of [a, b]) {
          if (refused.has(layer)) continue;
          const r = await connect(layer);
          if (r === 'ok') ok++;
          else {
            expect(r).toBe('ERR_SOCKGUARD_OVER_QUOTA:day');
            refused.add(layer);
          }
        }
        if (ok > 700) throw new Error('the day quota never refused');
      }
      expect(await connect(a)).toBe('ERR_SOCKGUARD_OVER_QUOTA:day');
      expect(await connect(b)).toBe('ERR_SOCKGUARD_OVER_QUOTA:day');
      expect(ok).toBe(650);
      // A new UTC day: fresh windows.
      now = Date.UTC(2026, 0, 16, 0, 0, 1);
      expect(await connect(b)).toBe('ok');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('byte quotas are batched: two processes stop near the limit, and the store counts every byte sent', async () => {
    const app = `bytes-${randomUUID()}`;
    const limit = 256 * 1024;
    const chunk = 1000;
    const quotas = { perMinute: { bytesSent: limit, connects: 100 } };
    const clock = () => NOW;
    const make = () => new SocketLayer({ appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: rig.redis.url, quotas, clock, storeFlushMs: 50 });
    const layers = [make(), make()];
    const batch = layers[0]!.fleet!.meter!.batchOf('bytesSent');
    expect(batch).toBe(limit / 64);
    try {
      const sent = await Promise.all(
        layers.map(
          (layer) =>
            new Promise<number>((resolve, reject) => {
              let n = 0;
              const s = layer.connect(rig.peer.port, '127.0.0.1');
              s.on('data', () => {});
              s.on('error', (e: NodeJS.ErrnoException) => {
                if (e.code !== 'ERR_SOCKGUARD_OVER_QUOTA') reject(e);
                else resolve(n);
              });
              const pump = () => {
                // Paced, so both processes draw on the budget at once and reservations interleave.
                if (s.destroyed) return;
                s.write(Buffer.alloc(chunk), () => {});
                n += chunk;
                setTimeout(pump, 1);
              };
              s.on('connect', pump);
            }),
        ),
      );
      // The refused write was not sent.
      const total = sent[0]! + sent[1]! - 2 * chunk;
      // Overshoot: each process's debt when it learnt the window was spent, one batch plus what it sent
      // during a reservation round trip; a 1 ms pace keeps that to a few writes here.
      expect(total).toBeLessThanOrEqual(limit + 2 * (batch + 32 * chunk));
      expect(total).toBeGreaterThanOrEqual(limit - 2 * batch);
      await Promise.all(layers.map((l) => l.close()));
      // Unused leases came back and debt was reported: the store's count is what was sent.
      const minuteKey = `sockguard:{${app}}:q:m:${Math.floor(NOW / 60_000) * 60_000}`;
      expect(Number(await rig.admin.hget(minuteKey, 'bytesSent'))).toBe(total);
    } finally {
      await Promise.all(layers.map((l) => l.close()));
    }
  });

  test('an ioredis or node-redis client passed in works like the URL; bad store options are coded errors', async () => {
    const app = `clients-${randomUUID()}`;
    const io = new Redis(rig.redis.port, '127.0.0.1');
    const nr = createClient({ url: rig.redis.url });
    nr.on('error', () => {});
    await nr.connect();
    const quotas = { perMinute: { connects: 3 } };
    const clock = () => NOW;
    const a = new SocketLayer({ appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: io, quotas, clock });
    const b = new SocketLayer({ appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: nr, quotas, clock });
    const connect = async (layer: SocketLayer) => {
      const r = await connectOnce(layer, rig.peer.port);
      return r === 'ok' ? r : r.code!;
    };
    try {
      const got = [await connect(a), await connect(b), await connect(a), await connect(b), await connect(a)];
      expect(got.filter((g) => g === 'ok')).toHaveLength(3);
      expect(got.slice(3)).toEqual(['ERR_SOCKGUARD_OVER_QUOTA', 'ERR_SOCKGUARD_OVER_QUOTA']);
      await b.fleetUsage();
      const fa = await a.fleetUsage();
      expect(fa.connects).toBe(3);
      expect(fa.overQuota).toBe(2);
      expect((await b.fleetUsage()).connects).toBe(3);
    } finally {
      await Promise.all([a.close(), b.close()]);
      // A client the application passed in stays open for it.
      expect(await io.ping()).toBe('PONG');
      io.disconnect();
      await nr.quit();
    }
    const coded = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as NodeJS.ErrnoException).code;
      }
      return 'no error';
    };
    expect(coded(() => new SocketLayer({ store: 'http://127.0.0.1:1/' }))).toBe('ERR_SOCKGUARD_INVALID_OPTION');
    expect(coded(() => new SocketLayer({ store: {} }))).toBe('ERR_SOCKGUARD_INVALID_OPTION');
    expect(coded(() => new SocketLayer({ store: rig.redis.url, storeFailure: 'maybe' as never }))).toBe('ERR_SOCKGUARD_INVALID_OPTION');
    expect(coded(() => new SocketLayer({ store: rig.redis.url, storeFlushMs: 0 }))).toBe('ERR_SOCKGUARD_INVALID_OPTION');
    await expect(new SocketLayer().fleetUsage()).rejects.toMatchObject({ code: 'ERR_SOCKGUARD_INVALID_OPTION' });
  });
});
