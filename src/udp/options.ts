/**
 * The socket-option side of dgram's API on a sockguard UDP socket: the option table (emulated or native, as the
 * layer says), buffer sizes through it, and the options the service refuses (TTL, broadcast, multicast).
 */
import { EventEmitter } from 'node:events';
import { endpointSockoptHooks } from '../core/endpoint.js';
import { invalidArg, systemError } from '../errors.js';
import { constants as C, getsockopt, setsockopt, type SockoptValue } from '../service/sockopts.js';
import { bufferSize } from './args.js';
import type { UdpHandle } from './handle.js';

export abstract class UdpOptions extends EventEmitter {
  /**
   * @internal the handle, after the EPIPE/activity guard of an operation named `syscall`
   */
  protected abstract _guarded(syscall: string): UdpHandle;

  /**
   * Reads a socket option (docs/service.md#socket-options): App Engine's mock values in emulate mode, real ones with
   * `sockopts: 'native'`; with `buflen`, the little-endian bytes. Unsupported options throw EACCES.
   */
  getsockopt(level: number, name: number, buflen?: number): number | Buffer {
    const h = this._guarded('getsockopt');
    return getsockopt(h.port.sockopts, endpointSockoptHooks, h, level, name, buflen);
  }

  /** Sets a socket option: validated, then ignored in emulate mode. Unsupported options throw EACCES. */
  setsockopt(level: number, name: number, value: SockoptValue): void {
    const h = this._guarded('setsockopt');
    setsockopt(h.port.sockopts, endpointSockoptHooks, h, level, name, value);
  }

  /** SO_RCVBUF through the option table (emulated unless `sockopts: 'native'`). */
  setRecvBufferSize(size: number): void {
    this.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, bufferSize(size, 'size')!);
  }

  /** SO_SNDBUF through the option table (emulated unless `sockopts: 'native'`). */
  setSendBufferSize(size: number): void {
    this.setsockopt(C.SOL_SOCKET, C.SO_SNDBUF, bufferSize(size, 'size')!);
  }

  /** SO_RCVBUF: 2097152 in emulate mode, the kernel's value in native mode. */
  getRecvBufferSize(): number {
    return this.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF) as number;
  }

  /** SO_SNDBUF: 2097152 in emulate mode, the kernel's value in native mode. */
  getSendBufferSize(): number {
    return this.getsockopt(C.SOL_SOCKET, C.SO_SNDBUF) as number;
  }

  /** IP_TTL is not one of the service's options (docs/service.md#socket-options): EACCES once the argument is valid. */
  setTTL(ttl: number): number {
    this._guarded('setTTL');
    if (typeof ttl !== 'number') throw invalidArg('ttl', 'number', ttl);
    throw systemError('EACCES', { syscall: 'setTTL', detail: 'IP_TTL is not a supported option' });
  }

  /** Broadcast destinations are denied by policy: turning broadcast on is EACCES, turning it off a no-op. */
  setBroadcast(flag: boolean): void {
    this._guarded('setBroadcast');
    if (flag) throw systemError('EACCES', { syscall: 'setBroadcast', detail: 'broadcast is not allowed' });
  }

  /** Multicast is denied by policy: EACCES. */
  setMulticastTTL(ttl: number): number {
    throw this.multicast('setMulticastTTL');
  }
  /** Multicast is denied by policy: EACCES. */
  setMulticastLoopback(flag: boolean): boolean {
    throw this.multicast('setMulticastLoopback');
  }
  /** Multicast is denied by policy: EACCES. */
  setMulticastInterface(multicastInterface: string): void {
    throw this.multicast('setMulticastInterface');
  }
  /** Multicast is denied by policy: EACCES. */
  addMembership(multicastAddress: string, multicastInterface?: string): void {
    throw this.multicast('addMembership');
  }
  /** Multicast is denied by policy: EACCES. */
  dropMembership(multicastAddress: string, multicastInterface?: string): void {
    throw this.multicast('dropMembership');
  }
  /** Multicast is denied by policy: EACCES. */
  addSourceSpecificMembership(sourceAddress: string, groupAddress: string, multicastInterface?: string): void {
    throw this.multicast('addSourceSpecificMembership');
  }
  /** Multicast is denied by policy: EACCES. */
  dropSourceSpecificMembership(sourceAddress: string, groupAddress: string, multicastInterface?: string): void {
    throw this.multicast('dropSourceSpecificMembership');
  }

  private multicast(syscall: string): Error {
    this._guarded(syscall);
    return systemError('EACCES', { syscall, detail: 'multicast is not allowed' });
  }
}
