#!/usr/bin/env node
// Benchmark driver (docs/performance.md#method). Every trial runs a fresh server and a fresh client process,
// pinned to different CPUs, on a fresh 127.x.y.z address; arms are interleaved inside each
// repetition so slow drift of the machine hits every arm alike. Ratios are taken per repetition.
//
//   node bench/run.mjs [--quick] [--reps N] [--seconds S] [--scenarios a,b] [--arms a,b]
//                      [--server c|net] [--echo-refill each|window] [--no-micro] [--no-real] [--server-cpu N] [--client-cpu N]
//                      [--baseline DIR]   (DIR: another built checkout; adds its Duplex and raw arms to every scenario,
//                                          and its sockguard arms to the real workloads)
//                      [--runtime node|bun|deno]   (runs the JS client arms in that runtime: bun and deno from
//                      node_modules; its node:net is then the baseline; results go to bench/out/ only)
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderMarkdown, renderSvg } from './report.mjs';
import { createPeers } from './real/peers.mjs';
import { REAL_SCENARIOS } from './real/scenarios.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const binDir = join(here, '.bin');
const outDir = join(here, 'out');
const resultsDir = join(here, 'results');

// ---- options -------------------------------------------------------------------------------

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const quick = flag('--quick');
const config = {
  mode: quick ? 'quick' : 'full',
  reps: Number(opt('--reps', quick ? 2 : 5)),
  seconds: Number(opt('--seconds', quick ? 0.5 : 3)),
  microTimeMs: quick ? 250 : 1000,
  server: opt('--server', 'c'),
  // Echo refill discipline, see bench/c/client.c: 'each' (sliding window) or 'window' (lock-step).
  refill: opt('--echo-refill', 'each'),
  serverCpu: opt('--server-cpu', '0'),
  clientCpu: opt('--client-cpu', '1'),
  micro: !flag('--no-micro'),
  // Real clients against real servers (bench/real/); a quick run takes the scenarios marked `quick`.
  real: !flag('--no-real'),
  // The bench's warm-ups (docs/performance.md#method); the same in quick and full runs.
  warmupBytes: 64 * 1024 * 1024,
  warmupSeconds: 0.5,
  warmupRtts: 2000,
};
if (!['c', 'net'].includes(config.server)) die('--server must be c or net');
// The runtime that runs the JS client arms (the driver and the servers stay on Node).
const runtime = opt('--runtime', 'node');
const runtimeCmd = {
  node: [process.execPath],
  bun: [join(here, '..', 'node_modules', '.bin', 'bun')],
  deno: [join(here, '..', 'node_modules', '@deno', 'linux-x64-glibc', 'deno'), 'run', '-A', '--node-modules-dir=manual'],
}[runtime] ?? die('--runtime must be node, bun or deno');
if (!['each', 'window'].includes(config.refill)) die('--echo-refill must be each or window');

// ---- arms and scenarios -----------------------------------------------------------------------

const ARMS = {
  net: { label: 'net', cmd: () => [...runtimeCmd, join(here, 'clients/net.mjs')] },
  'net+cork': { label: 'net+cork', cmd: () => [...runtimeCmd, join(here, 'clients/net.mjs')], extra: { cork: 1 } },
  sockguard: { label: 'sockguard Duplex', cmd: () => [...runtimeCmd, join(here, 'clients/sockguard.mjs')], needsDist: true },
  'sockguard-raw': { label: 'sockguard raw', cmd: () => [...runtimeCmd, join(here, 'clients/sockguard-raw.mjs')], needsDist: true },
  c: { label: 'C (limit)', cmd: () => [join(binDir, 'client')] },
  // Real workloads only (bench/real/): Node's TLS running over the sockguard Duplex as its transport.
  'sockguard-js': { label: 'Node TLS over sockguard Duplex', needsDist: true },
};

