// undici workloads against bench/real/http-server.mjs, one keep-alive connection.
//   node undici-client.mjs <pipeline|fetch> arm=net|sockguard host=H port=P [requests=N] [pipelining=N]
// pipeline: batches of `requests` GETs through Dispatcher#request with `pipelining` in flight on one
// connection; fetch: batches of `requests` sequential fetch() calls over one kept-alive connection.
// `net` is undici's own connector; `sockguard` hands undici a sockguard Duplex through Agent's `connect`.
import { Agent, fetch } from 'undici';
import { fail, finish, guard, layerFor, parseArgs, runBatches, tcpConnect, watchdog } from './common.mjs';

guard();
const o = { requests: 3000, pipelining: 10, ...parseArgs() };
const layer = await layerFor(o);

/**
 * undici's connector contract (lib/core/connect.js): called with { hostname, host, port, protocol,
 * servername, ... }; calls back once with the connected socket or an error. Mirrors the default
 * connector's socket setup (no delay, keep-alive 60 s) so the arms differ only in the socket.
 */
function sockguardConnector(opts, cb) {
  if (opts.protocol !== 'http:') {
    cb(new Error(`sockguard connector: ${opts.protocol} not used by this bench`));
    return null;
  }
  let pending = cb;
  const once = (err, socket) => {
    if (!pending) return;
    const f = pending;
    pending = null;
    f(err, socket);
  };
  const s = tcpConnect(layer, { host: opts.hostname, port: Number(opts.port) || 80 });
  s.setNoDelay(true);
  s.setKeepAlive(true, 60e3);
  s.once('connect', () => once(null, s));
  s.once('error', (err) => once(err));
  return s;
}

const pipelining = o.workload === 'fetch' ? 1 : o.pipelining;
const agent = new Agent({
  connections: 1,
  pipelining,
  keepAliveTimeout: 120e3,
  ...(layer ? { connect: sockguardConnector } : {}),
});
const origin = `http://${o.host}:${o.port}`;
let done = 0;
watchdog(5000, () => done);

async function pipelineBatch() {
  let issued = 0;
  const worker = async () => {
    while (issued < o.requests) {
      issued++;
      const res = await agent.request({ origin, path: '/', method: 'GET' });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
      done++;
    }
  };
  // `pipelining` requests outstanding; undici writes them back to back on the one connection.
  await Promise.all(Array.from({ length: pipelining }, worker));
  return o.requests;
}

async function fetchBatch() {
  for (let i = 0; i < o.requests; i++) {
    const res = await fetch(`${origin}/`, { dispatcher: agent });
    await res.text();
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    done++;
  }
  return o.requests;
}

const batch = { pipeline: pipelineBatch, fetch: fetchBatch }[o.workload];
if (!batch) fail(new Error(`unknown workload ${o.workload}`));
const r = await runBatches(o, batch, { unit: 'req/s', pipelining });
finish(r);
