/**
 * The native binding, described in one interface so the facade is type-checked against it.
 *
 * Every function validates its arguments before any effect: a value of the wrong type throws a `TypeError` with
 * code `ERR_INVALID_ARG_TYPE`, a number out of range (or not an integer) a `RangeError` with code
 * `ERR_OUT_OF_RANGE`. Past that, every function answers a number: >= 0 on success, a negative errno on failure
 * (see src/errors.ts `statusError`). Callers validate user input before it gets here (with messages that name
 * the option); the native checks are the boundary's own guarantee, not a second policy.
 *
 * The constants below (record types, counter slots, syscall names) come from the addon's `layout()` when it
 * loads: native/sg.h is their only definition. They are live bindings, assigned before `native()` first
 * returns, so read them after that (every user reaches them through `getLoop()`, which loads the addon).
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { codes, codedError, systemError } from '../errors.js';

export interface NativeLayout {
  /** native/sg.h SG_LAYOUT_VERSION. */
  version: number;
  /** Records in the record buffer, and int32 per record. */
  recCap: number;
  recInts: number;
  /** Sockets per counter chunk, and uint64 counters per socket. */
  chunk: number;
  ctrSlots: number;
  /** Bytes of the address header before each datagram in the slab. */
  dgramHeader: number;
  /** Smallest receive slab loop_init accepts. */
  slabMin: number;
  /** Staged-write records: header int32s ([count, used]), then int32s per record ([id, offset, length]). */
  stageHeader: number;
  stageInts: number;
  /** Most buffers in one socket_writev call. */
  writevMax: number;
  /** Longest address text the core considers (longer text answers -EINVAL). */
  ipMax: number;
  /** SO_LINGER crosses as one int: `lingerOff` turns it off, 0..`lingerMax` on with that many seconds. */
  lingerOff: number;
  lingerMax: number;
  socketSize: number;
  rec: { data: number; dgram: number; eof: number; error: number; connect: number; drain: number; shutdown: number; session: number };
  /** ERROR records' syscall codes, and their names indexed by code. */
  sys: { read: number; write: number; connect: number; shutdown: number };
  syscallNames: string[];
  /** Counter slot indexes (uint64 each). */
  ctr: { bytesWritten: number; bytesRead: number; sendCalls: number; recvCalls: number; pending: number; staged: number };
  backend: 'epoll' | 'kqueue';
  /** loop_init's `backend` values: libuv handles (Node's default), or a helper thread (Bun, Deno, on demand). */
  backends: { uv: number; thread: number };
}

