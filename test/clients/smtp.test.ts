/**
 * nodemailer against smtp-server in this process on loopback, its connection coming from a layer through the
 * transport's `getSocket` hook. STARTTLS: the hook hands over the plain socket and nodemailer upgrades it itself
 * (tls.connect({ socket })). Implicit TLS: the hook hands over sockguard's own TLS socket, already verified.
 * Then both with no hook at all, through layer.install(), where nodemailer's STARTTLS upgrades the connection to
 * TLS in the core.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { AddressInfo } from 'node:net';
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import type { SocketLayer } from '../../src/index.js';
import { payload, sha256, until } from '../helpers.js';
import {
  allowLayer, countingRelay, denyLayer, expectLedgerEqualsWire, expectNeverReached, expectUpgradedInCore, fixtureCert, fixtureKey,
  installed, sentinel, spyUpgrades, whenReady,
} from './servers.js';

interface Received {
  sha: string;
  length: number;
  secure: boolean;
  from: string;
  to: string[];
}

interface Mta {
  port: number;
  received: Received[];
  close(): Promise<void>;
}

async function startMta(secure: boolean): Promise<Mta> {
  const received: Received[] = [];
  const server = new SMTPServer({
    secure,
    key: fixtureKey,
    cert: fixtureCert,
    authOptional: true,
    logger: false,
    onData(stream, session, callback) {
      const parts: Buffer[] = [];
      stream.on('data', (d: Buffer) => parts.push(d));
      stream.on('end', () => {
        const data = Buffer.concat(parts);
        received.push({
          sha: sha256(data),
          length: data.length,
          secure: session.secure,
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
        });
        callback();
      });
    },
  });
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.server.address() as AddressInfo).port,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A message whose bytes nodemailer sends as they are (raw), so the server's checksum is the message's. */
function rawMessage(bodyBytes: number): Buffer {
  const body = payload(bodyBytes).toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from(
    'From: app@example.com\r\nTo: ops@example.com\r\nSubject: report\r\nMIME-Version: 1.0\r\n' +
      'Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
      body + '\r\n',
  );
}

type GetSocket = (options: { host?: string; port?: number }, cb: (err: Error | null, socketOptions?: object) => void) => void;

/** The plain route: nodemailer gets a connected sockguard socket and runs STARTTLS over it. */
const plainSocket = (layer: SocketLayer): GetSocket => (options, cb) => {
  // allowHalfOpen: the TLS socket nodemailer puts on top must get to send its close_notify after the server's FIN.
  const socket = layer.connect({ host: options.host!, port: options.port!, allowHalfOpen: true });
  whenReady(socket, 'connect', (err) => (err ? cb(err) : cb(null, { connection: socket })));
};

/** The implicit-TLS route: sockguard's TLS socket, handed over once the server's certificate is verified. */
const tlsSocket = (layer: SocketLayer): GetSocket => (options, cb) => {
  const socket = layer.connect({
    host: options.host!, port: options.port!, tls: { ca: fixtureCert, servername: 'localhost' },
  });
  whenReady(socket, 'secureConnect', (err) => (err ? cb(err) : cb(null, { connection: socket, secured: true })));
};

let layer: SocketLayer;
beforeEach(() => {
  layer = allowLayer();
});
afterEach(() => layer.close());

