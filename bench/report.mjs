// Turns one run (see run.mjs) into the committed markdown table and SVG chart. Pure functions of
// the run object, so a raw JSON from bench/out/ can be re-rendered: node bench/report.mjs FILE
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ARM_ORDER = ['net', 'net+cork', 'sockguard', 'sockguard-raw', 'sockguard@base', 'sockguard-raw@base', 'c'];
const COLORS = { 'net+cork': '#8c8c8c', sockguard: '#1f77b4', 'sockguard-raw': '#2ca02c', c: '#d62728' };

export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Per-repetition values of one metric for one arm (null where the trial failed). */
function values(run, sid, arm, key) {
  return (run.results[sid]?.[arm] ?? []).map((r) => (r && !r.error && Number.isFinite(r[key]) ? r[key] : null));
}

/** Per-repetition ratios arm/base (same repetition, side by side). */
function ratios(run, sid, arm, base, key) {
  const a = values(run, sid, arm, key);
  const b = values(run, sid, base, key);
  if (!b.length) return [];
  return a.map((v, i) => (v != null && b[i] != null && b[i] !== 0 ? v / b[i] : null));
}

/** One row per (scenario, metric): the unit of every table and of the chart. Real workloads have their own section. */
export function rows(run) {
  const out = [];
  for (const s of run.scenarios.filter((x) => !x.real)) {
    const arms = ARM_ORDER.filter((a) => run.results[s.id]?.[a]);
    for (const m of s.metrics) {
      const perArm = {};
      for (const a of arms) {
        const v = values(run, s.id, a, m.key);
        const rn = ratios(run, s.id, a, 'net', m.key);
        const rc = ratios(run, s.id, a, 'c', m.key);
        const rk = ratios(run, s.id, a, 'net+cork', m.key);
        const ok = v.filter((x) => x != null);
        perArm[a] = {
          values: v,
          errors: (run.results[s.id][a] ?? []).filter((r) => r?.error).map((r) => r.error),
          median: median(v),
          min: ok.length ? Math.min(...ok) : null,
          max: ok.length ? Math.max(...ok) : null,
          ratioNet: rn, ratioNetMedian: median(rn),
          ratioC: rc, ratioCMedian: median(rc),
          ratioCorkMedian: median(rk),
        };
      }
      out.push({ scenario: s, metric: m, arms, perArm });
    }
  }
  return out;
}

function fmt(v, format) {
  if (v == null || !Number.isFinite(v)) return '–';
  switch (format) {
    case 'rate':
      return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M/s` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} k/s` : `${v.toFixed(0)}/s`;
    case 'bytes':
      return `${(v / 1e9).toFixed(2)} GB/s`;
    case 'us':
      return `${v.toFixed(1)} µs`;
    case 'int':
      return `${Math.round(v)} B`;
    case 'ns':
      return v >= 1000 ? `${(v / 1000).toFixed(2)} µs` : `${v.toFixed(1)} ns`;
    default:
      return String(v);
  }
}
const fx = (r) => (r == null || !Number.isFinite(r) ? '–' : `${r.toFixed(2)}×`);
const list = (rs) => (rs.length ? rs.map(fx).join(' ') : '–');

function evalTarget(t, row, arm) {
  const p = row.perArm[arm];
  if (!p) return null;
  if (t.abs) {
    const v = p.median;
    if (v == null) return { text: '–', met: null };
    const met = t.abs === '<=' ? v <= t.x : v >= t.x;
    return { text: `${fmt(v, row.metric.format)} (≤ ${t.x} B)`, met };
  }
  const r = t.vs === 'net' ? p.ratioNetMedian : t.vs === 'c' ? p.ratioCMedian : p.ratioCorkMedian;
  if (r == null) return { text: '–', met: null };
  const met = t.op === '<=' ? r <= t.x : r >= t.x;
  return { text: `${fx(r)} ${t.vs}`, met };
}

