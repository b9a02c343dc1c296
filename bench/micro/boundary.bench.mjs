// The JS→native boundary on a connected socket: the cost of one 64 B write() (including its share
// of the per-turn native flush) and of reading the byte counter. `net` beside it for scale.
// Needs a sink server: the driver passes SG_BENCH_HOST/SG_BENCH_PORT; standalone, start one with
// `bench/.bin/server sink 127.0.0.1 0` and set them by hand.
import net from 'node:net';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { env, report, runTasks, turn } from './harness.mjs';

if (!env.port) throw new Error('set SG_BENCH_HOST and SG_BENCH_PORT to a sink server');
const WRITES = 256; // 16 KiB per turn: below any sane high-water mark, so write() never refuses
const READS = 1000;
const msg = Buffer.alloc(64, 0x61);
let sink = 0;

const tasks = [
  {
    name: 'empty loop turn (baseline of the write rows)',
    inner: WRITES,
    fn: turn,
  },
];

function writeTask(name, s) {
  return {
    name,
    inner: WRITES,
    note: `${WRITES} writes + 1 loop turn, per write`,
    fn: async () => {
      for (let i = 0; i < WRITES; i++) s.write(msg);
      await turn();
    },
  };
}
function readTask(name, s) {
  return {
    name,
    inner: READS,
    fn: () => {
      for (let i = 0; i < READS; i++) sink += s.bytesWritten;
    },
  };
}

const netSocket = await new Promise((resolve, reject) => {
  const s = net.connect({ host: env.host, port: env.port, noDelay: true }, () => resolve(s));
  s.on('error', reject);
});
tasks.push(writeTask('net socket.write(64 B)', netSocket), readTask('net socket.bytesWritten', netSocket));

const dist = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
const layerSockets = [];
if (process.env.SG_BENCH_SOCKGUARD !== '0' && existsSync(dist)) {
  const { SocketLayer } = await import(pathToFileURL(dist).href);
  process.removeAllListeners('warning');
  const layer = new SocketLayer({ appId: 'bench', policy: 'development', idleTimeoutMs: 0 });
  const raw = await new Promise((resolve, reject) => {
    const r = layer.connectRaw({ host: env.host, port: env.port }, {
      onconnect: (err) => (err ? reject(err) : resolve(r)),
      ondata() {}, onend() {}, ondrain() {}, onclose() {},
    });
  });
  const duplex = await new Promise((resolve, reject) => {
    const s = layer.connect({ host: env.host, port: env.port }, () => resolve(s));
    s.on('error', reject);
  });
  layerSockets.push(raw, duplex);
  tasks.push(
    writeTask('sockguard raw write(64 B)', raw),
    readTask('sockguard raw bytesWritten', raw),
    writeTask('sockguard Duplex write(64 B)', duplex),
    readTask('sockguard Duplex bytesWritten', duplex),
  );
}

const results = await runTasks(tasks);
report(results);
netSocket.destroy();
for (const s of layerSockets) s.destroy();
if (sink === -1) console.log(sink); // keeps the counter reads observable
process.exit(0);