// A built checkout of another version (for example the previous release), run side by side with this one so a
// change is measured against its base in one run, on the same machine state.
const baseline = opt('--baseline', null);
if (baseline) {
  const dist = resolve(baseline, 'dist', 'index.js');
  if (!existsSync(dist)) die(`--baseline: ${dist} not found (build that checkout first)`);
  ARMS['sockguard@base'] = { ...ARMS.sockguard, label: 'sockguard Duplex (baseline)', extra: { dist } };
  ARMS['sockguard-raw@base'] = { ...ARMS['sockguard-raw'], label: 'sockguard raw (baseline)', extra: { dist } };
  ARMS['sockguard-js@base'] = { ...ARMS['sockguard-js'], label: 'Node TLS over sockguard Duplex (baseline)', extra: { dist } };
}

// `net+cork` only where corking changes what `net` does (batches of small writes).
const SCENARIOS = [
  {
    id: 'echo-1', title: 'pipelined echo 64 B, 1 connection', server: 'echo',
    args: { conns: 1, window: 64, size: 64, refill: config.refill }, arms: ['net', 'net+cork', 'sockguard', 'sockguard-raw', 'c'],
    metrics: [
      { key: 'value', label: 'msg/s', better: 'higher', format: 'rate' },
      { key: 'cpuNsPerUnit', label: 'client CPU per message', better: 'lower', format: 'ns' },
    ],
    targets: [{ vs: 'net', op: '>=', x: 3 }, { vs: 'net+cork', op: '>=', x: 1.3 }],
  },
  {
    id: 'echo-100', title: 'pipelined echo 64 B, 100 connections', server: 'echo',
    args: { conns: 100, window: 64, size: 64, refill: config.refill }, arms: ['net', 'net+cork', 'sockguard', 'sockguard-raw', 'c'],
    metrics: [
      { key: 'value', label: 'msg/s', better: 'higher', format: 'rate' },
      { key: 'cpuNsPerUnit', label: 'client CPU per message', better: 'lower', format: 'ns' },
    ],
    targets: [{ vs: 'net', op: '>=', x: 10 }, { vs: 'net+cork', op: '>=', x: 1.3 }],
  },
  {
    id: 'bulk', title: 'bulk, 64 KiB writes', server: 'sink',
    args: { chunk: 65536 }, arms: ['net', 'sockguard', 'sockguard-raw', 'c'],
    metrics: [
      { key: 'value', label: 'B/s', better: 'higher', format: 'bytes' },
      { key: 'cpuNsPerUnit', label: 'client CPU per 64 KiB', better: 'lower', format: 'ns' },
    ],
    targets: [{ vs: 'net', op: '>=', x: 1.3 }, { vs: 'c', op: '>=', x: 0.85 }],
  },
  {
    id: 'pingpong', title: 'ping-pong 64 B', server: 'echo',
    args: { size: 64 }, arms: ['net', 'sockguard', 'sockguard-raw', 'c'],
    metrics: [
      { key: 'p50', label: 'RTT p50 µs', better: 'lower', format: 'us' },
      { key: 'p99', label: 'RTT p99 µs', better: 'lower', format: 'us' },
      { key: 'cpuNsPerUnit', label: 'client CPU per round trip', better: 'lower', format: 'ns' },
    ],
    targets: [{ metric: 'p50', vs: 'net', op: '<=', x: 1.0 }],
  },
  {
    id: 'connect-1', title: 'connect + close, 1 in flight', server: 'echo', policy: 'operator',
    args: { inflight: 1 }, arms: ['net', 'sockguard', 'sockguard-raw', 'c'],
    metrics: [
      { key: 'value', label: 'conn/s', better: 'higher', format: 'rate' },
      { key: 'cpuNsPerUnit', label: 'client CPU per connection', better: 'lower', format: 'ns' },
    ],
    targets: [{ vs: 'net', op: '>=', x: 0.9 }],
  },
  {
    id: 'connect-100', title: 'connect + close, 100 in flight', server: 'echo', policy: 'operator',
    args: { inflight: 100 }, arms: ['net', 'sockguard', 'sockguard-raw', 'c'],
    metrics: [
      { key: 'value', label: 'conn/s', better: 'higher', format: 'rate' },
      { key: 'cpuNsPerUnit', label: 'client CPU per connection', better: 'lower', format: 'ns' },
    ],
    targets: [{ vs: 'net', op: '>=', x: 0.9 }],
  },
  {
    id: 'idle', title: 'idle connected sockets (10,000)', server: 'echo', idle: true,
    args: { count: 10000, inflight: 200 }, arms: ['net', 'sockguard', 'sockguard-raw', 'c'],
    metrics: [
      { key: 'rssPerSocket', label: 'RSS B/socket', better: 'lower', format: 'int' },
      { key: 'heapPerSocket', label: 'JS heap B/socket', better: 'lower', format: 'int' },
    ],
    targets: [
      { arm: 'sockguard-raw', metric: 'rssPerSocket', abs: '<=', x: 1024 },
      { arm: 'sockguard-raw', metric: 'heapPerSocket', abs: '<=', x: 300 },
      { arm: 'sockguard', metric: 'rssPerSocket', vs: 'net', op: '<=', x: 1.0 },
      { arm: 'sockguard', metric: 'heapPerSocket', vs: 'net', op: '<=', x: 1.0 },
    ],
  },
];

