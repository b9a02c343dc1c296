/**
 * Fuzzes the layer's entry points: the constructor (each option), connect()/createConnection() in every
 * argument form with every option, and connectRaw(options, handlers). For every input: no crash, every
 * failure coded (thrown, 'error' event, handler error), and afterwards nothing left open — the layer's size and
 * usage().socketsOpen back to 0 after each input, and the process's descriptors back to baseline at the end.
 *
 * Connections go to a loopback port where nothing listens (refused at once, no TIME_WAIT), sometimes to a
 * loopback echo server; names resolve through an instant resolver, never DNS.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import type { Socket } from '../../src/tcp/socket.js';
import { echoServer, fdCount, freePort, type Peer } from '../helpers.js';
import { Problems, UserError, anyNumber, deepArray, hostileProxy, mostly, params, settle, target, throwingGetters, watchProcess, wild } from './common.js';

const proc = watchProcess();

/** Lets 127.0.0.1 through, as an operator policy would, without development mode's warnings. */
const loopbackOnly = { version: 1, allow: [{ cidr: '127.0.0.1/32', openSpecialPurpose: true }] };
const resolver = async () => [{ address: '127.0.0.1', family: 4 as const }];

// Built before the arbitraries below, which name these ports.
const echo: Peer = await echoServer();
const closedPort = await freePort();
let layer: SocketLayer;
let baselineFds: number;

beforeAll(async () => {
  layer = new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0, resolver });
  // Warm up: the native loop's own descriptors exist from the first socket on.
  const s = layer.connect(closedPort, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('close', r));
  baselineFds = fdCount();
});

afterAll(async () => {
  await layer.close();
  await echo.close();
});

const CONNECT_KEYS = [
  'host', 'port', 'path', 'timeout', 'connectTimeout', 'family', 'localAddress', 'localPort', 'lookup', 'signal', 'highWaterMark',
  'readableHighWaterMark', 'writableHighWaterMark', 'noDelay', 'keepAlive', 'keepAliveInitialDelay', 'allowHalfOpen',
] as const;

