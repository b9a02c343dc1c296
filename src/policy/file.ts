/**
 * Operator policy files and objects, schema version 1 (documented in README.md beside this file).
 *
 * Every fault is reported with its JSON path, and for files with `file:line:column`, so an operator can fix a
 * policy without guessing. Unknown keys are errors: a misspelt `"alow"` must not silently leave a policy
 * stricter or looser than intended.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { codedError, codes, describeValue } from '../errors.js';
import { SPECIAL_V4, SPECIAL_V6, googlePrefixes, providerPrefixesOf } from './defaults.js';
import { type PolicyConfig, defaultConfig } from './engine.js';
import { childPath, JsonSyntaxError, lineColumn, parseJson, type Positions } from './json.js';
import { normaliseName } from './literal.js';
import { contains, parsePrefix, type Prefix, PrefixError } from './tables.js';

export const SCHEMA_VERSION = 1;

export interface PolicyError extends Error {
  code: string;
  /** JSON path of the fault (`$.allow[0].cidr`), when it is inside the document. */
  path?: string;
  file?: string;
  line?: number;
  column?: number;
}

/** Where the document came from: a file (text + positions for line:column) or an object given in code. */
interface Source {
  file?: string;
  text?: string;
  positions?: Positions;
  /** Directory that relative provider paths are resolved against. */
  baseDir: string;
}

function policyError(Ctor: new (m: string) => Error, src: Source, at: string | undefined, message: string): PolicyError {
  let where = src.file === undefined ? 'Invalid policy' : `Invalid policy file ${src.file}`;
  let line: number | undefined;
  let column: number | undefined;
  if (src.text !== undefined && src.positions !== undefined && at !== undefined) {
    // A missing key has no position: point at the closest enclosing value that has one.
    let p: string | undefined = at;
    while (p !== undefined && !src.positions.has(p)) p = parentOf(p);
    if (p !== undefined) ({ line, column } = lineColumn(src.text, src.positions.get(p)!));
  }
  if (line !== undefined) where += `:${line}:${column}`;
  if (at !== undefined) where += ` at ${at}`;
  const err = codedError(Ctor, codes.INVALID_POLICY, `${where}: ${message}`) as PolicyError;
  if (at !== undefined) err.path = at;
  if (src.file !== undefined) err.file = src.file;
  if (line !== undefined) {
    err.line = line;
    err.column = column;
  }
  return err;
}

function parentOf(p: string): string | undefined {
  const m = /^(.*)(\.[A-Za-z_$][A-Za-z0-9_$]*|\[[^\]]*\])$/.exec(p);
  return m === null ? undefined : m[1];
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  // JSON.stringify throws on bigints and answers undefined for symbols and functions.
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? `${typeof v} ${JSON.stringify(v)}` : `${typeof v} ${describeValue(v)}`;
}

const TOP_KEYS = ['$schema', 'comment', 'version', 'mode', 'replace', 'deny', 'allow', 'deniedPorts', 'providers', 'exceptions'] as const;
const REPLACEABLE = ['deniedPorts', 'providers', 'exceptions'] as const;
const RULE_NAME = /^[a-z][a-z0-9._:-]{0,63}$/;
const PROVIDER_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

const specialPrefixes = (): Array<{ prefix: Prefix; rule: string | null }> =>
  [...SPECIAL_V4, ...SPECIAL_V6].map((e) => ({ prefix: parsePrefix(e.cidr), rule: e.rule }));

class Validator {
  constructor(private readonly src: Source) {}

  fail(at: string | undefined, message: string): never {
    throw policyError(TypeError, this.src, at, message);
  }

  object(v: unknown, at: string, keys: readonly string[]): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(at, `must be an object, not ${kindOf(v)}`);
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!keys.includes(k)) this.fail(childPath(at, k), `unknown key ${JSON.stringify(k)} (expected one of ${keys.join(', ')})`);
    }
    if ('comment' in o && typeof o.comment !== 'string') this.fail(childPath(at, 'comment'), 'must be a string');
    return o;
  }

  array(v: unknown, at: string): unknown[] {
    if (!Array.isArray(v)) this.fail(at, `must be an array, not ${kindOf(v)}`);
    return v;
  }

  string(v: unknown, at: string): string {
    if (typeof v !== 'string') this.fail(at, `must be a string, not ${kindOf(v)}`);
    return v;
  }

  prefix(v: unknown, at: string, bare: boolean): Prefix {
    const s = this.string(v, at);
    try {
      return parsePrefix(s, bare);
    } catch (err) {
      if (err instanceof PrefixError) this.fail(at, err.message);
      throw err;
    }
  }

  ports(v: unknown, at: string, allowEmpty: boolean): number[] {
    const list = this.array(v, at);
    if (list.length === 0 && !allowEmpty) this.fail(at, 'must list at least one port');
    const seen = new Set<number>();
    list.forEach((p, i) => {
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) {
        this.fail(childPath(at, i), `must be a port number (integer 1..65535), not ${kindOf(p)}`);
      }
      if (seen.has(p)) this.fail(childPath(at, i), `duplicate port ${p}`);
      seen.add(p);
    });
    return [...seen];
  }

  providerFile(file: string, at: string): string[] {
    const abs = path.resolve(this.src.baseDir, file);
    const text = readText(abs, this.src, at);
    let located;
    try {
      located = parseJson(text);
    } catch (err) {
      if (err instanceof JsonSyntaxError) {
        const { line, column } = lineColumn(text, err.offset);
        this.fail(at, `provider list ${file}:${line}:${column}: ${err.message}`);
      }
      throw err;
    }
    let prefixes: string[];
    try {
      prefixes = providerPrefixesOf(located.value, file);
    } catch (err) {
      return this.fail(at, `provider list ${(err as Error).message}`);
    }
    const sub = new Validator({ file: path.relative(this.src.baseDir, abs) || file, text, positions: located.positions, baseDir: path.dirname(abs) });
    const list = (Array.isArray(located.value) ? located.value : (located.value as { prefixes: unknown[] }).prefixes) as unknown[];
    const base = Array.isArray(located.value) ? '$' : '$.prefixes';
    prefixes.forEach((p, i) => {
      const item = list[i];
      const itemPath = typeof item === 'string' ? childPath(base, i) : childPath(childPath(base, i), (item as { ipv4Prefix?: unknown }).ipv4Prefix !== undefined ? 'ipv4Prefix' : 'ipv6Prefix');
      sub.prefix(p, itemPath, false);
    });
    return prefixes;
  }
}

