import { describe, expect, it } from 'vitest';
import {
  constants as c,
  getsockopt,
  isSupportedSockopt,
  setsockopt,
  validateSockoptMode,
  type SockoptHooks,
} from '../../src/service/sockopts.js';

interface FakeSocket {
  pendingError: number;
  native: Map<string, number>;
  sets: [number, number, number][];
}

const hooks: SockoptHooks<FakeSocket> = {
  soError: (s) => s.pendingError,
  getNative: (s, level, name) => s.native.get(`${level}:${name}`) ?? 0,
  setNative: (s, level, name, value) => {
    s.sets.push([level, name, value]);
    s.native.set(`${level}:${name}`, value);
  },
};

function fake(): FakeSocket {
  return { pendingError: 0, native: new Map(), sets: [] };
}

const get = (level: unknown, name: unknown, buflen?: unknown, s = fake()) => getsockopt('emulate', hooks, s, level, name, buflen);
const set = (level: unknown, name: unknown, value: unknown, s = fake()) => setsockopt('emulate', hooks, s, level, name, value);

// docs/service.md#socket-options, row by row.
const TABLE: [string, number, number, number, number[]][] = [
  ['SO_KEEPALIVE', 1, 9, 0, [0, 0, 0, 0]],
  ['SO_DEBUG', 1, 1, 128, [0x80, 0, 0, 0]],
  ['TCP_NODELAY', 6, 1, 0, [0, 0, 0, 0]],
  ['SO_LINGER', 1, 13, 0, [0, 0, 0, 0, 0, 0, 0, 0]],
  ['SO_OOBINLINE', 1, 10, 0, [0, 0, 0, 0]],
  ['SO_SNDBUF', 1, 7, 2097152, [0, 0, 0x20, 0]],
  ['SO_RCVBUF', 1, 8, 2097152, [0, 0, 0x20, 0]],
  ['SO_REUSEADDR', 1, 2, 1, [1, 0, 0, 0]],
];

const UNSUPPORTED: [string, number, number][] = [
  ['SO_TYPE', 1, 3],
  ['SO_DONTROUTE', 1, 5],
  ['SO_BROADCAST', 1, 6],
  ['SO_RCVTIMEO', 1, 20],
  ['SO_SNDTIMEO', 1, 21],
  ['IP_TOS', 0, 1],
  ['IP_TTL', 0, 2],
  ['TCP_MAXSEG', 6, 2],
  ['TCP_CORK', 6, 3],
  ['TCP_KEEPIDLE', 6, 4],
  ['TCP_KEEPINTVL', 6, 5],
  ['TCP_KEEPCNT', 6, 6],
];

function expectEacces(fn: () => unknown, syscall: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toMatchObject({ code: 'EACCES', errno: -13, syscall });
    return;
  }
  throw new Error('expected EACCES');
}

