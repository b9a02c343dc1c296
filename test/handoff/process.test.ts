/**
 * Descriptor hand-off across processes through the local broker: a connection detached with { broker: true } in
 * one process is attached in another, mid-stream, also after the detaching process has exited; refusals; the
 * broker's own descriptors; the broker killed with connections parked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import { getLoop } from '../../src/core/loop.js';
import { brokerStats } from '../../src/handoff/broker.js';
import { distPath, echoServer, errorOf, fdCount, requireFreshBuild, until } from '../helpers.js';
import { childCode, connected, expectWholeStream, firstOwner, streamPeer, type Turn } from './common.js';

// Everything here runs the build: the broker is dist/cli.js and every turn is a process that loads dist/.
requireFreshBuild();

const cli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const secret = 'process-handoff-secret';
const app = 'app-p';
const brokerFile = join(tmpdir(), `sg-broker-test-${process.pid}-${randomBytes(4).toString('hex')}.sock`);
const savedEnv = process.env.SOCKGUARD_BROKER;
let broker: ChildProcess | undefined;
let layer: SocketLayer;

async function startBroker(): Promise<void> {
  const b = spawn(process.execPath, [cli, 'broker'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SOCKGUARD_BROKER: brokerFile },
  });
  broker = b;
  // Kept for the failure message: a broker that does not come up otherwise fails every test here with no reason.
  let stderr = '';
  b.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4096)));
  const started = Date.now();
  for (;;) {
    try {
      await brokerStats(brokerFile);
      return;
    } catch {
      const exited = b.exitCode ?? b.signalCode;
      // A cold start under the sanitizer on a busy machine takes seconds.
      if (exited !== null || Date.now() - started > 25_000) {
        const how = exited !== null ? `it exited (${exited})` : 'no answer after 25 s';
        throw new Error(`broker did not start: ${how}${stderr ? `\n${stderr}` : ''}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function stopBroker(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const b = broker;
  broker = undefined;
  if (!b || b.exitCode !== null || b.signalCode !== null) return;
  const gone = new Promise((r) => b.once('exit', r));
  b.kill(signal);
  await gone;
}

beforeAll(async () => {
  process.env.SOCKGUARD_BROKER = brokerFile;
  await startBroker();
});
afterAll(async () => {
  await stopBroker();
  if (existsSync(brokerFile)) unlinkSync(brokerFile);
  if (savedEnv === undefined) delete process.env.SOCKGUARD_BROKER;
  else process.env.SOCKGUARD_BROKER = savedEnv;
});
beforeEach(() => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: app, secret });
  getLoop();
});
afterEach(() => layer.close());

/** One process's turn with the connection (test/handoff/common.ts); resolves with its report once it exited. */
function turn(input: Record<string, unknown>): Promise<Turn> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', childCode], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, SOCKGUARD_BROKER: brokerFile },
  });
  child.send({ dist: distPath, app, secret, write: '', take: 0, ...input });
  return new Promise((resolve, reject) => {
    let report: Turn | undefined;
    child.on('message', (m) => (report = m as Turn));
    child.on('error', reject);
    child.on('exit', (code) => (report ? resolve(report) : reject(new Error(`child exited with ${code} and no report`))));
  });
}