const port = () => fc.oneof({ arbitrary: fc.constant(closedPort), weight: 6 }, { arbitrary: fc.constant(echo.port), weight: 1 }, { arbitrary: fc.constant(String(closedPort)), weight: 1 });
const host = fc.constantFrom('127.0.0.1', 'example.com', 'localhost', '::1', '10.0.0.1', '0x7f.1', '[::1]', '');
const lookups = fc.constantFrom<(...a: any[]) => void>(
  (_h, _o, cb) => cb(null, '127.0.0.1', 4),
  (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
  (_h, _o, cb) => cb(null, [null]),
  (_h, _o, cb) => setImmediate(cb, null, [null]),
  (_h, _o, cb) => setImmediate(cb, null, [{ address: Object.create(null), family: 4 }]),
  (_h, _o, cb) => cb(null, 5),
  (_h, _o, cb) => cb(null, undefined),
  (_h, _o, cb) => cb(new UserError('lookup failed')),
  () => {
    throw new UserError('lookup threw');
  },
);
const signal = fc.constantFrom('aborted', 'live', 'abort-soon').map((kind) => {
  if (kind === 'aborted') return AbortSignal.abort();
  const ac = new AbortController();
  if (kind === 'abort-soon') setImmediate(() => ac.abort());
  return ac.signal;
});
const smallMs = fc.integer({ min: 0, max: 50 });

const connectOptions = fc.record(
  {
    host: mostly(host, 4),
    port: mostly(port(), 6),
    path: wild,
    timeout: mostly(smallMs),
    connectTimeout: mostly(smallMs),
    family: mostly(fc.constantFrom(0, 4, 6)),
    localAddress: mostly(fc.constantFrom('0.0.0.0', '::', '', '127.0.0.1')),
    localPort: mostly(fc.constantFrom(0, 1, 8080)),
    lookup: mostly(lookups),
    signal: mostly(signal),
    highWaterMark: mostly(fc.integer({ min: 0, max: 1 << 20 })),
    readableHighWaterMark: mostly(fc.integer({ min: 0, max: 1 << 20 })),
    writableHighWaterMark: mostly(fc.integer({ min: 0, max: 1 << 20 })),
    noDelay: mostly(fc.boolean()),
    keepAlive: mostly(fc.boolean()),
    keepAliveInitialDelay: mostly(fc.integer({ min: 0, max: 10_000 })),
    allowHalfOpen: mostly(fc.boolean()),
  },
  // Every other key is absent in about half the inputs, so each option is also fuzzed (nearly) alone.
  { requiredKeys: ['port'] },
);

const noop = () => {};
const deepArrayExample = deepArray(10_000);
const connectArgs = fc.oneof(
  { arbitrary: fc.tuple(connectOptions).map(([o]) => [o] as unknown[]), weight: 4 },
  { arbitrary: fc.tuple(connectOptions).map(([o]) => [o, noop] as unknown[]), weight: 1 },
  { arbitrary: fc.tuple(mostly(port(), 3), mostly(host, 3)).map(([p, h]) => [p, h] as unknown[]), weight: 2 },
  { arbitrary: fc.tuple(mostly(port(), 3), mostly(host, 3)).map(([p, h]) => [p, h, noop] as unknown[]), weight: 1 },
  { arbitrary: fc.tuple(mostly(port(), 3)).map(([p]) => [p, noop] as unknown[]), weight: 1 },
  { arbitrary: fc.array(wild, { maxLength: 4 }), weight: 3 },
  { arbitrary: fc.constantFrom([], [hostileProxy], [throwingGetters(CONNECT_KEYS)], [Object.defineProperties({ port: 1 }, { signal: { get: () => { throw new UserError('getter signal'); }, enumerable: true } })]), weight: 1 },
);

/** After one input: the socket (if any) closes, and the layer holds nothing. */
async function drained(problems: Problems, input: unknown): Promise<void> {
  if (!(await settle(() => layer.size === 0 && layer.usage().socketsOpen === 0, 1000))) {
    problems.add(`a socket stays admitted after the input failed or was closed (size ${layer.size}, socketsOpen ${layer.usage().socketsOpen})`, input);
    // Clean up so the next inputs are judged on their own.
    await layer.close();
    layer = new SocketLayer({ policy: loopbackOnly, idleTimeoutMs: 0, resolver });
  }
}

describe('SocketLayer entry points', () => {
  target('new SocketLayer(options) with any value per option', async (tick) => {
    const problems = new Problems();
    const KEYS = ['appId', 'policy', 'idleTimeoutMs', 'sweepIntervalMs', 'sockopts', 'quotas', 'secret', 'resolver', 'highWaterMark'];
    const options = fc.oneof(
      { arbitrary: fc.constantFrom(...KEYS).chain((k) => wild.map((v) => ({ [k]: typeof v === 'string' && k === 'policy' ? `./no-such-dir/${v}` : v }))), weight: 4 },
      {
        arbitrary: fc.record({
          appId: mostly(fc.string({ minLength: 1, maxLength: 5 })),
          policy: mostly(fc.constantFrom('production', 'development', loopbackOnly)),
          idleTimeoutMs: mostly(fc.integer({ min: 0, max: 1e6 })),
          sweepIntervalMs: mostly(fc.integer({ min: 1, max: 1e4 })),
          sockopts: mostly(fc.constantFrom('emulate', 'native')),
          quotas: mostly(fc.constantFrom('app-engine', { perMinute: { connects: 5 } }, { perDay: { bytesSent: Infinity } })),
          resolver: mostly(fc.constant(resolver)),
          highWaterMark: mostly(fc.integer({ min: 1, max: 2 ** 30 })),
        }, { requiredKeys: [] }).map((o) => (typeof o.policy === 'string' && o.policy !== 'production' && o.policy !== 'development' ? { ...o, policy: `./no-such-dir/${o.policy}` } : o)),
        weight: 2,
      },
      { arbitrary: wild, weight: 1 },
    );
    await fc.assert(
      fc.asyncProperty(options, async (o) => {
        tick();
        let l: SocketLayer | undefined;
        try {
          l = new SocketLayer(o as never);
        } catch (err) {
          problems.check('constructor threw', o, err);
          return;
        }
        try {
          await l.close();
        } catch (err) {
          problems.check('close() rejected', o, err);
        }
      }),
      params(undefined, [[{ idleTimeoutMs: Object.create(null) }], [{ highWaterMark: Object.create(null) }], [{ sweepIntervalMs: deepArrayExample }]]),
    );
    problems.expectNone();
    proc.expectNone();
  });

  for (const method of ['connect', 'createConnection'] as const) {
    target(`layer.${method}(...args) in every form, every option`, async (tick) => {
      const problems = new Problems();
      // Sockets are awaited in batches, so their connection attempts overlap; a refused input is judged at once
      // (the layer's size must not grow when a call throws).
      let batch: Array<{ input: unknown; done: Promise<void> }> = [];
      const flush = async () => {
        const waiting = batch;
        batch = [];
        await Promise.all(waiting.map((w) => w.done));
        await drained(problems, waiting.map((w) => w.input).slice(0, 3));
      };
      await fc.assert(
        fc.asyncProperty(connectArgs, async (args) => {
          tick();
          const input = [...args];
          const before = layer.size;
          const created = layer.usage().socketsCreated;
          let s: Socket | undefined;
          try {
            s = (layer[method] as (...a: unknown[]) => Socket)(...args);
          } catch (err) {
            problems.check(`${method}() threw`, input, err);
            if (layer.size !== before || layer.usage().socketsCreated !== created) problems.add(`${method}() threw but left a socket admitted`, input);
            return;
          }
          const sock = s;
          const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
          sock.on('error', (err) => problems.check(`${method}() 'error' event`, input, err));
          sock.once('connect', () => sock.destroy());
          const done = Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(r, 300, false))]).then(async (ok) => {
            if (ok) return;
            sock.destroy();
            await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
          });
          batch.push({ input, done });
          if (batch.length >= 64) await flush();
        }),
        params(undefined, [[[{ port: closedPort, host: '127.0.0.1', localPort: Object.create(null) }]], [[{ port: closedPort, host: '127.0.0.1', path: Object.create(null) }]]]),
      );
      await flush();
      problems.expectNone();
      proc.expectNone();
    });
  }

  target('layer.connectRaw(options, handlers)', async (tick) => {
    const problems = new Problems();
    const rawOptions = fc.oneof(
      {
        arbitrary: fc.record(
          { host: mostly(host, 4), port: mostly(port(), 6), family: mostly(fc.constantFrom(0, 4, 6)), connectTimeout: mostly(smallMs), highWaterMark: mostly(fc.integer({ min: 1, max: 1 << 20 })) },
          { requiredKeys: [] },
        ),
        weight: 5,
      },
      { arbitrary: wild, weight: 2 },
      { arbitrary: fc.constantFrom({ port: closedPort, highWaterMark: 'abc' }, { port: closedPort, connectTimeout: -1 }, { port: closedPort, connectTimeout: NaN }, hostileProxy), weight: 1 },
    );
    const handlerKind = fc.constantFrom('recording', 'recording', 'recording', 'null', 'undefined', 'empty', 'wild');
    await fc.assert(
      fc.asyncProperty(rawOptions, handlerKind, wild, async (options, kind, other) => {
        tick();
        const input = [options, kind === 'wild' ? other : kind];
        let closed = false;
        const recording = {
          onconnect(err: Error | null) {
            if (err) problems.check("connectRaw onconnect(err)", input, err);
            else raw?.destroy();
          },
          onclose(err: Error | null) {
            closed = true;
            if (err) problems.check('connectRaw onclose(err)', input, err);
          },
        };
        const handlers = kind === 'recording' ? recording : kind === 'null' ? null : kind === 'undefined' ? undefined : kind === 'empty' ? {} : other;
        let raw: { destroy(): void } | undefined;
        try {
          raw = (layer.connectRaw as (...a: unknown[]) => { destroy(): void })(options, handlers);
        } catch (err) {
          problems.check('connectRaw() threw', input, err);
          await drained(problems, input);
          return;
        }
        if (kind === 'recording') await settle(() => closed, 300);
        else await settle(() => layer.size === 0, 50);
        try {
          raw.destroy();
        } catch (err) {
          problems.check('raw.destroy() threw', input, err);
        }
        await drained(problems, input);
      }),
      params(undefined, [[{ host: '127.0.0.1', port: closedPort, highWaterMark: 'abc' }, 'recording', undefined], [{ host: '127.0.0.1', port: closedPort, highWaterMark: Object.create(null) }, 'recording', undefined]]),
    );
    problems.expectNone();
    proc.expectNone();
  });

  target('descriptors back to baseline after the layer targets', async (tick) => {
    tick();
    await settle(() => fdCount() <= baselineFds, 2000);
    expect(fdCount()).toBeLessThanOrEqual(baselineFds);
  });
});

void anyNumber;
