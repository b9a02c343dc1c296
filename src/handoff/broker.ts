/**
 * The local broker: a process that holds parked connections for every process of one user on this machine, so a
 * connection detached in one process can be attached in another, even after the first one exited.
 *
 * It listens on a Unix socket (env SOCKGUARD_BROKER, else `sockguard-<uid>.sock` in XDG_RUNTIME_DIR or the
 * temporary directory), mode 0600; both ends check the peer's credentials, so another user's process is refused
 * whatever the file's mode. A request is one message on its own connection: park (a descriptor and its unread
 * bytes ride along), take (they come back), or stats. Parking needs no key, taking needs the proof derived from the
 * app's key and the entry's id, so a process that only saw a token cannot take the connection without the key.
 *
 * The broker never reads a parked connection: what the peer sends meanwhile waits in the kernel, in order, and TCP
 * flow control slows the peer down once that buffer is full. It is started on first need (spawned detached) or
 * with `sockguard broker`; started on demand it leaves once nothing has been parked for a while.
 */
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { closeSync, existsSync, readdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { statusError, systemError } from '../errors.js';
import { native, type NativeBinding } from '../core/native.js';

/** Send/receive timeout of one request: the broker answers at once; a broker that does not is as good as gone. */
const REQUEST_TIMEOUT_MS = 5000;
/** How long a process waits for a broker it started to listen (a cold Node start on a busy machine is slow). */
const START_TIMEOUT_MS = 20_000;
/** An on-demand broker leaves after this long with nothing parked. */
export const DEFAULT_LINGER_MS = 60_000;

export function brokerPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SOCKGUARD_BROKER) return env.SOCKGUARD_BROKER;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `sockguard-${uid}.sock`);
}

/** The proof of holding the app's key for one parked entry. */
function lockOf(appKey: Buffer, key: string): string {
  return createHmac('sha256', appKey).update(`sockguard broker take ${key}`).digest('hex');
}

interface Reply {
  msg: Record<string, unknown>;
  fd: number;
  bytes: Buffer;
}

function frame(msg: object, bytes: Buffer | null): Buffer {
  const json = Buffer.from(JSON.stringify(msg));
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(json.length);
  return Buffer.concat(bytes && bytes.length > 0 ? [head, json, bytes] : [head, json]);
}

function unframe(data: Buffer): { msg: Record<string, unknown>; bytes: Buffer } | undefined {
  if (data.length < 4) return undefined;
  const n = data.readUInt32BE(0);
  if (n > data.length - 4) return undefined;
  try {
    const msg = JSON.parse(data.toString('utf8', 4, 4 + n)) as unknown;
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return undefined;
    return { msg: msg as Record<string, unknown>, bytes: data.subarray(4 + n) };
  } catch {
    return undefined;
  }
}

/** One request on a connection of its own: the reply, or -errno. */
function exchange(nat: NativeBinding, conn: number, msg: object, passFd: number, bytes: Buffer | null): Reply | number {
  try {
    const w = nat.unix_send(conn, frame(msg, bytes), passFd);
    if (w < 0) return w;
    const r = nat.unix_recv(conn);
    if (typeof r === 'number') return r;
    const u = unframe(r[0]);
    if (u === undefined) {
      if (r[1] >= 0) closeSync(r[1]);
      return -71; // EPROTO
    }
    return { msg: u.msg, fd: r[1], bytes: u.bytes };
  } finally {
    closeSync(conn);
  }
}

const ENOENT = -2;
const ECONNREFUSED = -111;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts a broker in the background (it outlives this process). */
function startBroker(path: string): void {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const cli = [join(here, '../cli.js'), join(here, '../../dist/cli.js')].find((p) => existsSync(p));
  if (cli === undefined) throw systemError('ENOENT', { syscall: 'spawn', detail: 'the sockguard CLI to start the broker with' });
  const child = spawn(process.execPath, [cli, 'broker', '--linger', String(DEFAULT_LINGER_MS)], {
    detached: true,
    stdio: 'ignore',
    env: { ...process.env, SOCKGUARD_BROKER: path },
  });
  child.unref();
}

