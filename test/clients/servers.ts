/**
 * Real peers for the client suite, all on 127.0.0.1: redis-server and PostgreSQL as child processes, a byte
 * counting relay, a listener that must never be reached, the two layers every client test uses, and the checks
 * the tests share. Everything returned here has a stop()/close() that the tests call, so no process, port or
 * directory outlives its file.
 *
 * A server binary that is missing fails the tests that need it with a message saying what to install (CI
 * installs both in .ci/run); SOCKGUARD_SKIP_MISSING_SERVERS=1 skips those tests instead.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { SocketLayer, TlsSocket } from '../../src/index.js';
import { freePort, listen, until } from '../helpers.js';

/**
 * Node's own socket class as it was before any test calls layer.install(): the relay and the readiness probes
 * stay Node sockets under install() (vetted, not metered), so the ledger holds only the client's traffic.
 */
const NodeSocket = net.Socket;

function nodeConnect(port: number, options: { allowHalfOpen?: boolean } = {}): net.Socket {
  return new NodeSocket({ allowHalfOpen: options.allowHalfOpen ?? false }).connect(port, '127.0.0.1');
}

export const fixtureKey = readFileSync(new URL('../fixtures/key.pem', import.meta.url));
export const fixtureCert = readFileSync(new URL('../fixtures/cert.pem', import.meta.url));
const fixtureKeyPath = new URL('../fixtures/key.pem', import.meta.url);
const fixtureCertPath = new URL('../fixtures/cert.pem', import.meta.url);

/**
 * Production rules plus loopback: the allowed cases run under the same policy engine as production, without the
 * development mode's would-deny warnings.
 */
const LOOPBACK_POLICY = {
  version: 1 as const,
  allow: [{ cidr: '127.0.0.0/8', openSpecialPurpose: true }],
};

export function allowLayer(): SocketLayer {
  return new SocketLayer({ appId: 'clients', policy: LOOPBACK_POLICY, idleTimeoutMs: 0 });
}

/** The production policy: 127.0.0.1 is denied with rule 'loopback', so no test ever needs a remote address. */
export function denyLayer(): SocketLayer {
  return new SocketLayer({ appId: 'clients-denied', policy: 'production', idleTimeoutMs: 0 });
}

/**
 * Runs `fn` with `layer` installed for the whole process (net, tls, the http agents and fetch), so a client
 * given no socket option at all runs on it; uninstalls whatever happens.
 */
export async function installed<T>(layer: SocketLayer, fn: () => Promise<T>): Promise<T> {
  const uninstall = layer.install({ http: true });
  try {
    return await fn();
  } finally {
    uninstall();
  }
}

/**
 * While a layer is installed: what tls.connect({ socket }) returned to the client, for a test to check that the
 * upgrade ran in the core (a sockguard TlsSocket on the same connection) and not as Node's TLS over the socket.
 * uninstall() puts Node's tls.connect back over this spy too.
 */
export function spyUpgrades(): unknown[] {
  const seen: unknown[] = [];
  const patched = tls.connect;
  tls.connect = ((...args: unknown[]) => {
    const s = (patched as (...a: unknown[]) => unknown)(...args);
    const first = args[0] as { socket?: unknown } | undefined;
    if (first !== null && typeof first === 'object' && first.socket) seen.push(s);
    return s;
  }) as typeof tls.connect;
  return seen;
}

/** The upgrades a spy saw: one, and in the core. */
export function expectUpgradedInCore(seen: unknown[]): void {
  expect(seen).toHaveLength(1);
  expect(seen[0]).toBeInstanceOf(TlsSocket);
  expect((seen[0] as TlsSocket).authorized).toBe(true);
}

// ---------------------------------------------------------------------------------------------------------------
// Binaries

export const REDIS_SERVER = '/usr/bin/redis-server';

/** The newest Debian PostgreSQL install (postgresql-15 on Debian 12). */
export function postgresBin(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'postgres')) && existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(base, versions[0]!, 'bin') : undefined;
}

