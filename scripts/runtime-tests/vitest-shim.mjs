/**
 * The part of vitest's API the core, service and policy suites use, for runtimes vitest does not run in (Bun,
 * Deno). Test files import it as 'vitest' (mapped by the runtime's resolver, see run-runtime-tests.mjs); the
 * harness then runs what they registered, one file per process, in order, with hooks and timeouts.
 *
 * Only what the suites use is here; a missing matcher throws, naming itself, rather than passing silently.
 */
import { inspect, isDeepStrictEqual } from 'node:util';

const kAsym = Symbol('asymmetric');

// ---------------------------------------------------------------------------------------------------------
// registration

const root = { name: '', tests: [], children: [], hooks: { beforeAll: [], afterAll: [], beforeEach: [], afterEach: [] }, parent: null, skip: null };
let current = root;

function addTest(name, fn, timeout, skip) {
  current.tests.push({ name, fn, timeout, skip, suite: current });
  current.children.push({ kind: 'test', index: current.tests.length - 1 });
}

function addSuite(name, fn, skip) {
  const suite = { name, tests: [], children: [], hooks: { beforeAll: [], afterAll: [], beforeEach: [], afterEach: [] }, parent: current, skip };
  current.children.push({ kind: 'suite', suite });
  const prev = current;
  current = suite;
  try {
    fn();
  } finally {
    current = prev;
  }
}

function format(name, args, index) {
  let i = 0;
  let out = String(name).replace(/%[sdijo#%]/g, (m) => {
    if (m === '%%') return '%';
    if (m === '%#') return String(index);
    const v = args[i++];
    return m === '%s' ? (typeof v === 'string' ? v : inspect(v, { depth: 1 })) : m === '%d' || m === '%i' ? String(Number(v)) : inspect(v, { depth: 1 });
  });
  if (!Array.isArray(args)) out = out.replace(/\$([A-Za-z_]\w*)/g, (_, k) => String(args[k]));
  return out;
}

function makeTest(skipDefault) {
  const t = (name, fn, timeout) => addTest(name, fn, typeof timeout === 'number' ? timeout : timeout?.timeout, skipDefault);
  t.skip = (name, fn) => addTest(name, fn, undefined, 'skipped in the source');
  t.only = t;
  t.todo = (name) => addTest(name, undefined, undefined, 'todo');
  const conditional = (name, fn) => addTest(name, fn, undefined, 'its skipIf/runIf condition excludes this runtime');
  t.skipIf = (cond) => (cond ? conditional : t);
  t.runIf = (cond) => (cond ? t : conditional);
  t.each = (rows) => (name, fn, timeout) => {
    rows.forEach((row, index) => {
      const args = Array.isArray(row) ? row : [row];
      addTest(format(name, Array.isArray(row) ? row : row, index), () => fn(...args), typeof timeout === 'number' ? timeout : undefined, skipDefault);
    });
  };
  t.concurrent = t;
  return t;
}

export const test = makeTest(null);
export const it = test;

export const describe = (name, fn) => addSuite(name, fn, null);
describe.skip = (name, fn) => addSuite(name, fn, 'skipped in the source');
describe.only = describe;
const conditionalSuite = (name, fn) => addSuite(name, fn, 'its skipIf/runIf condition excludes this runtime');
describe.skipIf = (cond) => (cond ? conditionalSuite : describe);
describe.runIf = (cond) => (cond ? describe : conditionalSuite);
describe.each = (rows) => (name, fn) => rows.forEach((row, index) => addSuite(format(name, row, index), () => fn(...(Array.isArray(row) ? row : [row])), null));
describe.concurrent = describe;

export const beforeAll = (fn, timeout) => current.hooks.beforeAll.push({ fn, timeout });
export const afterAll = (fn, timeout) => current.hooks.afterAll.push({ fn, timeout });
export const beforeEach = (fn, timeout) => current.hooks.beforeEach.push({ fn, timeout });
export const afterEach = (fn, timeout) => current.hooks.afterEach.push({ fn, timeout });

// ---------------------------------------------------------------------------------------------------------
// vi

const spies = [];
function mockFn(impl) {
  const calls = [];
  const f = function (...args) {
    calls.push(args);
    return f._impl ? f._impl.apply(this, args) : undefined;
  };
  f._impl = impl;
  f.mock = { calls };
  f.mockImplementation = (g) => ((f._impl = g), f);
  f.mockReturnValue = (v) => ((f._impl = () => v), f);
  f.mockRestore = () => {};
  f.mockClear = () => ((calls.length = 0), f);
  f[kSpy] = true;
  return f;
}
const kSpy = Symbol('spy');

