/**
 * Every export of the native binding, called with arbitrary values: wrong types, NaN, infinities, huge and
 * negative numbers, sparse arrays with 2^32-1 elements, detached and odd-sized buffers, and (mixed in) values
 * that are valid, so the calls also reach the core. The oracle: the process never crashes (abort, sanitizer
 * report, signal), and every throw is a TypeError or RangeError carrying a string `code`.
 *
 * The fuzzing runs in a child process of its own: random ids close, detach and write to whatever sockets the
 * fuzzing itself opened (on loopback), and nothing else lives there.
 *
 * Runs per binding function: SOCKGUARD_FUZZ_RUNS (default 2000, a few seconds in all; `npm run fuzz` sets a
 * million). SOCKGUARD_FUZZ_SEED replays a run; with SOCKGUARD_FUZZ_REPORT set, one JSON line per function
 * `{ target, runs, ms, ok }` is appended to that file.
 */
import { expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distPath } from '../helpers.js';

const RUNS = Math.max(1, Number(process.env.SOCKGUARD_FUZZ_RUNS) || 2000);
const SEED = process.env.SOCKGUARD_FUZZ_SEED ? Number(process.env.SOCKGUARD_FUZZ_SEED) : Date.now() % 2 ** 31;
const TIMEOUT = RUNS > 20_000 ? 6 * 3600_000 : 120_000;
const distDir = dirname(distPath);
const repo = fileURLToPath(new URL('../..', import.meta.url));

const FUNCTIONS = [
  'loop_init',
  'loop_owner',
  'loop_add_chunk',
  'loop_ref',
  'loop_settle',
  'tcp_connect',
  'udp_open',
  'udp_bind',
  'udp_connect',
  'udp_disconnect',
  'udp_send',
  'socket_write',
  'socket_writev',
  'socket_flush',
  'loop_flush',
  'socket_shutdown',
  'socket_read',
  'socket_close',
  'socket_detach',
  'socket_adopt',
  'socket_name',
  'socket_so_error',
  'socket_getsockopt',
  'socket_setsockopt',
  'socket_keepalive',
  'park_take',
  'park_close',
  'park_sweep',
  'park_count',
  'park_secret',
  'tls_available',
  'tls_context',
  'tls_start',
  'tls_info',
  'tls_peer_cert',
  'tls_session',
  'tls_error',
  'layout',
] as const;

