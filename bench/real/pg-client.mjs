// pg workloads against PostgreSQL (trust auth, user `bench`).
//   node pg-client.mjs <select|large> arm=net|sockguard host=H port=P ...
// select: batches of `queries` sequential `SELECT $1::int` (extended protocol, one round trip each);
// large: batches of `rows` sequential queries returning one `rowBytes` text value.
// `sockguard` injects the socket through pg's `stream` option: a factory returning an unconnected sockguard
// Socket, on which pg calls connect(port, host) as it does on the net.Socket it makes by default.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { distEntry } from '../clients/sockguard-layer.mjs';
import { fail, finish, guard, layerFor, parseArgs, runBatches, watchdog } from './common.mjs';

guard();
const require = createRequire(import.meta.url);
const pg = require('pg');
const o = { queries: 2000, rows: 20, rowBytes: 1000000, user: 'bench', database: 'postgres', ...parseArgs() };
const layer = await layerFor(o);
let stream;
if (layer) {
  const { Socket } = await import(pathToFileURL(o.dist || distEntry).href);
  stream = () => new Socket({ layer });
}

const client = new pg.Client({ host: o.host, port: o.port, user: o.user, database: o.database, ...(stream ? { stream } : {}) });
client.on('error', fail);
await client.connect();

let done = 0;
watchdog(10000, () => done);

async function selectBatch() {
  for (let i = 0; i < o.queries; i++) {
    const r = await client.query('SELECT $1::int AS n', [i]);
    if (r.rows[0].n !== i) throw new Error('bad reply');
    done++;
  }
  return o.queries;
}

async function largeBatch() {
  for (let i = 0; i < o.rows; i++) {
    const r = await client.query('SELECT repeat($1::text, $2::int) AS t', ['x', o.rowBytes]);
    if (r.rows[0].t.length !== o.rowBytes) throw new Error('short row');
    done++;
  }
  return o.rows;
}

const batch = { select: selectBatch, large: largeBatch }[o.workload];
if (!batch) fail(new Error(`unknown workload ${o.workload}`));
const r = await runBatches(o, batch, { unit: o.workload === 'select' ? 'query/s' : 'row/s' });
finish(r);
