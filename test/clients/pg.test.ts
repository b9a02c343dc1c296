/**
 * node-postgres against a real PostgreSQL on loopback, its socket coming from a layer through the `stream`
 * option (a factory; pg calls connect(port, host) on what it returns). With `ssl`, pg sends its SSLRequest over
 * that socket and then runs tls.connect({ socket }) over it, verifying the server's certificate.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import pg from 'pg';
import { Socket, type SocketLayer } from '../../src/index.js';
import { payload, sha256 } from '../helpers.js';
import {
  allowLayer, countingRelay, denyLayer, fixtureCert, meteredLikeRelay, postgresMissing, sentinel, skipMissing,
  startPostgres, type PostgresServer,
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

  const roundTrip = async (ssl: boolean) => {
    const layer = allowLayer();
    const relay = await countingRelay(server.port);
    const client = new pg.Client({
      host: '127.0.0.1', port: relay.port, user: server.user, database: server.database,
      stream: streamFrom(layer),
      ssl: ssl ? { ca: fixtureCert.toString(), servername: 'localhost' } : false,
    });
    try {
      await client.connect();
      const table = ssl ? 'rows_tls' : 'rows_plain';
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
      const u = await meteredLikeRelay(layer, relay);
      expect(relay.accepted).toBe(1);
      expect({ sent: u.bytesSent, received: u.bytesReceived }).toEqual({ sent: relay.up, received: relay.down });
      // bytea travels as hex text in results, so the row comes back at twice its size.
      expect(u.bytesSent).toBeGreaterThan(MB);
      expect(u.bytesReceived).toBeGreaterThan(2 * MB);
    } finally {
      await client.end().catch(() => {});
      await relay.close();
      await layer.close();
    }
  };

  test('pg via stream: a 1 MB row round-trips, the ledger equals the wire', () => roundTrip(false));

  test('pg via stream with ssl (certificate verified): a 1 MB row round-trips, the ledger equals the wire', () =>
    roundTrip(true));

  const wrongName = async () => {
    const layer = allowLayer();
    const client = new pg.Client({
      host: '127.0.0.1', port: server.port, user: server.user, database: server.database,
      stream: streamFrom(layer),
      ssl: { ca: fixtureCert.toString(), servername: 'db.example.com' },
    });
    client.on('error', () => {});
    try {
      return await client.connect().then(() => null, (e: NodeJS.ErrnoException) => e);
    } finally {
      await client.end().catch(() => {});
      await layer.close();
    }
  };

  test('pg via stream with ssl: a certificate for another name is refused', async () => {
    expect(await wrongName()).toBeInstanceOf(Error);
  });

  // Known divergence from net: when tls.connect({ socket }) refuses the peer, the sockguard socket under it emits
  // 'close' before the TLS socket emits its 'error' (with a net.Socket the error comes first), so pg reports
  // "Connection terminated unexpectedly" instead of the verdict. Make this a plain test once the order is net's.
  test.fails('pg via stream with ssl: the refusal carries the TLS verdict (ERR_TLS_CERT_ALTNAME_INVALID)', async () => {
    expect(await wrongName()).toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
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
      expect(layer.usage().denied).toBe(1);
      expect(target.accepted).toBe(0);
    } finally {
      await client.end().catch(() => {});
      await target.close();
      await layer.close();
    }
  });
});
