/**
 * Shared pieces of the fuzz suites: hostile argument generators, the "every failure carries a code" oracle, a
 * process-wide watch for uncaught exceptions and unhandled rejections, and per-target run accounting.
 *
 * Runs per target come from SOCKGUARD_FUZZ_RUNS (small by default, so the folder stays a quick CI step);
 * `npm run fuzz` raises it to a million. With SOCKGUARD_FUZZ_REPORT set, each target appends one JSON line
 * `{ target, runs, ms, ok }` to that file, which scripts/fuzz.mjs turns into its summary table.
 */
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';

export const RUNS = Math.max(1, Number(process.env.SOCKGUARD_FUZZ_RUNS) || 150);
/** A target's time budget: generous for the long run, bounded in CI. */
export const TIMEOUT = Math.max(60_000, RUNS * 25);
/** fast-check seed, printed on failure; fixed with SOCKGUARD_FUZZ_SEED to replay a run. */
export const SEED = process.env.SOCKGUARD_FUZZ_SEED ? Number(process.env.SOCKGUARD_FUZZ_SEED) : undefined;

/** Thrown by the hostile getters, proxies and conversions below: the caller's own error, passed through as is. */
export class UserError extends Error {
  constructor(what: string) {
    super(`fuzz: ${what}`);
  }
}

/** True when `err` is acceptable for a user to see: an Error with a string `code`, or the caller's own error. */
export function isCoded(err: unknown): boolean {
  if (err instanceof UserError) return true;
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
}

/** A short, never-throwing description of a generated value for failure reports. */
export function show(v: unknown, max = 300): string {
  let s: string;
  try {
    s = fc.stringify(v);
  } catch {
    s = Object.prototype.toString.call(v);
  }
  return s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s;
}

