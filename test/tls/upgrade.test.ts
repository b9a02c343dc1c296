/**
 * STARTTLS in the core: layer.upgradeTls(socket) and, under install(), tls.connect({ socket }) over a sockguard
 * socket continue the same connection with TLS run by the core. Against a line-protocol server on loopback that
 * answers STARTTLS and then hands the rest of the connection to Node's own TLS server: plaintext written before
 * the upgrade arrives as plaintext before the ClientHello, plaintext already read stays with the plain socket,
 * the TLS socket has the client surface and verdicts of connect({ tls }), and the connection (its native socket,
 * counters and place in the ledger) is the one the plain socket had.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { SocketLayer, TlsSocket, type Socket } from '../../src/index.js';
import { freePort, once, payload, sha256, until } from '../helpers.js';
import { cert, tlsServer } from './common.js';


let layer: SocketLayer;
const servers: net.Server[] = [];

beforeEach(() => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
});
afterEach(async () => {
  await layer.close();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

interface StartTls {
  port: number;
  /** Lines the server read as plaintext, per connection, in order. */
  plain: string[][];
  /** Bytes on the wire, both ways, of every connection. */
  wire(): number;
}

/**
 * Greets with "220 ready", answers "STARTTLS" with "220 go ahead" (and `inject` right after, in a write of its
 * own), reads further lines as plaintext until a TLS record starts (0x16), then relays the rest of the connection,
 * that record included, to a Node TLS server: `onSecure` gets the server side of the TLS connection.
 */
