/**
 * Fixtures of the fault suite. Everything a test opens is registered with `cleanup` and torn down in afterEach,
 * whatever the test did, so one failing fault never leaks sockets or processes into the next.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import net from 'node:net';
import { afterEach } from 'vitest';
import { SocketLayer, type SocketLayerOptions } from '../../src/index.js';
import { distPath, fdCount, until } from '../helpers.js';

type Closer = () => unknown;
const closers: Closer[] = [];

/** Registers a teardown step; steps run in reverse order after each test, errors ignored. */
export function cleanup(fn: Closer): void {
  closers.push(fn);
}

afterEach(async () => {
  for (const fn of closers.splice(0).reverse()) {
    try {
      await fn();
    } catch {
      // Teardown of an already broken fixture: the test has reported what went wrong.
    }
  }
});

/** A layer that can reach loopback, closed after the test. */
export function layerOf(options: SocketLayerOptions = {}): SocketLayer {
  const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, ...options });
  cleanup(() => layer.close());
  return layer;
}

export interface FaultPeer {
  port: number;
  connections: Set<net.Socket>;
  /** Connections accepted so far. */
  accepted: number;
  /** Bytes read by the peer, all connections together. */
  received: number;
  /** Destroys every accepted connection (and waits for them to close). */
  dropAll(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A loopback server; unlike helpers.listen it can keep half-open connections (`allowHalfOpen`), counts what it
 * reads when `count` is set, and is closed after the test.
 */
export async function peer(
  onConnection: (c: net.Socket, p: FaultPeer) => void,
  opts: { allowHalfOpen?: boolean; count?: boolean } = {},
): Promise<FaultPeer> {
  const connections = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: opts.allowHalfOpen ?? false });
  const p: FaultPeer = {
    port: 0,
    connections,
    accepted: 0,
    received: 0,
    async dropAll() {
      const all = [...connections];
      for (const c of all) c.destroy();
      await until(() => all.every((c) => c.closed), 5000, 'peer connections to close');
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.destroy();
        server.close(() => resolve());
      }),
  };
  server.on('connection', (c) => {
    p.accepted++;
    connections.add(c);
    c.on('close', () => connections.delete(c));
    c.on('error', () => {});
    if (opts.count) c.on('data', (d: Buffer) => (p.received += d.length));
    onConnection(c, p);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  p.port = (server.address() as net.AddressInfo).port;
  cleanup(() => p.close());
  return p;
}

export interface Log {
  /** Event names in order; errors as `error:CODE`, close as `close:hadError`. */
  events: string[];
  errors: NodeJS.ErrnoException[];
  closes: number;
}

/** Records a socket's lifecycle events (and so also handles its 'error': nothing here is left uncaught). */
export function record(s: EventEmitter, names: string[] = ['connect', 'end', 'finish', 'error', 'close']): Log {
  const log: Log = { events: [], errors: [], closes: 0 };
  for (const name of names) {
    s.on(name, (arg: unknown) => {
      if (name === 'error') {
        const e = arg as NodeJS.ErrnoException;
        log.errors.push(e);
        log.events.push(`error:${e.code}`);
      } else if (name === 'close') {
        log.closes++;
        log.events.push(`close:${arg === true}`);
      } else {
        log.events.push(name);
      }
    });
  }
  return log;
}

/** Resolves once `s` has emitted 'close' (at once if it already has). */
export function closed(s: { closed?: boolean; once(ev: 'close', cb: () => void): unknown }): Promise<void> {
  if (s.closed) return Promise.resolve();
  return new Promise((resolve) => s.once('close', () => resolve()));
}

/**
 * A few turns of the event loop: enough for any duplicate 'close' or late 'error' (both are emitted on
 * process.nextTick or the next dispatch of the native loop) to show up before a test counts events.
 */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 20));
}

/**
 * One connection through `layer`, so the thread's native loop exists: its poll descriptor is created once, and a
 * descriptor baseline taken afterwards compares like with like.
 */
export async function warmLoop(layer: SocketLayer): Promise<void> {
  const p = await peer(() => {});
  const s = layer.connect(p.port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.destroy();
  await closed(s);
  await p.close();
}

/** Waits until the process holds no more descriptors than `baseline`. */
export function fdsBackTo(baseline: number, ms = 5000): Promise<void> {
  return until(() => fdCount() <= baseline, ms, `fd count back to ${baseline}`).catch(() => {
    throw new Error(`fd count ${fdCount()} did not return to the baseline ${baseline}`);
  });
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  killed: boolean;
}

/**
 * Runs a command (a Node process, possibly under bash for `ulimit`), with SG_DIST set to the built package;
 * killed after `timeoutMs`. Resolves, never rejects: the test asserts on the result.
 */
export function runProcess(cmd: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<ChildResult> {
  const started = Date.now();
  const child: ChildProcess = spawn(cmd, args, {
    env: { ...process.env, SG_DIST: distPath, SOCKGUARD_POLICY: 'development', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  let killed = false;
  const killer = setTimeout(() => {
    killed = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  cleanup(() => {
    clearTimeout(killer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, killed });
    });
  });
}

/** The last JSON line a child printed. */
export function lastJson<T>(r: ChildResult): T {
  const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  if (lines.length === 0) throw new Error(`child printed no result (exit ${r.code}, signal ${r.signal}): ${r.stderr.slice(0, 2000)}`);
  return JSON.parse(lines[lines.length - 1]!) as T;
}

/**
 * Writes `chunk` repeatedly, honouring backpressure (waits for 'drain' whenever write() returns false), until
 * `limit` bytes were offered or the socket closes. Resolves with the bytes offered.
 */
export function pump(s: net.Socket | import('../../src/index.js').Socket, chunk: Buffer, limit: number): Promise<number> {
  return new Promise((resolve) => {
    let offered = 0;
    const done = () => resolve(offered);
    s.once('close', done);
    const go = () => {
      while (!s.destroyed && offered < limit) {
        offered += chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', go);
          return;
        }
      }
      if (offered >= limit) {
        s.removeListener('close', done);
        done();
      }
    };
    go();
  });
}