export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.constructor.name}(code=${String((err as { code?: unknown }).code)}): ${err.message.slice(0, 200)}`;
  return `non-Error ${show(err, 100)}`;
}

/**
 * Collects failures, including those reported later than the call that caused them (events, callbacks,
 * promises). Failures are grouped by kind, each with the first input that showed it, so one run lists every
 * distinct defect instead of stopping at the first.
 */
export class Problems {
  readonly kinds = new Map<string, { input: string; count: number }>();
  /** Records `err` if it is not acceptable. */
  check(where: string, input: unknown, err: unknown): void {
    if (!isCoded(err)) this.add(`${where}: uncoded ${describeError(err)}`, input);
  }
  add(kind: string, input?: unknown): void {
    const k = kind.replace(/\d{3,}/g, 'N');
    const seen = this.kinds.get(k);
    if (seen) seen.count++;
    else this.kinds.set(k, { input: input === undefined ? '' : show(input), count: 1 });
  }
  /** Runs `fn`; a synchronous throw must be coded. Returns fn's result, or undefined when it threw. */
  call<T>(where: string, input: unknown, fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      this.check(where, input, err);
      return undefined;
    }
  }
  get size(): number {
    return this.kinds.size;
  }
  report(): string {
    return [...this.kinds].map(([k, v]) => `${k} (×${v.count}) e.g. ${v.input}`).join('\n');
  }
  expectNone(): void {
    expect(this.kinds.size, this.report()).toBe(0);
  }
}

/**
 * Catches uncaught exceptions and unhandled rejections for the whole file: each test asserts that none
 * happened during its run (and the last one also after it, once pending work had a moment to settle).
 */
export function watchProcess(): { readonly seen: unknown[]; expectNone(): void } {
  const seen: unknown[] = [];
  const onError = (err: unknown) => {
    seen.push(err);
  };
  beforeAll(() => {
    process.on('uncaughtException', onError);
    process.on('unhandledRejection', onError);
  });
  afterAll(async () => {
    await new Promise((r) => setTimeout(r, 20));
    process.removeListener('uncaughtException', onError);
    process.removeListener('unhandledRejection', onError);
    expect(seen.map(describeError)).toEqual([]);
  });
  return {
    seen,
    expectNone() {
      expect(seen.map(describeError)).toEqual([]);
    },
  };
}

/**
 * A fuzz target: a vitest test that counts its inputs (`tick()` once per input) and records runs and time in
 * the report file when one is configured.
 */
export function target(name: string, body: (tick: () => void) => Promise<void> | void): void {
  it(
    name,
    async () => {
      let runs = 0;
      const tick = () => {
        runs++;
      };
      const started = performance.now();
      let ok = false;
      try {
        await body(tick);
        ok = true;
      } finally {
        const file = process.env.SOCKGUARD_FUZZ_REPORT;
        if (file) {
          appendFileSync(file, `${JSON.stringify({ target: name, runs, ms: Math.round(performance.now() - started), ok })}\n`);
        }
      }
    },
    TIMEOUT,
  );
}

/** fast-check parameters shared by every target. */
export function params(runs = RUNS, examples: unknown[][] = []): fc.Parameters<unknown> {
  // Examples (inputs that once showed a defect) run first, on every run, so a short CI run catches them too.
  return { numRuns: runs, seed: SEED, endOnFailure: true, maxSkipsPerRun: 1000, examples } as fc.Parameters<unknown>;
}

// ------------------------------------------------------------------------------------------------ values

const throwing = (what: string) => () => {
  throw new UserError(what);
};

/**
 * Every trap throws: reading, testing or listing any property fails with the caller's error. Symbol keys are
 * answered (absent), so the test framework itself can still inspect the value.
 */
export const hostileProxy = new Proxy(
  {},
  {
    get: (_t, key) => {
      if (typeof key === 'symbol') return undefined;
      throw new UserError('proxy get');
    },
    has: (_t, key) => {
      if (typeof key === 'symbol') return false;
      throw new UserError('proxy has');
    },
    ownKeys: throwing('proxy ownKeys'),
    getOwnPropertyDescriptor: throwing('proxy getOwnPropertyDescriptor'),
    getPrototypeOf: throwing('proxy getPrototypeOf'),
    set: throwing('proxy set'),
    defineProperty: throwing('proxy defineProperty'),
    deleteProperty: throwing('proxy deleteProperty'),
  },
);

/** An object whose listed (and common) keys are getters that throw. */
export function throwingGetters(keys: readonly string[]): object {
  const o: Record<string, unknown> = {};
  for (const k of new Set([...keys, 'port', 'host', 'type', 'version', 'length', 'byteLength', 'onoff', 'linger'])) {
    Object.defineProperty(o, k, { get: throwing(`getter ${k}`), enumerable: true, configurable: true });
  }
  return o;
}

/** A proxy that answers `value` for every property, including `then`, `constructor` and symbols. */
export function echoingProxy(value: unknown): object {
  return new Proxy({}, { get: () => value, has: () => true });
}

export function deepObject(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

export function deepArray(depth: number): unknown {
  let v: unknown = [];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** A view of `bytes` bytes whose buffer has been transferred away: byteLength 0, every access detached. */
export function detachedView(bytes: number, kind: 'u8' | 'buffer' | 'dv' | 'f64' = 'u8'): ArrayBufferView {
  const ab = new ArrayBuffer(Math.max(bytes, kind === 'f64' ? 8 : 0));
  const view = kind === 'u8' ? new Uint8Array(ab) : kind === 'buffer' ? Buffer.from(ab) : kind === 'dv' ? new DataView(ab) : new Float64Array(ab);
  structuredClone(ab, { transfer: [ab] });
  return view;
}

const cyclic: Record<string, unknown> = { a: 1 };
cyclic.self = cyclic;

export const SPECIAL_NUMBERS = [
  0, -0, 1, -1, 2, 7, 13, 80, 255, 256, 1023, 65535, 65536, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 2 ** 32, 2 ** 32 + 1,
  2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, Number.EPSILON, 0.5, 1.5,
  -1.5, 1e-300, 1e21, NaN, Infinity, -Infinity,
];

export const SPECIAL_STRINGS = [
  '', ' ', '0', '1', '-1', '80', '65535', '65536', '1e3', '0x50', '0o7', ' 80 ', '80.0', 'NaN', 'Infinity', 'abc', 'udp4', 'udp6',
  'udp', 'tcp', 'unix_dgram', 'localhost', '127.0.0.1', '::1', '[::1]', '0.0.0.0', '::', '10.0.0.1', '256.1.1.1', 'a'.repeat(300),
  'a'.repeat(70_000), '\u0000', '\ud800', '%', 'production', 'development', 'emulate', 'native', 'app-engine', 'utf8', 'hex',
  'base64', 'latin1', 'ucs2', 'bogus-encoding', '__proto__', 'constructor', 'toString', '/dev/null', '.', '..', '/',
];

/** Values built once: reused across runs (none of them is mutated by the code under test). */
function specialObjects(): unknown[] {
  const ac = new AbortController();
  return [
    undefined,
    null,
    true,
    false,
    Symbol('fuzz'),
    10n,
    -1n,
    2n ** 64n,
    () => {},
    async () => {},
    function named() {
      return 1;
    },
    [],
    [1],
    [undefined],
    [null],
    ['a', 'b'],
    [1, 'a', {}],
    new Array(5),
    {},
    Object.create(null),
    Object.assign(Object.create(null), { port: 80 }),
    { port: 80 },
    { valueOf: () => 80 },
    { toString: () => '80' },
    { toString: throwing('toString'), valueOf: throwing('valueOf') },
    { [Symbol.toPrimitive]: throwing('toPrimitive') },
    { length: -1 },
    { length: 2 ** 32 },
    { byteLength: 10, buffer: null },
    { onoff: 1, linger: 2 ** 40 },
    { onoff: 1, linger: 65536 },
    { onoff: 1, linger: -1 },
    { onoff: true, linger: 5 },
    { onoff: NaN, linger: 0 },
    { then: () => {} },
    cyclic,
    new Date(NaN),
    new Date(0),
    /re/g,
    new Number(5),
    new String('80'),
    new Boolean(false),
    new Error('plain error'),
    new TypeError('plain type error'),
    Buffer.alloc(0),
    Buffer.from('abc'),
    Buffer.alloc(8),
    Buffer.alloc(70_000),
    new Uint8Array(4),
    new Uint16Array(3),
    new Float64Array(1),
    new BigInt64Array(1),
    new DataView(new ArrayBuffer(8)),
    new DataView(new ArrayBuffer(8), 7, 1),
    new ArrayBuffer(8),
    new SharedArrayBuffer(8),
    detachedView(0),
    detachedView(16),
    detachedView(16, 'buffer'),
    detachedView(8, 'dv'),
    detachedView(8, 'f64'),
    new Map([['port', 80]]),
    new Set([1]),
    new WeakMap(),
    Promise.resolve(1),
    AbortSignal.abort(),
    AbortSignal.abort(new UserError('abort reason')),
    ac.signal,
    hostileProxy,
    echoingProxy(80),
    echoingProxy('abc'),
    echoingProxy(hostileProxy),
    throwingGetters([]),
    deepObject(10_000),
    deepArray(10_000),
    globalThis,
    process,
  ];
}

const SPECIALS = specialObjects();

/** One of the hand-picked hostile values. */
export const special: fc.Arbitrary<unknown> = fc.constantFrom(...SPECIALS, ...SPECIAL_NUMBERS, ...SPECIAL_STRINGS);

/**
 * Strings of any UTF-16 code units, lone surrogates included. Built from integers: fast-check's own
 * full-Unicode string arbitraries take seconds to construct in every test process.
 */
export function anyString(maxLength: number): fc.Arbitrary<string> {
  return fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength }).map((units) => String.fromCharCode(...units));
}

/** Any number, weighted towards the edges. */
export const anyNumber: fc.Arbitrary<number> = fc.oneof(
  { arbitrary: fc.constantFrom(...SPECIAL_NUMBERS), weight: 3 },
  { arbitrary: fc.integer({ min: -70_000, max: 70_000 }), weight: 2 },
  { arbitrary: fc.integer(), weight: 1 },
  { arbitrary: fc.double(), weight: 1 },
);

/** Anything at all: fast-check's structures, edge numbers and strings, and the hostile objects above. */
export const wild: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: special, weight: 5 },
  { arbitrary: anyNumber, weight: 2 },
  { arbitrary: fc.string({ maxLength: 12 }), weight: 1 },
  { arbitrary: anyString(8), weight: 1 },
  {
    arbitrary: fc.anything({
      maxDepth: 3,
      maxKeys: 4,
      withBigInt: true,
      withBoxedValues: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withNullPrototype: true,
      withObjectString: true,
      withSparseArray: true,
      withTypedArray: true,
      // Not withUnicodeString: building that arbitrary takes seconds per process; anyString covers every
      // code point.
    }),
    weight: 2,
  },
);

/** A value that is usually valid (from `valid`) and otherwise anything. */
export function mostly<T>(valid: fc.Arbitrary<T>, weight = 2): fc.Arbitrary<T | unknown> {
  return fc.oneof({ arbitrary: valid, weight }, { arbitrary: wild, weight: 1 });
}

/** Waits until `cond()` holds or `ms` passes; returns whether it held. */
export async function settle(cond: () => boolean, ms = 2000): Promise<boolean> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) return false;
    await new Promise((r) => setImmediate(r));
  }
  return true;
}
