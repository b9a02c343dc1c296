/**
 * The native side of a UdpSocket and its layer entry. The split from UdpSocket is forced by dgram's API:
 * `socket.remoteAddress()` is a method there, while the layer reads `remoteAddress` as a property of its
 * entries. disconnect() replaces the native socket, so there may be several over a socket's life; the endpoint
 * keeps the counters of those already closed.
 */
import { EF_UNREF, Endpoint } from '../core/endpoint.js';
import type { Loop } from '../core/loop.js';
import type { LayerPort } from '../service/port.js';

// Entry points the handle calls on its socket; symbols keep them off the dgram-shaped public surface.
export const kClose = Symbol('sockguard.udp.close');
export const kLayerClose = Symbol('sockguard.udp.layerClose');
export const kMessage = Symbol('sockguard.udp.message');
export const kRecvError = Symbol('sockguard.udp.recvError');

/** What the handle needs from the socket it serves. */
export interface UdpOwner {
  /** @internal */
  [kClose](err: Error | null): void;
  /** @internal */
  [kLayerClose](): Promise<void>;
  /** @internal */
  [kMessage](slab: Buffer, offset: number, length: number): void;
  /** @internal */
  [kRecvError](status: number): void;
}

export class UdpHandle extends Endpoint {
  readonly owner: UdpOwner;
  /** Closed for good (the socket's own state lives in UdpSocket). */
  shut = false;

  constructor(owner: UdpOwner, port: LayerPort) {
    super();
    this.owner = owner;
    this.port = port;
  }

  protected get closed(): boolean {
    return this.shut;
  }

  /** A bound UDP socket is always reading: it keeps the process alive unless unref'd, as with dgram. */
  protected active(): boolean {
    return !this.shut;
  }

  /** The EPIPE/activity guard of every operation. */
  guard(syscall: string): void {
    this.operation(syscall);
  }

  get unrefd(): boolean {
    return (this.flags & EF_UNREF) !== 0;
  }

  /** Opens and registers a native socket bound to the any-address, port `port` (0: the kernel picks). */
  open(loop: Loop, family: 4 | 6, port: number): number {
    const id = loop.open(this);
    let r = loop.nat.udp_open(id, family);
    if (r < 0) {
      loop.release(id);
      return r;
    }
    r = loop.nat.udp_bind(id, family, family === 6 ? '::' : '0.0.0.0', port);
    if (r < 0) {
      loop.nat.socket_close(id);
      loop.release(id);
      return r;
    }
    this.bindNative(loop, id);
    return 0;
  }

  /** Closes the native socket, keeping its final counters. */
  drop(): void {
    this.dropNative();
  }

  _reclaimClose(): void {
    this.owner[kClose](null);
  }

  _layerClose(): Promise<void> {
    return this.owner[kLayerClose]();
  }

  override _onDgram(slab: Buffer, offset: number, length: number): void {
    this.owner[kMessage](slab, offset, length);
  }

  override _onError(status: number): void {
    this.owner[kRecvError](status);
  }
}
