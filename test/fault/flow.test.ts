/**
 * Peers that read slowly or not at all. Memory must stay bounded by the high-water marks (asserted on the
 * library's own queue accounting: every byte offered is in exactly one of kernel / native queue / stream
 * buffer), and whatever is written arrives intact once the peer reads.
 */
import { describe, expect, test } from 'vitest';
import net from 'node:net';
import { Duplex } from 'node:stream';
import type { Socket } from '../../src/index.js';
import { once, payload, sha256, until } from '../helpers.js';
import { closed, layerOf, peer, record, settle } from './util.js';

const CHUNK = Buffer.alloc(64 * 1024, 0x5a);
/** Far more than loopback's kernel buffers can hold: a writer that got this far was never held back. */
const LIMIT = 256 * 1024 * 1024;

/** Resolves once `value()` has not changed for `polls` consecutive polls: the kernel stopped taking bytes. */
async function stalled(value: () => number, polls = 10): Promise<void> {
  let last = -1;
  let same = 0;
  await until(
    () => {
      const v = value();
      same = v === last ? same + 1 : 0;
      last = v;
      return same >= polls;
    },
    10_000,
    'the writer to stall',
  );
}

/**
 * Bytes in the Writable's own buffer, whatever `writableLength` is defined to include on top (net counts its
 * pending write requests there; a Socket may count its native queue).
 */
const streamLength = Object.getOwnPropertyDescriptor(Duplex.prototype, 'writableLength')!.get!;
function streamBuffered(s: Socket): number {
  return streamLength.call(s) as number;
}

/** A writer that honours backpressure; keeps the count of bytes offered and of refusals. */
function drainWriter(s: Socket | net.Socket) {
  const w = { offered: 0, refusals: 0, drains: 0, stop: false };
  const go = () => {
    while (w.offered < LIMIT && !s.destroyed && !w.stop) {
      w.offered += CHUNK.length;
      if (!s.write(CHUNK)) {
        w.refusals++;
        return;
      }
    }
  };
  s.on('drain', () => {
    w.drains++;
    go();
  });
  go();
  return w;
}

describe('a peer that never reads', () => {
  test('Duplex: write() returns false and the queues stay at their high-water marks (and net does the same)', async () => {
    const hwm = 256 * 1024;
    const serverSide: net.Socket[] = [];
    const p = await peer((c) => {
      c.pause();
      serverSide.push(c);
    });
    const layer = layerOf({ highWaterMark: hwm });
    const rssBefore = process.memoryUsage().rss;

    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    await once(s, 'connect');
    const w = drainWriter(s);
    await stalled(() => s.counters.bytesSent);

    const theirs = net.connect(p.port, '127.0.0.1');
    record(theirs);
    await once(theirs, 'connect');
    const wn = drainWriter(theirs);
    await stalled(() => theirs.bytesWritten - theirs.writableLength);

    for (const [name, ww, sock] of [
      ['sockguard', w, s],
      ['net', wn, theirs],
    ] as const) {
      expect(ww.refusals, name).toBeGreaterThan(0); // write() said stop
      expect(ww.offered, name).toBeLessThan(LIMIT); // and the writer did: memory is bounded by backpressure
      // net's contract: write() says stop once writableLength reaches writableHighWaterMark, so a writer that
      // honours it never has more than one write beyond that mark.
      expect
        .soft(sock.writableLength, `${name}: writableLength within writableHighWaterMark (${sock.writableHighWaterMark}) + one write`)
        .toBeLessThanOrEqual(sock.writableHighWaterMark + CHUNK.length);
      // write() returned false, so the stream owes a 'drain' and says so, as net's does.
      expect.soft(sock.writableNeedDrain, `${name}: writableNeedDrain after write() returned false`).toBe(true);
    }

    // The layer's highWaterMark option governs its Duplex sockets too, not only connectRaw().
    expect.soft(s.raw.highWaterMark, "the layer's highWaterMark on a Duplex").toBe(hwm);
    // Our accounting: each byte offered is in the kernel, the native queue, or the stream's own buffer — once.
    const pending = s.raw.pendingBytes;
    const buffered = streamBuffered(s);
    expect(pending).toBeLessThanOrEqual(s.raw.highWaterMark + CHUNK.length);
    expect(buffered).toBeLessThanOrEqual(s.writableHighWaterMark + CHUNK.length);
    expect(s.counters.bytesSent + pending + buffered).toBe(w.offered);
    expect(s.bytesWritten).toBe(w.offered);
    // What the process holds beyond the kernel's buffers is bounded by the two high-water marks.
    expect(w.offered - s.counters.bytesSent).toBeLessThanOrEqual(s.raw.highWaterMark + s.writableHighWaterMark + 2 * CHUNK.length);
    // A generous RSS bound: only meaningful as a backstop against a queue that grows without limit.
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(128 * 1024 * 1024);

    // The peer reads again: drain comes, and every byte offered arrives.
    theirs.destroy();
    w.stop = true;
    let got = 0;
    const mine = serverSide[0]!;
    mine.on('data', (d: Buffer) => (got += d.length));
    mine.resume();
    await until(() => w.drains > 0, 5000, "'drain'");
    s.resume(); // the peer's FIN must be read for the socket to close
    s.end();
    await until(() => got >= w.offered, 10_000, 'every byte at the peer');
    await closed(s);
    await settle();
    expect(got).toBe(w.offered);
    expect(s.counters.bytesSent).toBe(w.offered);
    expect(layer.usage().bytesSent).toBe(w.offered);
    expect(log.errors).toEqual([]);
    expect(log.closes).toBe(1);
  });

  test('RawSocket: pendingBytes stays within highWaterMark + one write, and bytesWritten + pendingBytes = offered', async () => {
    const hwm = 128 * 1024;
    const p = await peer((c) => c.pause());
    const layer = layerOf();
    let offered = 0;
    let refusals = 0;
    let maxPending = 0;
    const closes: Array<Error | null> = [];
    const raw = layer.connectRaw(
      { host: '127.0.0.1', port: p.port, highWaterMark: hwm },
      { onconnect: (err) => !err && go(), ondrain: () => go(), onclose: (err) => closes.push(err) },
    );
    function go() {
      while (offered < LIMIT) {
        offered += CHUNK.length;
        const ok = raw.write(CHUNK);
        maxPending = Math.max(maxPending, raw.pendingBytes);
        if (!ok) {
          refusals++;
          return;
        }
      }
    }
    await until(() => offered > 0, 5000, 'connect');
    await stalled(() => raw.bytesWritten);
    expect(refusals).toBeGreaterThan(0);
    expect(offered).toBeLessThan(LIMIT);
    expect(maxPending).toBeLessThanOrEqual(hwm + CHUNK.length);
    expect(raw.bytesWritten + raw.pendingBytes).toBe(offered);
    expect(layer.usage().bytesSent).toBe(raw.bytesWritten);
    raw.destroy();
    await until(() => closes.length === 1, 5000, 'onclose');
    expect(closes).toEqual([null]);
  });
});