/** The socket scenarios (echo, bulk, ping-pong, connect, idle): ratio tables, targets, per-scenario detail. */
function renderSockets(run, all, L) {
  if (!all.length) return;
  const label = (a) => run.arms[a] ?? a;
  const armsShown = ARM_ORDER.filter((a) => all.some((r) => r.perArm[a]));

  L.push('## Median ratio to `net` (per-repetition ratios, median)', '');
  L.push(`| scenario | metric | ${armsShown.filter((a) => a !== 'net').map(label).join(' | ')} |`);
  L.push(`|---|---|${armsShown.filter((a) => a !== 'net').map(() => '---:').join('|')}|`);
  for (const r of all) {
    L.push(`| ${r.scenario.title} | ${r.metric.label} | ${armsShown.filter((a) => a !== 'net').map((a) => fx(r.perArm[a]?.ratioNetMedian)).join(' | ')} |`);
  }
  L.push('', '## Median ratio to the C client (the limit)', '');
  const vsC = armsShown.filter((a) => a !== 'c');
  L.push(`| scenario | metric | ${vsC.map(label).join(' | ')} |`);
  L.push(`|---|---|${vsC.map(() => '---:').join('|')}|`);
  for (const r of all) {
    if (r.metric.key === 'heapPerSocket') continue; // a C program has no JS heap
    L.push(`| ${r.scenario.title} | ${r.metric.label} | ${vsC.map((a) => fx(r.perArm[a]?.ratioCMedian)).join(' | ')} |`);
  }

  if (run.sockguard.ok) {
    L.push('', '## Targets (docs/performance.md#targets)', '');
    L.push('| scenario | target | sockguard Duplex | sockguard raw |', '|---|---|---|---|');
    for (const s of run.scenarios.filter((x) => !x.real)) {
      for (const t of s.targets ?? []) {
        const metricKey = t.metric ?? s.metrics[0].key;
        const row = all.find((r) => r.scenario.id === s.id && r.metric.key === metricKey);
        const what = t.abs ? `${row.metric.label} ${t.abs} ${t.x}` : `${row.metric.label} ${t.op} ${t.x}× ${t.vs}`;
        const cells = ['sockguard', 'sockguard-raw'].map((a) => {
          if (t.arm && t.arm !== a) return '';
          const v = evalTarget(t, row, a);
          if (!v) return '–';
          return v.met == null ? v.text : `${v.text} ${v.met ? 'met' : '**missed**'}`;
        });
        L.push(`| ${s.title} | ${what} | ${cells.join(' | ')} |`);
      }
    }
  }

  L.push('', '## Per scenario', '');
  for (const r of all) {
    L.push(`### ${r.scenario.title}: ${r.metric.label} (${r.metric.better} is better)`, '');
    L.push('| arm | median | min..max | ratio to net, per rep | median | ratio to C, per rep | median |');
    L.push('|---|---:|---|---|---:|---|---:|');
    for (const a of r.arms) {
      const p = r.perArm[a];
      const err = p.errors.length ? ` (${p.errors.length} failed: ${p.errors[0].split('\n')[0].slice(0, 80)})` : '';
      L.push(`| ${label(a)}${err} | ${fmt(p.median, r.metric.format)} | ${fmt(p.min, r.metric.format)} .. ${fmt(p.max, r.metric.format)} | ${list(p.ratioNet)} | ${fx(p.ratioNetMedian)} | ${list(p.ratioC)} | ${fx(p.ratioCMedian)} |`);
    }
    L.push('');
  }

}

