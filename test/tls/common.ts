/**
 * What the TLS suites share: the test certificate and a Node TLS server on loopback that the suite closes after
 * each test.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import tls from 'node:tls';

export const key = readFileSync(new URL('../fixtures/key.pem', import.meta.url));
export const cert = readFileSync(new URL('../fixtures/cert.pem', import.meta.url));

/**
 * A Node TLS server on 127.0.0.1 with the test certificate, added to `servers` (the suite closes them):
 * `onSecure` gets the server side of each connection; client errors are expected in these tests and ignored.
 */
export async function tlsServer(
  servers: Server[],
  options: tls.TlsOptions,
  onSecure: (c: tls.TLSSocket) => void,
): Promise<{ port: number; server: tls.Server }> {
  const server = tls.createServer({ key, cert, ...options }, (c) => {
    c.on('error', () => {});
    onSecure(c);
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { port: (server.address() as AddressInfo).port, server };
}
