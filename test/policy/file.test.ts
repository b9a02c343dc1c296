/**
 * Operator policy files and objects (schema version 1): valid documents extend or replace the defaults; every
 * kind of invalid document fails at load with a message naming the JSON path and, for files, line:column.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPolicy, type Family, type Policy } from '../../src/policy/index.js';

const dir = mkdtempSync(join(tmpdir(), 'sockguard-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
function file(content: unknown, name = `policy-${++counter}.json`): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return path;
}

function decide(p: Policy, host: string, port: number, name?: string): string {
  const t = p.parse(host, port);
  if (t.kind !== 'ip') throw new Error('literal expected');
  const d = p.evaluate(t.address, t.family as Family, port, name);
  return d.allowed ? 'allow' : d.rule;
}

function loadError(spec: unknown): Error & { code?: string; path?: string; line?: number; column?: number } {
  try {
    loadPolicy(spec);
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected loadPolicy to throw');
}

describe('built-in policies', () => {
  it('production is the default', () => {
    expect(loadPolicy().mode).toBe('production');
    expect(loadPolicy(undefined).mode).toBe('production');
    expect(loadPolicy('production').mode).toBe('production');
    expect(loadPolicy('development').mode).toBe('development');
  });

  it('returns an existing policy unchanged', () => {
    const p = loadPolicy('production');
    expect(loadPolicy(p)).toBe(p);
  });

  it.each([[''], ['   '], [42], [true], [null]])('rejects %j', (spec) => {
    expect(loadError(spec).code).toBe('ERR_SOCKGUARD_INVALID_POLICY');
  });
});

describe('valid policies', () => {
  it('allow with openSpecialPurpose opens a loopback range (the benchmark policy)', () => {
    const p = loadPolicy(file({ version: 1, allow: [{ cidr: '127.0.0.0/8', openSpecialPurpose: true }] }));
    expect(decide(p, '127.0.0.1', 8080)).toBe('allow');
    expect(decide(p, '127.12.34.56', 8080)).toBe('allow');
    expect(decide(p, '0x7f000001', 8080)).toBe('allow');
    expect(decide(p, '::ffff:127.0.0.1', 8080)).toBe('allow');
    // Everything else keeps its production verdict.
    expect(decide(p, '::1', 8080)).toBe('loopback');
    expect(decide(p, '10.0.0.1', 8080)).toBe('private');
    expect(decide(p, '127.0.0.1', 25)).toBe('port');
    expect(decide(p, '8.8.8.8', 443)).toBe('provider:google');
    expect(decide(p, '1.1.1.1', 443)).toBe('allow');
  });

  it('an allow entry with ports only applies on those ports, and opens a denied port it lists', () => {
    const p = loadPolicy({
      version: 1,
      allow: [
        { cidr: '127.0.0.1/32', ports: [8080, 25], openSpecialPurpose: true },
        { cidr: '::1', openSpecialPurpose: true },
      ],
    });
    expect(decide(p, '127.0.0.1', 8080)).toBe('allow');
    expect(decide(p, '127.0.0.1', 25)).toBe('allow');
    expect(decide(p, '127.0.0.1', 8081)).toBe('loopback');
    expect(decide(p, '127.0.0.2', 8080)).toBe('loopback');
    expect(decide(p, '::1', 9)).toBe('allow');
    expect(decide(p, '::1', 21)).toBe('port');
  });

  it('allow opens provider ranges without touching the special-purpose table', () => {
    const p = loadPolicy({ version: 1, allow: ['8.8.8.0/24', '0.0.0.0/0'] });
    expect(decide(p, '8.8.8.8', 443)).toBe('allow');
    expect(decide(p, '34.1.2.3', 443)).toBe('allow');
    expect(decide(p, '10.1.2.3', 443)).toBe('private');
    expect(decide(p, '127.0.0.1', 443)).toBe('loopback');
  });

  it('deny adds ranges with an optional rule name; a more specific allow wins over it', () => {
    const p = loadPolicy({
      version: 1,
      deny: ['1.1.1.0/24', { cidr: '93.184.0.0/16', rule: 'corp', reason: 'our own network' }, '2606:4700::/32'],
      allow: ['93.184.216.34/32'],
    });
    expect(decide(p, '1.1.1.1', 443)).toBe('operator');
    expect(decide(p, '::ffff:1.1.1.1', 443)).toBe('operator');
    expect(decide(p, '93.184.1.1', 443)).toBe('corp');
    expect(decide(p, '93.184.216.34', 443)).toBe('allow');
    expect(decide(p, '2606:4700:4700::1111', 443)).toBe('operator');
    expect(decide(p, '1.0.0.1', 443)).toBe('allow');
    const t = p.evaluate('93.184.1.1', 4, 443);
    expect(t).toEqual({ allowed: false, rule: 'corp', reason: 'our own network' });
  });

  it('deniedPorts extends the defaults; replace drops them', () => {
    const extended = loadPolicy({ version: 1, deniedPorts: [23] });
    expect(decide(extended, '1.1.1.1', 23)).toBe('port');
    expect(decide(extended, '1.1.1.1', 25)).toBe('port');
    const replaced = loadPolicy({ version: 1, replace: ['deniedPorts'], deniedPorts: [23] });
    expect(decide(replaced, '1.1.1.1', 23)).toBe('port');
    expect(decide(replaced, '1.1.1.1', 25)).toBe('allow');
    expect(decide(replaced, '1.1.1.1', 21)).toBe('allow');
  });

  it('providers: inline, from a file (Google shape or a plain array), built-in; replace drops Google', () => {
    file({ syncToken: '1', creationTime: '2024-01-01T00:00:00', prefixes: [{ ipv4Prefix: '1.2.3.0/24' }, { ipv6Prefix: '2600:1f00::/24' }] }, 'acme-ranges.json');
    file(['5.6.7.0/24'], 'plain-ranges.json');
    const p = loadPolicy(
      file({
        version: 1,
        providers: [
          { name: 'acme', file: 'acme-ranges.json' },
          { name: 'plain', file: './plain-ranges.json' },
          { name: 'inline', prefixes: ['9.9.9.0/24'] },
        ],
      }),
    );
    expect(decide(p, '1.2.3.4', 443)).toBe('provider:acme');
    expect(decide(p, '2600:1f00::1', 443)).toBe('provider:acme');
    expect(decide(p, '5.6.7.8', 443)).toBe('provider:plain');
    expect(decide(p, '9.9.9.9', 443)).toBe('provider:inline');
    expect(decide(p, '34.1.2.3', 443)).toBe('provider:google');

    const replaced = loadPolicy({ version: 1, replace: ['providers'], providers: [{ name: 'inline', prefixes: ['9.9.9.0/24'] }] });
    expect(decide(replaced, '34.1.2.3', 443)).toBe('allow');
    expect(decide(replaced, '9.9.9.9', 443)).toBe('provider:inline');
    const builtin = loadPolicy({ version: 1, replace: ['providers'], providers: [{ name: 'google', builtin: 'google' }] });
    expect(decide(builtin, '34.1.2.3', 443)).toBe('provider:google');
  });

  it('exceptions: address and host entries open provider ranges on their ports; replace drops the defaults', () => {
    const p = loadPolicy({
      version: 1,
      exceptions: [
        { address: '142.250.0.0/15', ports: [443] },
        { host: 'Mail.Example.', ports: [25] },
      ],
    });
    expect(decide(p, '142.250.1.1', 443)).toBe('allow');
    expect(decide(p, '142.250.1.1', 80)).toBe('provider:google');
    expect(decide(p, '8.8.8.8', 53)).toBe('allow');
    expect(decide(p, '142.251.1.1', 25, 'mail.example')).toBe('allow');
    expect(decide(p, '1.1.1.1', 25, 'mail.example')).toBe('allow');
    expect(decide(p, '1.1.1.1', 25)).toBe('port');
    expect(decide(p, '10.0.0.1', 25, 'mail.example')).toBe('private');

    const replaced = loadPolicy({ version: 1, replace: ['exceptions'] });
    expect(decide(replaced, '8.8.8.8', 53)).toBe('provider:google');
  });

  it('mode development in a file allows and keeps the operator tables for reporting', () => {
    const p = loadPolicy({ version: 1, mode: 'development', deny: ['1.1.1.0/24'] });
    expect(p.mode).toBe('development');
    expect(decide(p, '1.1.1.1', 443)).toBe('allow');
  });

  it('accepts comments, $schema and a byte-order mark', () => {
    const p = loadPolicy(file(`\ufeff{"$schema": "https://example.invalid/schema.json", "comment": "ok", "version": 1, "allow": [{"cidr": "1.2.3.0/24", "comment": "why"}]}`));
    expect(p.mode).toBe('production');
  });
});

describe('invalid policy files point at the fault', () => {
  const cases: Array<[string, string, RegExp, number, number]> = [
    ['trailing comma', '{\n  "version": 1,\n  "allow": ["1.2.3.0/24",]\n}', /unexpected character "\]" \(expected a value\)/, 3, 26],
    ['unterminated', '{\n  "version": 1,\n  "allow": [', /unexpected end of input/, 3, 13],
    ['garbage after the value', '{"version": 1}\n}', /after the end of the JSON value/, 2, 1],
    ['single quotes', "{\n 'version': 1}", /expected a string key/, 2, 2],
    ['duplicate key', '{\n  "version": 1,\n  "version": 1\n}', /duplicate key "version"/, 3, 3],
    ['comment', '{\n  // no comments in JSON\n  "version": 1\n}', /unexpected character "\/"/, 2, 3],
  ];
  it.each(cases)('syntax: %s', (_name, text, message, line, column) => {
    const path = file(text);
    const err = loadError(path);
    expect(err).toBeInstanceOf(SyntaxError);
    expect(err.code).toBe('ERR_SOCKGUARD_INVALID_POLICY');
    expect(err.message).toMatch(message);
    expect(err.message).toContain(`${path}:${line}:${column}`);
    expect([err.line, err.column]).toEqual([line, column]);
  });

  const schema: Array<[string, string, string, RegExp, number]> = [
    ['missing version', '{\n  "allow": []\n}', '$', /missing "version"/, 1],
    ['wrong version', '{\n  "version": 2\n}', '$.version', /unsupported version number 2/, 2],
    ['unknown key', '{\n  "version": 1,\n  "alow": []\n}', '$.alow', /unknown key "alow"/, 3],
    ['bad mode', '{\n  "version": 1,\n  "mode": "staging"\n}', '$.mode', /must be "production" or "development"/, 3],
    ['bad CIDR', '{\n  "version": 1,\n  "deny": [\n    "10.0.0.0/33"\n  ]\n}', '$.deny[0]', /prefix length "33"/, 4],
    ['host bits set', '{\n  "version": 1,\n  "deny": [{ "cidr": "1.2.3.4/24" }]\n}', '$.deny[0].cidr', /host bits set; the network is 1\.2\.3\.0\/24/, 3],
    ['octal in a CIDR', '{\n  "version": 1,\n  "deny": ["010.0.0.0/8"]\n}', '$.deny[0]', /dotted-decimal/, 3],
    ['bad rule name', '{\n  "version": 1,\n  "deny": [{ "cidr": "1.2.3.0/24", "rule": "Bad Rule" }]\n}', '$.deny[0].rule', /rule name/, 3],
    [
      'allow inside the special-purpose table without the flag',
      '{\n  "version": 1,\n  "allow": [\n    "127.0.0.1/32"\n  ]\n}',
      '$.allow[0]',
      /lies in the special-purpose table \(loopback, 127\.0\.0\.0\/8\).*openSpecialPurpose/,
      4,
    ],
    ['openSpecialPurpose not boolean', '{\n  "version": 1,\n  "allow": [{ "cidr": "127.0.0.0/8", "openSpecialPurpose": "yes" }]\n}', '$.allow[0].openSpecialPurpose', /true or false/, 3],
    ['port out of range', '{\n  "version": 1,\n  "deniedPorts": [25, 70000]\n}', '$.deniedPorts[1]', /port number/, 3],
    ['duplicate port', '{\n  "version": 1,\n  "deniedPorts": [25, 25]\n}', '$.deniedPorts[1]', /duplicate port 25/, 3],
    ['empty allow ports', '{\n  "version": 1,\n  "allow": [{ "cidr": "1.2.3.0/24", "ports": [] }]\n}', '$.allow[0].ports', /at least one port/, 3],
    ['replace the special table', '{\n  "version": 1,\n  "replace": ["special"]\n}', '$.replace[0]', /cannot be replaced/, 3],
    ['provider without source', '{\n  "version": 1,\n  "providers": [{ "name": "x" }]\n}', '$.providers[0]', /exactly one of "file", "prefixes" or "builtin"/, 3],
    ['provider bad name', '{\n  "version": 1,\n  "providers": [{ "name": "X Y", "prefixes": [] }]\n}', '$.providers[0].name', /provider name/, 3],
    ['provider bad prefix', '{\n  "version": 1,\n  "providers": [{ "name": "x", "prefixes": ["1.2.3.0/24", "nope"] }]\n}', '$.providers[0].prefixes[1]', /"nope" is not in CIDR notation/, 3],
    ['unknown builtin', '{\n  "version": 1,\n  "providers": [{ "name": "x", "builtin": "aws" }]\n}', '$.providers[0].builtin', /unknown built-in list/, 3],
    ['exception without ports', '{\n  "version": 1,\n  "exceptions": [{ "address": "8.8.8.8" }]\n}', '$.exceptions[0]', /missing "ports"/, 3],
    ['exception with both', '{\n  "version": 1,\n  "exceptions": [{ "address": "8.8.8.8", "host": "a.example", "ports": [1] }]\n}', '$.exceptions[0]', /exactly one of "address" or "host"/, 3],
    ['exception bad host', '{\n  "version": 1,\n  "exceptions": [{ "host": "not a host", "ports": [1] }]\n}', '$.exceptions[0].host', /not a valid host name/, 3],
    ['top level array', '[1]', '$', /must be an object, not an array/, 1],
  ];
  it.each(schema)('schema: %s', (_name, text, at, message, line) => {
    const path = file(text);
    const err = loadError(path);
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe('ERR_SOCKGUARD_INVALID_POLICY');
    expect(err.path).toBe(at);
    expect(err.line).toBe(line);
    expect(err.message).toMatch(message);
    expect(err.message).toContain(`${path}:${line}:`);
    expect(err.message).toContain(` at ${at}: `);
  });

  it('a missing file names the file and the errno code', () => {
    const err = loadError(join(dir, 'missing.json'));
    expect(err.code).toBe('ERR_SOCKGUARD_INVALID_POLICY');
    expect(err.message).toMatch(/cannot read .*missing\.json: ENOENT/);
  });

  it('a provider file with a bad prefix points into the provider file', () => {
    file('{\n  "prefixes": [\n    { "ipv4Prefix": "1.2.3.0/24" },\n    { "ipv4Prefix": "1.2.3.4/24" }\n  ]\n}', 'bad-provider.json');
    const err = loadError(file({ version: 1, providers: [{ name: 'bad', file: 'bad-provider.json' }] }));
    expect(err.code).toBe('ERR_SOCKGUARD_INVALID_POLICY');
    expect(err.message).toContain('bad-provider.json:4:');
    expect(err.path).toBe('$.prefixes[1].ipv4Prefix');
    expect(err.message).toMatch(/host bits set/);
  });

  it('a provider file with a syntax error points at its line', () => {
    file('[\n  "1.2.3.0/24"\n  "4.5.6.0/24"\n]', 'syntax-provider.json');
    const err = loadError(file({ version: 1, providers: [{ name: 'bad', file: 'syntax-provider.json' }] }));
    expect(err.message).toMatch(/provider list syntax-provider\.json:3:3: unexpected character/);
    expect(err.path).toBe('$.providers[0].file');
  });

  it('a missing provider file is reported at its entry', () => {
    const err = loadError(file({ version: 1, providers: [{ name: 'gone', file: 'nope.json' }] }));
    expect(err.message).toMatch(/at \$\.providers\[0\]\.file: cannot read .*nope\.json: ENOENT/);
  });

  it('policy objects report the JSON path without a position', () => {
    const err = loadError({ version: 1, allow: [{ cidr: '10.0.0.0/8' }] });
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toMatch(/^Invalid policy at \$\.allow\[0\]\.cidr: 10\.0\.0\.0\/8 lies in the special-purpose table \(private/);
    expect(err.line).toBeUndefined();
  });

  it('a "__proto__" key is an unknown key, not a prototype', () => {
    const err = loadError(file('{"version": 1, "__proto__": {"allow": []}}'));
    expect(err.message).toMatch(/unknown key "__proto__"/);
  });
});
