/**
 * Argument parsing of the dgram-compatible UdpSocket: every public method's arguments are validated and
 * normalised here, before the socket does anything, so a bad argument is always a coded error thrown
 * synchronously and never a half-done operation.
 *
 * The argument forms are dgram's. Where dgram itself would crash or throw an uncoded error (a detached buffer,
 * a symbol as an offset, an object without a prototype in a message), a coded `TypeError` is thrown instead.
 * Nothing here reads a property of a user object more than once, and error messages never convert user values
 * with `String()`, which can throw or recurse without bound.
 */
import { codedError, describeValue, invalidArg, validateSignal } from '../errors.js';

export { invalidArg };

/** `bind(options)`, as dgram takes it. */
export interface UdpBindOptions {
  port?: number;
  address?: string;
  exclusive?: boolean;
  fd?: number;
}

export type SendCallback = (error: Error | null, bytes?: number) => void;

/** `send()` after parsing: the datagram's parts, its destination (unconnected sockets) and its callback. */
export interface SendArgs {
  list: Buffer[];
  /** 0 on a connected socket. */
  port: number;
  address: string | undefined;
  cb: SendCallback | undefined;
}

/** The constructor's options after validation. */
export interface SocketArgs {
  type: 'udp4' | 'udp6';
  recvBufferSize: number | undefined;
  sendBufferSize: number | undefined;
  signal: AbortSignal | undefined;
}


export function badPort(port: unknown): RangeError {
  return codedError(RangeError, 'ERR_SOCKET_BAD_PORT', `Port should be > 0 and < 65536. Received ${describeValue(port)}.`);
}

/** dgram's validatePort(port, 'Port', false): an integer (or numeric string) from 1 to 65535. */
export function validatePort(port: unknown): number {
  const n = typeof port === 'string' && port.trim() !== '' ? Number(port) : port;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) throw badPort(port);
  return n;
}

/** A buffer-size option or argument: a positive int32. */
export function bufferSize(size: unknown, name: string): number | undefined {
  if (size === undefined) return undefined;
  if (typeof size !== 'number') throw invalidArg(name, 'number', size);
  if (!Number.isInteger(size) || size <= 0 || size > 0x7fffffff) {
    throw codedError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "${name}" is out of range. It must be a positive int32. Received ${size}`);
  }
  return size;
}

/**
 * `createSocket(options)`: type and buffer sizes and signal, each property read once. Throws the system error
 * the service answers for an unsupported type (EAFNOSUPPORT for Unix datagrams, EPROTONOSUPPORT otherwise),
 * built by `unsupported`.
 */
export function socketArgs(options: unknown, unsupported: (type: unknown, detail: string) => Error): SocketArgs {
  if (options === null || typeof options !== 'object') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "options" argument must be of type object or a string');
  }
  const o = options as Record<string, unknown>;
  const type = o.type;
  if (type !== 'udp4' && type !== 'udp6') throw unsupported(type, `unsupported socket type ${typeof type === 'string' ? type : describeValue(type)}`);
  return {
    type,
    recvBufferSize: bufferSize(o.recvBufferSize, 'recvBufferSize'),
    sendBufferSize: bufferSize(o.sendBufferSize, 'sendBufferSize'),
    signal: validateSignal(o.signal, 'options.signal'),
  };
}

/** `bind([port][, address][, callback])` or `bind(options[, callback])`, validated. */
export function bindArgs(args: readonly unknown[]): { port: number | undefined; address: string | undefined; fd: unknown; cb: (() => void) | undefined } {
  let port: unknown;
  let address: unknown;
  let fd: unknown;
  const last = args[args.length - 1];
  const cb = typeof last === 'function' ? (last as () => void) : undefined;
  const first = args[0];
  if (first !== null && typeof first === 'object') {
    const o = first as UdpBindOptions;
    port = o.port;
    address = o.address;
    fd = o.fd;
  } else {
    port = typeof first === 'function' ? undefined : first;
    address = typeof args[1] === 'function' ? undefined : args[1];
  }
  if (address !== undefined && address !== null && typeof address !== 'string') throw invalidArg('address', 'string', address);
  if (port !== undefined && port !== null && (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)) {
    throw badPort(port);
  }
  return { port: (port ?? undefined) as number | undefined, address: (address ?? undefined) as string | undefined, fd, cb };
}

/** `connect(port[, address][, callback])`, validated. */
export function connectArgs(port: unknown, rest: readonly unknown[]): { port: number; address: string | undefined; cb: ((err?: Error) => void) | undefined } {
  let address = rest[0];
  let cb = rest[1];
  if (typeof address === 'function') {
    cb = address;
    address = undefined;
  }
  if (cb !== undefined && typeof cb !== 'function') throw invalidArg('callback', 'function', cb);
  if (address !== undefined && address !== null && typeof address !== 'string') throw invalidArg('address', 'string', address);
  return { port: validatePort(port), address: (address ?? undefined) as string | undefined, cb: cb as ((err?: Error) => void) | undefined };
}

/** The last function among `args`: the callback of a send that cannot be parsed (a closed socket's). */
export function lastFunction(...args: unknown[]): unknown {
  for (let i = args.length - 1; i >= 0; i--) if (typeof args[i] === 'function') return args[i];
  return undefined;
}

/**
 * A Buffer over the bytes of a view. A view whose ArrayBuffer was transferred (detached) has no bytes to send:
 * dgram crashes on one, here it is a coded TypeError.
 */
export function asBuffer(view: ArrayBufferView, name = 'buffer'): Buffer {
  if (Buffer.isBuffer(view) && view.buffer.byteLength !== 0) return view;
  try {
    return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  } catch {
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The "${name}" argument is a view of a detached ArrayBuffer`);
  }
}