async function startTlsServer(onSecure: (c: tls.TLSSocket) => void, options: tls.TlsOptions = {}, inject?: string): Promise<StartTls> {
  const { port: backendPort } = await tlsServer(servers, options, onSecure);
  const plain: string[][] = [];
  let wire = 0;
  const front = net.createServer({ allowHalfOpen: true }, (c) => {
    const lines: string[] = [];
    plain.push(lines);
    let buf = Buffer.alloc(0);
    let relay: net.Socket | undefined;
    c.on('error', () => relay?.destroy());
    c.on('end', () => {
      if (!relay) c.end();
    });
    c.write('220 ready\r\n');
    wire += 11;
    c.on('data', (d: Buffer) => {
      wire += d.length;
      if (relay) {
        relay.write(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (buf.length > 0 && buf[0] === 0x16) {
          relay = net.connect({ port: backendPort, host: '127.0.0.1', allowHalfOpen: true });
          relay.write(buf);
          relay.on('data', (x: Buffer) => {
            wire += x.length;
            c.write(x);
          });
          relay.on('end', () => c.end());
          relay.on('error', () => c.destroy());
          c.on('end', () => relay!.end());
          return;
        }
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.subarray(0, eol).toString('latin1');
        buf = buf.subarray(eol + 2);
        lines.push(line);
        if (line === 'STARTTLS') {
          c.write('220 go ahead\r\n');
          wire += 14;
          if (inject !== undefined) {
            setTimeout(() => {
              c.write(inject);
              wire += inject.length;
            }, 5);
          }
        } else if (line === 'QUIT') {
          c.end('221 bye\r\n');
        }
      }
    });
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  servers.push(front);
  return { port: (front.address() as AddressInfo).port, plain, wire: () => wire };
}

/**
 * Connects, says NOOP and STARTTLS, and once "go ahead" arrives writes `after` as plaintext and upgrades, from
 * inside that 'data' handler (the common case: the server's reply is being dispatched when the upgrade starts).
 */
function dialogue(
  port: number,
  upgrade: (plain: Socket) => TlsSocket | tls.TLSSocket,
  after = 'AFTER\r\n',
  allowHalfOpen = false,
): Promise<{ plain: Socket; secure: TlsSocket | tls.TLSSocket }> {
  const plain = layer.connect({ host: '127.0.0.1', port, allowHalfOpen });
  return new Promise((resolve, reject) => {
    plain.on('error', reject);
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('220 ready\r\n') && !text.includes('STARTTLS sent')) {
        text += 'STARTTLS sent';
        plain.write('NOOP\r\n');
        plain.write('STARTTLS\r\n');
      }
      if (text.includes('220 go ahead\r\n')) {
        plain.removeListener('data', onData);
        if (after !== '') plain.write(after);
        resolve({ plain, secure: upgrade(plain) });
      }
    };
    plain.on('data', onData);
  });
}

const echo = (c: tls.TLSSocket) => c.pipe(c);


/**
 * A STARTTLS front that says go ahead and then does not speak TLS: `onClientHello` decides what the ClientHello
 * gets instead (plaintext, a reset). Closed with the suite's other servers.
 */
async function refusingFront(onClientHello: (c: net.Socket) => void): Promise<net.Server> {
  const front = net.createServer((c) => {
    c.write('220 ready\r\n');
    let text = '';
    c.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('STARTTLS\r\n') && !text.includes('#')) {
        text += '#';
        c.write('220 go ahead\r\n');
      } else if (d[0] === 0x16) onClientHello(c);
    });
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  servers.push(front);
  return front;
}
describe('STARTTLS in the core', () => {
  test('upgraded from the data handler: plaintext written before leaves first, then TLS both ways on the same connection', async () => {
    const srv = await startTlsServer(echo, { ALPNProtocols: ['smtp', 'x'] });
    const { plain, secure } = await dialogue(srv.port, (p) =>
      layer.upgradeTls(p, { ca: cert, servername: 'localhost', ALPNProtocols: ['smtp'] }),
    );
    expect(secure).toBeInstanceOf(TlsSocket);
    const s = secure as TlsSocket;
    const id = plain.raw.id;
    expect(id).toBe(-1); // the plain socket let go of the native socket...
    expect(s.raw.id).toBeGreaterThanOrEqual(0); // ...which the TLS socket continues
    let connectEvents = 0;
    s.on('connect', () => connectEvents++);
    await once(s, 'secureConnect');
    expect(connectEvents).toBe(0); // as tls.connect({ socket }): only the handshake is reported
    expect(s.authorized).toBe(true);
    expect(s.encrypted).toBe(true);
    expect(s.servername).toBe('localhost');
    expect(s.alpnProtocol).toBe('smtp');
    expect(s.getProtocol()).toMatch(/^TLSv1\.[23]$/);
    expect(srv.plain[0]).toEqual(['NOOP', 'STARTTLS', 'AFTER']);

    const body = payload(3 * 1024 * 1024 + 17);
    const got: Buffer[] = [];
    let n = 0;
    s.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
    });
    s.write(body);
    await until(() => n >= body.length, 10_000, 'the echo');
    expect(sha256(Buffer.concat(got))).toBe(sha256(body));

    // The plain socket is the TLS socket's underlying socket: it writes nothing of its own any more.
    const refused = await new Promise<Error | null | undefined>((r) => plain.write('PLAIN\r\n', r));
    expect((refused as NodeJS.ErrnoException).code).toBe('EPIPE');

    // One connection all along: created once, and the ledger counts every byte that crossed the wire.
    const order: string[] = [];
    s.on('close', () => order.push('tls'));
    plain.on('close', () => order.push('plain'));
    s.end();
    await until(() => order.length === 2, 5000, 'both sockets to close');
    expect(order).toEqual(['tls', 'plain']);
    await until(() => srv.wire() === s.counters.bytesSent + s.counters.bytesReceived, 5000, 'the wire count to settle');
    const u = layer.usage();
    expect(u.socketsCreated).toBe(1);
    expect(u.connects).toBe(1);
    expect(u.socketsOpen).toBe(0);
    expect(u.bytesSent + u.bytesReceived).toBe(srv.wire());
    expect(s.counters.bytesSent).toBeGreaterThan(body.length);
  });

  test('plaintext already read stays with the plain socket; after the upgrade every read goes through TLS', async () => {
    const srv = await startTlsServer((c) => c.end('over tls'), {}, 'INJECTED\r\n');
    const { plain } = await dialogue(srv.port, (p) => p as never, '');
    // The server's injected line arrives after "go ahead" and waits, unread, in the plain socket's buffer.
    plain.pause();
    await until(() => plain.readableLength >= 10, 5000, 'the injected line');
    const s = layer.upgradeTls(plain, { ca: cert, servername: 'localhost' }) as TlsSocket;
    expect(s).toBeInstanceOf(TlsSocket);
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    await once(s, 'end');
    expect(text).toBe('over tls');
    expect(s.authorized).toBe(true);
    expect(plain.read()?.toString()).toBe('INJECTED\r\n');
    s.destroy();
  });

  test('a socket still connecting is upgraded once it connects (TLS starts at the connect)', async () => {
    const direct = await tlsServer(servers, {}, (c) => c.end('hello'));
    const p2 = layer.connect({ host: '127.0.0.1', port: direct.port });
    const s = layer.upgradeTls(p2, { ca: cert, servername: 'localhost' });
    expect(s).toBeInstanceOf(TlsSocket);
    expect(s.connecting).toBe(true);
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString()));
    await once(s, 'end');
    expect(text).toBe('hello');
    expect((s as TlsSocket).authorized).toBe(true);
    expect(layer.usage().socketsCreated).toBe(1);
    s.destroy();
  });

  test('a socket that fails to connect fails the TLS socket over it with its error', async () => {
    const plain = layer.connect({ host: '127.0.0.1', port: await freePort() });
    const s = layer.upgradeTls(plain, { ca: cert });
    expect(s).toBeInstanceOf(TlsSocket);
    const err = (await once<Error>(s, 'error').catch((e) => e)) as NodeJS.ErrnoException;
    expect(err.code).toBe('ECONNREFUSED');
    await once(plain, 'close');
  });
});

