/**
 * The sends of one UDP socket that wait their turn — behind a name resolution, a connect, or a kernel buffer
 * that was full — so datagrams leave in call order. The socket decides how one send is dispatched; the queue
 * keeps the order and the retry timer.
 */
import type { Candidate } from '../service/port.js';
import type { SendCallback } from './args.js';

/** Retries of a datagram the kernel refused for lack of buffer space (about one per millisecond) before it fails. */
export const MAX_SEND_RETRIES = 1000;

export interface PendingSend {
  data: Buffer[];
  bytes: number;
  /** The vetted destination; null for a send on the connected peer. */
  dest: Candidate | null;
  port: number;
  /** Set when vetting failed: reported instead of sending. */
  error: Error | null;
  ready: boolean;
  charged: boolean;
  retries: number;
  cb: SendCallback | undefined;
  /** Report only to the callback: the failure already surfaced as an 'error' (a failed connect). */
  quiet: boolean;
}

/** Sends one ready send; false when the kernel had no room (it then stays first in line for a retry). */
export type Dispatch = (s: PendingSend) => boolean;

export class SendQueue {
  /** Waiting sends, oldest first, from index #head. */
  #queue: (PendingSend | undefined)[] = [];
  #head = 0;
  #retry: NodeJS.Timeout | undefined = undefined;
  #unref = false;
  #closed = false;
  readonly #dispatch: Dispatch;

  constructor(dispatch: Dispatch) {
    this.#dispatch = dispatch;
  }

  /** Sends `s` now when nothing is ahead of it and it is ready; otherwise it waits its turn. */
  push(s: PendingSend): void {
    if (!s.ready || this.#head !== this.#queue.length || !this.#dispatch(s)) this.#queue.push(s);
  }

  /** Sends every ready send at the head of the queue, in order; stops at the first that is still waiting. */
  drain(): void {
    const q = this.#queue;
    while (this.#head < q.length && this.#retry === undefined && !this.#closed) {
      const s = q[this.#head]!;
      if (!s.ready) return;
      q[this.#head++] = undefined;
      if (!this.#dispatch(s)) {
        q[--this.#head] = s;
        return;
      }
    }
    if (this.#head === q.length) {
      q.length = 0;
      this.#head = 0;
    }
  }

  /** The kernel had no room: try the head again shortly (UDP sockets have no writability wait in the core). */
  retrySoon(): void {
    this.#retry = setTimeout(retry, 1, this);
    if (this.#unref) this.#retry.unref();
  }

  /** @internal timer callback */
  _retry(): void {
    this.#retry = undefined;
    this.drain();
  }

  /** Every waiting send, oldest first. */
  *waiting(): IterableIterator<PendingSend> {
    const q = this.#queue;
    for (let i = this.#head; i < q.length; i++) yield q[i]!;
  }

  get bytes(): number {
    let n = 0;
    for (const s of this.waiting()) n += s.bytes;
    return n;
  }

  get count(): number {
    return this.#queue.length - this.#head;
  }

  ref(): void {
    this.#unref = false;
    this.#retry?.ref();
  }

  unref(): void {
    this.#unref = true;
    this.#retry?.unref();
  }

  /** The socket closed: every waiting send with a callback gets the error `why()` builds; nothing is sent any more. */
  close(why: () => Error): void {
    this.#closed = true;
    if (this.#retry !== undefined) {
      clearTimeout(this.#retry);
      this.#retry = undefined;
    }
    const err = this.count > 0 ? why() : null;
    for (const s of this.waiting()) if (s.cb !== undefined) process.nextTick(s.cb, err);
    this.#queue = [];
    this.#head = 0;
  }
}

function retry(q: SendQueue): void {
  q._retry();
}
