/**
 * Socket: a net.Socket-compatible Duplex over a RawSocket. Everything that makes it fast happens below it
 * (native write coalescing, batched reads); this file only speaks the stream protocol and net's surface.
 */
import { Duplex } from 'node:stream';
import { endpointSockoptHooks } from '../core/endpoint.js';
import { codedError, describeValue, invalidArg, statusError, systemError, validateSignal } from '../errors.js';
import { NO_PORT, defaultPort } from '../service/port.js';
import { getsockopt, setsockopt } from '../service/sockopts.js';
import { RAW_F_DETACHING, RAW_F_FAST_DRAIN, RAW_F_FULL, RAW_F_TIMEOUT_OFF, RAW_F_UPGRADED, RawSocket, RawState } from './raw.js';
import { park } from '../handoff/park.js';
import {
  abortError,
  byteLengthOf,
  checkChunk,
  normalizeConnectArgs,
  streamMark,
  validateTimeout,
  type SocketConnectOptions,
  type SocketOptions,
} from './args.js';

export { TIMEOUT_MAX, normalizeConnectArgs, type SocketConnectOptions, type SocketOptions } from './args.js';
import { kOver, kRaw } from './symbols.js';

type Callback = (err?: Error | null) => void;

const kWriteCb = Symbol('sockguard.writeCb');
const kFinalCb = Symbol('sockguard.finalCb');
const kTimer = Symbol('sockguard.timer');

/**
 * Largest Buffer a read is handed over in. A larger read (the core reads up to 512 KiB at once) becomes several
 * chunks: glibc serves allocations above its mmap threshold (128 KiB by default) with a fresh mapping, faulted in
 * page by page and unmapped again when V8 frees the Buffer, which costs more than the copy itself; 64 KiB pieces
 * come from the heap and reuse its pages, as net's 64 KiB reads do.
 */
const CHUNK_MAX = 64 * 1024;

function pushPieces(s: Socket, slab: Buffer, offset: number, length: number): boolean {
  let more = true;
  for (const end = offset + length; offset < end; offset += CHUNK_MAX) {
    const n = Math.min(CHUNK_MAX, end - offset);
    const chunk = Buffer.allocUnsafe(n);
    slab.copy(chunk, 0, offset, offset + n);
    more = s.push(chunk);
  }
  return more;
}

/**
 * The raw socket of a Duplex: delivers its events straight to the stream (no handlers object per socket).
 */
export class StreamRaw extends RawSocket {
  /** The stream this raw socket serves (its owner): a prototype getter, so it costs no field. */
  get s(): Socket {
    return this.owner as Socket;
  }

  protected override emitConnect(err: Error | null): void {
    if (err === null) this.s._connected();
  }

  protected override emitData(slab: Buffer, offset: number, length: number): void {
    const s = this.s;
    let more: boolean;
    if (length <= CHUNK_MAX) {
      const chunk = Buffer.allocUnsafe(length);
      slab.copy(chunk, 0, offset, offset + length);
      more = s.push(chunk);
    } else {
      more = pushPieces(s, slab, offset, length);
    }
    const timer = s[kTimer];
    if (timer !== undefined) timer.refresh();
    if (more) return;
    // Over the stream's mark. A flowing stream hands its buffer on within this turn (a 'data' or 'readable' flow on
    // the next tick) and asks for more, so stopping the native reads now would only cost a watch change and a turn
    // per large read (a 1 MiB reply arrives as two or three). Reading stops once another chunk arrives while the
    // buffer is still full: one read batch more at most, which bounds memory as before.
    if (this.flags & RAW_F_FULL || s.readableFlowing !== true) {
      this.flags &= ~RAW_F_FULL;
      this.pause();
    } else {
      this.flags |= RAW_F_FULL;
    }
  }

  protected override emitEnd(): void {
    this.s.push(null);
  }

  protected override emitDrain(): void {
    const s = this.s;
    const cb = s[kWriteCb];
    if (cb !== null) {
      s[kWriteCb] = null;
      cb();
    }
    if (this.flags & RAW_F_FAST_DRAIN) {
      this.flags &= ~RAW_F_FAST_DRAIN;
      if (!s.destroyed) s.emit('drain');
    }
  }