export const skipMissing = !!process.env.SOCKGUARD_SKIP_MISSING_SERVERS;
export const redisMissing = !existsSync(REDIS_SERVER);
export const postgresMissing = postgresBin() === undefined;

function missing(what: string, pkg: string): Error {
  return new Error(
    `${what} is not installed: install the Debian package '${pkg}' (.ci/run does), ` +
      'or set SOCKGUARD_SKIP_MISSING_SERVERS=1 to skip the tests that need it',
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Child processes

interface Child {
  proc: ChildProcess;
  watchdog: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

/**
 * The servers are peers, not code under test: they run without the sanitizer runtime that `npm run test:asan`
 * preloads into this process and would otherwise pass on to every child.
 */
function peerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  delete env.ASAN_OPTIONS;
  delete env.UBSAN_OPTIONS;
  return env;
}

interface RunAs {
  uid: number;
  gid: number;
}

const WATCHDOG = `
while kill -0 "$1" 2>/dev/null; do sleep 1; done
kill -s "$3" "$2" 2>/dev/null
while kill -0 "$2" 2>/dev/null; do sleep 0.2; done
rm -rf "$4"
`;

/** Starts a server in `dir` (its data, removed when it is stopped). */
function startChild(cmd: string, args: string[], dir: string, stopSignal: NodeJS.Signals, user?: RunAs): Child {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: peerEnv(), ...user });
  // A test process that dies before its afterAll (a sanitizer abort, a crashed worker) must not leave a server
  // or its directory behind: this stops the one and removes the other once this process is gone.
  const watchdog = spawn(
    'sh',
    ['-c', WATCHDOG, 'watchdog', String(process.pid), String(proc.pid), stopSignal.replace(/^SIG/, ''), dir],
    { stdio: 'ignore', detached: true, env: peerEnv() },
  );
  watchdog.unref();
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-8192);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => resolve(code));
    proc.once('error', (err) => {
      out += String(err);
      resolve(null);
    });
  });
  return { proc, watchdog, output: () => out, exited };
}

async function stopChild(child: Child, signal: NodeJS.Signals): Promise<void> {
  child.watchdog.kill();
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill(signal);
  const killer = setTimeout(() => child.proc.kill('SIGKILL'), 5000);
  await child.exited;
  clearTimeout(killer);
}

/**
 * Readiness is a real answer from the server: `probe` connects and talks to it (plain net, not sockguard, so a
 * fault under test cannot look like a server that never came up). Fails early if the process exits.
 */
async function waitReady(child: Child, what: string, probe: () => Promise<boolean>, ms = 20_000): Promise<void> {
  let exited = false;
  void child.exited.then(() => (exited = true));
  const start = Date.now();
  for (;;) {
    if (exited) throw new Error(`${what} exited before it was ready:\n${child.output()}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() - start > ms) throw new Error(`${what} not ready after ${ms} ms:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Sends `request` on a fresh plain connection and resolves true once the reply contains `expect`. */
function ask(port: number, request: Buffer | string, expect: (reply: Buffer) => boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const s = nodeConnect(port);
    let got = Buffer.alloc(0);
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write(request));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (expect(got)) done(true);
    });
    s.on('end', () => done(expect(got)));
  });
}

/**
 * A port found free may be taken by someone else before the server binds it: a server that exits saying so is
 * started again, on another port.
 */
async function retryPortInUse<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= 3 || !/already in use/i.test((err as Error).message)) throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// redis-server

export interface RedisServer {
  port: number;
  /** With `tls: true`: a second port speaking TLS with the fixture certificate (client certificates not asked). */
  tlsPort?: number;
  stop(): Promise<void>;
}

export async function startRedis(options: { tls?: boolean } = {}): Promise<RedisServer> {
  if (redisMissing) throw missing(`redis-server (${REDIS_SERVER})`, 'redis-server');
  return retryPortInUse(() => launchRedis(options));
}

