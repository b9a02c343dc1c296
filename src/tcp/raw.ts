/**
 * RawSocket: the low-level TCP client under the Duplex. Callbacks instead of streams; writes are copied into
 * the native queue and leave together at the end of the loop turn; byte counters are read from native memory
 * through a typed-array view, without a native call.
 *
 * A RawSocket connects only to addresses its layer has already vetted (see SocketLayer); it never resolves.
 *
 * Memory: an idle connected raw socket is one object of 17 fields. Everything that only matters while
 * connecting lives in a side object that is dropped once the connection is up; booleans share one bit field.
 */
import { statusError, systemError, type SockguardSystemError } from '../errors.js';
import { STAGE_MAX, getLoop, type Loop, type LoopClient } from '../core/loop.js';
import { CTR_BYTES_READ, CTR_BYTES_WRITTEN, CTR_PENDING, CTR_RECV_CALLS, CTR_SEND_CALLS, CTR_STAGED, syscallNames } from '../core/native.js';
import { NO_QUOTA, type QuotaMeter } from '../service/quota.js';
import { kReclaimEpoch, kReclaimNext, kReclaimPrev, type ReclaimNode } from '../service/reclaim.js';

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

export interface Candidate {
  address: string;
  family: 4 | 6;
}

/** State of a raw socket: Pending = waiting for resolution and policy. */
export const RawState = { Pending: 0, Connecting: 1, Open: 2, Closed: 3 } as const;
export type RawState = (typeof RawState)[keyof typeof RawState];

/** Default bytes queued natively before write() asks the caller to wait for drain. */
export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;

/** Observer the layer installs to see activity and closes (reclaim refresh, ledger); one per layer, shared. */
export interface RawObserver {
  activity(raw: RawSocket): void;
  closed(raw: RawSocket): void;
  /** An operation was refused over quota (ledger count). */
  overQuota?(): void;
  /** The layer's quota meter; the shared null meter costs one property read per operation. */
  readonly quota: QuotaMeter;
  /** The layer itself (for the Duplex: option mode, connect). */
  readonly layer?: unknown;
}

const noopObserver: RawObserver = { activity() {}, closed() {}, quota: NO_QUOTA };
const noHandlers: RawHandlers = {};
const noCandidates: Candidate[] = [];

const F_PAUSED = 1;
const F_EOF = 2;
const F_RECLAIMED = 4;
const F_UNREF = 8;
const F_ENDING = 16;
const F_FINISHED = 32;
const F_WANT_DRAIN = 64;
const F_WAS_OPEN = 128;
/** Flag bit free for the owner of the raw socket (the Duplex: a 'drain' is owed to a fast-path writer). */
export const RAW_F_FAST_DRAIN = 256;
const F_STARTED = 512;

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

export class RawSocket implements LoopClient {
  handlers: RawHandlers;
  state: RawState = RawState.Pending as RawState;
  /** @internal bit field, see F_* */
  flags = 0;
  /** @internal native id, -1 while there is no native socket */
  id = -1;
  private ctr: Uint32Array | undefined = undefined;
  private base = 0;
  remoteAddress: string | undefined = undefined;
  remotePort = 0;
  readonly highWaterMark: number;
  observer: RawObserver = noopObserver;
  /** Whoever presents this socket to the user (the Duplex), so the layer can close it as a whole. */
  owner: { destroy(err?: Error): void; readonly closed?: boolean; once?(ev: 'close', cb: () => void): unknown } | null = null;
  // Idle-reclaim list links (reclaim.ts): the socket is its own list node.
  [kReclaimPrev]: ReclaimNode | null = null;
  [kReclaimNext]: ReclaimNode | null = null;
  [kReclaimEpoch] = -1;
  private conn: Connecting | null = null;
  /** Final counters [written, read, sends, recvs], kept when the native slot is released. */
  private fin: Float64Array | null = null;

