/**
 * Idle reclaim against real transfers. A socket that is moving bytes — a write still draining from the native
 * queue, or data arriving — is not idle, even when JS makes no call on it; a socket on which nothing moves is,
 * paused or not, and it is reclaimed quietly: 'close' once, no 'error', `reclaimed`, and EPIPE afterwards.
 */
import { describe, expect, test } from 'vitest';
import { performance } from 'node:perf_hooks';
import { constants as C, type SocketLayerOptions } from '../../src/index.js';
import { once, payload, sha256, until } from '../helpers.js';
import { closed, layerOf, peer, record, settle } from './util.js';

const IDLE = 300;
const SWEEP = 50;
/** Reclaim is due by IDLE + 2 × SWEEP after the last activity; the rest is slack for a loaded machine. */
const RECLAIM_WITHIN = 3000;

function reclaimLayer(extra: SocketLayerOptions = {}) {
  return layerOf({ idleTimeoutMs: IDLE, sweepIntervalMs: SWEEP, ...extra });
}

describe('a socket that is transferring is not reclaimed', () => {
  /**
   * One write of 3 MB, then no call at all on the socket while a throttled peer drains it. The kernel's send
   * buffer is made small (native socket options) so that the bytes wait in the library's own queue, which is
   * what the reclaim sweep must see as activity.
   */
  async function slowSend(paused: boolean) {
    const got: Buffer[] = [];
    let received = 0;
    const p = await peer((c) =>
      c.on('data', (d: Buffer) => {
        got.push(d);
        received += d.length;
        c.pause();
        setTimeout(() => c.resume(), 10);
      }),
    );
    const layer = reclaimLayer({ sockopts: 'native' });
    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    await once(s, 'connect');
    s.setsockopt(C.SOL_SOCKET, C.SO_SNDBUF, 16384);
    if (paused) s.pause();
    else s.resume();
    const data = payload(3 * 1024 * 1024);
    const t0 = performance.now();
    s.write(data);
    let queuedFor = 0;
    let lastPending = s.raw.pendingBytes;
    let pendingAtClose = -1;
    await until(
      () => {
        if (s.destroyed) {
          pendingAtClose = lastPending;
          return true;
        }
        lastPending = s.raw.pendingBytes;
        if (lastPending > 0) queuedFor = performance.now() - t0;
        return received === data.length;
      },
      15_000,
      'the transfer to finish or the socket to close',
    );
    expect(s.reclaimed, `reclaimed ${Math.round(queuedFor)} ms into the transfer, ${pendingAtClose} bytes still queued`).toBe(false);
    expect(s.destroyed).toBe(false);
    // The scenario only means something if bytes sat in our queue for well over the idle timeout.
    expect(queuedFor, 'time the write waited in the native queue (ms)').toBeGreaterThanOrEqual(2 * IDLE);
    expect(log.errors).toEqual([]);
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
    expect(s.counters.bytesSent).toBe(data.length);
    s.destroy();
  }

  test('a large write draining slowly from the native queue (flowing socket)', () => slowSend(false));

  test('a large write draining slowly from the native queue while reading is paused', () => slowSend(true));

  test('data arriving with no call on the socket keeps it (flowing, no JS operation)', async () => {
    const p = await peer((c) => {
      const t = setInterval(() => c.write('tick'), 25);
      c.on('close', () => clearInterval(t));
    });
    const layer = reclaimLayer();
    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    let bytes = 0;
    s.on('data', (d: Buffer) => (bytes += d.length));
    await once(s, 'connect');
    const t0 = performance.now();
    await until(() => s.destroyed || performance.now() - t0 > 4 * IDLE, 5000, 'four idle timeouts of traffic');
    expect(s.reclaimed).toBe(false);
    expect(s.destroyed).toBe(false);
    expect(bytes).toBeGreaterThan(0);
    expect(log.errors).toEqual([]);
    s.destroy();
  });
});