export const vi = {
  fn: (impl) => mockFn(impl),
  spyOn(obj, key) {
    const original = obj[key];
    const f = mockFn(function (...args) {
      return original.apply(this, args);
    });
    f.mockRestore = () => {
      obj[key] = original;
    };
    obj[key] = f;
    spies.push(f);
    return f;
  },
  restoreAllMocks() {
    while (spies.length) spies.pop().mockRestore();
  },
};

// ---------------------------------------------------------------------------------------------------------
// expect

function asym(name, test) {
  return { [kAsym]: true, name, test, [inspect.custom]: () => name };
}

function isObj(v) {
  return v !== null && typeof v === 'object';
}

/** vitest's toEqual: recursive, undefined properties ignored, asymmetric matchers honoured. */
function equals(a, b, strict = false) {
  if (isObj(b) && b[kAsym]) return b.test(a);
  if (isObj(a) && a[kAsym]) return a.test(b);
  if (Object.is(a, b)) return true;
  if (!isObj(a) || !isObj(b)) return false;
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b) || a instanceof Date || a instanceof RegExp || a instanceof Map || a instanceof Set) {
    return isDeepStrictEqual(a, b);
  }
  if (a instanceof Error && b instanceof Error && a.message !== b.message) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!equals(a[i], b[i], strict)) return false;
    return true;
  }
  if (strict && Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    if (!strict && a[k] === undefined && b[k] === undefined) continue;
    if (strict && (k in a) !== (k in b)) return false;
    if (!equals(a[k], b[k], strict)) return false;
  }
  return true;
}

/** toMatchObject: every property of `expected` (recursively) matches. */
function matches(actual, expected) {
  if (isObj(expected) && expected[kAsym]) return expected.test(actual);
  if (!isObj(expected) || !isObj(actual)) return equals(actual, expected);
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) return false;
    return expected.every((e, i) => matches(actual[i], e));
  }
  if (ArrayBuffer.isView(expected) || expected instanceof Date) return equals(actual, expected);
  for (const k of Object.keys(expected)) {
    if (!(k in Object(actual))) return false;
    if (!matches(actual[k], expected[k])) return false;
  }
  return true;
}

function show(v) {
  return inspect(v, { depth: 4, breakLength: 120 });
}

function thrownBy(fn) {
  try {
    fn();
  } catch (err) {
    return { threw: true, err };
  }
  return { threw: false };
}

function throwMatches(err, expected) {
  if (expected === undefined) return true;
  if (typeof expected === 'function') return err instanceof expected;
  if (typeof expected === 'string') return String(err?.message ?? err).includes(expected);
  if (expected instanceof RegExp) return expected.test(String(err?.message ?? err));
  if (isObj(expected) && expected[kAsym]) return expected.test(err);
  if (expected instanceof Error) return err?.message === expected.message;
  return matches(err, expected);
}

