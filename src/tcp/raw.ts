/**
 * RawSocket: the low-level TCP client under the Duplex. Callbacks instead of streams; writes are copied into
 * the native queue and leave together at the end of the loop turn; byte counters are read from native memory
 * through a typed-array view, without a native call (see core/endpoint.ts for what every endpoint shares).
 *
 * A RawSocket connects only to addresses its layer has already vetted (see the layer port); it never resolves.
 *
 * Memory: everything that only matters while connecting lives in a side object that is dropped once the
 * connection is up; booleans share one bit field.
 */
import { invalidArg, statusError, systemError, type SockguardSystemError } from '../errors.js';
import { EF_FREE, Endpoint } from '../core/endpoint.js';
import { STAGE_MAX, getLoop, type Loop } from '../core/loop.js';
import { CTR_PENDING, CTR_STAGED, syscallNames } from '../core/native.js';
import { chargeSend, recordReceive, type Candidate, type ConnectClient } from '../service/port.js';
import { byteLengthOf } from './args.js';

export { MAX_HIGH_WATER_MARK, byteLengthOf, validateHighWaterMark } from './args.js';
import { constants as C } from '../service/sockopts.js';

export type { Candidate };

/** Callbacks of a raw socket. `this` is the handlers object. */
export interface RawHandlers {
  /** Connected (`err` null), or every vetted address failed. */
  onconnect?(err: Error | null): void;
  /** Bytes arrived: a view into a shared slab, valid only during the call. Copy what you keep. */
  ondata?(buf: Buffer, offset: number, length: number): void;
  /** The peer finished sending (FIN). */
  onend?(): void;
  /** The native queue emptied after write() returned false. */
  ondrain?(): void;
  /** end() completed: every byte was handed to the kernel and FIN was sent. */
  onfinish?(): void;
  /** The socket is closed; `err` is why, or null after destroy(). Called once, asynchronously. */
  onclose?(err: Error | null): void;
}

/** State of a raw socket: Pending = waiting for resolution and policy. */
export const RawState = { Pending: 0, Connecting: 1, Open: 2, Closed: 3 } as const;
export type RawState = (typeof RawState)[keyof typeof RawState];

/** Default bytes queued natively before write() asks the caller to wait for drain. */
export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;
/**
 * The default under TLS in the core. A TLS peer decrypts more slowly than this side encrypts, and it does more
 * work per byte when the sender queues deep: a node:tls server spent about 70 µs of CPU per 64 KiB received from
 * a sender 1 MiB deep, and about 58 µs from one 64 KiB deep or from net's TLS (docs/performance.md, "Real
 * workloads"). Upload throughput follows the peer's cost whenever the peer is the slower side. Four full records
 * keep the encrypt-send pipeline busy. A layer's explicit `highWaterMark` applies to TLS sockets too.
 */
export const TLS_HIGH_WATER_MARK = 64 * 1024;
/** Buffers handed to the core in one call; longer writev() lists go in slices, in order. */
const WRITEV_SLICE = 1024;

const noHandlers: RawHandlers = {};
const noCandidates: Candidate[] = [];

const F_PAUSED = EF_FREE;
const F_EOF = EF_FREE << 1;
const F_ENDING = EF_FREE << 2;
const F_FINISHED = EF_FREE << 3;
const F_WANT_DRAIN = EF_FREE << 4;
const F_WAS_OPEN = EF_FREE << 5;
const F_STARTED = EF_FREE << 6;
/** Flag bits free for the owner of the raw socket (the Duplex: a 'drain' is owed to a fast-path writer; an idle
 * timeout was set and then turned off, so `timeout` reads 0 as with net; its buffer is over its mark). */
export const RAW_F_FAST_DRAIN = EF_FREE << 7;
export const RAW_F_TIMEOUT_OFF = EF_FREE << 8;
/** Writes go to the native queue at once instead of being staged in JS (TLS: the core frames and times them). */
export const RAW_F_NO_STAGE = EF_FREE << 9;
/** The Duplex's buffer went over its mark while flowing; reading stops if more arrives before it drains. */
export const RAW_F_FULL = EF_FREE << 10;
/** detach() is under way: the stream takes no more writes, and waits for the queue to empty. */
export const RAW_F_DETACHING = EF_FREE << 11;
/** The connection went on under TLS in another raw socket (takeOver): this one takes no more writes. */
export const RAW_F_UPGRADED = EF_FREE << 12;

