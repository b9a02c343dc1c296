/**
 * Fuzzes the methods of connected TCP sockets against a loopback echo server: the net.Socket-compatible Socket
 * (write/end/destroy/setTimeout/setNoDelay/setKeepAlive/getsockopt/setsockopt/address/cork/uncork/pause/resume…)
 * and the RawSocket (write/writev/end/destroy/pause/resume…), one call with hostile arguments per input.
 *
 * A connection serves inputs until a call closes it; the next input opens a new one. Every failure must be coded
 * (thrown, 'error' event, write callback, raw onclose), with one exception: destroy(x) reports x itself, as
 * net does. At the end every socket is closed, the layers hold nothing and descriptors are back to baseline.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import type { RawSocket } from '../../src/tcp/raw.js';
import type { Socket } from '../../src/tcp/socket.js';
import { constants as C } from '../../src/service/sockopts.js';
import { echoServer, fdCount, type Peer } from '../helpers.js';
import { Problems, anyNumber, detachedView, mostly, params, settle, target, watchProcess, wild } from './common.js';

const proc = watchProcess();

const loopbackOnly = { version: 1, allow: [{ cidr: '127.0.0.1/32', openSpecialPurpose: true }] };
const echo: Peer = await echoServer();
const layers = {
  emulate: new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0 }),
  native: new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0, sockopts: 'native' }),
};
let baselineFds = 0;

beforeAll(async () => {
  // The loop's own descriptors exist from the first socket on.
  const s = layers.emulate.connect(echo.port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  s.destroy();
  await new Promise((r) => s.once('close', r));
  baselineFds = fdCount();
});

afterAll(async () => {
  await layers.emulate.close();
  await layers.native.close();
  await echo.close();
});

const chunk = fc.oneof(
  { arbitrary: wild, weight: 4 },
  { arbitrary: fc.constantFrom('abc', '', 5, undefined, null, ['a', 'b'], [Buffer.from('x')], detachedView(0), detachedView(32), detachedView(32, 'buffer')), weight: 3 },
  { arbitrary: fc.uint8Array({ maxLength: 64 }), weight: 2 },
  { arbitrary: fc.string({ maxLength: 16 }), weight: 2 },
);
const encoding = fc.oneof(fc.constant(undefined), fc.constantFrom('utf8', 'hex', 'base64', 'latin1', 'bogus'), wild);
const callback = fc.oneof(fc.constant('cb'), fc.constant(undefined), wild);
const levelName = fc.oneof(
  fc.constantFrom([C.SOL_SOCKET, C.SO_LINGER], [C.SOL_SOCKET, C.SO_SNDBUF], [C.SOL_TCP, C.TCP_NODELAY], [C.SOL_SOCKET, C.SO_ERROR], [C.SOL_SOCKET, C.SO_KEEPALIVE]),
  fc.tuple(mostly(fc.integer({ min: -1, max: 20 })), mostly(fc.integer({ min: -1, max: 20 }))),
);
const sockoptValue = fc.oneof(wild, anyNumber, fc.record({ onoff: mostly(fc.boolean()), linger: mostly(fc.integer({ min: -1, max: 70_000 })) }));

type Op = { m: string; args: unknown[] };

/** One Socket method call. end and destroy are rare: each closes the connection and the next input reconnects. */
const socketOp: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.tuple(chunk, encoding, callback).map(([c, e, cb]) => ({ m: 'write', args: [c, e, cb] })), weight: 8 },
  { arbitrary: fc.tuple(chunk, callback).map(([c, cb]) => ({ m: 'write', args: [c, cb] })), weight: 3 },
  { arbitrary: fc.tuple(mostly(fc.integer({ min: 0, max: 20 })), callback).map(([ms, cb]) => ({ m: 'setTimeout', args: [ms, cb] })), weight: 2 },
  { arbitrary: fc.tuple(wild).map(([v]) => ({ m: 'setNoDelay', args: [v] })), weight: 2 },
  { arbitrary: fc.tuple(wild, mostly(anyNumber)).map(([a, b]) => ({ m: 'setKeepAlive', args: [a, b] })), weight: 3 },
  { arbitrary: fc.tuple(levelName, mostly(fc.nat({ max: 16 }))).map(([[l, n], b]) => ({ m: 'getsockopt', args: [l, n, b] })), weight: 3 },
  { arbitrary: fc.tuple(levelName).map(([[l, n]]) => ({ m: 'getsockopt', args: [l, n] })), weight: 1 },
  { arbitrary: fc.tuple(levelName, sockoptValue).map(([[l, n], v]) => ({ m: 'setsockopt', args: [l, n, v] })), weight: 3 },
  { arbitrary: fc.constantFrom('address', 'cork', 'uncork', 'pause', 'resume', 'ref', 'unref').map((m) => ({ m, args: [] })), weight: 4 },
  { arbitrary: fc.tuple(fc.array(wild, { maxLength: 2 })).map(([a]) => ({ m: fc.sample(fc.constantFrom('address', 'cork', 'uncork', 'pause', 'resume'), 1)[0]!, args: a })), weight: 1 },
  { arbitrary: fc.tuple(chunk, encoding, callback).map(([c, e, cb]) => ({ m: 'end', args: [c, e, cb] })), weight: 1 },
  { arbitrary: fc.tuple(wild).map(([v]) => ({ m: 'destroy', args: [v] })), weight: 1 },
);