export interface NativeBinding {
  /**
   * Creates this thread's loop over a JS-owned slab, a record buffer, the batch dispatcher and the staging
   * buffers; `owner` is handed to later callers by `loop_owner`. -EEXIST when the thread has a loop.
   * `backend` is one of `layout().backends`; the thread backend calls `schedule(later)` when it needs one
   * `loop_settle()` call (in this turn, or in a later one when `later`).
   */
  loop_init(
    slab: ArrayBuffer,
    records: Int32Array,
    dispatch: (count: number) => void,
    stage: ArrayBuffer,
    stageRecords: Int32Array,
    owner: object,
    backend: number,
    schedule?: (later: boolean) => void,
  ): number;
  /** Thread backend: flushes queued writes and delivers their records; 1 when work is left for a later turn. */
  loop_settle(): number;
  /** The `owner` this thread's loop was created with, if it has one. */
  loop_owner(): object | undefined;
  /** Adds counters for the next `layout().chunk` socket ids; returns the number of chunks. */
  loop_add_chunk(counters: ArrayBuffer): number;
  /** Whether the loop keeps the process alive. */
  loop_ref(on: boolean): number;
  tcp_connect(id: number, family: 4 | 6, ip: string, port: number, highWaterMark: number): number;
  udp_open(id: number, family: 4 | 6): number;
  udp_bind(id: number, family: 4 | 6, ip: string, port: number): number;
  udp_connect(id: number, family: 4 | 6, ip: string, port: number): number;
  /** Dissolves a UDP socket's association; its local port stays. */
  udp_disconnect(id: number): number;
  /** Sends one datagram; `ip` null on a connected socket (port and family are then unused). Bytes sent or -errno. */
  udp_send(id: number, data: ArrayBufferView, ip: string | null, port: number, family: number): number;
  /** Queues (or, when large, sends) bytes; returns bytes still pending natively or -errno. */
  /** With `now`, the bytes leave at once unless the socket already sent early this turn (or waits for
   * writability): a request written while nothing else waits does not wait for the end of the turn. */
  socket_write(id: number, data: ArrayBufferView, now?: boolean): number;
  /** As socket_write for up to `layout().writevMax` buffers. */
  socket_writev(id: number, chunks: ArrayBufferView[], now?: boolean): number;
  /** Takes the staged writes and sends the socket's queue now, as socket_write's `now` does. 0 or -EBADF. */
  socket_flush(id: number): number;
  /** Flushes every socket written since the last flush, without dispatching records. 0 or -EBADF (no loop). */
  loop_flush(): number;
  /** 1 when SHUT_WR was sent at once, 0 when it follows the queue (a SHUTDOWN record), or -errno. */
  socket_shutdown(id: number): number;
  socket_read(id: number, on: boolean): number;
  socket_close(id: number): number;
  /** Takes the socket out of the loop without closing it: returns the descriptor or -errno (-EBUSY: bytes pending). */
  socket_detach(id: number): number;
  socket_adopt(id: number, fd: number, highWaterMark: number): number;
  /**
   * Parked connections: one table per process, shared by every worker thread. `park_put` takes ownership of fd
   * (on success) with the bytes read from it and not yet consumed; idleMs > 0 closes it once that long passes
   * without a take. `park_take` hands both over, or answers -EPIPE (never parked, taken, or reclaimed).
   */
  park_put(key: string, fd: number, unread: ArrayBufferView | null, idleMs: number): number;
  park_take(key: string): [fd: number, unread: Buffer | null] | number;
  park_close(key: string): number;
  park_sweep(): number;
  park_count(): number;
  /**
   * The local broker's Unix socket (blocking calls bounded by timeouts): messages framed by length, a descriptor
   * riding along. Both ends refuse another user's process (-EACCES). A received descriptor is the caller's.
   */
  unix_listen(path: string): number;
  unix_connect(path: string, timeoutMs: number): number;
  unix_accept(fd: number, waitMs: number, timeoutMs: number): number;
  unix_send(fd: number, data: ArrayBufferView, passFd: number): number;
  unix_recv(fd: number): [data: Buffer, fd: number] | number;
  /** The process's default token key: the first 32-byte candidate any thread offered. */
  park_secret(candidate: ArrayBufferView): Buffer;
  socket_name(id: number, peer: boolean): [family: 4 | 6, address: string, port: number] | number;
  socket_so_error(id: number): number;
  /** SO_LINGER answers `layout().lingerOff` when off, else the seconds. */
  socket_getsockopt(id: number, level: number, name: number): number;
  /** SO_LINGER takes `layout().lingerOff` or 0..`layout().lingerMax` seconds. */
  socket_setsockopt(id: number, level: number, name: number, value: number): number;
  /** `idleSeconds` <= 0 keeps the system's idle time. */
  socket_keepalive(id: number, on: boolean, idleSeconds: number): number;
  /** Whether the core has an OpenSSL to run TLS with (the host runtime exports one: Node does, Bun and Deno not). */
  tls_available(): boolean;
  /**
   * A TLS client context: trusted roots (PEM), optional client cert chain / key (PEM) and passphrase, TLS 1.2
   * cipher list and TLS 1.3 suites (null: OpenSSL's), protocol bounds (OpenSSL version numbers, 0: default).
   * Answers the reason as a string when no context can be made.
   */
  tls_context(
    ca: string,
    cert: string | null,
    key: string | null,
    passphrase: string | null,
    ciphers: string | null,
    suites: string | null,
    minVersion: number,
    maxVersion: number,
  ): TlsContextHandle | string;
  /** Puts TLS on a connecting socket: the CONNECT record then follows the handshake. 0 or -errno. */
  tls_start(
    id: number,
    context: TlsContextHandle,
    servername: string | null,
    alpn: Uint8Array | null,
    session: Uint8Array | null,
    highWaterMark: number,
  ): number;
  /** After the handshake: [verify code, verify text, ALPN protocol or false, version, cipher name, standard name, cipher version, resumed]. */
  tls_info(
    id: number,
  ): [code: number, text: string, alpn: string | false, version: string, cipher: string, standardName: string, cipherVersion: string, reused: boolean] | number;
  /** DER of the peer's certificate (index 0) or of its chain's `index`th, or null. */
  tls_peer_cert(id: number, index: number): Buffer | null;
  /** DER of the latest session (ticket) the server issued, or of the current one, or null. */
  tls_session(id: number): Buffer | null;
  /** Why TLS failed on this socket: [OpenSSL's text, library, reason], or null. */
  tls_error(id: number): [text: string, library: string, reason: string] | null;
  layout(): NativeLayout;
}

