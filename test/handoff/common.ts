/**
 * Fixtures of the hand-off tests: a peer that keeps sending while connections change hands, and the code a worker
 * thread or a child process runs to take its turn with a connection.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { expect } from 'vitest';
import type { SocketLayer } from '../../src/index.js';
import type { Socket } from '../../src/tcp/socket.js';
import { listen, sha256, until, type Peer } from '../helpers.js';

export interface StreamPeer extends Peer {
  /** Every byte the peer sent, in order (complete once `sent` resolves). */
  readonly out: Buffer;
  /** Everything the peer received so far. */
  received(): Buffer;
  /** Resolves once the peer has sent all its bytes. */
  sent: Promise<void>;
  /** Resolves once the client's FIN arrived. */
  ended: Promise<void>;
}

/**
 * A peer that, once one client connects, sends `total` random bytes in `chunk`-byte pieces, one piece every `everyMs`
 * (so a hand-off happens mid-stream), then ends its side; it keeps what it receives.
 */
export async function streamPeer(total: number, chunk = 4096, everyMs = 1): Promise<StreamPeer> {
  const out = randomBytes(total);
  const got: Buffer[] = [];
  let sentResolve!: () => void;
  let endedResolve!: () => void;
  const sent = new Promise<void>((r) => (sentResolve = r));
  const ended = new Promise<void>((r) => (endedResolve = r));
  const peer = await listen((c: net.Socket) => {
    c.on('data', (d) => got.push(d));
    c.on('end', () => endedResolve());
    let off = 0;
    const step = () => {
      if (c.destroyed) return;
      if (off >= total) {
        c.end();
        sentResolve();
        return;
      }
      const n = Math.min(chunk, total - off);
      const ok = c.write(out.subarray(off, off + n));
      off += n;
      if (ok) setTimeout(step, everyMs);
      else c.once('drain', step);
    };
    step();
  });
  return Object.assign(peer, { out, received: () => Buffer.concat(got), sent, ended });
}

/** Resolves once `s` is connected (a fresh connect or an attach); rejects with its error if that fails. */
export const connected = (s: Socket) => new Promise<void>((resolve, reject) => {
  s.once('connect', resolve);
  s.once('error', reject);
});

/**
 * The first owner of a mid-stream hand-off: connects to `peer` through `layer`, keeps what it reads, writes `write`
 * and waits until at least `take` bytes arrived, so that the connection changes hands while the peer is sending.
 */
export async function firstOwner(
  layer: SocketLayer,
  peer: StreamPeer,
  write: Buffer,
  take: number,
): Promise<{ socket: Socket; received(): Buffer }> {
  const s = layer.connect(peer.port, '127.0.0.1');
  await connected(s);
  const got: Buffer[] = [];
  let n = 0;
  s.on('data', (d) => {
    got.push(d);
    n += d.length;
  });
  s.write(write);
  await until(() => n >= take, 10000, 'first part');
  return { socket: s, received: () => Buffer.concat(got) };
}

/**
 * The end of a mid-stream hand-off, once the peer has the last owner's FIN: every byte arrived once and in order
 * both ways (`parts`: what each owner read, `writes`: what each wrote, in turn), the last owner's counters cover the
 * whole connection, and every byte was billed exactly once, by whichever layer moved it (`usages`).
 */
export async function expectWholeStream(
  peer: StreamPeer,
  parts: Buffer[],
  writes: Buffer[],
  lastCounters: Turn['counters'] | undefined,
  usages: Array<Turn['usage']>,
): Promise<void> {
  await peer.ended;
  const total = peer.out.length;
  const received = Buffer.concat(parts);
  expect(received.length).toBe(total);
  expect(sha256(received)).toBe(sha256(peer.out));
  expect(sha256(peer.received())).toBe(sha256(...writes));
  const sent = writes.reduce((a, b) => a + b.length, 0);
  expect(lastCounters).toMatchObject({ bytesSent: sent, bytesReceived: total });
  expect(usages.reduce((a, u) => a + u.bytesSent, 0)).toBe(sent);
  expect(usages.reduce((a, u) => a + u.bytesReceived, 0)).toBe(total);
}

/** What a turn (turnScript) reports: `got` is base64; `error` and `message` when the attach was refused. */
export interface Turn {
  token: string | null;
  got: string;
  counters: { bytesSent: number; bytesReceived: number };
  usage: { bytesSent: number; bytesReceived: number };
  error?: string;
  message?: string;
}

/**
 * What a worker thread (workerData) or a child process (its first IPC message) runs: attach `token`, read until at least
 * `take` bytes arrived (or the end), write `write`, then either detach again (the new token goes back) or, last,
 * read to the end and end its side. Reports what it read, its counters and its layer's ledger.
 */
export const turnScript = `
const input = typeof workerData === 'object' && workerData !== null ? workerData : await new Promise((r) => process.once('message', r));
const send = (m) => new Promise((r) => (parentPort ? r(parentPort.postMessage(m)) : process.send(m, r)));
const { SocketLayer } = await import(input.dist);
const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: input.app, secret: input.secret });
const s = layer.attach(input.token);
const got = [];
let n = 0;
let ended = false;
const error = new Promise((resolve) => s.once('error', (e) => resolve(e)));
s.on('data', (d) => { got.push(d); n += d.length; });
s.on('end', () => { ended = true; });
const first = await Promise.race([new Promise((r) => s.once('connect', () => r(null))), error]);
if (first) {
  await send({ error: first.code, message: first.message });
} else {
  s.write(Buffer.from(input.write, 'base64'));
  while (n < input.take && !ended) await new Promise((r) => setTimeout(r, 1));
  let token = null;
  if (input.last) {
    while (!ended) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => s.end(r));
  } else {
    token = await s.detach({ broker: !!input.broker });
  }
  await new Promise((r) => (s.closed ? r() : s.once('close', r)));
  const counters = s.counters;
  await layer.close();
  await send({ token, got: Buffer.concat(got).toString('base64'), counters, usage: layer.usage() });
}
`;

export const workerCode = `
import { workerData, parentPort } from 'node:worker_threads';
${turnScript}
`;

export const childCode = `
const parentPort = null;
const workerData = null;
${turnScript}
process.disconnect?.();
`;