function offsetArg(value: unknown, name: string): number {
  // dgram coerces with `>>> 0`, which throws an uncoded TypeError on symbols and prototype-less objects and runs
  // user valueOf(); only numbers (and the absent value) are taken.
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number') throw invalidArg(name, 'number', value);
  return value >>> 0;
}

export function sliceBuffer(buffer: unknown, offset: unknown, length: unknown): Buffer {
  let b: Buffer;
  if (typeof buffer === 'string') b = Buffer.from(buffer);
  else if (ArrayBuffer.isView(buffer)) b = asBuffer(buffer);
  else throw invalidArg('buffer', 'Buffer, TypedArray, DataView or string', buffer);
  const off = offsetArg(offset, 'offset');
  const len = offsetArg(length, 'length');
  if (off > b.length) throw codedError(RangeError, 'ERR_BUFFER_OUT_OF_BOUNDS', '"offset" is outside of buffer bounds');
  if (off + len > b.length) throw codedError(RangeError, 'ERR_BUFFER_OUT_OF_BOUNDS', '"length" is outside of buffer bounds');
  return b.subarray(off, off + len);
}

export function bufferList(items: readonly unknown[]): Buffer[] | null {
  const out: Buffer[] = new Array<Buffer>(items.length);
  for (let i = 0; i < items.length; i++) {
    const it = items[i];
    if (typeof it === 'string') out[i] = Buffer.from(it);
    else if (ArrayBuffer.isView(it)) out[i] = asBuffer(it, 'buffer list arguments');
    else return null;
  }
  return out;
}

/**
 * `send()` in every dgram form — `send(msg[, offset, length][, port][, address][, callback])`, msg a Buffer,
 * TypedArray, DataView, string or an array of those — with dgram's argument shuffling, validated.
 * `connected`: the socket has (or is getting) a peer, so port and address must be omitted.
 */
export function sendArgs(
  connected: boolean,
  buffer: unknown,
  offset: unknown,
  length: unknown,
  port: unknown,
  address: unknown,
  callback: unknown,
  eisconn: () => Error,
): SendArgs {
  if (!connected) {
    if (address || (port && typeof port !== 'function')) {
      buffer = sliceBuffer(buffer, offset, length);
    } else {
      callback = port;
      port = offset;
      address = length;
    }
  } else {
    if (typeof length === 'number') {
      buffer = sliceBuffer(buffer, offset, length);
      if (typeof port === 'function') {
        callback = port;
        port = null;
      }
    } else {
      callback = offset;
    }
    if (port || address) throw eisconn();
  }
  let list: Buffer[] | null;
  if (Array.isArray(buffer)) {
    list = bufferList(buffer);
    if (list === null) throw invalidArg('buffer list arguments', 'Buffer, TypedArray, DataView or string', buffer);
  } else if (typeof buffer === 'string') {
    list = [Buffer.from(buffer)];
  } else if (ArrayBuffer.isView(buffer)) {
    list = [asBuffer(buffer)];
  } else {
    throw invalidArg('buffer', 'Buffer, TypedArray, DataView or string', buffer);
  }
  const p = connected ? 0 : validatePort(port);
  if (typeof address === 'function') {
    callback = address;
    address = undefined;
  } else if (address !== undefined && address !== null && typeof address !== 'string') {
    throw invalidArg('address', 'string', address);
  }
  return { list, port: p, address: (address || undefined) as string | undefined, cb: typeof callback === 'function' ? (callback as SendCallback) : undefined };
}
