/**
 * A redis-server of the fleet tests' own on 127.0.0.1, that a test can kill and start again on the same port
 * (a store outage and its recovery). No persistence: a restarted server starts empty, as a cache would.
 *
 * A missing binary fails the tests with a message saying what to install; SOCKGUARD_SKIP_MISSING_SERVERS=1
 * skips them instead. Every server and child process started here is stopped by the test that started it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { SocketLayer } from '../../src/index.js';
import { afterAll, beforeAll } from 'vitest';
import { distPath, freePort, listen, type Peer } from '../helpers.js';

export const REDIS_SERVER = '/usr/bin/redis-server';
export const redisMissing = !existsSync(REDIS_SERVER);
export const skipMissing = !!process.env.SOCKGUARD_SKIP_MISSING_SERVERS;

export function requireRedis(): void {
  if (redisMissing) {
    throw new Error(
      `redis-server (${REDIS_SERVER}) is not installed: install the Debian package 'redis-server' (.ci/run does), ` +
        'or set SOCKGUARD_SKIP_MISSING_SERVERS=1 to skip the tests that need it',
    );
  }
}

/** Production rules plus loopback, so the tests run the real policy engine against 127.0.0.1 only. */
export const LOOPBACK_POLICY = { version: 1, allow: [{ cidr: '127.0.0.0/8', openSpecialPurpose: true }] };

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      s.destroy();
      resolve(d.toString().includes('PONG'));
    });
  });
}

export class RedisServer {
  readonly port: number;
  readonly #dir = mkdtempSync(join(tmpdir(), 'sockguard-fleet-redis-'));
  #proc: ChildProcess | undefined;
  #out = '';

  private constructor(port: number) {
    this.port = port;
  }

  static async start(): Promise<RedisServer> {
    requireRedis();
    const server = new RedisServer(await freePort());
    await server.resume();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  /** Starts (again) on the same port and waits for a PONG. */
  async resume(): Promise<void> {
    const proc = spawn(REDIS_SERVER, [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.#dir,
      '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#proc = proc;
    const keep = (d: Buffer) => (this.#out = (this.#out + d.toString()).slice(-4096));
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    const start = Date.now();
    while (!(await ping(this.port))) {
      if (proc.exitCode !== null || Date.now() - start > 10_000) throw new Error(`redis-server did not start:\n${this.#out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGKILL: the store vanishes mid-run, connections reset. */
  async kill(): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

export interface ChildResult {
  code: number | null;
  out: unknown;
  stderr: string;
}

/**
 * Runs an ES module in a fresh Node process with SG_DIST (the built package) and `env`; resolves with its exit
 * code and the JSON it printed last. Killed after `ms`.
 */
export function runNode(source: string, env: Record<string, string>, ms = 20_000): { done: Promise<ChildResult>; kill(): void } {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    env: { ...process.env, ...env, SG_DIST: distPath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), ms);
  const done = new Promise<ChildResult>((resolve) => {
    child.on('exit', (code) => {
      clearTimeout(killer);
      const last = stdout.trim().split('\n').pop() ?? '';
      let out: unknown;
      try {
        out = JSON.parse(last);
      } catch {
        out = undefined;
      }
      resolve({ code, out, stderr });
    });
  });
  return { done, kill: () => child.kill('SIGKILL') };
}

export interface SlowLink {
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * A relay on 127.0.0.1 in front of `port` that holds every chunk `delayMs` each way, in order: a store across a
 * network, whose round trip is longer than a burst of connects on loopback.
 */
export async function slowLink(port: number, delayMs: number): Promise<SlowLink> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    const relay = (from: net.Socket, to: net.Socket) => from.on('data', (d) => setTimeout(() => to.destroyed || to.write(d), delayMs));
    relay(client, upstream);
    relay(upstream, client);
    // An end is relayed after the data before it.
    const end = (from: net.Socket, to: net.Socket) => from.on('close', () => setTimeout(() => to.destroy(), delayMs));
    end(client, upstream);
    end(upstream, client);
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const own = (server.address() as net.AddressInfo).port;
  return {
    port: own,
    url: `redis://127.0.0.1:${own}/0`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * What a fleet suite runs against, started before its tests and stopped after them: a redis-server, an admin
 * client on it, and an echo peer that counts the connections it accepted.
 */
export interface FleetRig {
  redis: RedisServer;
  admin: Redis;
  peer: Peer;
  accepted: number;
}

export function fleetRig(): FleetRig {
  const rig = { accepted: 0 } as FleetRig;
  beforeAll(async () => {
    rig.redis = await RedisServer.start();
    rig.peer = await listen((c) => {
      rig.accepted++;
      c.pipe(c);
    });
    rig.admin = new Redis(rig.redis.port, '127.0.0.1', { lazyConnect: true });
    await rig.admin.connect();
  });
  afterAll(async () => {
    rig.admin?.disconnect();
    await rig.peer?.close();
    await rig.redis?.stop();
  });
  return rig;
}

/** Connects and closes at once: 'ok', or the error the connect failed with (a denial, over quota, the store). */
export function connectOnce(layer: SocketLayer, port: number): Promise<'ok' | (NodeJS.ErrnoException & { window?: string })> {
  return new Promise((resolve) => {
    const s = layer.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve('ok');
    });
    s.on('error', (e: NodeJS.ErrnoException & { window?: string }) => resolve(e));
  });
}
