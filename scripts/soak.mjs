#!/usr/bin/env node
// Soak: many short connections through one layer, against a loopback server in a separate process that counts
// every byte it receives. Each cycle connects, writes a small payload and waits for the server to end the
// connection after reading it; the client closes on 'end'. The client's descriptor count and RSS are sampled
// every SOAK_SAMPLE cycles. At the end the run is judged:
//   - descriptors flat: back to the baseline (taken before the first socket) within ±2;
//   - RSS flat: growth between the second sample and the last below SOAK_RSS_GROWTH (10 %);
//   - billing exact: layer.usage().bytesSent equals the bytes the server counted, to the byte.
// Exits non-zero if any of these fails, if a socket errored, or if the time budget ran out first.
//
//   npm run soak                                  1,000,000 cycles, 100 in flight, at most 290 s
//   SOAK_CYCLES=200000 SOAK_CONCURRENCY=50 npm run soak
//
// Ephemeral ports: the server ends first, so TIME_WAIT sits on the server's side of each connection and the
// client's ports are free again at once; the cycles are also spread over several loopback destinations
// (127.0.0.1-4), each with its own port range of 4-tuples.
//
// RSS: V8 grows the young generation in steps (1 → 8 → 16 MiB here) as the allocation rate stays high, which
// shows up as a one-off RSS step of several MiB somewhere in the first few hundred thousand cycles while the
// old generation and the JS heap in use stay flat. That step is not a leak, so the client runs with the young
// generation at its final size from the start (it re-executes itself with --min-semi-space-size) and the RSS
// samples show what is left: old-generation and native growth.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const YOUNG_GEN = '--min-semi-space-size=16';
if (!process.execArgv.includes(YOUNG_GEN)) {
  const child = spawn(process.execPath, [...process.execArgv, YOUNG_GEN, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
} else {
  await soak();
}

async function soak() {

  const env = (name, dflt) => (process.env[name] ? Number(process.env[name]) : dflt);
  const CYCLES = env('SOAK_CYCLES', 1_000_000);
  const CONCURRENCY = env('SOAK_CONCURRENCY', 100);
  const SAMPLE = env('SOAK_SAMPLE', 100_000);
  const BUDGET_MS = env('SOAK_BUDGET_S', 290) * 1000;
  const RSS_GROWTH = env('SOAK_RSS_GROWTH', 0.1);
  const PAYLOAD = Buffer.alloc(env('SOAK_PAYLOAD', 64), 0x73);
  const HOSTS = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];

  const { SocketLayer } = await import(fileURLToPath(new URL('../dist/index.js', import.meta.url)));

  function tcpTwReuse() {
    try {
      return readFileSync('/proc/sys/net/ipv4/tcp_tw_reuse', 'utf8').trim();
    } catch {
      return 'unknown';
    }
  }
  const fdCount = () => readdirSync('/proc/self/fd').length;
  const rssMiB = () => process.memoryUsage().rss / 1048576;
  const heapMiB = () => process.memoryUsage().heapUsed / 1048576;

  // The server: one listener per loopback address; it ends each connection once it has read the payload and
  // keeps counting until the connection closes, so a byte sent after the payload would still be counted.
  const serverCode = `
  const net = require('net');
  const size = ${PAYLOAD.length};
  let total = 0, conns = 0, errors = 0;
  const hosts = ${JSON.stringify(HOSTS)};
  let ready = 0;
  const ports = [];
  for (const host of hosts) {
    const srv = net.createServer((c) => {
      conns++;
      let n = 0;
      c.on('data', (d) => {
        n += d.length;
        total += d.length;
        if (n >= size && !c.writableEnded) c.end();
      });
      c.on('error', () => errors++);
    });
    srv.listen({ host, port: 0, backlog: 4096 }, () => {
      ports.push({ host, port: srv.address().port });
      if (++ready === hosts.length) process.send({ ports });
    });
  }
  process.on('message', (m) => {
    if (m === 'count') process.send({ total, conns, errors });
    if (m === 'exit') process.exit(0);
  });
  `;
  const server = spawn(process.execPath, ['-e', serverCode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = (msg) =>
    new Promise((resolve) => {
      server.once('message', resolve);
      if (msg) server.send(msg);
    });
  const { ports: targets } = await ask(null);

  const layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
  const baselineFds = fdCount();
  const started = performance.now();
  const samples = [];
  let launched = 0;
  let completed = 0;
  let errors = 0;
  const errorCodes = new Map();
  let outOfTime = false;

  function sample() {
    samples.push({
      cycles: completed,
      seconds: (performance.now() - started) / 1000,
      fds: fdCount(),
      rss: rssMiB(),
      heap: heapMiB(),
      open: layer.size,
    });
    const s = samples[samples.length - 1];
    console.log(
      `${String(s.cycles).padStart(9)} ${s.seconds.toFixed(1).padStart(8)} ${String(s.fds).padStart(5)} ${s.rss.toFixed(1).padStart(9)} ${s.heap.toFixed(1).padStart(10)} ${String(s.open).padStart(6)}`,
    );
  }

  console.log(`soak: ${CYCLES} cycles, ${CONCURRENCY} in flight, ${PAYLOAD.length} B each, ${targets.length} destinations; net.ipv4.tcp_tw_reuse=${tcpTwReuse()}`);
  // open: sockets of the layer still open at the sample (those already closed but not yet reported are not).
  console.log(`   cycles  seconds   fds  rss(MiB)  heap(MiB)   open`);
  samples.push({ cycles: 0, seconds: 0, fds: baselineFds, rss: rssMiB(), heap: heapMiB(), open: 0 });
  console.log(
    `${'0'.padStart(9)} ${'0.0'.padStart(8)} ${String(baselineFds).padStart(5)} ${rssMiB().toFixed(1).padStart(9)} ${heapMiB().toFixed(1).padStart(10)} ${'0'.padStart(6)}`,
  );

  const live = new Set();
  // The budget is also enforced by a timer: if connections stopped completing altogether, the run still ends,
  // and the sockets still in flight at that point are reported as stuck.
  let stuck = 0;
  const watchdog = setInterval(() => {
    if (performance.now() - started <= BUDGET_MS + 5000) return;
    outOfTime = true;
    stuck = live.size;
    for (const raw of [...live]) raw.destroy();
  }, 1000);
  watchdog.unref();

  await new Promise((resolve) => {
    let inFlight = 0;
    const next = () => {
      if (launched >= CYCLES || outOfTime) {
        if (inFlight === 0) resolve();
        return;
      }
      const t = targets[launched % targets.length];
      launched++;
      inFlight++;
      const raw = layer.connectRaw(
        { host: t.host, port: t.port },
        {
          onconnect(err) {
            if (err) return;
            raw.write(PAYLOAD);
          },
          onend() {
            raw.destroy();
          },
          onclose(err) {
            live.delete(raw);
            if (err) {
              errors++;
              errorCodes.set(err.code, (errorCodes.get(err.code) ?? 0) + 1);
            }
            inFlight--;
            completed++;
            if (completed % SAMPLE === 0) sample();
            if ((completed & 1023) === 0 && performance.now() - started > BUDGET_MS) outOfTime = true;
            next();
          },
        },
      );
      live.add(raw);
    };
    for (let i = 0; i < CONCURRENCY; i++) next();
  });
  clearInterval(watchdog);

  const seconds = (performance.now() - started) / 1000;
  const usage = layer.usage();
  await layer.close();
  const counted = await ask('count');
  server.send('exit');
  // Descriptors are judged once everything is closed: sockets, layer, and the server's IPC channel excepted.
  const endFds = fdCount();
  if (samples[samples.length - 1].cycles !== completed) sample();

  const rate = completed / seconds;
  const ref = samples.find((s) => s.cycles >= 2 * SAMPLE) ?? samples[1] ?? samples[0];
  const last = samples[samples.length - 1];
  const rssGrowth = (last.rss - ref.rss) / ref.rss;
  const fdsFlat = Math.abs(endFds - baselineFds) <= 2;
  const rssFlat = rssGrowth < RSS_GROWTH;
  const exact = usage.bytesSent === counted.total;
  const complete = completed === CYCLES;

  console.log('');
  console.log(`cycles:   ${completed} of ${CYCLES} in ${seconds.toFixed(1)} s (${Math.round(rate)} cycles/s)${complete ? '' : ' — time budget ran out'}`);
  if (stuck > 0) console.log(`stuck:    ${stuck} connections never completed and were destroyed at the deadline`);
  console.log(`errors:   ${errors}${errors ? ' ' + JSON.stringify(Object.fromEntries(errorCodes)) : ''}; server errors ${counted.errors}`);
  console.log(`fds:      baseline ${baselineFds}, end ${endFds} → ${fdsFlat ? 'flat' : 'NOT flat'} (±2)`);
  console.log(
    `rss:      ${ref.rss.toFixed(1)} MiB at ${ref.cycles} cycles, ${last.rss.toFixed(1)} MiB at ${last.cycles} → ${(rssGrowth * 100).toFixed(1)} % ${rssFlat ? 'flat' : 'NOT flat'} (< ${RSS_GROWTH * 100} %)`,
  );
  console.log(
    `billing:  usage().bytesSent ${usage.bytesSent}, server counted ${counted.total} (${counted.conns} connections) → ${exact ? 'exact' : 'MISMATCH'}`,
  );
  console.log(`ledger:   connects ${usage.connects}, socketsCreated ${usage.socketsCreated}, socketsOpen ${usage.socketsOpen}`);

  const ok = complete && stuck === 0 && errors === 0 && counted.errors === 0 && fdsFlat && rssFlat && exact;
  console.log(ok ? 'soak: PASS' : 'soak: FAIL');
  process.exit(ok ? 0 : 1);
}
