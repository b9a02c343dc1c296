// Whether this build's layer.connect() speaks TLS itself (the `tls` connect option, 'secureConnect' like a
// TLSSocket). Prints one JSON line, { ok } or { ok: false, why }; the driver skips the native TLS arm on a no.
//   node probe-tls.mjs <127.x.y.z> <key.pem> <cert.pem> [dist/index.js of another build]
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { createLayer } from '../clients/sockguard-layer.mjs';

const [host, keyFile, certFile, dist] = process.argv.slice(2);
const answer = (r) => process.stdout.write(JSON.stringify(r) + '\n', () => process.exit(0));
process.removeAllListeners('warning');

const server = tls.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (s) => {
  s.on('error', () => {});
  s.end('ok');
});
server.on('tlsClientError', () => {});
server.listen(0, host, async () => {
  try {
    const layer = await createLayer({ dist });
    const s = layer.connect({ host, port: server.address().port, tls: { rejectUnauthorized: false, servername: 'localhost' } });
    s.on('error', (err) => answer({ ok: false, why: `layer.connect({ tls }) failed: ${err.code ?? ''} ${err.message}`.trim() }));
    s.once('secureConnect', () => answer({ ok: true, protocol: s.getProtocol?.() ?? null }));
    s.once('connect', () => {
      setTimeout(() => answer({ ok: false, why: "layer.connect() does not recognise the tls option yet (plain 'connect', no 'secureConnect')" }), 3000);
    });
    setTimeout(() => answer({ ok: false, why: 'layer.connect({ tls }) neither connected nor failed within 10 s' }), 10000);
  } catch (err) {
    answer({ ok: false, why: `layer.connect({ tls }) threw: ${err.message}` });
  }
});