const onlyScenarios = opt('--scenarios', null)?.split(',');
const onlyArms = opt('--arms', null)?.split(',');
const realScenarios = config.real
  ? REAL_SCENARIOS.map((s) => ({ ...s, real: true })).filter((s) => (onlyScenarios ? onlyScenarios.includes(s.id) : !quick || s.quick))
  : [];
const scenarios = [...SCENARIOS.filter((s) => !onlyScenarios || onlyScenarios.includes(s.id)), ...realScenarios];
if (onlyScenarios) {
  const unknown = onlyScenarios.filter((id) => !scenarios.some((s) => s.id === id));
  if (unknown.length) die(`unknown scenario(s) ${unknown.join(', ')}${config.real ? '' : ' (real workloads are off: --no-real)'}`);
}
if (baseline) {
  for (const s of scenarios.filter((x) => !x.real)) {
    const i = s.arms.indexOf('sockguard-raw');
    if (i >= 0) s.arms.splice(i + 1, 0, 'sockguard@base', 'sockguard-raw@base');
  }
  for (const s of scenarios.filter((x) => x.real)) {
    s.arms = s.arms.flatMap((a) => (ARMS[`${a}@base`] ? [a, `${a}@base`] : [a]));
  }
}

// ---- process hygiene: every child is stopped on exit, failure or Ctrl-C ------------------------

const children = new Set();
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
function killAll(signal = 'SIGKILL') {
  for (const c of children) {
    try { c.kill(signal); } catch { /* already gone */ }
  }
}
const peers = createPeers({ track, serverCpu: config.serverCpu, log: (m) => process.stderr.write(m) });
process.on('exit', () => {
  killAll();
  peers.cleanup();
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.stderr.write(`\ninterrupted (${sig}); all bench processes stopped\n`);
    process.exit(130);
  });
}

function die(msg) {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(1);
}

// ---- build -------------------------------------------------------------------------------------

function build() {
  mkdirSync(binDir, { recursive: true });
  for (const name of ['server', 'client']) {
    const src = join(here, 'c', `${name}.c`);
    const bin = join(binDir, name);
    if (existsSync(bin) && statSync(bin).mtimeMs > statSync(src).mtimeMs) continue;
    execFileSync('gcc', ['-O2', '-Wall', '-o', bin, src], { stdio: 'inherit' });
  }
}

