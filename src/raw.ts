/**
 * RawSocket: the low-level TCP client under the Duplex. Callbacks instead of streams; writes are copied into
 * the native queue and leave together at the end of the loop turn; byte counters are read from native memory
 * through a typed-array view, without a native call.
 *
 * A RawSocket connects only to addresses its layer has already vetted (see SocketLayer); it never resolves.
 */
import { statusError, systemError, type SockguardSystemError } from './errors.js';
import { getLoop, type Loop, type LoopClient } from './loop.js';
import { kReclaimEpoch, kReclaimNext, kReclaimPrev, type ReclaimNode } from './reclaim.js';
import { NO_QUOTA, type QuotaMeter } from './quota.js';
import { CTR_BYTES_READ, CTR_BYTES_WRITTEN, CTR_PENDING, CTR_RECV_CALLS, CTR_SEND_CALLS, syscallNames } from './native.js';

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
export const DEFAULT_HIGH_WATER_MARK = 64 * 1024;

/** Observer the layer installs to see activity and closes (reclaim refresh, ledger); one per layer, shared. */
export interface RawObserver {
  activity(raw: RawSocket): void;
  closed(raw: RawSocket): void;
  /** An operation was refused over quota (ledger count). */
  overQuota?(): void;
}

const noopObserver: RawObserver = { activity() {}, closed() {} };

export class RawSocket implements LoopClient {
  handlers: RawHandlers;
  state: RawState = RawState.Pending as RawState;
  remoteAddress: string | undefined = undefined;
  remotePort = 0;
  remoteFamily: 4 | 6 | undefined = undefined;
  readonly highWaterMark: number;
  /** True once the peer's FIN arrived. */
  eof = false;
  paused = false;
  /** Set by the layer when the socket was closed for inactivity. */
  reclaimed = false;
  observer: RawObserver = noopObserver;
  /** The layer's quota meter; the shared null meter costs one property read per operation. */
  quota: QuotaMeter = NO_QUOTA;
  /** Whoever presents this socket to the user (the Duplex), so the layer can close it as a whole. */
  owner: { destroy(err?: Error): void; readonly closed?: boolean; once?(ev: 'close', cb: () => void): unknown } | null = null;
  // Idle-reclaim list links (reclaim.ts): the socket is its own list node.
  [kReclaimPrev]: ReclaimNode | null = null;
  [kReclaimNext]: ReclaimNode | null = null;
  [kReclaimEpoch] = -1;

  /** @internal native id, -1 while there is no native socket */
  id = -1;
  private loop: Loop | undefined = undefined;
  private ctr: Uint32Array | undefined = undefined;
  private base = 0;
  private refed = true;
  private ending = false;
  private finished = false;
  private wantDrain = false;
  /** Writes made before the connection is up; handed to the native queue at once on connect. */
  private queue: Buffer[] | null = null;
  private queued = 0;
  private candidates: Candidate[] | null = null;
  private attempt = 0;
  private connectTimer: NodeJS.Timeout | undefined = undefined;
  private lastError: Error | null = null;
  // Final counters, kept when the native slot is released.
  private fWritten = 0;
  private fRead = 0;
  private fSends = 0;
  private fRecvs = 0;

  constructor(handlers: RawHandlers = {}, highWaterMark = DEFAULT_HIGH_WATER_MARK) {
    this.handlers = handlers;
    this.highWaterMark = highWaterMark;
  }

  /**
   * Connects to the first reachable of `candidates` (already vetted), in order. `timeoutMs` > 0 bounds the whole
   * attempt: ETIMEDOUT when it passes.
   */
  connect(candidates: Candidate[], port: number, timeoutMs = 0): void {
    if (this.state !== RawState.Pending) return;
    this.candidates = candidates;
    this.remotePort = port;
    this.attempt = 0;
    if (timeoutMs > 0) {
      this.connectTimer = setTimeout(onConnectTimeout, timeoutMs, this);
      this.connectTimer.unref();
    }
    this.tryNext();
  }

