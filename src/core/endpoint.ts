/**
 * Endpoint: what every native-backed socket shares, whatever its transport (the TCP raw socket and the UDP
 * handle extend it): the native id and the counters read through a typed-array view, final counters kept
 * when the native socket closes, the reclaim-list links, the layer port, the loop reference that keeps the
 * process alive only while the socket has work (as a libuv handle does), the EPIPE/activity guard of every
 * operation, and the socket-option hooks.
 */
import { statusError, systemError } from '../errors.js';
import type { LayerEntry, LayerPort } from '../service/port.js';
import { NO_PORT } from '../service/port.js';
import { kReclaimEpoch, kReclaimNext, kReclaimPrev, type ReclaimNode } from '../service/reclaim.js';
import { constants as C, type SockoptHooks } from '../service/sockopts.js';
import { getLoop, type Loop, type LoopClient } from './loop.js';
import { CTR_BYTES_READ, CTR_BYTES_WRITTEN, CTR_PENDING, CTR_RECV_CALLS, CTR_SEND_CALLS, CTR_STAGED, LAYOUT } from './native.js';

/** Closed for inactivity by the layer. */
export const EF_RECLAIMED = 1;
/** The user asked that this socket not keep the process alive. */
export const EF_UNREF = 2;
/** This endpoint currently holds one of the loop's references. */
export const EF_HELD = 4;
/** Bytes were queued at the last idle check (see _busy). */
const EF_QUEUED = 8;
/** First flag bit free for subclasses. */
export const EF_FREE = 16;


const TWO_32 = 4294967296;

export abstract class Endpoint implements LayerEntry, LoopClient {
  /** @internal native id, -1 while there is no native socket */
  id = -1;
  /** @internal bit field: EF_* here, subclass bits from EF_FREE up */
  flags = 0;
  /** @internal the layer this endpoint belongs to */
  port: LayerPort = NO_PORT;
  remoteAddress: string | undefined = undefined;
  remotePort = 0;
  // Idle-reclaim list links (service/reclaim.ts): the endpoint is its own list node.
  [kReclaimPrev]: ReclaimNode | null = null;
  [kReclaimNext]: ReclaimNode | null = null;
  [kReclaimEpoch] = -1;
  private ctr: Uint32Array | undefined = undefined;
  private base = 0;
  /** Counters [written, read, sends, recvs] of native sockets already closed. */
  private acc: Float64Array | null = null;
  /** Counters this endpoint started from (a connection attached from a hand-off token), billed elsewhere. */
  carried: Float64Array | null = null;

  /** Whether the endpoint has work that should keep the process alive (connecting, reading, writing). */
  protected abstract active(): boolean;
  /** True once the endpoint is closed for good. */
  protected abstract get closed(): boolean;
  /** @internal */
  abstract _reclaimClose(): void;
  /** @internal */
  abstract _layerClose(): Promise<void>;

  // LoopClient: records a transport does not expect are ignored.
  _onConnect(_status: number, _tls: number): void {}
  _onData(_slab: Buffer, _offset: number, _length: number): void {}
  _onDgram(_slab: Buffer, _offset: number, _length: number): void {}
  _onEof(): void {}
  _onError(_status: number, _syscall: number): void {}
  _onDrain(): void {}
  _onShutdown(_status: number): void {}
  _onSession(): void {}

  /** Set by the layer when the socket was closed for inactivity. */
  get reclaimed(): boolean {
    return (this.flags & EF_RECLAIMED) !== 0;
  }
  set reclaimed(on: boolean) {
    this.flags = on ? this.flags | EF_RECLAIMED : this.flags & ~EF_RECLAIMED;
  }

  /** Takes native id `id` (already opened in `loop`): counters become readable. */
  protected bindNative(loop: Loop, id: number): void {
    this.id = id;
    this.ctr = loop.counters[Math.floor(id / loop.chunk)];
    this.base = (id % loop.chunk) * loop.slots * 2;
    this.updateRef();
  }

  /**
   * Closes the native socket. Its counters are folded in only after the close: the core hands bytes that were
   * still queued to the kernel as part of closing, and those are billed like any other.
   */
  protected dropNative(): void {
    const id = this.id;
    if (id < 0) return;
    const loop = getLoop();
    loop.nat.socket_close(id);
    this.unbindNative(loop);
  }

  /**
   * Hands the live native socket to `to` (TLS started on a connected socket): the same id, so its counters go
   * on counting the one connection, with what this endpoint carried before. This endpoint keeps its own counters
   * as they are now and no longer refers to the native socket; the loop's records follow `to` after the current
   * batch (Loop#retarget).
   */
  protected passNative(loop: Loop, to: Endpoint): void {
    const id = this.id;
    to.acc = this.acc === null ? null : Float64Array.from(this.acc);
    to.carried = this.carried;
    const acc = (this.acc ??= new Float64Array(4));
    acc[0]! += this.read64(CTR_BYTES_WRITTEN);
    acc[1]! += this.read64(CTR_BYTES_READ);
    acc[2]! += this.read64(CTR_SEND_CALLS);
    acc[3]! += this.read64(CTR_RECV_CALLS);
    this.id = -1;
    this.ctr = undefined;
    this.updateRef();
    if (this.flags & EF_UNREF) to.flags |= EF_UNREF;
    to.bindNative(loop, id);
    loop.retarget(id, this, to);
  }