describe('STARTTLS in the core: the socket underneath', () => {
  test("TLS traffic refreshes the plain socket's idle timeout, as over net; silence lets it fire", async () => {
    const srv = await startTlsServer(echo);
    const { plain, secure } = await dialogue(srv.port, (p) => {
      p.setTimeout(250);
      return layer.upgradeTls(p, { ca: cert, servername: 'localhost' });
    });
    await once(secure, 'secureConnect');
    let timeouts = 0;
    plain.on('timeout', () => timeouts++);
    secure.on('data', () => {});
    const started = Date.now();
    while (Date.now() - started < 700) {
      secure.write('tick');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(timeouts).toBe(0);
    await until(() => timeouts === 1, 2000, "the plain socket's 'timeout'");
    secure.destroy();
  });

  test('destroying the plain socket underneath destroys the TLS socket', async () => {
    const srv = await startTlsServer(echo);
    const { plain, secure } = await dialogue(srv.port, (p) => layer.upgradeTls(p, { ca: cert, servername: 'localhost' }));
    await once(secure, 'secureConnect');
    const closed = once(secure, 'close');
    plain.destroy();
    await closed;
    expect(secure.destroyed).toBe(true);
    expect(layer.usage().socketsOpen).toBe(0);
  });
});

describe('STARTTLS in the core: verdicts and errors as connect({ tls }) reports them', () => {
  const upgradeWith = (port: number, options: object) => dialogue(port, (p) => layer.upgradeTls(p, options));

  test('an untrusted certificate fails with its verify code, and nothing written reaches the server', async () => {
    let received = 0;
    const srv = await startTlsServer((c) => c.on('data', (d: Buffer) => (received += d.length)));
    const { plain, secure } = await upgradeWith(srv.port, {});
    expect(secure).toBeInstanceOf(TlsSocket);
    secure.write('secret');
    const plainClosed = once(plain, 'close');
    const err = (await once<Error>(secure, 'error').catch((e) => e)) as NodeJS.ErrnoException;
    expect(err.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    await plainClosed;
    expect(received).toBe(0);
  });

  test('a name the certificate does not cover fails with ERR_TLS_CERT_ALTNAME_INVALID', async () => {
    const srv = await startTlsServer(() => {});
    const { secure } = await upgradeWith(srv.port, { ca: cert, servername: 'db.example.com' });
    const err = (await once<Error>(secure, 'error').catch((e) => e)) as NodeJS.ErrnoException;
    expect(err.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  test('rejectUnauthorized: false connects and says why the peer is not authorized', async () => {
    const srv = await startTlsServer((c) => c.end());
    const { secure } = await upgradeWith(srv.port, { rejectUnauthorized: false });
    await once(secure, 'secureConnect');
    expect(secure.authorized).toBe(false);
    expect(secure.authorizationError).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    secure.destroy();
  });

  test('a session from one upgrade resumes the next, as with connect({ tls })', async () => {
    const srv = await startTlsServer((c) => c.end('x'));
    const first = (await upgradeWith(srv.port, { ca: cert, servername: 'localhost' })).secure as TlsSocket;
    const sessions: Buffer[] = [];
    first.on('session', (s: Buffer) => sessions.push(s));
    first.resume();
    await once(first, 'close');
    expect(sessions.length).toBeGreaterThan(0);
    expect(first.isSessionReused()).toBe(false);
    const second = (await upgradeWith(srv.port, { ca: cert, servername: 'localhost', session: sessions.at(-1) })).secure as TlsSocket;
    await once(second, 'secureConnect');
    expect(second.isSessionReused()).toBe(true);
    expect(second.authorized).toBe(true);
    second.resume();
    await once(second, 'close');
  });

  test('a peer that answers the ClientHello with plaintext fails the handshake with an SSL error', async () => {
    const front = await refusingFront((c) => c.end('500 what is this?\r\n'));
    const { secure } = await dialogue((front.address() as AddressInfo).port, (p) => layer.upgradeTls(p, { ca: cert }), '');
    const err = (await once<Error>(secure, 'error').catch((e) => e)) as NodeJS.ErrnoException & { library?: string };
    expect(err.code).toMatch(/^ERR_SSL_/);
    expect(err.library).toBe('SSL routines');
  });

  test('a peer that closes during the handshake: ECONNRESET', async () => {
    const front = await refusingFront((c) => c.destroy());
    const { secure } = await dialogue((front.address() as AddressInfo).port, (p) => layer.upgradeTls(p, { ca: cert }), '');
    const err = (await once<Error>(secure, 'error').catch((e) => e)) as NodeJS.ErrnoException;
    expect(err.code).toBe('ECONNRESET');
  });
});

describe('STARTTLS: what the core does not take falls back to Node’s TLS over the socket', () => {
  test("options only Node's tls implements get a tls.TLSSocket over the plain socket", async () => {
    const srv = await startTlsServer((c) => c.end('fallback'));
    // allowHalfOpen: Node's TLS sends its close_notify after the server's FIN (see docs/api.md#tls).
    const { secure } = await dialogue(
      srv.port,
      (p) => layer.upgradeTls(p, { ca: cert, servername: 'localhost', sigalgs: 'RSA-PSS+SHA256:ECDSA+SHA256:RSA+SHA256' } as never),
      'AFTER\r\n',
      true,
    );
    expect(secure).not.toBeInstanceOf(TlsSocket);
    expect(secure).toBeInstanceOf(tls.TLSSocket);
    let text = '';
    secure.on('data', (d: Buffer) => (text += d.toString()));
    await once(secure, 'end');
    expect(text).toBe('fallback');
    secure.destroy();
  });

  test("engine: 'native' that cannot be honoured throws instead", async () => {
    const srv = await startTlsServer(() => {});
    const plain = layer.connect({ host: '127.0.0.1', port: srv.port });
    await once(plain, 'connect');
    plain.end();
    // An ending socket has no stream left to put TLS on.
    expect(() => layer.upgradeTls(plain, { engine: 'native' })).toThrow(/can be upgraded in the core/);
    plain.destroy();
  });
});

describe('STARTTLS under install(): tls.connect({ socket }) over a sockguard socket', () => {
  test('is TLS in the core on the same connection; a Node socket still gets Node’s TLS', async () => {
    const srv = await startTlsServer(echo);
    const direct = await tlsServer(servers, {}, (c) => c.end('node'));
    // Made before install(): a Node socket.
    const nodeSocket = net.connect({ host: '127.0.0.1', port: direct.port });
    await once(nodeSocket, 'connect');
    const uninstall = layer.install();
    try {
      const { plain, secure } = await dialogue(srv.port, (p) =>
        tls.connect({ socket: p as unknown as net.Socket, host: '127.0.0.1', ca: cert, servername: 'localhost' }),
      );
      expect(secure).toBeInstanceOf(TlsSocket);
      expect(secure).toBeInstanceOf(tls.TLSSocket); // install() keeps instanceof true for it
      await once(secure, 'secureConnect');
      secure.write('ping');
      const d = await once<Buffer>(secure, 'data');
      expect(String(d)).toBe('ping');
      expect(plain.raw.id).toBe(-1);
      secure.destroy();

      const overNode = tls.connect({ socket: nodeSocket, ca: cert, servername: 'localhost' });
      expect(overNode).not.toBeInstanceOf(TlsSocket);
      let text = '';
      overNode.on('data', (x: Buffer) => (text += x.toString()));
      await once(overNode, 'end');
      expect(text).toBe('node');
      overNode.destroy();
    } finally {
      uninstall();
    }
  });
});