describe('nodemailer through a layer', () => {
  const delivers = async (mode: 'STARTTLS' | 'implicit TLS', route: 'getSocket' | 'install') => {
    const secure = mode === 'implicit TLS';
    const mta = await startMta(secure);
    const relay = await countingRelay(mta.port);
    const uninstall = route === 'install' ? layer.install({ http: true }) : undefined;
    const upgrades = route === 'install' ? spyUpgrades() : undefined;
    const transport = nodemailer.createTransport({
      host: '127.0.0.1', port: relay.port, secure, requireTLS: !secure,
      tls: { ca: fixtureCert, servername: 'localhost' },
      // A TLS upgrade that never completes fails the test in seconds (and still uninstalls).
      connectionTimeout: 3000, greetingTimeout: 3000,
      ...(route === 'getSocket' ? { getSocket: secure ? tlsSocket(layer) : plainSocket(layer) } : {}),
    } as never);
    {
      try {
        const raw = rawMessage(512 * 1024);
        const info = await transport.sendMail({
          envelope: { from: 'app@example.com', to: ['ops@example.com'] },
          raw,
        });
        expect(info.accepted).toEqual(['ops@example.com']);
        // Under install(), nodemailer's STARTTLS (tls.connect({ socket })) upgrades its connection in the core.
        if (upgrades && !secure) expectUpgradedInCore(upgrades);
        expect(mta.received).toHaveLength(1);
        expect(mta.received[0]).toEqual({
          sha: sha256(raw), length: raw.length, secure: true, from: 'app@example.com', to: ['ops@example.com'],
        });
        transport.close();
        await until(() => relay.open === 0, 5000, 'the relay to see the connection close');
        await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: raw.length });
      } finally {
        transport.close();
        uninstall?.();
        await relay.close();
        await mta.close();
      }
    }
  };

  test('nodemailer via getSocket, STARTTLS: the server receives the exact message, the ledger equals the wire', () =>
    delivers('STARTTLS', 'getSocket'));
  test('nodemailer via getSocket, implicit TLS: the server receives the exact message, the ledger equals the wire', () =>
    delivers('implicit TLS', 'getSocket'));
  // STARTTLS is tls.connect({ socket }) over the connected sockguard socket install() gave nodemailer: TLS in the
  // core then continues that connection.
  test('nodemailer through install() with no option, STARTTLS: the server receives the exact message, the ledger equals the wire', () =>
    delivers('STARTTLS', 'install'));
  test('nodemailer through install() with no option, implicit TLS: the server receives the exact message, the ledger equals the wire', () =>
    delivers('implicit TLS', 'install'));

  for (const mode of ['STARTTLS', 'implicit TLS'] as const) {
    const secure = mode === 'implicit TLS';
    test(`nodemailer via getSocket, ${mode}: a denied destination fails with EACCES and is never reached`, async () => {
      const denied = denyLayer();
      const target = await sentinel();
      const transport = nodemailer.createTransport({
        host: '127.0.0.1', port: target.port, secure, requireTLS: !secure,
        tls: { ca: fixtureCert, servername: 'localhost' },
        getSocket: secure ? tlsSocket(denied) : plainSocket(denied),
      } as never);
      try {
        await expect(
          transport.sendMail({ envelope: { from: 'app@example.com', to: ['ops@example.com'] }, raw: 'Subject: x\r\n\r\nx\r\n' }),
        ).rejects.toMatchObject({ code: 'EACCES', rule: 'loopback' });
        expectNeverReached(denied, target, 1);
      } finally {
        transport.close();
        await target.close();
        await denied.close();
      }
    });
  }

  test('nodemailer through install(), STARTTLS and implicit TLS: a denied destination fails with EACCES and is never reached', async () => {
    const denied = denyLayer();
    const target = await sentinel();
    try {
      await installed(denied, async () => {
        for (const secure of [false, true]) {
          const transport = nodemailer.createTransport({
            host: '127.0.0.1', port: target.port, secure, requireTLS: !secure, tls: { ca: fixtureCert, servername: 'localhost' },
          });
          try {
            await expect(
              transport.sendMail({ envelope: { from: 'app@example.com', to: ['ops@example.com'] }, raw: 'Subject: x\r\n\r\nx\r\n' }),
              // nodemailer files a failure of its own connect under ESOCKET; the denial itself is kept on the error.
            ).rejects.toMatchObject({ code: 'ESOCKET', rule: 'loopback', message: expect.stringContaining('connect EACCES') });
          } finally {
            transport.close();
          }
        }
      });
      expectNeverReached(denied, target, 2);
    } finally {
      await target.close();
      await denied.close();
    }
  });
});