/** Whether the sockguard arms can run: the build exists and exposes what they drive. */
function probeSockguard() {
  const entry = join(root, 'dist', 'index.js');
  if (!existsSync(entry)) return { ok: false, why: 'dist/index.js not built (`npm run build`)' };
  try {
    execFileSync(process.execPath, ['--input-type=module', '-e',
      `const m = await import(${JSON.stringify('file://' + entry)});
       const l = new m.SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
       if (typeof l.connect !== 'function' || typeof l.connectRaw !== 'function') throw new Error('SocketLayer lacks connect/connectRaw');
       await l.close?.();`], { stdio: 'pipe', timeout: 20000 });
    return { ok: true };
  } catch (err) {
    const msg = String(err.stderr || err.message).trim().split('\n').filter(Boolean).slice(-1)[0];
    return { ok: false, why: `sockguard build does not load: ${msg}` };
  }
}

// ---- addresses ---------------------------------------------------------------------------------

// A fresh loopback address per trial: no TIME_WAIT or listen-queue state carries over between
// trials or between runs (the second octet is random per run).
const addrBase = 16 + Math.floor(Math.random() * 200);
let addrSeq = 0;
function freshAddress() {
  const i = addrSeq++;
  return `127.${addrBase}.${Math.floor(i / 254) % 256}.${(i % 254) + 1}`;
}

// ---- processes ---------------------------------------------------------------------------------

function taskset(cpu, cmd) {
  return ['taskset', ['-c', String(cpu), ...cmd]];
}

function startServer(mode, host) {
  const cmd = config.server === 'c'
    ? [join(binDir, 'server'), mode, host, '0']
    : [process.execPath, join(here, 'servers/net-server.mjs'), mode, host, '0'];
  return startListening(cmd);
}

/** Starts a pinned server that prints `LISTENING <port>` once it accepts connections. */
function startListening(cmd) {
  const [file, args] = taskset(config.serverCpu, cmd);
  const child = track(spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start: ${err}`));
    }, 5000);
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      const m = /LISTENING (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}): ${err}`));
    });
  });
}

function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 2000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Runs one client to completion; resolves with its JSON line (or { error }). */
function runClient(cmd, timeoutMs) {
  const [file, args] = taskset(config.clientCpu, cmd);
  const child = track(spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  return new Promise((resolve) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').filter(Boolean).pop();
      try {
        resolve(JSON.parse(line));
      } catch {
        resolve({ error: `client exited (${signal ?? code}) without a result: ${(err || out).trim().slice(-400)}` });
      }
    });
  });
}

function clientCommand(arm, scenario, host, port) {
  const a = ARMS[arm];
  const params = {
    host, port,
    seconds: config.seconds,
    warmupBytes: config.warmupBytes,
    warmupSeconds: config.warmupSeconds,
    warmupRtts: config.warmupRtts,
    ...scenario.args,
    ...a.extra,
  };
  if (a.needsDist && scenario.policy === 'operator' && operatorPolicy) params.policy = operatorPolicy;
  const kv = Object.entries(params).map(([k, v]) => `${k}=${v}`);
  const cmd = a.cmd();
  if (cmd[0] === process.execPath && scenario.idle) cmd.splice(1, 0, '--expose-gc');
  const scen = scenario.idle ? 'idle' : scenario.id.replace(/-\d+$/, '');
  return [...cmd, scen, ...kv];
}

// ---- a quiet machine -----------------------------------------------------------------------------

function cpuTimes() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = line[3] + (line[4] ?? 0);
  return { idle, total: line.reduce((a, b) => a + b, 0) };
}

/**
 * Other work on the machine (builds, test runs) is the main source of noise: wait, bounded, until
 * the CPUs are mostly idle before starting a trial, and record how busy they were.
 */
async function waitQuiet() {
  if (!existsSync('/proc/stat')) return null;
  const deadline = Date.now() + (quick ? 300 : 5000);
  let busy = 1;
  do {
    const a = cpuTimes();
    await new Promise((r) => setTimeout(r, quick ? 50 : 100));
    const b = cpuTimes();
    busy = 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
    if (busy < 0.15) break;
  } while (Date.now() < deadline);
  return Math.round(busy * 100) / 100;
}