  protected override emitFinish(): void {
    const s = this.s;
    const cb = s[kFinalCb];
    if (cb !== null) {
      s[kFinalCb] = null;
      cb();
    }
  }

  protected override emitClose(err: Error | null): void {
    const s = this.s;
    if (s.destroyed) return;
    s.destroy(err ?? undefined);
  }

  protected override emitLookup(address: string, family: 4 | 6, host: string): void {
    this.s.emit('lookup', null, address, family, host);
  }

  /** @internal descriptor hand-off: bytes read before the detach, delivered before anything new */
  _deliver(buf: Buffer): void {
    if (!this.s.push(buf)) this.pause();
  }

  /** @internal the Duplex's operations share the endpoint's EPIPE/activity guard */
  _operation(syscall: string): void {
    this.operation(syscall);
  }
}

export class Socket extends Duplex {
  /** @internal */ [kRaw]: RawSocket;
  /** @internal */ [kWriteCb]: Callback | null = null;
  /** @internal */ [kFinalCb]: Callback | null = null;
  /** @internal */ [kTimer]: NodeJS.Timeout | undefined = undefined;
  /** @internal the TLS socket over this one's connection (STARTTLS); on the prototype until set, so it costs a socket nothing */
  declare [kOver]: Duplex | undefined;

  /** `raw` is for subclasses that bring their own kind of raw socket (TLS). */
  constructor(options: SocketOptions = {}, raw: StreamRaw = new StreamRaw()) {
    super({
      allowHalfOpen: options.allowHalfOpen ?? false,
      readableHighWaterMark: streamMark(options.readableHighWaterMark, 'readableHighWaterMark'),
      // writableLength counts the native queue too, so the stream's mark is the queue's: write() says stop
      // once about that many bytes wait, as net's does at its own mark.
      writableHighWaterMark: streamMark(options.writableHighWaterMark, 'writableHighWaterMark') ?? options.layer?.port.highWaterMark,
      signal: options.signal,
      emitClose: false,
      autoDestroy: true,
      decodeStrings: true,
    });
    raw.owner = this;
    this[kRaw] = raw;
    if (options.layer) {
      raw.port = options.layer.port;
      raw.highWaterMark = raw.port.highWaterMark;
    }
  }

