/**
 * `npm start`: a tour on a local echo server. Shows policy verdicts for the spellings an attacker would try,
 * a denied connection, traffic through an allowed one, the per-socket and per-app meters, and the connection handed
 * to a worker thread, which keeps echoing on it.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { SocketLayer } from './index.js';

// The worker's half of the hand-off: attach the token, echo a few more messages, end the connection.
const workerSource = `
import { parentPort, workerData } from 'node:worker_threads';
const { SocketLayer } = await import(workerData.index);
const layer = new SocketLayer({ appId: 'demo', secret: workerData.secret, policy: workerData.policy });
const s = layer.attach(workerData.token);
await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
let got = 0;
const done = new Promise((resolve) => s.on('data', (d) => { got += d.length; if (got === 1000 * 64) resolve(); }));
for (let i = 0; i < 1000; i++) s.write(Buffer.alloc(64, 'y'));
await done;
const counters = s.counters;
s.end();
await new Promise((resolve) => s.once('close', resolve));
parentPort.postMessage({ counters, usage: layer.usage() });
await layer.close();
`;

const line = (s = '') => process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  const server = net.createServer((c) => c.pipe(c));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  // Production rules, plus one operator rule opening exactly this demo server (loopback is denied otherwise).
  const policy = {
    version: 1,
    allow: [{ cidr: '127.0.0.1/32', ports: [port], openSpecialPurpose: true, comment: 'the demo echo server' }],
  };
  // Threads that hand connections to each other share the app's key.
  const secret = randomBytes(32).toString('hex');
  const layer = new SocketLayer({ appId: 'demo', policy, secret });

  line('sockguard demo: production policy, one operator rule for the local echo server');
  line();
  line('Policy verdicts (layer.check, nothing is connected):');
  const destinations: Array<[string, number]> = [
    ['10.0.0.1', 80],
    ['169.254.169.254', 80],
    ['0x7f000001', 6379],
    ['0177.0.0.1', 22],
    ['::ffff:127.0.0.1', 22],
    ['[::7f00:1]', 22],
    ['fe80::1%eth0', 80],
    ['localhost.', 8080],
    ['8.8.8.8', 53],
    ['8.8.8.8', 443],
    ['1.1.1.1', 25],
    ['1.1.1.1', 443],
    ['2606:4700:4700::1111', 443],
    ['127.0.0.1', port],
  ];
  for (const [host, p] of destinations) {
    const v = await layer.check(host, p);
    const where = `${host}:${p}`.padEnd(28);
    line(v.allowed ? `  ${where} allowed  -> ${v.address}` : `  ${where} DENIED   rule=${v.rule}`);
  }
  line();

  const denied = layer.connect(port, '127.0.0.2');
  const err = await new Promise<Error & { code?: string; rule?: string }>((resolve) => denied.once('error', resolve));
  line(`connect 127.0.0.2:${port} -> ${err.code} (${err.message})`);
  line();

  const socket = layer.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const messages = 20_000;
  const msg = Buffer.alloc(64, 'x');
  let received = 0;
  const started = process.hrtime.bigint();
  const done = new Promise<void>((resolve) =>
    socket.on('data', (d: Buffer) => {
      received += d.length;
      if (received === messages * msg.length) resolve();
    }),
  );
  for (let i = 0; i < messages; i++) socket.write(msg);
  await done;
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  line(`echoed ${messages} x 64 B messages through 127.0.0.1:${port} in ${ms.toFixed(1)} ms`);
  const c = socket.counters;
  line(`socket counters: sent ${c.bytesSent} B in ${c.sendCalls} send calls, received ${c.bytesReceived} B in ${c.receiveCalls} receive calls`);
  line();

  // Hand-off: the main thread detaches the live connection, a worker thread attaches it and keeps echoing.
  const token = await socket.detach();
  line(`detached in the main thread: token of ${token.length} characters; the connection stays open`);
  const worker = new Worker(workerSource, { eval: true, workerData: { index: new URL('./index.js', import.meta.url).href, secret, policy, token } });
  const report = await new Promise<{ counters: typeof c; usage: { bytesSent: number; bytesReceived: number } }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const w = report.counters;
  line(`attached in a worker, echoed 1000 x 64 B more; counters continue: sent ${w.bytesSent} B, received ${w.bytesReceived} B`);
  line(`the worker's layer billed ${report.usage.bytesSent + report.usage.bytesReceived} B, only what moved there`);

  const u = layer.usage();
  line(
    `usage for app "${u.appId}": sent ${u.bytesSent} B, received ${u.bytesReceived} B, billed ${u.billedBytes} B, ` +
      `sockets created ${u.socketsCreated}, open ${u.socketsOpen}, denied ${u.denied}`,
  );
  await layer.close();
  server.close();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
