/**
 * node-postgres against a real PostgreSQL on loopback, its socket coming from a layer through the `stream`
 * option (a factory; pg calls connect(port, host) on what it returns). With `ssl`, pg sends its SSLRequest over
 * that socket and then runs tls.connect({ socket }) over it, verifying the server's certificate. Then the same
 * with no option at all, through layer.install() (pg's `new net.Socket()` is then the layer's, and its
 * tls.connect({ socket }) upgrades that connection to TLS in the core).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import pg from 'pg';
import { Socket, TlsSocket, type SocketLayer } from '../../src/index.js';
import { payload, sha256 } from '../helpers.js';
import {
  allowLayer, countingRelay, denyLayer, expectLedgerEqualsWire, expectNeverReached, fixtureCert, installed, postgresMissing,
  sentinel, skipMissing, spyUpgrades, expectUpgradedInCore, startPostgres, type PostgresServer,
} from './servers.js';

const MB = 1_000_000;

// allowHalfOpen: under TLS the server's FIN may arrive before the TLS socket has sent its close_notify.
const streamFrom = (layer: SocketLayer) => () => new Socket({ layer, allowHalfOpen: true }) as never;

describe.skipIf(postgresMissing && skipMissing)('pg through a layer', () => {
  let server: PostgresServer;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(() => server?.stop());

  const roundTrip = async (ssl: boolean, route: 'stream' | 'install' = 'stream') => {
    const layer = allowLayer();
    const relay = await countingRelay(server.port);
    const uninstall = route === 'install' ? layer.install({ http: true }) : undefined;
    const upgrades = route === 'install' ? spyUpgrades() : undefined;
    const client = new pg.Client({
      host: '127.0.0.1', port: relay.port, user: server.user, database: server.database,
      ...(route === 'stream' ? { stream: streamFrom(layer) } : {}),
      ssl: ssl ? { ca: fixtureCert.toString(), servername: 'localhost' } : false,
      // A handshake that never completes fails the test in seconds (and still uninstalls) instead of hanging it.
      connectionTimeoutMillis: 3000,
    });
    try {
      await client.connect();
      // Under install(), pg's tls.connect({ socket }) upgrades its connection in the core.
      if (upgrades && ssl) expectUpgradedInCore(upgrades);
      const table = `rows_${route}_${ssl ? 'tls' : 'plain'}`;
      await client.query(`CREATE TABLE ${table} (id int PRIMARY KEY, body bytea NOT NULL)`);
      const body = payload(MB);
      await client.query(`INSERT INTO ${table} VALUES ($1, $2)`, [1, body]);
      const { rows } = await client.query(`SELECT body, length(body) AS n, ssl FROM ${table}, pg_stat_ssl WHERE pid = pg_backend_pid()`);
      expect(rows).toHaveLength(1);
      expect(rows[0].n).toBe(MB);
      expect(sha256(rows[0].body)).toBe(sha256(body));
      // The server's own view of the session: encrypted exactly when the client asked for it.
      expect(rows[0].ssl).toBe(ssl);
      await client.end();
      // bytea travels as hex text in results, so the row comes back at twice its size.
      await expectLedgerEqualsWire(layer, relay, { connections: 1, sentOver: MB, receivedOver: 2 * MB });
    } finally {
      await client.end().catch(() => {});
      uninstall?.();
      await relay.close();
      await layer.close();
    }
  };

  test('pg via stream: a 1 MB row round-trips, the ledger equals the wire', () => roundTrip(false));

  test('pg via stream with ssl (certificate verified): a 1 MB row round-trips, the ledger equals the wire', () =>
    roundTrip(true));

  // pg reports the verdict only if the socket under its TLS socket closes after the TLS socket's 'error', as
  // net's does; otherwise all it can say is "Connection terminated unexpectedly".
  test('pg via stream with ssl: a certificate for another name is refused with the TLS verdict', async () => {
    const layer = allowLayer();
    const client = new pg.Client({
      host: '127.0.0.1', port: server.port, user: server.user, database: server.database,
      stream: streamFrom(layer),
      ssl: { ca: fixtureCert.toString(), servername: 'db.example.com' },
    });
    client.on('error', () => {});
    try {
      await expect(client.connect()).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    } finally {
      await client.end().catch(() => {});
      await layer.close();
    }
  });

  test('pg via stream: a denied destination fails with EACCES and is never reached', async () => {
    const layer = denyLayer();
    const target = await sentinel();
    const client = new pg.Client({
      host: '127.0.0.1', port: target.port, user: 'postgres', database: 'postgres', stream: streamFrom(layer),
    });
    client.on('error', () => {});
    try {
      await expect(client.connect()).rejects.toMatchObject({ code: 'EACCES', rule: 'loopback' });
      expectNeverReached(layer, target, 1);
    } finally {
      await client.end().catch(() => {});
      await target.close();
      await layer.close();
    }
  });

  test('pg through install() with no option: a 1 MB row round-trips, the ledger equals the wire', () =>
    roundTrip(false, 'install'));

  // pg's SSL upgrade is tls.connect({ socket }) over the connected sockguard socket install() gave it: TLS in the core
  // then continues that connection (the ledger sees one).
  test('pg through install() with no option, ssl (certificate verified): a 1 MB row round-trips, the ledger equals the wire', () =>
    roundTrip(true, 'install'));

  // The same verdict when the upgrade runs in the core: the plain socket closes after the TLS socket's 'error'.
  test('pg through install() with ssl: a certificate for another name is refused with the TLS verdict', async () => {
    const layer = allowLayer();
    try {
      await installed(layer, async () => {
        const upgrades = spyUpgrades();
        const client = new pg.Client({
          host: '127.0.0.1', port: server.port, user: server.user, database: server.database,
          ssl: { ca: fixtureCert.toString(), servername: 'db.example.com' },
        });
        client.on('error', () => {});
        await expect(client.connect()).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
        await client.end().catch(() => {});
        expect(upgrades).toHaveLength(1);
        expect(upgrades[0]).toBeInstanceOf(TlsSocket);
      });
    } finally {
      await layer.close();
    }
  });

  test('pg through install(): a denied destination fails with EACCES and is never reached', async () => {
    const layer = denyLayer();
    const target = await sentinel();
    try {
      await installed(layer, async () => {
        const client = new pg.Client({ host: '127.0.0.1', port: target.port, user: 'postgres', database: 'postgres' });
        client.on('error', () => {});
        await expect(client.connect()).rejects.toMatchObject({ code: 'EACCES', rule: 'loopback' });
        await client.end().catch(() => {});
      });
      expectNeverReached(layer, target, 1);
    } finally {
      await target.close();
      await layer.close();
    }
  });
});