  /**
   * Connects like net.Socket#connect: `(options[, cb])` or `(port[, host][, cb])`. Host names are resolved by
   * the layer and every address is vetted before the connection goes to it.
   */
  connect(options: SocketConnectOptions, connectListener?: () => void): this;
  connect(port: number | string, host?: string, connectListener?: () => void): this;
  connect(port: number | string, connectListener?: () => void): this;
  connect(...args: unknown[]): this {
    const [options, cb] = normalizeConnectArgs(args);
    if (this.connecting || this[kRaw].wasOpen) {
      // As with net: a second connect() fails the socket with an 'error' (EALREADY while connecting, EISCONN
      // once connected) instead of throwing at the caller.
      const err = systemError(this.connecting ? 'EALREADY' : 'EISCONN', {
        syscall: 'connect',
        address: typeof options.host === 'string' ? options.host : undefined,
        port: typeof options.port === 'number' ? options.port : undefined,
      });
      process.nextTick(destroyNT, this, err);
      return this;
    }
    if (this.destroyed) {
      throw codedError(Error, 'ERR_SOCKET_CLOSED', 'Socket is closed');
    }
    // `path: null` (what Node's http agents pass) means "no path"; a path is a Unix domain socket, which the
    // outbound service does not offer: an 'error', like any other failed connect.
    if (options.path !== undefined && options.path !== null) {
      const err = systemError('EAFNOSUPPORT', {
        syscall: 'connect',
        address: typeof options.path === 'string' ? options.path : describeValue(options.path),
        detail: 'Unix domain sockets are not part of the outbound socket service',
      });
      process.nextTick(destroyNT, this, err);
      return this;
    }
    const raw = this[kRaw];
    const port = raw.port === NO_PORT ? defaultPort() : raw.port;
    // Everything is validated before anything is admitted: a bad option leaves no trace in the layer.
    const request = port.validateConnect(options);
    const timeout = options.timeout === undefined ? undefined : validateTimeout(options.timeout, 'timeout');
    const signal = validateSignal(options.signal, 'options.signal');
    if (raw.port === NO_PORT) {
      raw.port = port;
      raw.highWaterMark = port.highWaterMark;
    }
    if (typeof cb === 'function') this.once('connect', cb);
    if (timeout !== undefined) this.setTimeout(timeout);
    if (options.noDelay) this.setNoDelay(true);
    if (options.keepAlive) this.setKeepAlive(true, options.keepAliveInitialDelay ?? 0);
    port.connect(raw, request);
    if (signal !== undefined) {
      if (signal.aborted) {
        process.nextTick(() => this.destroy(abortError(signal)));
      } else {
        const onAbort = () => this.destroy(abortError(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        this.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    }
    return this;
  }

  /** True while the connection is being set up (resolution, policy, TCP handshake). */
  get connecting(): boolean {
    return this[kRaw].connecting;
  }

  /** @internal called by the layer once the connection is up */
  _connected(): void {

    this.emit('connect');
    this.emit('ready');
  }

  /** Writes like net.Socket#write; after an idle reclaim it fails with EPIPE. */
  override write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    const raw = this[kRaw];
    // After a hand-off or a TLS upgrade the connection is no longer this stream's to write to.
    if (raw.reclaimed || raw.flags & (RAW_F_DETACHING | RAW_F_UPGRADED)) {
      const callback = typeof encoding === 'function' ? encoding : cb;
      const err = systemError('EPIPE', { syscall: 'write' });
      if (typeof callback === 'function') process.nextTick(callback as Callback, err);
      return false;
    }
    // Fast path: with nothing buffered in the stream (not corked, not ending, nothing in flight), a Buffer can go
    // straight to the native queue, which keeps order and coalesces on its own. This skips the Writable
    // bookkeeping that dominates the cost of small writes; anything unusual takes the stream path.
    const ws = (this as unknown as { _writableState: WritableStateView })._writableState;
    if (
      ws.length === 0 &&
      ws.corked === 0 &&
      raw.state === RawState.Open &&
      !ws.ending &&
      !ws.destroyed &&
      this[kWriteCb] === null &&
      (chunk instanceof Uint8Array || (typeof chunk === 'string' && chunk.length > 0 && (chunk = fastBytes(chunk, encoding, ws)) !== null))
    ) {
      const callback = typeof encoding === 'function' ? encoding : cb;
      let ok: boolean;
      try {
        ok = raw.write(chunk as Uint8Array);
      } catch (err) {
        if (typeof callback === 'function') process.nextTick(callback as Callback, err);
        this.destroy(err as Error);
        return false;
      }
      const timer = this[kTimer];
      if (timer !== undefined) timer.refresh();
      if (typeof callback === 'function') process.nextTick(callback as Callback, null);
      if (!ok) raw.flags |= RAW_F_FAST_DRAIN;
      return ok;
    }
    // Nothing to send (an empty or detached view) is accepted and changes nothing, as with net; the stream's own
    // path would try to wrap a detached view in a Buffer and throw.
    if (ArrayBuffer.isView(chunk) && byteLengthOf(chunk) === 0 && !ws.ending && !ws.destroyed) {
      const callback = typeof encoding === 'function' ? encoding : cb;
      if (typeof callback === 'function') process.nextTick(callback as Callback, null);
      return !this.writableNeedDrain;
    }
    checkChunk(chunk, encoding);
    return (super.write as (...a: unknown[]) => boolean)(chunk, encoding, cb);
  }

  /** Ends like net.Socket#end; the optional last chunk is checked as write() checks it. */
  override end(chunk?: unknown, encoding?: unknown, cb?: unknown): this {
    if (typeof chunk === 'function') return super.end(chunk as () => void);
    if (chunk !== undefined && chunk !== null) {
      checkChunk(chunk, encoding);
      // An empty (or detached) view adds nothing; the stream would try to wrap a detached one and throw.
      if (ArrayBuffer.isView(chunk) && byteLengthOf(chunk) === 0) {
        const callback = typeof encoding === 'function' ? encoding : cb;
        return typeof callback === 'function' ? super.end(callback as () => void) : super.end();
      }
    }
    return (super.end as (...a: unknown[]) => this)(chunk, encoding, cb);
  }

  /**
   * Reads a socket option. Emulate mode (the default) answers App Engine's fixed values; with `buflen` the
   * little-endian bytes, truncated. Unsupported options throw EACCES. SO_ERROR is real.
   */
  getsockopt(level: number, name: number, buflen?: number): number | Buffer {
    const raw = this.#operation('getsockopt');
    return getsockopt(raw.port.sockopts, endpointSockoptHooks, raw, level, name, buflen);
  }

  /** Sets a socket option: validated, then ignored in emulate mode (a later get still answers the mock). */
  setsockopt(level: number, name: number, value: number | boolean | Buffer | { onoff: number | boolean; linger: number }): void {
    const raw = this.#operation('setsockopt');
    setsockopt(raw.port.sockopts, endpointSockoptHooks, raw, level, name, value);
  }

  /** Every operation refreshes the reclaim deadline; on a reclaimed or closed socket it is EPIPE. */
  #operation(syscall: string): StreamRaw {
    const raw = this[kRaw] as StreamRaw;
    raw._operation(syscall);
    return raw;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: Callback): void {
    this.#handOver(chunk, null, cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, cb: Callback): void {
    const bufs = new Array<Buffer>(chunks.length);
    for (let i = 0; i < chunks.length; i++) bufs[i] = chunks[i]!.chunk;
    this.#handOver(null, bufs, cb);
  }

  /** The stream path into the raw socket: the callback waits for 'drain' when the native queue is full. */
  #handOver(one: Buffer | null, many: Buffer[] | null, cb: Callback): void {
    let ok: boolean;
    try {
      ok = one !== null ? this[kRaw].write(one) : this[kRaw].writev(many!);
    } catch (err) {
      cb(err as Error);
      return;
    }
    const timer = this[kTimer];
    if (timer !== undefined) timer.refresh();
    if (ok) cb();
    else this[kWriteCb] = cb;
  }