describe('constants', () => {
  it('uses Linux numbering and is frozen', () => {
    expect(c).toEqual({
      SOL_IP: 0, SOL_SOCKET: 1, SOL_TCP: 6, SOL_UDP: 17,
      SO_DEBUG: 1, SO_REUSEADDR: 2, SO_TYPE: 3, SO_ERROR: 4, SO_DONTROUTE: 5, SO_BROADCAST: 6, SO_SNDBUF: 7,
      SO_RCVBUF: 8, SO_KEEPALIVE: 9, SO_OOBINLINE: 10, SO_LINGER: 13, SO_RCVTIMEO: 20, SO_SNDTIMEO: 21,
      IP_TOS: 1, IP_TTL: 2,
      TCP_NODELAY: 1, TCP_MAXSEG: 2, TCP_CORK: 3, TCP_KEEPIDLE: 4, TCP_KEEPINTVL: 5, TCP_KEEPCNT: 6,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('names the table rows with the constants', () => {
    for (const [name, level, opt] of TABLE) {
      expect(c[name as keyof typeof c]).toBe(opt);
      expect(level).toBe(name.startsWith('TCP_') ? c.SOL_TCP : c.SOL_SOCKET);
    }
  });
});

describe('getsockopt (emulate)', () => {
  it.each(TABLE)('%s returns the mock number', (_n, level, name, mock) => {
    expect(get(level, name)).toBe(mock);
  });

  it.each(TABLE)('%s returns the little-endian bytes with a full buflen', (_n, level, name, _m, bytes) => {
    const out = get(level, name, bytes.length);
    expect(Buffer.isBuffer(out)).toBe(true);
    expect([...(out as Buffer)]).toEqual(bytes);
  });

  it.each(TABLE)('%s truncates to every shorter buflen and caps longer ones', (_n, level, name, _m, bytes) => {
    for (let len = 0; len <= bytes.length + 4; len++) {
      expect([...(get(level, name, len) as Buffer)]).toEqual(bytes.slice(0, len));
    }
  });

  it('returns a fresh buffer each time', () => {
    const a = get(1, 7, 4) as Buffer;
    a[0] = 0xff;
    expect([...(get(1, 7, 4) as Buffer)]).toEqual([0, 0, 0x20, 0]);
  });

  it.each(UNSUPPORTED)('%s is EACCES, with and without buflen', (_n, level, name) => {
    expectEacces(() => get(level, name), 'getsockopt');
    expectEacces(() => get(level, name, 4), 'getsockopt');
  });

  it('is EACCES for every unknown name at every level, and for unknown levels', () => {
    const supported = new Set(TABLE.map(([, l, n]) => `${l}:${n}`).concat('1:4'));
    for (const level of [0, 1, 6, 17]) {
      for (let name = -1; name <= 40; name++) {
        if (supported.has(`${level}:${name}`)) continue;
        expectEacces(() => get(level, name), 'getsockopt');
        expectEacces(() => set(level, name, 0), 'setsockopt');
      }
    }
    for (const level of [-1, 2, 5, 7, 16, 18, 41, 255, 65535, 0x7fffffff, -0x80000000]) {
      expectEacces(() => get(level, 1), 'getsockopt');
    }
    // Names that alias table slots if only low bits were compared.
    expectEacces(() => get(1, 32 + 9), 'getsockopt');
    expectEacces(() => get(1 + 32, 9), 'getsockopt');
  });

  it('puts the option in the EACCES message', () => {
    expect(() => get(6, 3)).toThrow(
      'getsockopt EACCES (TCP_CORK is not supported; supported: SO_KEEPALIVE, SO_DEBUG, TCP_NODELAY, SO_LINGER, SO_OOBINLINE, SO_SNDBUF, SO_RCVBUF, SO_REUSEADDR (and SO_ERROR, read-only))',
    );
    expect(() => get(6, 4)).toThrow('getsockopt EACCES (TCP_KEEPIDLE is not supported; supported: SO_KEEPALIVE,');
    expect(() => get(17, 1)).toThrow('getsockopt EACCES (option 17:1 is not supported; supported: SO_KEEPALIVE,');
    expect(() => set(1, 4, 0)).toThrow('setsockopt EACCES (SO_ERROR is read-only)');
  });

  it('rejects non-integer levels, names and buflens with coded errors', () => {
    for (const bad of ['1', null, undefined, {}, 1n, true]) {
      expect(() => get(bad, 9)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
      expect(() => get(1, bad)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
      expect(() => set(bad, 9, 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    }
    for (const bad of [1.5, NaN, Infinity, 2 ** 31]) {
      expect(() => get(bad, 9)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    }
    expect(() => get(1, 9, '4')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => get(1, 9, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => get(1, 9, 1.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  it('validates arguments before deciding EACCES', () => {
    expect(() => get(6, 3, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('SO_ERROR', () => {
  it('reports the real pending error, as a number and as bytes', () => {
    const s = fake();
    expect(get(c.SOL_SOCKET, c.SO_ERROR, undefined, s)).toBe(0);
    s.pendingError = 111;
    expect(get(c.SOL_SOCKET, c.SO_ERROR, undefined, s)).toBe(111);
    expect([...(get(c.SOL_SOCKET, c.SO_ERROR, 4, s) as Buffer)]).toEqual([111, 0, 0, 0]);
    expect([...(get(c.SOL_SOCKET, c.SO_ERROR, 2, s) as Buffer)]).toEqual([111, 0]);
    expect(getsockopt('native', hooks, s, 1, 4)).toBe(111);
  });

  it('is read-only: set is EACCES in both modes', () => {
    expectEacces(() => set(1, 4, 0), 'setsockopt');
    expectEacces(() => setsockopt('native', hooks, fake(), 1, 4, 0), 'setsockopt');
  });
});

describe('setsockopt (emulate)', () => {
  it.each(TABLE.filter(([n]) => n !== 'SO_LINGER'))('%s accepts ints, booleans and 4+ byte buffers, and a later get still returns the mock', (_n, level, name, mock) => {
    const s = fake();
    for (const v of [0, 1, 65536, -1, 0x7fffffff, true, false, Buffer.from([1, 2, 3, 4]), new Uint8Array(8), new Int32Array([7])]) {
      expect(set(level, name, v, s)).toBeUndefined();
      expect(get(level, name, undefined, s)).toBe(mock);
    }
    expect(s.sets).toEqual([]);
  });

  it('int options reject other types, non-int32 numbers and short buffers', () => {
    for (const bad of ['1', null, undefined, {}, [1], 1n]) {
      expect(() => set(1, 9, bad)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
    }
    for (const bad of [1.5, NaN, 2 ** 31, -(2 ** 31) - 1]) {
      expect(() => set(1, 9, bad)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    }
    expect(() => set(1, 9, Buffer.alloc(3))).toThrow(expect.objectContaining({ code: 'EINVAL', errno: -22, syscall: 'setsockopt' }));
  });

  it('SO_LINGER accepts { onoff, linger } and 8+ byte buffers, and still reads back as off', () => {
    const s = fake();
    for (const v of [{ onoff: 1, linger: 5 }, { onoff: true, linger: 0 }, { onoff: 0, linger: 0 }, Buffer.alloc(8), Buffer.alloc(16)]) {
      set(1, 13, v, s);
      expect(get(1, 13, undefined, s)).toBe(0);
      expect([...(get(1, 13, 8, s) as Buffer)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    }
  });

  it('SO_LINGER rejects ints, malformed objects, negative times and short buffers', () => {
    for (const bad of [0, 1, true, 'x', null, {}, { onoff: 1 }, { linger: 1 }]) {
      expect(() => set(1, 13, bad)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
    }
    expect(() => set(1, 13, { onoff: '1', linger: 1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => set(1, 13, { onoff: 1, linger: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => set(1, 13, { onoff: 1, linger: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => set(1, 13, Buffer.alloc(4))).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'setsockopt' }));
  });

  it.each(UNSUPPORTED)('%s is EACCES on set, whatever the value', (_n, level, name) => {
    for (const v of [0, 1, true, Buffer.alloc(4), 'junk']) expectEacces(() => set(level, name, v), 'setsockopt');
  });
});

describe("'native' mode", () => {
  it('reads supported options through getNative, as numbers and bytes', () => {
    const s = fake();
    s.native.set('1:7', 425984);
    expect(getsockopt('native', hooks, s, 1, 7)).toBe(425984);
    expect([...(getsockopt('native', hooks, s, 1, 7, 4) as Buffer)]).toEqual([0x00, 0x80, 0x06, 0x00]);
  });

  it('applies sets through setNative with normalised values', () => {
    const s = fake();
    setsockopt('native', hooks, s, 6, 1, true);
    setsockopt('native', hooks, s, 1, 9, Buffer.from([1, 0, 0, 0]));
    setsockopt('native', hooks, s, 1, 7, 65536);
    expect(s.sets).toEqual([
      [6, 1, 1],
      [1, 9, 1],
      [1, 7, 65536],
    ]);
    expect(getsockopt('native', hooks, s, 6, 1)).toBe(1);
  });

  it('encodes SO_LINGER as -1 (off) or the linger seconds (on), and decodes it back', () => {
    const s = fake();
    setsockopt('native', hooks, s, 1, 13, { onoff: 1, linger: 7 });
    expect(s.sets.at(-1)).toEqual([1, 13, 7]);
    expect(getsockopt('native', hooks, s, 1, 13)).toBe(1);
    expect([...(getsockopt('native', hooks, s, 1, 13, 8) as Buffer)]).toEqual([1, 0, 0, 0, 7, 0, 0, 0]);
    setsockopt('native', hooks, s, 1, 13, Buffer.from([0, 0, 0, 0, 9, 0, 0, 0]));
    expect(s.sets.at(-1)).toEqual([1, 13, -1]);
    expect(getsockopt('native', hooks, s, 1, 13)).toBe(0);
  });

  it('keeps EACCES for unsupported options and never reaches the hooks', () => {
    const s = fake();
    expectEacces(() => getsockopt('native', hooks, s, 6, 3), 'getsockopt');
    expectEacces(() => setsockopt('native', hooks, s, 0, 2, 64), 'setsockopt');
    expect(s.sets).toEqual([]);
  });

  it('validates before applying', () => {
    const s = fake();
    expect(() => setsockopt('native', hooks, s, 1, 7, 'big')).toThrow(TypeError);
    expect(s.sets).toEqual([]);
  });

  it('fails clearly when the socket provides no native hooks', () => {
    const bare: SockoptHooks<null> = { soError: () => 0 };
    expect(() => getsockopt('native', bare, null, 1, 7)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_NATIVE_UNAVAILABLE' }));
    expect(() => setsockopt('native', bare, null, 1, 7, 1)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_NATIVE_UNAVAILABLE' }));
    expect(getsockopt('emulate', bare, null, 1, 7)).toBe(2097152);
  });
});

describe('helpers', () => {
  it('isSupportedSockopt covers the eight options and SO_ERROR only', () => {
    for (const [, l, n] of TABLE) expect(isSupportedSockopt(l, n)).toBe(true);
    expect(isSupportedSockopt(1, 4)).toBe(true);
    for (const [, l, n] of UNSUPPORTED) expect(isSupportedSockopt(l, n)).toBe(false);
    expect(isSupportedSockopt(1.5, 9)).toBe(false);
  });

  it('validateSockoptMode defaults to emulate and names the option on error', () => {
    expect(validateSockoptMode(undefined)).toBe('emulate');
    expect(validateSockoptMode('native')).toBe('native');
    expect(() => validateSockoptMode('real')).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION', message: expect.stringContaining('"sockopts"') }));
  });
});