async function trial(arm, scenario) {
  const busyBefore = await waitQuiet();
  const host = freshAddress();
  let server;
  try {
    server = await startServer(scenario.server, host);
  } catch (err) {
    return { error: String(err.message) };
  }
  try {
    const cmd = clientCommand(arm, scenario, host, server.port);
    const budget = (config.seconds + config.warmupSeconds) * 1000 + 30000;
    const r = await runClient(cmd, budget);
    return { ...r, host, busyBefore };
  } finally {
    await stopProcess(server.child);
  }
}

// ---- real workloads (bench/real/) --------------------------------------------------------------

/** A fresh server for one trial (tls, http) or for one scenario's repetition, shared by its arms (redis, postgres). */
async function startPeer(s) {
  const host = freshAddress();
  switch (s.peer) {
    case 'tls': {
      const c = peers.certificate();
      const r = await startListening([process.execPath, join(here, 'real', 'tls-server.mjs'), s.serverMode, host, '0', c.key, c.cert]);
      return { ...r, host };
    }
    case 'http': {
      const r = await startListening([process.execPath, join(here, 'real', 'http-server.mjs'), host, '0']);
      return { ...r, host };
    }
    case 'redis': return peers.startRedis(host);
    case 'postgres': return peers.startPostgres(host);
    default: throw new Error(`unknown peer ${s.peer}`);
  }
}
const sharedPeer = (s) => s.peer === 'redis' || s.peer === 'postgres';

async function realTrial(arm, s, shared) {
  const busyBefore = await waitQuiet();
  let server = shared;
  if (!server) {
    try {
      server = await startPeer(s);
    } catch (err) {
      return { error: String(err.message) };
    }
  }
  try {
    // A baseline arm runs the same client with the other checkout's build (dist=).
    const params = {
      arm: arm.replace(/@base$/, ''), ...(ARMS[arm].extra?.dist ? { dist: ARMS[arm].extra.dist } : {}),
      host: server.host, port: server.port,
      seconds: config.seconds, warmupSeconds: config.warmupSeconds, warmupBytes: config.warmupBytes,
      ...s.args,
    };
    const cmd = [process.execPath, join(here, 'real', s.client), s.workload, ...Object.entries(params).map(([k, v]) => `${k}=${v}`)];
    // Batches of fixed work run to the end of the window, so a trial can overrun it by one batch.
    const r = await runClient(cmd, (config.seconds + config.warmupSeconds) * 1000 + 60000);
    return { ...r, host: server.host, busyBefore };
  } finally {
    if (!shared) await stopProcess(server.child);
  }
}

