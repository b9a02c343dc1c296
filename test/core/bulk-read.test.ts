/**
 * Large transfers into a Duplex: every byte arrives in order even when the reader keeps every chunk it was given
 * (no buffer handed over is ever written again), no chunk pins much more memory than its own bytes, flows that
 * switch between bursts and small writes stay intact under a pausing reader, several bulk flows share the loop
 * with a ping-pong, and a socket destroyed mid-transfer leaves the next transfers whole.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type net from 'node:net';
import { SocketLayer } from '../../src/index.js';
import { listen, once, payload, sha256, until, type Peer } from '../helpers.js';

let layer: SocketLayer;
const peers: Peer[] = [];

beforeEach(() => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
});

afterEach(async () => {
  await layer.close();
  for (const p of peers.splice(0)) await p.close();
});

/** A loopback peer that runs `onConn` for each connection; closed after the test. */
async function peer(onConn: (c: net.Socket) => void): Promise<number> {
  const p = await listen(onConn);
  peers.push(p);
  return p.port;
}

describe('bulk reads', () => {
  test('a 48 MiB download kept chunk by chunk arrives whole: no chunk handed over is written again', async () => {
    const data = payload(48 * 1024 * 1024 + 4321);
    const port = await peer((c) => c.end(data));
    const s = layer.connect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    await once(s, 'end');
    await once(s, 'close');
    // Checked only now, after every later read: a buffer reused under a kept chunk would show here.
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
    let off = 0;
    for (const d of got) {
      expect(d.equals(data.subarray(off, off + d.length))).toBe(true);
      off += d.length;
    }
    expect(s.bytesRead).toBe(data.length);
    expect(layer.usage().bytesReceived).toBe(data.length);
    // No chunk holds on to much more memory than its own bytes (a small tail is copied out of its buffer).
    for (const d of got) expect(d.buffer.byteLength <= Math.max(2 * d.length, 8192)).toBe(true);
  });

  test('a flow that alternates bursts and small writes, read by a reader that pauses, arrives in order', async () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 40; i++) parts.push(payload(i % 3 === 0 ? 1_500_000 + i : 10 + i * 7));
    const whole = Buffer.concat(parts);
    const port = await peer(async (c) => {
      for (const p of parts) {
        if (!c.write(p)) await once(c, 'drain');
        // A pause between bursts empties the kernel queue, so reads switch back to small ones.
        await new Promise((r) => setTimeout(r, 1));
      }
      c.end();
    });
    const s = layer.connect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => {
      got.push(d);
      if (got.length % 5 === 0) {
        s.pause();
        setTimeout(() => s.resume(), 3);
      }
    });
    await once(s, 'end');
    expect(sha256(Buffer.concat(got))).toBe(sha256(whole));
  });

  test('sockets destroyed in the middle of bulk transfers leave the next transfers whole', async () => {
    const data = payload(8 * 1024 * 1024);
    const port = await peer((c) => c.end(data));
    for (let round = 0; round < 6; round++) {
      const cut = layer.connect({ host: '127.0.0.1', port });
      let seen = 0;
      cut.on('data', (d: Buffer) => {
        seen += d.length;
        if (seen > 1024 * 1024) cut.destroy();
      });
      await once(cut, 'close');
      const s = layer.connect({ host: '127.0.0.1', port });
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      await once(s, 'end');
      expect(sha256(Buffer.concat(got))).toBe(sha256(data));
    }
  });

  test('several bulk flows at once, each kept whole, beside a small ping-pong', async () => {
    const data = [payload(12 * 1024 * 1024), payload(9 * 1024 * 1024 + 1), payload(5 * 1024 * 1024 + 77)];
    const ports = await Promise.all(data.map((d) => peer((c) => c.end(d))));
    const echo = await peer((c) => c.pipe(c));
    const pp = layer.connect({ host: '127.0.0.1', port: echo });
    await once(pp, 'connect');
    let pongs = 0;
    pp.on('data', () => {
      if (++pongs < 200) pp.write('x');
    });
    pp.write('x');
    const results = await Promise.all(
      ports.map(async (port) => {
        const s = layer.connect({ host: '127.0.0.1', port });
        const got: Buffer[] = [];
        s.on('data', (d: Buffer) => got.push(d));
        await once(s, 'end');
        return Buffer.concat(got);
      }),
    );
    results.forEach((r, i) => expect(sha256(r)).toBe(sha256(data[i]!)));
    await until(() => pongs >= 200, 10_000, 'the ping-pong to finish');
    pp.destroy();
  });

  test('a RawSocket reading a bulk flow gets every byte through ondata', async () => {
    const data = payload(16 * 1024 * 1024 + 5);
    const port = await peer((c) => c.end(data));
    const got: Buffer[] = [];
    let ended = false;
    const raw = layer.connectRaw(
      { host: '127.0.0.1', port },
      {
        ondata(buf, offset, length) {
          got.push(Buffer.from(buf.subarray(offset, offset + length)));
        },
        onend() {
          ended = true;
        },
      },
    );
    await until(() => ended, 10_000, 'onend');
    raw.destroy();
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
    expect(raw.bytesRead).toBe(data.length);
  });
});
