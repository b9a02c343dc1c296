#!/usr/bin/env node
/**
 * npm run fuzz: the fuzz suites (test/fuzz/*.fuzz.test.ts) with a million inputs per target, then a table of
 * inputs and time per target.
 *
 *   node scripts/fuzz.mjs [runs] [vitest filters...]
 *
 * `runs` defaults to SOCKGUARD_FUZZ_RUNS or 1,000,000. SOCKGUARD_FUZZ_SEED replays a run. The suites append one
 * JSON line per target to a report file (SOCKGUARD_FUZZ_REPORT), which is read back for the table.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const runs = /^\d+$/.test(args[0] ?? '') ? args.shift() : process.env.SOCKGUARD_FUZZ_RUNS || '1000000';
const filters = args.length > 0 ? args : ['test/fuzz/'];
const dir = mkdtempSync(join(tmpdir(), 'sockguard-fuzz-report-'));
const report = join(dir, 'report.jsonl');
const env = { ...process.env, SOCKGUARD_FUZZ_RUNS: runs, SOCKGUARD_FUZZ_REPORT: report };

const started = Date.now();
// Some suites run the built package in a child process: build it first, as `npm test` does.
const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: repo, stdio: 'inherit', env });
if (build.status !== 0) process.exit(build.status ?? 1);
console.log(`fuzzing with ${Number(runs).toLocaleString('en-US')} inputs per target`);
const run = spawnSync('npx', ['vitest', 'run', ...filters], { cwd: repo, stdio: 'inherit', env });
const total = Date.now() - started;

let rows = [];
try {
  rows = readFileSync(report, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
} catch {
  // No target reported (the run failed before any finished).
}
rmSync(dir, { recursive: true, force: true });

const width = Math.max(6, ...rows.map((r) => r.target.length));
const line = (a, b, c, d) => `${a.padEnd(width)}  ${b.padStart(12)}  ${c.padStart(10)}  ${d}`;
console.log(`\n${line('target', 'inputs', 'seconds', 'result')}`);
for (const r of rows) console.log(line(r.target, r.runs.toLocaleString('en-US'), (r.ms / 1000).toFixed(1), r.ok ? 'ok' : 'FAILED'));
console.log(`\n${rows.length} targets, ${rows.reduce((n, r) => n + r.runs, 0).toLocaleString('en-US')} inputs, ${(total / 1000).toFixed(0)} s in all`);
process.exit(run.status ?? 1);