  override _final(cb: Callback): void {
    const raw = this[kRaw];
    if (raw.state === RawState.Closed) {
      cb();
      return;
    }
    this[kFinalCb] = cb;
    raw.end();
  }

  override _read(): void {
    const raw = this[kRaw];
    raw.flags &= ~RAW_F_FULL;
    if (raw.paused) raw.resume();
  }

  /** Pauses like Readable#pause; a buffer left over its mark then stops the native reads at once. */
  override pause(): this {
    const raw = this[kRaw];
    if (raw.flags & RAW_F_FULL) {
      raw.flags &= ~RAW_F_FULL;
      raw.pause();
    }
    return super.pause();
  }

  override _destroy(err: Error | null, cb: Callback): void {
    const timer = this[kTimer];
    if (timer !== undefined) {
      clearTimeout(timer);
      this[kTimer] = undefined;
    }
    this[kRaw].destroy(err);
    cb(err);
    // The connection goes on under TLS: closing the socket underneath closes it (with its error: a connect that
    // failed is the TLS socket's failure), as it would under Node's TLS.
    const over = this[kOver];
    if (over !== undefined && !over.destroyed) over.destroy(err ?? undefined);
    // net emits 'close' with hadError after 'error', once its handle has closed (a later loop phase, after
    // everything queued by this tick): a TLS socket wrapping this one reports its own 'error' first, as over net.
    setImmediate(emitCloseNT, this, err != null);
  }

