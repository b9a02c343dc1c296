/**
 * Socket options as App Engine's socket service exposed them (docs/service.md#socket-options), shared by the TCP `Socket` and the
 * UDP socket.
 *
 * Exactly eight options are supported. In `'emulate'` mode (the default) `getsockopt` answers from the mock
 * table below and `setsockopt` validates its argument, then does nothing, so a later get still returns the
 * mock. In `'native'` mode the same eight options are applied to, and read from, the real socket through
 * {@link SockoptHooks}. Every other (level, name) pair is EACCES in both modes: the service only ever allowed
 * these eight, and the native core tunes its own sockets (TCP_NODELAY on, because writes are coalesced).
 *
 * | option       | level:name | get → number     | bytes (`getsockopt(l, n, buflen)`) |
 * |--------------|------------|------------------|------------------------------------|
 * | SO_KEEPALIVE | 1:9        | 0                | `00 00 00 00`                      |
 * | SO_DEBUG     | 1:1        | 128              | `80 00 00 00`                      |
 * | TCP_NODELAY  | 6:1        | 0                | `00 00 00 00`                      |
 * | SO_LINGER    | 1:13       | 0 (linger off)   | `00 00 00 00 00 00 00 00`          |
 * | SO_OOBINLINE | 1:10       | 0                | `00 00 00 00`                      |
 * | SO_SNDBUF    | 1:7        | 2097152          | `00 00 20 00`                      |
 * | SO_RCVBUF    | 1:8        | 2097152          | `00 00 20 00`                      |
 * | SO_REUSEADDR | 1:2        | 1                | `01 00 00 00`                      |
 *
 * `SO_ERROR` (1:4) is read-only and reports the socket's real pending error (0 normally); setting it is
 * EACCES. The byte forms are little-endian, as App Engine stored its mocks; `buflen` truncates them, as the
 * kernel does when the caller's buffer is shorter than the option.
 *
 * Errors, in the order they are checked:
 * - `level`/`name` not a number → `TypeError` `ERR_INVALID_ARG_TYPE`; not an integer → `RangeError`
 *   `ERR_OUT_OF_RANGE` (Node's `validateInt32` split).
 * - `buflen` not a non-negative integer → `TypeError`/`RangeError` as above.
 * - unsupported option → system error `EACCES`, `syscall` `'getsockopt'`/`'setsockopt'`.
 * - set value of a type the option cannot take → `TypeError` `ERR_INVALID_ARG_TYPE`; integer out of int32
 *   range, or an SO_LINGER time outside 0..65535 → `RangeError` `ERR_OUT_OF_RANGE`; a buffer shorter than
 *   the option → system error `EINVAL`, as Linux answers a short `optlen`.
 *
 * Lookups index a flat array by `(level << 5) | name`; nothing is allocated unless a `Buffer` is asked for.
 */
import { codedError, codes, invalidOption, receivedValue, systemError } from '../errors.js';

/** Linux numbering for the levels and option names sockguard knows. */
export const constants = Object.freeze({
  SOL_IP: 0,
  SOL_SOCKET: 1,
  SOL_TCP: 6,
  SOL_UDP: 17,

  SO_DEBUG: 1,
  SO_REUSEADDR: 2,
  SO_TYPE: 3,
  SO_ERROR: 4,
  SO_DONTROUTE: 5,
  SO_BROADCAST: 6,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_KEEPALIVE: 9,
  SO_OOBINLINE: 10,
  SO_LINGER: 13,
  SO_RCVTIMEO: 20,
  SO_SNDTIMEO: 21,

  IP_TOS: 1,
  IP_TTL: 2,

  TCP_NODELAY: 1,
  TCP_MAXSEG: 2,
  TCP_CORK: 3,
  TCP_KEEPIDLE: 4,
  TCP_KEEPINTVL: 5,
  TCP_KEEPCNT: 6,
} as const);

