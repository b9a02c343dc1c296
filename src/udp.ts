/**
 * UDP sockets of a layer (dgram.Socket-compatible). Being implemented.
 */
import { EventEmitter } from 'node:events';
import type { LayerPort } from './layer.js';

export interface UdpSocketOptions {
  type: 'udp4' | 'udp6';
}

export class UdpSocket extends EventEmitter {
  constructor(port: LayerPort, options: UdpSocketOptions, listener?: (msg: Buffer, rinfo: { address: string; family: string; port: number; size: number }) => void) {
    super();
    void port;
    void options;
    void listener;
    throw new Error('UDP sockets are not implemented yet');
  }
}
