/**
 * The per-thread side of the native loop: socket ids, counter memory, and the batch dispatcher.
 *
 * One Loop per thread, matching the native loop, which is per N-API environment. The native loop keeps its JS
 * owner, so a second copy of this module in the same thread (sockguard imported from two paths) shares the
 * first copy's Loop instead of creating one whose buffers nothing writes. Nothing is created until the first
 * socket: importing sockguard opens nothing.
 *
 * Wire format shared with native/loop.cc (layout from `layout()`): `records` holds `count` records of
 * `recInts` int32 `[id, type, a, b]`; DATA/DGRAM payloads live in `slab` and are valid only during the dispatch
 * call.
 */
import { setImmediate } from 'node:timers';
import { codes, codedError, statusError } from '../errors.js';
import {
  LAYOUT,
  REC_CONNECT,
  REC_DATA,
  REC_DGRAM,
  REC_DRAIN,
  REC_EOF,
  REC_ERROR,
  REC_SESSION,
  REC_SHUTDOWN,
  native,
  type NativeBinding,
} from './native.js';

const SLAB_BYTES = 512 * 1024;
/** Small writes are staged here without a native call; the loop takes them before every flush. */
const STAGE_BYTES = 256 * 1024;
const STAGE_RECORDS = 8192;
/** Writes up to this size are staged; larger ones go to the native queue directly (and may be held, not copied). */
export const STAGE_MAX = 4096;

/**
 * What one copy of this module expects of a Loop made by another copy sharing the thread's native loop. Bump it
 * whenever Loop's members or their meaning change.
 */
const LOOP_PROTOCOL = 1;
const kProtocol = Symbol.for('sockguard.loop.protocol');

/** What a socket implements to receive its records. */
export interface LoopClient {
  /** `tls` 1: the TLS handshake failed (the core's tls_error says why). */
  _onConnect(status: number, tls: number): void;
  _onData(slab: Buffer, offset: number, length: number): void;
  _onDgram(slab: Buffer, offset: number, length: number): void;
  _onEof(): void;
  _onError(status: number, syscall: number): void;
  _onDrain(): void;
  _onShutdown(status: number): void;
  _onSession(): void;
}

export type LoopBackend = 'uv' | 'thread';

/**
 * The backend a new loop uses: the helper thread under Bun and Deno (their libuv cannot watch descriptors, and
 * only JS can tell which runtime it is: Bun's uv functions abort instead of failing), else libuv handles, unless
 * `SOCKGUARD_BACKEND` says `thread` (or `uv`, the default; ignored where libuv cannot work).
 */
export function loopBackend(env: NodeJS.ProcessEnv = process.env): LoopBackend {
  const versions = process.versions as NodeJS.ProcessVersions & { bun?: string; deno?: string };
  if (versions.bun !== undefined || versions.deno !== undefined) return 'thread';
  const v = env.SOCKGUARD_BACKEND;
  if (v === undefined || v === '' || v === 'uv') return 'uv';
  if (v === 'thread') return 'thread';
  throw codedError(
    Error,
    codes.INVALID_OPTION,
    `SOCKGUARD_BACKEND must be "uv" or "thread"; received ${JSON.stringify(v)}`,
  );
}

export class Loop {
  readonly [kProtocol] = LOOP_PROTOCOL;
  readonly nat: NativeBinding;
  readonly backend: LoopBackend;
  readonly slab: Buffer;
  readonly records: Int32Array;
  /** Staged writes: bytes, and [count, used, (id, offset, length)...] (layout stageHeader / stageInts). */
  readonly stageBytes: Uint8Array;
  readonly stageRecords: Int32Array;
  readonly chunk: number;
  readonly slots: number;
  /** Counter chunks as Uint32 views (uint64 counters read as two halves: exact, no BigInt). */
  readonly counters: Uint32Array[] = [];
  private readonly clients: (LoopClient | undefined)[] = [];
  private readonly free: number[] = [];
  private readonly freeLater: number[] = [];
  private nextId = 0;
  private refs = 0;
  /** True while records are being handed to their sockets' handlers. */
  dispatching = false;
  /** A handler wrote to an idle socket during this dispatch: flush before moving on (see `wrote`). */
  private writes = false;
  /** Sockets that changed hands during a batch: [id, from, to] each, applied after it (see `retarget`). */
  private retargets: Array<number | LoopClient> = [];
  /** Exceptions thrown by handlers during a batch; rethrown after it so no other socket loses its records. */
  private thrown: unknown[] = [];
  /** Thread backend: a loop_settle() call is queued. */
  private settleQueued = false;
  private readonly settleTask = (): void => {
    this.settleQueued = false;
    if (this.nat.loop_settle() > 0) this.schedule(true);
  };
  /**
   * Thread backend: one settle per turn, queued by the first write (or other work) of the turn. A microtask
   * still batches everything the current task does; leftovers wait for setImmediate so I/O runs in between.
   */
  private readonly schedule = (later: boolean): void => {
    if (this.settleQueued) return;
    this.settleQueued = true;
    if (later) setImmediate(this.settleTask);
    else queueMicrotask(this.settleTask);
  };