describe('slow reader', () => {
  test('a peer that reads in small, delayed steps receives every byte (sha256 equal)', async () => {
    const data = payload(6 * 1024 * 1024);
    const got: Buffer[] = [];
    let ended = false;
    const p = await peer((c) => {
      c.on('data', (d: Buffer) => {
        got.push(d);
        c.pause();
        setTimeout(() => c.resume(), 2);
      });
      c.on('end', () => {
        ended = true;
        c.end();
      });
    });
    const layer = layerOf({ highWaterMark: 128 * 1024 });
    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    s.resume();
    await once(s, 'connect');
    let off = 0;
    while (off < data.length) {
      const n = Math.min(data.length - off, 1 + ((off * 7919) % 100_000));
      if (!s.write(data.subarray(off, off + n))) await once(s, 'drain');
      off += n;
    }
    s.end();
    await closed(s);
    await until(() => ended, 10_000, 'peer to read everything');
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
    expect(s.counters.bytesSent).toBe(data.length);
    expect(layer.usage().bytesSent).toBe(data.length);
    expect(log.errors).toEqual([]);
    expect(log.closes).toBe(1);
  });

  test('a Duplex that reads in small, delayed steps receives every byte the peer sends (sha256 equal)', async () => {
    const data = payload(6 * 1024 * 1024);
    const p = await peer((c) => c.end(data));
    const layer = layerOf();
    const s = layer.connect(p.port, '127.0.0.1');
    const log = record(s);
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => {
      got.push(d);
      s.pause();
      setTimeout(() => s.resume(), 2);
    });
    await once(s, 'end');
    await closed(s);
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
    expect(s.counters.bytesReceived).toBe(data.length);
    expect(layer.usage().bytesReceived).toBe(data.length);
    expect(log.errors).toEqual([]);
  });

  test('a RawSocket that pauses in ondata and resumes later receives every byte (sha256 equal)', async () => {
    const data = payload(6 * 1024 * 1024);
    const p = await peer((c) => c.end(data));
    const layer = layerOf();
    const got: Buffer[] = [];
    let ended = false;
    const closes: Array<Error | null> = [];
    const raw = layer.connectRaw(
      { host: '127.0.0.1', port: p.port },
      {
        ondata(buf, offset, length) {
          got.push(Buffer.from(buf.subarray(offset, offset + length)));
          raw.pause();
          setTimeout(() => raw.resume(), 2);
        },
        onend() {
          ended = true;
        },
        onclose: (err) => closes.push(err),
      },
    );
    await until(() => ended, 10_000, 'onend');
    raw.destroy();
    await until(() => closes.length > 0, 5000, 'onclose');
    await settle();
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
    expect(raw.bytesRead).toBe(data.length);
    expect(closes).toEqual([null]);
  });
});