export function renderMarkdown(run) {
  const e = run.env;
  const c = run.config;
  const L = [];
  L.push('# sockguard benchmark: latest results', '');
  L.push(`- Date: ${e.date.slice(0, 19).replace('T', ' ')} UTC · ${c.mode} run (${c.reps} repetitions, ${c.seconds} s windows, warm-up discarded)`);
  L.push(`- CPU: ${e.cpu} (${e.cpus} CPUs; server pinned to CPU ${c.serverCpu}, client to CPU ${c.clientCpu}) · kernel ${e.kernel} · Node ${e.node} · gcc ${e.gcc ?? '?'}`);
  L.push(`- Code: ${e.commit ?? 'unknown commit'} · server: ${c.server === 'c' ? 'C epoll server (bench/c/server.c)' : 'net server (bench/servers/net-server.mjs)'} · ${c.policy}`);
  if (!run.sockguard.ok) L.push(`- **sockguard arms not run**: ${run.sockguard.why}`);
  const trials = Object.values(run.results).flatMap((byArm) => Object.values(byArm).flat());
  const busy = trials.filter((t) => t?.busyBefore > 0.15).length;
  L.push(`- ${trials.length} trials; ${busy} started while other work kept the CPUs over 15 % busy (the driver waits up to ${c.mode === 'quick' ? 0.3 : 5} s for a quiet machine)`);
  L.push('- Ratios are taken per repetition (arms side by side, interleaved), then the median of those ratios is shown. For throughput higher is better; for latency and memory lower is better.');
  const all = rows(run);
  L.push('', ...(all.length ? ['![median ratios to net](latest.svg)', ''] : []));
  renderSockets(run, all, L);
  renderReal(run, L);

  if (run.micro?.length) {
    L.push('## Micro-benchmarks (tinybench, in-process, per operation)', '');
    L.push('| file | benchmark | median | mean | samples |', '|---|---|---:|---:|---:|');
    for (const m of run.micro) {
      if (m.results) {
        for (const b of m.results) {
          L.push(`| ${m.file} | ${b.name}${b.note ? ` (${b.note})` : ''} | ${fmt(b.medianNs, 'ns')} | ${fmt(b.meanNs, 'ns')} | ${b.samples ?? '–'} |`);
        }
      } else {
        L.push(`| ${m.file} | ${m.error ? `failed: ${m.error.split('\n')[0].slice(0, 120)}` : 'non-JSON output, see bench/out/'} | – | – | – |`);
      }
    }
    L.push('');
  }
  L.push(`Raw JSON of this run: \`bench/out/latest-${c.mode}.json\` (not committed). Reproduce: \`npm run bench${c.mode === 'quick' ? ':quick' : ''}\`.`, '');
  return L.join('\n');
}

const REAL_ARM_ORDER = ['net', 'sockguard', 'sockguard@base', 'sockguard-js', 'sockguard-js@base'];

/** A rate with its own unit (94.8 k cmd/s); other formats as elsewhere. */
function fmtUnit(v, m) {
  if (m.format === 'ns' && v >= 1e6) return `${(v / 1e6).toFixed(2)} ms`;
  if (m.format !== 'rate' || v == null || !Number.isFinite(v)) return fmt(v, m.format);
  const n = v >= 1e6 ? `${(v / 1e6).toFixed(2)} M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} k` : v >= 100 ? `${v.toFixed(0)} ` : `${v.toFixed(1)} `;
  return `${n}${m.label}`;
}

/**
 * Real workloads: a real client library or Node's TLS against a real server, each arm beside the same
 * client over `net`. Per arm: median value, per-repetition ratios to net and their median, client CPU per
 * operation and its median ratio to net; then the targets, checked on every non-net arm.
 */
