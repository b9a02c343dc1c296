/**
 * TLS run by the native core (connect({ tls })), against Node's own TLS server on loopback: data both ways with
 * nothing lost, certificate verification and its errors as tls.connect reports them, SNI, ALPN, session
 * resumption, handshake failures, metering of the bytes on the wire, and the fallback to Node's tls module.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { SocketLayer, TlsSocket, type SocketConnectOptions, type TlsConnectOptions } from '../../src/index.js';
import { fdCount, once, payload, sha256 } from '../helpers.js';
import { cert, key, tlsServer as tlsPeer } from './common.js';


let layer: SocketLayer;
const servers: Array<net.Server> = [];

beforeEach(() => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
});
afterEach(async () => {
  await layer.close();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** A Node TLS server on loopback with the test certificate, closed after the test. */
function tlsServer(options: tls.TlsOptions, onSecure: (c: tls.TLSSocket) => void): Promise<{ port: number; server: tls.Server }> {
  return tlsPeer(servers, options, onSecure);
}

/** A TCP relay in front of `port` that counts the bytes crossing it each way (what is on the wire). */
async function relay(port: number): Promise<{ port: number; up: () => number; down: () => number }> {
  let up = 0;
  let down = 0;
  // Half-open both ways, so each side's close_notify and FIN cross in order.
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    c.on('data', (d) => {
      up += d.length;
      s.write(d);
    });
    s.on('data', (d) => {
      down += d.length;
      c.write(d);
    });
    c.on('end', () => s.end());
    s.on('end', () => c.end());
    c.on('error', () => s.destroy());
    s.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { port: (server.address() as AddressInfo).port, up: () => up, down: () => down };
}

/** connect({ tls }) with options the native engine implements: always a TlsSocket. */
function secure(opts: SocketConnectOptions & { tls: true | TlsConnectOptions }): TlsSocket {
  const s = layer.connect(opts);
  if (!(s instanceof TlsSocket)) throw new Error('expected the native TLS engine');
  return s;
}

