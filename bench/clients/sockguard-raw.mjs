// Arm `sockguard-raw`: the callback socket under the Duplex. Same scenarios and parameters as the
// stream arms; writes are plain calls in a loop and the core coalesces them per loop turn.
import { Samples, cpuNsSince, fail, finish, idleScenario, now, parseArgs, rateWindow, watchdog } from './common.mjs';
import { createLayer } from './sockguard-layer.mjs';

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
process.removeAllListeners('warning');
const o = parseArgs();
const layer = await createLayer(o);
const addr = { host: o.host, port: o.port };
const noop = () => {};

/** Raw socket with defaults that fail loudly, overridden per scenario. */
function open(handlers) {
  return layer.connectRaw(addr, {
    onconnect: noop,
    ondata: noop,
    onend: noop,
    ondrain: noop,
    onclose: (err) => err && fail(err),
    ...handlers,
    onconnect: (err) => (err ? fail(err) : handlers.onconnect?.()),
  });
}

switch (o.scenario) {
  case 'bulk': bulk(); break;
  case 'echo': echo(); break;
  case 'pingpong': pingpong(); break;
  case 'connect': connectRate(); break;
  case 'idle': await idle(); break;
  default: fail(new Error(`unknown scenario ${o.scenario}`));
}

function bulk() {
  const chunk = Buffer.alloc(o.chunk);
  let sent = 0;
  let t0 = 0;
  let warm = false;
  let cpu = null;
  let s = null;
  const pump = () => {
    for (let i = 0; i < 1024; i++) {
      const ok = s.write(chunk);
      sent += chunk.length;
      if (!warm) {
        if (sent >= o.warmupBytes) {
          warm = true;
          sent = 0;
          t0 = now();
          cpu = process.cpuUsage();
        }
      } else {
        const t = now();
        if (t - t0 >= o.seconds) {
          finish({ scenario: 'bulk', bytes: sent, seconds: t - t0, value: sent / (t - t0), unit: 'B/s', cpuNsPerUnit: cpuNsSince(cpu) / (sent / 65536) });
          s.destroy();
          return;
        }
      }
      if (!ok) return;
    }
    setImmediate(pump);
  };
  s = open({ onconnect: pump, ondrain: pump });
  watchdog(5000, () => sent);
}

function echo() {
  const msg = Buffer.alloc(o.size, 0x61);
  const windowBytes = o.window * o.size;
  const each = o.refill === 'each';
  const sockets = [];
  let msgs = 0;
  let connected = 0;
  let tick = null;
  const send = (s, n) => {
    for (let i = 0; i < n; i++) s.write(msg);
  };
  const done = (messages, seconds, cpuNsPerUnit) => {
    finish({ scenario: 'echo', conns: o.conns, window: o.window, messages, seconds, value: messages / seconds, unit: 'msg/s', cpuNsPerUnit });
    for (const s of sockets) s.destroy();
  };
  for (let c = 0; c < o.conns; c++) {
    let recvd = 0;
    const s = open({
      ondata(buf, offset, length) {
        const before = Math.floor(recvd / o.size);
        recvd += length;
        const n = Math.floor(recvd / o.size) - before;
        msgs += n;
        if (each) {
          if (n > 0 && !tick(msgs)) send(s, n);
          return;
        }
        if (recvd < windowBytes) return;
        recvd = 0;
        if (!tick(msgs)) send(s, o.window);
      },
      onconnect() {
        if (++connected < o.conns) return;
        tick = rateWindow(o, done);
        for (const x of sockets) send(x, o.window);
      },
    });
    sockets.push(s);
  }
  watchdog(5000, () => msgs);
}

function pingpong() {
  const msg = Buffer.alloc(o.size, 0x61);
  const samples = new Samples();
  let got = 0;
  let rtt = 0;
  let a = 0;
  let t0 = 0;
  let cpu = null;
  let s = null;
  const ping = () => {
    got = 0;
    a = now();
    s.write(msg);
  };
  s = open({
    onconnect: ping,
    ondata(buf, offset, length) {
      got += length;
      if (got < o.size) return;
      const b = now();
      if (rtt++ < o.warmupRtts) {
      t0 = b;
      cpu = process.cpuUsage();
    }
      else if (samples.push((b - a) * 1e6) || b - t0 >= o.seconds) {
        const sum = samples.summary();
        finish({ scenario: 'pingpong', ...sum, seconds: b - t0, value: sum.p50, unit: 'us', cpuNsPerUnit: cpuNsSince(cpu) / sum.rtts });
        s.destroy();
        return;
      }
      ping();
    },
  });
  watchdog(5000, () => rtt);
}

function connectRate() {
  let done = 0;
  let over = false;
  const tick = rateWindow(o, (connections, seconds, cpuNsPerUnit) => {
    over = true;
    finish({ scenario: 'connect', inflight: o.inflight, connections, seconds, value: connections / seconds, unit: 'conn/s', cpuNsPerUnit });
  });
  const one = () => {
    const s = open({
      onconnect: () => s.destroy(),
      onclose(err) {
        if (err) return fail(err);
        done++;
        if (!over && !tick(done)) one();
      },
    });
  };
  for (let i = 0; i < o.inflight; i++) one();
  watchdog(5000, () => done);
}

async function idle() {
  // One handler object shared by every socket, as an application with many sockets would do, so
  // the per-socket cost measured is the library's and not the bench's closures.
  let handlers = null;
  const { keep, result } = await idleScenario(o, (onConnect, onError) => {
    handlers ??= {
      onconnect: (err) => (err ? onError(err) : onConnect()),
      ondata: noop,
      onend: noop,
      ondrain: noop,
      onclose: noop,
    };
    return layer.connectRaw(addr, handlers);
  });
  finish(result);
  for (const s of keep) s.destroy();
}
