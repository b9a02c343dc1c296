#!/usr/bin/env node
// Per-runtime benchmark (docs/performance.md#results): bench/run.mjs once per runtime with the JS client arms
// in Node (uv backend), Node (thread backend), Bun and Deno, each against that runtime's own node:net, the same
// C server, arms interleaved within each repetition. Writes bench/results/runtimes.md.
//
//   node bench/runtimes.mjs [--reps N] [--seconds S] [--only node,node-thread,bun,deno]
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const reps = opt('--reps', '3');
const seconds = opt('--seconds', '3');
const only = opt('--only', null)?.split(',');

const RUNS = [
  { id: 'node', runtime: 'node', env: { SOCKGUARD_BACKEND: 'uv' }, label: (e) => `Node ${e.node}, uv backend` },
  { id: 'node-thread', runtime: 'node', env: { SOCKGUARD_BACKEND: 'thread' }, label: (e) => `Node ${e.node}, thread backend` },
  { id: 'bun', runtime: 'bun', env: {}, label: (e) => `Bun ${e.runtime.split(' ')[1]} (thread backend)` },
  { id: 'deno', runtime: 'deno', env: {}, label: (e) => `Deno ${e.runtime.split(' ')[1]} (thread backend)` },
].filter((r) => !only || only.includes(r.id));

const SCENARIOS = [
  { id: 'echo-1', key: 'value', kind: 'rate', target: '≥ 3×' },
  { id: 'echo-100', key: 'value', kind: 'rate', target: '≥ 10×' },
  { id: 'bulk', key: 'value', kind: 'bytes', target: '' },
  { id: 'pingpong', key: 'p50', kind: 'us', target: '≤ 1.25×' },
];
const ARMS = ['sockguard', 'sockguard-raw'];

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const fmt = (v, kind) =>
  kind === 'rate' ? (v >= 1e6 ? `${(v / 1e6).toFixed(2)} M msg/s` : `${(v / 1e3).toFixed(0)} k msg/s`)
  : kind === 'bytes' ? `${(v / 1e9).toFixed(2)} GB/s`
  : `${v.toFixed(1)} µs`;

const done = [];
for (const r of RUNS) {
  const args = [join(here, 'run.mjs'), '--runtime', r.runtime, '--scenarios', SCENARIOS.map((s) => s.id).join(','),
    '--arms', ['net', ...ARMS].join(','), '--reps', reps, '--seconds', seconds, '--no-micro'];
  process.stderr.write(`runtimes: ${r.id}\n`);
  const p = spawnSync(process.execPath, args, { env: { ...process.env, ...r.env }, stdio: ['ignore', 'ignore', 'inherit'] });
  if (p.status !== 0) throw new Error(`bench/run.mjs for ${r.id} failed (${p.status})`);
  const src = join(here, 'out', `latest-full${r.runtime === 'node' ? '' : '-' + r.runtime}.json`);
  const keep = join(here, 'out', `runtimes-${r.id}.json`);
  copyFileSync(src, keep);
  done.push({ ...r, run: JSON.parse(readFileSync(keep, 'utf8')) });
}

const lines = [];
const env = done[0]?.run.env;
lines.push('# sockguard per runtime');
lines.push('');
lines.push('`node bench/runtimes.mjs` (bench/run.mjs once per runtime). Each runtime runs the JavaScript client arms ' +
  "against its own `node:net`, same C echo/sink server (bench/c/server.c), arms interleaved within each repetition; " +
  'ratios are medians of the per-repetition ratios to that runtime\'s `net`. Targets (docs/performance.md): pipelined echo ' +
  '≥ 3× its net with 1 connection, ≥ 10× with 100; ping-pong p50 ≤ 1.25× its net.');
lines.push('');
if (env) {
  lines.push(`Date ${env.date}; CPU ${env.cpu} (${env.cpus} vCPUs); kernel ${env.kernel}; commit ${env.commit}; ` +
    `${reps} repetitions of ${seconds} s windows. Versions: ${done.map((d) => d.label(d.run.env)).join('; ')}.`);
  lines.push('');
}
lines.push('| runtime | scenario | its node:net | sockguard Duplex | × net | sockguard raw | × net | target |');
lines.push('|---|---|---|---|---|---|---|---|');
for (const d of done) {
  for (const s of SCENARIOS) {
    const res = d.run.results[s.id];
    if (!res?.net) continue;
    const title = d.run.scenarios.find((x) => x.id === s.id).title + (s.key === 'p50' ? ', RTT p50' : '');
    const ok = (e) => e && !e.error && typeof e[s.key] === 'number';
    const cells = ARMS.map((arm) => {
      const pairs = res.net.map((n, i) => [n, res[arm]?.[i]]).filter(([n, a]) => ok(n) && ok(a));
      const ratio = median(pairs.map(([n, a]) => a[s.key] / n[s.key]));
      return [fmt(median(pairs.map(([, a]) => a[s.key])), s.kind), `${ratio.toFixed(2)}×`];
    });
    const net = fmt(median(res.net.filter(ok).map((e) => e[s.key])), s.kind);
    lines.push(`| ${d.label(d.run.env)} | ${title} | ${net} | ${cells[0][0]} | ${cells[0][1]} | ${cells[1][0]} | ${cells[1][1]} | ${s.target} |`);
  }
}
lines.push('');
lines.push('The machine is shared (2 vCPUs, other work running), so absolute numbers move between runs; the ratios, ' +
  'taken within a repetition, are what the targets use. Raw JSON: bench/out/runtimes-*.json (not committed).');
writeFileSync(join(here, 'results', 'runtimes.md'), lines.join('\n') + '\n');
process.stdout.write(lines.join('\n') + '\n');
