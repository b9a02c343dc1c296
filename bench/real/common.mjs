// Shared by the real-workload clients: arguments, the arm's socket factory, and the measurement window.
// A workload is written once per client library; the arms differ only in the socket handed to it.
import net from 'node:net';
import tls from 'node:tls';
import { cpuNsSince, fail, finish, now, readKeyValues, watchdog } from '../clients/common.mjs';
import { createLayer } from '../clients/sockguard-layer.mjs';

export { fail, finish, now, cpuNsSince, watchdog };

/** `<workload> key=value ...`; numbers where they parse as numbers, strings otherwise. */
export function parseArgs(argv = process.argv.slice(2)) {
  const [workload, ...rest] = argv;
  const o = { workload, arm: 'net', host: '127.0.0.1', port: 0, seconds: 3, warmupSeconds: 0.5, warmupBytes: 64 * 1024 * 1024 };
  readKeyValues(rest, o, (k, v) => (v !== '' && Number.isFinite(Number(v)) && k !== 'host' ? Number(v) : v));
  if (!['net', 'sockguard', 'sockguard-js'].includes(o.arm)) fail(new Error(`unknown arm ${o.arm}`));
  return o;
}

/** The client's sockguard layer, or null for the `net` arm (so that arm never loads the addon). */
export async function layerFor(o) {
  if (o.arm === 'net') return null;
  // The development policy warns once per loopback destination; keep stderr for real failures.
  process.removeAllListeners('warning');
  return createLayer(o);
}

/** A TCP connection for plain-TCP workloads: `net.connect` or the sockguard Duplex. */
export function tcpConnect(layer, opts) {
  return layer ? layer.connect(opts) : net.connect(opts);
}

/**
 * A TLS connection that emits 'secureConnect'. `net`: Node's TLS over net; `sockguard`: the layer's own TLS
 * (`tls` connect option); `sockguard-js`: Node's TLS over the sockguard Duplex (JS stream wrapper).
 */
export function tlsConnect(o, layer) {
  const servername = o.servername || 'localhost';
  const common = { rejectUnauthorized: false, servername };
  switch (o.arm) {
    case 'net':
      return tls.connect({ host: o.host, port: o.port, ...common });
    case 'sockguard-js':
      return tls.connect({ socket: layer.connect({ host: o.host, port: o.port }), ...common });
    default: {
      const s = layer.connect({ host: o.host, port: o.port, tls: common });
      // A layer that does not know the option yet connects in clear and would wait forever for the
      // handshake: say so instead of hanging.
      s.once('connect', () => {
        const t = setTimeout(() => {
          if (!s.encrypted) fail(new Error("layer.connect() ignored the tls option: 'connect' but no 'secureConnect'"));
        }, 5000);
        t.unref();
        s.once('secureConnect', () => clearTimeout(t));
      });
      return s;
    }
  }
}

/**
 * Runs `batch` (resolves with the units of work it completed) for a warm-up of at least one batch and
 * `warmupSeconds`, then for a window of at least one batch and `seconds`; prints the result line.
 */
export async function runBatches(o, batch, extra = {}) {
  const start = now();
  do await batch(); while (now() - start < o.warmupSeconds);
  const cpu = process.cpuUsage();
  const t0 = now();
  let units = 0;
  do units += await batch(); while (now() - t0 < o.seconds);
  const seconds = now() - t0;
  return { workload: o.workload, arm: o.arm, units, seconds, value: units / seconds, cpuNsPerUnit: cpuNsSince(cpu) / units, ...extra };
}

/** Any uncaught failure ends the trial with an error line; undici and pg hide the reason in `cause`. */
export function guard() {
  const report = (err) => fail(err?.cause ? `${err.stack ?? err}\ncause: ${err.cause.stack ?? err.cause}` : err);
  process.on('uncaughtException', report);
  process.on('unhandledRejection', report);
}