describe('native TLS: data', () => {
  test('upload: every byte written before end() arrives, then close_notify and FIN end the server side', async () => {
    const got: Buffer[] = [];
    let serverEnded = false;
    const { port } = await tlsServer({}, (c) => {
      c.on('data', (d: Buffer) => got.push(d));
      c.on('end', () => {
        serverEnded = true;
        c.end('done');
      });
    });
    const data = payload(8 * 1024 * 1024 + 123);
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert } });
    expect(s).toBeInstanceOf(TlsSocket);
    const reply: Buffer[] = [];
    s.on('data', (d: Buffer) => reply.push(d));
    // Written before the handshake: held until the peer is verified, then sent in order.
    for (let off = 0; off < data.length; off += 65536) s.write(data.subarray(off, off + 65536));
    s.end();
    await once(s, 'close');
    expect(serverEnded).toBe(true);
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
    expect(Buffer.concat(reply).toString()).toBe('done');
    expect(s.authorized).toBe(true);
    expect(s.encrypted).toBe(true);
  });

  test("a writer that waits for 'drain' after write() says false gets it, and every byte arrives", async () => {
    const got: Buffer[] = [];
    const { port } = await tlsServer({}, (c) => {
      c.on('data', (d: Buffer) => got.push(d));
      c.on('end', () => c.end());
    });
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert } });
    await once(s, 'secureConnect');
    // Some writes are larger than the high-water mark on their own, some the first of their turn.
    const chunks = [payload(65536), payload(1000), payload(3 * 1024 * 1024), payload(20000)];
    const sent: Buffer[] = [];
    let drains = 0;
    await new Promise<void>((resolve) => {
      let i = 0;
      const go = () => {
        while (i < 120) {
          const c = chunks[i++ % chunks.length]!;
          sent.push(c);
          if (!s.write(c)) {
            drains++;
            s.once('drain', go);
            return;
          }
        }
        resolve();
      };
      go();
    });
    expect(drains).toBeGreaterThan(0);
    // One write beyond the high-water mark as the first of its turn: false, then 'drain'.
    await new Promise((r) => setImmediate(r));
    const big = payload(8 * 1024 * 1024);
    sent.push(big);
    expect(s.write(big)).toBe(false);
    await once(s, 'drain');
    s.end();
    s.resume();
    await once(s, 'close');
    expect(sha256(Buffer.concat(got))).toBe(sha256(Buffer.concat(sent)));
  });

  test('the queue mark under TLS is 64 KiB unless the layer or the connect sets one; a STARTTLS socket takes it too', async () => {
    const got: Buffer[] = [];
    let accepted!: (c: tls.TLSSocket) => void;
    const serverSide = new Promise<tls.TLSSocket>((r) => (accepted = r));
    const { port } = await tlsServer({}, (c) => {
      accepted(c);
      c.pause();
      c.on('data', (d: Buffer) => got.push(d));
      c.on('end', () => c.end());
    });
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert } });
    expect(s.writableHighWaterMark).toBe(64 * 1024);
    await once(s, 'secureConnect');
    const server = await serverSide;
    // The peer does not read, so what the kernel cannot take waits in the queue: write() says stop once about
    // 64 KiB wait, far below the 1 MiB of a plain socket, and 'drain' comes when the peer reads again.
    const sent: Buffer[] = [];
    let written = 0;
    for (;;) {
      const c = payload(16 * 1024);
      sent.push(c);
      written += c.length;
      if (!s.write(c)) break;
      if (written > 64 * 1024 * 1024) throw new Error('write() never said stop');
      if (written % (1024 * 1024) === 0) await new Promise((r) => setTimeout(r, 5));
    }
    expect(s.writableLength).toBeGreaterThan(64 * 1024);
    expect(s.writableLength).toBeLessThanOrEqual(64 * 1024 + 16 * 1024);
    server.resume();
    await once(s, 'drain');
    s.end();
    s.resume();
    await once(s, 'close');
    expect(sha256(Buffer.concat(got))).toBe(sha256(Buffer.concat(sent)));

    const own = secure({ host: '127.0.0.1', port, tls: { ca: cert }, writableHighWaterMark: 300_000 });
    expect(own.writableHighWaterMark).toBe(300_000);
    own.destroy();
    const wide = new SocketLayer({ policy: 'development', idleTimeoutMs: 0, highWaterMark: 2 << 20 });
    try {
      const w = wide.connect({ host: '127.0.0.1', port, tls: { ca: cert } });
      expect(w.writableHighWaterMark).toBe(2 << 20);
      w.destroy();
      const plain = layer.connect({ host: '127.0.0.1', port });
      expect(plain.writableHighWaterMark).toBe(1 << 20);
      await once(plain, 'connect');
      const up = layer.upgradeTls(plain, { ca: cert, servername: 'localhost' });
      expect(up).toBeInstanceOf(TlsSocket);
      expect(up.writableHighWaterMark).toBe(64 * 1024);
      up.destroy();
    } finally {
      await wide.close();
    }
  });

  test('download: 8 MiB from the server arrives whole, also when the reader pauses and resumes', async () => {
    const data = payload(8 * 1024 * 1024 + 77);
    const { port } = await tlsServer({}, (c) => c.end(data));
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert } });
    await once(s, 'secureConnect');
    const got: Buffer[] = [];
    let paused = 0;
    s.on('data', (d: Buffer) => {
      got.push(d);
      // Stop now and then with decrypted bytes possibly still inside TLS: resuming must deliver them.
      if (got.length % 7 === 0) {
        paused++;
        s.pause();
        setTimeout(() => s.resume(), 5);
      }
    });
    await once(s, 'end');
    expect(paused).toBeGreaterThan(0);
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
  });

  test('a corked batch holding an empty chunk is sent whole (an https keep-alive agent writes one)', async () => {
    const { port } = await tlsServer({}, (c) => c.pipe(c));
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert } });
    await once(s, 'secureConnect');
    s.cork();
    s.write('GET / HTTP/1.1\r\n');
    s.write(Buffer.alloc(0));
    s.write('\r\n');
    s.uncork();
    let got = '';
    s.setEncoding('utf8');
    await new Promise<void>((resolve) =>
      s.on('data', (d: string) => {
        got += d;
        if (got.length >= 18) resolve();
      }),
    );
    expect(got).toBe('GET / HTTP/1.1\r\n\r\n');
    s.destroy();
  });

  test('pipelined small writes are echoed in order', async () => {
    const { port } = await tlsServer({}, (c) => c.pipe(c));
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert } });
    await once(s, 'secureConnect');
    const msgs: Buffer[] = [];
    for (let i = 0; i < 5000; i++) msgs.push(Buffer.from(`m${i};`));
    const want = Buffer.concat(msgs);
    let got = Buffer.alloc(0);
    const done = new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.length >= want.length) resolve();
      });
    });
    for (const m of msgs) s.write(m);
    await done;
    expect(got.equals(want)).toBe(true);
    s.destroy();
  });

  test('the meter counts the encrypted bytes that crossed the wire, in the socket and the ledger', async () => {
    const { port } = await tlsServer({}, (c) => c.pipe(c));
    const r = await relay(port);
    const before = layer.usage();
    const s = secure({ host: '127.0.0.1', port: r.port, tls: { ca: cert, servername: 'localhost' } });
    await once(s, 'secureConnect');
    const data = payload(300 * 1024);
    let n = 0;
    const echoed = new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        n += d.length;
        if (n === data.length) resolve();
      });
    });
    s.write(data);
    await echoed;
    s.end();
    await once(s, 'close');
    const usage = layer.usage();
    expect(s.counters.bytesSent).toBe(r.up());
    expect(s.counters.bytesReceived).toBe(r.down());
    expect(usage.bytesSent - before.bytesSent).toBe(r.up());
    expect(usage.bytesReceived - before.bytesReceived).toBe(r.down());
    expect(r.up()).toBeGreaterThan(data.length);
  });
});