/**
 * `'emulate'`: App Engine's mock table, sets validated and ignored. `'native'`: the supported options are
 * applied to and read from the real socket.
 */
export type SockoptMode = 'emulate' | 'native';

/** `struct linger` as JS sees it. `onoff` is truthy when lingering on close is enabled. */
export interface Linger {
  onoff: number | boolean;
  /** Seconds. */
  linger: number;
}

/** What `setsockopt` accepts: an int (or boolean) for int options, a {@link Linger} for SO_LINGER, or raw bytes. */
export type SockoptValue = number | boolean | Linger | ArrayBufferView;

/**
 * How the option code reaches the socket it serves. One hooks object is shared by every socket of a class
 * (no per-socket closures); `target` is the socket the call is about.
 *
 * Native encoding of SO_LINGER, so both hooks stay `number`-only: `-1` means off, `n >= 0` means on with a
 * linger time of `n` seconds. Every other option is the kernel's int.
 */
export interface SockoptHooks<T> {
  /** The socket's pending error as a positive errno (0 if none). Read-and-clear semantics are the core's. */
  soError(target: T): number;
  /** Required in `'native'` mode: the real value of a supported option. */
  getNative?(target: T, level: number, name: number): number;
  /** Required in `'native'` mode: applies a supported option for real. */
  setNative?(target: T, level: number, name: number, value: number): void;
}

// Plain constants rather than a const enum, so per-file transpilers (vitest) see the same code as tsc.
const Kind = { Int: 0, Linger: 1, ReadOnlyError: 2 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];

interface OptionEntry {
  readonly kind: Kind;
  /** The mock `getsockopt` number. */
  readonly mock: number;
  /** Bytes of the option's C type: 4 for int, 8 for `struct linger`. */
  readonly size: number;
}

// Levels 0..17 and names 0..21 all fit in five bits each; 18 levels × 32 names is a 576-slot table.
const LEVEL_BITS = 5;
const TABLE_SIZE = (constants.SOL_UDP + 1) << LEVEL_BITS;
const table: (OptionEntry | undefined)[] = new Array<OptionEntry | undefined>(TABLE_SIZE).fill(undefined);

function define(level: number, name: number, kind: Kind, mock: number, size: number): void {
  table[(level << LEVEL_BITS) | name] = Object.freeze({ kind, mock, size });
}

define(constants.SOL_SOCKET, constants.SO_KEEPALIVE, Kind.Int, 0, 4);
define(constants.SOL_SOCKET, constants.SO_DEBUG, Kind.Int, 128, 4);
define(constants.SOL_TCP, constants.TCP_NODELAY, Kind.Int, 0, 4);
define(constants.SOL_SOCKET, constants.SO_LINGER, Kind.Linger, 0, 8);
define(constants.SOL_SOCKET, constants.SO_OOBINLINE, Kind.Int, 0, 4);
define(constants.SOL_SOCKET, constants.SO_SNDBUF, Kind.Int, 2097152, 4);
define(constants.SOL_SOCKET, constants.SO_RCVBUF, Kind.Int, 2097152, 4);
define(constants.SOL_SOCKET, constants.SO_REUSEADDR, Kind.Int, 1, 4);
define(constants.SOL_SOCKET, constants.SO_ERROR, Kind.ReadOnlyError, 0, 4);

const INT32_MIN = -0x80000000;
/** Largest SO_LINGER time accepted, in seconds. */
const MAX_LINGER = 65535;
const INT32_MAX = 0x7fffffff;

function lookup(level: number, name: number): OptionEntry | undefined {
  // Unsigned compares reject negatives and out-of-table values in one test each.
  if (level >>> 0 > constants.SOL_UDP || name >>> 0 > 31) return undefined;
  return table[(level << LEVEL_BITS) | name];
}

function checkInt(value: unknown, argName: string): asserts value is number {
  if (typeof value !== 'number') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "${argName}" argument must be of type number. Received ${receivedValue(value)}`);
  }
  if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
    throw codedError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "${argName}" is out of range. It must be an int32. Received ${String(value)}`);
  }
}