/** Whether this build's layer.connect() does TLS itself; the native TLS arm is skipped (with the reason) if not. */
const tlsProbes = new Map();
function probeNativeTls(arm) {
  const dist = ARMS[arm].extra?.dist ?? '';
  if (tlsProbes.has(dist)) return tlsProbes.get(dist);
  const c = peers.certificate();
  let r;
  try {
    const out = execFileSync(process.execPath, [join(here, 'real', 'probe-tls.mjs'), freshAddress(), c.key, c.cert, ...(dist ? [dist] : [])],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
    r = JSON.parse(out.toString().trim().split('\n').pop());
  } catch (err) {
    r = { ok: false, why: `TLS probe failed: ${String(err.stderr || err.message).trim().split('\n').slice(-1)[0]}` };
  }
  tlsProbes.set(dist, r);
  return r;
}

// ---- operator policy for the connect-rate arms -------------------------------------------------

// docs/performance.md#targets measures connect rate with the policy on and an operator rule allowing the IP
// literal. When the policy engine supports operator files, the bench writes one allowing exactly
// the loopback range it uses; until then the sockguard arms run the 'development' policy.
let operatorPolicy = null;
let policyNote = "sockguard arms use policy 'development'";
function prepareOperatorPolicy() {
  const example = join(here, 'policies', 'loopback-bench.json');
  if (!existsSync(example)) return;
  operatorPolicy = example;
  policyNote = `connect-rate sockguard arms use the operator policy bench/policies/loopback-bench.json (allows 127.0.0.0/8); other scenarios 'development'`;
}

// ---- micro-benchmarks --------------------------------------------------------------------------

async function runMicro(haveSockguard) {
  const dir = join(here, 'micro');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.bench.mjs')).sort() : [];
  const results = [];
  for (const f of files) {
    process.stderr.write(`micro ${f} ... `);
    const host = freshAddress();
    let server;
    try {
      server = await startServer('sink', host);
      const [file, args] = taskset(config.clientCpu, [process.execPath, '--expose-gc', join(dir, f)]);
      const child = track(spawn(file, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          SG_BENCH_HOST: host,
          SG_BENCH_PORT: String(server.port),
          SG_BENCH_TIME_MS: String(config.microTimeMs),
          SG_BENCH_JSON: '1',
          SG_BENCH_SOCKGUARD: haveSockguard ? '1' : '0',
        },
      }));
      const { out, err, code } = await new Promise((resolve) => {
        let out = '';
        let err = '';
        const t = setTimeout(() => child.kill('SIGKILL'), 120000);
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', (d) => { err += d; });
        child.once('exit', (code, sig) => { clearTimeout(t); resolve({ out, err, code: sig ?? code }); });
      });
      const line = out.trim().split('\n').filter(Boolean).pop() ?? '';
      let parsed = null;
      try { parsed = JSON.parse(line); } catch { /* not our JSON contract */ }
      if (parsed && Array.isArray(parsed.results)) results.push({ file: f, ...parsed });
      else results.push({ file: f, error: code ? `exit ${code}: ${err.trim().slice(-300)}` : null, text: out.trim().slice(-3000) });
      process.stderr.write(code ? `failed (${code})\n` : 'done\n');
    } catch (err) {
      results.push({ file: f, error: String(err.message) });
      process.stderr.write('failed\n');
    } finally {
      if (server) await stopProcess(server.child);
    }
  }
  return results;
}

// ---- environment -------------------------------------------------------------------------------

function environment() {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1].trim();
  } catch { /* not Linux */ }
  const sh = (cmd, args) => {
    try { return execFileSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim(); } catch { return null; }
  };
  const commit = sh('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = sh('git', ['status', '--porcelain', '--untracked-files=no']);
  return {
    date: new Date().toISOString(),
    cpu,
    cpus: cpus().length,
    kernel: release(),
    node: process.version,
    runtime: runtime === 'node' ? null : `${runtime} ${execFileSync(runtimeCmd[0], ['--version']).toString().split('\n')[0].replace(/^\D+|\s*\(.*$/g, '').trim()}`,
    gcc: sh('gcc', ['-dumpfullversion']),
    commit: commit ? commit + (dirty ? ' (with uncommitted changes)' : '') : null,
  };
}

// ---- main --------------------------------------------------------------------------------------

