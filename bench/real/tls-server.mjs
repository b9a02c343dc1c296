// TLS peer for the real-workload TLS scenarios: one node:tls server per trial, the same for every arm.
//   node tls-server.mjs <sink|source|echo> <127.x.y.z> <port> <key.pem> <cert.pem>
// sink: reads and discards; source: writes 64 KiB chunks as fast as the client reads; echo: writes back.
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

const [mode, host, port, keyFile, certFile] = process.argv.slice(2);
if (!['sink', 'source', 'echo'].includes(mode) || !/^127\.\d+\.\d+\.\d+$/.test(host ?? '') || !certFile) {
  console.error('usage: tls-server.mjs <sink|source|echo> <127.x.y.z> <port> <key.pem> <cert.pem>');
  process.exit(2);
}
const chunk = Buffer.alloc(65536, 0x62);
const server = tls.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (s) => {
  s.setNoDelay(true);
  s.on('error', () => s.destroy());
  if (mode === 'sink') {
    s.on('data', () => {});
  } else if (mode === 'echo') {
    s.on('data', (d) => s.write(d));
  } else {
    const pump = () => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on('drain', pump);
    pump();
  }
});
server.on('tlsClientError', () => {});
server.listen({ host, port: Number(port), backlog: 512 }, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
