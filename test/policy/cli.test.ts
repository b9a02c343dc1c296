/**
 * `sockguard check`: verdicts, addresses and rules on stdout, JSON output, policy files, exit statuses. Names
 * are answered by an injected fake resolver; the spawned binary is only asked about IP literals, so no test
 * depends on DNS or the network.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { main, splitHostPort, USAGE, type CliIO } from '../../src/cli.js';
import type { Family, Resolver } from '../../src/policy/index.js';

const zone: Record<string, string[]> = {
  'public.example': ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946'],
  'split.example': ['10.0.0.7', '1.1.1.1'],
  'internal.example': ['10.0.0.7'],
};
const resolver: Resolver = async (name) => {
  const answers = zone[name];
  if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  return answers.map((address) => ({ address, family: (address.includes(':') ? 6 : 4) as Family }));
};

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIO = { stdout: (s) => (out += s), stderr: (s) => (err += s), resolver, env: {} };
  const code = await main(argv, io);
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'sockguard-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sockguard check', () => {
  it('allowed literal: exit 0, the address', async () => {
    const r = await run('check', '1.1.1.1:443');
    expect(r.code).toBe(0);
    expect(r.out).toBe('allowed 1.1.1.1:443 -> 1.1.1.1:443\n  1.1.1.1  allowed\n');
  });

  it('denied literal in any spelling: exit 1, canonical address and rule', async () => {
    const r = await run('check', '0x7f000001:80');
    expect(r.code).toBe(1);
    expect(r.out).toBe('denied 127.0.0.1:80 (rule: loopback)\n  127.0.0.1  denied  loopback: 127.0.0.0/8: loopback (RFC 1122)\n');
  });

  it('bracketed IPv6 with a zone', async () => {
    const r = await run('check', '[fe80::1%eth0]:22');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^denied \[fe80::1%eth0\]:22 \(rule: link-local\)/);
  });

  it('names are resolved once and every address is listed', async () => {
    const r = await run('check', 'split.example:443');
    expect(r.code).toBe(0);
    expect(r.out).toBe('allowed split.example:443 -> 1.1.1.1:443\n  1.1.1.1  allowed\n  10.0.0.7  denied  private: 10.0.0.0/8: private network (RFC 1918)\n');
    const denied = await run('check', 'internal.example:443');
    expect(denied.code).toBe(1);
    expect(denied.out).toMatch(/^denied internal\.example:443 \(rule: private\)/);
  });

  it('localhost is denied without resolution', async () => {
    const r = await run('check', 'localhost:3000');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/denied localhost:3000 \(rule: loopback\)\n {2}localhost {2}denied {2}loopback: .*\(not resolved\)/);
  });

  it('--json', async () => {
    const r = await run('check', 'public.example:25', '--json');
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.out);
    expect(doc).toMatchObject({
      allowed: false,
      rule: 'port',
      address: '93.184.216.34',
      port: 25,
      host: 'public.example',
      target: { kind: 'name', name: 'public.example' },
    });
    expect(doc.addresses).toHaveLength(2);
    const ok = JSON.parse((await run('check', '[2606:4700:4700::1111]:443', '--json')).out);
    expect(ok).toMatchObject({ allowed: true, address: '2606:4700:4700::1111', family: 6, port: 443 });
  });

  it('--policy FILE (and --policy=FILE) applies the operator policy', async () => {
    const file = join(dir, 'loopback.json');
    writeFileSync(file, JSON.stringify({ version: 1, allow: [{ cidr: '127.0.0.0/8', openSpecialPurpose: true }] }));
    expect((await run('check', '127.0.0.1:8080', '--policy', file)).code).toBe(0);
    expect((await run('check', '127.0.0.1:8080', `--policy=${file}`)).code).toBe(0);
    expect((await run('check', '127.0.0.1:8080')).code).toBe(1);
  });

  it('SOCKGUARD_POLICY is the default policy', async () => {
    let out = '';
    const code = await main(['check', '127.0.0.1:8080'], { stdout: (s) => (out += s), stderr: () => {}, resolver, env: { SOCKGUARD_POLICY: 'development' } });
    expect(code).toBe(0);
    expect(out).toMatch(/^allowed/);
  });

  it.each([
    [['check', '1.2.3.4.5:80'], /Invalid host "1\.2\.3\.4\.5"/],
    [['check', '1.1.1.1:0'], /must be an integer in 1\.\.65535/],
    [['check', '1.1.1.1:http'], /must be an integer in 1\.\.65535/],
    [['check', '1.1.1.1'], /expected HOST:PORT/],
    [['check', '::1:80'], /put IPv6 literals in brackets/],
    [['check', '[::1:80'], /missing "\]"/],
    [['check', 'nxdomain.example:80'], /ENOTFOUND/],
  ])('invalid input %j: exit 2', async (argv, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.out).toBe('');
  });

  it('an invalid policy file: exit 2 with the position of the fault', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{\n  "version": 1,\n  "allow": ["127.0.0.1/32"]\n}\n');
    const r = await run('check', '1.1.1.1:443', '--policy', file);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${file}:3:`);
    expect(r.err).toContain('at $.allow[0]');
  });

  it('errors in --json mode are JSON on stdout', async () => {
    const r = await run('check', '999.1.1.1:80', '--json');
    expect(r.code).toBe(2);
    expect(JSON.parse(r.out)).toMatchObject({ error: { code: 'ERR_SOCKGUARD_INVALID_HOST' } });
  });

  it.each([[[]], [['frobnicate']], [['check']], [['check', 'a:1', 'b:2']], [['check', 'a:1', '--verbose']], [['check', 'a:1', '--policy']]])(
    'usage errors %j: exit 2 with the usage',
    async (argv) => {
      const r = await run(...argv);
      expect(r.code).toBe(2);
      expect(r.err).toContain('Usage: sockguard check');
    },
  );

  it('--help prints the usage and exits 0', async () => {
    const r = await run('--help');
    expect(r.code).toBe(0);
    expect(r.out).toBe(USAGE);
  });

  it('splitHostPort', () => {
    expect(splitHostPort('example.com:443')).toEqual({ host: 'example.com', port: '443' });
    expect(splitHostPort('[::1]:80')).toEqual({ host: '[::1]', port: '80' });
    expect(splitHostPort('[fe80::1%en-0]:80')).toEqual({ host: '[fe80::1%en-0]', port: '80' });
  });
});

const built = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

describe.runIf(existsSync(built))('the built binary (dist/cli.js)', () => {
  function spawnCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [built, ...args], { env: { ...process.env, SOCKGUARD_POLICY: '' } }, (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? -1) : 0, out: stdout, err: stderr });
      });
    });
  }

  it('exits 1 for a denied literal, 0 for an allowed one, 2 for invalid input', async () => {
    const denied = await spawnCli(['check', '017700000001:80']);
    expect(denied.code).toBe(1);
    expect(denied.out).toMatch(/^denied 127\.0\.0\.1:80 \(rule: loopback\)/);
    const allowed = await spawnCli(['check', '[2606:4700:4700::1111]:443', '--json']);
    expect(allowed.code).toBe(0);
    expect(JSON.parse(allowed.out)).toMatchObject({ allowed: true, family: 6 });
    const invalid = await spawnCli(['check', '1.2.3.4.5:80']);
    expect(invalid.code).toBe(2);
  });
});
