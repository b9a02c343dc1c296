#!/usr/bin/env node
/**
 * npm run fuzz: the fuzz suites (test/fuzz/*.fuzz.test.ts) with a million inputs per target, then a table of
 * inputs and time per target.
 *
 *   node scripts/fuzz.mjs [runs] [file filters...]
 *
 * `runs` defaults to SOCKGUARD_FUZZ_RUNS or 1,000,000. SOCKGUARD_FUZZ_SEED replays a run. Filters keep the
 * suite files whose path contains one of them. The suites append one JSON line per target to a report file
 * (SOCKGUARD_FUZZ_REPORT), which is read back for the table.
 *
 * The suites run as separate vitest processes, SOCKGUARD_FUZZ_JOBS at a time (default: one per CPU, at most
 * two), the native suite first, then the longest first: the million-input run is CPU-bound and takes hours on
 * one core. Each process's output is printed when it ends. The native suite already runs its own two child
 * processes, so it takes two slots.
 * A suite can be split into parts (vitest -t patterns over its target names) when one of its targets alone is
 * as long as the rest; targets that check what earlier ones left behind stay with them.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, createWriteStream } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const runs = /^\d+$/.test(args[0] ?? '') ? args.shift() : process.env.SOCKGUARD_FUZZ_RUNS || '1000000';
const filters = args;
const slots = Math.max(1, Number(process.env.SOCKGUARD_FUZZ_JOBS) || Math.min(2, availableParallelism()));
const dir = mkdtempSync(join(tmpdir(), 'sockguard-fuzz-report-'));
const vitest = join(repo, 'node_modules', 'vitest', 'vitest.mjs');

/**
 * Cost of each suite at a million inputs (minutes of one process, measured on a 2-vCPU machine), for
 * longest-first scheduling, and how a suite is split. Unknown suites run with a guessed cost.
 */
const PLAN = {
  'policy.fuzz.test.ts': [
    { cost: 23, pattern: 'arbitrary JSON' },
    { cost: 10, pattern: '^(?!.*arbitrary JSON)' },
  ],
  'native.fuzz.test.ts': [{ cost: 6, slots: 2 }],
  'layer.fuzz.test.ts': [{ cost: 32 }],
  'tcp.fuzz.test.ts': [{ cost: 8 }],
  'udp.fuzz.test.ts': [{ cost: 4 }],
  'sockopts.fuzz.test.ts': [{ cost: 5 }],
};

const files = readdirSync(join(repo, 'test', 'fuzz'))
  .filter((f) => f.endsWith('.fuzz.test.ts'))
  .map((f) => `test/fuzz/${f}`)
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
const jobs = files
  .flatMap((file) => (PLAN[file.split('/').pop()] ?? [{ cost: 10 }]).map((p, part) => ({ file, part, cost: p.cost, pattern: p.pattern, slots: Math.min(p.slots ?? 1, slots) })))
  // Suites that take every slot first (nothing else waits for them to free up), then the longest first.
  .sort((a, b) => b.slots - a.slots || b.cost - a.cost);

const started = Date.now();
// Some suites run the built package in a child process: build it first, as `npm test` does.
const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: repo, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
console.log(`fuzzing with ${Number(runs).toLocaleString('en-US')} inputs per target, ${jobs.length} suite processes, ${slots} at a time`);

function runJob(job, index) {
  const report = join(dir, `report-${index}.jsonl`);
  const log = join(dir, `log-${index}.txt`);
  const env = { ...process.env, SOCKGUARD_FUZZ_RUNS: runs, SOCKGUARD_FUZZ_REPORT: report };
  const argv = [vitest, 'run', job.file, ...(job.pattern ? ['-t', job.pattern] : [])];
  const name = job.file + (job.pattern ? ` -t '${job.pattern}'` : '');
  console.log(`start ${name}`);
  const out = createWriteStream(log);
  const child = spawn(process.execPath, argv, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  const jobStarted = Date.now();
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      out.end(() => {
        console.log(`\n===== ${name}: ${code === 0 ? 'passed' : `FAILED (${signal ?? `exit ${code}`})`} after ${((Date.now() - jobStarted) / 1000).toFixed(0)} s`);
        process.stdout.write(readFileSync(log, 'utf8'));
        resolve({ ok: code === 0, report });
      });
    });
  });
}

// Longest first, each job as soon as enough slots are free.
const results = new Array(jobs.length);
await new Promise((done) => {
  let free = slots;
  let next = 0;
  let running = 0;
  const pump = () => {
    while (next < jobs.length && jobs[next].slots <= free) {
      const i = next++;
      free -= jobs[i].slots;
      running++;
      runJob(jobs[i], i).then((r) => {
        results[i] = r;
        free += jobs[i].slots;
        running--;
        pump();
      });
    }
    if (next >= jobs.length && running === 0) done();
  };
  pump();
});
const total = Date.now() - started;

// Rows in suite-file order, each suite's targets in the order they ran.
const rows = [];
for (const file of files) {
  jobs.forEach((job, i) => {
    if (job.file !== file) return;
    try {
      rows.push(...readFileSync(results[i].report, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
    } catch {
      // No target reported (the suite failed before any finished).
    }
  });
}
rmSync(dir, { recursive: true, force: true });

const width = Math.max(6, ...rows.map((r) => r.target.length));
const line = (a, b, c, d) => `${a.padEnd(width)}  ${b.padStart(12)}  ${c.padStart(10)}  ${d}`;
console.log(`\n${line('target', 'inputs', 'seconds', 'result')}`);
for (const r of rows) console.log(line(r.target, r.runs.toLocaleString('en-US'), (r.ms / 1000).toFixed(1), r.ok ? 'ok' : 'FAILED'));
console.log(`\n${rows.length} targets, ${rows.reduce((n, r) => n + r.runs, 0).toLocaleString('en-US')} inputs, ${(total / 1000).toFixed(0)} s in all`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
