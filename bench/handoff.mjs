#!/usr/bin/env node
// Hand-off latency: from socket.detach() in one place to the first byte delivered by the Socket that
// layer.attach() returned in another, for a worker thread (the process's own table) and for another process (the
// local broker). Each round: the holder writes one byte to an echo peer on 127.0.0.1 and detaches at once (so the
// echo is waiting, in the kernel or in the stream's buffer, when the connection changes hands); the other side
// attaches and stamps the first 'data'. Both stamps come from the monotonic clock every thread and process of the
// machine share (process.hrtime). Needs `npm run build`.
//
//   node bench/handoff.mjs [--rounds N]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist/index.js');
const argRounds = process.argv.indexOf('--rounds');
const ROUNDS = argRounds > 0 ? Number(process.argv[argRounds + 1]) : 300;
const WARMUP = 20;
const secret = randomBytes(16).toString('hex');
const app = 'bench-handoff';
process.env.SOCKGUARD_BROKER ??= join(tmpdir(), `sockguard-bench-${process.pid}.sock`);

const { SocketLayer } = await import(dist);
const { brokerStats } = await import(join(root, 'dist/handoff/broker.js'));

// The other side: attach, stamp the first byte, detach again and send the token back.
const otherSide = `
const { SocketLayer } = await import(input.dist);
const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: input.app, secret: input.secret });
onToken(async (token) => {
  const s = layer.attach(token);
  const first = await new Promise((resolve, reject) => {
    s.once('data', () => resolve(process.hrtime.bigint()));
    s.once('error', reject);
  });
  const back = await s.detach({ broker: input.broker });
  reply({ first: String(first), token: back });
});
`;
const workerCode = `
import { parentPort, workerData as input } from 'node:worker_threads';
const onToken = (f) => parentPort.on('message', f);
const reply = (m) => parentPort.postMessage(m);
${otherSide}`;
const childCode = `
const input = await new Promise((r) => process.once('message', r));
const onToken = (f) => process.on('message', f);
const reply = (m) => process.send(m);
process.send('ready');
${otherSide}`;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function run(name, peerPort, send, onReply, broker) {
  const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, appId: app, secret });
  let s = layer.connect(peerPort, '127.0.0.1');
  await new Promise((r, j) => (s.once('connect', r), s.once('error', j)));
  s.resume();
  const samples = [];
  for (let i = 0; i < ROUNDS + WARMUP; i++) {
    s.write('x');
    const t0 = process.hrtime.bigint();
    const token = await s.detach({ broker });
    const answer = new Promise((r) => onReply(r));
    send(token);
    const { first, token: back } = await answer;
    if (i >= WARMUP) samples.push(Number(BigInt(first) - t0) / 1000);
    s = layer.attach(back);
    await new Promise((r, j) => (s.once('connect', r), s.once('error', j)));
    // Let the echo of the next round be the only byte in flight.
    s.resume();
  }
  s.destroy();
  await layer.close();
  console.log(`${name.padEnd(8)} median ${median(samples).toFixed(1)} µs   p90 ${pct(samples, 90).toFixed(1)} µs   (${samples.length} hand-offs)`);
  return samples;
}

const peer = net.createServer((c) => c.pipe(c));
await new Promise((r) => peer.listen(0, '127.0.0.1', r));
const port = peer.address().port;
const input = { dist, app, secret };
try {
  const w = new Worker(workerCode, { eval: true, workerData: { ...input, broker: false } });
  await run('thread', port, (t) => w.postMessage(t), (r) => w.once('message', r), false);
  await w.terminate();

  const child = spawn(process.execPath, ['--input-type=module', '-e', childCode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.send({ ...input, broker: true });
  await new Promise((r) => child.once('message', r));
  await run('process', port, (t) => child.send(t), (r) => child.once('message', r), true);
  child.kill();
  const { pid } = await brokerStats();
  process.kill(pid);
} finally {
  peer.close();
}