describe('native TLS: verification as tls.connect does it', () => {
  test('an untrusted certificate fails with its verify code and no plaintext leaves', async () => {
    let received = 0;
    const { port } = await tlsServer({}, (c) => c.on('data', (d: Buffer) => (received += d.length)));
    const s = secure({ host: '127.0.0.1', port, tls: true });
    s.write('secret');
    let secured = false;
    s.on('secureConnect', () => (secured = true));
    const closed = new Promise((r) => s.once('close', r));
    const err = await once<Error>(s, 'error').catch((e) => e as NodeJS.ErrnoException);
    expect((err as NodeJS.ErrnoException).code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect(err.message).toBe('self-signed certificate');
    await closed;
    expect(secured).toBe(false);
    expect(received).toBe(0);
  });

  test('a name the certificate does not cover fails with ERR_TLS_CERT_ALTNAME_INVALID', async () => {
    const { port } = await tlsServer({}, () => {});
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert, servername: 'not-localhost.example' } });
    const err = await once<Error>(s, 'error').catch((e) => e as NodeJS.ErrnoException);
    expect((err as NodeJS.ErrnoException).code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  test('rejectUnauthorized: false connects and reports why the peer is not authorized', async () => {
    const { port } = await tlsServer({}, (c) => c.end('hi'));
    const s = secure({ host: '127.0.0.1', port, tls: { rejectUnauthorized: false } });
    await once(s, 'secureConnect');
    expect(s.authorized).toBe(false);
    expect(s.authorizationError).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    const peer = s.getPeerCertificate() as tls.PeerCertificate;
    expect(peer.subject.CN).toBe('localhost');
    expect(peer.fingerprint256).toBe(new (await import('node:crypto')).X509Certificate(cert).fingerprint256);
    const detailed = s.getPeerCertificate(true) as tls.DetailedPeerCertificate;
    expect(detailed.issuerCertificate.subject.CN).toBe('localhost');
    expect(s.getPeerX509Certificate()?.subject).toContain('CN=localhost');
    expect(s.getProtocol()).toMatch(/^TLSv1\.[23]$/);
    expect(s.getCipher()?.name).toBeTruthy();
    s.destroy();
  });

  test('checkServerIdentity is asked with the host name and the peer certificate', async () => {
    const { port } = await tlsServer({}, (c) => c.end());
    const seen: Array<[string, string | undefined]> = [];
    const s = secure({
      host: '127.0.0.1',
      port,
      tls: {
        ca: cert,
        servername: 'localhost',
        checkServerIdentity: (host, c) => {
          seen.push([host, String(c.subject?.CN)]);
          return new Error('refused by the application');
        },
      },
    });
    const err = await once<Error>(s, 'error').catch((e) => e as Error);
    expect(err.message).toBe('refused by the application');
    expect(seen).toEqual([['localhost', 'localhost']]);
  });

  test('minVersion above what the server offers fails the handshake with OpenSSL reason and code', async () => {
    const { port } = await tlsServer({ maxVersion: 'TLSv1.2' }, () => {});
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert, minVersion: 'TLSv1.3' } });
    const err = (await once<Error>(s, 'error').catch((e) => e)) as NodeJS.ErrnoException & { library?: string; reason?: string };
    expect(err.code).toMatch(/^ERR_SSL_/);
    expect(err.library).toBe('SSL routines');
    expect(err.reason).toBeTruthy();
  });
});

