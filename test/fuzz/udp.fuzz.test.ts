/**
 * Fuzzes UDP: layer.createSocket() with any type, options and listener, and every UdpSocket method with
 * hostile arguments (bind/connect/send/setsockopt/getsockopt/address/… ), one call per input on a socket that
 * lives until a call closes it. Datagrams go to loopback only (a port where nothing listens); names resolve
 * through an instant resolver. Every failure must be coded (thrown, 'error' event, send or connect callback), a
 * refused createSocket() must admit nothing, and at the end nothing is open.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import type { UdpSocket } from '../../src/udp/socket.js';
import { constants as C } from '../../src/service/sockopts.js';
import { fdCount } from '../helpers.js';
import { Problems, anyNumber, detachedView, hostileProxy, mostly, params, settle, target, throwingGetters, watchProcess, wild } from './common.js';

const proc = watchProcess();

const loopbackOnly = { version: 1, allow: [{ cidr: '127.0.0.1/32', openSpecialPurpose: true }] };
const resolver = async () => [{ address: '127.0.0.1', family: 4 as const }];
const layers = {
  emulate: new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0, resolver }),
  native: new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0, resolver, sockopts: 'native' }),
};
/** A UDP port on loopback where nothing listens (the kernel just drops what arrives). */
const NOWHERE = 9;
let baselineFds = 0;

beforeAll(async () => {
  const s = layers.emulate.createSocket('udp4');
  s.bind();
  await new Promise((r) => s.once('listening', r));
  s.close();
  await new Promise((r) => s.once('close', r));
  baselineFds = fdCount();
});

afterAll(async () => {
  await layers.emulate.close();
  await layers.native.close();
});

const host = fc.constantFrom('127.0.0.1', 'example.com', 'localhost', '::1', '10.0.0.1', '', '0.0.0.0', '::');
const port = fc.oneof(fc.constant(NOWHERE), fc.constantFrom(0, 1, 65535, 65536, -1, '9', ' 9 ', '', 'x'));
const msg = fc.oneof(
  { arbitrary: wild, weight: 3 },
  { arbitrary: fc.constantFrom('abc', '', Buffer.from('x'), [], ['a', Buffer.from('b')], [1], detachedView(0), detachedView(16), new DataView(new ArrayBuffer(4))), weight: 3 },
  { arbitrary: fc.uint8Array({ maxLength: 32 }), weight: 1 },
);
const cb = fc.oneof(fc.constant('cb'), fc.constant(undefined), wild);
const levelName = fc.oneof(
  fc.constantFrom([C.SOL_SOCKET, C.SO_LINGER], [C.SOL_SOCKET, C.SO_SNDBUF], [C.SOL_SOCKET, C.SO_RCVBUF], [C.SOL_SOCKET, C.SO_ERROR], [C.SOL_SOCKET, C.SO_REUSEADDR]),
  fc.tuple(mostly(fc.integer({ min: -1, max: 20 })), mostly(fc.integer({ min: -1, max: 20 }))),
);

type Op = { m: string; args: unknown[] };

const udpOp: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.array(fc.oneof(mostly(port), mostly(host), cb, wild), { maxLength: 3 }).map((args) => ({ m: 'bind', args })), weight: 2 },
  { arbitrary: fc.tuple(fc.record({ port: mostly(port), address: mostly(host), exclusive: wild, fd: wild }, { requiredKeys: [] }), cb).map(([o, c]) => ({ m: 'bind', args: [o, c] })), weight: 1 },
  { arbitrary: fc.tuple(mostly(port, 3), mostly(host, 3), cb).map(([p, h, c]) => ({ m: 'connect', args: [p, h, c] })), weight: 2 },
  { arbitrary: fc.tuple(msg, mostly(port, 3), mostly(host, 3), cb).map(([b, p, h, c]) => ({ m: 'send', args: [b, p, h, c] })), weight: 6 },
  { arbitrary: fc.tuple(msg, mostly(fc.nat({ max: 8 })), mostly(fc.nat({ max: 8 })), mostly(port, 3), mostly(host, 3), cb).map((a) => ({ m: 'send', args: a as unknown[] })), weight: 3 },
  { arbitrary: fc.tuple(msg, cb).map(([b, c]) => ({ m: 'send', args: [b, c] })), weight: 1 },
  { arbitrary: fc.array(wild, { maxLength: 6 }).map((args) => ({ m: 'send', args })), weight: 2 },
  { arbitrary: fc.tuple(levelName, fc.oneof(wild, anyNumber, fc.record({ onoff: mostly(fc.boolean()), linger: mostly(fc.integer({ min: -1, max: 70_000 })) }))).map(([[l, n], v]) => ({ m: 'setsockopt', args: [l, n, v] })), weight: 3 },
  { arbitrary: fc.tuple(levelName, fc.oneof(fc.constant(undefined), mostly(fc.nat({ max: 16 })))).map(([[l, n], b]) => ({ m: 'getsockopt', args: [l, n, b] })), weight: 2 },
  {
    arbitrary: fc
      .tuple(
        fc.constantFrom(
          'setRecvBufferSize', 'setSendBufferSize', 'setTTL', 'setBroadcast', 'setMulticastTTL', 'setMulticastLoopback', 'setMulticastInterface',
          'addMembership', 'dropMembership', 'addSourceSpecificMembership', 'dropSourceSpecificMembership',
        ),
        fc.array(mostly(anyNumber), { maxLength: 3 }),
      )
      .map(([m, args]) => ({ m, args })),
    weight: 3,
  },
  {
    arbitrary: fc
      .tuple(fc.constantFrom('address', 'remoteAddress', 'disconnect', 'ref', 'unref', 'getRecvBufferSize', 'getSendBufferSize', 'getSendQueueSize', 'getSendQueueCount'), fc.array(wild, { maxLength: 1 }))
      .map(([m, args]) => ({ m, args })),
    weight: 4,
  },
  { arbitrary: fc.tuple(cb).map(([c]) => ({ m: 'close', args: [c] })), weight: 1 },
);