// The child: fast-check drives each function in slices, turning the event loop between slices so that what the
// calls started (connects, flushes, records) runs too.
const program = `
import fc from 'fast-check';
import { closeSync } from 'node:fs';
import net from 'node:net';
const N = await import(${JSON.stringify(join(distDir, 'core/native.js'))});
const L = await import(${JSON.stringify(join(distDir, 'core/loop.js'))});
const loop = L.getLoop();
// Ids 0..15 get a client that ignores its records (and the first counter chunk, so they may name new sockets).
const noop = () => {};
const client = { _onConnect: noop, _onData: noop, _onDgram: noop, _onEof: noop, _onError: noop, _onDrain: noop, _onShutdown: noop, _onSession: noop };
for (let i = 0; i < 16; i++) loop.open(client);
const nat = N.native();
const l = N.LAYOUT;
const runs = Number(process.env.FUZZ_RUNS);
const seed = Number(process.env.FUZZ_SEED);
const only = process.env.FUZZ_ONLY ? process.env.FUZZ_ONLY.split(',') : null;

const detached = new ArrayBuffer(16);
const detachedView = new Uint8Array(detached);
structuredClone(detached, { transfer: [detached] });
const huge = new Array(2 ** 32 - 1);
const overWritev = new Array(l.writevMax + 1);
const constants = fc.constantFrom(
  undefined, null, NaN, Infinity, -Infinity, -0, 0, 1, -1, 1.5, 4, 6, 5, 13, 65535, 65536, 2 ** 31 - 1, 2 ** 31,
  -(2 ** 31), -(2 ** 31) - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -(2 ** 53), Number.MAX_VALUE, Number.MIN_VALUE,
  '', '0', '127.0.0.1', '::1', 'x'.repeat(100000), true, false, 10n, -1n, Symbol('s'), () => 0, {}, [], huge,
  overWritev, [undefined, null], detachedView, new DataView(new ArrayBuffer(3)), new Int32Array(5),
  new Float64Array(2), new BigInt64Array(1), Buffer.alloc(0), detached, new ArrayBuffer(0), new ArrayBuffer(7),
  new SharedArrayBuffer(64), new Proxy({}, {}), new Proxy([], {}), Object.create(null), new Date(0), /x/,
);
const anyValue = fc.oneof(
  { weight: 3, arbitrary: fc.anything({ withBigInt: true, withTypedArray: true, withSparseArray: true, withBoxedValues: true, withNullPrototype: true, withMap: true, withSet: true, withDate: true }) },
  { weight: 3, arbitrary: constants },
  { weight: 2, arbitrary: fc.double() },
  { weight: 2, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 32 }) },
);
const view = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.int32Array({ maxLength: 16 }),
  fc.integer({ min: 0, max: 70000 }).map((n) => Buffer.alloc(n)),
  fc.integer({ min: 0, max: 16 }).map((n) => new DataView(new ArrayBuffer(n))),
  fc.constant(detachedView),
);
// Addresses: loopback literals, or text that is no address at all (never a routable one).
const ip = fc.oneof(fc.constantFrom('127.0.0.1', '::1', '::1%lo', '::1%99999', '127.1', ''), fc.string({ maxLength: 70 }).filter((s) => net.isIP(s.split('%')[0]) === 0));
const id = fc.integer({ min: 0, max: 15 });
const port = fc.integer({ min: 0, max: 65535 });
const family = fc.constantFrom(4, 6);
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const level = fc.constantFrom(1, 6, 0, 41);
const optname = fc.constantFrom(1, 2, 7, 8, 9, 10, 13, 20);
const hwm = fc.integer({ min: 0, max: 2 ** 20 });
const fd = fc.integer({ min: 0, max: 64 });
const buf = fc.oneof(fc.integer({ min: 0, max: 64 * 1024 }).map((n) => new ArrayBuffer(n)), fc.constant(detached));
const chunks = fc.oneof(fc.array(view, { maxLength: 8 }), fc.constant(huge), fc.constant(overWritev), fc.array(anyValue, { maxLength: 4 }));
const or = (valid) => fc.oneof({ weight: 2, arbitrary: valid }, { weight: 1, arbitrary: anyValue });
const { readFileSync } = await import('node:fs');
const certPem = readFileSync(${JSON.stringify(join(repo, 'test/fixtures/cert.pem'))}, 'latin1');
const keyPem = readFileSync(${JSON.stringify(join(repo, 'test/fixtures/key.pem'))}, 'latin1');
const context = nat.tls_context(certPem, null, null, null, null, null, 0, 0);
const pem = fc.oneof(fc.constantFrom(certPem, keyPem, certPem + keyPem, '', '-----BEGIN CERTIFICATE-----\\nxx\\n-----END CERTIFICATE-----\\n'), fc.string({ maxLength: 200 }));
const optText = fc.oneof(fc.constant(null), fc.constant(undefined), pem, fc.constantFrom('a\\u0000b', 'HIGH', 'TLS_AES_128_GCM_SHA256'));
const version = fc.constantFrom(0, 0x301, 0x303, 0x304, 0x305, -1, 2 ** 31 - 1);
const ctx = fc.oneof(fc.constant(context), fc.constant(typeof context === 'string' ? null : context));
const bytesOrNull = fc.oneof(fc.constant(null), view);

const sigs = {
  loop_init: [or(buf), or(fc.constantFrom(new Int32Array(l.recCap * l.recInts), new Int32Array(3))), or(fc.constant(() => {})), or(buf), or(fc.constant(new Int32Array(8))), or(fc.constant({})), or(fc.constantFrom(l.backends.uv, l.backends.thread, 2)), or(fc.constant(() => {}))],
  loop_owner: [anyValue],
  loop_add_chunk: [or(buf)],
  loop_ref: [or(fc.boolean())],
  loop_settle: [anyValue],
  tcp_connect: [or(id), or(family), or(ip), or(port), or(hwm)],
  udp_open: [or(id), or(family)],
  udp_bind: [or(id), or(family), or(ip), or(port)],
  udp_connect: [or(id), or(family), or(ip), or(port)],
  udp_disconnect: [or(id)],
  udp_send: [or(id), or(view), or(fc.oneof(ip, fc.constant(null))), or(port), or(fc.constantFrom(0, 4, 6))],
  socket_write: [or(id), or(view), or(fc.constantFrom(undefined, true, false))],
  socket_writev: [or(id), or(chunks), or(fc.constantFrom(undefined, true, false))],
  socket_flush: [or(id)],
  loop_flush: [anyValue],
  socket_shutdown: [or(id)],
  socket_read: [or(id), or(fc.boolean())],
  socket_close: [or(id)],
  socket_detach: [or(id)],
  socket_adopt: [or(id), or(fd), or(hwm)],
  socket_name: [or(id), or(fc.boolean())],
  socket_so_error: [or(id)],
  socket_getsockopt: [or(id), or(level), or(optname)],
  socket_setsockopt: [or(id), or(level), or(optname), or(int32)],
  socket_keepalive: [or(id), or(fc.boolean()), or(int32)],
  // park_put is left out: it takes ownership of whatever descriptor it is given, and a fuzzer would hand it this
  // process's own. The rest only ever find keys that were never parked.
  park_take: [or(fc.string({ maxLength: 80 }))],
  park_close: [or(fc.string({ maxLength: 80 }))],
  park_sweep: [anyValue],
  park_count: [anyValue],
  park_secret: [or(fc.oneof(view, fc.constant(new Uint8Array(32))))],
  tls_available: [anyValue],
  tls_context: [or(pem), or(optText), or(optText), or(optText), or(optText), or(optText), or(version), or(version)],
  tls_start: [or(id), or(ctx), or(fc.oneof(fc.constant(null), fc.string({ maxLength: 300 }))), or(bytesOrNull), or(bytesOrNull), or(hwm)],
  tls_info: [or(id)],
  tls_peer_cert: [or(id), or(int32)],
  tls_session: [or(id)],
  tls_error: [or(id)],
  layout: [anyValue],
};

// tls_start also meets connected sockets (TLS on a connected socket starts its handshake at once): before each
// of its slices, a few ids are connected afresh to a listener that reads and never answers.
const sink = net.createServer((c) => c.on('error', () => {}).resume());
await new Promise((res) => sink.listen(0, '127.0.0.1', res));
sink.unref();
async function connectSome() {
  for (let i = 0; i < 4; i++) {
    nat.socket_close(i);
    nat.tcp_connect(i, 4, '127.0.0.1', sink.address().port, 65536);
  }
  await new Promise((res) => setTimeout(res, 20));
}

const SLICE = 5000;
const report = {};
for (const [name, args] of Object.entries(sigs)) {
  if (only && !only.includes(name)) continue;
  const codes = {};
  let returned = 0;
  const started = Date.now();
  for (let done = 0, slice = 0; done < runs; slice++) {
    const n = Math.min(SLICE, runs - done);
    if (name === 'tls_start') await connectSome();
    fc.assert(
      fc.property(fc.tuple(...args), fc.integer({ min: 0, max: args.length }), (argv, cut) => {
        // Sometimes fewer arguments than declared (the rest are undefined).
        const call = cut < args.length && cut % 3 === 0 ? argv.slice(0, cut) : argv;
        let r;
        try {
          r = nat[name](...call);
        } catch (e) {
          if (!(e instanceof TypeError || e instanceof RangeError) || typeof e.code !== 'string') {
            throw new Error(name + ' threw without a code: ' + (e && e.stack));
          }
          codes[e.code] = (codes[e.code] ?? 0) + 1;
          return;
        }
        returned++;
        const t = typeof r;
        if (!(t === 'number' || t === 'boolean' || t === 'string' || t === 'object' || r === undefined)) throw new Error(name + ' returned ' + t);
        if (t === 'number' && !Number.isFinite(r)) throw new Error(name + ' returned ' + r);
        // A detached descriptor now belongs to us: close it so the run does not run out.
        if (name === 'socket_detach' && r >= 0) closeSync(r);
      }),
      { numRuns: n, seed: seed + slice, endOnFailure: true },
    );
    done += n;
    await new Promise((res) => setImmediate(res));
  }
  nat.loop_ref(false);
  report[name] = { runs, ms: Date.now() - started, returned, codes };
  console.error(name + ': ' + runs + ' runs in ' + (Date.now() - started) + ' ms');
}
for (let i = 0; i < 16; i++) nat.socket_close(i);
console.log(JSON.stringify(report));
process.exit(0);
`;

