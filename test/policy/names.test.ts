/**
 * A string policy is a built-in name or a file path (it contains / or ends in .json): anything else is most likely
 * a misspelt name, reported as such before any file is looked for, from the option, SOCKGUARD_POLICY and --policy.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { main, type CliIO } from '../../src/cli.js';
import { SocketLayer } from '../../src/index.js';
import { loadPolicy } from '../../src/policy/index.js';

const saved = process.env.SOCKGUARD_POLICY;
afterEach(() => {
  if (saved === undefined) delete process.env.SOCKGUARD_POLICY;
  else process.env.SOCKGUARD_POLICY = saved;
});

const invalid = (message: string) => expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_POLICY', message });

describe('an unknown policy name', () => {
  it.each([
    ['developement', 'development'],
    ['Development', 'development'],
    ['dev', 'development'],
    ['prodution', 'production'],
    ['prod', 'production'],
  ])('%j suggests %j', (name, near) => {
    expect(() => new SocketLayer({ policy: name })).toThrow(
      invalid(`Unknown policy "${name}": did you mean '${near}'? a file path must contain / or end in .json`),
    );
  });

  it('with nothing close, names both', () => {
    expect(() => loadPolicy('strict')).toThrow(
      invalid(`Unknown policy "strict": expected 'production' or 'development'; a file path must contain / or end in .json`),
    );
  });

  it('SOCKGUARD_POLICY is named as the source', () => {
    process.env.SOCKGUARD_POLICY = 'developement';
    expect(() => new SocketLayer()).toThrow(
      invalid(`Unknown SOCKGUARD_POLICY "developement": did you mean 'development'? a file path must contain / or end in .json`),
    );
  });

  it('paths are still files: a missing one is reported as a file', () => {
    expect(() => loadPolicy('policy.json')).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_POLICY', message: expect.stringContaining('policy.json') }));
    expect(() => loadPolicy('./strict')).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_POLICY', message: expect.not.stringContaining('did you mean') }));
  });

  it('sockguard check --policy names the flag, exit status 2', async () => {
    let out = '';
    let err = '';
    const io: CliIO = { stdout: (s) => (out += s), stderr: (s) => (err += s), env: {} };
    expect(await main(['check', '8.8.8.8:53', '--policy', 'developement'], io)).toBe(2);
    expect(out).toBe('');
    expect(err).toContain(`Unknown --policy "developement": did you mean 'development'?`);
  });
});