describe('native TLS: SNI, ALPN, sessions', () => {
  test('SNI carries the servername; an IP host sends none', async () => {
    const names: Array<string | false> = [];
    const { port } = await tlsServer({}, (c) => {
      names.push((c as tls.TLSSocket & { servername: string | false }).servername);
      c.end();
    });
    const a = secure({ host: '127.0.0.1', port, tls: { ca: cert, servername: 'localhost' } });
    a.resume();
    await once(a, 'close');
    const b = secure({ host: '127.0.0.1', port, tls: { rejectUnauthorized: false } });
    b.resume();
    await once(b, 'close');
    expect(names).toEqual(['localhost', false]);
  });

  test('ALPN selects the protocol both sides agree on', async () => {
    const { port } = await tlsServer({ ALPNProtocols: ['h2', 'http/1.1'] }, (c) => c.end(String(c.alpnProtocol)));
    const s = secure({ host: '127.0.0.1', port, tls: { ca: cert, ALPNProtocols: ['http/1.1'] } });
    await once(s, 'secureConnect');
    expect(s.alpnProtocol).toBe('http/1.1');
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    await once(s, 'end');
    expect(Buffer.concat(got).toString()).toBe('http/1.1');
    const none = secure({ host: '127.0.0.1', port, tls: { ca: cert } });
    await once(none, 'secureConnect');
    expect(none.alpnProtocol).toBe(false);
    none.destroy();
  });

  test.each(['TLSv1.2', 'TLSv1.3'] as const)('a session from the first connection resumes the second (%s)', async (v) => {
    const reused: boolean[] = [];
    const { port } = await tlsServer({ maxVersion: v, minVersion: v }, (c) => {
      reused.push(c.isSessionReused());
      c.end('x');
    });
    const a = secure({ host: '127.0.0.1', port, tls: { ca: cert, servername: 'localhost' } });
    const sessions: Buffer[] = [];
    a.on('session', (s: Buffer) => sessions.push(s));
    a.resume();
    await once(a, 'close');
    expect(sessions.length).toBeGreaterThan(0);
    expect(a.isSessionReused()).toBe(false);
    const b = secure({ host: '127.0.0.1', port, tls: { ca: cert, servername: 'localhost', session: sessions[sessions.length - 1] } });
    await once(b, 'secureConnect');
    expect(b.isSessionReused()).toBe(true);
    // A resumed session skips checkServerIdentity, as with tls.connect; the chain was judged the first time.
    expect(b.authorized).toBe(true);
    b.resume();
    await once(b, 'close');
    expect(reused).toEqual([false, true]);
  });
});