/** What only matters until the connection is up. */
interface Connecting {
  candidates: Candidate[];
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  lastError: Error | null;
  /** Writes made before the connection is up; handed to the native queue at once on connect. */
  queue: Buffer[] | null;
  queued: number;
  /** setNoDelay / setKeepAlive made before the connection was up: [noDelay, keepAlive, keepAliveDelayMs]. */
  opts: [boolean | undefined, boolean | undefined, number] | undefined;
}

export class RawSocket extends Endpoint implements ConnectClient {
  handlers: RawHandlers;
  state: RawState = RawState.Pending as RawState;
  /** Bytes queued natively before write() returns false. */
  highWaterMark: number;
  /** Whoever presents this socket to the user (the Duplex), so the layer can close it as a whole. */
  owner: { destroy(err?: Error): void; readonly closed?: boolean; once?(ev: 'close', cb: () => void): unknown } | null = null;
  private conn: Connecting | null = null;

  constructor(handlers: RawHandlers = noHandlers, highWaterMark = DEFAULT_HIGH_WATER_MARK) {
    super();
    this.handlers = handlers;
    this.highWaterMark = highWaterMark;
  }

  // --- events; a subclass (the Duplex's) overrides these instead of allocating a handlers object

  protected emitConnect(err: Error | null): void {
    this.handlers.onconnect?.(err);
  }
  protected emitData(slab: Buffer, offset: number, length: number): void {
    this.handlers.ondata?.(slab, offset, length);
  }
  protected emitEnd(): void {
    this.handlers.onend?.();
  }
  protected emitDrain(): void {
    this.handlers.ondrain?.();
  }
  protected emitFinish(): void {
    this.handlers.onfinish?.();
  }
  protected emitClose(err: Error | null): void {
    this.handlers.onclose?.(err);
  }
  protected emitLookup(_address: string, _family: 4 | 6, _host: string): void {}

  get remoteFamily(): 4 | 6 | undefined {
    const a = this.remoteAddress;
    return a === undefined ? undefined : a.includes(':') ? 6 : 4;
  }

  /** True once the peer's FIN arrived. */
  get eof(): boolean {
    return (this.flags & F_EOF) !== 0;
  }

  get paused(): boolean {
    return (this.flags & F_PAUSED) !== 0;
  }

  /** True once the connection was established (it may have closed since). */
  get wasOpen(): boolean {
    return (this.flags & F_WAS_OPEN) !== 0;
  }

  protected get closed(): boolean {
    return this.state === RawState.Closed;
  }

  /** Connecting, reading, or with bytes still to hand to the kernel: the socket keeps the process alive. */
  protected active(): boolean {
    const s = this.state;
    if (s === RawState.Connecting) return true;
    if (s !== RawState.Open) return false;
    const f = this.flags;
    if ((f & (F_PAUSED | F_EOF)) === 0) return true;
    if ((f & F_ENDING) !== 0 && (f & F_FINISHED) === 0) return true;
    return this.pendingBytes > 0;
  }

  /** @internal the layer took this socket into a connection attempt */
  markStarted(): void {
    this.flags |= F_STARTED;
  }

  /** @internal still waiting for resolution and policy */
  get pendingConnect(): boolean {
    return this.state === RawState.Pending;
  }

  /** @internal the layer resolved the name: the Duplex emits 'lookup' */
  resolved(address: string, family: 4 | 6, host: string): void {
    this.emitLookup(address, family, host);
  }

  /** @internal bounds the whole attempt, resolution included: ETIMEDOUT when `ms` passes. */
  startConnectTimer(ms: number): void {
    if (this.state === RawState.Closed || ms <= 0) return;
    const c = this.pending();
    if (c.timer) clearTimeout(c.timer);
    c.timer = setTimeout(onConnectTimeout, ms, this);
    c.timer.unref();
  }