  /** Takes over an already connected descriptor (a parked connection) in this thread's loop. */
  adopt(fd: number, remote: Candidate & { port: number }): number {
    const loop = (this.loop ??= getLoop());
    const id = loop.open(this);
    const r = loop.nat.socket_adopt(id, fd, this.highWaterMark);
    if (r < 0) {
      loop.release(id);
      return r;
    }
    this.bind(loop, id);
    this.remoteAddress = remote.address;
    this.remoteFamily = remote.family;
    this.remotePort = remote.port;
    this.state = RawState.Open;
    if (this.refed) loop.ref();
    if (this.paused) loop.nat.socket_read(id, false);
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
    const list = this.candidates!;
    const loop = (this.loop ??= getLoop());
    while (this.attempt < list.length) {
      const c = list[this.attempt++]!;
      this.remoteAddress = c.address;
      this.remoteFamily = c.family;
      const id = loop.open(this);
      const r = loop.nat.tcp_connect(id, c.family, c.address, this.remotePort, this.highWaterMark);
      if (r === 0) {
        this.bind(loop, id);
        this.state = RawState.Connecting;
        if (this.refed) loop.ref();
        return;
      }
      loop.release(id);
      this.lastError = statusError(r, { syscall: 'connect', address: c.address, port: this.remotePort });
    }
    // Nothing could even be started: report asynchronously, as a connect() caller has no listener yet.
    process.nextTick(failPending, this);
  }

  /** @internal */
  _onConnect(status: number): void {
    if (status < 0) {
      this.lastError = statusError(status, { syscall: 'connect', address: this.remoteAddress, port: this.remotePort });
      this.dropNative();
      this.state = RawState.Pending;
      this.tryNext();
      return;
    }
    this.state = RawState.Open;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    const nat = this.loop!.nat;
    if (this.paused) nat.socket_read(this.id, false);
    if (this.queue !== null) {
      const q = this.queue;
      this.queue = null;
      this.queued = 0;
      const r = q.length === 1 ? nat.socket_write(this.id, q[0]!) : nat.socket_writev(this.id, q);
      if (r < 0) {
        this.destroy(statusError(r, { syscall: 'write', address: this.remoteAddress, port: this.remotePort }));
        return;
      }
      if (this.wantDrain && r <= this.highWaterMark) {
        this.wantDrain = false;
        process.nextTick(emitDrain, this);
      }
    }
    if (this.ending) this.shutdown();
    this.observer.activity(this);
    this.handlers.onconnect?.(null);
  }

  /** @internal */
  _onData(slab: Buffer, offset: number, length: number): void {
    if (this.quota.enabled) {
      // Bytes that arrived are billed whatever happens; past the limit the socket fails with the quota error.
      const over = this.quota.recordReceive(length);
      if (over !== null) {
        this.observer.overQuota?.();
        this.destroy(over);
        return;
      }
    }
    this.observer.activity(this);
    this.handlers.ondata?.(slab, offset, length);
  }

  /** @internal */
  _onDgram(): void {}

  /** @internal */
  _onEof(): void {
    this.eof = true;
    this.observer.activity(this);
    this.handlers.onend?.();
  }

  /** @internal */
  _onError(status: number, syscall: number): void {
    this.destroy(
      statusError(status, { syscall: syscallNames[syscall] ?? 'read', address: this.remoteAddress, port: this.remotePort }),
    );
  }

  /** @internal */
  _onDrain(): void {
    this.wantDrain = false;
    this.observer.activity(this);
    this.handlers.ondrain?.();
  }

  /** @internal */
  _onShutdown(status: number): void {
    if (status < 0) {
      this.destroy(statusError(status, { syscall: 'shutdown', address: this.remoteAddress, port: this.remotePort }));
      return;
    }
    this.finished = true;
    this.handlers.onfinish?.();
  }

