/**
 * Finding the addon in an installed package: a prebuilt binary (prebuildify's layout) when nothing was built on
 * the machine, a local build otherwise, and a coded error naming the consumer's fix when neither exists.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prebuild } from '../../src/core/native.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const built = process.env.SOCKGUARD_NATIVE ?? join(repo, 'build/Release/sockguard.node');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'sockguard-prebuild-'));
  dirs.push(d);
  return d;
}

/** A package as npm installs it with --ignore-scripts: dist/ and whatever binaries it shipped, no build/. */
function installed(prebuilds: Record<string, string>): string {
  const dir = tmp();
  cpSync(join(repo, 'dist'), join(dir, 'dist'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  for (const [rel, from] of Object.entries(prebuilds)) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    copyFileSync(from, join(dir, rel));
  }
  return dir;
}

function load(dir: string): { path?: string; code?: string; message?: string } {
  const script = `
    const N = await import(${JSON.stringify(join(dir, 'dist/core/native.js'))});
    try { N.native(); console.log(JSON.stringify({ path: N.loadedFrom() })); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
  const env = { ...process.env };
  delete env.SOCKGUARD_NATIVE;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' }));
}

describe('prebuild()', () => {
  test("matches prebuildify's names on platform, architecture and libc", () => {
    const dir = tmp();
    mkdirSync(join(dir, 'linux-x64'));
    mkdirSync(join(dir, 'linux-arm64'));
    for (const f of ['sockguard.musl.node', 'sockguard.glibc.node', 'README']) writeFileSync(join(dir, 'linux-x64', f), '');
    writeFileSync(join(dir, 'linux-arm64', 'sockguard.node'), '');
    expect(prebuild(dir, 'linux', 'x64', 'glibc')).toBe(join(dir, 'linux-x64', 'sockguard.glibc.node'));
    expect(prebuild(dir, 'linux', 'x64', 'musl')).toBe(join(dir, 'linux-x64', 'sockguard.musl.node'));
    expect(prebuild(dir, 'linux', 'arm64', 'musl')).toBe(join(dir, 'linux-arm64', 'sockguard.node'));
    expect(prebuild(dir, 'darwin', 'arm64', undefined)).toBeUndefined();
    expect(prebuild(join(dir, 'absent'), 'linux', 'x64', 'glibc')).toBeUndefined();
  });

  test('a binary tagged for another ABI is not taken', () => {
    const dir = tmp();
    mkdirSync(join(dir, 'linux-x64'));
    writeFileSync(join(dir, 'linux-x64', 'sockguard.abi1.node'), '');
    expect(prebuild(dir, 'linux', 'x64', 'glibc')).toBeUndefined();
  });
});

describe('loading from an installed package', () => {
  test.runIf(process.platform === 'linux' && !process.env.SOCKGUARD_NATIVE)('loads the prebuilt binary when nothing was built', () => {
    const dir = installed({ [`prebuilds/linux-${process.arch}/sockguard.glibc.node`]: built });
    expect(load(dir).path).toBe(join(dir, `prebuilds/linux-${process.arch}/sockguard.glibc.node`));
  });

  test('a local build wins over a prebuilt binary, which is still tried when the build does not load', () => {
    const dir = installed({
      'build/Release/sockguard.node': built,
      [`prebuilds/${process.platform}-${process.arch}/sockguard.node`]: built,
    });
    expect(load(dir).path).toBe(join(dir, 'build/Release/sockguard.node'));
    writeFileSync(join(dir, 'build/Release/sockguard.node'), 'not an addon');
    expect(load(dir).path).toBe(join(dir, `prebuilds/${process.platform}-${process.arch}/sockguard.node`));
  });

  test('neither: a coded error that says so and names `npm rebuild sockguard`', () => {
    const r = load(installed({}));
    expect(r.code).toBe('ERR_SOCKGUARD_NATIVE_UNAVAILABLE');
    expect(r.message).toContain(`no prebuilt binary for ${process.platform}-${process.arch}`);
    expect(r.message).toContain('npm rebuild sockguard');
  });
});

describe('the install script', () => {
  /** The package as npm unpacks it before running `install`: sources, no build/, maybe prebuilds. */
  function unpacked(withPrebuild: boolean): string {
    const dir = tmp();
    for (const f of ['package.json', 'binding.gyp', 'scripts/install.cjs']) {
      mkdirSync(join(dir, f, '..'), { recursive: true });
      copyFileSync(join(repo, f), join(dir, f));
    }
    symlinkSync(join(repo, 'native'), join(dir, 'native'));
    symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
    if (withPrebuild) {
      mkdirSync(join(dir, `prebuilds/${process.platform}-${process.arch}`), { recursive: true });
      copyFileSync(built, join(dir, `prebuilds/${process.platform}-${process.arch}/sockguard.glibc.node`));
    }
    return dir;
  }

  /** Runs it as npm would, on a PATH with no compiler, make or python. */
  function install(dir: string, env: Record<string, string> = {}): { status: number | null; stderr: string; stdout: string } {
    const bin = tmp();
    const clean: Record<string, string> = { HOME: process.env.HOME ?? dir, PATH: bin, ...env };
    const r = spawnSync(process.execPath, [join(dir, 'scripts/install.cjs')], { cwd: dir, env: clean, encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr, stdout: r.stdout };
  }

  test.runIf(process.platform === 'linux' && !process.env.SOCKGUARD_NATIVE)('a prebuilt binary that loads is used: no compiler needed, nothing printed', () => {
    const r = install(unpacked(true));
    expect(r).toEqual({ status: 0, stderr: '', stdout: '' });
  });

  test('no binary and no build tools: a short message naming what is missing and the command that fixes it', () => {
    const r = install(unpacked(false));
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(3);
    expect(r.stderr).toContain(`no prebuilt addon for ${process.platform}-${process.arch}`);
    for (const tool of ['C++17 compiler', 'make', 'python3', 'npm rebuild sockguard']) expect(r.stderr).toContain(tool);
    expect(r.stderr).not.toMatch(/Traceback|gyp ERR/);
  });

  test.runIf(process.platform === 'linux' && !process.env.SOCKGUARD_NATIVE)('--build-from-source skips the prebuilt binary and asks for the tools', () => {
    const r = install(unpacked(true), { npm_config_build_from_source: 'true' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('building one needs a C++17 compiler (g++ or clang++), make, python3');
  });
});