function checkBuflen(value: unknown): asserts value is number {
  if (typeof value !== 'number') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "buflen" argument must be of type number. Received ${receivedValue(value)}`);
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw codedError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "buflen" is out of range. It must be a non-negative integer. Received ${String(value)}`);
  }
}

/** The constant's name for an option, by the prefix its level uses (`SO_` at SOL_SOCKET, `TCP_` at SOL_TCP, ...). */
function optionName(level: number, name: number): string {
  const prefix = level === constants.SOL_SOCKET ? 'SO_' : level === constants.SOL_TCP ? 'TCP_' : level === constants.SOL_IP ? 'IP_' : undefined;
  if (prefix !== undefined) {
    for (const [key, value] of Object.entries(constants)) {
      if (value === name && key.startsWith(prefix)) return key;
    }
  }
  return `option ${level}:${name}`;
}

const SUPPORTED = 'SO_KEEPALIVE, SO_DEBUG, TCP_NODELAY, SO_LINGER, SO_OOBINLINE, SO_SNDBUF, SO_RCVBUF, SO_REUSEADDR (and SO_ERROR, read-only)';

function unsupported(syscall: 'getsockopt' | 'setsockopt', level: number, name: number): Error {
  const what = optionName(level, name);
  const detail =
    what === 'SO_ERROR' ? 'SO_ERROR is read-only' : `${what} is not supported; supported: ${SUPPORTED}`;
  return systemError('EACCES', { syscall, detail });
}

function toBytes(entry: OptionEntry, value: number, buflen: number): Buffer {
  const out = Buffer.alloc(entry.size);
  if (entry.kind === Kind.Linger) {
    // struct linger { int l_onoff; int l_linger; } from the native -1/n encoding.
    if (value >= 0) {
      out.writeInt32LE(1, 0);
      out.writeInt32LE(value, 4);
    }
  } else {
    out.writeInt32LE(value, 0);
  }
  return buflen >= entry.size ? out : out.subarray(0, buflen);
}

/**
 * `getsockopt(level, name[, buflen])`. Returns the option as a number, or, when `buflen` is given, its
 * little-endian bytes truncated to `buflen` (a fresh `Buffer` the caller may keep).
 *
 * SO_LINGER as a number is `l_onoff` in emulate mode (0, off) and the native `-1`/seconds encoding's
 * `l_onoff` in native mode, so the number form always means "is lingering on"; ask for 8 bytes to see both
 * fields.
 */
export function getsockopt<T>(
  mode: SockoptMode,
  hooks: SockoptHooks<T>,
  target: T,
  level: unknown,
  name: unknown,
  buflen?: unknown,
): number | Buffer {
  checkInt(level, 'level');
  checkInt(name, 'name');
  if (buflen !== undefined) checkBuflen(buflen);
  const entry = lookup(level, name);
  if (entry === undefined) throw unsupported('getsockopt', level, name);

  let value: number;
  if (entry.kind === Kind.ReadOnlyError) {
    value = hooks.soError(target);
  } else if (mode === 'emulate') {
    if (buflen === undefined) return entry.mock;
    value = entry.kind === Kind.Linger ? -1 : entry.mock;
  } else {
    if (hooks.getNative === undefined) throw nativeHookMissing('getNative');
    value = hooks.getNative(target, level, name);
  }

  if (buflen === undefined) {
    return entry.kind === Kind.Linger ? (value >= 0 ? 1 : 0) : value;
  }
  return toBytes(entry, value, buflen as number);
}

/**
 * `setsockopt(level, name, value)`. Validates `value` for the option, then ignores it (`'emulate'`) or applies
 * it through `hooks.setNative` (`'native'`). Int options take an integer, a boolean, or at least 4 bytes
 * (the first 4, little-endian, are used, as Linux does); SO_LINGER takes `{ onoff, linger }` or at least 8
 * bytes.
 */