  /**
   * Queues bytes. Returns false when more than highWaterMark bytes are waiting: stop writing until ondrain.
   * Throws EPIPE after end() or destroy(): bytes are never dropped silently.
   */
  write(data: ArrayBufferView): boolean {
    if (this.quota.enabled) this.chargeSend(data.byteLength);
    if (this.state === RawState.Open && !this.ending) {
      const r = this.loop!.nat.socket_write(this.id, data);
      if (r >= 0) {
        this.observer.activity(this);
        if (r <= this.highWaterMark) return true;
        this.wantDrain = true;
        return false;
      }
      const err = statusError(r, { syscall: 'write', address: this.remoteAddress, port: this.remotePort });
      this.destroy(err);
      throw err;
    }
    if (this.state === RawState.Closed || this.ending) {
      throw systemError('EPIPE', { syscall: 'write', address: this.remoteAddress, port: this.remotePort || undefined });
    }
    // Before the connection is up the bytes wait here, so a failed attempt can move on to the next address.
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    (this.queue ??= []).push(buf);
    this.queued += buf.length;
    if (this.queued <= this.highWaterMark) return true;
    this.wantDrain = true;
    return false;
  }

  /** Queues several buffers at once (one native call). */
  writev(chunks: ArrayBufferView[]): boolean {
    if (this.quota.enabled) {
      let n = 0;
      for (const c of chunks) n += c.byteLength;
      this.chargeSend(n);
    }
    if (this.state === RawState.Open && !this.ending) {
      const r = this.loop!.nat.socket_writev(this.id, chunks);
      if (r >= 0) {
        this.observer.activity(this);
        if (r <= this.highWaterMark) return true;
        this.wantDrain = true;
        return false;
      }
      const err = statusError(r, { syscall: 'write', address: this.remoteAddress, port: this.remotePort });
      this.destroy(err);
      throw err;
    }
    const quota = this.quota;
    this.quota = NO_QUOTA;
    try {
      let ok = true;
      for (const c of chunks) ok = this.write(c);
      return ok;
    } finally {
      this.quota = quota;
    }
  }

  private chargeSend(bytes: number): void {
    if (this.state === RawState.Closed || this.ending) return; // the write fails with EPIPE below, uncharged
    try {
      this.quota.chargeSend(bytes);
    } catch (err) {
      this.observer.overQuota?.();
      throw err;
    }
  }

  /** Half-closes after every queued byte has left (onfinish then). */
  end(): void {
    if (this.ending || this.state === RawState.Closed) return;
    this.ending = true;
    if (this.state === RawState.Open) this.shutdown();
  }

  private shutdown(): void {
    const r = this.loop!.nat.socket_shutdown(this.id);
    if (r < 0) {
      this.destroy(statusError(r, { syscall: 'shutdown', address: this.remoteAddress, port: this.remotePort }));
    } else if (r === 1) {
      this.finished = true;
      process.nextTick(emitFinish, this);
    }
  }

  /** Closes at once; queued bytes are discarded (use end() to send them). */
  destroy(err: Error | null = null): void {
    if (this.state === RawState.Closed) return;
    this.state = RawState.Closed;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.queue = null;
    this.dropNative();
    this.observer.closed(this);
    process.nextTick(emitClose, this, err);
  }

  private dropNative(): void {
    if (this.id < 0) return;
    this.snapshot();
    const loop = this.loop!;
    loop.nat.socket_close(this.id);
    loop.release(this.id);
    if (this.refed) loop.unref();
    this.id = -1;
    this.ctr = undefined;
  }

  private snapshot(): void {
    this.fWritten = this.bytesWritten;
    this.fRead = this.bytesRead;
    this.fSends = this.sendCalls;
    this.fRecvs = this.recvCalls;
  }