  /** Half-closes, then destroys once everything is flushed. */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  /**
   * Emits 'timeout' after `ms` without activity (the socket stays open, as with net). 0 disables.
   */
  setTimeout(ms: number, callback?: () => void): this {
    validateTimeout(ms, 'msecs');
    if (callback !== undefined && typeof callback !== 'function') throw invalidArg('callback', 'function', callback);
    const raw = this[kRaw];
    raw.port.touch(raw);
    const old = this[kTimer];
    if (old !== undefined) clearTimeout(old);
    this[kTimer] = undefined;
    if (ms === 0) {
      raw.flags |= RAW_F_TIMEOUT_OFF;
      if (callback !== undefined) this.removeListener('timeout', callback);
      return this;
    }
    if (callback !== undefined) this.once('timeout', callback);
    const timer = setTimeout(emitTimeout, ms, this);
    timer.unref();
    this[kTimer] = timer;
    return this;
  }

  /** The idle timeout set with setTimeout() (0 once turned off), or undefined if never set, as with net. */
  get timeout(): number | undefined {
    const t = this[kTimer] as unknown as { _idleTimeout?: number } | undefined;
    if (t !== undefined) return t._idleTimeout;
    return this[kRaw].flags & RAW_F_TIMEOUT_OFF ? 0 : undefined;
  }

  /** net's older name for writableLength. */
  get bufferSize(): number {
    return this.writableLength;
  }

  /**
   * Closes with a TCP RST instead of a FIN (SO_LINGER on with a zero time, then close), discarding what is
   * queued, as net's resetAndDestroy(). A socket still connecting is reset once connected; one that never had a
   * connection fails with ERR_SOCKET_CLOSED.
   */
  resetAndDestroy(): this {
    const raw = this[kRaw];
    if (raw.state === RawState.Open) {
      raw.abort();
      this.destroy();
    } else if (this.connecting) {
      this.once('connect', () => this.resetAndDestroy());
    } else {
      this.destroy(codedError(Error, 'ERR_SOCKET_CLOSED', 'Socket is closed'));
    }
    return this;
  }

  setNoDelay(noDelay = true): this {
    this[kRaw].setNoDelay(!!noDelay);
    return this;
  }

  setKeepAlive(enable = false, initialDelay = 0): this {
    this[kRaw].setKeepAlive(!!enable, initialDelay);
    return this;
  }

  ref(): this {
    this[kRaw].ref();
    return this;
  }

  unref(): this {
    this[kRaw].unref();
    return this;
  }

  address(): { address: string; family: string; port: number } | Record<string, never> {
    const raw = this[kRaw];
    if (raw.reclaimed) throw systemError('EPIPE', { syscall: 'getsockname' });
    raw.port.touch(raw);
    const n = raw.name(false);
    if (!n) return {};
    return { address: n.address, family: n.family === 6 ? 'IPv6' : 'IPv4', port: n.port };
  }

  get remoteAddress(): string | undefined {
    return this[kRaw].wasOpen ? this[kRaw].remoteAddress : undefined;
  }

  get remotePort(): number | undefined {
    return this[kRaw].wasOpen ? this[kRaw].remotePort : undefined;
  }

  get remoteFamily(): string | undefined {
    if (!this[kRaw].wasOpen) return undefined;
    return this[kRaw].remoteFamily === 6 ? 'IPv6' : 'IPv4';
  }

  get localAddress(): string | undefined {
    return this[kRaw].name(false)?.address;
  }

  get localPort(): number | undefined {
    return this[kRaw].name(false)?.port;
  }

  get localFamily(): string | undefined {
    const n = this[kRaw].name(false);
    return n ? (n.family === 6 ? 'IPv6' : 'IPv4') : undefined;
  }

  /** Bytes received. */
  get bytesRead(): number {
    return this[kRaw].bytesRead;
  }

  /** Bytes written, including those still queued (as net counts them). */
  get bytesWritten(): number {
    const raw = this[kRaw];
    return raw.bytesWritten + this.writableLength;
  }

  /** True until the connection is established. */
  get pending(): boolean {
    return !this[kRaw].wasOpen || this.destroyed;
  }