const createArgs = fc.oneof(
  { arbitrary: fc.tuple(fc.constantFrom('udp4', 'udp6'), fc.oneof(fc.constant(undefined), wild)), weight: 2 },
  {
    arbitrary: fc.tuple(
      fc.record(
        {
          type: mostly(fc.constantFrom('udp4', 'udp6'), 4),
          recvBufferSize: mostly(fc.integer({ min: 1, max: 1 << 20 })),
          sendBufferSize: mostly(fc.integer({ min: 1, max: 1 << 20 })),
          signal: mostly(fc.constantFrom('aborted', 'live').map((k) => (k === 'aborted' ? AbortSignal.abort() : new AbortController().signal))),
          reuseAddr: wild,
          ipv6Only: wild,
          lookup: wild,
        },
        { requiredKeys: ['type'] },
      ),
      fc.oneof(fc.constant(undefined), fc.constant(() => {}), wild),
    ),
    weight: 4,
  },
  { arbitrary: fc.tuple(wild, wild), weight: 2 },
  { arbitrary: fc.constantFrom([{ type: 'udp4', signal: 'x' }, undefined], [hostileProxy, undefined], [throwingGetters(['signal', 'recvBufferSize', 'sendBufferSize']), undefined]), weight: 1 },
);

describe('UDP', () => {
  target('layer.createSocket(type | options, listener)', async (tick) => {
    const problems = new Problems();
    const layer = layers.emulate;
    await fc.assert(
      fc.asyncProperty(createArgs, async ([type, listener]) => {
        tick();
        const input = [type, listener];
        const created = layer.usage().socketsCreated;
        let s: UdpSocket | undefined;
        try {
          s = (layer.createSocket as (...a: unknown[]) => UdpSocket)(type, listener);
        } catch (err) {
          problems.check('createSocket() threw', input, err);
          if (layer.size !== 0 || layer.usage().socketsOpen !== 0 || layer.usage().socketsCreated !== created) {
            problems.add('a refused createSocket() left a socket admitted (size, socketsOpen or socketsCreated raised)', input);
            await layer.close();
            layers.emulate = new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0, resolver });
          }
          return;
        }
        let closed = false;
        s.on('error', (err) => problems.check("createSocket() 'error' event", input, err));
        s.on('close', () => {
          closed = true;
        });
        s.bind();
        await new Promise((r) => setImmediate(r));
        try {
          s.close();
        } catch (err) {
          problems.check('close() threw', input, err);
        }
        if (!(await settle(() => closed && layer.size === 0, 1000))) problems.add(`socket not released after close (size ${layer.size})`, input);
      }),
      params(),
    );
    problems.expectNone();
    proc.expectNone();
  });

  target('UdpSocket methods with any arguments', async (tick) => {
    const problems = new Problems();
    let s: UdpSocket | undefined;
    let closed = true;
    let mode: 'emulate' | 'native' = 'emulate';
    let lastOps: Op[] = [];
    const open = () => {
      mode = mode === 'emulate' ? 'native' : 'emulate';
      const sock = layers[mode].createSocket(lastOps.length % 2 === 0 ? 'udp4' : 'udp6');
      closed = false;
      lastOps = [];
      sock.on('error', (err) => problems.check(`'error' event (${mode})`, lastOps.slice(-3), err));
      sock.on('close', () => {
        closed = true;
      });
      sock.on('message', () => {});
      s = sock;
    };
    await fc.assert(
      fc.asyncProperty(udpOp, async (op) => {
        tick();
        if (closed) open();
        const sock = s!;
        lastOps.push(op);
        const args = op.args.map((a) =>
          a === 'cb'
            ? (err?: unknown) => {
                if (err) problems.check(`${op.m} callback(err)`, op, err);
              }
            : a,
        );
        let threw = false;
        try {
          (sock as unknown as Record<string, (...a: unknown[]) => unknown>)[op.m]!(...args);
        } catch (err) {
          threw = true;
          problems.check(`${op.m}() threw (${mode})`, op, err);
        }
        if (op.m === 'close' && !threw && !(await settle(() => closed, 2000))) problems.add("close() did not emit 'close'", op);
        // Resolutions and sends complete within a turn or two.
        await new Promise((r) => setImmediate(r));
      }),
      params(),
    );
    if (s && !closed) {
      s.close();
      await settle(() => closed, 2000);
    }
    for (const [name, l] of Object.entries(layers)) {
      if (!(await settle(() => l.size === 0 && l.usage().socketsOpen === 0, 2000))) problems.add(`${name} layer holds UDP sockets after every one was closed (size ${l.size})`);
    }
    problems.expectNone();
    proc.expectNone();
  });

  target('descriptors back to baseline after the UDP targets', async (tick) => {
    tick();
    await settle(() => fdCount() <= baselineFds, 2000);
    expect(fdCount()).toBeLessThanOrEqual(baselineFds);
  });
});