async function launchRedis(options: { tls?: boolean }): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sockguard-redis-'));
  const port = await freePort();
  const tlsPort = options.tls ? await freePort() : undefined;
  const tlsArgs = tlsPort
    ? ['--tls-port', String(tlsPort), '--tls-cert-file', fileURLToPath(fixtureCertPath), '--tls-key-file',
        fileURLToPath(fixtureKeyPath), '--tls-ca-cert-file', fileURLToPath(fixtureCertPath), '--tls-auth-clients', 'no']
    : [];
  const child = startChild(REDIS_SERVER, [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
    '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning', ...tlsArgs,
  ], dir, 'SIGTERM');
  const stop = async () => {
    await stopChild(child, 'SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitReady(child, 'redis-server', () => ask(port, 'PING\r\n', (r) => r.toString().includes('+PONG')));
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, tlsPort, stop };
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL

export interface PostgresServer {
  port: number;
  user: string;
  database: string;
  stop(): Promise<void>;
}

/** A protocol 3.0 StartupMessage for user and database postgres (trust authentication answers 'R'). */
const STARTUP = (() => {
  const body = Buffer.from('user\0postgres\0database\0postgres\0\0');
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
})();

/**
 * initdb into a fresh directory, then postgres on 127.0.0.1 with ssl=on and the fixture certificate, trust
 * authentication and its Unix socket in that directory. PostgreSQL refuses to run as root: as root, the
 * directory is given to the `postgres` user (or `nobody`) and initdb and postgres run as that user.
 */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBin();
  if (!bin) throw missing('PostgreSQL (/usr/lib/postgresql/*/bin/postgres)', 'postgresql');
  const dir = mkdtempSync(join(tmpdir(), 'sockguard-pg-'));
  const data = join(dir, 'data');
  // The programs run as that user directly (not under runuser, which would stand between them and our signals).
  const user = process.getuid?.() === 0 ? userIds(userExists('postgres') ? 'postgres' : 'nobody') : undefined;
  const keyFile = join(dir, 'server.key');
  const certFile = join(dir, 'server.crt');
  copyFileSync(fixtureKeyPath, keyFile);
  copyFileSync(fixtureCertPath, certFile);
  // The key must be private to the server's user, or postgres refuses to start.
  chmodSync(keyFile, 0o600);
  if (user) for (const path of [dir, keyFile, certFile]) chownSync(path, user.uid, user.gid);
  try {
    execFileSync(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync'], {
      stdio: 'pipe', env: peerEnv(), cwd: dir, ...user,
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`initdb failed: ${e.stderr?.toString() ?? e.message}`);
  }
  const launch = async () => {
    const port = await freePort();
    const child = startChild(join(bin, 'postgres'), [
      '-D', data, '-k', dir, '-p', String(port),
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'ssl=on', '-c', `ssl_cert_file=${certFile}`, '-c', `ssl_key_file=${keyFile}`,
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    ], dir, 'SIGQUIT', user);
    try {
      // Ready means accepting sessions: a postmaster that answers the SSL request may still be starting up
      // ("the database system is starting up"); a startup message answered with authentication ('R') is not.
      await waitReady(child, 'postgres', () => ask(port, STARTUP, (r) => r.length > 0 && r[0] === 0x52));
    } catch (err) {
      await stopChild(child, 'SIGQUIT');
      throw err;
    }
    return { port, child };
  };
  let started: { port: number; child: Child };
  try {
    started = await retryPortInUse(launch);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  // SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, which a data directory about to be deleted
  // does not need.
  const stop = async () => {
    await stopChild(started.child, 'SIGQUIT');
    rmSync(dir, { recursive: true, force: true });
  };
  return { port: started.port, user: 'postgres', database: 'postgres', stop };
}

function userIds(name: string): RunAs {
  const id = (flag: string) => Number(execFileSync('id', [flag, name]).toString().trim());
  return { uid: id('-u'), gid: id('-g') };
}

function userExists(name: string): boolean {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Loopback peers

export interface Relay {
  port: number;
  /** Bytes the relay received from clients (what the clients put on the wire). */
  readonly up: number;
  /** Bytes the relay wrote towards clients (what the clients had to receive). */
  readonly down: number;
  readonly accepted: number;
  /** Connections still open on the client side. */
  readonly open: number;
  close(): Promise<void>;
}

/**
 * A TCP relay in front of a server that counts the bytes of each direction, so a layer's usage can be compared
 * with what really crossed the wire, whatever protocol runs over it. Half-open on both sides so that one
 * direction's end is passed on without cutting the other short.
 */
export async function countingRelay(targetPort: number): Promise<Relay> {
  let up = 0;
  let down = 0;
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const clients = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    accepted++;
    clients.add(client);
    const upstream = nodeConnect(targetPort, { allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.on('close', () => clients.delete(client));
    client.on('data', (d: Buffer) => (up += d.length));
    upstream.on('data', (d: Buffer) => (down += d.length));
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => {
      if (client.writableLength === 0) client.destroySoon();
      else client.once('drain', () => client.destroySoon());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    get up() {
      return up;
    },
    get down() {
      return down;
    },
    get accepted() {
      return accepted;
    },
    get open() {
      return clients.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface Sentinel {
  port: number;
  readonly accepted: number;
  close(): Promise<void>;
}

/** A loopback listener a denied client aims at: any connection it accepts is a policy failure. */
export async function sentinel(): Promise<Sentinel> {
  let accepted = 0;
  const peer = await listen(() => accepted++);
  return {
    port: peer.port,
    get accepted() {
      return accepted;
    },
    close: peer.close,
  };
}

/**
 * Waits until the layer's ledger equals what the relay carried, both ways: the last bytes of a reply may still
 * be in flight when a client reports completion. Resolves with the final usage.
 */
async function meteredLikeRelay(layer: SocketLayer, relay: Relay, ms = 5000) {
  await until(
    () => {
      const u = layer.usage();
      return u.bytesSent === relay.up && u.bytesReceived === relay.down;
    },
    ms,
    'the ledger to match the relay',
  ).catch(() => {});
  return layer.usage();
}

/**
 * "The ledger equals the wire": the layer's usage, once caught up, is what the relay carried both ways; with
 * `connections`, the relay accepted that many and the layer created as many sockets; the payload is a floor for
 * each direction (`sentOver`, `receivedOver`), since protocol framing and TLS only add to it. Resolves with the
 * usage, for what a test checks beyond that.
 */
export async function expectLedgerEqualsWire(
  layer: SocketLayer,
  relay: Relay,
  expected: { connections?: number; sentOver?: number; receivedOver?: number },
) {
  const u = await meteredLikeRelay(layer, relay);
  if (expected.connections !== undefined) {
    expect(relay.accepted).toBe(expected.connections);
    expect(u.socketsCreated).toBe(expected.connections);
  }
  expect({ sent: u.bytesSent, received: u.bytesReceived }).toEqual({ sent: relay.up, received: relay.down });
  if (expected.sentOver !== undefined) expect(u.bytesSent).toBeGreaterThan(expected.sentOver);
  if (expected.receivedOver !== undefined) expect(u.bytesReceived).toBeGreaterThan(expected.receivedOver);
  return u;
}

/** A denied client's outcome: the layer counted `denials` denials and the sentinel it aimed at accepted nothing. */
export function expectNeverReached(layer: SocketLayer, target: Sentinel, denials: number): void {
  expect(layer.usage().denied).toBe(denials);
  expect(target.accepted).toBe(0);
}

/**
 * For a client's socket hook that takes a callback: `done(err)` if `socket` fails before `event`, else `done(null)`
 * once it is ready, with this listener gone so that from then on errors reach only the client's own handlers.
 */
export function whenReady(socket: NodeJS.EventEmitter, event: 'connect' | 'secureConnect', done: (err: Error | null) => void): void {
  socket.once('error', (err) => done(err));
  socket.once(event, () => {
    socket.removeAllListeners('error');
    done(null);
  });
}