/** A connection to the broker; when `start`, one is started if none listens. */
async function connect(nat: NativeBinding, path: string, start: boolean, syscall: string): Promise<number> {
  let fd = nat.unix_connect(path, REQUEST_TIMEOUT_MS);
  if (fd >= 0 || !start || (fd !== ENOENT && fd !== ECONNREFUSED)) {
    if (fd < 0) throw statusError(fd, { syscall, address: path, detail: fd === -13 ? 'the broker socket belongs to another user' : 'no broker holds parked connections' });
    return fd;
  }
  startBroker(path);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    await sleep(wait);
    fd = nat.unix_connect(path, REQUEST_TIMEOUT_MS);
    if (fd >= 0) return fd;
    if ((fd !== ENOENT && fd !== ECONNREFUSED) || Date.now() > deadline) {
      throw statusError(fd, { syscall, address: path, detail: 'the broker did not start' });
    }
  }
}

function replyError(msg: Record<string, unknown>, syscall: string, path: string): Error | undefined {
  if (msg.ok === true) return undefined;
  const code = typeof msg.error === 'string' && /^E[A-Z]+$/.test(msg.error) ? msg.error : 'EPROTO';
  return systemError(code, { syscall, address: path, detail: typeof msg.detail === 'string' ? msg.detail : undefined });
}

/** Parks `fd` (closed here in every case: the broker holds its own copy) with its unread bytes. */
export async function brokerPark(key: string, fd: number, unread: Buffer | null, idleMs: number, appKey: Buffer): Promise<void> {
  const path = brokerPath();
  try {
    const nat = native();
    const conn = await connect(nat, path, true, 'detach');
    const r = exchange(nat, conn, { op: 'park', key, lock: lockOf(appKey, key), idleMs }, fd, unread);
    if (typeof r === 'number') throw statusError(r, { syscall: 'detach', address: path });
    if (r.fd >= 0) closeSync(r.fd);
    const err = replyError(r.msg, 'detach', path);
    if (err) throw err;
  } finally {
    closeSync(fd);
  }
}

/** Takes a parked connection back from the broker: its descriptor (now the caller's) and unread bytes. */
export async function brokerTake(key: string, appKey: Buffer): Promise<{ fd: number; unread: Buffer | null }> {
  const path = brokerPath();
  const nat = native();
  const conn = await connect(nat, path, false, 'attach');
  const r = exchange(nat, conn, { op: 'take', key, lock: lockOf(appKey, key) }, -1, null);
  if (typeof r === 'number') throw statusError(r, { syscall: 'attach', address: path });
  const err = replyError(r.msg, 'attach', path);
  if (err || r.fd < 0) {
    if (r.fd >= 0) closeSync(r.fd);
    throw err ?? systemError('EPROTO', { syscall: 'attach', address: path, detail: 'the broker sent no descriptor' });
  }
  return { fd: r.fd, unread: r.bytes.length > 0 ? Buffer.from(r.bytes) : null };
}

/** What the broker holds: connections parked, its own open descriptors, its pid. */
export async function brokerStats(path = brokerPath()): Promise<{ parked: number; fds: number; pid: number }> {
  const nat = native();
  const conn = await connect(nat, path, false, 'stats');
  const r = exchange(nat, conn, { op: 'stats' }, -1, null);
  if (typeof r === 'number') throw statusError(r, { syscall: 'stats', address: path });
  return r.msg as { parked: number; fds: number; pid: number };
}

interface Entry {
  fd: number;
  unread: Buffer;
  lock: string;
  deadline: number;
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1;
  }
}

/**
 * Runs the broker in this process until `lingerMs` pass with nothing parked (0: until SIGTERM or SIGINT). Every
 * request is answered before the next is accepted; between them the event loop turns, so a signal ends it
 * cleanly (the parked connections closed, the socket file removed).
 */