describe('Socket methods on a connected socket', () => {
  target('Socket methods with any arguments', async (tick) => {
    const problems = new Problems();
    /** One connection: it serves inputs until one of them ends or destroys it. */
    type Conn = { sock: Socket; mode: 'emulate' | 'native'; closed: boolean; whenClosed: Promise<boolean>; destroyedWith: unknown; lastOps: Op[] };
    let conn: Conn | undefined;
    let mode: 'emulate' | 'native' = 'emulate';
    const open = async (): Promise<Conn> => {
      mode = mode === 'emulate' ? 'native' : 'emulate';
      const sock = layers[mode].connect(echo.port, '127.0.0.1');
      let resolveClosed!: (v: boolean) => void;
      const c: Conn = { sock, mode, closed: false, whenClosed: new Promise((r) => (resolveClosed = r)), destroyedWith: undefined, lastOps: [] };
      sock.on('error', (err) => {
        if (err !== c.destroyedWith) problems.check(`'error' event (${c.mode})`, c.lastOps.slice(-3), err);
      });
      sock.on('close', () => {
        c.closed = true;
        resolveClosed(true);
      });
      sock.on('data', () => {});
      await new Promise<void>((resolve) => {
        sock.once('connect', () => resolve());
        sock.once('close', () => resolve());
      });
      return c;
    };
    const closedWithin = (c: Conn, ms: number): Promise<boolean> => {
      if (c.closed) return Promise.resolve(true);
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([c.whenClosed, new Promise<boolean>((r) => (timer = setTimeout(r, ms, false)))]).finally(() => clearTimeout(timer));
    };
    // A connection that an input ended or destroyed is judged (closes, or closes once destroyed) while the next
    // inputs run on a new one; the judgements are awaited in batches. Waiting for each in turn (end() on a
    // paused socket waits out its 50 ms) was most of this target's time.
    let closing: Promise<void>[] = [];
    const judgeClose = async (c: Conn, m: string): Promise<void> => {
      // end() legitimately waits while the socket is paused (the echo stops reading): then destroy it.
      if (!(await closedWithin(c, m === 'end' ? 50 : 2000))) {
        c.sock.destroy();
        if (!(await closedWithin(c, 2000))) problems.add("destroy() did not lead to 'close'", c.lastOps.slice(-3));
      }
    };
    await fc.assert(
      fc.asyncProperty(socketOp, async (op) => {
        tick();
        if (conn === undefined || conn.closed) conn = await open();
        const c = conn;
        const args = op.args.map((a) =>
          a === 'cb'
            ? (err?: unknown) => {
                if (err && err !== c.destroyedWith) problems.check(`${op.m} callback(err)`, op, err);
              }
            : a,
        );
        c.lastOps.push(op);
        if (op.m === 'destroy') c.destroyedWith = args[0];
        try {
          (c.sock as unknown as Record<string, (...a: unknown[]) => unknown>)[op.m]!(...args);
        } catch (err) {
          problems.check(`${op.m}() threw (${c.mode})`, op, err);
        }
        if (op.m === 'end' || op.m === 'destroy') {
          conn = undefined;
          closing.push(judgeClose(c, op.m));
          if (closing.length >= 32) {
            await Promise.all(closing);
            closing = [];
          }
        }
      }),
      params(undefined, [[{ m: 'write', args: [detachedView(16, 'dv'), 'cb'] }], [{ m: 'setTimeout', args: [Object.create(null), undefined] }], [{ m: 'write', args: [detachedView(16), undefined, 'cb'] }]]),
    );
    await Promise.all(closing);
    if (conn && !conn.closed) {
      conn.sock.destroy();
      await closedWithin(conn, 2000);
    }
    for (const [name, l] of Object.entries(layers)) {
      if (!(await settle(() => l.size === 0 && l.usage().socketsOpen === 0, 2000))) problems.add(`${name} layer holds sockets after every Socket was closed (size ${l.size})`);
    }
    problems.expectNone();
    proc.expectNone();
  });

  const rawOp: fc.Arbitrary<Op> = fc.oneof(
    { arbitrary: fc.tuple(chunk).map(([c]) => ({ m: 'write', args: [c] })), weight: 8 },
    { arbitrary: fc.tuple(fc.oneof(fc.array(chunk, { maxLength: 4 }), wild)).map(([c]) => ({ m: 'writev', args: [c] })), weight: 5 },
    { arbitrary: fc.constantFrom('pause', 'resume', 'ref', 'unref').map((m) => ({ m, args: [] })), weight: 3 },
    { arbitrary: fc.tuple(wild).map(([v]) => ({ m: 'setNoDelay', args: [v] })), weight: 2 },
    { arbitrary: fc.tuple(wild, mostly(anyNumber)).map(([a, b]) => ({ m: 'setKeepAlive', args: [a, b] })), weight: 2 },
    { arbitrary: fc.tuple(wild).map(([v]) => ({ m: 'name', args: [v] })), weight: 1 },
    { arbitrary: fc.constant<Op>({ m: 'end', args: [] }), weight: 1 },
    { arbitrary: fc.tuple(wild).map(([v]) => ({ m: 'destroy', args: [v] })), weight: 1 },
  );

  target('RawSocket methods with any arguments', async (tick) => {
    const problems = new Problems();
    let raw: RawSocket | undefined;
    let closed = true;
    let destroyedWith: unknown = undefined;
    let lastOps: Op[] = [];
    const open = async () => {
      let connected = false;
      closed = false;
      destroyedWith = undefined;
      lastOps = [];
      raw = layers.emulate.connectRaw(
        { host: '127.0.0.1', port: echo.port },
        {
          onconnect: (err) => {
            if (err) problems.check('raw onconnect(err)', lastOps.slice(-3), err);
            else connected = true;
          },
          onclose: (err) => {
            closed = true;
            if (err && err !== destroyedWith) problems.check('raw onclose(err)', lastOps.slice(-3), err);
          },
        },
      );
      await settle(() => connected || closed, 2000);
    };
    await fc.assert(
      fc.asyncProperty(rawOp, async (op) => {
        tick();
        if (closed) await open();
        lastOps.push(op);
        if (op.m === 'destroy') destroyedWith = op.args[0];
        try {
          (raw as unknown as Record<string, (...a: unknown[]) => unknown>)[op.m]!(...op.args);
        } catch (err) {
          problems.check(`raw.${op.m}() threw`, op, err);
        }
        if (op.m === 'end') raw!.destroy();
        if (op.m === 'end' || op.m === 'destroy') await settle(() => closed, 2000);
      }),
      params(undefined, [[{ m: 'write', args: [detachedView(16, 'dv')] }], [{ m: 'writev', args: [[detachedView(8, 'dv')]] }]]),
    );
    if (raw && !closed) {
      raw.destroy();
      await settle(() => closed, 2000);
    }
    if (!(await settle(() => layers.emulate.size === 0, 2000))) problems.add(`layer holds raw sockets after every one was closed (size ${layers.emulate.size})`);
    problems.expectNone();
    proc.expectNone();
  });

  target('descriptors back to baseline after the socket targets', async (tick) => {
    tick();
    await settle(() => fdCount() <= baselineFds, 2000);
    expect(fdCount()).toBeLessThanOrEqual(baselineFds);
  });
});
