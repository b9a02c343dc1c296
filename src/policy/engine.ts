/**
 * The policy engine: input validation, the compiled address tables and the evaluation order of docs/policy.md#evaluation-order.
 *
 * For one address the tiers are checked in this order, the first that denies wins:
 *   1. special-purpose table (opened only by an allow entry with `openSpecialPurpose`),
 *   2. operator deny entries (opened by a more specific allow entry),
 *   3. provider lists (opened by an allow entry, an address exception or, for names sockguard resolved itself,
 *      a host exception, each on its ports),
 *   4. denied ports (opened only by an allow entry or exception that lists the port explicitly).
 * An IPv6 address embedding an IPv4 address is judged on both: the IPv6 table first, then the embedded address
 * against the IPv4 tables, tier by tier.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { codedError, codes } from '../errors.js';
import { DEFAULT_DENIED_PORTS, DEFAULT_EXCEPTIONS, type Exception, PORT_REASONS, SPECIAL_V4, SPECIAL_V6, googlePrefixes, isGooglePrefixes } from './defaults.js';
import * as lit from './literal.js';
import { flatten, parsePrefix, type Prefix, type Tagged, V4Table, V6Table } from './tables.js';
import type { Decision, Denied, Family, Policy, Target } from './types.js';

/** A policy after validation: what a policy file or object compiles from. */
export interface PolicyConfig {
  mode: 'production' | 'development';
  deny: Array<{ cidr: string; rule: string; reason?: string }>;
  allow: Array<{ cidr: string; ports: number[] | null; openSpecialPurpose: boolean }>;
  deniedPorts: number[];
  providers: Array<{ name: string; prefixes: string[] }>;
  exceptions: Exception[];
}

