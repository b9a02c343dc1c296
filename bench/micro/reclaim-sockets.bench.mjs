// Idle reclaim with real sockets: a layer tracking as many connected sockets as one process may open here
// (20,000 descriptors per process, so 15,000 sockets plus headroom), swept with the production timeout.
// reclaim.bench.mjs exercises the sweep structure itself at 100,000 entries; this one shows the same costs
// hold when the entries are live sockets whose every operation refreshes them.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { env, report, runTasks, turn } from './harness.mjs';

const dist = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
if (!existsSync(dist) || !env.port) {
  report([]);
  process.exit(0);
}
process.removeAllListeners('warning');
const { SocketLayer } = await import(pathToFileURL(dist).href);

// The quick run (short sample windows) uses fewer sockets so it stays under its two-minute budget.
const N = Number(process.env.SG_RECLAIM_SOCKETS ?? (env.timeMs < 500 ? 5_000 : 15_000));
const layer = new SocketLayer({
  policy: 'development',
  idleTimeoutMs: 600_000,
  // The bench sweeps by hand; the layer's own timer would only add noise.
  sweepIntervalMs: 0x7fffffff,
});
const sockets = [];
const handlers = { onclose(err) { if (err) throw err; } };
let up = 0;
await new Promise((resolve, reject) => {
  const h = { ...handlers, onconnect(err) { if (err) reject(err); else if (++up === N) resolve(); } };
  let started = 0;
  // Bounded connects in flight, so the listener's backlog is never the limit.
  const next = () => {
    while (started < N && started - up < 256) {
      started++;
      sockets.push(layer.connectRaw({ host: env.host, port: env.port }, h));
    }
    if (started < N) setImmediate(next);
  };
  next();
});
if (layer.sweeper.size !== N) throw new Error(`bench invariant: ${layer.sweeper.size} tracked, want ${N}`);

const one = Buffer.alloc(1);
const SWEEPS = 100;
const results = await runTasks([
  {
    name: `sweep, ${N.toLocaleString('en')} real sockets tracked, none due`,
    inner: SWEEPS,
    fn: () => {
      for (let i = 0; i < SWEEPS; i++) layer.sweeper.sweepNow();
    },
  },
  {
    name: `1-byte write on each of ${N.toLocaleString('en')} sockets (includes its reclaim refresh)`,
    inner: N,
    fn: async () => {
      for (let i = 0; i < N; i++) sockets[i].write(one);
      await turn();
    },
  },
]);
const sweepNs = results[0].medianNs;
results.push({
  name: 'sweep share of one core at the default 1 s interval',
  medianNs: null,
  meanNs: null,
  samples: results[0].samples,
  note: `${((sweepNs / 1e9) * 100).toExponential(2)} % (sweep ${sweepNs.toFixed(0)} ns per second)`,
});
if (layer.usage().reclaimed !== 0) throw new Error('bench invariant: nothing may be reclaimed');
await layer.close();
report(results);
