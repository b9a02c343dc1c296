/**
 * Shared fixtures. Every helper returns something with a close() that tests call in `finally`/afterEach, so
 * nothing outlives its test. Peers are plain Node servers on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import type { Socket } from '../src/tcp/socket.js';
import { constants as C } from '../src/service/sockopts.js';

export interface Peer {
  port: number;
  host: string;
  server: net.Server;
  connections: Set<net.Socket>;
  close(): Promise<void>;
}

/** A net server on loopback; `onConnection` drives each accepted socket. Closing also destroys accepted sockets. */
export async function listen(onConnection: (c: net.Socket) => void, host = '127.0.0.1'): Promise<Peer> {
  const connections = new Set<net.Socket>();
  const server = net.createServer((c) => {
    connections.add(c);
    c.on('close', () => connections.delete(c));
    c.on('error', () => {});
    onConnection(c);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    host,
    server,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.destroy();
        server.close(() => resolve());
      }),
  };
}

export const echoServer = (host?: string) => listen((c) => c.pipe(c), host);

/** A port on which nothing listens (bound, then released). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const p = await listen(() => {}, host);
  await p.close();
  return p.port;
}

/** Open file descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

export function sha256(...bufs: Buffer[]): string {
  const h = createHash('sha256');
  for (const b of bufs) h.update(b);
  return h.digest('hex');
}

/** Deterministic-enough random payload. */
export function payload(bytes: number): Buffer {
  return randomBytes(bytes);
}

export function once<T = unknown>(emitter: NodeJS.EventEmitter, event: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onErr = (err: Error) => {
      emitter.removeListener(event, onEvent);
      reject(err);
    };
    const onEvent = (v: T) => {
      emitter.removeListener('error', onErr);
      resolve(v);
    };
    emitter.once(event, onEvent);
    if (event !== 'error') emitter.once('error', onErr);
  });
}

/** Resolves with the error a socket emits (and fails if it connects instead). */
export function errorOf(s: Socket | net.Socket): Promise<NodeJS.ErrnoException & { rule?: string; address?: string; port?: number }> {
  return new Promise((resolve, reject) => {
    s.once('error', (e) => resolve(e as NodeJS.ErrnoException));
    s.once('connect', () => reject(new Error('connected unexpectedly')));
  });
}

/** Waits until `cond()` holds, polling; fails after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface Blackhole {
  port: number;
  close(): void;
}

/**
 * A loopback port whose SYNs are dropped: a listener with a zero backlog that never accepts, its queue filled.
 * Connecting to it hangs in SYN_SENT, which is what a connect timeout needs, without leaving the machine.
 */
export async function blackhole(): Promise<Blackhole> {
  // The first filler's handshake completes into the empty queue, which then holds all a backlog of 0 admits:
  // once it is connected (writable), later SYNs are dropped, so the port is announced only then.
  const script = `
import select, socket, sys
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)
port = s.getsockname()[1]
fill = []
for i in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(('127.0.0.1', port))
    except BlockingIOError: pass
    fill.append(c)
select.select([], [fill[0]], [], 5)
if fill[0].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0: sys.exit(1)
print(port, flush=True)
sys.stdin.read()
`;
  const child: ChildProcess = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`blackhole exited ${code}`)));
  });
  return {
    port,
    close() {
      child.stdin!.end();
      child.kill();
    },
  };
}

/**
 * App Engine's eight supported options as docs/service.md#socket-options lists them: [level, name, get → number, bytes in hex].
 * Written out here, not taken from src/, so a wrong table in the implementation fails the tests.
 */
export const SOCKOPT_MOCKS: ReadonlyArray<[number, number, number, string]> = [
  [C.SOL_SOCKET, C.SO_KEEPALIVE, 0, '00000000'],
  [C.SOL_SOCKET, C.SO_DEBUG, 128, '80000000'],
  [C.SOL_TCP, C.TCP_NODELAY, 0, '00000000'],
  [C.SOL_SOCKET, C.SO_LINGER, 0, '0000000000000000'],
  [C.SOL_SOCKET, C.SO_OOBINLINE, 0, '00000000'],
  [C.SOL_SOCKET, C.SO_SNDBUF, 2097152, '00002000'],
  [C.SOL_SOCKET, C.SO_RCVBUF, 2097152, '00002000'],
  [C.SOL_SOCKET, C.SO_REUSEADDR, 1, '01000000'],
];

