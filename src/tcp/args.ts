/**
 * The TCP transport's argument forms and checks, as net takes them: connect options and argument forms, stream
 * marks, chunks and encodings, timer delays. Every check throws a coded error before anything happens.
 */
import { codedError, describeValue, invalidArg, invalidOption } from '../errors.js';
import type { LayerPort } from '../service/port.js';
import type { TlsConnectOptions } from '../tls/context.js';

/** Node's largest timer delay: longer ones would fire after 1 ms. */
export const TIMEOUT_MAX = 0x7fffffff;

/** Options of `connect()`, as net.connect takes them, plus sockguard's. */
export interface SocketConnectOptions {
  /** @default 'localhost' */
  host?: string;
  port?: number | string;
  /** Unix domain sockets are not part of the outbound socket service. */
  path?: string;
  /** Idle timeout in ms: emits 'timeout' like net's `timeout` option (the socket stays open). */
  timeout?: number;
  /** Bounds the whole connection attempt; ETIMEDOUT when it passes. @default 0 (the kernel's limit) */
  connectTimeout?: number;
  /** @default false (writes are coalesced natively, so the native socket runs with TCP_NODELAY on anyway) */
  noDelay?: boolean;
  /** @default false */
  keepAlive?: boolean;
  /** @default 0 */
  keepAliveInitialDelay?: number;
  /** @default false */
  allowHalfOpen?: boolean;
  signal?: AbortSignal;
  /** 0 (both), 4 or 6. @default 0 */
  family?: number;
  /** Only the any-address is accepted. */
  localAddress?: string;
  /** Only 0 is accepted. */
  localPort?: number;
  /** A dns.lookup-compatible resolver for this connection; its answers are still vetted by the policy. */
  lookup?: (hostname: string, options: object, cb: (...args: any[]) => void) => void;
  /**
   * TLS on the connection (`true` for the defaults): run by the native core where the runtime allows, else by
   * the runtime's tls module over the socket. See TlsConnectOptions.
   */
  tls?: boolean | TlsConnectOptions;
  /** Stream buffer sizes. */
  highWaterMark?: number;
  readableHighWaterMark?: number;
  writableHighWaterMark?: number;
}

export interface SocketOptions {
  /** The layer whose policy, ledger and reclaim govern this socket. @default the module's default layer */
  layer?: { readonly port: LayerPort };
  /** @default false */
  allowHalfOpen?: boolean;
  readableHighWaterMark?: number;
  writableHighWaterMark?: number;
  signal?: AbortSignal;
}

/** net.connect's argument forms, normalised. */
export function normalizeConnectArgs(args: unknown[]): [SocketConnectOptions, (() => void) | undefined] {
  let cb: (() => void) | undefined;
  if (args.length > 0 && typeof args[args.length - 1] === 'function') cb = args.pop() as () => void;
  const first = args[0];
  if (first !== null && typeof first === 'object') return [{ ...(first as SocketConnectOptions) }, cb];
  const options: SocketConnectOptions = {};
  if (typeof first === 'string' && !/^\d+$/.test(first) && first.length > 0 && Number.isNaN(Number(first))) {
    options.path = first;
  } else {
    options.port = first as number | string;
    if (typeof args[1] === 'string') options.host = args[1];
  }
  return [options, cb];
}

/** Largest accepted high-water mark (the native queue counts in 32 bits). */
export const MAX_HIGH_WATER_MARK = 0x40000000;
/** A view's byte length; 0 for a view whose buffer was detached (a detached DataView throws on the getter). */
export function byteLengthOf(view: ArrayBufferView): number {
  try {
    return view.byteLength;
  } catch {
    return 0;
  }
}

/** Validates a high-water mark option: a positive integer up to MAX_HIGH_WATER_MARK. */
export function validateHighWaterMark(value: unknown, name = 'highWaterMark'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_HIGH_WATER_MARK) {
    throw invalidOption(name, `must be an integer between 1 and 2^30. Received ${describeValue(value)}`);
  }
  return value;
}

/**
 * What the stream accepts as a chunk (a string, Buffer or Uint8Array) and as an encoding, checked here with
 * Node's codes: the stream's own checks build their messages from the value itself, which throws uncoded for a
 * proxy or a detached view.
 */
export function checkChunk(chunk: unknown, encoding: unknown): void {
  if (chunk !== null && typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
    throw invalidArg('chunk', 'string or an instance of Buffer or Uint8Array', chunk);
  }
  if (encoding !== undefined && encoding !== null && typeof encoding !== 'function' && typeof encoding !== 'string') {
    throw codedError(TypeError, 'ERR_UNKNOWN_ENCODING', `Unknown encoding: ${describeValue(encoding)}`);
  }
}

/**
 * A stream high-water mark, checked here: the stream's own check describes a bad value with util.inspect, which
 * throws an uncoded error for some values (a detached DataView).
 */
export function streamMark(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The option "${name}" is invalid. Received ${describeValue(value)}`);
  }
  return value;
}

export function validateTimeout(ms: unknown, name: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > TIMEOUT_MAX) {
    if (typeof ms !== 'number') throw invalidArg(name, 'number', ms);
    throw codedError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "${name}" is out of range. It must be >= 0 && <= ${TIMEOUT_MAX}. Received ${ms}`);
  }
  return ms;
}

export function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  (err as Error & { code: string }).code = 'ABORT_ERR';
  return err;
}
