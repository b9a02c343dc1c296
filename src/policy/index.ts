/**
 * sockguard's egress policy (docs/policy.md): validation and normalisation of destinations, the production deny
 * tables, development mode, operator policy files, and resolution under the policy.
 */
import { sep } from 'node:path';
import { codedError, codes, describeValue } from '../errors.js';
import { CompiledPolicy, defaultCompiledPolicy, PolicyEngine } from './engine.js';
import { configFromFile, configFromObject } from './file.js';
import { verdictOf, vet, type Resolver, type Vetted } from './resolve.js';
import type { Policy, ProductionVerdict } from './types.js';

export type { Decision, Denied, Family, Policy, PolicyObject, PolicySpec, ProductionVerdict, Target, Verdict } from './types.js';
export { CompiledPolicy, PolicyEngine, parseTarget, validatePort, type DenyMessage, type PolicyConfig } from './engine.js';
export { SCHEMA_VERSION, type PolicyError } from './file.js';
export {
  createLookup,
  denialError,
  lookupService,
  reverse,
  systemResolver,
  verdictOf,
  vet,
  vetTarget,
  type Resolver,
  type Vetted,
} from './resolve.js';

function isPolicyLike(v: object): v is Policy {
  const p = v as Partial<Policy>;
  return typeof p.parse === 'function' && typeof p.evaluate === 'function' && typeof p.evaluateName === 'function';
}

/**
 * Builds a policy.
 *
 * @param spec `'production'` (the default), `'development'`, a policy document (schema version 1, see
 *   README.md in this directory), a path to a JSON policy file (it contains `/` or ends in `.json`), or an
 *   existing policy (returned as is).
 * @param source what the spec came from, for the message of an unknown name (`SOCKGUARD_POLICY`, `--policy`).
 * @throws `ERR_SOCKGUARD_INVALID_POLICY` for an invalid spec, document or file; the message names the JSON path
 *   of the fault and, for files, `file:line:column`.
 * @default 'production'
 */
export function loadPolicy(spec?: unknown, source = 'policy'): Policy {
  if (spec === undefined || spec === 'production') return new PolicyEngine(defaultCompiledPolicy(), 'production');
  if (spec === 'development') return new PolicyEngine(defaultCompiledPolicy(), 'development');
  if (typeof spec === 'string') {
    if (spec.trim() === '') {
      throw codedError(TypeError, codes.INVALID_POLICY, 'The policy must be "production", "development" or a path to a policy file; received an empty string');
    }
    if (!spec.includes('/') && !spec.includes(sep) && !spec.endsWith('.json')) throw unknownName(spec, source);
    const config = configFromFile(spec);
    return new PolicyEngine(new CompiledPolicy(config), config.mode);
  }
  if (spec !== null && typeof spec === 'object') {
    if (spec instanceof PolicyEngine || isPolicyLike(spec)) return spec as Policy;
    const config = configFromObject(spec);
    return new PolicyEngine(new CompiledPolicy(config), config.mode);
  }
  throw codedError(
    TypeError,
    codes.INVALID_POLICY,
    `The policy must be "production", "development", a policy object or a path to a policy file; received ${spec === null ? 'null' : typeof spec}`,
  );
}

const NAMES = ['production', 'development'] as const;

/** A string that is neither a built-in name nor a path: most likely a misspelt name, so say which one. */
function unknownName(spec: string, source: string): Error {
  const lower = spec.trim().toLowerCase();
  const near = NAMES.find((n) => n === lower || distance(n, lower) <= 3 || (lower.length >= 3 && n.startsWith(lower)));
  const hint = near === undefined ? "expected 'production' or 'development';" : `did you mean '${near}'?`;
  return codedError(
    TypeError,
    codes.INVALID_POLICY,
    `Unknown ${source} ${describeValue(spec)}: ${hint} a file path must contain / or end in .json`,
  );
}

/** Levenshtein distance, for names of a few characters. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * Vets a destination and, under a development-mode policy, what production would decide for the same addresses:
 * names are resolved once for both.
 */
export async function vetWithProduction(
  policy: Policy,
  host: unknown,
  port: unknown,
  resolver: Resolver,
): Promise<{ vetted: Vetted; production?: ProductionVerdict }> {
  if (policy.mode !== 'development' || !(policy instanceof PolicyEngine)) return { vetted: await vet(policy, host, port, resolver) };
  const answers = new Map<string, ReturnType<Resolver>>();
  const once: Resolver = (name) => {
    let a = answers.get(name);
    if (a === undefined) answers.set(name, (a = resolver(name)));
    return a;
  };
  const vetted = await vet(policy, host, port, once);
  const p = verdictOf(await vet(policy.asProduction(), host, port, once), Number(port));
  return { vetted, production: p.allowed ? { allowed: true } : { allowed: false, rule: p.rule, reason: p.reason } };
}
