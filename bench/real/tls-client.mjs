// TLS workloads against bench/real/tls-server.mjs. The same code drives every arm; only tlsConnect() differs.
//   node tls-client.mjs <upload|download|echo> arm=net|sockguard|sockguard-js host=H port=P [seconds=S] ...
// upload: 64 KiB writes as fast as the socket accepts them (bytes handed to write(), as in `bulk`);
// download: the server writes, the client counts what it reads; echo: `window` messages of `size` bytes in
// flight, each read refills what came back. The window opens after the handshake and the warm-up.
import { cpuNsSince, fail, finish, guard, layerFor, now, parseArgs, tlsConnect, watchdog } from './common.mjs';

guard();
const o = { chunk: 65536, window: 64, size: 64, ...parseArgs() };
const layer = await layerFor(o);
const s = tlsConnect(o, layer);
s.on('error', fail);
s.setNoDelay?.(true);

/** The measured window: opened once the warm-up is done; client CPU is counted from then on. */
function measureWindow() {
  let t0 = 0;
  let cpu = null;
  return {
    get isOpen() { return cpu !== null; },
    open() { t0 = now(); cpu = process.cpuUsage(); },
    elapsed: () => now() - t0,
    cpuNs: () => cpuNsSince(cpu),
  };
}

switch (o.workload) {
  case 'upload': upload(); break;
  case 'download': download(); break;
  case 'echo': echo(); break;
  default: fail(new Error(`unknown workload ${o.workload}`));
}

function upload() {
  const chunk = Buffer.alloc(o.chunk, 0x61);
  const w = measureWindow();
  let sent = 0;
  const pump = () => {
    // Bounded: yield to the loop every 1024 writes even if the socket keeps accepting.
    for (let i = 0; i < 1024; i++) {
      const ok = s.write(chunk);
      sent += chunk.length;
      if (!w.isOpen) {
        if (sent >= o.warmupBytes) { sent = 0; w.open(); }
      } else if (w.elapsed() >= o.seconds) {
        const t = w.elapsed();
        finish({ workload: 'upload', arm: o.arm, bytes: sent, seconds: t, value: sent / t, unit: 'B/s', cpuNsPerUnit: w.cpuNs() / (sent / 65536), protocol: s.getProtocol?.() });
        s.destroy();
        return;
      }
      if (!ok) return;
    }
    setImmediate(pump);
  };
  s.on('drain', pump);
  s.once('secureConnect', pump);
  watchdog(5000, () => sent);
}

function download() {
  const w = measureWindow();
  let got = 0;
  s.on('data', (buf) => {
    got += buf.length;
    if (!w.isOpen) {
      if (got >= o.warmupBytes) { got = 0; w.open(); }
    } else if (w.elapsed() >= o.seconds) {
      const t = w.elapsed();
      finish({ workload: 'download', arm: o.arm, bytes: got, seconds: t, value: got / t, unit: 'B/s', cpuNsPerUnit: w.cpuNs() / (got / 65536), protocol: s.getProtocol?.() });
      s.destroy();
    }
  });
  watchdog(5000, () => got);
}

function echo() {
  const msg = Buffer.alloc(o.size, 0x61);
  const w = measureWindow();
  let recvd = 0;
  let msgs = 0;
  let base = 0;
  let start = 0;
  const send = (n) => {
    for (let i = 0; i < n; i++) s.write(msg);
  };
  s.on('data', (buf) => {
    const before = Math.floor(recvd / o.size);
    recvd += buf.length;
    const n = Math.floor(recvd / o.size) - before;
    msgs += n;
    if (!w.isOpen) {
      if (now() - start >= o.warmupSeconds) { base = msgs; w.open(); }
    } else if (w.elapsed() >= o.seconds) {
      const t = w.elapsed();
      const m = msgs - base;
      finish({ workload: 'echo', arm: o.arm, window: o.window, messages: m, seconds: t, value: m / t, unit: 'msg/s', cpuNsPerUnit: w.cpuNs() / Math.max(1, m), protocol: s.getProtocol?.() });
      s.destroy();
      return;
    }
    if (n > 0) send(n);
  });
  s.once('secureConnect', () => {
    start = now();
    send(o.window);
  });
  watchdog(5000, () => msgs);
}