/** An OpenSSL client context held by the addon (freed when collected). */
export type TlsContextHandle = { readonly __tlsContext: unique symbol };

/** Record types written by native/loop.cc. */
export let REC_DATA: number;
export let REC_DGRAM: number;
export let REC_EOF: number;
export let REC_ERROR: number;
export let REC_CONNECT: number;
export let REC_DRAIN: number;
export let REC_SHUTDOWN: number;
export let REC_SESSION: number;

/** Syscall names of ERROR records, indexed by their code. */
export let syscallNames: readonly string[] = [];

/**
 * Counter slots as indexes into a chunk's Uint32Array view: the low half of each uint64 counter (the high half
 * follows it).
 */
export let CTR_BYTES_WRITTEN: number;
export let CTR_BYTES_READ: number;
export let CTR_SEND_CALLS: number;
export let CTR_RECV_CALLS: number;
export let CTR_PENDING: number;
export let CTR_STAGED: number;

/** The layout of the loaded addon. */
export let LAYOUT: Readonly<NativeLayout>;

const UINT32_PER_COUNTER = 2;

function adopt(b: NativeBinding): void {
  const l = Object.freeze(b.layout());
  LAYOUT = l;
  REC_DATA = l.rec.data;
  REC_DGRAM = l.rec.dgram;
  REC_EOF = l.rec.eof;
  REC_ERROR = l.rec.error;
  REC_CONNECT = l.rec.connect;
  REC_DRAIN = l.rec.drain;
  REC_SHUTDOWN = l.rec.shutdown;
  REC_SESSION = l.rec.session;
  syscallNames = Object.freeze(l.syscallNames.slice());
  CTR_BYTES_WRITTEN = l.ctr.bytesWritten * UINT32_PER_COUNTER;
  CTR_BYTES_READ = l.ctr.bytesRead * UINT32_PER_COUNTER;
  CTR_SEND_CALLS = l.ctr.sendCalls * UINT32_PER_COUNTER;
  CTR_RECV_CALLS = l.ctr.recvCalls * UINT32_PER_COUNTER;
  CTR_PENDING = l.ctr.pending * UINT32_PER_COUNTER;
  CTR_STAGED = l.ctr.staged * UINT32_PER_COUNTER;
}

let binding: NativeBinding | undefined;
let bindingPath: string | undefined;

/** @internal the file the addon was loaded from, once it is loaded */
export function loadedFrom(): string | undefined {
  return bindingPath;
}
/** A failure that will not go away by itself (no build, a broken build): thrown again without another attempt. */
let loadError: Error | undefined;

/** dlopen's messages (strerror text) for failures that end once descriptors or memory are freed. */
const TRANSIENT: ReadonlyArray<[code: string, text: string]> = [
  // ENFILE's text starts with EMFILE's: test it first.
  ['ENFILE', 'Too many open files in system'],
  ['EMFILE', 'Too many open files'],
  ['ENOMEM', 'Cannot allocate memory'],
];

function transientCode(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  for (const [code, text] of TRANSIENT) {
    if (e?.code === code || (typeof e?.message === 'string' && e.message.includes(text))) return code;
  }
  return undefined;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'MODULE_NOT_FOUND';
}