const matchers = {
  toBe: (a, b) => [Object.is(a, b), `expected ${show(a)} to be ${show(b)}`],
  toEqual: (a, b) => [equals(a, b), `expected ${show(a)} to equal ${show(b)}`],
  toStrictEqual: (a, b) => [equals(a, b, true), `expected ${show(a)} to strictly equal ${show(b)}`],
  toMatchObject: (a, b) => [matches(a, b), `expected ${show(a)} to match ${show(b)}`],
  toContain: (a, b) => [a != null && (typeof a === 'string' ? a.includes(b) : Array.from(a).includes(b)), `expected ${show(a)} to contain ${show(b)}`],
  toContainEqual: (a, b) => [Array.from(a).some((x) => equals(x, b)), `expected ${show(a)} to contain an element equal to ${show(b)}`],
  toMatch: (a, b) => [typeof b === 'string' ? String(a).includes(b) : b.test(String(a)), `expected ${show(a)} to match ${show(b)}`],
  toBeGreaterThan: (a, b) => [a > b, `expected ${show(a)} > ${show(b)}`],
  toBeGreaterThanOrEqual: (a, b) => [a >= b, `expected ${show(a)} >= ${show(b)}`],
  toBeLessThan: (a, b) => [a < b, `expected ${show(a)} < ${show(b)}`],
  toBeLessThanOrEqual: (a, b) => [a <= b, `expected ${show(a)} <= ${show(b)}`],
  toHaveLength: (a, n) => [a != null && a.length === n, `expected length ${n}, got ${a?.length}`],
  toHaveProperty: (a, k, ...v) => {
    const path = Array.isArray(k) ? k : String(k).split('.');
    let o = a;
    for (const p of path) {
      if (o == null || !(p in Object(o))) return [false, `expected ${show(a)} to have property ${k}`];
      o = o[p];
    }
    return [v.length === 0 || equals(o, v[0]), `expected property ${k} of ${show(a)} to equal ${show(v[0])}`];
  },
  toBeInstanceOf: (a, C) => [a instanceof C, `expected ${show(a)} to be an instance of ${C?.name}`],
  toBeUndefined: (a) => [a === undefined, `expected ${show(a)} to be undefined`],
  toBeDefined: (a) => [a !== undefined, `expected a defined value`],
  toBeNull: (a) => [a === null, `expected ${show(a)} to be null`],
  toBeTruthy: (a) => [!!a, `expected ${show(a)} to be truthy`],
  toBeFalsy: (a) => [!a, `expected ${show(a)} to be falsy`],
  toBeNaN: (a) => [Number.isNaN(a), `expected ${show(a)} to be NaN`],
  toBeCloseTo: (a, b, digits = 2) => [Math.abs(a - b) < 10 ** -digits / 2, `expected ${show(a)} to be close to ${show(b)}`],
  toHaveBeenCalled: (f) => [f.mock.calls.length > 0, 'expected the spy to have been called'],
  toHaveBeenCalledTimes: (f, n) => [f.mock.calls.length === n, `expected ${n} calls, got ${f.mock.calls.length}`],
  toHaveBeenCalledWith: (f, ...args) => [f.mock.calls.some((c) => equals(c, args)), `expected a call with ${show(args)}`],
};

class AssertionError extends Error {}

function assertion(actual, negate, mode) {
  const target = {};
  for (const [name, m] of Object.entries(matchers)) {
    target[name] = (...args) => {
      const check = (value) => {
        const [ok, msg] = m(value, ...args);
        if (ok === negate) throw new AssertionError(negate ? `not: ${msg}` : msg);
      };
      if (mode === 'resolves') return Promise.resolve(actual).then(check, (err) => { throw new AssertionError(`expected a promise that resolves, it rejected with ${show(err)}`); });
      if (mode === 'rejects') return Promise.resolve(actual).then((v) => { throw new AssertionError(`expected a promise that rejects, it resolved with ${show(v)}`); }, (err) => (name === 'toThrow' || name === 'toThrowError' ? throwCheck(err, args[0]) : check(err)));
      return check(actual);
    };
  }
  const throwCheck = (err, expected) => {
    const ok = throwMatches(err, expected);
    if (ok === negate) throw new AssertionError(`expected the error ${show(err)} ${negate ? 'not ' : ''}to match ${show(expected)}`);
  };
  target.toThrow = target.toThrowError = (expected) => {
    if (mode === 'rejects') {
      return Promise.resolve(actual).then((v) => { throw new AssertionError(`expected a rejection, got ${show(v)}`); }, (err) => throwCheck(err, expected));
    }
    const r = thrownBy(actual);
    if (!r.threw) {
      if (negate) return;
      throw new AssertionError(`expected the function to throw ${expected === undefined ? '' : show(expected)}`);
    }
    if (negate && expected === undefined) throw new AssertionError(`expected no throw, got ${show(r.err)}`);
    throwCheck(r.err, expected);
  };
  return target;
}

export function expect(actual) {
  const a = assertion(actual, false, null);
  a.not = assertion(actual, true, null);
  a.resolves = assertion(actual, false, 'resolves');
  a.rejects = assertion(actual, false, 'rejects');
  a.resolves.not = assertion(actual, true, 'resolves');
  a.rejects.not = assertion(actual, true, 'rejects');
  return a;
}
expect.objectContaining = (o) => asym(`ObjectContaining ${show(o)}`, (v) => isObj(v) && matches(v, o));
expect.arrayContaining = (arr) => asym(`ArrayContaining ${show(arr)}`, (v) => Array.isArray(v) && arr.every((e) => v.some((x) => equals(x, e))));
expect.stringMatching = (re) => asym(`StringMatching ${re}`, (v) => typeof v === 'string' && (typeof re === 'string' ? v.includes(re) : re.test(v)));
expect.stringContaining = (s) => asym(`StringContaining ${show(s)}`, (v) => typeof v === 'string' && v.includes(s));
expect.any = (C) => asym(`Any<${C?.name}>`, (v) => v != null && (v instanceof C || (C === Number && typeof v === 'number') || (C === String && typeof v === 'string') || (C === Boolean && typeof v === 'boolean') || (C === Function && typeof v === 'function') || (C === BigInt && typeof v === 'bigint') || (C === Symbol && typeof v === 'symbol')));
expect.anything = () => asym('Anything', (v) => v != null);
const negate = (m) => asym(`not.${m[inspect.custom]()}`, (v) => !m.test(v));
expect.not = {
  objectContaining: (o) => negate(expect.objectContaining(o)),
  arrayContaining: (a) => negate(expect.arrayContaining(a)),
  stringMatching: (re) => negate(expect.stringMatching(re)),
  stringContaining: (t) => negate(expect.stringContaining(t)),
};
expect.assertions = () => {};
expect.hasAssertions = () => {};

