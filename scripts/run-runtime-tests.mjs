#!/usr/bin/env node
/**
 * Runs the core, service and policy suites under Bun or Deno (vitest runs only in Node): each test file in its
 * own runtime process, its 'vitest' import mapped to scripts/runtime-tests/vitest-shim.mjs.
 *
 *   node scripts/run-runtime-tests.mjs --runtime bun|deno [--json report.json] [files...]
 *
 * Tests that cannot apply in a runtime are listed in scripts/runtime-tests/skips.mjs with the reason, and every
 * skip is printed. The last line is "<passed> passed, <failed> failed, <skipped> skipped"; --json writes the
 * counts in vitest's JSON report fields (numPassedTests, numFailedTests, numTotalTests, success) for .ci/run.
 * The exit status is non-zero when a test fails, a file crashes, or nothing ran.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { skipsFor } from './runtime-tests/skips.mjs';

const repo = fileURLToPath(new URL('..', import.meta.url));
const here = join(repo, 'scripts', 'runtime-tests');
const SUITES = ['test/core', 'test/service', 'test/policy'];
// A file that hangs (a leaked handle, a deadlock) fails after this long instead of stalling CI.
const FILE_TIMEOUT_MS = 5 * 60_000;

function parseArgs(argv) {
  const out = { runtime: undefined, json: undefined, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runtime') out.runtime = argv[++i];
    else if (a.startsWith('--runtime=')) out.runtime = a.slice(10);
    else if (a === '--json') out.json = argv[++i];
    else out.files.push(a);
  }
  if (out.runtime !== 'bun' && out.runtime !== 'deno') {
    console.error('usage: run-runtime-tests.mjs --runtime bun|deno [--json FILE] [files...]');
    process.exit(2);
  }
  return out;
}

function runtimeBinary(runtime) {
  const candidates =
    runtime === 'bun'
      ? [join(repo, 'node_modules', '.bin', 'bun')]
      : [join(repo, 'node_modules', '@deno', 'linux-x64-glibc', 'deno'), join(repo, 'node_modules', '.bin', 'deno')];
  return candidates.find((p) => existsSync(p)) ?? runtime;
}

function testFiles(files) {
  if (files.length > 0) return files;
  return SUITES.flatMap((dir) =>
    readdirSync(join(repo, dir))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => `${dir}/${f}`),
  );
}

function command(runtime, bin, file, scratch) {
  const harness = join(here, 'harness.mjs');
  if (runtime === 'bun') return [bin, ['--tsconfig-override', join(here, 'tsconfig.bun.json'), harness, file]];
  const map = join(scratch, 'import-map.json');
  if (!existsSync(map)) writeFileSync(map, JSON.stringify({ imports: { vitest: pathToFileURL(join(here, 'vitest-shim.mjs')).href } }));
  return [bin, ['run', '-A', '--sloppy-imports', '--node-modules-dir=manual', `--import-map=${map}`, harness, file]];
}

function runFile(runtime, bin, file, scratch, skips) {
  const [cmd, args] = command(runtime, bin, file, scratch);
  return new Promise((resolve) => {
    const results = [];
    const child = spawn(cmd, args, {
      cwd: repo,
      env: { ...process.env, SG_RUNTIME_SKIPS: JSON.stringify(skips), NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line.startsWith('SGTEST ')) {
          const r = JSON.parse(line.slice(7));
          results.push(r);
          print(r);
        }
      }
    });
    child.stderr.on('data', (d) => {
      err += d;
      if (err.length > 64 * 1024) err = err.slice(-32 * 1024);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), FILE_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0 || signal) {
        const tail = err.trim().split('\n').slice(-12).join('\n');
        const r = { name: `(process exited with ${signal ?? code})`, status: 'failed', error: tail, ms: 0 };
        results.push(r);
        print(r);
      }
      resolve(results);
    });
  });
}

function print(r) {
  if (r.status === 'passed') console.log(`  ✓ ${r.name}`);
  else if (r.status === 'skipped') console.log(`  - ${r.name} (skipped: ${r.reason})`);
  else console.log(`  ✗ ${r.name}\n${String(r.error ?? '').replace(/^/gm, '      ')}`);
}

const opts = parseArgs(process.argv.slice(2));
const bin = runtimeBinary(opts.runtime);
const scratch = mkdtempSync(join(tmpdir(), 'sockguard-runtime-tests-'));
const totals = { passed: 0, failed: 0, skipped: 0 };
const failedFiles = [];
const started = Date.now();
try {
  for (const file of testFiles(opts.files)) {
    console.log(`${opts.runtime} ${relative(repo, join(repo, file))}`);
    const results = await runFile(opts.runtime, bin, file, scratch, skipsFor(opts.runtime, file));
    for (const r of results) totals[r.status]++;
    if (results.some((r) => r.status === 'failed')) failedFiles.push(file);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
const total = totals.passed + totals.failed + totals.skipped;
if (opts.json) {
  writeFileSync(
    opts.json,
    JSON.stringify({
      runtime: opts.runtime,
      numPassedTests: totals.passed,
      numFailedTests: totals.failed,
      numPendingTests: totals.skipped,
      numTotalTests: total,
      numFailedTestSuites: failedFiles.length,
      success: totals.failed === 0 && total > 0,
    }),
  );
}
if (failedFiles.length > 0) console.log(`failed files: ${failedFiles.join(', ')}`);
console.log(`${opts.runtime}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed > 0 || totals.passed === 0 ? 1 : 0);