export async function runBroker(path = brokerPath(), lingerMs = 0, log: (line: string) => void = () => {}): Promise<void> {
  const nat = native();
  let lfd = nat.unix_listen(path);
  if (lfd === -98 /* EADDRINUSE */) {
    const probe = nat.unix_connect(path, REQUEST_TIMEOUT_MS);
    if (probe >= 0) {
      // Another broker already serves this path (two processes started one at once): it keeps it.
      closeSync(probe);
      log(`a broker already listens on ${path}`);
      return;
    }
    // A socket file its broker left behind when it was killed.
    unlinkSync(path);
    lfd = nat.unix_listen(path);
  }
  if (lfd < 0) throw statusError(lfd, { syscall: 'listen', address: path });
  log(`sockguard broker listening on ${path} (pid ${process.pid})`);
  const parked = new Map<string, Entry>();
  let idleSince = Date.now();
  let stop = false;
  const onSignal = () => {
    stop = true;
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    while (!stop) {
      const now = Date.now();
      // Short waits: a signal is noticed within one.
      let next = 200;
      for (const [key, e] of parked) {
        if (e.deadline !== 0 && e.deadline <= now) {
          // The idle rule of the app that parked it.
          closeSync(e.fd);
          parked.delete(key);
        } else if (e.deadline !== 0) next = Math.min(next, e.deadline - now);
      }
      if (parked.size > 0) idleSince = now;
      else if (lingerMs > 0 && now - idleSince >= lingerMs) break;
      const conn = nat.unix_accept(lfd, Math.max(1, next), REQUEST_TIMEOUT_MS);
      if (conn >= 0) {
        try {
          serve(nat, conn, parked);
        } finally {
          closeSync(conn);
        }
        continue; // the next request may already wait: take it before yielding
      }
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    for (const e of parked.values()) closeSync(e.fd);
    parked.clear();
    closeSync(lfd);
    try {
      unlinkSync(path);
    } catch {}
  }
}

function serve(nat: NativeBinding, conn: number, parked: Map<string, Entry>): void {
  const r = nat.unix_recv(conn);
  if (typeof r === 'number') return;
  const [data, fd] = r;
  const u = unframe(data);
  const reply = (msg: object, passFd = -1, bytes: Buffer | null = null) => nat.unix_send(conn, frame(msg, bytes), passFd);
  const msg = u?.msg;
  if (msg?.op === 'park' && fd >= 0 && typeof msg.key === 'string' && typeof msg.lock === 'string' && typeof msg.idleMs === 'number') {
    if (parked.has(msg.key)) {
      closeSync(fd);
      reply({ error: 'EEXIST' });
      return;
    }
    const idle = Number.isSafeInteger(msg.idleMs) && msg.idleMs > 0 ? msg.idleMs : 0;
    parked.set(msg.key, { fd, unread: Buffer.from(u!.bytes), lock: msg.lock, deadline: idle > 0 ? Date.now() + idle : 0 });
    if (reply({ ok: true }) < 0) {
      // The process that parked it did not hear the answer and has closed its copy: nobody holds a token.
      closeSync(fd);
      parked.delete(msg.key);
    }
    return;
  }
  if (fd >= 0) closeSync(fd);
  if (msg?.op === 'take' && typeof msg.key === 'string' && typeof msg.lock === 'string') {
    const e = parked.get(msg.key);
    if (e === undefined) {
      reply({ error: 'EPIPE', detail: 'not parked here: already attached, closed or reclaimed' });
      return;
    }
    if (e.lock !== msg.lock) {
      reply({ error: 'EACCES', detail: "the request does not hold the app's key" });
      return;
    }
    // The taker has its own copy once the message left; until then the entry stays parked.
    if (reply({ ok: true }, e.fd, e.unread) < 0) return;
    parked.delete(msg.key);
    closeSync(e.fd);
    return;
  }
  if (msg?.op === 'stats') {
    reply({ parked: parked.size, fds: openFds(), pid: process.pid });
    return;
  }
  reply({ error: 'EINVAL', detail: 'not a broker request' });
}