describe('native TLS: failures and fallbacks', () => {
  test('a peer that does not speak TLS fails the handshake with an SSL error', async () => {
    // The server reads what it is sent: a connection with unread input never ends on the client's FIN, and
    // would then hold server.close() open unless the client happened to reset it.
    const plain = net.createServer((c) => c.resume().end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    servers.push(plain);
    const s = secure({ host: '127.0.0.1', port: (plain.address() as AddressInfo).port, tls: true });
    const err = (await once<Error>(s, 'error').catch((e) => e)) as NodeJS.ErrnoException;
    expect(err.code).toMatch(/^ERR_SSL_/);
  });

  test('a peer that closes during the handshake: ECONNRESET, as tls.connect says it', async () => {
    const plain = net.createServer((c) => c.once('data', () => c.destroy()));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    servers.push(plain);
    const s = secure({ host: '127.0.0.1', port: (plain.address() as AddressInfo).port, tls: true });
    const err = (await once<Error>(s, 'error').catch((e) => e)) as NodeJS.ErrnoException;
    expect(err.code).toBe('ECONNRESET');
    expect(err.message).toMatch(/before secure TLS connection was established|ECONNRESET/);
  });

  test('the policy still decides: a denied address fails before any handshake', async () => {
    const prod = new SocketLayer({ policy: 'production', idleTimeoutMs: 0 });
    try {
      const s = prod.connect({ host: '127.0.0.1', port: 443, tls: true }) as TlsSocket;
      const err = (await once<Error>(s, 'error').catch((e) => e)) as NodeJS.ErrnoException & { rule?: string };
      expect(err.code).toBe('EACCES');
      expect(err.rule).toBe('loopback');
    } finally {
      await prod.close();
    }
  });

  test("options only Node's tls implements select engine 'node' (a tls.TLSSocket over a sockguard socket)", async () => {
    const { port } = await tlsServer({}, (c) => c.end('ok'));
    const s = layer.connect({ host: '127.0.0.1', port, tls: { ca: cert, servername: 'localhost', ecdhCurve: 'auto' } as never });
    expect(s).toBeInstanceOf(tls.TLSSocket);
    await once(s, 'secureConnect');
    expect((s as tls.TLSSocket).authorized).toBe(true);
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    await once(s, 'end');
    expect(Buffer.concat(got).toString()).toBe('ok');
    expect(layer.usage().bytesReceived).toBeGreaterThan(0);
    expect(() => layer.connect({ host: '127.0.0.1', port, tls: { engine: 'native', ecdhCurve: 'auto' } as never })).toThrow(
      expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }),
    );
    expect(() => layer.connect({ host: '127.0.0.1', port, tls: { engine: 'fast' } as never })).toThrow(
      expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }),
    );
    expect(() => layer.connect({ host: '127.0.0.1', port, tls: { ca: 42 } as never })).toThrow(
      expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }),
    );
  });

  test('a CA bundle with no certificate in it is a coded error at connect()', () => {
    expect(() => layer.connect({ host: '127.0.0.1', port: 1, tls: { ca: 'not a certificate' } })).toThrow(
      expect.objectContaining({ code: 'ERR_SOCKGUARD_TLS_CONTEXT' }),
    );
  });

  test('connections open and close without leaking descriptors', async () => {
    // The server runs in this process too: wait for its side of each connection to close before counting.
    const serverSides: Array<Promise<unknown>> = [];
    const { port } = await tlsServer({}, (c) => {
      serverSides.push(new Promise((r) => c.once('close', r)));
      c.end('bye');
    });
    const base = fdCount();
    for (let i = 0; i < 30; i++) {
      const s = secure({ host: '127.0.0.1', port, tls: { ca: cert } });
      s.resume();
      await once(s, 'close');
    }
    await Promise.all(serverSides);
    expect(serverSides.length).toBe(30);
    expect(fdCount()).toBe(base);
  });
});
