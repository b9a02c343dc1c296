/**
 * sockguard: policy-enforced, metered, outbound-only sockets for Node.js on a native epoll/kqueue core.
 */
import { getDefaultLayer, type SocketLayer } from './layer.js';
import type { Socket, SocketConnectOptions } from './tcp/socket.js';
import type { SocketError } from './errors.js';

// Node types every 'error' listener as (err: Error); sockguard's carry a code, and a denial its rule.
declare module './tcp/socket.js' {
  interface Socket {
    on(event: 'error', listener: (err: SocketError) => void): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;
    once(event: 'error', listener: (err: SocketError) => void): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
    addListener(event: 'error', listener: (err: SocketError) => void): this;
    addListener(event: string | symbol, listener: (...args: any[]) => void): this;
    prependListener(event: 'error', listener: (err: SocketError) => void): this;
    prependListener(event: string | symbol, listener: (...args: any[]) => void): this;
    prependOnceListener(event: 'error', listener: (err: SocketError) => void): this;
    prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this;
  }
}
declare module './udp/socket.js' {
  interface UdpSocket {
    on(event: 'error', listener: (err: SocketError) => void): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;
    once(event: 'error', listener: (err: SocketError) => void): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
    addListener(event: 'error', listener: (err: SocketError) => void): this;
    addListener(event: string | symbol, listener: (...args: any[]) => void): this;
    prependListener(event: 'error', listener: (err: SocketError) => void): this;
    prependListener(event: string | symbol, listener: (...args: any[]) => void): this;
    prependOnceListener(event: 'error', listener: (err: SocketError) => void): this;
    prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this;
  }
}

export { SocketLayer, getDefaultLayer, type SocketLayerOptions, type RawConnectOptions } from './layer.js';
export { Socket, type SocketConnectOptions, type SocketOptions } from './tcp/socket.js';
export { RawSocket, type RawHandlers } from './tcp/raw.js';
export { TlsSocket } from './tls/socket.js';
export type { TlsConnectOptions, UpgradeTlsOptions } from './tls/context.js';
export { UdpSocket, type UdpSocketOptions, type RemoteInfo, type UdpBindOptions, type SendCallback } from './udp/socket.js';
export { constants } from './service/sockopts.js';
export { codes, SockguardError, SockguardSystemError, OverQuotaError } from './errors.js';
export { formatMetrics, type MeterLike } from './service/metrics.js';
export type { SockguardCode, SocketError } from './errors.js';
export type { QuotasOption, QuotasConfig, QuotaResource, QuotaWindow } from './service/quota.js';
export type { InstallOptions } from './dropin/install.js';
export type { Usage } from './service/ledger.js';
export type { Verdict, Policy, PolicyObject, PolicySpec, PolicyError, Resolver } from './policy/index.js';

/** Like net.connect, through the default layer. */
export function connect(options: SocketConnectOptions, connectListener?: () => void): Socket;
export function connect(port: number | string, host?: string, connectListener?: () => void): Socket;
export function connect(port: number | string, connectListener?: () => void): Socket;
export function connect(...args: unknown[]): Socket {
  const layer = getDefaultLayer();
  return (layer.connect as (...a: unknown[]) => Socket)(...args);
}

/** Alias of connect(), as in net. */
export const createConnection = connect;

/** Like dgram.createSocket, through the default layer. */
export function createSocket(...args: Parameters<SocketLayer['createSocket']>): ReturnType<SocketLayer['createSocket']> {
  return getDefaultLayer().createSocket(...args);
}
