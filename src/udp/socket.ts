/**
 * UdpSocket: a dgram.Socket-compatible UDP socket of a layer. Every destination is vetted by the layer's policy
 * before a datagram leaves, every datagram is counted natively, and the socket is tracked for the ledger and
 * idle reclaim like a TCP socket.
 *
 * Split like Socket over RawSocket: `UdpSocket` is the user-facing EventEmitter; `UdpHandle` (handle.ts) owns
 * the native slot and is what the loop dispatches to and what the layer tracks; waiting sends keep their order
 * in a SendQueue (send-queue.ts); received datagrams are decoded by a DatagramReader (datagram.ts); arguments
 * are parsed in args.ts.
 *
 * Where this deliberately differs from dgram:
 * - bind() accepts only the any-address and port 0 (docs/service.md#binding); anything else is an EACCES 'error'.
 * - Operations on a closed or reclaimed socket fail with EPIPE (docs/service.md#errors) instead of
 *   ERR_SOCKET_DGRAM_NOT_RUNNING; close() on a closed socket is a no-op.
 * - Sends still waiting (on a name resolution or a connect) when the socket closes get EPIPE in their callback;
 *   dgram drops them without a word.
 * - Broadcast and multicast are denied by policy, so setBroadcast(true) and every multicast method throw EACCES.
 *   setTTL() is EACCES too: IP_TTL is not among the service's options (docs/service.md#socket-options).
 */
import { constants as osConstants } from 'node:os';
import { codedError, statusError, systemError } from '../errors.js';
import { getLoop, type Loop } from '../core/loop.js';
import { chargeQuota, chargeSend, recordReceive, type Candidate, type LayerPort } from '../service/port.js';
import { bindRefusal } from '../service/bind.js';
import { bindArgs, connectArgs, invalidArg, lastFunction, sendArgs, socketArgs, type SendCallback, type UdpBindOptions } from './args.js';
import { DatagramReader, type RemoteInfo } from './datagram.js';
import { UdpOptions } from './options.js';
import { UdpHandle, kClose, kLayerClose, kMessage, kRecvError, type UdpOwner } from './handle.js';
import { MAX_SEND_RETRIES, SendQueue, type PendingSend } from './send-queue.js';

/** `layer.createSocket()` options (a subset of dgram's). */
export interface UdpSocketOptions {
  /** Address family of the socket. */
  type: 'udp4' | 'udp6';
  /** SO_RCVBUF to apply when the socket opens (an emulated no-op unless the layer uses `sockopts: 'native'`). */
  recvBufferSize?: number;
  /** SO_SNDBUF to apply when the socket opens (an emulated no-op unless the layer uses `sockopts: 'native'`). */
  sendBufferSize?: number;
  /** Closes the socket when aborted. */
  signal?: AbortSignal;
}

export type { RemoteInfo };

export interface AddressInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

export type MessageListener = (msg: Buffer, rinfo: RemoteInfo) => void;

export type { SendCallback, UdpBindOptions };

type SendData = string | ArrayBufferView | ReadonlyArray<string | ArrayBufferView>;

const EAGAIN = osConstants.errno.EAGAIN;
const ENOBUFS = osConstants.errno.ENOBUFS;

// Socket states.
const S_UNBOUND = 0; // no native socket yet
const S_BOUND = 1;
const S_CLOSED = 2;

// Connection states.
const C_NONE = 0;
const C_CONNECTING = 1;
const C_CONNECTED = 2;

/**
 * A dgram.Socket-compatible UDP socket on sockguard's native core. Create it with `layer.createSocket()`.
 *
 * Events: `'message'` (msg, rinfo), `'listening'`, `'connect'`, `'error'`, `'close'`.
 */
