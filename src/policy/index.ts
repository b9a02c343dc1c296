/**
 * sockguard's egress policy (docs/policy.md): validation and normalisation of destinations, the production deny
 * tables, development mode, operator policy files, and resolution under the policy.
 */
import { codedError, codes } from '../errors.js';
import { CompiledPolicy, defaultCompiledPolicy, PolicyEngine } from './engine.js';
import { configFromFile, configFromObject } from './file.js';
import type { Policy } from './types.js';

export type { Decision, Denied, Family, Policy, Target, Verdict } from './types.js';
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
 *   README.md in this directory), a path to a JSON policy file, or an existing policy (returned as is).
 * @throws `ERR_SOCKGUARD_INVALID_POLICY` for an invalid spec, document or file; the message names the JSON path
 *   of the fault and, for files, `file:line:column`.
 * @default 'production'
 */
export function loadPolicy(spec?: unknown): Policy {
  if (spec === undefined || spec === 'production') return new PolicyEngine(defaultCompiledPolicy(), 'production');
  if (spec === 'development') return new PolicyEngine(defaultCompiledPolicy(), 'development');
  if (typeof spec === 'string') {
    if (spec.trim() === '') {
      throw codedError(TypeError, codes.INVALID_POLICY, 'The policy must be "production", "development" or a path to a policy file; received an empty string');
    }
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
