/**
 * sockguard: policy-enforced, metered, outbound-only sockets for Node.js on a native epoll/kqueue core.
 */
import { getDefaultLayer, type SocketLayer } from './layer.js';
import type { Socket, SocketConnectOptions } from './tcp/socket.js';

export { SocketLayer, getDefaultLayer, type SocketLayerOptions, type RawConnectOptions } from './layer.js';
export { Socket, type SocketConnectOptions, type SocketOptions } from './tcp/socket.js';
export { RawSocket, type RawHandlers } from './tcp/raw.js';
export { TlsSocket } from './tls/socket.js';
export type { TlsConnectOptions } from './tls/context.js';
export { UdpSocket, type UdpSocketOptions, type RemoteInfo, type UdpBindOptions, type SendCallback } from './udp/socket.js';
export { constants } from './service/sockopts.js';
export { codes } from './errors.js';
export type { Usage } from './service/ledger.js';
export type { Verdict, Policy, Resolver } from './policy/index.js';

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