  get readyState(): 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.connecting) return 'opening';
    if (this.readable && this.writable) return 'open';
    if (this.readable && !this.writable) return 'readOnly';
    if (!this.readable && this.writable) return 'writeOnly';
    return 'closed';
  }

  /**
   * Hands the connection over: waits until every byte written so far has reached the kernel, takes the connection
   * out of this thread's loop with the bytes received and not yet read, parks it, and resolves with a token for
   * `layer.attach()` in another worker thread of this process (or, with `broker: true`, in another process of the
   * same app on this machine). This socket then closes ('close' without an error); the connection stays open.
   * Writes made after the call fail with EPIPE. Rejects when the socket is not connected, is ending or closed (EPIPE
   * once reclaimed), carries TLS in the core (ENOTSUP), or belongs to no layer.
   */
  async detach(options: { broker?: boolean } = {}): Promise<string> {
    const raw = this[kRaw] as StreamRaw;
    if (options === null || typeof options !== 'object') throw invalidArg('options', 'object', options);
    if (raw.reclaimed) throw systemError('EPIPE', { syscall: 'detach' });
    if (raw.state !== RawState.Open || this.destroyed || this.writableEnded) {
      throw systemError('EBADF', { syscall: 'detach', detail: 'the socket is not connected, or ending' });
    }
    if (raw.flags & RAW_F_DETACHING) throw systemError('EALREADY', { syscall: 'detach' });
    const side = raw.port.handoff;
    if (side === undefined) throw codedError(Error, 'ERR_SOCKGUARD_LAYER_CLOSED', 'The socket belongs to no layer');
    raw.flags |= RAW_F_DETACHING;
    raw.port.touch(raw);
    let fd: number;
    let unread: Buffer | null;
    for (let turns = 0; ; turns++) {
      // Whatever the stream or the core still holds for the peer must leave from here, in order: the new owner
      // only gets the descriptor.
      if (this.writableLength === 0) {
        if (this.destroyed || raw.state !== RawState.Open) break;
        unread = unreadBytes(this);
        fd = raw.detachFd();
        if (fd >= 0) break;
        if (fd !== -16) {
          // Not EBUSY: the core refuses this socket (TLS in the core). It stays as it was, writable again.
          raw.flags &= ~RAW_F_DETACHING;
          throw statusError(fd, { syscall: 'detach', address: raw.remoteAddress, port: raw.remotePort });
        }
      }
      if (this.destroyed || raw.state !== RawState.Open) break;
      await new Promise<void>((resolve) => (turns < 64 ? setImmediate(resolve) : setTimeout(resolve, 2)));
    }
    if (fd! === undefined || fd < 0) {
      raw.flags &= ~RAW_F_DETACHING;
      throw this.errored ?? systemError('EPIPE', { syscall: 'detach', detail: 'the socket closed while it was flushing' });
    }
    // Closed here, not at the connection: the stream drops what it buffered (it travels with the token).
    this.destroy();
    return park(side, {
      fd,
      unread: unread!,
      family: raw.remoteFamily ?? 4,
      address: raw.remoteAddress ?? '',
      port: raw.remotePort,
      counters: [raw.bytesWritten, raw.bytesRead, raw.sendCalls, raw.recvCalls],
    }, options.broker ? 'broker' : 'process');
  }

  /** True once the layer reclaimed this socket for inactivity. */
  get reclaimed(): boolean {
    return this[kRaw].reclaimed;
  }

  /** The raw socket under this stream (counters, native id). */
  get raw(): RawSocket {
    return this[kRaw];
  }

  /** Bytes accepted by the kernel, send syscalls, receive syscalls: the socket's meter. */
  get counters(): { bytesSent: number; bytesReceived: number; sendCalls: number; receiveCalls: number } {
    const raw = this[kRaw];
    return { bytesSent: raw.bytesWritten, bytesReceived: raw.bytesRead, sendCalls: raw.sendCalls, receiveCalls: raw.recvCalls };
  }
}

interface WritableStateView {
  length: number;
  corked: number;
  ending: boolean;
  destroyed: boolean;
  defaultEncoding: string;
}

/**
 * The bytes of a string written with a known encoding (the stream's default when none is given), as the stream
 * would encode them; null when the stream path must decide (an unknown encoding is its error to raise). HTTP
 * clients write their request heads as latin1 strings: this keeps them on the fast path.
 */