function readText(abs: string, src: Source, at: string | undefined): string {
  try {
    return readFileSync(abs, 'utf8');
  } catch (err) {
    const e = policyError(Error, src, at, `cannot read ${abs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
}

/** Validates a version-1 policy document and merges it with the built-in defaults. */
function compileDocument(doc: unknown, src: Source): PolicyConfig {
  const v = new Validator(src);
  const o = v.object(doc, '$', TOP_KEYS);
  if (!('version' in o)) v.fail('$', `missing "version" (this sockguard reads policy schema version ${SCHEMA_VERSION})`);
  if (o.version !== SCHEMA_VERSION) v.fail('$.version', `unsupported version ${kindOf(o.version)}; this sockguard reads version ${SCHEMA_VERSION}`);
  if ('$schema' in o) v.string(o.$schema, '$.$schema');

  let mode: 'production' | 'development' = 'production';
  if ('mode' in o) {
    if (o.mode !== 'production' && o.mode !== 'development') v.fail('$.mode', `must be "production" or "development", not ${kindOf(o.mode)}`);
    mode = o.mode as 'production' | 'development';
  }

  const replace = new Set<string>();
  if ('replace' in o) {
    v.array(o.replace, '$.replace').forEach((r, i) => {
      const at = childPath('$.replace', i);
      if (typeof r !== 'string' || !(REPLACEABLE as readonly string[]).includes(r)) {
        v.fail(at, `must be one of ${REPLACEABLE.join(', ')} (the special-purpose table cannot be replaced; open parts of it with an allow entry and "openSpecialPurpose": true), not ${kindOf(r)}`);
      }
      if (replace.has(r as string)) v.fail(at, `duplicate ${JSON.stringify(r)}`);
      replace.add(r as string);
    });
  }

  const base = defaultConfig(mode);
  const config: PolicyConfig = {
    mode,
    deny: [],
    allow: [],
    deniedPorts: replace.has('deniedPorts') ? [] : base.deniedPorts,
    providers: replace.has('providers') ? [] : base.providers,
    exceptions: replace.has('exceptions') ? [] : base.exceptions,
  };

  if ('deny' in o) {
    v.array(o.deny, '$.deny').forEach((e, i) => {
      const at = childPath('$.deny', i);
      if (typeof e === 'string') {
        config.deny.push({ cidr: v.prefix(e, at, true).text, rule: 'operator' });
        return;
      }
      const d = v.object(e, at, ['cidr', 'rule', 'reason', 'comment']);
      if (!('cidr' in d)) v.fail(at, 'missing "cidr"');
      const prefix = v.prefix(d.cidr, childPath(at, 'cidr'), true);
      let rule = 'operator';
      if ('rule' in d) {
        rule = v.string(d.rule, childPath(at, 'rule'));
        if (!RULE_NAME.test(rule)) v.fail(childPath(at, 'rule'), `rule name ${JSON.stringify(rule)} must match ${RULE_NAME.source}`);
      }
      const reason = 'reason' in d ? v.string(d.reason, childPath(at, 'reason')) : undefined;
      config.deny.push({ cidr: prefix.text, rule, reason });
    });
  }

  if ('allow' in o) {
    const specials = specialPrefixes();
    v.array(o.allow, '$.allow').forEach((e, i) => {
      const at = childPath('$.allow', i);
      let cidrAt = at;
      let prefix: Prefix;
      let ports: number[] | null = null;
      let openSpecialPurpose = false;
      if (typeof e === 'string') {
        prefix = v.prefix(e, at, true);
      } else {
        const a = v.object(e, at, ['cidr', 'ports', 'openSpecialPurpose', 'comment']);
        if (!('cidr' in a)) v.fail(at, 'missing "cidr"');
        cidrAt = childPath(at, 'cidr');
        prefix = v.prefix(a.cidr, cidrAt, true);
        if ('ports' in a) ports = v.ports(a.ports, childPath(at, 'ports'), false);
        if ('openSpecialPurpose' in a) {
          if (typeof a.openSpecialPurpose !== 'boolean') v.fail(childPath(at, 'openSpecialPurpose'), `must be true or false, not ${kindOf(a.openSpecialPurpose)}`);
          openSpecialPurpose = a.openSpecialPurpose as boolean;
        }
      }
      if (!openSpecialPurpose) {
        // An allow entry never opens the special-purpose table by itself. One that lies wholly inside it could
        // do nothing at all, which is certainly not what the operator meant: say so instead of ignoring it.
        let inner: { prefix: Prefix; rule: string | null } | undefined;
        for (const s of specials) if (contains(s.prefix, prefix) && (inner === undefined || s.prefix.len > inner.prefix.len)) inner = s;
        if (inner !== undefined && inner.rule !== null) {
          v.fail(
            cidrAt,
            `${prefix.text} lies in the special-purpose table (${inner.rule}, ${inner.prefix.text}); an allow entry opens it only with "openSpecialPurpose": true`,
          );
        }
      }
      config.allow.push({ cidr: prefix.text, ports, openSpecialPurpose });
    });
  }

  if ('deniedPorts' in o) {
    const ports = v.ports(o.deniedPorts, '$.deniedPorts', true);
    config.deniedPorts = [...new Set([...config.deniedPorts, ...ports])];
  }

  if ('providers' in o) {
    v.array(o.providers, '$.providers').forEach((e, i) => {
      const at = childPath('$.providers', i);
      const p = v.object(e, at, ['name', 'file', 'prefixes', 'builtin', 'comment']);
      if (!('name' in p)) v.fail(at, 'missing "name"');
      const name = v.string(p.name, childPath(at, 'name'));
      if (!PROVIDER_NAME.test(name)) v.fail(childPath(at, 'name'), `provider name ${JSON.stringify(name)} must match ${PROVIDER_NAME.source}`);
      const sources = (['file', 'prefixes', 'builtin'] as const).filter((k) => k in p);
      if (sources.length !== 1) v.fail(at, 'needs exactly one of "file", "prefixes" or "builtin"');
      let prefixes: string[];
      if ('file' in p) {
        prefixes = v.providerFile(v.string(p.file, childPath(at, 'file')), childPath(at, 'file'));
      } else if ('builtin' in p) {
        if (p.builtin !== 'google') v.fail(childPath(at, 'builtin'), `unknown built-in list ${kindOf(p.builtin)} (available: "google")`);
        prefixes = googlePrefixes();
      } else {
        prefixes = v.array(p.prefixes, childPath(at, 'prefixes')).map((x, j) => v.prefix(x, childPath(childPath(at, 'prefixes'), j), false).text);
      }
      config.providers.push({ name, prefixes });
    });
  }

  if ('exceptions' in o) {
    v.array(o.exceptions, '$.exceptions').forEach((e, i) => {
      const at = childPath('$.exceptions', i);
      const x = v.object(e, at, ['address', 'host', 'ports', 'comment']);
      if (('address' in x) === ('host' in x)) v.fail(at, 'needs exactly one of "address" or "host"');
      if (!('ports' in x)) v.fail(at, 'missing "ports" (an exception always names its ports; use an allow entry for all ports)');
      const ports = v.ports(x.ports, childPath(at, 'ports'), false);
      if ('address' in x) {
        config.exceptions.push({ address: v.prefix(x.address, childPath(at, 'address'), true).text, ports });
      } else {
        const host = v.string(x.host, childPath(at, 'host'));
        const name = normaliseName(host);
        if (name === null) v.fail(childPath(at, 'host'), `${JSON.stringify(host)} is not a valid host name`);
        config.exceptions.push({ host: name as string, ports });
      }
    });
  }
  return config;
}

/** Reads, parses and validates a policy file. Relative provider paths are resolved against its directory. */
export function configFromFile(file: string): PolicyConfig {
  const abs = path.resolve(file);
  const src: Source = { file, baseDir: path.dirname(abs) };
  const text = readText(abs, src, undefined);
  let located;
  try {
    located = parseJson(text);
  } catch (err) {
    if (err instanceof JsonSyntaxError) {
      const { line, column } = lineColumn(text, err.offset);
      const e = codedError(SyntaxError, codes.INVALID_POLICY, `Invalid policy file ${file}:${line}:${column}: ${err.message}`) as PolicyError;
      Object.assign(e, { file, line, column });
      throw e;
    }
    throw err;
  }
  return compileDocument(located.value, { ...src, text, positions: located.positions });
}

/** Validates a policy given as an object. Relative provider paths are resolved against the working directory. */
export function configFromObject(doc: unknown): PolicyConfig {
  return compileDocument(doc, { baseDir: process.cwd() });
}