  /** Connects to the first reachable of `candidates` (already vetted), in order. */
  connect(candidates: Candidate[], port: number): void {
    if (this.state !== RawState.Pending) return;
    const c = this.pending();
    c.candidates = candidates;
    c.attempt = 0;
    this.remotePort = port;
    this.tryNext();
  }

  private pending(): Connecting {
    return (this.conn ??= { candidates: noCandidates, attempt: 0, timer: undefined, lastError: null, queue: null, queued: 0, opts: undefined });
  }

  /** Takes over an already connected descriptor (a parked connection) in this thread's loop. */
  adopt(fd: number, remote: Candidate & { port: number }): number {
    const loop = getLoop();
    const id = loop.open(this);
    const r = loop.nat.socket_adopt(id, fd, this.highWaterMark);
    if (r < 0) {
      loop.release(id);
      return r;
    }
    this.remoteAddress = remote.address;
    this.remotePort = remote.port;
    this.state = RawState.Open;
    this.flags |= F_WAS_OPEN;
    this.bindNative(loop, id);
    if (this.flags & F_PAUSED) loop.nat.socket_read(id, false);
    return 0;
  }

  /**
   * @internal descriptor hand-off: takes over a parked connection (already admitted by the layer) as if it had
   * just connected: writes made meanwhile go out, then 'connect'. Counters continue from `counters`. 0 or -errno
   * (then fd is still the caller's).
   */
  resumeParked(fd: number, remote: Candidate & { port: number }, counters: ArrayLike<number>): number {
    if (this.state !== RawState.Pending) return -9; // EBADF
    let loop: Loop;
    let id: number;
    try {
      loop = getLoop();
      id = loop.open(this);
    } catch {
      return -24; // EMFILE: no loop or no id for it
    }
    const r = loop.nat.socket_adopt(id, fd, this.highWaterMark);
    if (r < 0) {
      loop.release(id);
      return r;
    }
    this.inherit(counters);
    this.remoteAddress = remote.address;
    this.remotePort = remote.port;
    this.state = RawState.Connecting;
    this.bindNative(loop, id);
    this.pending();
    this._onConnect(0);
    return 0;
  }

  /**
   * Whether takeOver() can take this socket's connection now: connected, not ending, not reclaimed, detached or
   * taken over already, and with nothing held in JS for it (writes made while it was connecting have reached the
   * native queue once it is open).
   */
  get canPass(): boolean {
    return this.state === RawState.Open && this.id >= 0 && (this.flags & (F_ENDING | RAW_F_DETACHING | RAW_F_UPGRADED)) === 0 && !this.reclaimed;
  }

  /**
   * @internal STARTTLS: this raw socket, not yet started, goes on with `from`'s live connection: the same native
   * socket (its counters, its place in the layer, its policy verdict), with TLS started on it at once (startNative).
   * `from` is left closed to its own I/O: nothing more is read or written through it. 0, or -errno with
   * nothing changed.
   */
  takeOver(from: RawSocket): number {
    if (this.state !== RawState.Pending || !from.canPass) return -22; // EINVAL
    const loop = getLoop();
    const id = from.id;
    const r = this.startNative(loop, id);
    if (r < 0) return r;
    this.port = from.port;
    this.remoteAddress = from.remoteAddress;
    this.remotePort = from.remotePort;
    this.state = RawState.Connecting;
    this.flags |= F_STARTED;
    this.pending();
    from.flags |= RAW_F_UPGRADED;
    from.state = RawState.Closed;
    from.passNative(loop, this);
    from.port.transfer(from, this);
    // The handshake reads whatever the plain socket's reader wanted; from here on this socket decides.
    loop.nat.socket_read(id, true);
    // The ClientHello leaves now (or right after the records of the socket being dispatched).
    loop.wrote(id);
    return 0;
  }

  /** @internal idle reclaim: close without an error. */
  _reclaimClose(): void {
    if (this.owner) this.owner.destroy();
    else this.destroy();
  }

