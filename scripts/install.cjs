#!/usr/bin/env node
'use strict';
/*
 * npm runs this when sockguard is installed. A binary that loads (a local build or the prebuilt one for this
 * platform) is used as it is; otherwise the addon is compiled with node-gyp. When it cannot be compiled because
 * a build tool is missing, the install stops with a few lines naming what is missing and the command that
 * finishes the job, instead of a build tool's traceback.
 */
const { spawnSync } = require('node:child_process');
const { accessSync, constants, existsSync } = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const platform = `${process.platform}-${process.arch}`;
const fromSource = ['true', 'sockguard'].includes(process.env.npm_config_build_from_source ?? '');

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

function onPath(name) {
  if (path.isAbsolute(name)) return isExecutable(name);
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return true;
  }
  return false;
}

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** What node-gyp needs and this machine lacks; Windows is not a supported platform, so it is not probed. */
function missingTools() {
  if (process.platform === 'win32') return [];
  const missing = [];
  const cxx = process.env.CXX ? [process.env.CXX.split(' ')[0]] : ['c++', 'g++', 'clang++'];
  if (!cxx.some(onPath)) missing.push('a C++17 compiler (g++ or clang++)');
  if (!['make', 'gmake'].some(onPath)) missing.push('make');
  const python = [process.env.npm_config_python, process.env.PYTHON, 'python3', 'python'].filter(Boolean);
  if (!python.some(onPath)) missing.push('python3');
  return missing;
}

function fail(lines) {
  process.stderr.write(lines.map((l) => `sockguard: ${l}\n`).join(''));
  process.exit(1);
}

if (!fromSource && loads()) process.exit(0);

const missing = missingTools();
if (missing.length > 0) {
  fail([
    `there is no prebuilt addon for ${platform}, and building one needs ${missing.join(', ')}, not found on PATH.`,
    process.platform === 'darwin'
      ? 'Install the Xcode command line tools (xcode-select --install), then run the install again (or npm rebuild sockguard)'
      : 'Install them (Debian/Ubuntu: apt-get install g++ make python3; Alpine: apk add g++ make python3), then run the install again (or npm rebuild sockguard)',
  ]);
}

const prefix = path.resolve(process.execPath, '..', '..');

/** node-gyp: npm's own (npm names it to install scripts), a local one, the one bundled with this Node's npm. */
function findGyp() {
  const named = process.env.npm_config_node_gyp;
  if (named && existsSync(named)) return named;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    const bundled = path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    return existsSync(bundled) ? bundled : undefined;
  }
}

const gyp = findGyp();
const args = ['rebuild', '-j', 'max'];
// Node's own headers when this Node ships them, so the build needs no download.
if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const run = gyp
  ? spawnSync(process.execPath, [gyp, ...args], { cwd: root, stdio: 'inherit' })
  : spawnSync('node-gyp', args, { cwd: root, stdio: 'inherit', shell: true });
if (run.error || run.status !== 0) {
  fail([
    run.error || (!gyp && run.status === 127)
      ? `could not run node-gyp to build the addon for ${platform}: ${run.error?.message ?? 'not found'} (npm install -g node-gyp provides it)`
      : `building the addon for ${platform} failed (node-gyp's output is above).`,
    'Supported platforms: Linux and macOS, x64 and arm64. Fix the cause, then run: npm rebuild sockguard',
  ]);
}
