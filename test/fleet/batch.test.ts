/**
 * The lease batch of exact resources adapts to the spend per store round trip. Against a real redis-server
 * behind a slow link (a round trip longer than a burst of connects on loopback): under sustained connects the
 * batch grows past its start and never past limit/64, a layer holds under 1.5 batches, layers racing for the
 * limit still get exactly the limit between them, and an idle layer goes back to its starting batch and
 * returns the leases beyond it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Redis } from 'ioredis';
import { SocketLayer } from '../../src/index.js';
import { listen, until, type Peer } from '../helpers.js';
import { LOOPBACK_POLICY, fleetRig, redisMissing, skipMissing, slowLink, type SlowLink } from './redis.js';

const NOW = Date.UTC(2026, 0, 15, 10, 30, 5);
const minuteKey = (app: string) => `sockguard:{${app}}:q:m:${Math.floor(NOW / 60_000) * 60_000}`;

interface Lanes {
  ok: number;
  over: number;
  other: string[];
  maxBatch: number;
  maxLease: number;
}

/** `lanes` sequential connects at once until each is refused (or `stopAt` connects in all); samples the meter. */
async function drive(layer: SocketLayer, port: number, lanes: number, stopAt = Infinity): Promise<Lanes> {
  const meter = layer.fleet!.meter!;
  const r: Lanes = { ok: 0, over: 0, other: [], maxBatch: 0, maxLease: 0 };
  const attempt = () =>
    new Promise<boolean>((resolve) => {
      const s = layer.connect(port, '127.0.0.1');
      s.on('connect', () => {
        r.ok++;
        s.destroy();
        resolve(true);
      });
      s.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'ERR_SOCKGUARD_OVER_QUOTA') r.over++;
        else r.other.push(e.code ?? e.message);
        resolve(false);
      });
    });
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (r.ok < stopAt && (await attempt())) {
        r.maxBatch = Math.max(r.maxBatch, meter.batchOf('connects'));
        r.maxLease = Math.max(r.maxLease, meter.leaseOf('connects'));
      }
    }),
  );
  return r;
}

describe.skipIf(redisMissing && skipMissing)('fleet lease batches', () => {
  let link: SlowLink;
  const rig = fleetRig();
  beforeAll(async () => {
    // 40 ms each way: at a few hundred connects a second, more than half a starting batch per round trip.
    link = await slowLink(rig.redis.port, 40);
  });
  afterAll(async () => {
    await link?.close();
  });

  test('under sustained connects the batch grows within limit/64, and racing layers get exactly the limit', async () => {
    const app = `grow-${randomUUID()}`;
    const limit = 12_800;
    const before = rig.accepted;
    const quotas = { perMinute: { connects: limit } };
    const layers = [0, 1, 2].map(
      () => new SocketLayer({ appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: link.url, quotas, clock: () => NOW }),
    );
    try {
      const meters = layers.map((l) => l.fleet!.meter!);
      expect(meters[0]!.batchBounds('connects')).toEqual({ base: 100, cap: 200 });
      // The first reservation answered before any connect: growth comes from the spend, not from a cold start.
      await until(() => meters.every((m) => m.leaseOf('connects') > 0), 10_000, 'the first leases');
      expect(meters.map((m) => m.batchOf('connects'))).toEqual([100, 100, 100]);
      const outs = await Promise.all(layers.map((l) => drive(l, rig.peer.port, 8)));
      expect(outs.flatMap((o) => o.other)).toEqual([]);
      for (const o of outs) {
        expect(o.maxBatch).toBeGreaterThan(100);
        expect(o.maxBatch).toBeLessThanOrEqual(200);
        expect(o.maxLease).toBeLessThan(1.5 * 200);
        // Every lane went on until the fleet had nothing left to lease it.
        expect(o.over).toBe(8);
      }
      expect(outs.reduce((a, o) => a + o.ok, 0)).toBe(limit);
      await until(() => rig.accepted - before === limit, 10_000, 'the server to accept every admitted connection');
      expect(Number(await rig.admin.hget(minuteKey(app), 'connects'))).toBe(limit);
    } finally {
      await Promise.all(layers.map((l) => l.close()));
    }
  });

  test('an idle layer goes back to its starting batch and returns the leases beyond it', async () => {
    const app = `idle-${randomUUID()}`;
    const quotas = { perMinute: { connects: 64_000 } };
    const layer = new SocketLayer({ appId: app, policy: LOOPBACK_POLICY as never, idleTimeoutMs: 0, store: link.url, quotas, clock: () => NOW, storeFlushMs: 100 });
    try {
      const meter = layer.fleet!.meter!;
      expect(meter.batchBounds('connects')).toEqual({ base: 100, cap: 1000 });
      await until(() => meter.leaseOf('connects') > 0, 10_000, 'the first lease');
      const out = await drive(layer, rig.peer.port, 8, 2000);
      expect(out.other).toEqual([]);
      expect(out.maxBatch).toBeGreaterThan(100);
      expect(out.maxBatch).toBeLessThanOrEqual(1000);
      expect(out.maxLease).toBeLessThan(1.5 * 1000);
      await until(() => meter.batchOf('connects') === 100 && meter.leaseOf('connects') <= 100, 5000, 'the batch to shrink');
      // What the store counts is what was spent plus what the layer still holds: the rest came back.
      const spent = layer.usage().connects;
      let counted = Infinity;
      for (let i = 0; i < 100 && counted !== spent + meter.leaseOf('connects'); i++) {
        counted = Number(await rig.admin.hget(minuteKey(app), 'connects'));
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(counted).toBe(spent + meter.leaseOf('connects'));
      expect(counted - spent).toBeLessThanOrEqual(100);
    } finally {
      await layer.close();
    }
  });
});