  /** @internal layer.close(): close and resolve once the user-facing object is closed. */
  _layerClose(): Promise<void> {
    const owner = this.owner;
    if (owner && owner.once) {
      if (owner.closed) return Promise.resolve();
      const p = new Promise<void>((resolve) => owner.once!('close', () => resolve()));
      owner.destroy();
      return p;
    }
    const wasOpen = this.state !== RawState.Closed;
    this.destroy();
    return wasOpen ? new Promise((resolve) => process.nextTick(resolve)) : Promise.resolve();
  }

  /** Fails a pending socket before any native work (policy denial, resolution failure). */
  fail(err: Error): void {
    if (this.state !== RawState.Pending) return;
    this.finishConnect(err);
  }

  private tryNext(): void {
    const c = this.conn!;
    const list = c.candidates;
    let loop: Loop;
    try {
      loop = getLoop();
    } catch (err) {
      // No loop (the addon cannot load, or no descriptor is left for the poll set): a coded error for this
      // socket's 'error' listener, never an exception out of an unrelated call.
      c.lastError = err as Error;
      c.attempt = list.length;
      process.nextTick(failPending, this);
      return;
    }
    while (c.attempt < list.length) {
      const cand = list[c.attempt++]!;
      this.remoteAddress = cand.address;
      let id: number;
      try {
        id = loop.open(this);
      } catch (err) {
        c.lastError = err as Error;
        break;
      }
      let r = loop.nat.tcp_connect(id, cand.family, cand.address, this.remotePort, this.highWaterMark);
      if (r === 0) {
        r = this.startNative(loop, id);
        if (r < 0) {
          // What failed is not the address: no other candidate would do better.
          loop.nat.socket_close(id);
          loop.release(id);
          c.lastError = statusError(r, { syscall: 'connect', address: cand.address, port: this.remotePort });
          break;
        }
        this.state = RawState.Connecting;
        this.bindNative(loop, id);
        return;
      }
      loop.release(id);
      c.lastError = statusError(r, { syscall: 'connect', address: cand.address, port: this.remotePort });
    }
    // Nothing could even be started: report asynchronously, as a connect() caller has no listener yet.
    process.nextTick(failPending, this);
  }

  /** @internal */
  override _onConnect(status: number, _tls = 0): void {
    const c = this.conn!;
    if (status < 0) {
      c.lastError = statusError(status, { syscall: 'connect', address: this.remoteAddress, port: this.remotePort });
      this.state = RawState.Pending;
      this.dropNative();
      this.tryNext();
      return;
    }
    this.state = RawState.Open;
    this.flags |= F_WAS_OPEN;
    this.conn = null;
    if (c.timer) clearTimeout(c.timer);
    const nat = getLoop().nat;
    if (this.flags & F_PAUSED) nat.socket_read(this.id, false);
    const opts = c.opts;
    if (opts !== undefined) {
      if (opts[0] !== undefined) nat.socket_setsockopt(this.id, C.SOL_TCP, C.TCP_NODELAY, opts[0] ? 1 : 0);
      if (opts[1] !== undefined) nat.socket_keepalive(this.id, opts[1], Math.floor(opts[2] / 1000));
    }
    if (c.queue !== null) {
      const r = this.toNative(c.queue);
      if (r < 0) {
        this.destroy(statusError(r, { syscall: 'write', address: this.remoteAddress, port: this.remotePort }));
        return;
      }
      if (r > 0) getLoop().wrote(this.id);
      if (this.flags & F_WANT_DRAIN && r <= this.highWaterMark) {
        this.flags &= ~F_WANT_DRAIN;
        process.nextTick(RawSocket._emit, this, 'drain', null);
      }
    }
    if (this.flags & F_ENDING) this.shutdown();
    this.updateRef();
    this.port.touch(this);
    this.emitConnect(null);
  }

  /** Called when the native socket exists and its connect is under way (TLS puts itself on it here). 0 or -errno. */
  protected startNative(_loop: Loop, _id: number): number {
    return 0;
  }

