/**
 * net.Socket members and option forms that libraries and Node's own http agents rely on, each compared with
 * what net does where net has the same situation.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { SocketLayer } from '../../src/index.js';
import { errorOf, listen, once, type Peer } from '../helpers.js';

let layer: SocketLayer;
let peer: Peer;

beforeEach(async () => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
  peer = await listen((c) => c.resume());
});

afterEach(async () => {
  await layer.close();
  await peer.close();
});

describe('connect option forms', () => {
  test('`path: null` (what http agents pass) connects to host and port', async () => {
    const s = layer.connect({ host: '127.0.0.1', port: peer.port, path: null } as never);
    await once(s, 'connect');
    s.destroy();
  });

  test('a Unix socket path is an EAFNOSUPPORT error event, not a throw, and admits nothing', async () => {
    const s = layer.connect({ path: '/tmp/nothing.sock' });
    const err = await errorOf(s);
    expect(err.code).toBe('EAFNOSUPPORT');
    expect(err.message).toContain('Unix domain sockets');
    expect(layer.usage().socketsCreated).toBe(0);
  });

  test("the option object Node's agents, tls, http2 and undici build: extra keys accepted, lookup used, family honoured", async () => {
    const asked: Array<[string, unknown]> = [];
    const lookup = (name: string, opts: object, cb: (err: Error | null, a: Array<{ address: string; family: number }>) => void) => {
      asked.push([name, opts]);
      cb(null, [
        { address: '::1', family: 6 },
        { address: '127.0.0.1', family: 4 },
      ]);
    };
    const s = layer.connect({
      host: 'peer.test',
      hostname: 'peer.test',
      port: peer.port,
      servername: 'peer.test',
      path: null,
      family: 4,
      hints: 0,
      lookup,
      autoSelectFamily: true,
      autoSelectFamilyAttemptTimeout: 250,
      keepAlive: true,
      keepAliveInitialDelay: 1000,
      noDelay: true,
      _agentKey: 'peer.test:1:',
      encoding: null,
      timeout: 5000,
    } as never);
    await once(s, 'connect');
    expect(asked.map((a) => a[0])).toEqual(['peer.test']);
    expect(s.remoteAddress).toBe('127.0.0.1');
    expect(s.remoteFamily).toBe('IPv4');
    expect(s.timeout).toBe(5000);
    s.destroy();
  });

  test("net's path form `connect('127.0.0.1')` says why it is refused", async () => {
    const s = layer.connect('127.0.0.1');
    const err = await errorOf(s);
    expect(err.code).toBe('EAFNOSUPPORT');
  });

  test('an http.Agent whose createConnection returns layer.connect() serves requests', async () => {
    const server = http.createServer((req, res) => res.end('hello'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as net.AddressInfo).port;
    class LayerAgent extends http.Agent {
      override createConnection(options: object, cb: () => void) {
        return layer.connect(options as never, cb) as unknown as net.Socket;
      }
    }
    const agent = new LayerAgent({ keepAlive: false });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve(text));
          })
          .on('error', reject);
      });
      expect(body).toBe('hello');
    } finally {
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('members', () => {
  test('timeout: undefined until set, the delay once set, 0 once turned off (as net)', async () => {
    const s = layer.connect(peer.port, '127.0.0.1');
    const n = net.connect(peer.port, '127.0.0.1');
    try {
      for (const sock of [s, n] as Array<{ timeout: number | undefined; setTimeout(ms: number): unknown }>) {
        expect(sock.timeout).toBeUndefined();
        sock.setTimeout(100);
        expect(sock.timeout).toBe(100);
        sock.setTimeout(0);
        expect(sock.timeout).toBe(0);
      }
    } finally {
      s.destroy();
      n.destroy();
    }
  });

  test('bufferSize is writableLength', async () => {
    const s = layer.connect(peer.port, '127.0.0.1');
    await once(s, 'connect');
    s.write(Buffer.alloc(10));
    expect(s.bufferSize).toBe(s.writableLength);
    s.destroy();
  });

  test('resetAndDestroy() ends the connection with a RST the peer sees as ECONNRESET', async () => {
    let server!: net.Socket;
    const accepted = new Promise<void>((resolve) => {
      peer.server.once('connection', (c) => {
        server = c;
        resolve();
      });
    });
    const s = layer.connect(peer.port, '127.0.0.1');
    await once(s, 'connect');
    await accepted;
    const seen = new Promise<string | undefined>((resolve) => {
      server.removeAllListeners('error');
      server.once('error', (e: NodeJS.ErrnoException) => resolve(e.code));
      server.once('end', () => resolve('FIN'));
    });
    expect(s.resetAndDestroy()).toBe(s);
    await once(s, 'close');
    expect(await seen).toBe('ECONNRESET');
  });

  test('resetAndDestroy() on a socket that never connected is ERR_SOCKET_CLOSED, as with net', async () => {
    const s = new (await import('../../src/index.js')).Socket({ layer });
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      s.once('error', resolve);
      s.resetAndDestroy();
    });
    expect(err.code).toBe('ERR_SOCKET_CLOSED');
  });
});
