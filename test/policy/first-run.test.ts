/**
 * What a first local experiment meets: a denied loopback or private destination says how to allow it, and in
 * development mode check() and `sockguard check` say what production would decide.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { main, type CliIO } from '../../src/cli.js';
import { SocketLayer, type SocketError } from '../../src/index.js';
import type { Resolver } from '../../src/policy/index.js';

const zone: Record<string, string> = { 'db.internal': '10.1.2.3', localhost: '127.0.0.1' };
const resolver: Resolver = async (name) => (zone[name] ? [{ address: zone[name]!, family: 4 }] : []);
const HINT = ". To allow it, use policy: 'development' or an operator policy rule (https://github.com/sockguard/sockguard#allowing-loopback-and-private-destinations)";

describe('a denied local destination', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['10.0.0.1', 'private'],
  ])("%s: the 'error' names the rule and how to allow it", async (host, rule) => {
    const layer = new SocketLayer({ idleTimeoutMs: 0 });
    const err = await new Promise<SocketError>((resolve) => layer.connect(9, host).on('error', resolve));
    expect(err).toMatchObject({ code: 'EACCES', rule });
    expect(err.message).toBe(`connect EACCES ${host}:9 (denied: ${rule})${HINT}`);
    await layer.close();
  });

  it('other rules keep the short message', async () => {
    const layer = new SocketLayer({ idleTimeoutMs: 0 });
    const err = await new Promise<SocketError>((resolve) => layer.connect(80, '169.254.169.254').on('error', resolve));
    expect(err.message).toBe('connect EACCES 169.254.169.254:80 (denied: link-local)');
    await layer.close();
  });
});

describe('development mode reports production', () => {
  const warned: string[] = [];
  process.on('warning', (w) => warned.push(w.message));

  it('check() answers production beside the verdict', async () => {
    const layer = new SocketLayer({ policy: 'development', resolver, idleTimeoutMs: 0 });
    expect(await layer.check('169.254.169.254', 80)).toEqual({
      allowed: true,
      address: '169.254.169.254',
      family: 4,
      port: 80,
      production: { allowed: false, rule: 'link-local', reason: expect.stringContaining('169.254.0.0/16') },
    });
    expect(await layer.check('db.internal', 5432)).toMatchObject({ allowed: true, address: '10.1.2.3', production: { allowed: false, rule: 'private' } });
    expect(await layer.check('localhost', 80)).toMatchObject({ production: { allowed: false, rule: 'loopback' } });
    expect(await layer.check('8.8.8.8', 53)).toMatchObject({ allowed: true, production: { allowed: true } });
    await new Promise((r) => setImmediate(r));
    expect(warned.some((m) => m.includes('169.254.169.254:80'))).toBe(true);
    await layer.close();
  });

  it('production mode answers no production field', async () => {
    const layer = new SocketLayer({ idleTimeoutMs: 0 });
    expect(await layer.check('8.8.8.8', 53)).not.toHaveProperty('production');
    await layer.close();
  });

  it('sockguard check --json and the text form', async () => {
    let out = '';
    const io: CliIO = { stdout: (s) => (out += s), stderr: () => {}, resolver, env: { SOCKGUARD_POLICY: 'development' } };
    expect(await main(['check', 'db.internal:5432', '--json'], io)).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ allowed: true, production: { allowed: false, rule: 'private' } });
    out = '';
    expect(await main(['check', '169.254.169.254:80'], io)).toBe(0);
    expect(out).toContain('production: denied (rule: link-local)');
  });
});

describe('sockguard --version', () => {
  it("prints the package's version and exits 0", async () => {
    let out = '';
    const io: CliIO = { stdout: (s) => (out += s), stderr: () => {}, env: {} };
    expect(await main(['--version'], io)).toBe(0);
    expect(out).toBe(`${(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version}\n`);
  });
});