  /** @internal */
  override _onData(slab: Buffer, offset: number, length: number): void {
    const port = this.port;
    if (port.quota.enabled) {
      // Bytes that arrived are billed whatever happens; past the limit the socket fails with the quota error.
      const over = recordReceive(port, length);
      if (over !== null) {
        this.destroy(over);
        return;
      }
    }
    port.touch(this);
    this.emitData(slab, offset, length);
  }

  /** @internal */
  override _onEof(): void {
    this.flags |= F_EOF;
    this.updateRef();
    this.port.touch(this);
    this.emitEnd();
  }

  /** @internal */
  override _onError(status: number, syscall: number): void {
    this.destroy(
      statusError(status, { syscall: syscallNames[syscall] ?? 'read', address: this.remoteAddress, port: this.remotePort }),
    );
  }

  /** @internal */
  override _onDrain(): void {
    this.flags &= ~F_WANT_DRAIN;
    this.port.touch(this);
    this.emitDrain();
  }

  /** @internal */
  override _onShutdown(status: number): void {
    if (status < 0) {
      this.destroy(statusError(status, { syscall: 'shutdown', address: this.remoteAddress, port: this.remotePort }));
      return;
    }
    this.flags |= F_FINISHED;
    this.updateRef();
    this.emitFinish();
  }

  /**
   * Queues bytes. Returns false when more than highWaterMark bytes are waiting: stop writing until ondrain.
   * Throws EPIPE after end() or destroy(): bytes are never dropped silently. Anything that is not bytes is a
   * coded TypeError and leaves the connection as it was.
   */
  write(data: ArrayBufferView): boolean {
    const isBytes = data instanceof Uint8Array;
    if (!isBytes && !ArrayBuffer.isView(data)) throw invalidArg('data', 'Buffer, TypedArray or DataView', data);
    const len = isBytes ? data.byteLength : byteLengthOf(data);
    if (this.port.quota.enabled) this.chargeSend(len);
    if (this.state === RawState.Open && !(this.flags & F_ENDING)) {
      // Nothing to send (an empty or detached view) is accepted and changes nothing, as with net.
      if (len === 0) return (this.flags & F_WANT_DRAIN) === 0;
      const loop = getLoop();
      // Small writes are staged in JS: no native call; the loop moves them into the queue before it flushes.
      if (len <= STAGE_MAX && isBytes && !(this.flags & RAW_F_NO_STAGE) && loop.stage(this.id, data)) {
        const staged = this.add32(CTR_STAGED, len);
        const pending = this.read64(CTR_PENDING);
        this.port.touch(this);
        if (staged === len && pending === 0) loop.wrote(this.id);
        if (pending + staged <= this.highWaterMark) return true;
        this.flags |= F_WANT_DRAIN;
        return false;
      }
      return this.queued(loop.nat.socket_write(this.id, data, this.sendsNow(loop)));
    }
    return this.hold(data);
  }