function renderReal(run, L) {
  const real = run.scenarios.filter((s) => s.real);
  if (!real.length) return;
  const skipped = run.skipped ?? {};
  // A baseline arm (@base) is the same arm with another build.
  const label = (s, a) => {
    const base = a.endsWith('@base');
    const l = s.armLabels?.[a.replace(/@base$/, '')] ?? run.arms[a.replace(/@base$/, '')] ?? a;
    return base ? `${l} (baseline)` : l;
  };
  L.push('## Real workloads', '');
  L.push('Each client library (or Node\'s TLS) runs unchanged; only the socket under it changes. Value: higher is better; CPU: the client process\'s user + system time per operation, lower is better. Ratios are to the same client over `net`, per repetition.', '');
  L.push('| scenario | arm | median | ratio to net, per rep | median ratio | client CPU/op | CPU ratio, per rep | median CPU ratio |');
  L.push('|---|---|---:|---|---:|---:|---|---:|');
  const verdicts = [];
  for (const s of real) {
    const [vm, cm] = s.metrics;
    if (skipped[s.id]?.why) {
      L.push(`| ${s.title} | all arms skipped: ${skipped[s.id].why} | – | – | – | – | – | – |`);
      continue;
    }
    for (const a of REAL_ARM_ORDER.filter((x) => s.arms?.includes(x) || run.results[s.id]?.[x] || skipped[s.id]?.arms?.[x])) {
      const why = skipped[s.id]?.arms?.[a];
      if (why || !run.results[s.id]?.[a]) {
        L.push(`| ${s.title} | ${label(s, a)}: skipped${why ? `, ${why}` : ''} | – | – | – | – | – | – |`);
        continue;
      }
      const v = values(run, s.id, a, vm.key);
      const rn = ratios(run, s.id, a, 'net', vm.key);
      const c = values(run, s.id, a, cm.key);
      const rc = ratios(run, s.id, a, 'net', cm.key);
      const errs = (run.results[s.id][a] ?? []).filter((r) => r?.error).map((r) => r.error);
      const err = errs.length ? ` (${errs.length} failed: ${errs[0].split('\n')[0].slice(0, 80)})` : '';
      const isNet = a === 'net';
      L.push(`| ${s.title} | ${label(s, a)}${err} | ${fmtUnit(median(v), vm)} | ${isNet ? '–' : list(rn)} | ${isNet ? '1.00×' : fx(median(rn))} | ${fmtUnit(median(c), cm)} | ${isNet ? '–' : list(rc)} | ${isNet ? '1.00×' : fx(median(rc))} |`);
      if (isNet) continue;
      for (const t of s.targets ?? []) {
        const m = s.metrics.find((x) => x.key === (t.metric ?? vm.key));
        const r = median(ratios(run, s.id, a, t.vs, m.key));
        const met = r == null ? null : t.op === '<=' ? r <= t.x : r >= t.x;
        verdicts.push(`| ${s.title} | ${label(s, a)} | ${m.key === vm.key ? vm.label : cm.label} ${t.op === '<=' ? '≤' : '≥'} ${t.x.toFixed(1)}× ${t.vs} | ${fx(r)} | ${met == null ? '–' : met ? 'met' : '**missed**'} |`);
      }
    }
  }
  if (verdicts.length) {
    L.push('', '### Real-workload targets (docs/performance.md#targets)', '');
    L.push('| scenario | arm | target | median ratio | |', '|---|---|---|---:|---|', ...verdicts);
  }
  L.push('');
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Horizontal bars of the median ratio to net, on a log scale (ratios span 0.1× to 50×). */
export function renderSvg(run) {
  const all = rows(run);
  const arms = ['net+cork', 'sockguard', 'sockguard-raw', 'c'].filter((a) => all.some((r) => r.perArm[a]));
  const label = (a) => run.arms[a] ?? a;
  const ratiosSeen = all.flatMap((r) => arms.map((a) => r.perArm[a]?.ratioNetMedian)).filter((x) => x > 0 && Number.isFinite(x));
  // Clamped: a C program's idle memory is ~0.002× net's and would squash every other row; bars
  // beyond the axis end at its edge and keep their true value as the label.
  const lo = Math.max(0.01, Math.pow(10, Math.floor(Math.log10(Math.min(0.5, ...ratiosSeen)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(2, ...ratiosSeen))));
  const W = 980;
  const left = 300;
  const right = 70;
  const plotW = W - left - right;
  const barH = 11;
  const rowsShown = all.filter((r) => arms.some((a) => r.perArm[a]?.ratioNetMedian != null));
  const groupH = arms.length * (barH + 2) + 12;
  const top = 78;
  const H = top + rowsShown.length * groupH + 50;
  const x = (v) => left + ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotW;
  const e = run.env;
  const o = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  o.push(`<text x="12" y="22" font-size="16" font-weight="bold">sockguard vs Node net: median of per-repetition ratios (log scale, net = 1×)</text>`);
  o.push(`<text x="12" y="42" fill="#444">${esc(`${e.date.slice(0, 10)} · ${run.config.mode} run, ${run.config.reps} reps × ${run.config.seconds} s · ${e.cpu} · kernel ${e.kernel} · Node ${e.node}`)}</text>`);
  let lx = 12;
  for (const a of arms) {
    o.push(`<rect x="${lx}" y="52" width="12" height="12" fill="${COLORS[a]}"/><text x="${lx + 16}" y="62">${esc(label(a))}</text>`);
    lx += 30 + label(a).length * 7;
  }
  o.push(`<text x="${lx + 10}" y="62" fill="#444">throughput: right is better · latency, memory: left is better</text>`);
  const axisY = top + rowsShown.length * groupH;
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi * 1.0001) break;
      const px = x(v).toFixed(1);
      o.push(`<line x1="${px}" y1="${top - 4}" x2="${px}" y2="${axisY}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
      o.push(`<text x="${px}" y="${axisY + 14}" text-anchor="middle" fill="#666">${+v.toPrecision(2)}×</text>`);
    }
  }
  rowsShown.forEach((r, i) => {
    const gy = top + i * groupH;
    if (i % 2) o.push(`<rect x="0" y="${gy - 4}" width="${W}" height="${groupH}" fill="#f7f7f7" fill-opacity="0.6"/>`);
    const name = `${r.scenario.title}`;
    o.push(`<text x="${left - 8}" y="${gy + groupH / 2 - 6}" text-anchor="end" font-weight="bold">${esc(name.length > 44 ? name.slice(0, 43) + '…' : name)}</text>`);
    o.push(`<text x="${left - 8}" y="${gy + groupH / 2 + 8}" text-anchor="end" fill="#555">${esc(`${r.metric.label} (${r.metric.better} is better)`)}</text>`);
    arms.forEach((a, j) => {
      const v = r.perArm[a]?.ratioNetMedian;
      if (v == null || !(v > 0)) return;
      const y = gy + j * (barH + 2);
      const x0 = x(Math.max(lo, Math.min(1, v)));
      const x1 = x(Math.min(hi, Math.max(1, v)));
      o.push(`<rect x="${x0.toFixed(1)}" y="${y}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${barH}" fill="${COLORS[a]}"><title>${esc(`${label(a)}: ${v.toFixed(3)}× net`)}</title></rect>`);
      const shown = v < 0.01 ? v.toPrecision(1) : v.toFixed(2);
      if (v < lo) {
        // Clipped at the axis: label inside the bar, at its clipped end.
        o.push(`<text x="${(left + 4).toFixed(1)}" y="${y + barH - 1}" font-size="10" fill="#fff">◀ ${shown}×</text>`);
      } else {
        const tx = v >= 1 ? x1 + 4 : x0 - 4;
        o.push(`<text x="${tx.toFixed(1)}" y="${y + barH - 1}" font-size="10" text-anchor="${v >= 1 ? 'start' : 'end'}" fill="#333">${shown}×</text>`);
      }
    });
  });
  o.push(`<line x1="${x(1).toFixed(1)}" y1="${top - 6}" x2="${x(1).toFixed(1)}" y2="${axisY}" stroke="#000" stroke-width="1.5"/>`);
  o.push(`<text x="${x(1).toFixed(1)}" y="${axisY + 30}" text-anchor="middle" font-weight="bold">net</text>`);
  o.push('</svg>');
  return o.join('\n') + '\n';
}

// Re-render from a raw JSON file.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node bench/report.mjs bench/out/latest-full.json\n');
    process.exit(2);
  }
  const run = JSON.parse(readFileSync(file, 'utf8'));
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  writeFileSync(join(dir, 'latest.md'), renderMarkdown(run));
  writeFileSync(join(dir, 'latest.svg'), renderSvg(run));
}
