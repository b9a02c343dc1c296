/**
 * Received datagrams as the loop delivers them: in the shared slab, a header (native/sg.h SG_DGRAM_HDR: u8
 * family, u8 0, u16 port in host order, 16 address bytes) followed by the payload, valid only during dispatch.
 */
import { endianness } from 'node:os';
import { LAYOUT } from '../core/native.js';
import { formatV4, formatV6 } from '../policy/literal.js';

const LITTLE_ENDIAN = endianness() === 'LE';

/** Where a datagram came from, as dgram reports it. */
export interface RemoteInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
  size: number;
}

/**
 * Copies datagrams out of the slab and decodes their senders. It remembers the last sender, so a steady peer
 * costs no string building per datagram.
 */
export class DatagramReader {
  #lastFamily = 0;
  readonly #lastWords = new Uint32Array(4);
  #lastAddress = '';

  /** The payload (a copy the caller may keep) and its sender. `offset` is the header's position in the slab. */
  read(slab: Buffer, offset: number, length: number): [Buffer, RemoteInfo] {
    const start = offset + LAYOUT.dgramHeader;
    const msg = Buffer.allocUnsafe(length);
    slab.copy(msg, 0, start, start + length);
    const family = slab[offset]!;
    const port = LITTLE_ENDIAN ? slab.readUInt16LE(offset + 2) : slab.readUInt16BE(offset + 2);
    return [msg, { address: this.#sender(slab, offset + 4, family), family: family === 6 ? 'IPv6' : 'IPv4', port, size: length }];
  }

  #sender(slab: Buffer, at: number, family: number): string {
    const w = this.#lastWords;
    const w0 = slab.readUInt32BE(at);
    if (family === 4) {
      if (this.#lastFamily !== 4 || w[0] !== w0) {
        this.#lastFamily = 4;
        w[0] = w0;
        this.#lastAddress = formatV4(w0);
      }
      return this.#lastAddress;
    }
    const w1 = slab.readUInt32BE(at + 4);
    const w2 = slab.readUInt32BE(at + 8);
    const w3 = slab.readUInt32BE(at + 12);
    if (this.#lastFamily !== 6 || w[0] !== w0 || w[1] !== w1 || w[2] !== w2 || w[3] !== w3) {
      this.#lastFamily = 6;
      w[0] = w0;
      w[1] = w1;
      w[2] = w2;
      w[3] = w3;
      this.#lastAddress = formatV6(w0, w1, w2, w3);
    }
    return this.#lastAddress;
  }
}