// ---------------------------------------------------------------------------------------------------------
// running (used by the harness)

const DEFAULT_TIMEOUT = 30_000;

function withTimeout(fn, ms, what) {
  let timer;
  const run = new Promise((resolve, reject) => {
    try {
      if (fn.length > 0) {
        // A done-callback test.
        fn((err) => (err ? reject(err) : resolve()));
      } else {
        Promise.resolve(fn()).then(resolve, reject);
      }
    } catch (err) {
      reject(err);
    }
  });
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([run, limit]).finally(() => clearTimeout(timer));
}

function fullName(suite, name) {
  const parts = [];
  for (let s = suite; s && s !== root; s = s.parent) parts.unshift(s.name);
  parts.push(name);
  return parts.join(' > ');
}

function eachHooks(suite, kind) {
  const chain = [];
  for (let s = suite; s; s = s.parent) chain.unshift(s);
  const hooks = chain.flatMap((s) => s.hooks[kind]);
  return kind === 'afterEach' ? hooks.reverse() : hooks;
}

/**
 * Runs everything registered. `skipFor(fullName)` answers a reason to skip a test in this runtime, or
 * undefined. `report(result)` receives { name, status: 'passed'|'failed'|'skipped', reason?, error?, ms }.
 */
export async function runRegistered(skipFor, report) {
  async function runSuite(suite, inheritedSkip) {
    const skip = inheritedSkip ?? suite.skip ?? undefined;
    let ranAll = true;
    const hasRunnable = (s) => s.tests.some((t) => !t.skip && !skipFor(fullName(s, t.name))) || s.children.some((c) => c.kind === 'suite' && hasRunnable(c.suite));
    const active = skip === undefined && hasRunnable(suite);
    if (active) {
      for (const h of suite.hooks.beforeAll) {
        try {
          await withTimeout(h.fn, h.timeout ?? DEFAULT_TIMEOUT, 'beforeAll');
        } catch (err) {
          ranAll = false;
          for (const t of allTests(suite)) report({ name: fullName(t.suite, t.name), status: 'failed', error: err, ms: 0 });
          return;
        }
      }
    }
    for (const c of suite.children) {
      if (c.kind === 'suite') {
        await runSuite(c.suite, skip);
        continue;
      }
      const t = suite.tests[c.index];
      const name = fullName(suite, t.name);
      const reason = skip ?? t.skip ?? skipFor(name);
      if (reason !== undefined && reason !== null) {
        report({ name, status: 'skipped', reason, ms: 0 });
        continue;
      }
      const start = performance.now();
      let error;
      try {
        for (const h of eachHooks(suite, 'beforeEach')) await withTimeout(h.fn, h.timeout ?? DEFAULT_TIMEOUT, 'beforeEach');
        await withTimeout(t.fn, t.timeout ?? DEFAULT_TIMEOUT, 'test');
      } catch (err) {
        error = err;
      }
      for (const h of eachHooks(suite, 'afterEach')) {
        try {
          await withTimeout(h.fn, h.timeout ?? DEFAULT_TIMEOUT, 'afterEach');
        } catch (err) {
          error ??= err;
        }
      }
      report({ name, status: error === undefined ? 'passed' : 'failed', error, ms: performance.now() - start });
    }
    if (active && ranAll) {
      for (const h of suite.hooks.afterAll) {
        try {
          await withTimeout(h.fn, h.timeout ?? DEFAULT_TIMEOUT, 'afterAll');
        } catch (err) {
          report({ name: fullName(suite, '(afterAll)'), status: 'failed', error: err, ms: 0 });
        }
      }
    }
  }
  await runSuite(root, undefined);
}

function allTests(suite) {
  return [...suite.tests, ...suite.children.filter((c) => c.kind === 'suite').flatMap((c) => allTests(c.suite))];
}