describe('a socket on which nothing moves is reclaimed quietly', () => {
  test('an idle Duplex: close once without error, reclaimed, EPIPE after, ledger and peer agree', async () => {
    let peerEnded = false;
    const p = await peer((c) => {
      c.resume();
      c.on('end', () => (peerEnded = true));
    });
    const layer = reclaimLayer();
    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    await once(s, 'connect');
    s.write('hello');
    await until(() => s.closed, RECLAIM_WITHIN, 'reclaim');
    await settle();
    expect(s.reclaimed).toBe(true);
    expect(log.errors).toEqual([]);
    expect(log.closes).toBe(1);
    expect(log.events.at(-1)).toBe('close:false');
    const err = await new Promise<NodeJS.ErrnoException | null | undefined>((r) => s.write('late', (e) => r(e)));
    expect(err?.code).toBe('EPIPE');
    await settle();
    expect(log.errors.filter((e) => e.code !== 'EPIPE')).toEqual([]);
    expect(log.closes).toBe(1);
    const u = layer.usage();
    expect(u.reclaimed).toBe(1);
    expect(u.socketsOpen).toBe(0);
    expect(u.bytesSent).toBe(5);
    expect(layer.size).toBe(0);
    await until(() => peerEnded, 2000, 'the peer to see FIN');
  });

  test('an idle RawSocket: onclose(null) once, reclaimed, write throws EPIPE', async () => {
    const p = await peer(() => {});
    const layer = reclaimLayer();
    const closes: Array<Error | null> = [];
    let connected = false;
    const raw = layer.connectRaw(
      { host: '127.0.0.1', port: p.port },
      { onconnect: (err) => (connected = !err), onclose: (err) => closes.push(err) },
    );
    await until(() => connected, 5000, 'connect');
    await until(() => closes.length > 0, RECLAIM_WITHIN, 'reclaim');
    await settle();
    expect(closes).toEqual([null]);
    expect(raw.reclaimed).toBe(true);
    expect(() => raw.write(Buffer.from('late'))).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(layer.usage().reclaimed).toBe(1);
  });

  test('a paused Duplex with unread data waiting and nothing moving is reclaimed the same way', async () => {
    const p = await peer((c) => c.write(Buffer.alloc(1024 * 1024, 1)));
    const layer = reclaimLayer();
    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    s.pause();
    await once(s, 'connect');
    await until(() => s.closed, RECLAIM_WITHIN + 1000, 'reclaim');
    await settle();
    expect(s.reclaimed).toBe(true);
    expect(log.errors).toEqual([]);
    expect(log.closes).toBe(1);
    const err = await new Promise<NodeJS.ErrnoException | null | undefined>((r) => s.write('late', (e) => r(e)));
    expect(err?.code).toBe('EPIPE');
    expect(layer.usage().reclaimed).toBe(1);
    expect(layer.usage().socketsOpen).toBe(0);
  });

  test('a socket that stops transferring is reclaimed after the idle timeout, not before', async () => {
    // Traffic for a while, then silence: reclaim comes only once the silence has lasted idleTimeoutMs.
    let stop = false;
    const p = await peer((c) => {
      const t = setInterval(() => (stop ? clearInterval(t) : c.write('tick')), 25);
      c.on('close', () => clearInterval(t));
    });
    const layer = reclaimLayer();
    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    let lastData = 0;
    s.on('data', () => (lastData = performance.now()));
    await once(s, 'connect');
    await new Promise((r) => setTimeout(r, 2 * IDLE));
    stop = true;
    await until(() => s.closed, RECLAIM_WITHIN, 'reclaim');
    const silence = performance.now() - lastData;
    await settle();
    expect(s.reclaimed).toBe(true);
    expect(silence).toBeGreaterThanOrEqual(IDLE - 5);
    expect(log.errors).toEqual([]);
    expect(log.closes).toBe(1);
  });
});
