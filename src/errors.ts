/**
 * Every error a user of sockguard sees is built here, so codes stay stable and never get reused.
 *
 * System-style errors follow Node's `lib/internal/errors.js` shape (`code`, `errno`, `syscall`, `address`,
 * `port`, message `connect ECONNREFUSED 127.0.0.1:9`). Library failures carry an `ERR_SOCKGUARD_*` code.
 */
import { constants as osConstants } from 'node:os';
import * as util from 'node:util';

export interface SystemErrorFields {
  syscall: string;
  address?: string;
  port?: number;
  /** Appended to the message in parentheses, e.g. `denied: private`. */
  detail?: string;
}

/**
 * A Node-shaped system error (`ECONNREFUSED`, `EPIPE`, `EACCES` for a policy denial with its `rule`, ...): the
 * fields of Node's own, so code written for `net` reads it unchanged, and a class so `instanceof` tells it apart.
 */
export class SockguardSystemError extends Error {
  declare code: string;
  /** Negative, as in Node's own errors (`-111` for ECONNREFUSED). */
  declare errno: number;
  declare syscall: string;
  declare address?: string;
  declare port?: number;
  /** The policy rule that denied the destination (`'private'`, `'loopback'`, an operator's rule, ...). */
  declare rule?: string;
  declare reason?: string;
  declare resource?: string;
  declare window?: string;
}

const errnoByName: Record<string, number> = osConstants.errno as unknown as Record<string, number>;

/** Positive errno value for a code name (`EACCES` → 13); undefined for non-errno codes. */
export function errnoOf(code: string): number | undefined {
  return errnoByName[code];
}

/** Code name for a native status, which is a negative errno (`-111` → `ECONNREFUSED`). */
export function codeOf(status: number): string {
  const name = util.getSystemErrorName(status < 0 ? status : -status);
  return name.startsWith('Unknown system error') ? 'EIO' : name;
}

/**
 * A Node-shaped system error. `errno` is negative as in Node's own errors (`err.errno === -111`) and `code` is
 * the symbolic name.
 */
export function systemError(code: string, fields: SystemErrorFields): SockguardSystemError {
  const errno = errnoOf(code);
  let message = `${fields.syscall} ${code}`;
  if (fields.address !== undefined) {
    message += fields.port !== undefined && fields.port !== 0 ? ` ${fields.address}:${fields.port}` : ` ${fields.address}`;
  }
  if (fields.detail) message += ` (${fields.detail})`;
  const err = new SockguardSystemError(message);
  err.code = code;
  err.errno = errno === undefined ? -5 : -errno;
  err.syscall = fields.syscall;
  if (fields.address !== undefined) err.address = fields.address;
  if (fields.port !== undefined) err.port = fields.port;
  return err;
}

/** A system error from a negative errno status reported by the native core. */
export function statusError(status: number, fields: SystemErrorFields): SockguardSystemError {
  return systemError(codeOf(status), fields);
}

/** README section on allowing loopback and private destinations. */
export const LOCAL_HINT_URL = 'https://github.com/sockguard/sockguard#allowing-loopback-and-private-destinations';
const LOCAL_HINT = `. To allow it, use policy: 'development' or an operator policy rule (${LOCAL_HINT_URL})`;

/** Policy denial: EACCES with the rule that denied it. */
export function deniedError(
  syscall: string,
  address: string | undefined,
  port: number,
  rule: string,
  reason?: string,
): SockguardSystemError {
  const err = systemError('EACCES', { syscall, address, port, detail: `denied: ${rule}` });
  // The first denial a new user meets is a local server in production mode: say how to allow it.
  if (rule === 'loopback' || rule === 'private') err.message += LOCAL_HINT;
  err.rule = rule;
  if (reason) Object.defineProperty(err, 'reason', { value: reason, enumerable: true, writable: true, configurable: true });
  return err;
}

/** Library error codes. Each is documented in the README's error table and never reused. */
export const codes = {
  INVALID_HOST: 'ERR_SOCKGUARD_INVALID_HOST',
  INVALID_PORT: 'ERR_SOCKGUARD_INVALID_PORT',
  INVALID_OPTION: 'ERR_SOCKGUARD_INVALID_OPTION',
  INVALID_POLICY: 'ERR_SOCKGUARD_INVALID_POLICY',
  OVER_QUOTA: 'ERR_SOCKGUARD_OVER_QUOTA',
  LAYER_CLOSED: 'ERR_SOCKGUARD_LAYER_CLOSED',
  NATIVE_UNAVAILABLE: 'ERR_SOCKGUARD_NATIVE_UNAVAILABLE',
  BAD_DESCRIPTOR: 'ERR_SOCKGUARD_BAD_DESCRIPTOR',
  TLS_UNAVAILABLE: 'ERR_SOCKGUARD_TLS_UNAVAILABLE',
  TLS_CONTEXT: 'ERR_SOCKGUARD_TLS_CONTEXT',
  ALREADY_INSTALLED: 'ERR_SOCKGUARD_ALREADY_INSTALLED',
  UNDICI_MISSING: 'ERR_SOCKGUARD_UNDICI_MISSING',
  OTEL_MISSING: 'ERR_SOCKGUARD_OTEL_MISSING',
  IOREDIS_MISSING: 'ERR_SOCKGUARD_IOREDIS_MISSING',
  STORE_UNAVAILABLE: 'ERR_SOCKGUARD_STORE_UNAVAILABLE',
} as const;

