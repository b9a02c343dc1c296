// The alternative reference server: plain `net`, same modes and output as bench/c/server.c.
//   node net-server.mjs <echo|pingpong|sink> <ipv4> <port>
import net from 'node:net';

const [mode, host, port] = process.argv.slice(2);
if (!['echo', 'pingpong', 'sink'].includes(mode) || !/^127\./.test(host ?? '')) {
  console.error('usage: net-server.mjs <echo|pingpong|sink> <127.x.y.z> <port>');
  process.exit(2);
}
const server = net.createServer({ noDelay: true }, (s) => {
  s.on('error', () => s.destroy());
  if (mode === 'sink') s.on('data', () => {});
  else s.pipe(s); // pipe applies backpressure, like the C server's stop-reading-while-pending
});
server.listen({ host, port: Number(port), backlog: 4096 }, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
