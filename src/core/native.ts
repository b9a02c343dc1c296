/**
 * The native binding, described in one interface so the facade is type-checked against it.
 *
 * Every function returns a number: >= 0 on success, a negative errno on failure (see src/errors.ts
 * `statusError`). Arguments are validated in TypeScript before they cross; the native side converts, it does
 * not decide.
 */
import { createRequire } from 'node:module';
import { codes, codedError } from '../errors.js';

export interface NativeLayout {
  recCap: number;
  chunk: number;
  ctrSlots: number;
  dgramHeader: number;
  socketSize: number;
  backend: 'epoll' | 'kqueue';
}

export interface NativeBinding {
  /** Creates this thread's loop over a JS-owned slab, a record buffer and the batch dispatcher. */
  loop_init(
    slab: ArrayBuffer,
    records: Int32Array,
    dispatch: (count: number) => void,
    stage: ArrayBuffer,
    stageRecords: Int32Array,
  ): number;
  /** Adds counters for the next `layout().chunk` socket ids; returns the number of chunks. */
  loop_add_chunk(counters: ArrayBuffer): number;
  /** Whether the loop keeps the process alive. */
  loop_ref(on: boolean): void;
  tcp_connect(id: number, family: 4 | 6, ip: string, port: number, highWaterMark: number): number;
  udp_open(id: number, family: 4 | 6): number;
  udp_bind(id: number, family: 4 | 6, ip: string, port: number): number;
  udp_connect(id: number, family: 4 | 6, ip: string, port: number): number;
  /** Dissolves a UDP socket's association; its local port stays. */
  udp_disconnect(id: number): number;
  /** Sends one datagram; `ip` null on a connected socket. Bytes sent or -errno. */
  udp_send(id: number, data: ArrayBufferView, ip: string | null, port: number, family: number): number;
  /** Queues (or, when large, sends) bytes; returns bytes still pending natively or -errno. */
  socket_write(id: number, data: ArrayBufferView): number;
  socket_writev(id: number, chunks: ArrayBufferView[]): number;
  /** 1 when SHUT_WR was sent at once, 0 when it follows the queue (a SHUTDOWN record), or -errno. */
  socket_shutdown(id: number): number;
  socket_read(id: number, on: boolean): number;
  socket_close(id: number): number;
  /** Takes the socket out of the loop without closing it: returns the descriptor or -errno (-EBUSY: bytes pending). */
  socket_detach(id: number): number;
  socket_adopt(id: number, fd: number, highWaterMark: number): number;
  socket_name(id: number, peer: boolean): [family: 4 | 6, address: string, port: number] | number;
  socket_so_error(id: number): number;
  socket_getsockopt(id: number, level: number, name: number): number;
  socket_setsockopt(id: number, level: number, name: number, value: number): number;
  socket_keepalive(id: number, on: boolean, idleSeconds: number): number;
  layout(): NativeLayout;
}

/** Record types written by native/loop.cc (see native/sg.h for the layout). */
export const REC_DATA = 1;
export const REC_DGRAM = 2;
export const REC_EOF = 3;
export const REC_ERROR = 4;
export const REC_CONNECT = 5;
export const REC_DRAIN = 6;
export const REC_SHUTDOWN = 7;

/** Syscall codes in ERROR records. */
export const syscallNames = ['', 'read', 'write', 'connect', 'shutdown'] as const;

/** Counter slots per socket, uint64 each (native/sg.h SG_CTR_*), as uint32 indexes of the low half. */
export const CTR_BYTES_WRITTEN = 0;
export const CTR_BYTES_READ = 2;
export const CTR_SEND_CALLS = 4;
export const CTR_RECV_CALLS = 6;
export const CTR_PENDING = 8;
export const CTR_STAGED = 10;

let binding: NativeBinding | undefined;
let loadError: unknown;

/** The addon, loaded on first use so that a missing build fails with a coded error at the call that needs it. */
export function native(): NativeBinding {
  if (binding) return binding;
  if (loadError) throw unavailable(loadError);
  const require = createRequire(import.meta.url);
  const candidates = process.env.SOCKGUARD_NATIVE
    ? [process.env.SOCKGUARD_NATIVE]
    : ['../../build/Release/sockguard.node', '../../build/Debug/sockguard.node'];
  for (const path of candidates) {
    try {
      binding = require(path) as NativeBinding;
      return binding;
    } catch (err) {
      loadError = err;
    }
  }
  throw unavailable(loadError);
}

function unavailable(cause: unknown): Error {
  const err = codedError(
    Error,
    codes.NATIVE_UNAVAILABLE,
    `sockguard's native addon could not be loaded (run \`npm run build:native\`): ${(cause as Error)?.message ?? cause}`,
  );
  (err as Error & { cause?: unknown }).cause = cause;
  return err;
}
