/**
 * A peer that resets the connection while we write, and `write(); destroy()`: the error is coded and reaches
 * the socket's 'error' listener (never an uncaught exception), 'close' comes once, and every counter agrees with
 * what the peer really received.
 */
import { describe, expect, test } from 'vitest';
import net from 'node:net';
import type { Socket } from '../../src/index.js';
import { once, until } from '../helpers.js';
import { closed, layerOf, peer, pump, record, settle } from './util.js';

const RESET_CODES = ['ECONNRESET', 'EPIPE'];

/** A peer that reads `after` bytes of each connection, then resets it (RST, not FIN). */
function resettingPeer(after: number) {
  return peer((c) => {
    let got = 0;
    c.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= after && !c.destroyed) c.resetAndDestroy();
    });
  });
}

describe('peer reset mid-write', () => {
  test('Duplex: coded ECONNRESET/EPIPE on the error listener, close once with hadError, counters consistent; net behaves the same', async () => {
    const p = await resettingPeer(256 * 1024);
    const layer = layerOf();
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const limit = 256 * 1024 * 1024; // far more than the peer takes before it resets

    const run = async (s: Socket | net.Socket) => {
      const log = record(s);
      await once(s, 'connect');
      const offered = await pump(s, chunk, limit);
      await settle();
      return { log, offered };
    };

    const sg = layer.connect(p.port, '127.0.0.1');
    const ours = await run(sg);
    const theirs = await run(net.connect(p.port, '127.0.0.1'));

    for (const { log, offered } of [ours, theirs]) {
      expect(offered).toBeLessThan(limit); // the reset stopped the writer
      expect(log.errors).toHaveLength(1);
      expect(RESET_CODES).toContain(log.errors[0]!.code);
      expect(typeof log.errors[0]!.syscall).toBe('string');
      expect(log.closes).toBe(1);
      // Same shape as net: connect, one error, then close(hadError = true).
      expect(log.events[0]).toBe('connect');
      expect(log.events.slice(-2)).toEqual([`error:${log.errors[0]!.code}`, 'close:true']);
    }
    expect(ours.log.events.filter((e) => e !== 'finish' && e !== 'end').length).toBe(
      theirs.log.events.filter((e) => e !== 'finish' && e !== 'end').length,
    );

    // Counters: the kernel accepted at least what the peer read, never more than was offered; the ledger folds
    // exactly the socket's final counters.
    const sent = sg.counters.bytesSent;
    expect(sent).toBeGreaterThanOrEqual(256 * 1024);
    expect(sent).toBeLessThanOrEqual(ours.offered);
    expect(sg.raw.bytesWritten).toBe(sent);
    const u = layer.usage();
    expect(u.socketsOpen).toBe(0);
    expect(u.bytesSent).toBe(sent);
    expect(u.sendCalls).toBe(sg.counters.sendCalls);
    expect(layer.size).toBe(0);
  });

  test('RawSocket: the reset reaches onclose once with a coded error; a later write throws EPIPE', async () => {
    const p = await resettingPeer(256 * 1024);
    const layer = layerOf();
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    const closes: Array<Error | null> = [];
    const thrown: NodeJS.ErrnoException[] = [];
    let offered = 0;
    const raw = layer.connectRaw(
      { host: '127.0.0.1', port: p.port, highWaterMark: 256 * 1024 },
      {
        onconnect: (err) => {
          if (!err) go();
        },
        ondrain: () => go(),
        onclose: (err) => closes.push(err),
      },
    );
    function go() {
      try {
        while (offered < 256 * 1024 * 1024) {
          offered += chunk.length;
          if (!raw.write(chunk)) return;
        }
      } catch (err) {
        // A write that meets the reset fails with the same coded error the socket closes with.
        thrown.push(err as NodeJS.ErrnoException);
      }
    }
    await until(() => closes.length > 0, 10_000, 'onclose');
    await settle();
    expect(closes).toHaveLength(1);
    const err = closes[0] as NodeJS.ErrnoException;
    expect(err).toBeInstanceOf(Error);
    expect(RESET_CODES).toContain(err.code);
    for (const t of thrown) expect(RESET_CODES).toContain(t.code);
    expect(() => raw.write(Buffer.from('late'))).toThrow(expect.objectContaining({ code: 'EPIPE' }));
    expect(raw.bytesWritten).toBeGreaterThanOrEqual(256 * 1024);
    expect(raw.bytesWritten).toBeLessThanOrEqual(offered);
    expect(layer.usage().bytesSent).toBe(raw.bytesWritten);
    expect(layer.usage().socketsOpen).toBe(0);
  });
});

describe('write(); destroy() bills what was sent', () => {
  /**
   * The peer counts every byte of the connection until it closes. Whatever destroy() did with the queue, the
   * socket's counter, the ledger and the peer must agree exactly.
   */
  async function writeThenDestroy(size: number, connectFirst: boolean) {
    let got = 0;
    const p = await peer((c) => c.on('data', (d: Buffer) => (got += d.length)));
    const layer = layerOf();
    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    if (connectFirst) await once(s, 'connect');
    s.write(Buffer.alloc(size, 0x63));
    s.destroy();
    await closed(s);
    if (connectFirst) await until(() => p.accepted === 1, 5000, 'peer to accept');
    await settle();
    await until(() => p.connections.size === 0, 5000, 'peer to see the close');
    return { got, s, layer, log };
  }

  for (const [label, size] of [
    ['a small (staged) write', 1000],
    ['a 200 kB write', 200_000],
    ['an 8 MB write', 8 * 1024 * 1024],
  ] as const) {
    test(`${label} on an open socket`, async () => {
      const { got, s, layer, log } = await writeThenDestroy(size, true);
      expect(log.errors).toEqual([]);
      expect(log.closes).toBe(1);
      expect(s.counters.bytesSent).toBe(got);
      expect(layer.usage().bytesSent).toBe(got);
      // net hands small writes to the kernel at once, so the peer gets all of them; so must we.
      if (size <= 200_000) expect(got).toBe(size);
    });
  }

  test('net and sockguard deliver the same bytes for a small write then destroy', async () => {
    const counts = new Map<number, number>();
    const p = await peer((c) => {
      const key = c.remotePort!;
      counts.set(key, 0);
      c.on('data', (d: Buffer) => counts.set(key, counts.get(key)! + d.length));
    });
    const layer = layerOf();
    const results: number[] = [];
    for (const make of [() => net.connect(p.port, '127.0.0.1'), () => layer.connect(p.port, '127.0.0.1')]) {
      const s = make();
      s.on('error', () => {});
      await once(s, 'connect');
      const local = s.localPort!;
      s.write('x'.repeat(1500));
      s.destroy();
      await closed(s);
      await until(() => p.connections.size === 0, 5000, 'peer to see the close');
      results.push(counts.get(local) ?? -1);
    }
    expect(results).toEqual([1500, 1500]);
    expect(layer.usage().bytesSent).toBe(1500);
  });

  test('before the connection is up nothing is sent and nothing is billed', async () => {
    const { got, s, layer, log } = await writeThenDestroy(1000, false);
    expect(log.errors).toEqual([]);
    expect(log.closes).toBe(1);
    expect(got).toBe(0);
    expect(s.counters.bytesSent).toBe(0);
    expect(layer.usage().bytesSent).toBe(0);
  });
});
