// The scenarios for any net.Socket-compatible Duplex. `net` and the sockguard Duplex run this same
// code, so the only difference between those arms is the socket implementation.
import { Samples, cpuNsSince, fail, finish, idleScenario, now, rateWindow, watchdog } from './common.mjs';

/**
 * @param {object} o parsed arguments (common.mjs)
 * @param {(opts: {host: string, port: number}) => import('node:net').Socket} connect
 */
export function runStream(o, connect) {
  const open = () => {
    const s = connect({ host: o.host, port: o.port });
    s.setNoDelay(true); // the C client and sockguard both run with TCP_NODELAY
    s.on('error', fail);
    return s;
  };
  switch (o.scenario) {
    case 'bulk': return bulk(o, open);
    case 'echo': return echo(o, open);
    case 'pingpong': return pingpong(o, open);
    case 'connect': return connectRate(o, connect);
    case 'idle': return idle(o, connect);
    default: fail(new Error(`unknown scenario ${o.scenario}`));
  }
}

function bulk(o, open) {
  const chunk = Buffer.alloc(o.chunk);
  const s = open();
  let sent = 0;
  let t0 = 0;
  let warm = false;
  let cpu = null;
  const pump = () => {
    // Bounded: yield to the loop every 1024 writes even if the socket keeps accepting.
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
  s.on('drain', pump);
  s.on('connect', pump);
  watchdog(5000, () => sent);
}

// `window` messages outstanding per connection; refill=each (default) sends, per read, as many as
// came back, refill=window the next whole window once all came back (bench/c/client.c).
function echo(o, open) {
  const msg = Buffer.alloc(o.size, 0x61);
  const windowBytes = o.window * o.size;
  const each = o.refill === 'each';
  const sockets = [];
  let msgs = 0;
  let connected = 0;
  let tick = null;
  const send = (s, n) => {
    if (o.cork) s.cork();
    for (let i = 0; i < n; i++) s.write(msg);
    if (o.cork) s.uncork();
  };
  const done = (messages, seconds, cpuNsPerUnit) => {
    finish({ scenario: 'echo', conns: o.conns, window: o.window, messages, seconds, value: messages / seconds, unit: 'msg/s', cpuNsPerUnit });
    for (const s of sockets) s.destroy();
  };
  for (let c = 0; c < o.conns; c++) {
    const s = open();
    let recvd = 0;
    s.on('data', (buf) => {
      const before = Math.floor(recvd / o.size);
      recvd += buf.length;
      const n = Math.floor(recvd / o.size) - before;
      msgs += n;
      if (each) {
        if (n > 0 && !tick(msgs)) send(s, n);
        return;
      }
      if (recvd < windowBytes) return;
      recvd = 0;
      if (!tick(msgs)) send(s, o.window);
    });
    s.on('connect', () => {
      // The window opens when every connection is up, as in the C client.
      if (++connected < o.conns) return;
      tick = rateWindow(o, done);
      for (const x of sockets) send(x, o.window);
    });
    sockets.push(s);
  }
  watchdog(5000, () => msgs);
}

function pingpong(o, open) {
  const msg = Buffer.alloc(o.size, 0x61);
  const samples = new Samples();
  const s = open();
  let got = 0;
  let rtt = 0;
  let a = 0;
  let t0 = 0;
  let cpu = null;
  const ping = () => {
    got = 0;
    a = now();
    s.write(msg);
  };
  s.on('data', (buf) => {
    got += buf.length;
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
  });
  s.on('connect', ping);
  watchdog(5000, () => rtt);
}

function connectRate(o, connect) {
  let done = 0;
  let over = false;
  const tick = rateWindow(o, (connections, seconds, cpuNsPerUnit) => {
    over = true;
    finish({ scenario: 'connect', inflight: o.inflight, connections, seconds, value: connections / seconds, unit: 'conn/s', cpuNsPerUnit });
  });
  const one = () => {
    const s = connect({ host: o.host, port: o.port });
    s.on('error', fail);
    s.on('connect', () => s.destroy());
    s.on('close', () => {
      done++;
      if (!over && !tick(done)) one();
    });
  };
  for (let i = 0; i < o.inflight; i++) one();
  watchdog(5000, () => done);
}

async function idle(o, connect) {
  const { keep, result } = await idleScenario(o, (onConnect, onError) => {
    const s = connect({ host: o.host, port: o.port });
    s.on('error', onError);
    s.on('connect', onConnect);
    return s;
  });
  finish(result);
  for (const s of keep) s.destroy();
}
