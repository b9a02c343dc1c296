/**
 * Fuzzes the socket-option table functions shared by TCP and UDP (getsockopt, setsockopt, isSupportedSockopt,
 * validateSockoptMode) with any level, name, value and buflen, in both modes: each returns or throws a coded
 * error, and what reaches the native hook is always an int the kernel can take.
 */
import fc from 'fast-check';
import { describe, expect } from 'vitest';
import { constants as C, getsockopt, isSupportedSockopt, setsockopt, validateSockoptMode, type SockoptHooks } from '../../src/service/sockopts.js';
import { anyNumber, describeError, isCoded, mostly, params, target, watchProcess, wild } from './common.js';

const proc = watchProcess();

const SUPPORTED: Array<[number, number]> = [
  [C.SOL_SOCKET, C.SO_KEEPALIVE],
  [C.SOL_SOCKET, C.SO_DEBUG],
  [C.SOL_TCP, C.TCP_NODELAY],
  [C.SOL_SOCKET, C.SO_LINGER],
  [C.SOL_SOCKET, C.SO_OOBINLINE],
  [C.SOL_SOCKET, C.SO_SNDBUF],
  [C.SOL_SOCKET, C.SO_RCVBUF],
  [C.SOL_SOCKET, C.SO_REUSEADDR],
  [C.SOL_SOCKET, C.SO_ERROR],
];

/** Mostly a supported (level, name), sometimes a neighbour, sometimes anything. */
const levelName = fc.oneof(
  { arbitrary: fc.constantFrom(...SUPPORTED), weight: 4 },
  { arbitrary: fc.tuple(fc.integer({ min: -2, max: 40 }), fc.integer({ min: -2, max: 40 })), weight: 2 },
  { arbitrary: fc.tuple(mostly(anyNumber), mostly(anyNumber)), weight: 2 },
);

const lingerValue = fc.oneof(
  fc.record({ onoff: mostly(fc.oneof(fc.boolean(), fc.integer({ min: -1, max: 2 }))), linger: mostly(fc.oneof(fc.integer({ min: -2, max: 70_000 }), anyNumber)) }, { requiredKeys: [] }),
  fc.tuple(fc.integer(), fc.integer(), fc.nat({ max: 12 })).map(([a, b, len]) => {
    const buf = Buffer.alloc(8);
    buf.writeInt32LE(a, 0);
    buf.writeInt32LE(b, 4);
    return buf.subarray(0, len);
  }),
);
const value = fc.oneof({ arbitrary: wild, weight: 3 }, { arbitrary: anyNumber, weight: 2 }, { arbitrary: fc.boolean(), weight: 1 }, { arbitrary: lingerValue, weight: 2 });

/** Native hooks that check what they are handed, as the kernel would see it. */
function recordingHooks(bad: string[]): SockoptHooks<null> {
  return {
    soError: () => 0,
    getNative: (_t, level, name) => (level === C.SOL_SOCKET && name === C.SO_LINGER ? -1 : 4096),
    setNative: (_t, level, name, v) => {
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) bad.push(`setNative(${level}, ${name}, ${v}): not an int32`);
      if (level === C.SOL_SOCKET && name === C.SO_LINGER && (v < -1 || v > 65535)) bad.push(`setNative SO_LINGER ${v}: linger outside 0..65535`);
    },
  };
}

describe('sockopt table functions', () => {
  target('getsockopt(level, name, buflen) in both modes', (tick) => {
    const bad: string[] = [];
    const hooks = recordingHooks(bad);
    fc.assert(
      fc.property(fc.constantFrom('emulate' as const, 'native' as const), levelName, fc.oneof(fc.constant(undefined), fc.nat({ max: 16 }), wild), (mode, [level, name], buflen) => {
        tick();
        let r: unknown;
        try {
          r = getsockopt(mode, hooks, null, level, name, buflen);
        } catch (err) {
          expect(isCoded(err), describeError(err)).toBe(true);
          return;
        }
        if (buflen === undefined) expect(typeof r).toBe('number');
        else {
          expect(Buffer.isBuffer(r)).toBe(true);
          expect((r as Buffer).length).toBeLessThanOrEqual(8);
        }
      }),
      params(),
    );
    expect(bad).toEqual([]);
    proc.expectNone();
  });

  target('setsockopt(level, name, value) in both modes', (tick) => {
    const bad: string[] = [];
    const hooks = recordingHooks(bad);
    fc.assert(
      fc.property(fc.constantFrom('emulate' as const, 'native' as const), levelName, value, (mode, [level, name], v) => {
        tick();
        try {
          setsockopt(mode, hooks, null, level, name, v);
        } catch (err) {
          expect(isCoded(err), describeError(err)).toBe(true);
          return;
        }
        // Accepted: for SO_LINGER the linger time must have been within what struct linger's users expect.
        if (level === C.SOL_SOCKET && name === C.SO_LINGER && v !== null && typeof v === 'object' && !ArrayBuffer.isView(v)) {
          const l = (v as { linger: unknown }).linger;
          expect(typeof l === 'number' && Number.isInteger(l) && l >= 0 && l <= 65535, `accepted linger ${String(l)}`).toBe(true);
        }
      }),
      params(),
    );
    expect(bad.slice(0, 5)).toEqual([]);
  });

  target('SO_LINGER linger outside 0..65535 is a coded RangeError', (tick) => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: 65536, max: 0x7fffffff }), fc.integer({ min: -0x80000000, max: -1 })), fc.boolean(), fc.boolean(), (linger, onoff, asBytes) => {
        tick();
        let v: unknown = { onoff, linger };
        if (asBytes) {
          const b = Buffer.alloc(8);
          b.writeInt32LE(onoff ? 1 : 0, 0);
          b.writeInt32LE(linger, 4);
          v = b;
        }
        let thrown: unknown;
        try {
          setsockopt('emulate', recordingHooks([]), null, C.SOL_SOCKET, C.SO_LINGER, v);
        } catch (err) {
          thrown = err;
        }
        expect(thrown).toBeInstanceOf(RangeError);
        expect((thrown as { code?: unknown }).code).toBe('ERR_OUT_OF_RANGE');
      }),
      params(),
    );
  });

  target('isSupportedSockopt and validateSockoptMode with any value', (tick) => {
    fc.assert(
      fc.property(wild, wild, (a, b) => {
        tick();
        expect(typeof isSupportedSockopt(a as number, b as number)).toBe('boolean');
        try {
          const m = validateSockoptMode(a);
          expect(m === 'emulate' || m === 'native').toBe(true);
        } catch (err) {
          expect(isCoded(err), describeError(err)).toBe(true);
        }
      }),
      params(),
    );
  });
});