  constructor(handlers: RawHandlers = noHandlers, highWaterMark = DEFAULT_HIGH_WATER_MARK) {
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

  /** Set by the layer when the socket was closed for inactivity. */
  get reclaimed(): boolean {
    return (this.flags & F_RECLAIMED) !== 0;
  }
  set reclaimed(on: boolean) {
    this.flags = on ? this.flags | F_RECLAIMED : this.flags & ~F_RECLAIMED;
  }

  /** True once the connection was established (it may have closed since). */
  get wasOpen(): boolean {
    return (this.flags & F_WAS_OPEN) !== 0;
  }

  /**
   * Connects to the first reachable of `candidates` (already vetted), in order. `timeoutMs` > 0 bounds the whole
   * attempt: ETIMEDOUT when it passes.
   */
  connect(candidates: Candidate[], port: number, timeoutMs = 0): void {
    if (this.state !== RawState.Pending) return;
    const c = this.pending();
    c.candidates = candidates;
    c.attempt = 0;
    this.remotePort = port;
    if (timeoutMs > 0) {
      c.timer = setTimeout(onConnectTimeout, timeoutMs, this);
      c.timer.unref();
    }
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
    this.bind(loop, id);
    this.remoteAddress = remote.address;
    this.remotePort = remote.port;
    this.state = RawState.Open;
    this.flags |= F_WAS_OPEN;
    if (!(this.flags & F_UNREF)) loop.ref();
    if (this.flags & F_PAUSED) loop.nat.socket_read(id, false);
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

  private bind(loop: Loop, id: number): void {
    this.id = id;
    this.ctr = loop.counters[Math.floor(id / loop.chunk)];
    this.base = (id % loop.chunk) * loop.slots * 2;
  }

  private tryNext(): void {
    const c = this.conn!;
    const list = c.candidates;
    const loop = getLoop();
    while (c.attempt < list.length) {
      const cand = list[c.attempt++]!;
      this.remoteAddress = cand.address;
      const id = loop.open(this);
      const r = loop.nat.tcp_connect(id, cand.family, cand.address, this.remotePort, this.highWaterMark);
      if (r === 0) {
        this.bind(loop, id);
        this.state = RawState.Connecting;
        if (!(this.flags & F_UNREF)) loop.ref();
        return;
      }
      loop.release(id);
      c.lastError = statusError(r, { syscall: 'connect', address: cand.address, port: this.remotePort });
    }
    // Nothing could even be started: report asynchronously, as a connect() caller has no listener yet.
    process.nextTick(failPending, this);
  }

  /** @internal */
  _onConnect(status: number): void {
    const c = this.conn!;
    if (status < 0) {
      c.lastError = statusError(status, { syscall: 'connect', address: this.remoteAddress, port: this.remotePort });
      this.dropNative();
      this.state = RawState.Pending;
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
      if (opts[0] !== undefined) nat.socket_setsockopt(this.id, 6, 1, opts[0] ? 1 : 0); // IPPROTO_TCP, TCP_NODELAY
      if (opts[1] !== undefined) nat.socket_keepalive(this.id, opts[1], Math.floor(opts[2] / 1000));
    }
    if (c.queue !== null) {
      const q = c.queue;
      const r = q.length === 1 ? nat.socket_write(this.id, q[0]!) : nat.socket_writev(this.id, q);
      if (r < 0) {
        this.destroy(statusError(r, { syscall: 'write', address: this.remoteAddress, port: this.remotePort }));
        return;
      }
      if (this.flags & F_WANT_DRAIN && r <= this.highWaterMark) {
        this.flags &= ~F_WANT_DRAIN;
        process.nextTick(RawSocket._emit, this, 'drain', null);
      }
    }
    if (this.flags & F_ENDING) this.shutdown();
    this.observer.activity(this);
    this.emitConnect(null);
  }

  /** @internal */
  _onData(slab: Buffer, offset: number, length: number): void {
    if (this.observer.quota.enabled) {
      // Bytes that arrived are billed whatever happens; past the limit the socket fails with the quota error.
      const over = this.observer.quota.recordReceive(length);
      if (over !== null) {
        this.observer.overQuota?.();
        this.destroy(over);
        return;
      }
    }
    this.observer.activity(this);
    this.emitData(slab, offset, length);
  }

  /** @internal */
  _onDgram(): void {}

  /** @internal */
  _onEof(): void {
    this.flags |= F_EOF;
    this.observer.activity(this);
    this.emitEnd();
  }

  /** @internal */
  _onError(status: number, syscall: number): void {
    this.destroy(
      statusError(status, { syscall: syscallNames[syscall] ?? 'read', address: this.remoteAddress, port: this.remotePort }),
    );
  }

  /** @internal */
  _onDrain(): void {
    this.flags &= ~F_WANT_DRAIN;
    this.observer.activity(this);
    this.emitDrain();
  }

  /** @internal */
  _onShutdown(status: number): void {
    if (status < 0) {
      this.destroy(statusError(status, { syscall: 'shutdown', address: this.remoteAddress, port: this.remotePort }));
      return;
    }
    this.flags |= F_FINISHED;
    this.emitFinish();
  }

  /**
   * Queues bytes. Returns false when more than highWaterMark bytes are waiting: stop writing until ondrain.
   * Throws EPIPE after end() or destroy(): bytes are never dropped silently.
   */
  write(data: ArrayBufferView): boolean {
    if (this.observer.quota.enabled) this.chargeSend(data.byteLength);
    if (this.state === RawState.Open && !(this.flags & F_ENDING)) {
      const len = data.byteLength;
      const loop = getLoop();
      // Small writes are staged in JS: no native call; the loop moves them into the queue before it flushes.
      if (len <= STAGE_MAX && data instanceof Uint8Array && loop.stage(this.id, data)) {
        const c = this.ctr!;
        const i = this.base + CTR_STAGED;
        c[i] = c[i]! + len;
        this.observer.activity(this);
        if (this.read64(CTR_PENDING) + c[i]! <= this.highWaterMark) return true;
        this.flags |= F_WANT_DRAIN;
        return false;
      }
      return this.queued(loop.nat.socket_write(this.id, data));
    }
    return this.hold(data);
  }

  /** Queues several buffers at once (one native call). */
  writev(chunks: ArrayBufferView[]): boolean {
    if (this.observer.quota.enabled) {
      let n = 0;
      for (const c of chunks) n += c.byteLength;
      this.chargeSend(n);
    }
    if (this.state === RawState.Open && !(this.flags & F_ENDING)) {
      return this.queued(getLoop().nat.socket_writev(this.id, chunks));
    }
    let ok = true;
    for (const c of chunks) ok = this.hold(c);
    return ok;
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
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    (c.queue ??= []).push(buf);
    c.queued += buf.length;
    if (c.queued <= this.highWaterMark) return true;
    this.flags |= F_WANT_DRAIN;
    return false;
  }

  /** Result of a native write: true while the queue is within the high-water mark; an error destroys and throws. */
  private queued(r: number): boolean {
    if (r >= 0) {
      this.observer.activity(this);
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
    try {
      this.observer.quota.chargeSend(bytes);
    } catch (err) {
      this.observer.overQuota?.();
      throw err;
    }
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
      process.nextTick(RawSocket._emit, this, 'finish', null);
    }
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
    this.observer.closed(this);
    process.nextTick(RawSocket._emit, this, 'close', err);
  }

  private dropNative(): void {
    if (this.id < 0) return;
    this.snapshot();
    const loop = getLoop();
    loop.nat.socket_close(this.id);
    loop.release(this.id);
    if (!(this.flags & F_UNREF)) loop.unref();
    this.id = -1;
    this.ctr = undefined;
  }

  private snapshot(): void {
    const fin = (this.fin ??= new Float64Array(4));
    fin[0] = this.read64(CTR_BYTES_WRITTEN);
    fin[1] = this.read64(CTR_BYTES_READ);
    fin[2] = this.read64(CTR_SEND_CALLS);
    fin[3] = this.read64(CTR_RECV_CALLS);
  }

  /**
   * Detaches the live connection from this thread's loop and returns its descriptor, leaving this object
   * closed without closing the connection. Fails with EBUSY while bytes are still queued.
   * @internal used by descriptor hand-off
   */
  detachFd(): number {
    if (this.state !== RawState.Open) return -9; // EBADF
    this.snapshot();
    const loop = getLoop();
    const fd = loop.nat.socket_detach(this.id);
    if (fd < 0) return fd;
    loop.release(this.id);
    if (!(this.flags & F_UNREF)) loop.unref();
    this.id = -1;
    this.ctr = undefined;
    this.state = RawState.Closed;
    // The layer folds the counters into its ledger: this object's share of the traffic ends here.
    this.observer.closed(this);
    return fd;
  }

  pause(): void {
    if (this.flags & F_PAUSED) return;
    this.flags |= F_PAUSED;
    if (this.state === RawState.Open) getLoop().nat.socket_read(this.id, false);
  }

  resume(): void {
    if (!(this.flags & F_PAUSED)) return;
    this.flags &= ~F_PAUSED;
    if (this.state === RawState.Open) getLoop().nat.socket_read(this.id, true);
  }

  /**
   * TCP_NODELAY. The core turns it on for every socket (writes are coalesced natively, so Nagle only adds
   * latency); turning it off is honoured. Applied once connected if called before.
   */
  setNoDelay(on: boolean): void {
    if (this.state === RawState.Open) getLoop().nat.socket_setsockopt(this.id, 6, 1, on ? 1 : 0);
    else if (this.state !== RawState.Closed) (this.pending().opts ??= [undefined, undefined, 0])[0] = on;
  }

  /** SO_KEEPALIVE with the idle time before the first probe. Applied once connected if called before. */
  setKeepAlive(on: boolean, initialDelayMs: number): void {
    if (this.state === RawState.Open) getLoop().nat.socket_keepalive(this.id, on, Math.floor(initialDelayMs / 1000));
    else if (this.state !== RawState.Closed) {
      const opts = (this.pending().opts ??= [undefined, undefined, 0]);
      opts[1] = on;
      opts[2] = initialDelayMs;
    }
  }

  /** True from the moment a connection attempt starts until it succeeds or fails. */
  get connecting(): boolean {
    return this.state === RawState.Connecting || (this.state === RawState.Pending && (this.flags & F_STARTED) !== 0);
  }

  /** @internal the layer took this socket into a connection attempt */
  markStarted(): void {
    this.flags |= F_STARTED;
  }

  /** Lets the process exit while this socket is open (like net.Socket#unref). */
  unref(): void {
    if (this.flags & F_UNREF) return;
    this.flags |= F_UNREF;
    if (this.id >= 0) getLoop().unref();
  }

  ref(): void {
    if (!(this.flags & F_UNREF)) return;
    this.flags &= ~F_UNREF;
    if (this.id >= 0) getLoop().ref();
  }

  private read64(slot: number): number {
    const c = this.ctr;
    if (c === undefined) return 0;
    const i = this.base + slot;
    return c[i]! + c[i + 1]! * 4294967296;
  }

  private final(i: number): number {
    const fin = this.fin;
    return fin === null ? 0 : fin[i]!;
  }

  /** Bytes accepted by the kernel. */
  get bytesWritten(): number {
    return this.ctr === undefined ? this.final(0) : this.read64(CTR_BYTES_WRITTEN);
  }

  /** Bytes read from the kernel. */
  get bytesRead(): number {
    return this.ctr === undefined ? this.final(1) : this.read64(CTR_BYTES_READ);
  }

  /** send/write syscalls made. */
  get sendCalls(): number {
    return this.ctr === undefined ? this.final(2) : this.read64(CTR_SEND_CALLS);
  }

  /** recv/read syscalls that returned data. */
  get recvCalls(): number {
    return this.ctr === undefined ? this.final(3) : this.read64(CTR_RECV_CALLS);
  }

  /** Bytes accepted by write() but not yet by the kernel. */
  get pendingBytes(): number {
    const queued = this.conn?.queued ?? 0;
    return this.ctr === undefined ? queued : this.read64(CTR_PENDING) + this.read64(CTR_STAGED) + queued;
  }

  /** Local or peer address of the live socket, or undefined. */
  name(peer: boolean): { address: string; family: 4 | 6; port: number } | undefined {
    if (this.id < 0) return undefined;
    const r = getLoop().nat.socket_name(this.id, peer);
    if (typeof r === 'number') return undefined;
    return { family: r[0], address: r[1], port: r[2] };
  }

  /** @internal native handle access for socket options */
  get nativeId(): number {
    return this.id;
  }

  /** @internal */
  get native(): Loop['nat'] | undefined {
    return this.id >= 0 ? getLoop().nat : undefined;
  }

  private finishConnect(err: Error): void {
    this.state = RawState.Closed;
    const c = this.conn;
    if (c !== null) {
      if (c.timer) clearTimeout(c.timer);
      this.conn = null;
    }
    this.observer.closed(this);
    process.nextTick(RawSocket._emit, this, 'fail', err);
  }

  /** @internal */
  _timeout(): void {
    if (this.state !== RawState.Connecting && this.state !== RawState.Pending) return;
    const err = systemError('ETIMEDOUT', { syscall: 'connect', address: this.remoteAddress, port: this.remotePort });
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