export function setsockopt<T>(
  mode: SockoptMode,
  hooks: SockoptHooks<T>,
  target: T,
  level: unknown,
  name: unknown,
  value: unknown,
): void {
  checkInt(level, 'level');
  checkInt(name, 'name');
  const entry = lookup(level, name);
  if (entry === undefined || entry.kind === Kind.ReadOnlyError) throw unsupported('setsockopt', level, name);

  const native = entry.kind === Kind.Linger ? lingerValue(value) : intValue(value);
  if (mode === 'emulate') return;
  if (hooks.setNative === undefined) throw nativeHookMissing('setNative');
  hooks.setNative(target, level, name, native);
}

function intValue(value: unknown): number {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number') {
    checkInt(value, 'value');
    return value;
  }
  if (ArrayBuffer.isView(value)) {
    const len = viewLength(value);
    if (len < 4) throw shortBuffer(len, 4);
    return new DataView(value.buffer, value.byteOffset, 4).getInt32(0, true);
  }
  throw codedError(
    TypeError,
    'ERR_INVALID_ARG_TYPE',
    `The "value" argument must be of type number or boolean, or a Buffer. Received ${receivedValue(value)}`,
  );
}

function lingerValue(value: unknown): number {
  let onoff: number;
  let seconds: number;
  if (ArrayBuffer.isView(value)) {
    const len = viewLength(value);
    if (len < 8) throw shortBuffer(len, 8);
    const view = new DataView(value.buffer, value.byteOffset, 8);
    onoff = view.getInt32(0, true);
    seconds = view.getInt32(4, true);
  } else if (typeof value === 'object' && value !== null && 'onoff' in value && 'linger' in value) {
    const l = value as Linger;
    if (typeof l.onoff === 'boolean') {
      onoff = l.onoff ? 1 : 0;
    } else {
      checkInt(l.onoff, 'value.onoff');
      onoff = l.onoff;
    }
    checkInt(l.linger, 'value.linger');
    seconds = l.linger;
  } else {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "value" argument for SO_LINGER must be an object { onoff, linger } or a Buffer of 8 bytes. Received ${receivedValue(value)}`,
    );
  }
  // l_linger is an int in the kernel but is stored in a 16-bit field on several systems, and no sane linger time
  // needs more than 18 hours: bounding it keeps emulate and native mode in agreement on every platform.
  if (seconds < 0 || seconds > MAX_LINGER) {
    throw codedError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "value.linger" is out of range. It must be >= 0 and <= ${MAX_LINGER}. Received ${seconds}`);
  }
  return onoff !== 0 ? seconds : -1;
}

/**
 * Bytes of a view; 0 when its buffer was transferred away. A detached typed array reports 0 itself, but a
 * detached DataView throws an uncoded TypeError from every accessor.
 */
function viewLength(view: ArrayBufferView): number {
  try {
    return view.byteLength;
  } catch {
    return 0;
  }
}

function shortBuffer(got: number, need: number): Error {
  return systemError('EINVAL', { syscall: 'setsockopt', detail: `option needs ${need} bytes, got ${got}` });
}

function nativeHookMissing(hook: string): Error {
  return codedError(Error, codes.NATIVE_UNAVAILABLE, `sockopts: 'native' needs the socket's ${hook} hook`);
}

/** True for the eight supported options and SO_ERROR: the (level, name) pairs that are not EACCES on get. */
export function isSupportedSockopt(level: number, name: number): boolean {
  return Number.isInteger(level) && Number.isInteger(name) && lookup(level, name) !== undefined;
}

/**
 * Validates the layer's `sockopts` option.
 * @default 'emulate'
 */
export function validateSockoptMode(value: unknown): SockoptMode {
  if (value === undefined) return 'emulate';
  if (value === 'emulate' || value === 'native') return value;
  throw invalidOption('sockopts', `must be 'emulate' or 'native'. Received ${receivedValue(value)}`);
}