  /**
   * Detaches the live connection from this thread's loop and returns its descriptor, leaving this object
   * closed without closing the connection. Fails with EBUSY while bytes are still queued.
   * @internal used by descriptor hand-off
   */
  detachFd(): number {
    if (this.state !== RawState.Open) return -9; // EBADF
    this.snapshot();
    const loop = this.loop!;
    const fd = loop.nat.socket_detach(this.id);
    if (fd < 0) return fd;
    loop.release(this.id);
    if (this.refed) loop.unref();
    this.id = -1;
    this.ctr = undefined;
    this.state = RawState.Closed;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    return fd;
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    if (this.state === RawState.Open) this.loop!.nat.socket_read(this.id, false);
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.state === RawState.Open) this.loop!.nat.socket_read(this.id, true);
  }

  /** Lets the process exit while this socket is open (like net.Socket#unref). */
  unref(): void {
    if (!this.refed) return;
    this.refed = false;
    if (this.id >= 0) this.loop!.unref();
  }

  ref(): void {
    if (this.refed) return;
    this.refed = true;
    if (this.id >= 0) this.loop!.ref();
  }

  private read64(slot: number): number {
    const c = this.ctr!;
    const i = this.base + slot;
    return c[i]! + c[i + 1]! * 4294967296;
  }

  /** Bytes accepted by the kernel. */
  get bytesWritten(): number {
    return this.ctr === undefined ? this.fWritten : this.read64(CTR_BYTES_WRITTEN);
  }

  /** Bytes read from the kernel. */
  get bytesRead(): number {
    return this.ctr === undefined ? this.fRead : this.read64(CTR_BYTES_READ);
  }

  /** send/write syscalls made. */
  get sendCalls(): number {
    return this.ctr === undefined ? this.fSends : this.read64(CTR_SEND_CALLS);
  }

  /** recv/read syscalls that returned data. */
  get recvCalls(): number {
    return this.ctr === undefined ? this.fRecvs : this.read64(CTR_RECV_CALLS);
  }

  /** Bytes accepted by write() but not yet by the kernel. */
  get pendingBytes(): number {
    return this.ctr === undefined ? this.queued : this.read64(CTR_PENDING) + this.queued;
  }

  get finishedWriting(): boolean {
    return this.finished;
  }

  /** Local or peer address of the live socket, or undefined. */
  name(peer: boolean): { address: string; family: 4 | 6; port: number } | undefined {
    if (this.id < 0) return undefined;
    const r = this.loop!.nat.socket_name(this.id, peer);
    if (typeof r === 'number') return undefined;
    return { family: r[0], address: r[1], port: r[2] };
  }

  /** @internal native handle access for socket options */
  get nativeId(): number {
    return this.id;
  }

  /** @internal */
  get native(): Loop['nat'] | undefined {
    return this.loop?.nat;
  }

  /** @internal why the connection attempt failed */
  get connectError(): Error | null {
    return this.lastError;
  }

  private finishConnect(err: Error): void {
    this.state = RawState.Closed;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.queue = null;
    this.observer.closed(this);
    process.nextTick(emitConnectFailure, this, err);
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
      this.lastError ?? systemError('ECONNREFUSED', { syscall: 'connect', address: this.remoteAddress, port: this.remotePort }),
    );
  }
}

function onConnectTimeout(raw: RawSocket): void {
  raw._timeout();
}

function failPending(raw: RawSocket): void {
  raw._failPending();
}

function emitConnectFailure(raw: RawSocket, err: Error): void {
  raw.handlers.onconnect?.(err);
  raw.handlers.onclose?.(err);
}

function emitClose(raw: RawSocket, err: Error | null): void {
  raw.handlers.onclose?.(err);
}

function emitDrain(raw: RawSocket): void {
  if (raw.state !== RawState.Closed) raw.handlers.ondrain?.();
}

function emitFinish(raw: RawSocket): void {
  if (raw.state !== RawState.Closed) raw.handlers.onfinish?.();
}

export type { SockguardSystemError };
