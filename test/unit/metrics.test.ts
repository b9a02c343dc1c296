/**
 * usage() for operators: Prometheus text after real traffic on loopback, and OpenTelemetry observable
 * instruments read at collection time.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { metrics as otel } from '@opentelemetry/api';
import { SocketLayer, formatMetrics, type MeterLike } from '../../src/index.js';
import { listen, type Peer } from '../helpers.js';

let peer: Peer;
const layers: SocketLayer[] = [];
afterAll(async () => {
  await Promise.all(layers.map((l) => l.close()));
  await peer?.close();
});

async function withTraffic(appId: string): Promise<SocketLayer> {
  peer ??= await listen((c) => c.pipe(c));
  const layer = new SocketLayer({ appId, policy: 'development', idleTimeoutMs: 0 });
  layers.push(layer);
  await new Promise<void>((resolve, reject) => {
    const s = layer.connect(peer.port, '127.0.0.1', () => s.end('12345'));
    s.on('data', () => {});
    s.on('close', () => resolve());
    s.on('error', reject);
  });
  const denied = new SocketLayer({ appId: 'unused', idleTimeoutMs: 0 });
  layers.push(denied);
  return layer;
}

describe('layer.metrics()', () => {
  test('Prometheus text: HELP, TYPE and one app_id series per metric', async () => {
    const layer = await withTraffic('shop');
    const text = layer.metrics();
    expect(text).toContain('# TYPE sockguard_bytes_sent_total counter\nsockguard_bytes_sent_total{app_id="shop"} 5\n');
    expect(text).toContain('sockguard_bytes_received_total{app_id="shop"} 5\n');
    expect(text).toContain('sockguard_billed_bytes_total{app_id="shop"} 10\n');
    expect(text).toContain('# TYPE sockguard_sockets_open gauge\nsockguard_sockets_open{app_id="shop"} 0\n');
    expect(text).toContain('sockguard_connects_total{app_id="shop"} 1\n');
    const names = [...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]);
    expect(names).toEqual([
      'sockguard_bytes_sent_total',
      'sockguard_bytes_received_total',
      'sockguard_billed_bytes_total',
      'sockguard_sockets_open',
      'sockguard_sockets_created_total',
      'sockguard_connects_total',
      'sockguard_denied_total',
      'sockguard_reclaimed_total',
      'sockguard_send_calls_total',
      'sockguard_receive_calls_total',
      'sockguard_over_quota_total',
    ]);
  });

  test('formatMetrics() merges layers under one HELP/TYPE; label values are escaped', () => {
    const a = new SocketLayer({ appId: 'a"b\\c', idleTimeoutMs: 0 });
    const b = new SocketLayer({ appId: 'second', idleTimeoutMs: 0 });
    layers.push(a, b);
    const text = formatMetrics([a.usage(), b.usage()]);
    expect(text.match(/# TYPE sockguard_denied_total /g)).toHaveLength(1);
    expect(text).toContain('sockguard_denied_total{app_id="a\\"b\\\\c"} 0\nsockguard_denied_total{app_id="second"} 0\n');
  });
});

describe('layer.observe()', () => {
  function fakeMeter() {
    const made: Array<{ name: string; kind: string; unit?: string }> = [];
    let registered: { cb: Parameters<MeterLike['addBatchObservableCallback']>[0]; list: object[] } | undefined;
    const meter: MeterLike = {
      createObservableCounter: (name, o) => (made.push({ name, kind: 'counter', unit: o?.unit }), { name }),
      createObservableUpDownCounter: (name, o) => (made.push({ name, kind: 'updown', unit: o?.unit }), { name }),
      addBatchObservableCallback: (cb, list) => void (registered = { cb, list }),
      removeBatchObservableCallback: () => void (registered = undefined),
    };
    const collect = () => {
      const seen: Record<string, [number, Record<string, string> | undefined]> = {};
      registered?.cb({ observe: (o, v, attrs) => void (seen[(o as { name: string }).name] = [v, attrs]) });
      return seen;
    };
    return { meter, made, collect, active: () => registered !== undefined };
  }

  test('observable instruments read usage() at each collection, with app_id; unregistering stops them', async () => {
    const layer = await withTraffic('api');
    const f = fakeMeter();
    const stop = layer.observe(f.meter);
    expect(f.made).toContainEqual({ name: 'sockguard.bytes_sent', kind: 'counter', unit: 'By' });
    expect(f.made).toContainEqual({ name: 'sockguard.sockets_open', kind: 'updown', unit: '{socket}' });
    expect(f.made).toHaveLength(11);
    const seen = f.collect();
    expect(seen['sockguard.bytes_sent']).toEqual([5, { app_id: 'api' }]);
    expect(seen['sockguard.billed_bytes']).toEqual([10, { app_id: 'api' }]);
    stop();
    expect(f.active()).toBe(false);
  });

  test("without a meter: @opentelemetry/api's global provider", () => {
    const layer = new SocketLayer({ idleTimeoutMs: 0 });
    layers.push(layer);
    expect(otel.getMeterProvider()).toBeDefined();
    const stop = layer.observe();
    expect(typeof stop).toBe('function');
    stop();
  });
});
