/**
 * `npm start`: a tour on a local echo server. Shows policy verdicts for the spellings an attacker would try,
 * a denied connection, traffic through an allowed one, and the per-socket and per-app meters.
 */
import net from 'node:net';
import { SocketLayer } from './index.js';

const line = (s = '') => process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  const server = net.createServer((c) => c.pipe(c));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  // Production rules, plus one operator rule opening exactly this demo server (loopback is denied otherwise).
  const layer = new SocketLayer({
    appId: 'demo',
    policy: {
      version: 1,
      allow: [{ cidr: '127.0.0.1/32', ports: [port], openSpecialPurpose: true, comment: 'the demo echo server' }],
    },
  });

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
  socket.end();
  await new Promise((resolve) => socket.once('close', resolve));

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