async function main() {
  const t0 = Date.now();
  build();
  prepareOperatorPolicy();
  const sg = probeSockguard();
  if (!sg.ok) process.stderr.write(`bench: sockguard arms skipped: ${sg.why}\n`);
  const env = environment();
  // skipped[scenario] = { why } for a whole scenario, { arms: { arm: why } } for single arms; shown in the report.
  const skipped = {};
  for (const s of scenarios.filter((x) => x.real)) {
    const peer = peers.check(s.peer);
    if (!peer.ok) {
      skipped[s.id] = { why: peer.why };
      process.stderr.write(`bench: ${s.id} skipped: ${peer.why}\n`);
      continue;
    }
    const arms = {};
    if (!sg.ok) for (const a of s.arms.filter((x) => ARMS[x].needsDist)) arms[a] = sg.why;
    else if (s.peer === 'tls') {
      for (const a of s.arms.filter((x) => /^sockguard(@base)?$/.test(x) && (!onlyArms || onlyArms.includes(x)))) {
        const t = probeNativeTls(a);
        if (!t.ok) arms[a] = t.why;
      }
    }
    if (Object.keys(arms).length) {
      skipped[s.id] = { arms };
      for (const [a, why] of Object.entries(arms)) process.stderr.write(`bench: ${s.id} arm ${a} skipped: ${why}\n`);
    }
  }
  const armsFor = (s) => (skipped[s.id]?.why ? [] : s.arms.filter((a) => (!onlyArms || onlyArms.includes(a))
    && (sg.ok || !ARMS[a].needsDist) && !skipped[s.id]?.arms?.[a]));

  // results[scenario][arm] = one entry per repetition
  const results = {};
  for (const s of scenarios) {
    results[s.id] = {};
    for (const a of armsFor(s)) results[s.id][a] = [];
  }
  const show = (rep, s, a, r) => {
    const shown = r.error ? `ERROR ${r.error.split('\n')[0]}` : s.metrics.map((m) => `${m.key}=${fmtNum(r[m.key])}`).join(' ');
    process.stderr.write(`rep ${rep + 1}/${config.reps}  ${s.id.padEnd(12)} ${a.padEnd(14)} ${shown}\n`);
  };
  for (let rep = 0; rep < config.reps; rep++) {
    for (const s of scenarios) {
      const arms = armsFor(s);
      if (!arms.length) continue;
      if (!s.real) {
        for (const a of arms) {
          const r = await trial(a, s);
          results[s.id][a].push(r);
          show(rep, s, a, r);
        }
        continue;
      }
      let shared = null;
      if (sharedPeer(s)) {
        try {
          shared = await startPeer(s);
        } catch (err) {
          for (const a of arms) {
            const r = { error: `${s.peer} did not start: ${err.message}` };
            results[s.id][a].push(r);
            show(rep, s, a, r);
          }
          continue;
        }
      }
      try {
        for (const a of arms) {
          const r = await realTrial(a, s, shared);
          results[s.id][a].push(r);
          show(rep, s, a, r);
        }
      } finally {
        if (shared) await stopProcess(shared.child);
      }
    }
  }
  const micro = config.micro ? await runMicro(sg.ok) : [];

  const run = {
    env,
    config: { ...config, policy: policyNote },
    sockguard: sg,
    arms: Object.fromEntries(Object.entries(ARMS).map(([k, v]) => [k, v.label])),
    scenarios: scenarios.map(({ id, title, server, args, metrics, targets, policy, real, peer, workload, arms, armLabels }) =>
      ({ id, title, server, args, metrics, targets, policy, real, peer, workload, ...(real ? { arms, armLabels } : {}) })),
    results,
    skipped,
    micro,
    elapsedSeconds: (Date.now() - t0) / 1000,
  };
  mkdirSync(outDir, { recursive: true });
  mkdirSync(resultsDir, { recursive: true });
  const stamp = env.date.replace(/[:.]/g, '-');
  writeFileSync(join(outDir, `run-${config.mode}-${stamp}.json`), JSON.stringify(run, null, 2));
  writeFileSync(join(outDir, `latest-${config.mode}${runtime === 'node' ? '' : '-' + runtime}.json`), JSON.stringify(run, null, 2));
  const md = renderMarkdown(run);
  // Only a complete full run replaces the published results; a quick or filtered one stays in bench/out/.
  const complete = !quick && !onlyScenarios && !onlyArms && !baseline && config.real && sg.ok && runtime === 'node';
  if (complete) {
    writeFileSync(join(resultsDir, 'latest.md'), md);
    writeFileSync(join(resultsDir, 'latest.svg'), renderSvg(run));
  }
  process.stdout.write(md);
  process.stderr.write(`bench: done in ${run.elapsedSeconds.toFixed(1)} s; ${complete ? 'bench/results/latest.md, latest.svg, ' : `(${quick ? 'quick' : 'partial'} run: bench/results/ untouched) `}bench/out/\n`);
}

function fmtNum(v) {
  if (typeof v !== 'number') return String(v);
  return Math.abs(v) >= 1000 ? v.toExponential(3) : v.toFixed(2);
}

main().catch((err) => {
  killAll();
  die(err.stack ?? String(err));
});