export type SockguardCode = (typeof codes)[keyof typeof codes];

const LIBRARY_CODES: ReadonlySet<string> = new Set(Object.values(codes));

/**
 * An error sockguard raises for its own reasons, with one of the {@link codes}. Argument and option errors stay
 * `TypeError`/`RangeError`/`SyntaxError` as in Node, and `instanceof SockguardError` is true for them too: the
 * test is the code, so every library error answers it whatever its built-in class.
 */
export class SockguardError extends Error {
  declare code: SockguardCode;
  constructor(code: SockguardCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (this !== SockguardError || !(value instanceof Error)) return false;
    const code = (value as { code?: unknown }).code;
    return typeof code === 'string' && LIBRARY_CODES.has(code);
  }
}

/**
 * What a socket's `'error'` listener receives: a Node-shaped system error (`EACCES` with `rule` for a policy
 * denial, `ECONNREFUSED`, `EPIPE`, ...), an {@link OverQuotaError}, or a {@link SockguardError}. The fields a
 * kind does not carry are absent.
 */
export interface SocketError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  address?: string;
  port?: number;
  /** The policy rule that denied the destination (`'private'`, `'loopback'`, an operator's rule, ...). */
  rule?: string;
  reason?: string;
  /** Over quota: the resource, the window and its limit. */
  resource?: string;
  window?: 'minute' | 'day';
  limit?: number;
}

type ErrorCtor = new (message: string) => Error;

/** A `TypeError`/`RangeError`/`Error` carrying a stable `code`, like Node's `ERR_INVALID_ARG_TYPE`. */
export function codedError<T extends ErrorCtor>(Ctor: T, code: string, message: string): InstanceType<T> & { code: string } {
  if ((Ctor as unknown) === Error && LIBRARY_CODES.has(code)) return new SockguardError(code as SockguardCode, message) as InstanceType<T> & { code: string };
  const err = new Ctor(message) as InstanceType<T> & { code: string };
  err.code = code;
  return err;
}

export function invalidOption(name: string, message: string): TypeError & { code: string } {
  return codedError(TypeError, codes.INVALID_OPTION, `The "${name}" option ${message}`);
}

/** A quota window is spent: the operation was refused, nothing was sent or opened. */
export class OverQuotaError extends SockguardError {
  declare code: typeof codes.OVER_QUOTA;
  declare resource: string;
  declare window: 'minute' | 'day';
  declare limit: number;
  constructor(resource: string, window: 'minute' | 'day', limit: number) {
    super(codes.OVER_QUOTA, `Quota exceeded: ${resource} per ${window} (limit ${limit})`);
    this.resource = resource;
    this.window = window;
    this.limit = limit;
  }
}

export function overQuota(resource: string, window: 'minute' | 'day', limit: number): OverQuotaError {
  return new OverQuotaError(resource, window, limit);
}

/**
 * A short description of any value for an error message. Never throws and never recurses: `String(value)`
 * fails on null-prototype objects and symbols-as-objects, runs user `toString`/getters that may throw, and
 * overflows the stack on deeply nested arrays, so a validation error would become an uncoded crash.
 */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
    case 'number':
    case 'boolean':
    case 'undefined':
      return String(value);
    case 'bigint':
      return `${value}n`;
    case 'symbol':
      return 'a symbol';
    case 'function':
      return 'a function';
    default:
      if (value === null) return 'null';
      return Array.isArray(value) ? 'an array' : 'an object';
  }
}

/** Node's "Received ..." wording, without running user code (no getters, no toString). */
export function receivedValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'function') return 'function';
  if (typeof value === 'object') {
    let name: unknown;
    try {
      name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    } catch {
      name = undefined;
    }
    return `an instance of ${typeof name === 'string' && name !== '' ? name : 'Object'}`;
  }
  return `type ${typeof value} (${describeValue(value)})`;
}

/** Node's ERR_INVALID_ARG_TYPE. */
export function invalidArg(name: string, type: string, value: unknown): TypeError & { code: string } {
  return codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "${name}" argument must be of type ${type}. Received ${receivedValue(value)}`);
}

/** An AbortSignal, as Node's validateAbortSignal accepts one (any object that behaves like a signal). */
export function validateSignal(signal: unknown, name: string): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (
    signal === null ||
    typeof signal !== 'object' ||
    typeof (signal as AbortSignal).aborted !== 'boolean' ||
    typeof (signal as AbortSignal).addEventListener !== 'function' ||
    typeof (signal as AbortSignal).removeEventListener !== 'function'
  ) {
    throw invalidArg(name, 'AbortSignal', signal);
  }
  return signal as AbortSignal;
}