  /** Creates the thread's native loop; a failure (e.g. EMFILE) throws a system error and leaves nothing behind. */
  constructor(nat: NativeBinding = native(), backend: LoopBackend = loopBackend()) {
    this.nat = nat;
    this.backend = backend;
    const layout = LAYOUT;
    this.chunk = layout.chunk;
    this.slots = layout.ctrSlots;
    const ab = new ArrayBuffer(Math.max(SLAB_BYTES, layout.slabMin));
    this.slab = Buffer.from(ab);
    this.records = new Int32Array(layout.recCap * layout.recInts);
    const stage = new ArrayBuffer(STAGE_BYTES);
    this.stageBytes = new Uint8Array(stage);
    this.stageRecords = new Int32Array(layout.stageHeader + layout.stageInts * STAGE_RECORDS);
    const threaded = backend === 'thread';
    const r = nat.loop_init(ab, this.records, (count) => this.dispatch(count), stage, this.stageRecords, this,
      threaded ? layout.backends.thread : layout.backends.uv, threaded ? this.schedule : undefined);
    if (r < 0) throw statusError(r, { syscall: layout.backend === 'epoll' ? 'epoll_create' : 'kqueue' });
  }

  /** Reserves an id (and its counters) for a client. Ids of sockets closed during a batch are reused after it. */
  open(client: LoopClient): number {
    const id = this.free.length > 0 ? this.free.pop()! : this.nextId++;
    const chunkIndex = Math.floor(id / this.chunk);
    while (this.counters.length <= chunkIndex) {
      const ab = new ArrayBuffer(this.chunk * this.slots * 8);
      const r = this.nat.loop_add_chunk(ab);
      if (r < 0) throw statusError(r, { syscall: 'loop_add_chunk' });
      this.counters.push(new Uint32Array(ab));
    }
    this.clients[id] = client;
    return id;
  }

  /** Forgets a client. Its id returns to the pool once no record of the current batch can still name it. */
  release(id: number): void {
    this.clients[id] = undefined;
    if (this.dispatching) this.freeLater.push(id);
    else this.free.push(id);
  }

  /**
   * Socket `id` passes from `from` to `to` (TLS started on a connected socket). Records of the batch being
   * dispatched were read before the change, as plaintext: they still go to `from`; `to` gets everything after.
   */
  retarget(id: number, from: LoopClient, to: LoopClient): void {
    if (this.dispatching) this.retargets.push(id, from, to);
    else if (this.clients[id] === from) this.clients[id] = to;
  }

  /**
   * Stages a small write for socket `id` without crossing into native code. False when the staging buffers are
   * full: the caller then writes through the native call, which takes everything staged first, so order holds.
   */
  stage(id: number, data: Uint8Array): boolean {
    const rec = this.stageRecords;
    const n = rec[0]!;
    const used = rec[1]!;
    const len = data.byteLength;
    if (n >= STAGE_RECORDS || used + len > STAGE_BYTES) return false;
    this.stageBytes.set(data, used);
    const p = LAYOUT.stageHeader + n * LAYOUT.stageInts;
    rec[p] = id;
    rec[p + 1] = used;
    rec[p + 2] = len;
    rec[0] = n + 1;
    rec[1] = used + len;
    if (n === 0 && this.backend === 'thread') this.schedule(false);
    return true;
  }