  /** Queues several buffers at once (one native call per slice of buffers). */
  writev(chunks: ArrayBufferView[]): boolean {
    if (!Array.isArray(chunks)) throw invalidArg('chunks', 'Array', chunks);
    let n = 0;
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i];
      if (!ArrayBuffer.isView(c)) throw invalidArg(`chunks[${i}]`, 'Buffer, TypedArray or DataView', c);
      n += byteLengthOf(c);
    }
    if (this.port.quota.enabled) this.chargeSend(n);
    if (this.state === RawState.Open && !(this.flags & F_ENDING)) {
      if (n === 0) return (this.flags & F_WANT_DRAIN) === 0;
      return this.queued(this.toNative(chunks, this.sendsNow(getLoop())));
    }
    let ok = true;
    for (const c of chunks) ok = this.hold(c);
    return ok;
  }

  /**
   * Whether a write about to cross into native code should leave at once: the socket had nothing waiting (see
   * Loop#sendNow). Under TLS the core already sends the turn's first write as a record of its own.
   */
  private sendsNow(loop: Loop): boolean {
    return this.pendingBytes === 0 && loop.sendNow() && !(this.flags & RAW_F_NO_STAGE);
  }

  /** Hands buffers to the native queue in order (`now`: see socket_write): pending bytes, or -errno. */
  private toNative(chunks: ArrayBufferView[], now = false): number {
    const nat = getLoop().nat;
    if (chunks.length === 1) return nat.socket_write(this.id, chunks[0]!, now);
    if (chunks.length <= WRITEV_SLICE) return nat.socket_writev(this.id, chunks, now);
    let r = 0;
    for (let i = 0; i < chunks.length && r >= 0; i += WRITEV_SLICE) {
      r = nat.socket_writev(this.id, chunks.slice(i, i + WRITEV_SLICE), now && i === 0);
    }
    return r;
  }

  /**
   * Before the connection is up, bytes wait in JS, so a failed attempt can move on to the next address with
   * nothing lost. After end() or destroy() a write is EPIPE: bytes are never dropped silently.
   */
  private hold(data: ArrayBufferView): boolean {
    if (this.state === RawState.Closed || this.flags & F_ENDING) {
      throw systemError('EPIPE', { syscall: 'write', address: this.remoteAddress, port: this.remotePort || undefined });
    }
    const c = this.pending();
    if (byteLengthOf(data) > 0) {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      (c.queue ??= []).push(buf);
      c.queued += buf.length;
    }
    if (c.queued <= this.highWaterMark) return true;
    this.flags |= F_WANT_DRAIN;
    return false;
  }

  /** Result of a native write: true while the queue is within the high-water mark; an error destroys and throws. */
  private queued(r: number): boolean {
    if (r >= 0) {
      this.port.touch(this);
      if (r <= this.highWaterMark) return true;
      this.flags |= F_WANT_DRAIN;
      return false;
    }
    const err = statusError(r, { syscall: 'write', address: this.remoteAddress, port: this.remotePort });
    this.destroy(err);
    throw err;
  }

  private chargeSend(bytes: number): void {
    if (this.state === RawState.Closed || this.flags & F_ENDING) return; // the write fails with EPIPE, uncharged
    const over = chargeSend(this.port, bytes);
    if (over !== null) throw over;
  }

  /** Half-closes after every queued byte has left (onfinish then). */
  end(): void {
    if (this.flags & F_ENDING || this.state === RawState.Closed) return;
    this.flags |= F_ENDING;
    if (this.state === RawState.Open) this.shutdown();
  }

  private shutdown(): void {
    const r = getLoop().nat.socket_shutdown(this.id);
    if (r < 0) {
      this.destroy(statusError(r, { syscall: 'shutdown', address: this.remoteAddress, port: this.remotePort }));
    } else if (r === 1) {
      this.flags |= F_FINISHED;
      this.updateRef();
      process.nextTick(RawSocket._emit, this, 'finish', null);
    }
  }

  /**
   * Makes the coming close abortive: the connection ends with a RST and whatever is queued is discarded (SO_LINGER
   * on with a zero time, so the kernel resets instead of finishing the stream; bytes it has not taken may be lost).
   */
  abort(): void {
    if (this.state !== RawState.Open) return;
    const nat = getLoop().nat;
    nat.socket_setsockopt(this.id, C.SOL_SOCKET, C.SO_LINGER, 0);
  }

  /** Closes at once. Bytes already accepted by write() are handed to the kernel first; nothing else is sent. */
  destroy(err: Error | null = null): void {
    if (this.state === RawState.Closed) return;
    this.state = RawState.Closed;
    const c = this.conn;
    if (c !== null) {
      if (c.timer) clearTimeout(c.timer);
      this.conn = null;
    }
    this.dropNative();
    this.port.release(this);
    process.nextTick(RawSocket._emit, this, 'close', err);
  }

  /**
   * Detaches the live connection from this thread's loop and returns its descriptor, leaving this object
   * closed without closing the connection. Fails with EBUSY while bytes are still queued.
   * @internal used by descriptor hand-off
   */
  detachFd(): number {
    if (this.state !== RawState.Open) return -9; // EBADF
    const loop = getLoop();
    const fd = loop.nat.socket_detach(this.id);
    if (fd < 0) return fd;
    this.state = RawState.Closed;
    this.unbindNative(loop);
    // The layer folds the counters into its ledger: this object's share of the traffic ends here.
    this.port.release(this);
    return fd;
  }

  pause(): void {
    if (this.flags & F_PAUSED) return;
    this.flags |= F_PAUSED;
    if (this.state === RawState.Open) {
      getLoop().nat.socket_read(this.id, false);
      this.updateRef();
    }
  }

  resume(): void {
    if (!(this.flags & F_PAUSED)) return;
    this.flags &= ~F_PAUSED;
    if (this.state === RawState.Open) {
      getLoop().nat.socket_read(this.id, true);
      this.updateRef();
    }
  }

  /**
   * TCP_NODELAY. The core turns it on for every socket (writes are coalesced natively, so Nagle only adds
   * latency); turning it off is honoured. Applied once connected if called before.
   */
  setNoDelay(on: boolean): void {
    if (this.state === RawState.Open) getLoop().nat.socket_setsockopt(this.id, C.SOL_TCP, C.TCP_NODELAY, on ? 1 : 0);
    else if (this.state !== RawState.Closed) (this.pending().opts ??= [undefined, undefined, 0])[0] = on;
  }

  /** SO_KEEPALIVE with the idle time before the first probe. Applied once connected if called before. */
  setKeepAlive(on: boolean, initialDelayMs: number): void {
    const delay = Number.isFinite(initialDelayMs) && initialDelayMs > 0 ? Math.min(initialDelayMs, 0x7fffffff) : 0;
    if (this.state === RawState.Open) getLoop().nat.socket_keepalive(this.id, on, Math.floor(delay / 1000));
    else if (this.state !== RawState.Closed) {
      const opts = (this.pending().opts ??= [undefined, undefined, 0]);
      opts[1] = on;
      opts[2] = delay;
    }
  }

  /** True from the moment a connection attempt starts until it succeeds or fails. */
  get connecting(): boolean {
    return this.state === RawState.Connecting || (this.state === RawState.Pending && (this.flags & F_STARTED) !== 0);
  }

  /** Bytes accepted by write() but not yet by the kernel. */
  override get pendingBytes(): number {
    const c = this.conn;
    return super.pendingBytes + (c === null ? 0 : c.queued);
  }

  /** Local or peer address of the live socket, or undefined. */
  name(peer: boolean): { address: string; family: 4 | 6; port: number } | undefined {
    if (this.id < 0) return undefined;
    const r = getLoop().nat.socket_name(this.id, peer);
    if (typeof r === 'number') return undefined;
    return { family: r[0], address: r[1], port: r[2] };
  }

  private finishConnect(err: Error): void {
    this.state = RawState.Closed;
    const c = this.conn;
    if (c !== null) {
      if (c.timer) clearTimeout(c.timer);
      this.conn = null;
    }
    this.port.release(this);
    process.nextTick(RawSocket._emit, this, 'fail', err);
  }

  /** @internal */
  _timeout(): void {
    if (this.state !== RawState.Connecting && this.state !== RawState.Pending) return;
    const err = systemError('ETIMEDOUT', { syscall: 'connect', address: this.remoteAddress, port: this.remotePort || undefined });
    this.dropNative();
    this.finishConnect(err);
  }

  /** @internal */
  _failPending(): void {
    if (this.state === RawState.Closed) return;
    this.finishConnect(
      this.conn?.lastError ??
        systemError('ECONNREFUSED', { syscall: 'connect', address: this.remoteAddress, port: this.remotePort }),
    );
  }

  /** @internal deferred event delivery (the argument order of process.nextTick) */
  static _emit(raw: RawSocket, what: 'close' | 'fail' | 'drain' | 'finish', err: Error | null): void {
    switch (what) {
      case 'close':
        raw.emitClose(err);
        break;
      case 'fail':
        raw.emitConnect(err);
        raw.emitClose(err);
        break;
      case 'drain':
        if (raw.state !== RawState.Closed) raw.emitDrain();
        break;
      case 'finish':
        if (raw.state !== RawState.Closed) raw.emitFinish();
        break;
    }
  }
}

function onConnectTimeout(raw: RawSocket): void {
  raw._timeout();
}

function failPending(raw: RawSocket): void {
  raw._failPending();
}

export type { SockguardSystemError };