  /** Starts the counters from a hand-off token's: they continue where the detached socket left them. */
  protected inherit(counters: ArrayLike<number>): void {
    this.carried = Float64Array.from(counters);
    this.acc = Float64Array.from(counters);
  }

  /** Forgets the native id after the core let go of it (closed or detached), keeping its final counters. */
  protected unbindNative(loop: Loop): void {
    const acc = (this.acc ??= new Float64Array(4));
    acc[0]! += this.read64(CTR_BYTES_WRITTEN);
    acc[1]! += this.read64(CTR_BYTES_READ);
    acc[2]! += this.read64(CTR_SEND_CALLS);
    acc[3]! += this.read64(CTR_RECV_CALLS);
    loop.release(this.id);
    this.id = -1;
    this.ctr = undefined;
    this.updateRef();
  }

  protected read64(slot: number): number {
    const c = this.ctr;
    if (c === undefined) return 0;
    const i = this.base + slot;
    return c[i]! + c[i + 1]! * TWO_32;
  }

  /** Adds `n` to a counter slot that JS maintains (staged bytes). */
  protected add32(slot: number, n: number): number {
    const c = this.ctr!;
    const i = this.base + slot;
    return (c[i] = c[i]! + n);
  }

  private total(slot: number, i: number): number {
    const acc = this.acc;
    return (acc === null ? 0 : acc[i]!) + this.read64(slot);
  }

  /** Bytes accepted by the kernel. */
  get bytesWritten(): number {
    return this.total(CTR_BYTES_WRITTEN, 0);
  }
  /** Bytes read from the kernel. */
  get bytesRead(): number {
    return this.total(CTR_BYTES_READ, 1);
  }
  /** send/write syscalls made. */
  get sendCalls(): number {
    return this.total(CTR_SEND_CALLS, 2);
  }
  /** recv/read syscalls that returned data. */
  get recvCalls(): number {
    return this.total(CTR_RECV_CALLS, 3);
  }
  /** Bytes accepted by write() and not yet by the kernel (queued natively or staged in JS). */
  get pendingBytes(): number {
    return this.read64(CTR_PENDING) + this.read64(CTR_STAGED);
  }

  /**
   * @internal reclaim: not idle while bytes are queued, nor at the first check after a queue emptied: only a
   * flush moves bytes without a call from JS (received bytes are delivered to JS, which counts as activity), and
   * a queue seen non-empty that is empty now was taken by the kernel in between. Bytes that left before a check
   * that saw an empty queue were already refreshed by the write that queued them.
   */
  _busy(): boolean {
    const queued = this.pendingBytes > 0;
    const busy = queued || (this.flags & EF_QUEUED) !== 0;
    this.flags = queued ? this.flags | EF_QUEUED : this.flags & ~EF_QUEUED;
    return busy;
  }

  /**
   * Every user operation: EPIPE on a closed or reclaimed socket, else a refresh of the reclaim deadline (a
   * failing operation on a live socket still counts as activity).
   */
  protected operation(syscall: string): void {
    if (this.reclaimed || this.closed) throw systemError('EPIPE', { syscall });
    this.port.touch(this);
  }

  /** Lets the process exit while this socket is open (like net.Socket#unref). */
  unref(): void {
    if (this.flags & EF_UNREF) return;
    this.flags |= EF_UNREF;
    this.updateRef();
  }

  ref(): void {
    if (!(this.flags & EF_UNREF)) return;
    this.flags &= ~EF_UNREF;
    this.updateRef();
  }

  /**
   * Holds a loop reference exactly while the endpoint is ref'd, has a native socket and has work: like a libuv
   * handle, an open socket that is neither connecting, reading nor writing does not keep the process alive.
   */
  protected updateRef(): void {
    const want = this.id >= 0 && (this.flags & EF_UNREF) === 0 && this.active();
    if (want === ((this.flags & EF_HELD) !== 0)) return;
    if (want) {
      this.flags |= EF_HELD;
      getLoop().ref();
    } else {
      this.flags &= ~EF_HELD;
      getLoop().unref();
    }
  }
}

/** Native access for socket options, shared by every endpoint (the target is the endpoint). */
export const endpointSockoptHooks: SockoptHooks<Endpoint> = {
  soError(e) {
    if (e.id < 0) return 0;
    const r = getLoop().nat.socket_so_error(e.id);
    return r < 0 ? -r : 0;
  },
  getNative(e, level, name) {
    if (e.id < 0) throw systemError('EBADF', { syscall: 'getsockopt' });
    const v = getLoop().nat.socket_getsockopt(e.id, level, name);
    if (v < 0 && !(level === C.SOL_SOCKET && name === C.SO_LINGER && v === LAYOUT.lingerOff)) {
      throw statusError(v, { syscall: 'getsockopt' });
    }
    return v;
  },
  setNative(e, level, name, value) {
    if (e.id < 0) throw systemError('EBADF', { syscall: 'setsockopt' });
    const r = getLoop().nat.socket_setsockopt(e.id, level, name, value);
    if (r < 0) throw statusError(r, { syscall: 'setsockopt' });
  },
};