// Each test starts fresh Node processes, which a sanitized build makes slow.
describe('across processes', { timeout: 120_000 }, () => {
  test('mid-stream while the peer keeps sending: this process → a process that exits → another, checksums both ways', async () => {
    const total = 2 * 1024 * 1024;
    const peer = await streamPeer(total, 8192, 1);
    const before = fdCount();
    const brokerBefore = await brokerStats(brokerFile);
    try {
      const writes = [randomBytes(200_000), randomBytes(150_000), randomBytes(100_000)];
      const first = await firstOwner(layer, peer, writes[0]!, 128 * 1024);
      const token = await first.socket.detach({ broker: true });
      expect((await brokerStats(brokerFile)).parked).toBe(brokerBefore.parked + 1);
      // The detaching process has exited by the time the next one attaches.
      const second = await turn({ token, write: writes[1]!.toString('base64'), take: 700 * 1024, broker: true });
      expect(second.error).toBeUndefined();
      // Parked while nobody holds it: the peer keeps sending, and all of it must come out in order.
      await new Promise((r) => setTimeout(r, 100));
      const last = await turn({ token: second.token, write: writes[2]!.toString('base64'), take: total, last: true });
      expect(last.error).toBeUndefined();
      const parts = [first.received(), Buffer.from(second.got, 'base64'), Buffer.from(last.got, 'base64')];
      await expectWholeStream(peer, parts, writes, last.counters, [layer.usage(), second.usage, last.usage]);
      await until(() => peer.connections.size === 0, 5000, 'connection closed');
      await until(() => fdCount() <= before, 5000, 'descriptors back to baseline here');
      const after = await brokerStats(brokerFile);
      expect(after.parked).toBe(brokerBefore.parked);
      expect(after.fds).toBe(brokerBefore.fds);
    } finally {
      await peer.close();
    }
  });

  test("refusals: another app, another key, a process-local token, a second attach; the broker's file is private", async () => {
    const peer = await echoServer();
    try {
      expect(statSync(brokerFile).mode & 0o777).toBe(0o600);
      const s = layer.connect(peer.port, '127.0.0.1');
      await connected(s);
      const token = await s.detach({ broker: true });
      expect(await turn({ token, app: 'other-app' })).toMatchObject({ error: 'EACCES' });
      expect(await turn({ token, secret: 'not the key' })).toMatchObject({ error: 'EACCES' });
      expect(await turn({ token, secret: undefined })).toMatchObject({ error: 'EACCES' });
      // Attached once, in another process; a second attach anywhere is EPIPE.
      const ok = await turn({ token, take: 0, broker: true });
      expect(ok.error).toBeUndefined();
      expect(await turn({ token })).toMatchObject({ error: 'EPIPE' });
      // A connection parked in this process's own table cannot be reached from another process.
      const s2 = layer.connect(peer.port, '127.0.0.1');
      await connected(s2);
      const local = await s2.detach();
      expect(await turn({ token: local })).toMatchObject({ error: 'EPIPE' });
      const t = layer.attach(local);
      await connected(t);
      t.destroy();
      // ok.token was parked again by that process (broker): take it back here and close it.
      const back = layer.attach(ok.token!);
      await connected(back);
      back.destroy();
      expect((await brokerStats(brokerFile)).parked).toBe(0);
    } finally {
      await peer.close();
    }
  });

  test('parked with the broker, reclaimed by the idle rule of the layer that parked it', async () => {
    const peer = await echoServer();
    const short = new SocketLayer({ policy: 'development', idleTimeoutMs: 200, appId: app, secret });
    try {
      const s = short.connect(peer.port, '127.0.0.1');
      await connected(s);
      // The peer's side of the connection must exist before "it is gone" can mean the broker closed it.
      await until(() => peer.connections.size === 1, 5000, 'the peer accepted the connection');
      const token = await s.detach({ broker: true });
      await until(() => peer.connections.size === 0, 5000, 'the broker closes the idle connection');
      expect(await errorOf(layer.attach(token))).toMatchObject({ code: 'EPIPE' });
    } finally {
      await short.close();
      await peer.close();
    }
  });

  test('the broker killed with connections parked: attach fails with ECONNREFUSED, no descriptor left anywhere', async () => {
    const peer = await echoServer();
    const before = fdCount();
    const parkedBefore = (await brokerStats(brokerFile)).parked;
    try {
      const tokens: string[] = [];
      for (let i = 0; i < 3; i++) {
        const s = layer.connect(peer.port, '127.0.0.1');
        await connected(s);
        tokens.push(await s.detach({ broker: true }));
      }
      expect((await brokerStats(brokerFile)).parked).toBe(parkedBefore + 3);
      await until(() => peer.connections.size === 3, 5000, 'the peer accepted the three connections');
      await stopBroker('SIGKILL');
      // The kernel closed what the broker held: the peer sees every connection end.
      await until(() => peer.connections.size === 0, 5000, 'parked connections closed with the broker');
      for (const token of tokens) {
        const err = await errorOf(layer.attach(token));
        expect(err.code).toBe('ECONNREFUSED');
        expect(err.message).toMatch(/broker/);
      }
      await until(() => fdCount() <= before, 5000, 'descriptors back to baseline');
      expect(layer.size).toBe(0);
    } finally {
      await peer.close();
      if (broker === undefined) await startBroker();
    }
  });

  test('a broker is started on first need when none listens', async () => {
    const peer = await echoServer();
    const path = join(tmpdir(), `sg-broker-auto-${process.pid}-${randomBytes(4).toString('hex')}.sock`);
    process.env.SOCKGUARD_BROKER = path;
    try {
      const s = layer.connect(peer.port, '127.0.0.1');
      await connected(s);
      const token = await s.detach({ broker: true });
      const stats = await brokerStats(path);
      expect(stats.parked).toBe(1);
      const t = layer.attach(token);
      await connected(t);
      t.destroy();
      process.kill(stats.pid, 'SIGTERM');
      await until(() => {
        try {
          process.kill(stats.pid, 0);
          return false;
        } catch {
          return true;
        }
      }, 5000, 'broker gone');
      // Ended by a signal, it removed its socket file.
      expect(existsSync(path)).toBe(false);
    } finally {
      process.env.SOCKGUARD_BROKER = brokerFile;
      await peer.close();
      if (existsSync(path)) unlinkSync(path);
    }
  });
});