export class UdpSocket extends UdpOptions implements UdpOwner {
  /** 'udp4' or 'udp6'. */
  readonly type: 'udp4' | 'udp6';
  readonly #port: LayerPort;
  readonly #family: 4 | 6;
  readonly #h: UdpHandle;
  #state = S_UNBOUND;
  #connect = C_NONE;
  readonly #sends = new SendQueue((s) => this.#dispatch(s));
  #sizes: [recv: number | undefined, send: number | undefined];
  #onAbort: (() => void) | undefined = undefined;
  #signal: AbortSignal | undefined;
  readonly #reader = new DatagramReader();

  /**
   * @param port the layer's interface for UDP sockets
   * @param options `{ type }` and dgram's buffer-size and signal options
   * @param listener added as a `'message'` listener
   */
  constructor(port: LayerPort, options: UdpSocketOptions, listener?: MessageListener) {
    super();
    // Every option is read once and validated before admission: a refused socket leaves no trace in the layer.
    const args = socketArgs(options, unsupportedType);
    const type = args.type;
    this.type = type;
    this.#family = type === 'udp6' ? 6 : 4;
    this.#sizes = [args.recvBufferSize, args.sendBufferSize];
    if (listener !== undefined) {
      if (typeof listener !== 'function') throw invalidArg('listener', 'function', listener);
      this.on('message', listener);
    }
    this.#port = port;
    this.#h = new UdpHandle(this, port);
    const signal = args.signal;
    // Validated in full before admission: a refused socket leaves no trace in the layer.
    const over = port.quota.enabled ? port.quota.check('creates') : null;
    if (over !== null) {
      port.overQuota();
      throw over;
    }
    port.admit(this.#h);
    if (port.quota.enabled) port.quota.charge('creates');
    if (signal !== undefined) {
      if (signal.aborted) {
        process.nextTick(() => this.close());
      } else {
        this.#signal = signal;
        this.#onAbort = () => this.close();
        signal.addEventListener('abort', this.#onAbort, { once: true });
      }
    }
  }

  // --- dgram API

  /**
   * Binds like dgram's bind(), but only to the any-address and port 0 (docs/service.md#binding): anything else is an EACCES
   * `'error'`. `'listening'` follows a successful bind; `callback` is a `'listening'` listener.
   */
  bind(port?: number | UdpBindOptions | (() => void), address?: string | (() => void), callback?: () => void): this;
  bind(...args: unknown[]): this {
    this._guarded('bind');
    if (this.#state !== S_UNBOUND) throw codedError(Error, 'ERR_SOCKET_ALREADY_BOUND', 'Socket is already bound');
    const { port, address, fd, cb } = bindArgs(args);
    if (cb !== undefined) this.once('listening', cb as () => void);
    let refused: Error | undefined;
    if (fd !== undefined && fd !== null) {
      refused = systemError('EACCES', { syscall: 'bind', detail: 'binding to an existing descriptor is not allowed' });
    } else {
      refused = bindRefusal(address, port, this.#anyAddress());
    }
    if (refused === undefined) refused = chargeQuota(this.#port, 'binds') ?? undefined;
    if (refused !== undefined) {
      // Like dgram's bind failures: asynchronous, as an 'error', and the socket stays unbound.
      if (cb !== undefined) this.removeListener('listening', cb as () => void);
      process.nextTick(emitErrorNT, this, refused);
      return this;
    }
    const err = this.#open();
    if (err !== null) process.nextTick(emitErrorNT, this, err);
    return this;
  }

  /**
   * Associates the socket with one peer, vetted by the policy like a TCP connect. `'connect'` follows;
   * `callback` is a `'connect'` listener, or receives the error instead of an `'error'` event.
   * Throws EISCONN when already connected (or connecting).
   */
  connect(port: number, address?: string | (() => void), callback?: (err?: Error) => void): void;
  connect(port: number, ...rest: unknown[]): void {
    this._guarded('connect');
    const { port: p, address, cb: callback } = connectArgs(port, rest);
    if (this.#connect !== C_NONE) throw systemError('EISCONN', { syscall: 'connect', address: this.#h.remoteAddress, port: this.#h.remotePort || undefined });
    if (callback !== undefined) this.once('connect', callback);
    const openErr = this.#state === S_UNBOUND ? this.#open() : null;
    this.#connect = C_CONNECTING;
    if (openErr !== null) {
      process.nextTick(() => this.#connectDone(openErr, null, p, callback));
      return;
    }
    const host = (address as string | undefined) || this.#loopbackAddress();
    let vetted: Candidate | Promise<Candidate>;
    try {
      vetted = this.#port.vet(host, p, this.#family, 'connect');
    } catch (err) {
      process.nextTick(() => this.#connectDone(err as Error, null, p, callback));
      return;
    }
    if (vetted instanceof Promise) {
      vetted.then(
        (c) => this.#connectDone(null, c, p, callback),
        (err: Error) => this.#connectDone(err, null, p, callback),
      );
    } else {
      // A literal is vetted at once; the outcome is still reported after the caller could add listeners.
      const c = vetted;
      process.nextTick(() => this.#connectDone(null, c, p, callback));
    }
  }

  #connectDone(error: Error | null, dest: Candidate | null, port: number, callback: ((err?: Error) => void) | undefined): void {
    if (this.#state === S_CLOSED || this.#connect !== C_CONNECTING) return;
    let err = error;
    if (err === null) err = this.#familyMismatch(dest!, port, 'connect');
    if (err === null) err = chargeQuota(this.#port, 'connects');
    if (err === null) {
      const r = getLoop().nat.udp_connect(this.#h.id, dest!.family, dest!.address, port);
      if (r < 0) err = statusError(r, { syscall: 'connect', address: dest!.address, port });
    }
    if (err !== null) {
      this.#connect = C_NONE;
      // Sends queued for the connection that never came fail with the same reason, in their callbacks only.
      for (const s of this.#sends.waiting()) {
        if (s.dest === null && !s.ready && s.error === null) {
          s.error = err;
          s.ready = true;
          s.quiet = true;
        }
      }
      if (callback !== undefined) {
        this.removeListener('connect', callback);
        callback(err);
      } else {
        this.emit('error', err);
      }
      this.#sends.drain();
      return;
    }
    this.#connect = C_CONNECTED;
    this.#h.remoteAddress = dest!.address;
    this.#h.remotePort = port;
    this.#port.connected();
    this.#port.touch(this.#h);
    for (const s of this.#sends.waiting()) {
      if (s.dest === null && s.error === null) s.ready = true;
    }
    this.emit('connect');
    this.#sends.drain();
  }

  /** Dissolves the association made by connect(); the local port, options and queued datagrams stay. */
  disconnect(): void {
    this._guarded('disconnect');
    if (this.#connect !== C_CONNECTED) {
      throw codedError(Error, 'ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected');
    }
    const loop = getLoop();
    const local = this.#localPort(loop);
    let r = loop.nat.udp_disconnect(this.#h.id);
    // Linux forgets an automatically assigned port on disconnect; bind the same one again (same descriptor, so
    // options and queued datagrams stay). Should another socket have taken it meanwhile, any port will do.
    if (r >= 0 && local !== 0 && this.#localPort(loop) !== local) {
      const any = this.#family === 6 ? '::' : '0.0.0.0';
      r = loop.nat.udp_bind(this.#h.id, this.#family, any, local);
      if (r < 0) r = loop.nat.udp_bind(this.#h.id, this.#family, any, 0);
    }
    this.#connect = C_NONE;
    this.#h.remoteAddress = undefined;
    this.#h.remotePort = 0;
    if (r < 0) {
      const err = statusError(r, { syscall: 'disconnect' });
      this.#close(err);
      throw err;
    }
  }

  /**
   * Sends one datagram, in every dgram form:
   * `send(msg[, offset, length][, port][, address][, callback])` with a Buffer, TypedArray, DataView, string,
   * or an array of those (sent as one datagram). On a connected socket, omit port and address.
   *
   * Each destination is vetted first: a denied one fails with EACCES (and `rule`) and nothing is sent.
   * `callback(err, bytes)` runs asynchronously; without one, failures are `'error'` events. Sends leave in
   * call order, also when one waits for a name to resolve.
   */
  send(msg: SendData, port?: number, address?: string, callback?: SendCallback): void;
  send(msg: SendData, port?: number, callback?: SendCallback): void;
  send(msg: SendData, callback?: SendCallback): void;
  send(msg: SendData, offset: number, length: number, port?: number, address?: string, callback?: SendCallback): void;
  send(msg: SendData, offset: number, length: number, port?: number, callback?: SendCallback): void;
  send(msg: SendData, offset: number, length: number, callback?: SendCallback): void;
  send(buffer: unknown, offset?: unknown, length?: unknown, port?: unknown, address?: unknown, callback?: unknown): void {
    if (this.#state === S_CLOSED || this.#h.reclaimed) {
      const err = systemError('EPIPE', { syscall: 'send' });
      // With a callback the failure goes there, as a failed TCP write does; without one it is thrown, as dgram
      // throws on a closed socket (no 'error' events after 'close').
      const cb = lastFunction(offset, length, port, address, callback) as SendCallback | undefined;
      if (cb === undefined) throw err;
      process.nextTick(cb, err);
      return;
    }
    const connected = this.#connect !== C_NONE;
    const parsed = sendArgs(connected, buffer, offset, length, port, address, callback, eisconnOnSend);
    const list = parsed.list;
    const p = parsed.port;
    const cb = parsed.cb;
    address = parsed.address;
    this.#port.touch(this.#h);
    if (list.length === 0) list.push(Buffer.alloc(0));
    let bytes = 0;
    for (const b of list) bytes += b.length;
    const s: PendingSend = { data: list, bytes, dest: null, port: p, error: null, ready: false, charged: false, retries: 0, cb, quiet: false };

    if (this.#state === S_UNBOUND) {
      const err = this.#open();
      if (err !== null) {
        s.error = err;
        s.ready = true;
      }
    }
    if (s.error === null) {
      if (connected) {
        s.ready = this.#connect === C_CONNECTED;
      } else {
        const host = (address as string | undefined) || this.#loopbackAddress();
        let vetted: Candidate | Promise<Candidate> | undefined;
        try {
          vetted = this.#port.vet(host, p, this.#family, 'send');
        } catch (err) {
          s.error = err as Error;
          s.ready = true;
        }
        if (vetted instanceof Promise) {
          vetted.then(
            (c) => {
              s.dest = c;
              s.ready = true;
              this.#sends.drain();
            },
            (err: Error) => {
              s.error = err;
              s.ready = true;
              this.#sends.drain();
            },
          );
        } else if (vetted !== undefined) {
          s.dest = vetted;
          s.ready = true;
        }
      }
    }
    // Nothing ahead of it: send now. Otherwise (or when the kernel had no room) it waits its turn.
    this.#sends.push(s);
  }

  /** Sends (or fails) one ready send. False when the kernel had no room: it stays first in line for a retry. */
  #dispatch(s: PendingSend): boolean {
    let err = s.error;
    const dest = s.dest;
    if (err === null && dest !== null) err = this.#familyMismatch(dest, s.port, 'send');
    if (err === null && !s.charged && this.#port.quota.enabled) err = chargeSend(this.#port, s.bytes);
    if (err !== null) {
      this.#report(s, err);
      return true;
    }
    s.charged = true;
    const data = s.data.length === 1 ? s.data[0]! : Buffer.concat(s.data, s.bytes);
    const nat = getLoop().nat;
    const r = dest === null ? nat.udp_send(this.#h.id, data, null, 0, 0) : nat.udp_send(this.#h.id, data, dest.address, s.port, dest.family);
    if (r >= 0) {
      this.#port.touch(this.#h);
      if (s.cb !== undefined) process.nextTick(s.cb, null, r);
      return true;
    }
    if ((r === -EAGAIN || r === -ENOBUFS) && s.retries++ < MAX_SEND_RETRIES) {
      // The send buffer drains on its own: try again shortly, keeping this datagram (and everything after it)
      // in order.
      this.#sends.retrySoon();
      return false;
    }
    this.#report(s, statusError(r, { syscall: 'send', address: dest?.address ?? this.#h.remoteAddress, port: dest === null ? this.#h.remotePort : s.port }));
    return true;
  }

  #report(s: PendingSend, err: Error): void {
    if (s.cb !== undefined) process.nextTick(s.cb, err);
    else if (!s.quiet) process.nextTick(emitErrorNT, this, err);
  }

  #familyMismatch(dest: Candidate, port: number, syscall: string): Error | null {
    if (dest.family === this.#family) return null;
    // As dgram: a destination of the other family is EINVAL, whatever the policy thinks of it.
    return systemError('EINVAL', { syscall, address: dest.address, port });
  }

  /**
   * Closes the socket; `'close'` follows asynchronously and `callback` is a `'close'` listener. Closing a
   * closed (or reclaimed) socket does nothing but call `callback`.
   */
  close(callback?: () => void): this {
    if (callback !== undefined && typeof callback !== 'function') throw invalidArg('callback', 'function', callback);
    if (this.#state === S_CLOSED) {
      if (callback !== undefined) process.nextTick(callback);
      return this;
    }
    if (callback !== undefined) this.once('close', callback);
    this.#close(null);
    return this;
  }

  /** The local address: `{ address, family, port }`. Throws EBADF before the socket is bound, as dgram does. */
  address(): AddressInfo {
    this._guarded('getsockname');
    const loop = getLoop();
    const r = this.#state === S_BOUND ? loop.nat.socket_name(this.#h.id, false) : -osConstants.errno.EBADF;
    if (typeof r === 'number') throw statusError(r, { syscall: 'getsockname' });
    return { address: r[1], family: r[0] === 6 ? 'IPv6' : 'IPv4', port: r[2] };
  }

  /** The connected peer: `{ address, family, port }`. Throws ERR_SOCKET_DGRAM_NOT_CONNECTED otherwise. */
  remoteAddress(): AddressInfo {
    this._guarded('getpeername');
    const h = this.#h;
    if (this.#connect !== C_CONNECTED || h.remoteAddress === undefined) {
      throw codedError(Error, 'ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected');
    }
    return { address: h.remoteAddress, family: h.remoteAddress.includes(':') ? 'IPv6' : 'IPv4', port: h.remotePort };
  }

  /** Bytes of the sends still waiting (for a resolution, a connect or kernel buffer space). */
  getSendQueueSize(): number {
    return this.#sends.bytes;
  }

  /** Number of sends still waiting. */
  getSendQueueCount(): number {
    return this.#sends.count;
  }

  /** Keeps the process alive while the socket is open (the default). */
  ref(): this {
    this.#h.ref();
    this.#sends.ref();
    return this;
  }

  /** Lets the process exit while the socket is open. */
  unref(): this {
    this.#h.unref();
    this.#sends.unref();
    return this;
  }

  /** True once the layer closed this socket for inactivity. */
  get reclaimed(): boolean {
    return this.#h.reclaimed;
  }

  /** Bytes the kernel accepted for sending. */
  get bytesWritten(): number {
    return this.#h.bytesWritten;
  }

  /** Bytes received. */
  get bytesRead(): number {
    return this.#h.bytesRead;
  }

  /** Datagrams sent (send syscalls that succeeded). */
  get sendCalls(): number {
    return this.#h.sendCalls;
  }

  /** Datagrams received. */
  get recvCalls(): number {
    return this.#h.recvCalls;
  }

  // --- internals

  /** @internal every operation: EPIPE on a closed or reclaimed socket, else a refresh of the reclaim deadline */
  protected _guarded(syscall: string): UdpHandle {
    this.#h.guard(syscall);
    return this.#h;
  }

  /** Opens the native socket bound to the any-address, port 0, and announces 'listening' (also when implicit). */
  #open(): Error | null {
    const loop = getLoop();
    const r = this.#h.open(loop, this.#family, 0);
    if (r < 0) return statusError(r, { syscall: 'bind', address: this.#anyAddress(), port: 0 });
    this.#state = S_BOUND;
    const [recv, send] = this.#sizes;
    try {
      if (recv !== undefined) this.setRecvBufferSize(recv);
      if (send !== undefined) this.setSendBufferSize(send);
    } catch (err) {
      return err as Error;
    }
    process.nextTick(emitListeningNT, this);
    return null;
  }

  #localPort(loop: Loop): number {
    const r = loop.nat.socket_name(this.#h.id, false);
    return typeof r === 'number' ? 0 : r[2];
  }

  #anyAddress(): string {
    return this.#family === 6 ? '::' : '0.0.0.0';
  }

  /** dgram's default destination when none is given. */
  #loopbackAddress(): string {
    return this.#family === 6 ? '::1' : '127.0.0.1';
  }

  /** Closes for any reason: `err` is emitted as 'error' before 'close' (null: no 'error'). */
  #close(err: Error | null): void {
    if (this.#state === S_CLOSED) return;
    this.#state = S_CLOSED;
    this.#h.shut = true;
    this.#connect = C_NONE;
    this.#sends.close(sendEpipe);
    if (this.#signal !== undefined) {
      this.#signal.removeEventListener('abort', this.#onAbort!);
      this.#signal = undefined;
    }
    this.#h.drop();
    // After the final counters are kept, so the ledger folds them exactly once.
    this.#port.release(this.#h);
    process.nextTick(emitCloseNT, this, err);
  }

  /** @internal idle reclaim and over-quota receives */
  [kClose](err: Error | null): void {
    this.#close(err);
  }

  /** @internal layer.close() */
  [kLayerClose](): Promise<void> {
    if (this.#state === S_CLOSED) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.once('close', () => resolve()));
    this.#close(null);
    return done;
  }

  /** @internal a datagram arrived; `offset` is its address header in the loop's slab, the payload follows. */
  [kMessage](slab: Buffer, offset: number, length: number): void {
    const port = this.#port;
    if (port.quota.enabled) {
      // Received bytes are billed whatever happens; past the limit the socket fails with the quota error.
      const over = recordReceive(port, length);
      if (over !== null) {
        this.#close(over);
        return;
      }
    }
    port.touch(this.#h);
    const [msg, rinfo] = this.#reader.read(slab, offset, length);
    this.emit('message', msg, rinfo);
  }

  /**
   * @internal an error from the receive path. On Linux only a connected socket sees one: the ICMP answer to an
   * earlier datagram (port unreachable → ECONNREFUSED). As with dgram it is an 'error' with syscall 'recvmsg'
   * and the socket stays open.
   */
  [kRecvError](status: number): void {
    if (this.#state === S_CLOSED) return;
    const h = this.#h;
    this.emit('error', statusError(status, { syscall: 'recvmsg', address: h.remoteAddress, port: h.remotePort || undefined }));
  }
}

function emitErrorNT(socket: UdpSocket, err: Error): void {
  if (!socket.reclaimed) socket.emit('error', err);
}

function emitListeningNT(socket: UdpSocket): void {
  socket.emit('listening');
}

function emitCloseNT(socket: UdpSocket, err: Error | null): void {
  if (err !== null) socket.emit('error', err);
  socket.emit('close');
}

/**
 * A socket type the service does not offer (docs/service.md#tcp-and-udp: UDP and TCP over IPv4/IPv6 only): a
 * Unix datagram socket is another address family, anything else another protocol.
 */
function unsupportedType(type: unknown, detail: string): Error {
  return systemError(type === 'unix_dgram' ? 'EAFNOSUPPORT' : 'EPROTONOSUPPORT', { syscall: 'socket', detail });
}

function eisconnOnSend(): Error {
  return systemError('EISCONN', { syscall: 'send', detail: 'the socket is connected: omit port and address' });
}

function sendEpipe(): Error {
  return systemError('EPIPE', { syscall: 'send' });
}