  /**
   * Socket `id` was written while it had nothing waiting. What it was given should not wait for unrelated work:
   * written from a record handler, it leaves as soon as the dispatch moves past that socket's records (one send
   * for all the handler wrote); written anywhere else (a tick, a promise, a timer), it leaves now, and further
   * writes in the same turn coalesce into the turn's flush.
   */
  wrote(id: number): void {
    if (this.dispatching) this.writes = true;
    else this.nat.socket_flush(id);
  }

  /** As `wrote`, for a write about to cross into native code: whether it should ask to leave at once. */
  sendNow(): boolean {
    if (!this.dispatching) return true;
    this.writes = true;
    return false;
  }

  private flush(): void {
    this.writes = false;
    this.nat.loop_flush();
  }

  ref(): void {
    if (this.refs++ === 0) this.nat.loop_ref(true);
  }

  unref(): void {
    if (--this.refs === 0) this.nat.loop_ref(false);
  }

  private dispatch(count: number): void {
    const rec = this.records;
    const slab = this.slab;
    const clients = this.clients;
    const step = LAYOUT.recInts;
    this.dispatching = true;
    let last = -1;
    for (let i = 0, p = 0; i < count; i++, p += step) {
      const id = rec[p]!;
      if (id !== last) {
        // Records come grouped by socket: what the previous socket's handlers wrote leaves before the next
        // socket's handlers run.
        if (this.writes) this.flush();
        last = id;
      }
      const client = clients[id];
      if (client === undefined) continue;
      const a = rec[p + 2]!;
      try {
        switch (rec[p + 1]) {
          case REC_DATA:
            client._onData(slab, a, rec[p + 3]!);
            break;
          case REC_DGRAM:
            client._onDgram(slab, a, rec[p + 3]!);
            break;
          case REC_EOF:
            client._onEof();
            break;
          case REC_ERROR:
            client._onError(a, rec[p + 3]!);
            break;
          case REC_CONNECT:
            client._onConnect(a, rec[p + 3]!);
            break;
          case REC_DRAIN:
            client._onDrain();
            break;
          case REC_SHUTDOWN:
            client._onShutdown(a);
            break;
          case REC_SESSION:
            client._onSession();
            break;
        }
      } catch (err) {
        this.thrown.push(err);
      }
    }
    this.dispatching = false;
    if (this.retargets.length > 0) {
      const r = this.retargets;
      // A socket closed during the batch has no client left to replace (its id may already be promised to another).
      for (let i = 0; i < r.length; i += 3) if (clients[r[i] as number] === r[i + 1]) clients[r[i] as number] = r[i + 2] as LoopClient;
      r.length = 0;
    }
    // Before the tick queue and promise callbacks run: they do not need these bytes, the peer does.
    if (this.writes) this.flush();
    if (this.freeLater.length > 0) {
      for (const id of this.freeLater) this.free.push(id);
      this.freeLater.length = 0;
    }
    if (this.thrown.length > 0) {
      const thrown = this.thrown;
      this.thrown = [];
      // Each one surfaces as an uncaught exception, as it would from a net.Socket handler.
      for (const err of thrown) process.nextTick(rethrow, err);
    }
  }
}

function rethrow(err: unknown): never {
  throw err;
}

let current: Loop | undefined;

/**
 * This thread's loop, created on first use, or the one another copy of this module created in this thread.
 * A failure to create it throws (a coded system error) and is tried again on the next call.
 */
export function getLoop(): Loop {
  if (current !== undefined) return current;
  const nat = native();
  const owner = nat.loop_owner() as Partial<Loop> | undefined;
  if (owner === undefined) return (current = new Loop(nat));
  if (owner[kProtocol] !== LOOP_PROTOCOL) {
    throw codedError(
      Error,
      codes.NATIVE_UNAVAILABLE,
      `This thread's sockguard loop belongs to another copy of sockguard (loop protocol ${String(owner[kProtocol])}, ` +
        `this copy speaks ${LOOP_PROTOCOL}); load one version of sockguard per thread`,
    );
  }
  return (current = owner as Loop);
}