/** The built-in production configuration. */
export function defaultConfig(mode: 'production' | 'development' = 'production'): PolicyConfig {
  return {
    mode,
    deny: [],
    allow: [],
    deniedPorts: [...DEFAULT_DENIED_PORTS],
    providers: [{ name: 'google', prefixes: googlePrefixes() }],
    exceptions: DEFAULT_EXCEPTIONS.map((e) => ({ ...e, ports: [...e.ports] })),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Input validation

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return typeof v === 'object' ? 'an object' : `type ${typeof v}`;
}

function invalidHost(host: string, why: string): TypeError & { code: string } {
  return codedError(TypeError, codes.INVALID_HOST, `Invalid host ${describe(host)}: ${why}`);
}

/** Validates a port: an integer 1..65535, or a string of ASCII digits with that value (as `net` accepts). */
export function validatePort(port: unknown): number {
  if (typeof port === 'number') {
    if (Number.isInteger(port) && port >= 1 && port <= 65535) return port;
  } else if (typeof port === 'string') {
    if (/^[0-9]{1,5}$/.test(port)) {
      const n = Number(port);
      if (n >= 1 && n <= 65535) return n;
    }
  } else {
    throw codedError(TypeError, codes.INVALID_PORT, `The "port" argument must be a number or a numeric string. Received ${describe(port)}`);
  }
  throw codedError(RangeError, codes.INVALID_PORT, `The "port" argument must be an integer in 1..65535. Received ${describe(port)}`);
}

const MAX_HOST = 300;

/**
 * Validates and normalises a host + port (docs/policy.md#evaluation-order, steps 1–2) without any I/O. IP literals in every form
 * `getaddrinfo` accepts become their canonical address; names are lower-cased with one trailing dot removed.
 */
export function parseTarget(host: unknown, port: unknown): Target {
  validatePort(port);
  if (typeof host !== 'string') {
    throw codedError(TypeError, codes.INVALID_HOST, `The "host" argument must be a string. Received ${describe(host)}`);
  }
  const len = host.length;
  if (len === 0) throw invalidHost(host, 'empty');
  if (len > MAX_HOST) throw invalidHost(host, `longer than ${MAX_HOST} characters`);
  const c0 = host.charCodeAt(0);
  if (c0 === 91 || host.indexOf(':') >= 0) {
    if (!lit.parseIPv6Host(host)) throw invalidHost(host, 'not a valid IPv6 literal');
    const { w0, w1, w2, w3 } = lit.out;
    let address = lit.formatV6(w0, w1, w2, w3);
    if (lit.out.zoneStart >= 0 && lit.needsZone(w0)) address += `%${host.slice(lit.out.zoneStart, lit.out.zoneEnd)}`;
    return { kind: 'ip', host, address, family: 6 };
  }
  let end = len;
  if (len > 1 && host.charCodeAt(len - 1) === 46) end--;
  if (lit.endsInNumber(host, end)) {
    const v4 = lit.parseInetAton(host, 0, end);
    if (v4 < 0) throw invalidHost(host, 'not an IPv4 address the resolver would accept');
    const address = lit.out.canonical && end === len ? host : lit.formatV4(v4);
    return { kind: 'ip', host, address, family: 4 };
  }
  const name = lit.normaliseName(host);
  if (name === null) throw invalidHost(host, 'neither an IP address nor a valid host name');
  return { kind: 'name', host, name };
}

// ---------------------------------------------------------------------------------------------------------
// Compiled tables

interface Denial {
  readonly decision: Denied;
}

interface AllowRule {
  readonly len: number;
  readonly ports: ReadonlySet<number> | null;
  readonly openSpecialPurpose: boolean;
}

/** Everything that applies to one interval of addresses. */
interface Cell {
  readonly special: Denial | null;
  readonly deny: Denial | null;
  readonly denyLen: number;
  /** Matching allow entries, most specific first. */
  readonly allows: readonly AllowRule[] | null;
  readonly provider: Denial | null;
  /** Ports on which an address exception covers this interval. */
  readonly exceptionPorts: ReadonlySet<number> | null;
}

type Tag =
  | { kind: 'special'; denial: Denial | null }
  | { kind: 'deny'; denial: Denial }
  | { kind: 'allow'; rule: AllowRule }
  | { kind: 'provider'; denial: Denial }
  | { kind: 'exception'; ports: readonly number[] };

function denial(rule: string, reason: string): Denial {
  return { decision: Object.freeze({ allowed: false, rule, reason }) as Denied };
}

function combine(covering: readonly Tagged<Tag>[]): Cell | null {
  let special: Denial | null = null;
  let deny: Denial | null = null;
  let denyLen = -1;
  let provider: Denial | null = null;
  const allows: AllowRule[] = [];
  let exceptionPorts: Set<number> | null = null;
  // Outermost first, so each assignment lets the more specific prefix win.
  for (const { prefix, tag } of covering) {
    switch (tag.kind) {
      case 'special':
        special = tag.denial;
        break;
      case 'deny':
        deny = tag.denial;
        denyLen = prefix.len;
        break;
      case 'allow':
        allows.unshift(tag.rule);
        break;
      case 'provider':
        provider = tag.denial;
        break;
      case 'exception':
        exceptionPorts ??= new Set();
        for (const p of tag.ports) exceptionPorts.add(p);
        break;
    }
  }
  if (special === null && deny === null && provider === null && allows.length === 0 && exceptionPorts === null) return null;
  return { special, deny, denyLen, allows: allows.length > 0 ? allows : null, provider, exceptionPorts };
}

export const ALLOWED: Decision = Object.freeze({ allowed: true });
const INVALID_ADDRESS: Denied = Object.freeze({ allowed: false, rule: 'invalid-address', reason: 'not an IP address literal' });
const FAMILY_MISMATCH: Denied = Object.freeze({ allowed: false, rule: 'invalid-address', reason: 'address does not match its family' });
const LOCALHOST: Denied = Object.freeze({
  allowed: false,
  rule: 'loopback',
  reason: 'localhost and names under .localhost are loopback (RFC 6761) and are never resolved',
});

const EMBEDDING = ['', 'IPv4-compatible', 'IPv4-mapped', 'IPv4-translated (SIIT)', 'NAT64', '6to4'] as const;

function allowFor(c: Cell, port: number): AllowRule | null {
  const a = c.allows;
  if (a === null) return null;
  for (let i = 0; i < a.length; i++) {
    const r = a[i]!;
    if (r.ports === null || (port !== 0 && r.ports.has(port))) return r;
  }
  return null;
}

function specialOf(c: Cell | null, port: number): Denial | null {
  if (c === null || c.special === null) return null;
  const a = allowFor(c, port);
  return a !== null && a.openSpecialPurpose ? null : c.special;
}

function denyOf(c: Cell | null, port: number): Denial | null {
  if (c === null || c.deny === null) return null;
  const a = allowFor(c, port);
  return a !== null && a.len > c.denyLen ? null : c.deny;
}

function providerOf(c: Cell | null, port: number): Denial | null {
  if (c === null || c.provider === null) return null;
  if (port !== 0 && c.exceptionPorts !== null && c.exceptionPorts.has(port)) return null;
  return allowFor(c, port) === null ? c.provider : null;
}

/** Does an allow entry or address exception list this (denied) port explicitly for the cell? */
function opensPort(c: Cell | null, port: number): boolean {
  if (c === null) return false;
  if (c.exceptionPorts !== null && c.exceptionPorts.has(port)) return true;
  const a = c.allows;
  if (a === null) return false;
  for (const r of a) if (r.ports !== null && r.ports.has(port)) return true;
  return false;
}

function normaliseHostKey(name: string): string {
  const n = name.length > 1 && name.charCodeAt(name.length - 1) === 46 ? name.slice(0, -1) : name;
  return n.toLowerCase();
}

// Every policy compiles the special-purpose table and (unless replaced) the vendored Google list. Their parsed
// prefixes are the same in every policy, so they are parsed once per process: parsing them was most of the cost
// of building a policy from an object or a file. Prefixes and denials are immutable, so compiled policies can
// share them. Operator prefixes are parsed per policy (they differ, and caching them would grow without bound).
let specialCache: readonly Tagged<Tag>[] | undefined;
function specialItems(): readonly Tagged<Tag>[] {
  specialCache ??= [...SPECIAL_V4, ...SPECIAL_V6].map((e) => {
    const prefix = parsePrefix(e.cidr);
    return { prefix, tag: { kind: 'special', denial: e.rule === null ? null : denial(e.rule, `${prefix.text}: ${e.reason}`) } };
  });
  return specialCache;
}

let googleParsedCache: readonly Prefix[] | undefined;
function googleParsed(): readonly Prefix[] {
  googleParsedCache ??= googlePrefixes().map((cidr) => parsePrefix(cidr));
  return googleParsedCache;
}

/** A policy configuration compiled into lookup tables. Immutable; shared by the policies built from it. */
export class CompiledPolicy {
  private readonly v4: V4Table<Cell>;
  private readonly v6: V6Table<Cell>;
  private readonly deniedPorts = new Uint8Array(65536);
  private readonly portDecisions = new Map<number, Denied>();
  private readonly hostExceptions = new Map<string, ReadonlySet<number>>();

  constructor(config: PolicyConfig) {
    const items: Tagged<Tag>[] = [];
    items.push(...specialItems());
    for (const d of config.deny) {
      const prefix = parsePrefix(d.cidr, true);
      items.push({ prefix, tag: { kind: 'deny', denial: denial(d.rule, d.reason ?? `${prefix.text}: denied by the operator policy`) } });
    }
    for (const a of config.allow) {
      const prefix = parsePrefix(a.cidr, true);
      const rule: AllowRule = { len: prefix.len, ports: a.ports === null ? null : new Set(a.ports), openSpecialPurpose: a.openSpecialPurpose };
      items.push({ prefix, tag: { kind: 'allow', rule } });
    }
    for (const p of config.providers) {
      const builtin = isGooglePrefixes(p.prefixes) ? googleParsed() : null;
      for (let i = 0; i < p.prefixes.length; i++) {
        const prefix = builtin !== null ? builtin[i]! : parsePrefix(p.prefixes[i]!);
        items.push({ prefix, tag: { kind: 'provider', denial: denial(`provider:${p.name}`, `${prefix.text}: published range of provider ${p.name}`) } });
      }
    }
    for (const e of config.exceptions) {
      if ('address' in e) items.push({ prefix: parsePrefix(e.address, true), tag: { kind: 'exception', ports: e.ports } });
      else {
        const key = normaliseHostKey(e.host);
        const set = new Set(this.hostExceptions.get(key) ?? []);
        for (const p of e.ports) set.add(p);
        this.hostExceptions.set(key, set);
      }
    }
    this.v4 = new V4Table(flatten(4, items, combine));
    this.v6 = new V6Table(flatten(6, items, combine));
    for (const p of config.deniedPorts) {
      this.deniedPorts[p] = 1;
      this.portDecisions.set(p, Object.freeze({ allowed: false, rule: 'port', reason: PORT_REASONS[p] ?? `port ${p} is blocked by the policy` }) as Denied);
    }
  }

  /** Number of intervals in the IPv4 and IPv6 tables (diagnostics). */
  get sizes(): { v4: number; v6: number } {
    return { v4: this.v4.size, v6: this.v6.size };
  }

  private hostOpens(name: string | undefined, port: number): boolean {
    if (name === undefined || port === 0 || this.hostExceptions.size === 0) return false;
    const ports = this.hostExceptions.get(normaliseHostKey(name));
    return ports !== undefined && ports.has(port);
  }

  /**
   * Production decision for one address. `port` 0 means "not known yet" (a bare lookup): port rules are not
   * applied and port-scoped openings (exceptions, allow entries with ports) do not match.
   */
  judge(address: string, family: Family, port: number, name: string | undefined): Decision {
    const f = lit.parseAddress(address);
    if (f !== family) return f === 0 ? INVALID_ADDRESS : FAMILY_MISMATCH;
    if (f === 4) {
      const c = this.v4.lookup(lit.out.v4);
      if (c !== null) {
        const d = specialOf(c, port) ?? denyOf(c, port) ?? (this.hostOpens(name, port) ? null : providerOf(c, port));
        if (d !== null) return d.decision;
      }
      if (port !== 0 && this.deniedPorts[port] === 1 && !opensPort(c, port) && !this.hostOpens(name, port)) {
        return this.portDecisions.get(port)!;
      }
      return ALLOWED;
    }
    const { w0, w1, w2, w3 } = lit.out;
    let emb = -1;
    let kind = 0;
    if (w0 === 0 && w1 === 0) {
      if (w2 === 0) {
        // :: and ::1 are themselves, not the IPv4 addresses 0.0.0.0 and 0.0.0.1.
        if (w3 > 1) {
          emb = w3;
          kind = 1;
        }
      } else if (w2 === 0xffff) {
        emb = w3;
        kind = 2;
      } else if (w2 === 0xffff0000) {
        emb = w3;
        kind = 3;
      }
    } else if (w0 === 0x0064ff9b && w1 === 0 && w2 === 0) {
      emb = w3;
      kind = 4;
    } else if (w0 >>> 16 === 0x2002) {
      emb = ((w0 << 16) | (w1 >>> 16)) >>> 0;
      kind = 5;
    }
    const c6 = this.v6.lookup(w0, w1, w2, w3);
    const c4 = emb >= 0 ? this.v4.lookup(emb) : null;
    if (c6 !== null || c4 !== null) {
      let d = specialOf(c6, port);
      if (d !== null) return d.decision;
      if ((d = specialOf(c4, port)) !== null) return embedded(d, kind, emb);
      if ((d = denyOf(c6, port)) !== null) return d.decision;
      if ((d = denyOf(c4, port)) !== null) return embedded(d, kind, emb);
      if (!this.hostOpens(name, port)) {
        if ((d = providerOf(c6, port)) !== null) return d.decision;
        if ((d = providerOf(c4, port)) !== null) return embedded(d, kind, emb);
      }
    }
    if (port !== 0 && this.deniedPorts[port] === 1 && !opensPort(c6, port) && !opensPort(c4, port) && !this.hostOpens(name, port)) {
      return this.portDecisions.get(port)!;
    }
    return ALLOWED;
  }
}

function embedded(d: Denial, kind: number, v4: number): Denied {
  return { allowed: false, rule: d.decision.rule, reason: `${EMBEDDING[kind]} address embeds ${lit.formatV4(v4)}; ${d.decision.reason}` };
}

// ---------------------------------------------------------------------------------------------------------
// Policy objects

const denyChannel = diagnostics_channel.channel('sockguard:policy:deny');
const wouldDenyChannel = diagnostics_channel.channel('sockguard:policy:would-deny');

/** Message published on `sockguard:policy:deny` and `sockguard:policy:would-deny`. */
export interface DenyMessage {
  mode: 'production' | 'development';
  address?: string;
  family?: Family;
  name?: string;
  port: number;
  rule: string;
  reason: string;
}

const MAX_REPORTED = 4096;

function isLocalhost(name: string): boolean {
  const n = normaliseHostKey(name);
  return n === 'localhost' || n.endsWith('.localhost');
}

function checkEvaluatePort(port: unknown): void {
  // Port 0 is the internal "unknown port" of bare lookups (see CompiledPolicy.judge).
  if (typeof port !== 'number' || !(port >= 0 && port <= 65535) || (port | 0) !== port) validatePort(port);
}

/**
 * A policy instance: production denies, development allows and reports what production would deny (once per
 * destination, as a process warning with code `SOCKGUARD_WOULD_DENY` and on `sockguard:policy:would-deny`).
 */
export class PolicyEngine implements Policy {
  readonly mode: 'production' | 'development';
  readonly compiled: CompiledPolicy;
  private readonly reported = new Set<string>();

  constructor(compiled: CompiledPolicy, mode: 'production' | 'development') {
    this.compiled = compiled;
    this.mode = mode;
  }

  parse(host: unknown, port: unknown): Target {
    return parseTarget(host, port);
  }

  evaluateName(name: string, port: number): Decision | null {
    if (!isLocalhost(name)) return null;
    if (this.mode === 'production') {
      if (denyChannel.hasSubscribers) denyChannel.publish({ mode: this.mode, name, port, rule: LOCALHOST.rule, reason: LOCALHOST.reason } satisfies DenyMessage);
      return LOCALHOST;
    }
    this.report({ mode: this.mode, name: normaliseHostKey(name), port, rule: LOCALHOST.rule, reason: LOCALHOST.reason });
    return null;
  }

  evaluate(address: string, family: Family, port: number, name?: string): Decision {
    checkEvaluatePort(port);
    const d = this.compiled.judge(address, family, port, name);
    if (d.allowed) return d;
    if (this.mode === 'development' && d !== INVALID_ADDRESS && d !== FAMILY_MISMATCH) {
      this.report({ mode: this.mode, address, family, name, port, rule: d.rule, reason: d.reason });
      return ALLOWED;
    }
    if (denyChannel.hasSubscribers) denyChannel.publish({ mode: this.mode, address, family, name, port, rule: d.rule, reason: d.reason } satisfies DenyMessage);
    return d;
  }

  /**
   * Production's decisions on this policy's tables, published nowhere: in development mode, what check() reports
   * production would decide, without a denial event for a connection that was never refused.
   */
  asProduction(): Policy {
    const compiled = this.compiled;
    return {
      mode: 'production',
      parse: parseTarget,
      evaluateName: (name) => (isLocalhost(name) ? LOCALHOST : null),
      evaluate: (address, family, port, name) => {
        checkEvaluatePort(port);
        return compiled.judge(address, family, port, name);
      },
    };
  }

  private report(m: DenyMessage): void {
    const key = `${m.address ?? ''}|${m.name ?? ''}|${m.port}|${m.rule}`;
    if (this.reported.has(key)) return;
    // Bounded: a long-running development process talking to many destinations may report one again.
    if (this.reported.size >= MAX_REPORTED) this.reported.clear();
    this.reported.add(key);
    if (wouldDenyChannel.hasSubscribers) wouldDenyChannel.publish(m);
    const addr = m.address === undefined ? undefined : m.family === 6 ? `[${m.address}]` : m.address;
    const where = m.name !== undefined && addr !== undefined ? `${m.name} (${addr}):${m.port}` : `${m.name ?? addr}:${m.port}`;
    process.emitWarning(`production policy would deny ${where} (rule ${m.rule}): ${m.reason}`, {
      type: 'SockguardWarning',
      code: 'SOCKGUARD_WOULD_DENY',
    });
  }
}

let defaultCompiled: CompiledPolicy | undefined;

/** The compiled built-in tables, built on first use and shared. */
export function defaultCompiledPolicy(): CompiledPolicy {
  defaultCompiled ??= new CompiledPolicy(defaultConfig());
  return defaultCompiled;
}

export type { Prefix };