function runFuzz(only: readonly string[]): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', program], {
    cwd: repo,
    env: { ...process.env, FUZZ_RUNS: String(RUNS), FUZZ_SEED: String(SEED), FUZZ_ONLY: only.join(',') },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out, err })));
}

// Two children, each with half of the functions: the heavy run uses two cores.
const halves = [FUNCTIONS.filter((_, i) => i % 2 === 0), FUNCTIONS.filter((_, i) => i % 2 === 1)];

test(
  `every binding function, ${RUNS} arbitrary calls each (seed ${SEED}): no crash, every throw coded`,
  async () => {
    const started = Date.now();
    const results = await Promise.all(halves.map((h) => runFuzz(h)));
    const report: Record<string, { runs: number; ms: number; returned: number; codes: Record<string, number> }> = {};
    for (const r of results) {
      expect({ code: r.code, signal: r.signal, err: r.code === 0 ? '' : r.err.slice(-4000) }).toEqual({ code: 0, signal: null, err: '' });
      Object.assign(report, JSON.parse(r.out.trim().split('\n').pop()!));
    }
    expect(Object.keys(report).sort()).toEqual([...FUNCTIONS].sort());
    for (const [target, r] of Object.entries(report)) {
      expect(r.runs).toBe(RUNS);
      for (const code of Object.keys(r.codes)) expect(['ERR_INVALID_ARG_TYPE', 'ERR_OUT_OF_RANGE']).toContain(code);
      if (process.env.SOCKGUARD_FUZZ_REPORT) {
        appendFileSync(process.env.SOCKGUARD_FUZZ_REPORT, JSON.stringify({ target: `native.${target}`, runs: r.runs, ms: r.ms, ok: true }) + '\n');
      }
    }
    if (RUNS > 20_000) console.log(`native fuzz: ${RUNS} runs x ${FUNCTIONS.length} functions in ${Date.now() - started} ms`, report);
  },
  TIMEOUT,
);