/** The package root (dist/core/ → ../..). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Where an addon may be, in node-gyp-build's order: a build made on this machine first (the install script only
 * compiles when no prebuilt binary loads, and in the repository a fresh source build must win over an older
 * prebuild), then the prebuilt binary for this platform. Every candidate is tried, so an unusable prebuild still
 * falls through to a local build and the reverse.
 */
function candidates(): string[] {
  const override = process.env.SOCKGUARD_NATIVE;
  if (override) return [resolve(override)];
  const out = ['Release', 'Debug'].map((dir) => join(ROOT, 'build', dir, 'sockguard.node'));
  const prebuilt = prebuild(join(ROOT, 'prebuilds'));
  if (prebuilt !== undefined) out.splice(1, 0, prebuilt);
  return out;
}

/**
 * The prebuildify binary for this platform and architecture, matched on its tags as node-gyp-build matches them
 * (`sockguard.glibc.node`: N-API, so any Node version; a libc tag must be this system's).
 */
export function prebuild(dir: string, platform = process.platform, arch = process.arch, libc = libcOf(platform)): string | undefined {
  const folder = join(dir, `${platform}-${arch}`);
  let files: string[];
  try {
    files = readdirSync(folder);
  } catch {
    return undefined;
  }
  let best: { file: string; score: number } | undefined;
  for (const file of files) {
    if (!file.endsWith('.node')) continue;
    const tags = file.slice(0, -'.node'.length).split('.').slice(1);
    let score = 0;
    let fits = true;
    for (const tag of tags) {
      if (tag === 'glibc' || tag === 'musl') {
        if (tag !== libc) fits = false;
        score++;
      } else if (/^abi\d+$/.test(tag)) {
        if (tag !== `abi${process.versions.modules}`) fits = false;
        score++;
      }
    }
    if (fits && (best === undefined || score > best.score)) best = { file, score };
  }
  return best === undefined ? undefined : join(folder, best.file);
}

function libcOf(platform: string): string | undefined {
  if (platform !== 'linux') return undefined;
  // node-gyp-build's test, so both pick the same binary.
  return existsSync('/etc/alpine-release') ? 'musl' : 'glibc';
}

/**
 * The addon, loaded on first use so that a missing build fails with a coded error at the call that needs it.
 *
 * Out of descriptors or memory while loading (EMFILE, ENFILE, ENOMEM) throws a system error with that code and
 * is tried again on the next call; any other failure throws ERR_SOCKGUARD_NATIVE_UNAVAILABLE, every time.
 */
export function native(): NativeBinding {
  if (binding) return binding;
  if (loadError) throw loadError;
  const require = createRequire(import.meta.url);
  let first: { path: string; err: unknown } | undefined;
  for (const path of candidates()) {
    try {
      const b = require(path) as NativeBinding;
      if (typeof b.loop_owner !== 'function' || typeof b.layout !== 'function') {
        throw new Error('it was built from another version of sockguard');
      }
      adopt(b);
      binding = b;
      bindingPath = path;
      return b;
    } catch (err) {
      const code = transientCode(err);
      if (code !== undefined) {
        const e = systemError(code, { syscall: 'dlopen', detail: path });
        (e as Error & { cause?: unknown }).cause = err;
        throw e;
      }
      // The first failure names the build that matters (Release, or the one SOCKGUARD_NATIVE names), unless it
      // is only missing and a later one exists but fails for a reason worth reading.
      if (first === undefined || (isMissing(first.err) && !isMissing(err))) first = { path, err };
    }
  }
  loadError = unavailable(first!.path, first!.err);
  throw loadError;
}

function unavailable(path: string, cause: unknown): Error {
  const reason = !isMissing(cause)
    ? ((cause as Error)?.message ?? String(cause)).split('\n')[0]
    : process.env.SOCKGUARD_NATIVE
      ? 'no such file (SOCKGUARD_NATIVE names it)'
      : `it was not built, and the package has no prebuilt binary for ${process.platform}-${process.arch}`;
  const err = codedError(
    Error,
    codes.NATIVE_UNAVAILABLE,
    `sockguard's native addon could not be loaded from ${path}: ${reason}. ` +
      'Build it with `npm rebuild sockguard` (building needs a C++17 compiler, python3 and make).',
  );
  (err as Error & { cause?: unknown }).cause = cause;
  return err;
}
