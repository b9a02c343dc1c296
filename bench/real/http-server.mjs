// HTTP/1.1 keep-alive peer for the undici scenarios: one node:http server per trial, the same for every arm.
//   node http-server.mjs <127.x.y.z> <port> [bodyBytes]
import http from 'node:http';

const [host, port, size = '64'] = process.argv.slice(2);
if (!/^127\.\d+\.\d+\.\d+$/.test(host ?? '')) {
  console.error('usage: http-server.mjs <127.x.y.z> <port> [bodyBytes]');
  process.exit(2);
}
const body = Buffer.alloc(Number(size), 0x61);
const headers = { 'content-type': 'text/plain', 'content-length': String(body.length) };
// Long keep-alive: the client keeps one connection for the whole trial.
const server = http.createServer({ keepAliveTimeout: 120000, noDelay: true }, (req, res) => {
  req.resume();
  res.writeHead(200, headers);
  res.end(body);
});
server.listen({ host, port: Number(port), backlog: 512 }, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