/** The built package (npm run build:ts), for tests that need a fresh process or a worker thread. */
export const distPath = fileURLToPath(new URL('../dist/index.js', import.meta.url));

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const mtimeOf = (path: string) => statSync(path, { throwIfNoEntry: false })?.mtimeMs;

/**
 * Fails unless dist/ and the native addon are at least as new as the sources they are built from. Tests that start
 * processes or worker threads run that build, not src/: out of date, they would test old code or fail for a reason
 * that names none of this. A setup error, not a condition to skip on: `npm test` compiles dist/ (pretest) but
 * leaves the addon to `npm run build:native`, and a direct `vitest run` compiles neither.
 */
export function requireFreshBuild(): void {
  const stale = staleBuild();
  if (stale !== undefined) {
    throw new Error(`the build these tests run in other processes and worker threads is out of date: ${stale}`);
  }
}

function staleBuild(): string | undefined {
  const srcDir = join(repoRoot, 'src');
  for (const rel of readdirSync(srcDir, { recursive: true, encoding: 'utf8' })) {
    if (!rel.endsWith('.ts') || rel.endsWith('.d.ts')) continue;
    const out = join('dist', rel.replace(/\.ts$/, '.js'));
    const built = mtimeOf(join(repoRoot, out));
    if (built === undefined) return `${out} is missing; run \`npm run build:ts\``;
    if (built < mtimeOf(join(srcDir, rel))!) return `${out} is older than src/${rel}; run \`npm run build:ts\``;
  }
  // The addon the tests load (src/core/native.ts); one that is missing fails every test with its own message.
  const addon = process.env.SOCKGUARD_NATIVE ?? join(repoRoot, 'build', 'Release', 'sockguard.node');
  const built = mtimeOf(addon);
  if (built === undefined) return undefined;
  const sources = ['binding.gyp', ...readdirSync(join(repoRoot, 'native')).map((f) => join('native', f))];
  for (const rel of sources) {
    if (mtimeOf(join(repoRoot, rel))! > built) return `${relative(repoRoot, addon)} is older than ${rel}; run \`npm run build:native\``;
  }
  return undefined;
}

/**
 * Runs an ES module script in a fresh Node process with SG_DIST (the built package) and SG_PORT set, under the
 * development policy; resolves with its exit code, run time and what it printed. Killed after 10 s.
 */
export function runChild(script: string, port: number): Promise<{ code: number | null; ms: number; stdout: string }> {
  const started = Date.now();
  const child = spawn(process.execPath, moduleScriptArgs(script), {
    env: { ...process.env, SG_DIST: distPath, SG_PORT: String(port), SOCKGUARD_POLICY: 'development' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const killer = setTimeout(() => child.kill(), 10_000);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, ms: Date.now() - started, stdout });
    });
  });
}

const isDeno = (process.versions as NodeJS.ProcessVersions & { deno?: string }).deno !== undefined;

/**
 * Arguments that make this runtime (`process.execPath`: node, bun or deno) run `script` as an ES module. Deno
 * takes node's flags only for a `node` it spawns, not for itself, and finds the project's npm dependencies only
 * from the working directory with its node_modules directory named.
 */
export function moduleScriptArgs(script: string): string[] {
  return isDeno ? ['eval', '--node-modules-dir=manual', script] : ['--input-type=module', '-e', script];
}

/**
 * A worker running the ES module `code`. Deno's worker_threads do not evaluate module code from a string, so
 * there the code goes through a file first.
 */
export function workerFromCode(code: string, options: WorkerOptions): Worker {
  if (!isDeno) return new Worker(code, { ...options, eval: true });
  const dir = mkdtempSync(join(tmpdir(), 'sockguard-worker-'));
  const file = join(dir, 'worker.mjs');
  writeFileSync(file, code);
  const w = new Worker(file, options);
  w.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return w;
}
