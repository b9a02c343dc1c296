/**
 * Resolution under the policy (docs/service.md#resolution): names are resolved once, by sockguard, every answer is evaluated,
 * and only evaluated addresses are handed on. Nothing here resolves twice, so a DNS server that answers
 * differently on each query (rebinding) cannot change what was checked.
 */
import dns from 'node:dns';
import { promisify } from 'node:util';
import { codedError, codes, deniedError, describeValue, systemError, type SockguardSystemError } from '../errors.js';
import { validatePort } from './engine.js';
import * as lit from './literal.js';
import type { Family, Policy, Target, Verdict } from './types.js';

export type Resolver = (name: string) => Promise<Array<{ address: string; family: Family }>>;

/** `dns.lookup` for both families, in the resolver's order; failures keep dns' codes (`ENOTFOUND`, ...). */
export const systemResolver: Resolver = async (name) => {
  const answers = await dns.promises.lookup(name, { all: true, family: 0, order: 'verbatim' });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

export interface Vetted {
  target: Target;
  /** Allowed addresses, in resolver order, canonical and deduplicated. */
  allowed: Array<{ address: string; family: Family }>;
  denied: Array<{ address: string; family: Family; rule: string; reason: string }>;
  /** Set when the name itself was denied before resolution (`localhost`); then nothing was resolved. */
  nameDenied?: { rule: string; reason: string };
}

function notFound(name: string): SockguardSystemError & { hostname: string } {
  const err = systemError('ENOTFOUND', { syscall: 'getaddrinfo', address: name }) as SockguardSystemError & { hostname: string };
  err.errno = -3008; // EAI_NONAME as Node reports it
  err.hostname = name;
  return err;
}

/** Canonical text of a resolver answer, or null when it is not an address. */
function canonicalAnswer(address: unknown): { address: string; family: Family } | null {
  if (typeof address !== 'string') return null;
  const f = lit.parseAddress(address);
  if (f === 4) return { address: lit.out.canonical ? address : lit.formatV4(lit.out.v4), family: 4 };
  if (f === 6) {
    const { w0, w1, w2, w3 } = lit.out;
    let text = lit.formatV6(w0, w1, w2, w3);
    if (lit.out.zoneStart >= 0 && lit.needsZone(w0)) text += `%${address.slice(lit.out.zoneStart, lit.out.zoneEnd)}`;
    return { address: text, family: 6 };
  }
  return null;
}

/**
 * Evaluates an already parsed target. `port` 0 means "not known" (bare lookups): port rules are skipped and
 * port-scoped openings do not apply.
 */
export async function vetTarget(policy: Policy, target: Target, port: number, resolver: Resolver): Promise<Vetted> {
  if (target.kind === 'ip') {
    const d = policy.evaluate(target.address, target.family, port);
    const entry = { address: target.address, family: target.family };
    return d.allowed ? { target, allowed: [entry], denied: [] } : { target, allowed: [], denied: [{ ...entry, rule: d.rule, reason: d.reason }] };
  }
  const nd = policy.evaluateName(target.name, port);
  if (nd !== null && !nd.allowed) return { target, allowed: [], denied: [], nameDenied: { rule: nd.rule, reason: nd.reason } };
  const answers = await resolver(target.name);
  if (!Array.isArray(answers) || answers.length === 0) throw notFound(target.name);
  const v: Vetted = { target, allowed: [], denied: [] };
  const seen = new Set<string>();
  for (const a of answers) {
    const raw = (a as { address?: unknown } | null)?.address;
    const c = canonicalAnswer(raw);
    if (c === null) {
      // A resolver answer that is not an address can never be connected to: record it, fail closed.
      v.denied.push({ address: typeof raw === 'string' ? raw : describeValue(raw), family: (a as { family?: unknown })?.family === 6 ? 6 : 4, rule: 'invalid-address', reason: 'resolver returned something that is not an IP address' });
      continue;
    }
    if (seen.has(c.address)) continue;
    seen.add(c.address);
    const d = policy.evaluate(c.address, c.family, port, target.name);
    if (d.allowed) v.allowed.push(c);
    else v.denied.push({ ...c, rule: d.rule, reason: d.reason });
  }
  return v;
}

/**
 * Validates, resolves (names only; IP literals never reach the resolver) and evaluates every address, once.
 * Malformed input rejects with the TypeError/RangeError of {@link Policy.parse} before any I/O; resolver
 * failures reject with the resolver's error.
 */
export async function vet(policy: Policy, host: unknown, port: unknown, resolver: Resolver = systemResolver): Promise<Vetted> {
  const target = policy.parse(host, port);
  return vetTarget(policy, target, validatePort(port), resolver);
}

/** The `layer.check()` verdict of a vetting: the first allowed address, or the first reason for denial. */
export function verdictOf(v: Vetted, port: number): Verdict {
  const ok = v.allowed[0];
  if (ok !== undefined) return { allowed: true, address: ok.address, family: ok.family, port };
  if (v.nameDenied !== undefined) return { allowed: false, rule: v.nameDenied.rule, reason: v.nameDenied.reason, port };
  const d = v.denied[0];
  if (d !== undefined) return { allowed: false, rule: d.rule, reason: d.reason, address: d.address, port };
  return { allowed: false, rule: 'invalid-address', reason: 'no address to connect to', port };
}

/** The EACCES error for a vetting with no allowed address (`connect EACCES 10.0.0.1:80 (denied: private)`). */
export function denialError(v: Vetted, port: number, syscall = 'connect'): SockguardSystemError {
  const verdict = verdictOf(v, port);
  if (verdict.allowed) throw new Error('denialError() called for an allowed destination');
  const address = verdict.address ?? (v.target.kind === 'name' ? v.target.name : v.target.address);
  return deniedError(syscall, address, port, verdict.rule, verdict.reason);
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address?: unknown, family?: number) => void;

interface LookupRequest {
  family: 0 | 4 | 6;
  all: boolean;
  order: 'verbatim' | 'ipv4first' | 'ipv6first';
  port: number;
}

function lookupOptions(options: unknown): LookupRequest {
  const req: LookupRequest = { family: 0, all: false, order: 'verbatim', port: 0 };
  let family: unknown = 0;
  if (typeof options === 'number') family = options;
  else if (options !== null && typeof options === 'object') {
    const o = options as { family?: unknown; all?: unknown; order?: unknown; verbatim?: unknown; port?: unknown };
    family = o.family ?? 0;
    req.all = o.all === true;
    if (o.order === 'ipv4first' || o.order === 'ipv6first' || o.order === 'verbatim') req.order = o.order;
    else if (o.verbatim === false) req.order = 'ipv4first';
    if (o.port !== undefined && o.port !== 0) req.port = validatePort(o.port);
  } else if (options !== undefined) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "options" argument must be an object or a family number');
  }
  if (family === 'IPv4') family = 4;
  else if (family === 'IPv6') family = 6;
  if (family !== 0 && family !== 4 && family !== 6) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The "family" option must be one of 0, 4, 6. Received ${describeValue(family)}`);
  }
  req.family = family;
  return req;
}

async function answer(policy: Policy, resolver: Resolver, hostname: string, req: LookupRequest): Promise<Array<{ address: string; family: Family }>> {
  const target = policy.parse(hostname, req.port === 0 ? 1 : req.port);
  const v = await vetTarget(policy, target, req.port, resolver);
  let list = req.family === 0 ? v.allowed : v.allowed.filter((a) => a.family === req.family);
  if (list.length === 0) {
    const denied = req.family === 0 ? v.denied : v.denied.filter((a) => a.family === req.family);
    if (v.nameDenied !== undefined || denied.length > 0) {
      const first = denied[0];
      const rule = v.nameDenied?.rule ?? first!.rule;
      const reason = v.nameDenied?.reason ?? first!.reason;
      const err = deniedError('lookup', first?.address ?? hostname, req.port, rule, reason) as SockguardSystemError & { hostname: string };
      err.hostname = hostname;
      throw err;
    }
    throw notFound(hostname);
  }
  if (req.order !== 'verbatim') {
    const firstFamily = req.order === 'ipv4first' ? 4 : 6;
    list = [...list.filter((a) => a.family === firstFamily), ...list.filter((a) => a.family !== firstFamily)];
  }
  return list;
}

/**
 * A `dns.lookup`-compatible function (callback style; options as a family number or an object with `family`,
 * `all`, `order`/`verbatim`) that answers only with addresses the policy allows, so it can be passed as the
 * `lookup` option of `net`, `http` or undici. When every address is denied it calls back an `EACCES` error
 * carrying `rule`.
 *
 * A lookup does not know the port it is for: port rules and port-scoped exceptions (8.8.8.8 on 53,
 * smtp.gmail.com on 465/587) are applied only when the options carry a `port` (a sockguard extension), and
 * otherwise fail closed. The connection made with the answer is still checked by the layer with its port.
 */
export function createLookup(policy: Policy, resolver: Resolver = systemResolver): typeof dns.lookup {
  function lookup(hostname: unknown, options: unknown, callback?: unknown): void {
    if (typeof options === 'function' && callback === undefined) {
      callback = options;
      options = undefined;
    }
    if (typeof callback !== 'function') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "callback" argument must be of type function');
    }
    if (typeof hostname !== 'string') {
      throw codedError(TypeError, codes.INVALID_HOST, `The "hostname" argument must be a string. Received ${typeof hostname}`);
    }
    const req = lookupOptions(options);
    const cb = callback as LookupCallback;
    answer(policy, resolver, hostname, req).then(
      (list) => {
        if (req.all) cb(null, list);
        else cb(null, list[0]!.address, list[0]!.family);
      },
      (err: NodeJS.ErrnoException) => cb(err),
    );
  }
  Object.defineProperty(lookup, promisify.custom, {
    value: async (hostname: unknown, options?: unknown) => {
      if (typeof hostname !== 'string') {
        throw codedError(TypeError, codes.INVALID_HOST, `The "hostname" argument must be a string. Received ${typeof hostname}`);
      }
      const req = lookupOptions(options);
      const list = await answer(policy, resolver, hostname, req);
      return req.all ? list : list[0];
    },
  });
  return lookup as unknown as typeof dns.lookup;
}

function notSupported(syscall: string, args: unknown[]): Promise<never> {
  const err = systemError('ENOTSUP', { syscall, detail: 'reverse lookups are not provided by sockguard' });
  const p = Promise.reject(err);
  const cb = args[args.length - 1];
  if (typeof cb === 'function') {
    // Callback style: report there, and keep the returned promise from becoming an unhandled rejection.
    p.catch(() => {});
    process.nextTick(cb as (e: Error) => void, err);
  }
  return p;
}

/** Reverse service lookups (`dns.lookupService`) are not provided: rejects (or calls back) with `ENOTSUP`. */
export function lookupService(...args: unknown[]): Promise<never> {
  return notSupported('getnameinfo', args);
}

/** Reverse address lookups (`dns.reverse`) are not provided: rejects (or calls back) with `ENOTSUP`. */
export function reverse(...args: unknown[]): Promise<never> {
  return notSupported('getHostByAddr', args);
}