function fastBytes(chunk: string, encoding: unknown, ws: WritableStateView): Buffer | null {
  const enc = !encoding || typeof encoding === 'function' ? ws.defaultEncoding : encoding;
  return typeof enc === 'string' && Buffer.isEncoding(enc) ? Buffer.from(chunk, enc) : null;
}

/**
 * Bytes the stream received and the user has not read yet, copied out of its buffer (the stream is destroyed
 * right after, so they are neither delivered here nor lost). Strings (setEncoding) are turned back into bytes,
 * with a partial character the decoder still holds.
 */
function unreadBytes(s: Duplex): Buffer | null {
  const st = (s as unknown as {
    _readableState: {
      buffer: unknown;
      bufferIndex?: number;
      length: number;
      encoding: BufferEncoding | null;
      decoder: { lastNeed?: number; lastTotal?: number; lastChar?: Buffer } | null;
    };
  })._readableState;
  const chunks: Buffer[] = [];
  const add = (c: unknown) => {
    if (typeof c === 'string') chunks.push(Buffer.from(c, st.encoding ?? 'utf8'));
    else if (c instanceof Uint8Array) chunks.push(c as Buffer);
  };
  const buf = st.buffer as unknown[] | { head: { data: unknown; next: unknown } | null };
  if (Array.isArray(buf)) {
    for (let i = st.bufferIndex ?? 0; i < buf.length; i++) add(buf[i]);
  } else if (buf !== null && typeof buf === 'object') {
    for (let n = buf.head; n !== null; n = n.next as typeof n) add(n.data);
  }
  const d = st.decoder;
  if (d && d.lastChar && d.lastNeed && d.lastTotal && d.lastTotal > d.lastNeed) chunks.push(Buffer.from(d.lastChar.subarray(0, d.lastTotal - d.lastNeed)));
  if (chunks.length === 0) return null;
  return chunks.length === 1 ? Buffer.from(chunks[0]!) : Buffer.concat(chunks);
}

/**
 * @internal Activity of the TLS socket over `s` (STARTTLS): its traffic no longer passes through `s`, yet it
 * refreshes `s`'s idle timeout, as TLS activity refreshes the socket under it with net.
 */
export function touchIdle(s: Socket): void {
  const timer = s[kTimer];
  if (timer !== undefined) timer.refresh();
}

function destroyNT(s: Socket, err: Error): void {
  s.destroy(err);
}

function emitTimeout(s: Socket): void {
  if (!s.destroyed) s.emit('timeout');
}

function emitCloseNT(s: Socket, hadError: boolean): void {
  s.emit('close', hadError);
}

/**
 * The stream's own accounting sees a write as done once the native queue has it; libraries that pace
 * themselves on `writableLength` / `writableNeedDrain` must also see what waits in that queue (as with net,
 * whose pending write requests stay in the stream's length).
 */
const streamLength = Object.getOwnPropertyDescriptor(Duplex.prototype, 'writableLength')!.get!;
const streamNeedDrain = Object.getOwnPropertyDescriptor(Duplex.prototype, 'writableNeedDrain')!.get!;
Object.defineProperties(Socket.prototype, {
  // net.Socket's own fields that Node's code reads from any socket it takes for a net.Socket (tls walks the
  // `_parent` chain to null; `_handle` null means "no native stream": Node then wraps the socket as a stream).
  _parent: { value: null, writable: true, configurable: true, enumerable: false },
  _handle: { value: null, writable: true, configurable: true, enumerable: false },
  [kOver]: { value: undefined, writable: true, configurable: true, enumerable: false },
  writableLength: {
    get(this: Socket): number {
      return (streamLength.call(this) as number) + this[kRaw].pendingBytes;
    },
    configurable: true,
    enumerable: false,
  },
  writableNeedDrain: {
    get(this: Socket): boolean {
      return (streamNeedDrain.call(this) as boolean) || (this[kRaw].flags & RAW_F_FAST_DRAIN) !== 0;
    },
    configurable: true,
    enumerable: false,
  },
});
